"""``flash-wrap benchmark``: seconds per image and peak memory of a bare solver and of Flash, side
by side in one run, and how well a mixed-severity batch uses the hardware.

For each batch size ``B`` the same ``B`` measurements (Gaussian blur, levels spread over the
task's range) are reconstructed by the bare solver (every sample runs all ``M`` grid steps) and by
``Flash(solver)``. On the trained demo model Flash starts each sample where its severity encoder
says; on a randomly initialised model (``--model full-ldm-vq4``) the start steps are imposed
(``--starts``, cycled over the batch), since an untrained encoder's σ̂ is meaningless.

Mixed-batch efficiency: the bare run gives the cost of one sample-step at batch size ``B``,
``c = T_bare / (B·M)``. A batch whose samples need ``nfe_i`` steps would ideally take
``c·Σ nfe_i``; the loop runs the largest start first and samples join later, so the early steps
run on a partial batch. Efficiency = ideal / measured Flash time (1 = no loss from mixing).

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` during the run; on CPU the peak
resident set size above the level before the run, sampled every 5 ms (it includes allocator
caching, so read it as an upper bound).
"""

from __future__ import annotations

import functools
import json
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..errors import InvalidInput
from ..flash import Flash
from ..models import LatentDiffusion
from ..models.full_size import FULL_SIZE_CONFIGS
from ..registry import get_solver, get_task
from ..result import Reconstruction
from ..rng import generators
from .peak_memory import PeakMemory
from .runs import check_new_file
from .stream_benchmark import markdown_modes, mixed_set, run_modes

TASK = "gaussian-blur"


@dataclass
class BenchmarkConfig:
    """One ``flash-wrap benchmark`` run."""

    config: str = "demo"
    solver: str = "latent-dps"
    batch_sizes: list[int] = field(default_factory=lambda: [1, 4])
    steps: int | None = None
    starts: list[int] | None = None
    device: str | None = None
    dtype: str = "fp32"
    gradient_checkpointing: bool = False
    compile: bool = False
    channels_last: bool = False
    seed: int = 0
    #: mixed-severity comparison of bare / fixed batches / buckets / stream on this many images
    #: (:mod:`.stream_benchmark`) instead of the per-batch-size rows
    images: int | None = None
    #: rows per batched denoiser call in that comparison
    slots: int = 16
    #: images of the mixed set (default: the shipped faces), cycled with a level and seed each
    data: str | None = None
    #: the streamed mode's window of start-step buckets (default ``8 * slots``, as ``eval``'s)
    window: int | None = None
    #: run the bare solver on only the first this many images of the set (default: all of them);
    #: its cost per image does not depend on the severity, and it is the slowest mode by far
    bare_images: int | None = None


def build_model(name: str, device: torch.device) -> tuple[LatentDiffusion, bool]:
    """``(model, trained)``: a full-size random config by name, else a bundle or pipeline folder or
    "demo"; ``trained`` is false when the model has no severity encoder of its own for the task."""
    if name in FULL_SIZE_CONFIGS:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = FULL_SIZE_CONFIGS[name]()
        model.add_severity_encoder(TASK, model.make_severity_encoder())
        return model.to(device), False
    model = LatentDiffusion.from_pretrained(name, device=device)
    if TASK in model.severity_encoders:
        return model, True
    # e.g. a diffusers pipeline folder: time it with an untrained encoder and imposed starts
    model.add_severity_encoder(TASK, model.make_severity_encoder())
    return model, False


def _timed(device: torch.device, run: Callable[[], Reconstruction]) -> tuple[Reconstruction, float, int]:
    with PeakMemory(device) as memory:
        start = time.perf_counter()
        out = run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
    return out, seconds, memory.peak


