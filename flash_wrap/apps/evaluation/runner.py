"""``flash-wrap eval``: Flash(solver) vs the bare solver (and fixed starts) on an image folder.

Every image gets its own seed from its file name (ALGORITHMS.md §7: SHA-256 of ``--seed`` and the
name, 63 bits, :data:`~.config.SEED_RULE` in ``run.json``); that seed draws its severity level, its measurement noise,
its motion-blur kernel and the solvers' noise, so an image's result does not depend on the
other images, their order or the batch size. Images are processed in fixed batches of the
sorted file list and a batch's records are appended to ``images.jsonl`` when it finishes:
``--resume`` skips finished batches and reproduces the rest exactly.

Under a multi-process launcher (``torchrun --nproc_per_node N -m flash_wrap eval ...`` on CPU
processes, ``accelerate launch --multi_gpu -m flash_wrap eval ...`` on GPUs) the batches are dealt
round-robin to the processes, so no image is done twice or skipped; after each round the main
process gathers the records and appends them in batch order. Because every image's randomness
comes from its name, the records equal a one-process run's (up to float rounding of the
hardware; ``seconds`` differ, of course).

Progress follows ``flash-wrap tune``'s rule: a bar over the batches when stderr is a terminal,
otherwise a line on stderr when the run starts and one per method and batch, with its mean NFE
and time, so a log file shows where a long run is without being flooded.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
import warnings
from pathlib import Path

import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list, gather_object
from tqdm.auto import tqdm

from ... import tuning
from ...budget import check_budget
from ...degradation import SEED_RULE, degrade, image_generators, image_seed, task_operator
from ...errors import InvalidInput
from ...flash import Flash
from ...images import list_images, load_image, save_image, usable_images
from ...metrics import LPIPS, ordering_accuracy, psnr, ssim
from ...models import LatentDiffusion
from ...models.bundle_io import resolve as resolve_bundle
from ...operators import Operator
from ...perceptual import FIDInception, inception_weights_path, load_fid_inception
from ...registry import get_registry, get_solver, get_task, task_names
from ...solver import Solver
from ..arguments import checked_level_range
from ..progress import plural, progress_mode
from ..runs import check_output_folder, exclusive, fingerprint_folder, open_run, run_identity
from .batching import BatchRun, in_batches, run_flash
from .config import EXAMPLES, OA_LEVELS, OA_SEEDS, RECORDS, RUN_FILE, EvalConfig
from .features import save_features

#: images are fully decoded at this size when checked, before any work
CHECK_SIZE = 16
#: each image's random streams (``image_generators`` offsets) after its degradation's (level 0,
#: noise 1): Flash, the bare baseline, and fixed start ``k`` at ``FIXED_START_STREAM + k``
FLASH_STREAM, BASELINE_STREAM, FIXED_START_STREAM = 2, 3, 4

log = logging.getLogger(__name__)


class Evaluator:
    """Runs the methods of one :class:`EvalConfig` batch by batch and appends per-image records."""

    def __init__(self, config: EvalConfig) -> None:
        self.config = config
        self.task = get_task(config.task)
        self.range = checked_level_range(config.severity_range, self.task.eval_range)
        # every input and the output folder are checked before the model loads
        self.files = usable_images(list_images(config.data)[: config.limit], CHECK_SIZE,
                                   skip_unreadable=config.skip_unreadable)
        self.model_folder = resolve_bundle(config.model)
        self.severity_folder = None
        if config.severity_from:
            try:
                self.severity_folder = resolve_bundle(config.severity_from)
            except (FileNotFoundError, ValueError) as err:
                raise type(err)(f"--severity-from: {err}") from None
        self.out = check_output_folder(config.out, inputs=[config.data, self.model_folder,
                                                           *([self.severity_folder] if self.severity_folder else [])])
        # under a launcher on a machine without CUDA the ranks must still meet: accelerate forms a
        # multi-process CPU group only with cpu=True (otherwise each rank is a lone process)
        self.state = PartialState(cpu=config.device == "cpu" or not torch.cuda.is_available())
        # one device per process under a launcher; otherwise what was asked (default: GPU if any)
        device = self.state.device if self.state.num_processes > 1 or config.device is None else config.device
        self.model = LatentDiffusion.from_pretrained(config.model, device=device)
        self.model.set_runtime(channels_last=config.channels_last)
        if config.severity_from:
            self._adopt_severity_encoder(config.severity_from, device)
        if config.task not in self.model.severity_encoders:  # fail now, not after loading the data
            try:
                self.model.severity_encoder(config.task)
            except ValueError as err:
                raise InvalidInput(f"{err}; then evaluate that bundle as --model, or keep --model {config.model} and "
                                 "pass the bundle as --severity-from") from None
        self.solver = get_solver(config.solver)(self.model, sampler=config.scheduler, steps=config.steps)
        self.baseline_solver = self._baseline_solver()
        unread = tuning.unread(self.model, get_registry().solvers, task_names())
        for section, entries in unread.items():
            log.warning("the model's %s name %s: those values are never used (check the spelling "
                        "in model_index.json)", section, "; ".join(entries))
        grids = tuning.grids_tuned(self.model, config.solver, config.task, bare=True)
        base_grid = self.baseline_solver.grid
        own_values = tuning.read(self.model).get(tuning.TunedKey(config.solver, config.task, base_grid, bare=True))
        if config.baseline and grids and not own_values:
            values = ", ".join(f"{k}={v:g}" for k, v in self.baseline_solver.hyperparameters(config.task,
                                                                                          baseline=True).items())
            log.warning("the model's %s for %s on %s cover %s, not the baseline's %s: the baseline runs with the %s "
                        "and the solver's own defaults (%s; tune it with flash-wrap tune --baseline --steps %d)",
                        tuning.BARE, config.solver, config.task, ", ".join(sorted(g.label() for g in grids)),
                        base_grid.label(), tuning.SOLVER_WIDE, values, base_grid.steps)
        grid = self.solver.sampler.num_steps
        if config.nfe_budget is not None:
            check_budget(config.nfe_budget, grid)
        self.budget: dict | None = None  # the calibrated SNR scale (set by run() when nfe_budget is given)
        for k in config.fixed_start:
            if not 0 <= k < grid:
                raise InvalidInput(f"--fixed-start {k} is outside the sampler's grid [0, {grid - 1}]")
        if config.fid_weights is not None:
            inception_weights_path(config.fid_weights)  # a missing file: one line, before any work
        self.inception: FIDInception | None = None  # loaded when the run starts, with LPIPS
        self.lpips: LPIPS | None = None  # loaded when the run starts, after every check (its warning is not an error's preamble)
        self.lines = False  # one line per stage on stderr (set by run() when stderr is not a terminal)
        self._batch = ""  # the batch being run, as the lines name it ("batch 2/5")

    def _baseline_solver(self) -> Solver:
        """The bare solver: the run's own unless ``--baseline-steps``/``--baseline-scheduler`` give it
        another grid (each defaulting to the run's ``--steps``/``--scheduler``)."""
        config = self.config
        if config.baseline_steps is None and config.baseline_scheduler is None:
            return self.solver
        scheduler = config.scheduler if config.baseline_scheduler is None else config.baseline_scheduler
        steps = config.baseline_steps
        if steps is None and config.baseline_scheduler != "ddpm":  # DDPM has one grid: every timestep
            steps = config.steps
        try:
            return get_solver(config.solver)(self.model, sampler=scheduler, steps=steps)
        except ValueError as err:
            given = [f"--baseline-steps {config.baseline_steps}" if config.baseline_steps is not None
                     else f"{steps} steps from --steps" if steps is not None else "the solver's own grid length",
                     f"--baseline-scheduler {config.baseline_scheduler}" if config.baseline_scheduler is not None
                     else f"{scheduler} from --scheduler" if scheduler is not None else "the solver's own sampler"]
            raise InvalidInput(f"the bare solver's grid ({', '.join(given)}) is not one {config.solver} can run: {err}; "
                             "set both --baseline-steps and --baseline-scheduler") from None

    def _adopt_severity_encoder(self, source: str, device: str | torch.device | None) -> None:
        """``--severity-from``: the task's encoder of another bundle with this model's latent space."""
        origin = f"--severity-from {source}"
        if self.config.task in self.model.severity_encoders:
            raise InvalidInput(f"{origin}: the model {self.config.model} has its own {self.config.task} severity "
                             "encoder; evaluate it as it is, or drop --severity-from")
        bundle = LatentDiffusion.from_pretrained(source, device=device)
        self.model.adopt_severity_encoders(bundle, [self.config.task], origin=origin)
        theirs, mine = bundle.denoiser.conditioning_source, self.model.denoiser.conditioning_source
        if theirs != mine:
            log.warning("%s was written with the conditioning %s, the model %s has %s; the model's is used (only "
                        "the severity encoder is taken)", origin, theirs, self.config.model, mine)
        their_values, my_values = (tuning.describe_values(m, self.config.solver, self.config.task)
                                   for m in (bundle, self.model))
        for section, tuned in their_values.items():
            if tuned != my_values.get(section):
                log.warning("%s stores tuned %s settings for %s (%s: %s); they are not used here: only its severity "
                            "encoder is (evaluate --model %s to use them)", origin, self.config.solver,
                            self.config.task, section, json.dumps(tuned, ensure_ascii=False), source)

    # -- one batch ------------------------------------------------------------------------------
    def _operator(self, names: list[str], levels: torch.Tensor) -> Operator:
        return task_operator(self.task, names, levels, self.model.image_size, self.config.seed)

    def run_batch(self, files: list[Path]) -> list[dict]:
        names = [f.name for f in files]
        x = torch.stack([load_image(f, self.model.image_size) for f in files]).to(self.model.device)
        seeds, levels, operator, y = degrade(self.task, names, x, self.range, self.config.seed)

        runs, seconds = {}, {}
        start = time.perf_counter()
        slots, batching = self.config.batch_size, self.config.batching
        runs["flash"] = run_flash(Flash(self.solver), y, operator, image_generators(seeds, FLASH_STREAM),
                                  batching=batching, slots=slots)
        seconds["flash"] = time.perf_counter() - start
        self._stage_done(f"Flash({self.config.solver})", runs["flash"].nfe, seconds["flash"])
        if self.budget is not None:  # the same noise streams as "flash": the pair differs only in λ
            start = time.perf_counter()
            runs["flash_budget"] = run_flash(Flash(self.solver, snr_scale=self.budget["snr_scale"]), y, operator,
                                             image_generators(seeds, FLASH_STREAM), batching=batching, slots=slots)
            seconds["flash_budget"] = time.perf_counter() - start
            self._stage_done("Flash within the NFE budget", runs["flash_budget"].nfe, seconds["flash_budget"])
        z_hat = runs["flash"].z_hat
        assert z_hat is not None  # Flash always estimates
        with torch.no_grad():
            ae_images = torch.cat([self.model.decode(z_hat[i : i + slots]).clamp(0, 1)
                                   for i in range(0, len(files), slots)])
        if self.config.baseline:
            start = time.perf_counter()
            runs["baseline"] = in_batches(self._fixed(self.baseline_solver), y, operator,
                                          image_generators(seeds, BASELINE_STREAM), slots)
            seconds["baseline"] = time.perf_counter() - start
            self._stage_done(f"{self.config.solver} on {self.baseline_solver.grid.label()}", runs["baseline"].nfe,
                             seconds["baseline"])
        for k in self.config.fixed_start:
            start = time.perf_counter()
            runs[f"fixed_start_{k}"] = in_batches(self._fixed(Flash(self.solver, fixed_start=k)), y, operator,
                                                  image_generators(seeds, FIXED_START_STREAM + k), slots)
            seconds[f"fixed_start_{k}"] = time.perf_counter() - start
            self._stage_done(f"fixed start {k}", runs[f"fixed_start_{k}"].nfe, seconds[f"fixed_start_{k}"])

        degraded = operator.to_image(y).clamp(0, 1)  # the reference every method must beat (bicubic for ×4 SR)
        images = {m: r.images for m, r in runs.items()} | {"autoencoder": ae_images}
        scored = images | {"degraded": degraded}
        free = {"autoencoder": [0] * len(files), "degraded": [0] * len(files)}
        nfe = {m: r.nfe.tolist() for m, r in runs.items()} | free
        decoder_calls = {m: r.decoder_calls.tolist() for m, r in runs.items()} | free
        seconds["autoencoder"] = seconds["degraded"] = 0.0
        scores = {m: self._scores(img, x) for m, img in scored.items()}
        if self.inception is not None:
            save_features(self.out, names, self.inception, x, scored)
        oa, oa_sigma_hat = self._ordering(x, names)
        oa_levels = torch.linspace(*self.range, OA_LEVELS).tolist()  # the grid _ordering used
        records = []
        flash = runs["flash"]
        flags = flash.out_of_range
        assert flash.sigma_hat is not None  # Flash always estimates
        for i, name in enumerate(names):
            budget = {"start_step_budget": int(runs["flash_budget"].start_step[i])} if "flash_budget" in runs else {}
            records.append({
                "name": name,
                "severity": float(levels[i]),
                "severity_physical": float(operator.severity.expand(len(names))[i]),
                "sigma_hat": float(flash.sigma_hat[i]),
                "start_step": int(flash.start_step[i]),
                **budget,
                "out_of_range": None if flags is None else bool(flags[i]),
                "ordering_accuracy": oa[i],
                "ordering_levels": oa_levels,
                "ordering_sigma_hat": oa_sigma_hat[i],
                "nfe": {m: nfe[m][i] for m in scored},
                "decoder_calls": {m: decoder_calls[m][i] for m in scored},
                "seconds": {m: seconds[m] / len(names) for m in scored},
                **{metric: {m: scores[m][metric][i] for m in scored} for metric in ("psnr", "ssim", "lpips")},
            })
        self._save_examples(files, x, operator.to_image(y), images)
        return records

    @staticmethod
    def _fixed(method: Solver | Flash) -> BatchRun:
        """One fixed-batch call of ``method`` (the bare solver and fixed starts always run fixed batches)."""
        return lambda y, operator, gens: method.reconstruct(y, operator, generator=gens, progress=False)

    def _say(self, text: str) -> None:
        if self.lines:
            print(f"eval {self.config.task}: {text}", file=sys.stderr, flush=True)

    def _stage_done(self, label: str, nfe: torch.Tensor, seconds: float) -> None:
        """The line for one method on one batch: its mean NFE and time."""
        n = nfe.numel()
        self._say(f"{self._batch}: {label}: {plural(n, 'image')}, mean NFE {float(nfe.float().mean()):.1f}, {seconds:.1f} s "
                  f"({seconds / max(n, 1):.1f} s/image)")

    def _scores(self, estimate: torch.Tensor, target: torch.Tensor) -> dict[str, list]:
        lp = self.lpips(estimate, target).tolist() if self.lpips else [None] * target.shape[0]
        return {"psnr": psnr(estimate, target).tolist(), "ssim": ssim(estimate, target).tolist(), "lpips": lp}

    @torch.no_grad()
    def _ordering(self, x: torch.Tensor, names: list[str]) -> tuple[list[float | None], list[list[list[float]]]]:
        """OA of [P App. D, Def. 1] per image: ``OA_LEVELS`` levels over the range, ``OA_SEEDS`` noise
        seeds (``None`` when the range is a single level: no pair can be ordered). Also returns each
        image's σ̂ on that grid (``OA_SEEDS`` lists of ``OA_LEVELS`` values), from which the report
        ranks σ̂ against t over many more draws than one per image."""
        encoder = self.model.severity_encoder(self.config.task)
        levels = torch.linspace(*self.range, OA_LEVELS)
        orderable = self.range[0] < self.range[1]
        result: list[float | None] = []
        grids = []
        for i, name in enumerate(names):
            op = self._operator([name] * OA_LEVELS, levels)
            accs, grid = [], []
            for s in range(OA_SEEDS):
                gen = image_generators([image_seed(name, self.config.seed)], 1_000_000 + s)[0]
                y = op.measure(x[i : i + 1].expand(OA_LEVELS, -1, -1, -1), generator=gen)
                sigma_hat = encoder(op.to_image(y))[1]
                if orderable:
                    accs.append(ordering_accuracy(levels, sigma_hat)[0])
                grid.append(sigma_hat.flatten().tolist())
            result.append(sum(accs) / len(accs) if accs else None)
            grids.append(grid)
        return result, grids

    def _save_examples(self, files, x, degraded, images) -> None:
        folder = self.out / "examples"
        for i, f in enumerate(files):
            if self.files.index(f) >= EXAMPLES:
                continue
            # named by the full file name, so a.png and a.jpg do not overwrite each other's examples
            save_image(x[i], folder / f"{f.name}__clean.png")
            save_image(degraded[i].clamp(0, 1), folder / f"{f.name}__degraded.png")
            for method, img in images.items():
                save_image(img[i], folder / f"{f.name}__{method}.png")

    # -- the whole run --------------------------------------------------------------------------
    def run(self, *, resume: bool = False, progress: bool | None = None) -> dict:
        with exclusive(self.out, what="flash-wrap eval") if self.state.is_main_process else contextlib.nullcontext():
            return self._run(resume=resume, progress=progress)

    def _run(self, *, resume: bool, progress: bool | None) -> dict:
        state = self.state
        main = state.is_main_process
        done: list = [None]
        if main:
            done[0] = sorted(self._prepare_resume(resume))
        if state.num_processes > 1:
            broadcast_object_list(done)
        self.lpips = LPIPS.load()
        if self.lpips is not None and self.model.image_size < self.lpips.min_side:
            warnings.warn(f"LPIPS needs images of side >= {self.lpips.min_side}; this model's are "
                          f"{self.model.image_size}², so the LPIPS column is null", UserWarning, stacklevel=2)
            self.lpips = None
        if self.config.fid_weights is not None:
            self.inception = load_fid_inception(self.config.fid_weights, self.model.device)
        if self.config.nfe_budget is not None:
            from .budget import dataset_snr_scale

            self._say(f"calibrating the NFE budget {self.config.nfe_budget:g} on {plural(len(self.files), 'image')}")
            self.budget = dataset_snr_scale(self.model, self.task, self.files, self.range, self.config.seed,
                                            self.config.batch_size, self.solver.sampler.snr, self.config.nfe_budget)
        unit = self.config.unit  # a batch (fixed) or a window of images streamed or bucketed over batch_size slots
        batches = [self.files[i : i + unit] for i in range(0, len(self.files), unit)]
        todo = [b for b in batches if b[0].name not in set(done[0])]
        # round r: process p does batch r·N + p; the main process appends the round in batch order
        world, rank = state.num_processes, state.process_index
        rounds = range(0, len(todo), world)
        bars, lines = progress_mode(progress)
        self.lines = lines and main  # under a launcher only the main process speaks, for its own batches
        methods = [f"Flash({self.config.solver}) on {self.solver.grid.label()}"]
        if self.budget is not None:
            methods.append(f"the same within a mean NFE of {self.config.nfe_budget:g} (λ = {self.budget['snr_scale']:.4g})")
        if self.config.baseline:
            methods.append(f"{self.config.solver} on {self.baseline_solver.grid.label()}")
        methods += [f"fixed start {k}" for k in self.config.fixed_start]
        how = "" if self.config.batching == "fixed" else f", Flash {self.config.batching} over {self.config.batch_size} slots"
        self._say(f"{plural(len(self.files), 'image')} in {plural(len(batches), 'batch', 'es')} of up to "
                  f"{unit}{how}{f' ({len(batches) - len(todo)} done before)' if len(todo) < len(batches) else ''}, "
                  f"{plural(world, 'process', 'es')}: {', '.join(methods)}")
        with open(self.out / RECORDS, "a") if main else contextlib.nullcontext() as sink:
            for first in tqdm(rounds, desc=f"eval {self.config.task}", unit="round" if world > 1 else "batch",
                              disable=not main or not bars):
                mine = todo[first + rank] if first + rank < len(todo) else []
                if mine:
                    self._batch = f"batch {batches.index(mine) + 1}/{len(batches)}"
                records = self.run_batch(mine) if mine else []
                if world > 1:
                    records = [r for part in gather_object([records]) for r in part]
                if sink is not None:  # the main process's
                    sink.write("".join(json.dumps(record) + "\n" for record in records))
                    sink.flush()
        result = None
        if main:
            from .report import write_report

            result = write_report(self.out, self.config, self.model, self.solver, self.baseline_solver,
                                  budget=self.budget)
        if world > 1:
            state.wait_for_everyone()
            result = result if main else json.loads((self.out / "results.json").read_text())
        assert result is not None  # a lone process is the main one
        return result

    def identity(self) -> dict:
        """What ``run.json`` records and a resume must match (:func:`~flash_wrap.apps.runs.run_identity`)."""
        identity = run_identity(self.config.comparable(), self.config.model, self.config.data, self.model_folder,
                                self.files) | {"seed_rule": SEED_RULE}
        if self.severity_folder is not None:  # absent otherwise, so runs from before the option still resume
            identity["severity_from"] = str(self.config.severity_from)
            identity["severity_fingerprint"] = fingerprint_folder(self.severity_folder)
        if self.model.path != "vp":  # absent for VP models, so runs from before flow models still resume
            identity["path"] = self.model.path
        return identity

    def _prepare_resume(self, resume: bool) -> set[str]:
        """Names of finished images; on a fresh run, write ``run.json`` and start empty.

        Refuses, and deletes nothing, when the folder holds records it cannot attribute."""
        if open_run(self.out, self.identity(), records=RECORDS, run_file=RUN_FILE, resume=resume,
                    command="flash-wrap eval"):
            return self._finished(self.out / RECORDS)
        return set()

    def _finished(self, records: Path) -> set[str]:
        """Keep only whole batches of ``records`` (an interruption may cut one short) and name them."""
        if not records.is_file():
            return set()
        kept: dict[str, str] = {}
        for line in records.read_text().splitlines():
            try:
                kept[json.loads(line)["name"]] = line
            except (json.JSONDecodeError, KeyError):
                log.warning("ignoring a truncated line in %s", records)
        size = self.config.unit
        batches = [[f.name for f in self.files[i : i + size]] for i in range(0, len(self.files), size)]
        whole = [name for batch in batches if all(n in kept for n in batch) for name in batch]
        records.write_text("".join(kept[n] + "\n" for n in whole))
        return set(whole)


def evaluate(config: EvalConfig, *, resume: bool = False, progress: bool | None = None) -> dict:
    """Run (or resume) an evaluation and write its results; returns ``results.json``'s content.

    In a multi-process launch every process calls this; the images are shared out between them
    and every process returns the same merged results.
    """
    out = Path(config.out).expanduser()
    existed = out.exists()
    try:
        evaluator = Evaluator(config)
    except Exception:
        # a run refused during its checks leaves no empty --out behind (the checks create it)
        if not existed and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise
    try:
        return evaluator.run(resume=resume, progress=progress)
    finally:
        if evaluator.state.num_processes > 1:
            evaluator.state.destroy_process_group()
