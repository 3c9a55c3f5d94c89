"""``flash-wrap train-severity``: fine-tune a severity encoder for one task (ALGORITHMS.md §2).

The encoder starts from the bundle's own encoder (weights copied) plus a fresh variance head
and is trained with Adam on fresh degradations of a folder of clean images: per sample a task
level ``t ~ U[train_range]`` and fresh measurement noise. Every step's data and degradation are a
pure function of ``(seed, step)``, so a resumed run continues exactly where it stopped. The
encoder with the lowest validation loss is written into the bundle: ``--model`` itself, or the
bundle ``--save-to`` (required for ``demo`` and diffusers pipeline folders, which are never
written; see :mod:`flash_wrap.apps.bundles`).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader, Sampler

from ...errors import InvalidInput
from ...images import ImageFolder, list_images, usable_images
from ...models import LatentDiffusion
from ...models._io import read_json
from ...models.bundle_io import folder_kind
from ...models.latent_space import check_encoder_source
from ...registry import get_task
from ...severity.range import RANGE_KEY, measure_range
from ..arguments import check_settings
from ..bundles import bundle_target, write_bundle
from ..runs import check_output_folder, exclusive_if_main, fingerprint_files, main_process
from .checkpoint import check_resume, latest_checkpoint, load_checkpoint, prune_checkpoints, save_checkpoint
from .loop import StepLoop
from .severity_loss import severity_loss

log = logging.getLogger(__name__)


@dataclass
class SeverityTrainingConfig:
    """Settings of one training run (defaults: the released script's λσ = 1, λim = 1, lr 1e-4, seed 42)."""

    model: str
    task: str
    data: str
    steps: int = 2000
    batch_size: int = 16
    lr: float = 1e-4
    lambda_sigma: float = 1.0
    lambda_image: float = 1.0
    noise_std: float = 0.05
    seed: int = 42
    val_images: int = 64
    checkpoint_every: int = 250
    keep_checkpoints: int = 2
    #: the bundle to write (default: ``model`` itself; required for "demo" and pipeline folders)
    output: str | None = None
    #: checkpoint folder (default ``<bundle>/training/severity-<task>``)
    checkpoints: str | None = None
    #: the fixed prompt of a text-conditioned pipeline's UNet (default: the empty prompt)
    prompt: str | None = None
    limit: int | None = None
    cpu: bool = False
    workers: int = 0
    resume: bool = True
    #: a bundle ("demo" or a folder) whose encoder for the same task starts the run (fine-tuning,
    #: e.g. at a higher resolution); it must share the model's autoencoder and latent scale.
    init_from: str | None = None
    #: replace an encoder the bundle already has for the task (it is kept until the new one is written)
    force: bool = False

    def __post_init__(self) -> None:
        check_settings(self, {"steps": (1, None), "batch_size": (1, None), "lr": (1e-12, None),
                              "lambda_sigma": (0, None), "lambda_image": (0, None), "noise_std": (0, 1),
                              "seed": (0, 2**63 - 1), "val_images": (0, None), "checkpoint_every": (1, None),
                              "keep_checkpoints": (1, None), "limit": (1, None), "workers": (0, None)})

    def checkpoint_dir(self, bundle: Path) -> Path:
        return Path(self.checkpoints) if self.checkpoints else bundle / "training" / f"severity-{self.task}"


class StepBatches(Sampler[list[int]]):
    """Batches of dataset indices for steps ``first..total-1``: epoch ``e`` is a permutation seeded
    by ``seed + e`` read in consecutive chunks, so step ``k``'s batch never depends on a resume.

    With ``world`` processes, process ``rank`` takes chunk ``k·world + rank`` at step ``k``: the
    processes see disjoint images, every one runs all steps, and the effective batch is
    ``batch_size · world`` (one process reads exactly the chunks it read before)."""

    def __init__(self, n: int, batch_size: int, seed: int, first: int, total: int, *, rank: int = 0,
                 world: int = 1) -> None:
        self.n, self.batch_size, self.seed, self.first, self.total = n, batch_size, seed, first, total
        self.rank, self.world = rank, world

    def __len__(self) -> int:
        return max(self.total - self.first, 0)

    def __iter__(self):
        for step in range(self.first, self.total):
            start = (step * self.world + self.rank) * self.batch_size
            yield [self._at(i) for i in range(start, start + self.batch_size)]

    def _at(self, position: int) -> int:
        epoch, offset = divmod(position, self.n)
        if getattr(self, "_epoch", None) != epoch:
            self._epoch = epoch
            self._perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + epoch)).tolist()
        return self._perm[offset]


