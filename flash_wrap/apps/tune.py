"""``flash-wrap tune``: grid-search a solver's step size η (and Flash's noise correction c) for
one model and task on a held-out validation folder, and store the best values in the bundle.

The paper tuned η per task on held-out images ([P App. A]: η over {0.5, 1, 1.5, 2, 5, 7, 10});
its values do not transfer to another latent space (on the demo model the paper's η diverges).
For every ``(η, c)`` of the grid, Flash(solver with those values) reconstructs every validation
image, degraded exactly as ``flash-wrap eval`` degrades it (:func:`flash_wrap.degradation.degrade`:
the level, drawn from the task's evaluation range, the noise and the kernel come from the image's
file-name seed, and Flash's correction and solver noise from the same per-image stream as in
``eval``), so every configuration sees the same measurements and the same noise, and ``eval`` on
the tuned bundle with the same ``--steps``, ``--seed`` and ``--batch-size`` reproduces the best
row. One process runs the whole grid (no multi-process launch, unlike ``eval``).

NFE: the start step is ``argmin_k |SNR(g_k) − 1/σ̂|`` with σ̂ from the severity encoder on ``y``
alone (:mod:`flash_wrap.start`), so neither η nor c changes it: c only sets how much noise is
mixed into ẑ at that step (``z_s = √(1 − c·σ̂)·ẑ + √(c·σ̂)·ε``), η only the data-consistency
steps. Every row of the grid therefore spends the same NFE per image; the column is reported to
show what the tuned setting costs (and that the comparison is at equal cost).

Per-image rows are appended to ``tune.jsonl`` as each batch of a configuration finishes, and
``run.json`` records the arguments and fingerprints of the model and of the images, so
``--resume`` continues an interrupted run exactly under the rules of ``eval``
(:func:`~flash_wrap.apps.runs.open_run`). The best configuration (highest mean PSNR; a
configuration in which any image diverged, non-finite or :data:`DIVERGENCE_MARGIN_DB` below the degraded
input and the autoencoder's round trip, is never chosen) goes into the bundle, where every
solver built on it afterwards (``get_solver(name)(model)``, ``eval``) picks it up: tuned on the
solver's own grid (DDPM-1000 for Latent-DPS) into ``solver_defaults``, which serve every grid
without an entry of its own; tuned on another grid (``--steps 100``) into ``flash_defaults`` for that
grid, which only Flash on that grid reads (:func:`flash_wrap.tuning.key_for` is the rule,
:func:`flash_wrap.tuning.record` writes them). A few DDIM steps from ẑ and a hundred DDPM steps may need different step sizes (the demo
model's super-resolution: η 1.5 on DDIM-100, 1.0 on DDPM-1000), so a tune on one never moves the
other. The best η may also depend on the severity (the demo's inpainting: 1.5 at 70–80 % missing,
1.0 over 0–80 %): ``--severity-range`` tunes over the levels the values must serve.

``--baseline`` tunes the *bare* solver instead: a whole run from noise on the ``--steps`` grid,
with the solver noise of ``eval``'s baseline stream, so ``eval --baseline`` reproduces the best
row. A run of every step from noise may diverge at the step size that suits Flash's few steps from
ẑ (the demo model's DDIM-100 baseline does), and a comparison is only fair with each method at
its own best. The best η goes into the bundle's ``baseline_defaults[solver][task][grid label]``
(:func:`flash_wrap.tuning.key_for` with ``bare=True``), which only a bare run on that grid reads; c is Flash's and is not tuned there.
"""

from __future__ import annotations

import contextlib
import json
import math
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .. import tuning
from .._numbers import is_finite_number
from ..degradation import SEED_RULE, degrade, image_generators, task_operator
from ..errors import InvalidInput
from ..flash import Flash
from ..images import list_images, load_image, usable_images
from ..metrics import psnr
from ..models import LatentDiffusion
from ..models.bundle_io import resolve as resolve_bundle
from ..registry import get_solver, get_task
from ..solver import Solver
from .arguments import check_settings, checked_level_range
from .bundles import bundle_target, write_bundle
from .evaluation.config import RUN_FILE
from .evaluation.runner import BASELINE_STREAM, CHECK_SIZE, FLASH_STREAM
from .figures import tune_curve
from .progress import progress_mode
from .runs import (
    LOCK_NAME,
    RunFolderError,
    check_output_folder,
    exclusive,
    fingerprint_folder,
    open_run,
    run_identity,
)

RECORDS = "tune.jsonl"
RESULT = "tune.json"
FIGURE = "tune.png"
COMMAND = "flash-wrap tune"

