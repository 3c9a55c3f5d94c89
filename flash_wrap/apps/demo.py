"""``flash-wrap demo``: every task at an easy and a hard severity on the shipped faces: the
degraded input, the autoencoder-only estimate D(ẑ), the bare solver and Flash.

Writes ``demo.png`` (one row per task and level, the first face: clean | degraded | D(ẑ) | bare |
Flash, with PSNR and NFE under each image; :mod:`.demo_figure`), ``demo_full.png`` (the same with
every face), ``demo.md`` (the table it prints) and ``demo.json`` (the same numbers: means
over the faces, one row per task and level, plus the run's settings and time).

Every sample's randomness (its motion-blur kernel, its measurement noise, the bare solver's and
Flash's noise) comes from its own seed, made from ``--seed``, the task, the level and the face's
file name (:func:`sample_seed`), so two runs write the same rows.

Progress follows ``flash-wrap tune``'s rule: tqdm bars when stderr is a terminal, otherwise one
line per stage on stderr (a stage = one task's baseline or Flash run) and, inside a stage, one every
:data:`PROGRESS_INTERVAL_S` seconds, so a log file stays short but never silent for minutes.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..errors import InvalidInput
from ..flash import Flash
from ..images import list_images, load_image
from ..metrics import LPIPS, psnr
from ..models import LatentDiffusion
from ..models.bundle_io import resolve as resolve_bundle
from ..operators import DEFAULT_NOISE_STD, SEED_BOUND
from ..registry import get_registry, get_solver, get_task
from ..runner import StepCallback
from ..state import StepState
from .demo_figure import demo_figures
from .progress import progress_mode
from .runs import RunFolderError, check_output_folder

log = logging.getLogger(__name__)

FACES_DIR = Path(__file__).resolve().parents[1] / "assets" / "faces"
#: DDIM steps of the baseline and Flash grid (``steps=None``: the solver's own sampler).
DEFAULT_STEPS = 100
#: How many faces (the first ones of the sorted folder) the demo uses by default.
DEFAULT_FACES = 2
#: How many of them (the first) the bare solver runs on by default, at every level: its 100 steps
#: per image are most of the demo's time, and it fails the same way on every face.
DEFAULT_BASELINE_FACES = 1

#: A sample's random streams: generator ``sample_seed · STREAMS + stream`` (its motion-blur
#: kernel uses ``sample_seed`` itself).
NOISE_STREAM, BASELINE_STREAM, FLASH_STREAM = 0, 1, 2
STREAMS = 4

#: Seconds between two progress lines inside a stage when stderr is not a terminal.
PROGRESS_INTERVAL_S = 30.0

#: What a demo writes into its ``--out`` folder.
DEMO_FILES = ("demo.png", "demo_full.png", "demo.md", "demo.json")

#: The keys of every ``demo.json`` row, in order.
ROW_KEYS = ("task", "level", "degraded_psnr", "autoencoder_psnr", "baseline_psnr", "flash_psnr",
            "baseline_lpips", "flash_lpips", "baseline_nfe", "flash_nfe", "sigma_hat", "latent_error")


def sample_seed(seed: int, task: str, level: float, face: str) -> int:
    """The seed of one demo sample (task, level t, face file name), mixed with ``seed``;
    in ``[0, 2³¹ − 1)`` (what task operators accept as kernel seeds)."""
    key = f"{task}|{float(level):.6f}|{face}".encode()
    return (zlib.crc32(key) + 1_000_003 * int(seed)) % SEED_BOUND


def stream_generators(seeds: list[int], stream: int) -> list[torch.Generator]:
    """One generator per sample for one of its random streams (``*_STREAM``)."""
    return [torch.Generator().manual_seed(s * STREAMS + stream) for s in seeds]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


@dataclass
class TaskResult:
    """One task's images ``(B, 3, H, W)`` and per-sample numbers, ``B = levels × faces``
    (level-major: the faces at the first level, then at the next).

    ``task_levels`` are the distinct levels in order; ``levels`` the per-sample ones;
    ``severity`` the physical severity per sample (``operator.severity``); ``autoencoder``
    is D(ẑ), the decoded latent estimate of the severity encoder that Flash started from;
    ``latent_error`` the variance σ̄² of its actual error ``ẑ − E(x)`` over the latent entries,
    the quantity σ̂ is trained to predict [P eq. 3]; ``params`` the hyper-parameters each method
    ran with (``{"flash": {...}, "baseline": {...}}``).

    The bare solver runs on the first ``baseline_faces`` faces of each level only: its images and
    numbers (``baseline*``) have ``levels × baseline_faces`` rows, level-major, and
    ``baseline_index`` ``(levels × baseline_faces,)`` holds their sample indices.
    """

    task: str
    task_levels: tuple[float, ...]
    levels: torch.Tensor
    severity: torch.Tensor
    clean: torch.Tensor
    degraded: torch.Tensor
    autoencoder: torch.Tensor
    baseline: torch.Tensor
    flash: torch.Tensor
    baseline_nfe: torch.Tensor
    flash_nfe: torch.Tensor
    sigma_hat: torch.Tensor
    latent_error: torch.Tensor
    degraded_psnr: torch.Tensor
    autoencoder_psnr: torch.Tensor
    baseline_psnr: torch.Tensor
    flash_psnr: torch.Tensor
    baseline_lpips: torch.Tensor
    flash_lpips: torch.Tensor
    baseline_seconds: float
    flash_seconds: float
    params: dict[str, dict[str, float]]
    baseline_faces: int
    baseline_index: torch.Tensor

    @property
    def n_faces(self) -> int:
        return self.clean.shape[0] // len(self.task_levels)

    def rows_of(self, k: int) -> slice:
        """The samples at the ``k``-th level."""
        return slice(k * self.n_faces, (k + 1) * self.n_faces)

    def baseline_rows_of(self, k: int) -> slice:
        """The bare solver's rows (of ``baseline*``) at the ``k``-th level."""
        return slice(k * self.baseline_faces, (k + 1) * self.baseline_faces)

    def baseline_row(self, sample: int) -> int | None:
        """Where sample ``sample`` sits in ``baseline*``, ``None`` if the bare solver did not run on it."""
        hits = (self.baseline_index == sample).nonzero().flatten().tolist()
        return hits[0] if hits else None