def _degrade(task, x: torch.Tensor, size: int, seed: int, noise_std: float,
             level_range: tuple[float, float] | None = None) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    operator, _ = task.sample(x.shape[0], size, gen, noise_std=noise_std, level_range=level_range)
    y = operator.measure(x.cpu(), generator=gen).to(x.device)
    return operator.to_image(y)


def degraded_batches(task, files, size: int, seed: int, noise_std: float, batch: int,
                     level_range: tuple[float, float] | None = None):
    """``(x, y_image)`` batches of ``files``, each degraded once at a level ``t ~ U[level_range]``
    (default ``task.train_range``) and with noise drawn from ``seed`` and its position (the
    validation set of a training run)."""
    data = ImageFolder(files[0].parent, size, files=files)
    images = torch.stack([data[i] for i in range(len(data))])
    for start in range(0, len(images), batch):
        x = images[start : start + batch]
        yield x, _degrade(task, x, size, seed + 1_000_000 + start, noise_std, level_range)


#: how a σ̂ range's images are degraded (recorded with it)
RANGE_LEVELS = "each image at a random training level and at both ends of the training range"


def range_batches(task, files, size: int, seed: int, noise_std: float, batch: int):
    """Degraded images ``(b, 3, H, W)`` for a σ̂ range (:mod:`flash_wrap.severity.range`): every
    image at a random level of ``task.train_range`` (as :func:`degraded_batches`), then at the
    range's low end, then at its high end."""
    lo, hi = task.train_range
    for level_range in (None, *((lo, lo), (hi, hi))[: 1 if lo == hi else 2]):
        for _, y in degraded_batches(task, files, size, seed, noise_std, batch, level_range):
            yield y


def train_severity(config: SeverityTrainingConfig, *, progress: bool | None = None) -> dict:
    """Train, checkpoint, resume and finally write the best encoder into the bundle.

    One run at a time writes a bundle (a lock on its folder, see :mod:`flash_wrap.apps.runs`).
    Returns a summary dict (steps, best validation loss, where it was written).
    """
    get_task(config.task)
    files = usable_images(list_images(config.data)[: config.limit], 16)
    target, copy = bundle_target(config.model, config.output, command="flash-wrap train-severity",
                                 inputs=(config.data,))
    if not copy:
        _check_target(config, target)
    if copy:  # the model is written as a bundle first; its encoder is added at the end
        try:
            _split(config, files)  # refused before any bundle is copied to --save-to
            model = LatentDiffusion.from_pretrained(config.model, prompt=config.prompt)
        except BaseException:
            if target.is_dir() and not any(target.iterdir()):
                target.rmdir()  # a refused model leaves no empty --save-to behind
            raise
        if main_process():
            write_bundle(model, target, source=config.model)
    else:
        model = LatentDiffusion.from_pretrained(target)
        _check_prompt(config, model, target)
    with exclusive_if_main(target, what=f"flash-wrap train-severity {config.task}"):
        return _train_severity(config, target, model, files, progress=progress)


