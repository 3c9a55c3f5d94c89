"""``flash-wrap train-prior``: train a latent prior (ε-prediction DDPM, or a rectified flow) and save a bundle.

Pipeline: encode every training image once with the (frozen) autoencoder, optionally with its
horizontal mirror, and cache the raw latents; scale latents to unit variance with a factor
computed on that data; train a diffusers ``UNet2DModel`` under accelerate, either to predict the
noise ε on the LDM schedule (ALGORITHMS.md §1, ``objective="epsilon"``) or to predict the velocity
u = ε − z₀ on the rectified-flow path z_σ = (1 − σ)·z₀ + σ·ε (ALGORITHMS.md §12,
``objective="velocity"``; σ uniform on (0, 1], timestep input σ·1000 as diffusers'
``FlowMatchEulerDiscreteScheduler`` feeds it), keeping EMA weights (diffusers ``EMAModel``); write a
:class:`~flash_wrap.models.LatentDiffusion` folder whose UNet holds the EMA weights. As in
``train-severity``, step ``k``'s batch, timesteps and noise are a pure function of
``(seed, k)``, so an interrupted run resumes exactly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from diffusers import FlowMatchEulerDiscreteScheduler, UNet2DModel
from diffusers.training_utils import EMAModel
from safetensors import SafetensorError
from safetensors.torch import save_file
from tqdm.auto import tqdm

from ...errors import InvalidInput, NotFound
from ...images import ImageFolder, list_images, usable_images
from ...models import Autoencoder, Denoiser, LatentDiffusion, TAEF2Autoencoder, convert_taef2, ldm_scheduler
from ..arguments import check_settings
from ..runs import check_output_folder, exclusive_if_main, fingerprint_files
from .checkpoint import check_resume, latest_checkpoint, load_checkpoint, load_extra, prune_checkpoints, save_checkpoint
from .loop import StepLoop
from .severity import StepBatches

log = logging.getLogger(__name__)

#: UNet shapes by name; ``sample_size`` and channels come from the autoencoder.
UNET_PRESETS: dict[str, dict] = {
    # ~9M parameters for 32x8x8 latents: 18 MB in float16 (the shipped demo prior).
    "small": dict(block_out_channels=(96, 192), layers_per_block=2, norm_num_groups=32, attention_head_dim=32,
                  down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D")),
    # A few ten-thousand parameters: tests and smoke runs.
    "tiny": dict(block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8, attention_head_dim=8,
                 down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D")),
}


#: what the network learns to predict: ``epsilon`` (DDPM) or ``velocity`` (rectified flow)
OBJECTIVES = ("epsilon", "velocity")
#: the flow prior's timestep input is σ times this (diffusers' ``num_train_timesteps`` convention)
FLOW_TRAIN_TIMESTEPS = 1000


@dataclass
class PriorTrainingConfig:
    """Settings of one prior-training run; ``output`` becomes a model bundle folder."""

    output: str
    data: str
    autoencoder: str
    image_size: int = 64
    unet: str = "small"
    steps: int = 8000
    batch_size: int = 64
    lr: float = 2e-4
    warmup_steps: int = 200
    ema_decay: float = 0.999
    mirror: bool = True
    seed: int = 0
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    limit: int | None = None
    cpu: bool = False
    resume: bool = True
    #: a bundle ("demo" or a folder) whose UNet weights and latent scale start the run: fine-tuning,
    #: e.g. at a higher resolution than the parent was trained at (same preset, same autoencoder).
    init_from: str | None = None
    #: train over a bundle that ``output`` already holds
    force: bool = False
    #: "epsilon": a DDPM ε-predictor on the LDM schedule; "velocity": a rectified-flow velocity predictor
    objective: str = "epsilon"
    #: the written flow prior's sampling shift s (σ ↦ s·σ / (1 + (s − 1)·σ), as SD3's scheduler): more
    #: steps at high noise, fewer near the data; training draws σ uniformly whatever s is
    flow_shift: float = 3.0

    def __post_init__(self) -> None:
        check_settings(self, {"image_size": (1, None), "steps": (1, None), "batch_size": (1, None),
                              "lr": (1e-12, None), "warmup_steps": (0, None), "ema_decay": (0, 1),
                              "seed": (0, 2**63 - 1), "checkpoint_every": (1, None), "keep_checkpoints": (1, None),
                              "limit": (1, None), "flow_shift": (1e-3, None)})
        if self.objective not in OBJECTIVES:
            raise InvalidInput(f"objective must be one of {', '.join(OBJECTIVES)}, not {self.objective!r}")


def load_autoencoder(spec: str | Path) -> Autoencoder:
    """An autoencoder from a folder: either the upstream TAEF2 ``taef2_encoder.pth`` /
    ``taef2_decoder.pth`` pair (converted once) or a saved adapter folder with ``config.json``."""
    folder = Path(spec)
    if (folder / "taef2_encoder.pth").is_file() and (folder / "taef2_decoder.pth").is_file():
        return TAEF2Autoencoder(convert_taef2(folder / "taef2_encoder.pth", folder / "taef2_decoder.pth"))
    if (folder / "config.json").is_file():
        return Autoencoder.from_pretrained(folder)
    raise NotFound(
        f"{folder} holds neither taef2_encoder.pth + taef2_decoder.pth nor a saved autoencoder (config.json)"
    )


@torch.no_grad()
def encode_images(autoencoder: Autoencoder, files: list[Path], size: int, *, mirror: bool,
                  batch_size: int = 64, progress: bool | None = None) -> torch.Tensor:
    """Raw latents ``(N·(1+mirror), C, h, w)`` of centre-cropped, resized images (and mirrors)."""
    data = ImageFolder(files[0].parent, size, files=files)
    chunks = []
    for start in tqdm(range(0, len(data), batch_size), desc="encoding images", disable=_disable(progress)):
        x = torch.stack([data[i] for i in range(start, min(start + batch_size, len(data)))])
        chunks.append(autoencoder.encode(x))
        if mirror:
            chunks.append(autoencoder.encode(x.flip(-1)))
    return torch.cat(chunks)


def _disable(progress: bool | None) -> bool | None:
    return None if progress is None else not progress


def _cached_latents(config: PriorTrainingConfig, autoencoder: Autoencoder, files: list[Path],
                    progress: bool | None, data_fingerprint: str) -> torch.Tensor:
    cache = Path(config.output) / "training" / "latents.safetensors"
    # keyed on the images' bytes and the autoencoder's weights: a stale cache is never reused
    weights = hashlib.sha256(b"".join(t.detach().cpu().contiguous().numpy().tobytes()
                                      for t in autoencoder.state_dict().values())).hexdigest()
    key = {"n_files": str(len(files)), "image_size": str(config.image_size), "mirror": str(config.mirror),
           "autoencoder": autoencoder.kind, "autoencoder_weights": weights, "data": data_fingerprint}
    if cache.is_file():
        try:
            from safetensors import safe_open

            with safe_open(cache, "pt") as f:
                if f.metadata() == key:
                    return f.get_tensor("latents")
        except (SafetensorError, OSError):
            log.warning("latent cache %s is unreadable; re-encoding", cache)
    latents = encode_images(autoencoder, files, config.image_size, mirror=config.mirror, progress=progress)
    cache.parent.mkdir(parents=True, exist_ok=True)
    save_file({"latents": latents.contiguous()}, cache, metadata=key)
    return latents


def flow_scheduler(shift: float = 1.0) -> FlowMatchEulerDiscreteScheduler:
    """The flow prior's scheduler: rectified flow, 1000 training timesteps, sampling shift ``shift``
    (1: a uniform σ grid)."""
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=FLOW_TRAIN_TIMESTEPS, shift=shift)


def build_unet(preset: str, latent_channels: int, latent_size: int) -> UNet2DModel:
    if preset not in UNET_PRESETS:
        raise InvalidInput(f"unknown UNet preset {preset!r}; choose one of {', '.join(UNET_PRESETS)}")
    return UNet2DModel(sample_size=latent_size, in_channels=latent_channels, out_channels=latent_channels,
                       **UNET_PRESETS[preset])


def _step_batch(latents: torch.Tensor, indices: list[int], seed: int, step: int, alphas_cumprod: torch.Tensor):
    """Noisy latents, timesteps and target noise for one step (a function of seed and step only)."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
    z0 = latents[indices]
    t = torch.randint(0, alphas_cumprod.numel(), (len(indices),), generator=gen)
    noise = torch.randn(z0.shape, generator=gen)
    a = alphas_cumprod[t].view(-1, 1, 1, 1)
    return a.sqrt() * z0 + (1 - a).sqrt() * noise, t, noise