class Progress:
    """The demo's progress: a tqdm bar over the stages (and the solver's step bars) when stderr is
    a terminal, otherwise one line per stage on stderr and, inside a stage, a line every
    ``interval`` seconds (by ``clock``) saying how many steps are done and left; ``progress`` True
    forces bars, False is silent (``flash-wrap tune``'s rule). ``interval`` defaults to
    :data:`PROGRESS_INTERVAL_S`; ``clock`` returns seconds."""

    def __init__(self, progress: bool | None, stages: int, *, interval: float | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.bars, self.lines = progress_mode(progress)
        self.bar = tqdm(total=stages, desc="demo", unit="stage", disable=not self.bars)
        self.interval = PROGRESS_INTERVAL_S if interval is None else interval
        self.clock = clock

    def start(self, label: str) -> float:
        self.bar.set_description(f"demo: {label}")
        return self.clock()

    def steps(self, label: str, started: float) -> StepCallback | None:
        """A step callback for a solver run begun at ``started``: in line mode, every ``interval``
        seconds a line ``label: N steps done, K to go, S s`` (``None`` otherwise)."""
        if not self.lines:
            return None
        done, last = 0, started

        def report(state: StepState, output: torch.Tensor) -> None:
            nonlocal done, last
            done += 1
            now = self.clock()
            if now - last >= self.interval:
                last = now
                self.say(f"{label}: {done} steps done, {int(state.index.max())} to go, {now - started:.0f} s")

        return report

    def done(self, label: str, note: str, started: float) -> float:
        seconds = self.clock() - started
        self.bar.update(1)
        if self.lines:
            self.say(f"{label}: {note}, {seconds:.1f} s")
        return seconds

    def say(self, text: str) -> None:
        if self.lines:
            print(f"demo: {text}", file=sys.stderr, flush=True)

    def close(self) -> None:
        self.bar.close()


def run_task(model: LatentDiffusion, task_name: str, faces: torch.Tensor, names: list[str], *, solver: str,
             steps: int | None, seed: int, progress: Progress | None = None,
             lpips: LPIPS | None = None, baseline_faces: int | None = None) -> TaskResult:
    """Degrade each face at the task's demo levels; reconstruct with Flash and, on the first
    ``baseline_faces`` faces of each level (``None``: all), the bare solver; decode Flash's ẑ for
    the autoencoder-only estimate. Every sample draws from its own generators, so a bare image
    does not depend on which others ran beside it. ``lpips``: the metric to score with (default:
    the shipped LPIPS-AlexNet)."""
    lpips = lpips or LPIPS.load()
    progress = progress or Progress(False, 2)
    task = get_task(task_name)
    task_levels = task.demo_levels
    n = faces.shape[0]
    n_bare = n if baseline_faces is None else min(baseline_faces, n)
    bare_index = torch.tensor([k * n + f for k in range(len(task_levels)) for f in range(n_bare)])
    levels = torch.tensor(task_levels).repeat_interleave(n)
    clean = faces.repeat(len(task_levels), 1, 1, 1).to(model.device)
    seeds = [sample_seed(seed, task_name, t, name) for t in task_levels for name in names]
    operator = task.operator(levels, model.image_size, seed=torch.tensor(seeds))
    y = operator.measure(clean, generator=stream_generators(seeds, NOISE_STREAM))
    degraded = operator.to_image(y).clamp(0, 1)  # bicubic upsampling for super-resolution
    bare = get_solver(solver)(model, steps=steps)  # the one grid rule: steps < T is DDIM with the solver's η
    grid = bare.grid.label()
    label = f"{task_name} t={'/'.join(f'{t:.2f}' for t in task_levels)}"
    bars = progress.bars

    started = progress.start(f"{label}: baseline")
    bare_seeds = [seeds[i] for i in bare_index.tolist()]
    base = bare.reconstruct(y[bare_index], operator.select(bare_index),
                            generator=stream_generators(bare_seeds, BASELINE_STREAM), progress=bars,
                            callback=progress.steps(f"{label}: baseline {grid}", started))
    baseline_seconds = progress.done(f"{label}: baseline {grid}", f"{_count(len(bare_seeds), 'image')}, "
                                     f"mean NFE {base.nfe.float().mean():.1f}", started)
    started = progress.start(f"{label}: flash")
    fast = Flash(bare).reconstruct(y, operator, generator=stream_generators(seeds, FLASH_STREAM), progress=bars,
                                   callback=progress.steps(f"{label}: flash {grid}", started))
    assert fast.z_hat is not None and fast.sigma_hat is not None  # Flash always estimates
    with torch.no_grad():
        autoencoder = model.decode(fast.z_hat).clamp(0, 1)  # D(ẑ): the encoder's estimate, no solver step
        # what σ̂ predicts: the unbiased variance of the actual latent error (as in training)
        latent_error = (fast.z_hat - model.encode(clean)).flatten(1).double().var(dim=1)
    flash_seconds = progress.done(f"{label}: flash {grid}",
                                  f"{_count(len(seeds), 'image')}, mean NFE {fast.nfe.float().mean():.1f}", started)
    return TaskResult(
        task=task_name, task_levels=tuple(task_levels), levels=levels,
        severity=operator.severity.expand(len(seeds)).clone(), clean=clean, degraded=degraded,
        autoencoder=autoencoder, baseline=base.images, flash=fast.images, baseline_nfe=base.nfe,
        flash_nfe=fast.nfe, sigma_hat=fast.sigma_hat, latent_error=latent_error, degraded_psnr=psnr(degraded, clean),
        autoencoder_psnr=psnr(autoencoder, clean), baseline_psnr=psnr(base.images, clean[bare_index]),
        flash_psnr=psnr(fast.images, clean), baseline_lpips=lpips(base.images, clean[bare_index]),
        flash_lpips=lpips(fast.images, clean), baseline_seconds=baseline_seconds, flash_seconds=flash_seconds,
        params={"flash": bare.hyperparameters(task_name), "baseline": bare.hyperparameters(task_name, baseline=True)},
        baseline_faces=n_bare, baseline_index=bare_index,
    )


def _mean(values: torch.Tensor) -> float:
    return round(float(values.double().mean()), 4)


def summary_rows(results: list[TaskResult]) -> list[dict]:
    """``demo.json``'s rows: per task and level, the means over the faces (keys :data:`ROW_KEYS`)."""
    rows = []
    for r in results:
        for k, level in enumerate(r.task_levels):
            s, b = r.rows_of(k), r.baseline_rows_of(k)
            rows.append({
                "task": r.task, "level": float(level),
                "degraded_psnr": _mean(r.degraded_psnr[s]), "autoencoder_psnr": _mean(r.autoencoder_psnr[s]),
                "baseline_psnr": _mean(r.baseline_psnr[b]), "flash_psnr": _mean(r.flash_psnr[s]),
                "baseline_lpips": _mean(r.baseline_lpips[b]), "flash_lpips": _mean(r.flash_lpips[s]),
                "baseline_nfe": _mean(r.baseline_nfe[b]), "flash_nfe": _mean(r.flash_nfe[s]),
                "sigma_hat": round(float(r.sigma_hat[s].double().mean()), 6),
                "latent_error": float(f"{float(r.latent_error[s].mean()):.6g}"),
            })
    return rows


def _nfe(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def format_table(results: list[TaskResult], rows: list[dict] | None = None) -> str:
    """Markdown table, one line per task and level: the degradation, the PSNR of the degraded
    input, D(ẑ), baseline and Flash, the LPIPS of baseline and Flash, both NFEs, σ̂ and the actual error variance σ̄² it predicts
    (means over the faces, as in ``demo.json``)."""
    rows = summary_rows(results) if rows is None else rows
    severity = [get_task(r.task).describe(float(r.severity[r.rows_of(k)][0]))
                for r in results for k in range(len(r.task_levels))]
    lines = ["| task | level t | degradation | degraded PSNR | D(ẑ) PSNR | baseline PSNR | Flash PSNR "
             "| baseline LPIPS | Flash LPIPS | baseline NFE | Flash NFE | σ̂ | actual σ̄² |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row, what in zip(rows, severity):
        lines.append(
            f"| {row['task']} | {row['level']:.3f} | {what} | {row['degraded_psnr']:.2f} "
            f"| {row['autoencoder_psnr']:.2f} | {row['baseline_psnr']:.2f} | {row['flash_psnr']:.2f} "
            f"| {row['baseline_lpips']:.4f} | {row['flash_lpips']:.4f} "
            f"| {_nfe(row['baseline_nfe'])} | {_nfe(row['flash_nfe'])} | {row['sigma_hat']:.4g} "
            f"| {row['latent_error']:.4g} |"
        )
    steps = [f"{r.task} Flash η={r.params['flash']['eta']:g}, bare η={r.params['baseline']['eta']:g}"
             for r in results if "eta" in r.params["flash"]]
    if steps:  # each method at its own tuned step size (solver_defaults, baseline_defaults)
        lines += ["", "Step sizes: " + "; ".join(steps)]
    return "\n".join(lines)


def _bare_note(baseline_faces: int, n_faces: int) -> str:
    """The table header's note on the bare solver's faces (none when it ran on all)."""
    if baseline_faces == n_faces:
        return ""
    return f" (the bare solver's: the first {_count(baseline_faces, 'face')})"


def run_demo(*, model: str = "demo", out: str | Path = "flash-demo", solver: str = "latent-dps",
             steps: int | None = DEFAULT_STEPS, faces: str | Path | None = None,
             n_faces: int | None = DEFAULT_FACES, baseline_faces: int | None = DEFAULT_BASELINE_FACES,
             tasks: tuple[str, ...] | None = None, seed: int = 0, progress: bool | None = None,
             force: bool = False) -> dict:
    """Run the demo and write ``demo.png``, ``demo_full.png``, ``demo.md`` and ``demo.json`` into ``out``; a folder that
    holds any of them already is refused unless ``force`` (then they are overwritten).

    ``tasks``: registered task names, each at its ``demo_levels``; ``None`` is every registered
    task the model has a severity encoder for (a named task without one is a warning).
    ``steps=None`` uses the solver's own sampler; any ``steps`` goes through the one grid rule
    (:func:`flash_wrap.grid.grid_for`). ``n_faces=None`` uses every face of the folder;
    ``baseline_faces`` how many of them (the first) the bare solver also runs on, at every level
    (``None``: all): it takes every grid step, most of the demo's time, and the same rows
    whichever faces ran beside it.
    ``progress``: ``None`` bars on a terminal and a line per stage otherwise, True bars, False
    nothing. Returns the paths, the table, the rows, the per-task results and the grid label.
    """
    began = time.perf_counter()
    used = [name for name in DEMO_FILES if (Path(out).expanduser() / name).exists()]
    if used and not force:
        raise RunFolderError(f"--out {out} already holds {', '.join(used)} from an earlier demo; choose another --out, "
                             "or pass --force to overwrite them")
    named = tasks is not None
    tasks = tuple(tasks) if tasks is not None else tuple(get_registry().tasks)
    for name in tasks:
        get_task(name)  # an unknown name fails before any work
    out = check_output_folder(out, inputs=[faces or FACES_DIR, resolve_bundle(model)])
    files = list_images(faces or FACES_DIR)[:n_faces]
    bundle = LatentDiffusion.from_pretrained(model).set_runtime(channels_last=True)  # ~20 % faster, same results
    available = [t for t in tasks if t in bundle.severity_encoders]
    if not available:
        raise InvalidInput(f"the model has no severity encoder for any of {', '.join(tasks) or 'no task'}; train one "
                         "with flash-wrap train-severity")
    skipped = [t for t in tasks if t not in available]
    if skipped:
        log.log(logging.WARNING if named else logging.INFO, "demo: the model has no severity encoder for %s; "
                "showing %s only", ", ".join(skipped), ", ".join(available))
    images = torch.stack([load_image(f, bundle.image_size) for f in files])
    names = [f.name for f in files]
    grid = get_solver(solver)(bundle, steps=steps).grid.label()

    bar = Progress(progress, 2 * len(available))
    bar.say(f"{solver} {grid} bare vs Flash on {_count(len(names), 'face')} ({bundle.image_size}²), model {model}, "
            f"tasks {', '.join(available)}")
    lpips = LPIPS.load()
    try:
        results = [run_task(bundle, t, images, names, solver=solver, steps=steps, seed=seed, progress=bar,
                            lpips=lpips, baseline_faces=baseline_faces) for t in available]
    finally:
        bar.close()
    rows = summary_rows(results)
    noise = DEFAULT_NOISE_STD  # every task's operator is built with it
    figure, full_figure = demo_figures(
        results, out, f"{solver}, {grid}: bare solver vs Flash, {bundle.image_size}² faces, σ_y = {noise:g}\n"
        "under each tile: PSNR against clean (dB) · NFE = denoiser calls")
    table = (f"{solver}, {grid}, bare vs Flash; {_count(len(names), 'face')} ({bundle.image_size}²), σ_y = {noise:g}, "
             f"means over the faces{_bare_note(results[0].baseline_faces, len(names))}; D(ẑ): the severity "
             "encoder's estimate, decoded (no solver step); "
             f"actual σ̄²: the variance of ẑ − E(x), which σ̂ predicts\n\n"
             + format_table(results, rows))
    (out / "demo.md").write_text(table + "\n")
    seconds = time.perf_counter() - began
    summary = {
        "model": str(model), "solver": solver, "grid": grid, "steps": steps, "image_size": bundle.image_size,
        "n_faces": len(names), "faces": names, "baseline_faces": results[0].baseline_faces, "seed": seed,
        "noise_std": noise,
        "seconds": round(seconds, 1),
        "stage_seconds": {r.task: {"baseline": round(r.baseline_seconds, 2), "flash": round(r.flash_seconds, 2)}
                          for r in results},
        "hyperparameters": {r.task: r.params for r in results},
        "rows": rows,
    }
    (out / "demo.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    bar.say(f"wrote {', '.join(DEMO_FILES)} to {out} ({seconds:.1f} s in all)")
    return {"figure": figure, "full_figure": full_figure, "table": table, "json": out / "demo.json", "rows": rows, "results": results,
            "grid": grid, "seconds": seconds}