def _split(config: SeverityTrainingConfig, files: list[Path]) -> tuple[list[Path], list[Path]]:
    """The training and validation images: the last ``--val-images`` (at most a fifth) held out."""
    n_val = min(config.val_images, len(files) // 5)
    if n_val < config.val_images:
        raise InvalidInput(f"--val-images {config.val_images} asks for more than a fifth of the {len(files)} images in "
                         f"{config.data}; use at most {len(files) // 5} (or more images)")
    train_files, val_files = files[: len(files) - n_val], files[len(files) - n_val :]
    if not train_files:
        raise InvalidInput(f"no training images left in {config.data} after holding out {n_val} for validation")
    return train_files, val_files


def _train_severity(config: SeverityTrainingConfig, target: Path, model: LatentDiffusion, files: list[Path], *,
                    progress: bool | None) -> dict:
    task = get_task(config.task)
    data_fingerprint = fingerprint_files(files)
    size = model.image_size
    train_files, val_files = _split(config, files)
    check_output_folder(config.checkpoint_dir(target), inputs=[config.data])

    accelerator = Accelerator(cpu=config.cpu)
    model.to(accelerator.device).requires_grad_(False).eval()
    with torch.random.fork_rng(devices=[]):  # seed the new variance head without touching global state
        torch.manual_seed(config.seed)
        encoder = model.make_severity_encoder()
    parent_record = _load_parent_encoder(encoder, model, config) if config.init_from else None
    encoder = encoder.to(accelerator.device).train()
    optimizer = torch.optim.Adam(encoder.parameters(), lr=config.lr)

    ckpt_dir = config.checkpoint_dir(target)
    first, history, best = 0, [], {"val_loss": math.inf, "step": None}
    previous = latest_checkpoint(ckpt_dir) if config.resume else None
    if previous is not None:
        saved = load_checkpoint(previous, encoder, optimizer)
        check_resume(saved["config"], asdict(config), previous, paths=("model", "data", "init_from"))
        if saved.get("data_fingerprint", data_fingerprint) != data_fingerprint:
            raise InvalidInput(f"cannot resume {previous}: the images in {config.data} changed since it was written "
                             "(names or content); rerun with the same images or start over with --no-resume")
        if saved["step"] > config.steps:
            raise InvalidInput(f"checkpoint {previous} is at step {saved['step']}, beyond --steps {config.steps}")
        first, history, best = saved["step"], saved["history"], saved["best"]
        log.info("resuming from %s (step %d)", previous, first)

    dataset = ImageFolder(config.data, size, files=train_files)
    batches = StepBatches(len(dataset), config.batch_size, config.seed, first, config.steps,
                          rank=accelerator.process_index, world=accelerator.num_processes)
    # not passed through accelerator.prepare: it would split the steps between the processes
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=config.workers)
    encoder, optimizer = accelerator.prepare(encoder, optimizer)
    rank_seed = config.seed * 7919 + accelerator.process_index

    def loss_fn(step: int, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, str]]:
        x = x.to(accelerator.device)
        y_image = _degrade(task, x, size, rank_seed * 1_000_003 + step, config.noise_std)
        terms = severity_loss(encoder, model, x, y_image,
                              lambda_sigma=config.lambda_sigma, lambda_image=config.lambda_image)
        return terms["loss"], {"v": f"{float(terms['variance'].mean()):.3g}"}

    def on_checkpoint(done: int, running: float) -> None:
        nonlocal best
        if not math.isfinite(running):
            raise InvalidInput(f"training diverged at step {done} (loss {running}); lower --lr and resume from the "
                             "last checkpoint")
        val = _validate(accelerator.unwrap_model(encoder), model, task, val_files, config)
        history.append({"step": done, "train_loss": running, **val})
        log.info("train-severity %s step %d/%d: train loss %.4f, val loss %.4f", config.task, done,
                 config.steps, running, val["val_loss"])
        if val["val_loss"] < best["val_loss"]:
            best = {"val_loss": val["val_loss"], "step": done}
            if accelerator.is_main_process:
                _save_best(accelerator.unwrap_model(encoder), ckpt_dir)
        if accelerator.is_main_process:
            state = {"config": asdict(config), "history": history, "best": best, "data_fingerprint": data_fingerprint}
            save_checkpoint(ckpt_dir, done, accelerator.unwrap_model(encoder), optimizer, state)
            prune_checkpoints(ckpt_dir, config.keep_checkpoints)

    loop = StepLoop(accelerator, optimizer, first, config.steps, config.checkpoint_every,
                    f"train-severity {config.task}", smoothing=0.98, progress=progress)
    loop.run(loader, loss_fn, on_checkpoint)

    summary = {"task": config.task, "steps": config.steps, "best": best, "history": history,
               "train_images": len(train_files), "val_images": len(val_files)}
    if accelerator.is_main_process:
        best_encoder = model.make_severity_encoder()
        best_path = ckpt_dir / "best.safetensors"
        if best_path.exists():
            from safetensors.torch import load_file

            best_encoder.load_state_dict(load_file(best_path))
        else:
            best_encoder.load_state_dict(accelerator.unwrap_model(encoder).state_dict())
        metadata = {"training": {**asdict(config), "best_step": best["step"], "best_val_loss": best["val_loss"]},
                    "history": history}
        if parent_record is not None:  # keep the lineage: how the starting weights were trained
            metadata["parent"] = {"init_from": str(config.init_from), **parent_record}
        metadata[RANGE_KEY] = _training_range(best_encoder.eval(), task, val_files or train_files, size, config)
        model.add_severity_encoder(config.task, best_encoder)
        model.save_severity_encoder(target, config.task, metadata=json.loads(json.dumps(metadata)))
        summary["written_to"] = str(target / "severity_encoders" / config.task)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return summary


