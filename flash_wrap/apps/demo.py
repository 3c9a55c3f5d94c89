"""``flash-wrap demo``: every task at two severities on the shipped faces, baseline vs Flash.

Writes one figure (clean | degraded | baseline | Flash per task, with NFE, σ̂ and PSNR under
each image) and prints a table. On the demo model this takes a few minutes on a laptop CPU.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..flash import Flash
from ..models import LatentDiffusion
from ..models.bundle_io import resolve as resolve_bundle
from ..operators import get_task
from ..registry import get_solver
from .images import load_images
from .metrics import psnr
from .runs import check_output_folder

log = logging.getLogger(__name__)

FACES_DIR = Path(__file__).resolve().parents[1] / "assets" / "faces"
DEMO_TASKS = ("gaussian-blur", "random-inpainting", "motion-blur", "super-resolution")
#: Two severities per task, as fractions of the task's evaluation range (mild, severe).
DEMO_LEVELS = (0.15, 0.9)


@dataclass
class TaskResult:
    """One task's images ``(B, 3, H, W)`` and per-sample numbers, B = faces × severities."""

    task: str
    levels: torch.Tensor
    clean: torch.Tensor
    degraded: torch.Tensor
    baseline: torch.Tensor
    flash: torch.Tensor
    baseline_nfe: torch.Tensor
    flash_nfe: torch.Tensor
    sigma_hat: torch.Tensor
    baseline_psnr: torch.Tensor
    flash_psnr: torch.Tensor
    baseline_seconds: float
    flash_seconds: float


def run_task(model: LatentDiffusion, task_name: str, faces: torch.Tensor, *, solver: str, steps: int | None,
             seed: int, progress: bool | None = None) -> TaskResult:
    """Degrade each face at the two demo severities and reconstruct with the bare solver and Flash."""
    task = get_task(task_name)
    lo, hi = task.eval_range
    n = faces.shape[0]
    levels = torch.tensor([lo + f * (hi - lo) for f in DEMO_LEVELS]).repeat_interleave(n)
    clean = faces.repeat(len(DEMO_LEVELS), 1, 1, 1)
    operator = task.operator(levels, model.image_size, seed=torch.arange(len(levels)) + seed)
    y = operator.measure(clean, generator=torch.Generator().manual_seed(seed))
    bare = get_solver(solver)(model, steps=steps)  # the one grid rule: steps < T is DDIM with the solver's η
    gens = lambda: [torch.Generator().manual_seed(seed + i) for i in range(len(levels))]  # noqa: E731

    start = time.perf_counter()
    base = bare.reconstruct(y, operator, generator=gens(), progress=progress)
    baseline_seconds = time.perf_counter() - start
    start = time.perf_counter()
    fast = Flash(bare).reconstruct(y, operator, generator=gens(), progress=progress)
    flash_seconds = time.perf_counter() - start
    return TaskResult(
        task_name, levels, clean, operator.to_image(y).clamp(0, 1), base.images, fast.images, base.nfe, fast.nfe,
        fast.sigma_hat, psnr(base.images, clean), psnr(fast.images, clean), baseline_seconds, flash_seconds,
    )


def demo_figure(results: list[TaskResult], path: Path, title: str) -> Path:
    """Rows = (severity, face); for each task four columns: clean | degraded | baseline | Flash."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results[0].clean.shape[0]
    cols = 4 * len(results)
    fig, axes = plt.subplots(rows, cols, figsize=(1.25 * cols, 1.55 * rows + 0.6), squeeze=False)
    for t, r in enumerate(results):
        for i in range(rows):
            panels = [
                (r.clean[i], "clean" if i == 0 else "", f"t={float(r.levels[i]):.2f}"),
                (r.degraded[i], "degraded", f"{float(psnr(r.degraded[i:i + 1], r.clean[i:i + 1])):.1f} dB"),
                (r.baseline[i], "baseline", f"{float(r.baseline_psnr[i]):.1f} dB\nNFE {int(r.baseline_nfe[i])}"),
                (r.flash[i], "Flash", f"{float(r.flash_psnr[i]):.1f} dB\nNFE {int(r.flash_nfe[i])}"
                 f" σ̂ {float(r.sigma_hat[i]):.2f}"),
            ]
            for j, (img, head, caption) in enumerate(panels):
                ax = axes[i, 4 * t + j]
                ax.imshow(img.permute(1, 2, 0).clamp(0, 1).cpu().numpy(), interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_xlabel(caption, fontsize=6.5, labelpad=2)
                if i == 0:
                    ax.set_title(f"{r.task}\n{head}" if j == 0 else head, fontsize=7.5)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(pad=0.3, h_pad=0.4, w_pad=0.2, rect=(0, 0, 1, 0.96))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def format_table(results: list[TaskResult]) -> str:
    """Markdown table: per task and severity, PSNR and NFE of baseline and Flash."""
    lines = ["| task | level t | σ̂ (mean) | baseline PSNR | Flash PSNR | baseline NFE | Flash NFE | speed-up (s) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        n = r.clean.shape[0] // len(DEMO_LEVELS)
        for k in range(len(DEMO_LEVELS)):
            rows = slice(k * n, (k + 1) * n)
            lines.append(
                f"| {r.task} | {float(r.levels[rows][0]):.2f} | {float(r.sigma_hat[rows].mean()):.3f} "
                f"| {float(r.baseline_psnr[rows].mean()):.2f} | {float(r.flash_psnr[rows].mean()):.2f} "
                f"| {float(r.baseline_nfe[rows].float().mean()):.0f} | {float(r.flash_nfe[rows].float().mean()):.1f} "
                f"| {r.baseline_seconds / max(r.flash_seconds, 1e-9):.1f}x |"
            )
    return "\n".join(lines)


def run_demo(*, model: str = "demo", out: str | Path = "flash-demo", solver: str = "latent-dps",
             steps: int | None = 100, faces: str | Path | None = None, n_faces: int | None = None,
             tasks: tuple[str, ...] = DEMO_TASKS, seed: int = 0, progress: bool | None = True) -> dict:
    """Run the demo; returns paths and the table. ``steps=None`` uses the solver's own sampler;
    any ``steps`` goes through the one grid rule (:func:`flash_wrap.grid.grid_for`)."""
    out = check_output_folder(out, inputs=[faces or FACES_DIR, resolve_bundle(model)])
    bundle = LatentDiffusion.from_pretrained(model).set_runtime(channels_last=True)  # ~20 % faster, same results
    available = [t for t in tasks if t in bundle.severity_encoders]
    if not available:
        raise ValueError(f"the model has no severity encoder for any of {tasks}; train one with flash-wrap train-severity")
    skipped = [t for t in tasks if t not in available]
    if skipped:
        log.warning("demo: the model has no severity encoder for %s; showing %s only", ", ".join(skipped),
                    ", ".join(available))
    images = load_images(faces or FACES_DIR, bundle.image_size, n_faces)
    results = [run_task(bundle, t, images, solver=solver, steps=steps, seed=seed, progress=progress)
               for t in available]
    sampler = get_solver(solver)(bundle, steps=steps).grid.label()
    figure = demo_figure(results, out / "demo.png",
                         f"{solver} ({sampler}) bare vs Flash on {bundle.image_size}² faces, σ_y = 0.05")
    table = f"{solver}, {sampler}, bare vs Flash\n\n" + format_table(results)
    (out / "demo.md").write_text(table + "\n")
    return {"figure": figure, "table": table, "results": results, "grid": sampler}