#: A reconstruction this many dB below both the degraded input's PSNR and the autoencoder's round trip
#: counts as diverged (e.g. ``--eta 1e30``: finite, but worse than doing nothing), as a non-finite one does.
DIVERGENCE_MARGIN_DB = 10.0

#: ``(η, c)``: one configuration of the grid (c as the solver resolves it when ``--c`` is not given;
#: ``None`` for ``--baseline``, whose bare runs have no noise correction)
Setting = tuple[float, float | None]


def _positive_values(name: str, values: object) -> list[float]:
    """Sorted distinct finite positive numbers, or ``ValueError`` naming the option."""
    if not isinstance(values, (list, tuple)) or not values:
        raise InvalidInput(f"--{name} needs at least one value, got {values!r}")
    for v in values:
        if not is_finite_number(v) or v <= 0:
            raise InvalidInput(f"--{name} values must be finite numbers > 0, got {v!r}")
    return sorted({float(v) for v in values})


@dataclass
class TuneConfig:
    """One tuning run (``flash-wrap tune`` arguments).

    Attributes:
        model: bundle folder, diffusers pipeline folder or ``"demo"``.
        task, solver: what to tune; the solver must have an ``eta`` hyper-parameter.
        data: held-out validation images (never the images you will evaluate on).
        out: results folder (``tune.jsonl``, ``run.json``, ``tune.json``, ``tune.png``).
        eta: step sizes η to try; c: noise-correction constants to try (``None``: the solver's
            value for the task, which is then left as it is in the bundle).
        output: bundle folder to write instead of ``model`` (required for ``demo`` and pipelines).
        write: store the best values in the bundle (``False``: only report).
        baseline: tune the bare solver (a whole run from noise) instead of Flash(solver); the best
            η goes into ``baseline_defaults`` for this grid.
        severity_range: task levels t to draw from (``None``: the task's evaluation range). The best
            η may depend on it: tune over the levels the values must serve.
        limit, steps, seed, batch_size, device: as in ``eval``.
    """

    model: str
    task: str
    solver: str
    data: str
    out: str
    eta: list[float]
    c: list[float] | None = None
    output: str | None = None
    limit: int | None = None
    steps: int | None = None
    seed: int = 0
    batch_size: int = 4
    device: str | None = None
    write: bool = True
    baseline: bool = False
    severity_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        check_settings(self, {"steps": (1, None), "seed": (0, 2**63 - 1), "limit": (1, None), "batch_size": (1, None)})
        self.eta = _positive_values("eta", self.eta)
        self.c = None if self.c is None else _positive_values("c", self.c)
        if self.baseline and self.c is not None:
            raise InvalidInput("--c is Flash's noise correction, which a bare run (--baseline) never uses; drop --c "
                             "or --baseline")
        if self.severity_range is not None:
            self.severity_range = checked_level_range(self.severity_range, (0.0, 1.0))
        if not self.write and self.output is not None:
            raise InvalidInput("--save-to names a bundle to write but --no-write writes none; drop one of them")

    def comparable(self) -> dict[str, Any]:
        """The arguments a resumed run must share with the original one: not where results or the
        bundle go, not the device, and not the model's or the data's path (both are compared by
        content, see ``run.json``)."""
        keep = asdict(self)
        for name in ("out", "output", "write", "device", "model", "data"):
            keep.pop(name)
        for name in ("baseline", "severity_range"):  # absent when unset, as runs from before they existed
            if not keep[name]:
                keep.pop(name)
        if "severity_range" in keep:
            keep["severity_range"] = list(keep["severity_range"])  # as run.json reads it back
        return keep