def _inputs(model: LatentDiffusion, batch: int, seed: int):
    task = get_task(TASK)
    lo, hi = task.eval_range
    levels = torch.linspace(lo, hi, batch) if batch > 1 else torch.tensor([(lo + hi) / 2])
    g = torch.Generator().manual_seed(seed)
    size = model.image_size
    coarse = torch.rand(batch, 3, max(size // 16, 2), max(size // 16, 2), generator=g)
    x = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    op = task.operator(levels, size, seed=torch.arange(batch) + seed)
    y = op.measure(x.to(model.device), generator=g)
    return y, op


def run_benchmark(config: BenchmarkConfig, *, progress: bool | None = None) -> dict:
    """Measure and return the results (also what ``flash-wrap benchmark`` writes as JSON)."""
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, trained = build_model(config.config, device)
    model.set_runtime(autocast=config.dtype, gradient_checkpointing=config.gradient_checkpointing,
                      compile=config.compile, channels_last=config.channels_last)
    cls = get_solver(config.solver)
    solver = cls(model, steps=config.steps)  # the one grid rule (flash_wrap.grid.grid_for)
    grid = solver.sampler.num_steps
    if not trained and not config.starts:
        config.starts = [max(1, round(grid * f)) for f in (0.02, 0.05, 0.1, 0.2)]
    if config.starts and not all(0 < k < grid for k in config.starts):
        raise InvalidInput(f"--starts must lie in [1, {grid - 1}], got {config.starts}")

    # warm-up: allocator, kernels (and torch.compile) outside the measurements
    y, op = _inputs(model, 1, config.seed)
    Flash(solver, fixed_start=1).reconstruct(y, op, generator=torch.Generator().manual_seed(0), progress=False)

    rows: list[dict] = []
    mixed: dict | None = None
    if config.images is not None:
        data = mixed_set(TASK, model.image_size, device, config.images, config.seed, config.data)
        starts = [config.starts[i % len(config.starts)] for i in range(config.images)] if config.starts else None
        window = config.window if config.window is not None else 8 * config.slots
        bare_images = min(config.images, config.bare_images or config.images)
        mixed = {"images": config.images, "slots": config.slots, "task": TASK, "window": window,
                 "levels": list(get_task(TASK).eval_range), "data": config.data or "shipped faces",
                 "modes": run_modes(solver, data, config.slots, device, starts, window=window,
                                    bare_images=bare_images)}
    for batch in [] if mixed is not None else config.batch_sizes:
        y, op = _inputs(model, batch, config.seed)
        seeds = [config.seed + i for i in range(batch)]
        bare, t_bare, m_bare = _timed(
            device, functools.partial(solver.reconstruct, y, op, generator=generators(seeds), progress=progress)
        )
        # an untrained model always has starts (the defaults above)
        starts = [config.starts[i % len(config.starts)] for i in range(batch)] if config.starts else None
        flash = Flash(solver, fixed_start=starts)
        fast, t_fast, m_fast = _timed(
            device, functools.partial(flash.reconstruct, y, op, generator=generators(seeds), progress=progress)
        )
        per_step = t_bare / (batch * grid)
        ideal = per_step * float(fast.nfe.sum())
        rows.append({
            "batch_size": batch,
            "baseline": {"seconds_per_image": t_bare / batch, "nfe_mean": float(bare.nfe.float().mean()),
                         "peak_memory_mb": m_bare / 2**20},
            "flash": {"seconds_per_image": t_fast / batch, "nfe_mean": float(fast.nfe.float().mean()),
                      "nfe": fast.nfe.tolist(), "peak_memory_mb": m_fast / 2**20},
            "speedup": t_bare / t_fast,
            "nfe_ratio": float(bare.nfe.sum()) / float(fast.nfe.sum()),
            "mixed_batch_efficiency": ideal / t_fast,
        })
    return {
        "config": asdict(config),
        "device": _device_name(device),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "sampler": solver.grid.kind,
        "steps": grid,
        "ddim_eta": solver.grid.eta,
        "image_size": model.image_size,
        "latent_shape": list(model.latent_shape),
        "parameters_millions": {
            "denoiser": sum(p.numel() for p in model.denoiser.parameters()) / 1e6,
            "autoencoder": sum(p.numel() for p in model.autoencoder.parameters()) / 1e6,
        },
        "starts": "adaptive (severity encoder)" if trained and not config.starts else config.starts,
        **({"rows": rows} if mixed is None else {"mixed": mixed}),
    }


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    threads = torch.get_num_threads()
    return f"CPU ({platform.processor() or platform.machine()}, {threads} thread{'s' if threads > 1 else ''})"


def markdown(result: dict) -> str:
    """The benchmark as a Markdown table (one row per batch size, or per mode of the mixed set)."""
    cfg = result["config"]
    eta = "" if result.get("ddim_eta") is None else f" (η={result['ddim_eta']:g})"
    options = "".join(f", {name}" for name, key in (("gradient checkpointing", "gradient_checkpointing"),
                                                     ("compiled", "compile"), ("channels-last", "channels_last"))
                      if cfg.get(key))
    head = (f"{cfg['solver']} on `{cfg['config']}` ({result['image_size']}² images, latents "
            f"{'×'.join(map(str, result['latent_shape']))}), {result['sampler'].upper()}-{result['steps']}{eta}, "
            f"{cfg['dtype']}{options}, {result['device']}, torch {result['torch']}, {result['date']}; "
            f"Flash starts: {result['starts']}\n\n")
    if "mixed" in result:
        return head + markdown_modes(result["mixed"])
    lines = ["| batch | bare s/img | Flash s/img | speed-up | NFE bare / Flash | bare peak MB | Flash peak MB "
             "| mixed-batch efficiency |", "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        b, f = r["baseline"], r["flash"]
        lines.append(
            f"| {r['batch_size']} | {b['seconds_per_image']:.3f} | {f['seconds_per_image']:.3f} | {r['speedup']:.1f}x "
            f"| {b['nfe_mean']:.0f} / {f['nfe_mean']:.1f} | {b['peak_memory_mb']:.0f} | {f['peak_memory_mb']:.0f} "
            f"| {r['mixed_batch_efficiency']:.2f} |"
        )
    return head + "\n".join(lines)


def benchmark(config: BenchmarkConfig, out: str | Path | None = None, *, progress: bool | None = None,
              force: bool = False) -> dict:
    """Run, write ``out`` (JSON) if given, and return the results; ``out`` is checked before the
    run and an existing file is replaced only with ``force``."""
    if out is not None:
        check_new_file(out, force=force)
    result = run_benchmark(config, progress=progress)
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=2))
    return result


__all__: Sequence[str] = ["BenchmarkConfig", "PeakMemory", "benchmark", "markdown", "run_benchmark"]