def _flow_step_batch(latents: torch.Tensor, indices: list[int], seed: int, step: int):
    """Flow states, timestep inputs and target velocities for one step (a function of seed and step only).

    z_σ = (1 − σ)·z₀ + σ·ε with σ ~ U(0, 1] (ALGORITHMS.md §12); the target is u = ε − z₀ and the
    network sees σ·1000, as diffusers' flow-matching scheduler feeds it at sampling time.
    """
    gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
    z0 = latents[indices]
    sigma = 1.0 - torch.rand(len(indices), generator=gen)  # (0, 1]: σ = 1 (pure noise) is a grid point
    noise = torch.randn(z0.shape, generator=gen)
    s = sigma.view(-1, 1, 1, 1)
    return (1 - s) * z0 + s * noise, sigma * FLOW_TRAIN_TIMESTEPS, noise - z0


def _load_parent(config: PriorTrainingConfig, autoencoder: Autoencoder) -> LatentDiffusion:
    """The ``init_from`` bundle, checked against this run's autoencoder before any training."""
    assert config.init_from is not None  # called only with --init-from
    parent = LatentDiffusion.from_pretrained(config.init_from)
    if parent.autoencoder.kind != autoencoder.kind or parent.latent_channels != autoencoder.latent_channels:
        raise InvalidInput(
            f"--init-from {config.init_from}: its autoencoder ({parent.autoencoder.kind}, "
            f"{parent.latent_channels} latent channels) is not this run's ({autoencoder.kind}, "
            f"{autoencoder.latent_channels} channels)"
        )
    if parent.latent_shift != 0.0:
        raise InvalidInput(f"--init-from {config.init_from}: bundles with a latent shift are not supported")
    return parent