def _training_range(encoder, task, files: list[Path], size: int, config: SeverityTrainingConfig) -> dict:
    """The σ̂ range (:mod:`flash_wrap.severity.range`) of the written encoder on its validation images
    (its training images when none are held out), degraded as validation degrades them."""
    batches = range_batches(task, files, size, config.seed, config.noise_std, config.batch_size)
    return {**measure_range(encoder, batches), **range_source(task, config.data, config.noise_std)}


def range_source(task, data: str | Path, noise_std: float) -> dict:
    """What a σ̂ range was measured on: the image folder's name, the task's training levels, the noise."""
    return {"data": Path(data).name, "levels": list(task.train_range), "noise_std": noise_std,
            "degraded": RANGE_LEVELS}


def _check_target(config: SeverityTrainingConfig, target: Path) -> None:
    """Before any work: an encoder the target bundle already has is replaced only when asked."""
    index = read_json(target / "model_index.json")
    if config.task in index.get("severity_tasks", []) and not config.force:
        raise InvalidInput(f"{target} already has a trained {config.task} encoder; pass --force to replace it "
                         "(the old one stays until the new one is written), or write a new bundle with --save-to")


def _check_prompt(config: SeverityTrainingConfig, model: LatentDiffusion, target: Path) -> None:
    """``--prompt`` belongs to a pipeline folder. Continuing into a bundle written from one, the
    prompt (default: the empty one) must be the one the bundle was written with."""
    if folder_kind(config.model) != "pipeline":
        if config.prompt is not None:
            raise InvalidInput(f"--prompt applies to diffusers pipeline folders; {config.model} is a bundle, which keeps "
                             "the conditioning it was written with")
        return
    if model.denoiser.conditioning_source is None:
        if config.prompt is not None:
            raise InvalidInput(f"--prompt: {config.model} has an unconditional UNet, which takes no text conditioning")
        return
    wanted = f"text encoder, prompt {config.prompt or ''!r}"
    if model.denoiser.conditioning_source != wanted:
        raise InvalidInput(f"--prompt {config.prompt or ''!r}: the bundle {target} was written with the conditioning "
                         f"{model.denoiser.conditioning_source}; a bundle keeps its conditioning (pass the same "
                         "--prompt, or write a new bundle to another --save-to)")


def _load_parent_encoder(encoder: torch.nn.Module, model: LatentDiffusion, config: SeverityTrainingConfig) -> dict:
    """Copy the ``init_from`` bundle's encoder for ``config.task`` into ``encoder`` (checked first).

    Returns the parent encoder's stored metadata (its training record), to be kept with the child's.
    """
    assert config.init_from is not None  # called only with --init-from
    parent = LatentDiffusion.from_pretrained(config.init_from)
    # a starting point, which training adapts: the autoencoder's weights may differ, its latent units not
    check_encoder_source(model, parent, [config.task], origin=f"--init-from {config.init_from}", weights=False)
    try:
        encoder.load_state_dict(parent.severity_encoder(config.task).state_dict())
    except RuntimeError as err:  # e.g. the same kind of autoencoder with other channel counts
        raise InvalidInput(f"--init-from {config.init_from}: its {config.task} encoder does not fit this model: "
                         f"{str(err).splitlines()[-1].strip()}") from err
    return dict(parent.severity_metadata.get(config.task, {}))


def _save_best(encoder: torch.nn.Module, folder: Path) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}, folder / "best.safetensors")


@torch.no_grad()
def _validate(encoder, model: LatentDiffusion, task, files, config: SeverityTrainingConfig) -> dict:
    """Mean loss terms over the held-out images with fixed degradations (seeded by position)."""
    if not files:
        return {"val_loss": math.nan}
    encoder.eval()
    sums: dict[str, float] = {}
    count = 0
    device = next(encoder.parameters()).device
    for x, y_image in degraded_batches(task, files, model.image_size, config.seed, config.noise_std,
                                          config.batch_size):
        terms = severity_loss(encoder, model, x.to(device), y_image.to(device),
                              lambda_sigma=config.lambda_sigma, lambda_image=config.lambda_image)
        for key in ("loss", "latent", "error", "image"):
            sums[key] = sums.get(key, 0.0) + float(terms[key]) * x.shape[0]
        count += x.shape[0]
    encoder.train()
    return {f"val_{k}": v / count for k, v in sums.items()}