class Tuner:
    """Checks everything a :class:`TuneConfig` names, then runs its grid and writes the results."""

    def __init__(self, config: TuneConfig) -> None:
        self.config = config
        self.task = get_task(config.task)
        self.solver_class: type[Solver] = get_solver(config.solver)
        names = self.solver_class.hyperparameter_names()
        if "eta" not in names:
            raise InvalidInput(f"solver {config.solver!r} has no step size eta to tune; its hyper-parameters are "
                             f"{', '.join(sorted(names))}")
        # every input and output is checked before the model loads
        self.files = usable_images(list_images(config.data)[: config.limit], CHECK_SIZE)
        given = resolve_bundle(config.model)
        self.target: Path | None = None
        self.copy = False
        if config.write:
            self.target, self.copy = bundle_target(config.model, config.output, command=COMMAND,
                                                   inputs=(config.data, config.out))
        # a bundle that exists already (--model itself, or an --save-to written earlier from it, e.g. by
        # train-severity) is the one tuned, so the values written match the encoder they go with
        source = self.target if self.target is not None and not self.copy else config.model
        self.model_folder = resolve_bundle(source)
        self.out = check_output_folder(config.out, inputs=[config.data, given, self.model_folder])
        device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = LatentDiffusion.from_pretrained(source, device=device)
        if config.baseline:
            self.grid: list[Setting] = [(eta, None) for eta in config.eta]
        else:
            self.model.severity_encoder(config.task)  # fail now, not after the first configuration
            default_c = self._solver(config.eta[0], None).hyperparameters(config.task)["c"]
            self.grid = [(eta, c) for c in (config.c or [float(default_c)]) for eta in config.eta]
        self.solvers = {(eta, c): self._solver(eta, c if config.c else None) for eta, c in self.grid}
        self.range = checked_level_range(config.severity_range, self.task.eval_range)
        probe = task_operator(self.task, [self.files[0].name], torch.tensor([self.range[0]]),
                              self.model.image_size, config.seed)
        self.solvers[self.grid[0]].check_operator(probe)  # e.g. PSLD refuses the nonlinear motion blur
        self.tuned_on = self.solvers[self.grid[0]].grid
        # where the best values go (flash_wrap.tuning.key_for): a DDIM-100 tune never moves DDPM-1000
        self.key = tuning.key_for(self.solver_class, config.task, self.tuned_on, self.model.num_train_timesteps,
                                  bare=config.baseline, path=self.model.path)

    def _solver(self, eta: float, c: float | None) -> Solver:
        # hyper-parameters only (typed Any so the checker does not match them to sampler= or steps=)
        values: dict[str, Any] = {"eta": eta} if c is None else {"eta": eta, "c": c}
        return self.solver_class(self.model, steps=self.config.steps, **values)

    @property
    def sampler_label(self) -> str:
        """``"ddpm-1000"`` or ``"ddim-100, DDIM η=0"`` (not to be confused with the step size η)."""
        grid = self.solvers[self.grid[0]].grid
        return f"{grid.kind}-{grid.steps}" + ("" if grid.eta is None else f", DDIM η={grid.eta:g}")

    # -- one batch of one configuration ---------------------------------------------------------
    def run_batch(self, files: list[Path], setting: Setting) -> list[dict]:
        """Flash(solver at ``setting``) on ``files`` (the bare solver for ``--baseline``), degraded as
        ``eval`` degrades them, with ``eval``'s noise stream for that method: one row per image."""
        names = [f.name for f in files]
        x = torch.stack([load_image(f, self.model.image_size) for f in files]).to(self.model.device)
        seeds, levels, operator, y = degrade(self.task, names, x, self.range, self.config.seed)
        start = time.perf_counter()
        solver = self.solvers[setting]
        if self.config.baseline:
            result = solver.reconstruct(y, operator, generator=image_generators(seeds, BASELINE_STREAM), progress=False)
        else:
            result = Flash(solver).reconstruct(y, operator, generator=image_generators(seeds, FLASH_STREAM),
                                               progress=False)
        seconds = (time.perf_counter() - start) / len(files)
        scores = psnr(result.images, x).tolist()
        floor = self._divergence_floor(x, operator.to_image(y))
        eta, c = setting
        return [{
            "eta": eta, "c": c, "name": name,
            # None: the reconstruction diverged (non-finite, or far below what the input already gives)
            "psnr": scores[i] if math.isfinite(scores[i]) and scores[i] >= floor[i] else None,
            "psnr_floor": floor[i],
            "nfe": int(result.nfe[i]), "start_step": int(result.start_step[i]),
            "sigma_hat": None if result.sigma_hat is None else float(result.sigma_hat[i]),
            "severity": float(levels[i]), "seconds": seconds,
        } for i, name in enumerate(names)]

    @torch.no_grad()
    def _divergence_floor(self, x: torch.Tensor, degraded: torch.Tensor) -> list[float]:
        """Per image, the PSNR (dB) below which a reconstruction counts as diverged: :data:`DIVERGENCE_MARGIN_DB`
        below the lower of the degraded input's PSNR and the autoencoder's round trip ``D(E(x))``
        (a model that cannot represent the image has not diverged when its results are poor)."""
        given = psnr(degraded.clamp(0, 1), x)
        representable = psnr(self.model.decode(self.model.encode(x)).clamp(0, 1), x)
        return (torch.minimum(given, representable) - DIVERGENCE_MARGIN_DB).tolist()

    # -- the whole run --------------------------------------------------------------------------
    def identity(self) -> dict:
        """What ``run.json`` records and a resume must match (:func:`~flash_wrap.apps.runs.run_identity`)."""
        return run_identity(self.config.comparable(), self.config.model, self.config.data, self.model_folder,
                            self.files) | {"seed_rule": SEED_RULE}

    def run(self, *, resume: bool = False, progress: bool | None = None) -> dict:
        """Run (or resume) the grid, write ``tune.json`` and ``tune.png`` and, unless told not to,
        the best values into the bundle; returns ``tune.json``'s content."""
        # a bundle written in place stays locked for the whole run, so no other command changes it
        # meanwhile (a new --save-to folder is only filled at the end, by a rename)
        bundle_lock = (exclusive(self.target, what=COMMAND) if self.target is not None and not self.copy
                       else contextlib.nullcontext())
        with exclusive(self.out, what=COMMAND), bundle_lock:
            if not resume and any(p.name != LOCK_NAME for p in self.out.iterdir()):
                raise RunFolderError(f"--out {self.out} is not empty: pass --resume to continue the run it holds, "
                                     "or choose a new or empty folder")
            kept = open_run(self.out, self.identity(), records=RECORDS, run_file=RUN_FILE, resume=resume,
                            command=COMMAND)
            rows = self._finished() if kept else {}
            self._run_grid(rows, progress)
            result = self._report(rows)
            if result["best"] is None:
                raise InvalidInput(f"every configuration diverged on at least one image (rows in {self.out / RECORDS}); "
                                 "nothing was written to the bundle: try smaller --eta values")
            if self.target is not None:
                result["written"] = self._write_best(result["best"])
                (self.out / RESULT).write_text(json.dumps(result, indent=2))
            return result

    def _batches(self) -> list[list[Path]]:
        size = self.config.batch_size
        return [self.files[i : i + size] for i in range(0, len(self.files), size)]

    def _finished(self) -> dict[Setting, dict[str, dict]]:
        """The rows of whole finished batches in ``tune.jsonl``, per configuration (an interruption
        may cut a batch short: its rows are dropped, the file rewritten without them)."""
        path = self.out / RECORDS
        found: dict[Setting, dict[str, dict]] = {}
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    row = json.loads(line)
                    found.setdefault((row["eta"], row["c"]), {})[row["name"]] = row
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a line cut short by an interruption
        kept: dict[Setting, dict[str, dict]] = {}
        for setting in self.grid:
            have = found.get(setting, {})
            for batch in self._batches():
                if all(f.name in have for f in batch):
                    kept.setdefault(setting, {}).update({f.name: have[f.name] for f in batch})
        path.write_text("".join(json.dumps(r) + "\n" for rows in kept.values() for r in rows.values()))
        return kept

    def _run_grid(self, rows: dict[Setting, dict[str, dict]], progress: bool | None) -> None:
        """Every configuration's missing batches, appended to ``tune.jsonl`` as they finish: a
        progress bar per configuration on a terminal, a line per configuration otherwise."""
        bars, lines = progress_mode(progress)
        with open(self.out / RECORDS, "a") as sink:
            for k, setting in enumerate(self.grid, 1):
                done = rows.setdefault(setting, {})
                todo = [b for b in self._batches() if not all(f.name in done for f in b)]
                bar = tqdm(total=len(self.files), initial=len(self.files) - sum(map(len, todo)), unit="image",
                           desc=f"tune {k}/{len(self.grid)} {_setting(setting)}", disable=not bars)
                start = time.perf_counter()
                for batch in todo:
                    new = self.run_batch(batch, setting)
                    sink.write("".join(json.dumps(r) + "\n" for r in new))
                    sink.flush()
                    done.update({r["name"]: r for r in new})
                    bar.update(len(batch))
                bar.close()
                if lines:
                    s = summarize(setting, list(done.values()))
                    mean = "diverged" if s["psnr_mean"] is None else f"mean PSNR {s['psnr_mean']:.2f} dB"
                    spent = f"{time.perf_counter() - start:.1f} s" if todo else "resumed"
                    print(f"{COMMAND}: {k}/{len(self.grid)} {_setting(setting)}: {mean} over {s['n']} images, "
                          f"mean NFE {s['nfe_mean']:.1f} ({spent})", file=sys.stderr, flush=True)

    def _report(self, rows: dict[Setting, dict[str, dict]]) -> dict:
        """``tune.json`` (and ``tune.png``) from the rows of every configuration."""
        grid = [summarize(s, [rows[s][f.name] for f in self.files]) for s in self.grid]
        eligible = [g for g in grid if g["psnr_mean"] is not None]
        best = max(eligible, key=lambda g: g["psnr_mean"]) if eligible else None  # ties: the first in grid order
        solver = self.solvers[self.grid[0]]
        result = {
            "task": self.config.task,
            "solver": self.config.solver,
            "model": str(self.config.model),
            "data": str(self.config.data),
            "steps": solver.grid.steps,
            "scheduler": solver.grid.kind,
            "ddim_eta": solver.grid.eta,
            "sampler": self.sampler_label,
            "grid_label": solver.grid.label(),
            "method": "baseline" if self.config.baseline else "flash",
            "seed": self.config.seed,
            "n_images": len(self.files),
            "severity_range": list(self.range),
            "tuned": ["eta", "c"] if self.config.c else ["eta"],
            "grid": grid,
            "best": best,
            "written": None,
        }
        (self.out / RESULT).write_text(json.dumps(result, indent=2))
        tune_curve(result, self.out / FIGURE)
        return result

    def _write_best(self, best: dict) -> dict:
        """Store the best values in the target bundle (a new copy first when needed)."""
        assert self.target is not None
        values = {"eta": best["eta"], "c": best["c"]} if self.config.c else {"eta": best["eta"]}
        if self.copy:
            write_bundle(self.model, self.target, source=self.config.model)
        tuning.record(self.model, self.key, values)
        self.model.save_tuned_values(self.target)
        # a resume of this run tunes the bundle just written: the same model plus the values chosen
        # (which every configuration overrides), so record that bundle as the run's model
        identity = json.loads((self.out / RUN_FILE).read_text())
        identity["model_fingerprint"] = fingerprint_folder(self.target)
        (self.out / RUN_FILE).write_text(json.dumps(identity, indent=2))
        return {"folder": str(self.target), "copied": self.copy, "values": values, "section": self.key.section,
                "grid": self.tuned_on.label(), "readers": tuning.readers(self.key, self.tuned_on)}