def _copy_unet_weights(parent: LatentDiffusion, unet: UNet2DModel, config: PriorTrainingConfig) -> None:
    """Load the parent's UNet weights into the freshly built ``unet`` (names and shapes must match)."""
    if not isinstance(parent.denoiser, Denoiser):
        raise InvalidInput(f"--init-from {config.init_from}: its denoiser is a {parent.denoiser.kind} (a flow "
                           "transformer), not a UNet; train-prior starts from UNet bundles only")
    try:
        unet.load_state_dict(parent.denoiser.unet.state_dict())
    except RuntimeError as err:  # torch's strict check: missing/unexpected keys or shape mismatches
        raise InvalidInput(f"--init-from {config.init_from}: its UNet does not match preset {config.unet!r}: "
                         f"{str(err).splitlines()[-1].strip()}") from err


def train_prior(config: PriorTrainingConfig, *, progress: bool | None = None) -> dict:
    """Train (or resume), then write the bundle with EMA weights to ``config.output``; one run at a
    time writes an output folder (a lock, see :mod:`flash_wrap.apps.runs`)."""
    check_output_folder(config.output, inputs=[config.data])
    with exclusive_if_main(config.output, what="flash-wrap train-prior"):
        return _train_prior(config, progress=progress)


def _train_prior(config: PriorTrainingConfig, *, progress: bool | None) -> dict:
    ckpt_dir = Path(config.output) / "training" / "checkpoints"
    latest = latest_checkpoint(ckpt_dir) if config.resume else None
    if (Path(config.output) / "model_index.json").is_file() and latest is None and not config.force:
        raise InvalidInput(f"--save-to {config.output} already holds a model bundle; choose a new folder, or pass --force "
                         "to train a new prior over it")
    files = usable_images(list_images(config.data)[: config.limit], 16)
    data_fingerprint = fingerprint_files(files)
    if latest is not None:  # before the (long) encoding pass: the same settings and the same images
        saved = json.loads((latest / "state.json").read_text())
        check_resume(saved["config"], asdict(config), latest, paths=("data", "autoencoder", "init_from"))
        if saved.get("data_fingerprint", data_fingerprint) != data_fingerprint:
            raise InvalidInput(f"cannot resume {latest}: the images in {config.data} changed since it was written "
                             "(names or content); rerun with the same images or start over with --no-resume")
    autoencoder = load_autoencoder(config.autoencoder).eval().requires_grad_(False)
    if config.image_size % autoencoder.downsample_factor:
        raise InvalidInput(f"image_size {config.image_size} is not a multiple of the autoencoder's "
                         f"downsampling {autoencoder.downsample_factor}")
    if config.unet not in UNET_PRESETS:
        raise InvalidInput(f"unknown UNet preset {config.unet!r}; choose one of {', '.join(UNET_PRESETS)}")
    parent = _load_parent(config, autoencoder) if config.init_from else None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        unet = build_unet(config.unet, autoencoder.latent_channels, config.image_size // autoencoder.downsample_factor)
    parent_scale = None
    if parent is not None:  # checked before the (long) encoding pass
        _copy_unet_weights(parent, unet, config)
        parent_scale, parent = parent.latent_scale, None  # keep only what training needs
    accelerator = Accelerator(cpu=config.cpu)
    with accelerator.main_process_first():  # one process encodes and caches, the others read the cache
        raw = _cached_latents(config, autoencoder, files, progress, data_fingerprint)
    # a fine-tuned prior keeps its parent's latent units, so the parent's weights stay meaningful
    scale = parent_scale if parent_scale is not None else 1.0 / float(raw.std())
    latents = raw * scale
    if parent_scale is not None:
        log.info("fine-tuning from %s: latent scale %.5f kept (latent std on this data %.4f)",
                 config.init_from, scale, float(latents.std()))
    scheduler = flow_scheduler(config.flow_shift) if config.objective == "velocity" else ldm_scheduler()
    alphas_cumprod = ldm_scheduler().alphas_cumprod.float()

    ema = EMAModel(unet.parameters(), decay=config.ema_decay)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=config.lr, weight_decay=0.0)
    lr_at = lambda step: min(1.0, (step + 1) / max(config.warmup_steps, 1))  # noqa: E731

    first, history = 0, []
    previous = latest_checkpoint(ckpt_dir) if config.resume else None
    if previous is not None:
        saved = load_checkpoint(previous, unet, optimizer)
        shadow = load_extra(previous, "ema")
        ema.load_state_dict({"shadow_params": [shadow[str(i)] for i in range(len(shadow))],
                             "optimization_step": saved["ema_step"]})
        first, history = saved["step"], saved["history"]
        log.info("resuming from %s (step %d)", previous, first)

    unet, optimizer = accelerator.prepare(unet, optimizer)
    ema.to(accelerator.device)
    batches = StepBatches(len(latents), config.batch_size, config.seed, first, config.steps,
                          rank=accelerator.process_index, world=accelerator.num_processes)
    noise_seed = config.seed + 1_000_003 * accelerator.process_index  # own noise per process
    def set_lr(step: int) -> None:
        for group in optimizer.param_groups:
            group["lr"] = config.lr * lr_at(step)

    def loss_fn(step: int, indices: list[int]) -> tuple[torch.Tensor, dict[str, str]]:
        if config.objective == "velocity":
            z_t, t, target = _flow_step_batch(latents, indices, noise_seed, step)
        else:
            z_t, t, target = _step_batch(latents, indices, noise_seed, step, alphas_cumprod)
        pred = unet(z_t.to(accelerator.device), t.to(accelerator.device)).sample
        return torch.nn.functional.mse_loss(pred, target.to(accelerator.device)), {}

    def on_checkpoint(done: int, running: float) -> None:
        if not math.isfinite(running):  # never checkpoint, let alone save, a diverged model
            raise InvalidInput(f"training diverged at step {done} (loss {running}); lower --lr (or raise "
                             "--warmup-steps) and resume from the last checkpoint")
        history.append({"step": done, "loss": running})
        log.info("train-prior step %d/%d: loss %.4f", done, config.steps, running)
        if accelerator.is_main_process:
            state = {"config": asdict(config), "history": history, "ema_step": ema.optimization_step,
                     "data_fingerprint": data_fingerprint}
            shadow = {str(i): p for i, p in enumerate(ema.shadow_params)}
            save_checkpoint(ckpt_dir, done, accelerator.unwrap_model(unet), optimizer, state, {"ema": shadow})
            prune_checkpoints(ckpt_dir, config.keep_checkpoints)

    loop = StepLoop(accelerator, optimizer, first, config.steps, config.checkpoint_every, "train-prior",
                    smoothing=0.99, progress=progress)
    loop.run(batches, loss_fn, on_checkpoint, before_step=set_lr,
             after_step=lambda step: ema.step(accelerator.unwrap_model(unet).parameters()))

    summary = {"steps": config.steps, "latent_scale": scale, "latents": len(latents), "history": history}
    if accelerator.is_main_process:
        final = accelerator.unwrap_model(unet)
        ema.copy_to(final.parameters())
        model = LatentDiffusion(autoencoder, Denoiser(final.cpu()), scheduler, image_size=config.image_size,
                                latent_scale=scale)
        model.save_pretrained(config.output)
        card = {"training": asdict(config), "latent_scale": scale, "history": history,
                "n_images": len(files), "n_latents": len(latents)}
        (Path(config.output) / "training" / "prior.json").write_text(json.dumps(card, indent=2))
        summary["written_to"] = config.output
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return summary
