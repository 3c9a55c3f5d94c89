"""The figures of the commands: the evaluation plots (σ̂ vs severity, start-step histogram, PSNR vs
NFE, example grid) and the tuning curve (PSNR vs η), drawn from the commands' JSON results.

The public figure helpers (image grids, captioned panels) are :mod:`flash_wrap.figures`.
"""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image

from ..figures import pyplot


# -- evaluation figures ---------------------------------------------------------------------
def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    pyplot().close(fig)
    return path


def severity_scatter(result: dict, path: Path) -> Path:
    """σ̂ against the true severity level, with Spearman and ordering accuracy in the title."""
    images = result["images"]
    fig, ax = pyplot().subplots(figsize=(4.2, 3.4))
    ax.scatter([r["severity"] for r in images], [r["sigma_hat"] for r in images], s=14, alpha=0.8)
    sev = result["severity"]
    rho = "n/a" if sev["spearman"] is None else f"{sev['spearman']:.3f}"
    oa = "n/a" if sev["ordering_accuracy"] is None else f"{sev['ordering_accuracy']:.3f}"
    ax.set(xlabel=f"true severity level t ({result['task']})", ylabel="predicted σ̂ (error variance)",
           title=f"Spearman {rho}, ordering accuracy {oa}")
    ax.title.set_fontsize(9)
    return _save(fig, path)


def start_histogram(result: dict, path: Path) -> Path:
    """Histogram of Flash's start steps."""
    starts = [r["start_step"] for r in result["images"]]
    fig, ax = pyplot().subplots(figsize=(4.2, 3.2))
    ax.hist(starts, bins=min(30, max(5, len(set(starts)))), color="tab:orange")
    ax.set(xlabel=f"start step s (of {result['steps']}, {result['scheduler']})", ylabel="images",
           title=f"Flash start steps, mean NFE {result['methods']['flash']['nfe_mean']:.1f}")
    ax.title.set_fontsize(9)
    return _save(fig, path)


def psnr_vs_nfe(result: dict, path: Path) -> Path:
    """The paper's adaptivity figure: fixed starts as a curve, Flash as one point at its mean NFE."""
    methods = result["methods"]
    fig, ax = pyplot().subplots(figsize=(4.4, 3.4))
    fixed = sorted((int(m.rsplit("_", 1)[1]), v) for m, v in methods.items() if m.startswith("fixed_start_"))
    if fixed:
        ax.plot([k for k, _ in fixed], [v["psnr"] for _, v in fixed], "o-", color="tab:gray", label="fixed start")
    if "baseline" in methods:
        own = (result.get("baseline_grid") or {}).get("label")  # eval --baseline-steps: the bare run's own grid
        label = "baseline" if not own or own == result.get("grid") else f"baseline ({own})"
        ax.plot(methods["baseline"]["nfe_mean"], methods["baseline"]["psnr"], "s", color="tab:blue", label=label)
    ax.plot(methods["flash"]["nfe_mean"], methods["flash"]["psnr"], "*", ms=13, color="tab:red", label="Flash")
    ax.set(xlabel="NFE (mean per image)", ylabel="PSNR (dB)", title=f"{result['solver']} on {result['task']}")
    if any(v["nfe_mean"] > 0 for v in methods.values()):
        ax.set_xscale("symlog", linthresh=1)
    ax.legend(fontsize=8)
    return _save(fig, path)


def example_grid(out: Path, result: dict, path: Path) -> Path | None:
    """Rows of clean | degraded | each method from ``out/examples``, PSNR and NFE under each."""
    folder = out / "examples"
    stems = sorted({p.name.split("__")[0] for p in folder.glob("*__clean.png")})
    if not stems:
        return None
    columns = ["clean", "degraded", *result["methods"]]
    fig, axes = pyplot().subplots(len(stems), len(columns), figsize=(1.5 * len(columns), 1.6 * len(stems)), squeeze=False)
    by_name = {r["name"]: r for r in result["images"]}
    for i, stem in enumerate(stems):
        for j, col in enumerate(columns):
            ax = axes[i, j]
            file = folder / f"{stem}__{col}.png"
            if file.is_file():
                with Image.open(file) as img:
                    ax.imshow(img.copy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(col.replace("fixed_start_", "fixed "), fontsize=7)
            record = by_name.get(stem)
            if record and col in record["psnr"]:
                ax.set_xlabel(f"{record['psnr'][col]:.1f} dB, NFE {record['nfe'][col]}", fontsize=6)
    return _save(fig, path)


def tune_curve(result: dict, path: Path) -> Path:
    """``flash-wrap tune``: mean PSNR against the step size η, one line per noise-correction
    constant c, the best configuration starred (``result`` is ``tune.json``'s content; a
    configuration that diverged on some image leaves a gap). No error bars: every configuration
    sees the same images and noise, so the spread across images (in the table) says little about
    the difference between configurations."""
    grid = result["grid"]
    fig, ax = pyplot().subplots(figsize=(4.6, 3.4))
    # a bare run (tune --baseline) has no noise correction: its rows carry c = None
    for c in sorted({g["c"] for g in grid}, key=lambda c: -1.0 if c is None else c):
        rows = sorted((g for g in grid if g["c"] == c), key=lambda g: g["eta"])
        means = [math.nan if g["psnr_mean"] is None else g["psnr_mean"] for g in rows]
        ax.plot([g["eta"] for g in rows], means, "o-", ms=4, label="bare solver" if c is None else f"c = {c:g}")
    best = result["best"]
    if best is not None:
        shown = f"η = {best['eta']:g}" + ("" if best["c"] is None else f", c = {best['c']:g}")
        ax.plot(best["eta"], best["psnr_mean"], "*", ms=14, color="tab:red", zorder=3, label=f"best: {shown}")
    etas = sorted({g["eta"] for g in grid})
    if max(etas) >= 10 * min(etas):
        ax.set_xscale("log")
    if len(etas) <= 12:
        ax.set_xticks(etas, [f"{eta:g}" for eta in etas])
        ax.minorticks_off()
    ax.set(xlabel="step size η", ylabel="mean PSNR (dB)",
           title=f"{result['solver']} on {result['task']}, {result['sampler']}, {result['n_images']} images")
    ax.title.set_fontsize(8.5)
    ax.legend(fontsize=7)
    return _save(fig, path)


def write_figures(out: Path, result: dict) -> list[Path]:
    """The evaluation figures of ``result`` (``results.json``'s content) into the folder ``out``."""
    paths = [
        severity_scatter(result, out / "sigma_hat_vs_severity.png"),
        start_histogram(result, out / "start_steps.png"),
        psnr_vs_nfe(result, out / "psnr_vs_nfe.png"),
        example_grid(out, result, out / "examples.png"),
    ]
    return [p for p in paths if p is not None]