def _setting(setting: Setting) -> str:
    """``eta=0.4 c=0.6``, or ``eta=0.4`` for a bare run (no c)."""
    eta, c = setting
    return f"eta={eta:g}" if c is None else f"eta={eta:g} c={c:g}"


def summarize(setting: Setting, rows: list[dict]) -> dict[str, Any]:
    """One grid row: mean and (population) std of PSNR over the images, their number, the mean
    NFE, and how many images diverged (then ``psnr_mean`` is ``None``: never the best)."""
    values = [r["psnr"] for r in rows if r["psnr"] is not None]
    diverged = len(rows) - len(values)
    return {
        "eta": setting[0],
        "c": setting[1],
        "n": len(rows),
        "psnr_mean": float(statistics.fmean(values)) if values and not diverged else None,
        "psnr_std": float(statistics.pstdev(values)) if values else None,
        "nfe_mean": float(statistics.fmean(r["nfe"] for r in rows)) if rows else 0.0,
        "diverged": diverged,
    }


def table(result: dict) -> str:
    """The grid as a Markdown table, the best row marked, with a heading naming what was tuned."""
    best = result["best"]
    method = result['solver'] if result.get("method") == "baseline" else f"Flash({result['solver']})"
    lines = [
        f"**{result['task']}**, {method}, {result['sampler']}, {result['n_images']} validation images, "
        f"model `{result['model']}`",
        "",
        "| η | c | PSNR ↑ | std | n | NFE | |",
        "|---|---|---|---|---|---|---|",
    ]
    for g in result["grid"]:
        mean = f"{g['psnr_mean']:.2f}" if g["psnr_mean"] is not None else f"diverged ({g['diverged']}/{g['n']})"
        std = f"{g['psnr_std']:.2f}" if g["psnr_std"] is not None else "–"
        mark = "← best" if best is not None and (g["eta"], g["c"]) == (best["eta"], best["c"]) else ""
        c = "–" if g["c"] is None else f"{g['c']:g}"
        lines.append(f"| {g['eta']:g} | {c} | {mean} | {std} | {g['n']} | {g['nfe_mean']:.1f} | {mark} |")
    return "\n".join(lines)


def tune(config: TuneConfig, *, resume: bool = False, progress: bool | None = None) -> dict:
    """Check, run (or resume) a tuning grid and write its results; returns ``tune.json``'s content."""
    created = [Path(p).expanduser() for p in (config.out, config.output) if p is not None]
    created = [p for p in created if not p.exists()]
    try:
        tuner = Tuner(config)
    except Exception:
        # a run refused during its checks leaves no empty folder behind (the checks create them)
        for folder in created:
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise
    return tuner.run(resume=resume, progress=progress)
