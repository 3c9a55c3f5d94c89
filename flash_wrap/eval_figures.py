"""Evaluation figures: σ̂ vs true severity, start-step histogram, PSNR vs NFE, example grid."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def severity_scatter(result: dict, path: Path) -> Path:
    images = result["images"]
    fig, ax = plt.subplots(figsize=(4.2, 3.4))
    ax.scatter([r["severity"] for r in images], [r["sigma_hat"] for r in images], s=14, alpha=0.8)
    sev = result["severity"]
    rho = "n/a" if sev["spearman"] is None else f"{sev['spearman']:.3f}"
    ax.set(xlabel=f"true severity level t ({result['task']})", ylabel="predicted σ̂ (error variance)",
           title=f"Spearman {rho}, ordering accuracy {sev['ordering_accuracy']:.3f}")
    ax.title.set_fontsize(9)
    return _save(fig, path)


def start_histogram(result: dict, path: Path) -> Path:
    starts = [r["start_step"] for r in result["images"]]
    fig, ax = plt.subplots(figsize=(4.2, 3.2))
    ax.hist(starts, bins=min(30, max(5, len(set(starts)))), color="tab:orange")
    ax.set(xlabel=f"start step s (of {result['steps']}, {result['scheduler']})", ylabel="images",
           title=f"Flash start steps, mean NFE {result['methods']['flash']['nfe_mean']:.1f}")
    ax.title.set_fontsize(9)
    return _save(fig, path)


def psnr_vs_nfe(result: dict, path: Path) -> Path:
    """The paper's adaptivity figure: fixed starts as a curve, Flash as one point at its mean NFE."""
    methods = result["methods"]
    fig, ax = plt.subplots(figsize=(4.4, 3.4))
    fixed = sorted((int(m.rsplit("_", 1)[1]), v) for m, v in methods.items() if m.startswith("fixed_start_"))
    if fixed:
        ax.plot([k for k, _ in fixed], [v["psnr"] for _, v in fixed], "o-", color="tab:gray", label="fixed start")
    if "baseline" in methods:
        ax.plot(methods["baseline"]["nfe_mean"], methods["baseline"]["psnr"], "s", color="tab:blue", label="baseline")
    ax.plot(methods["flash"]["nfe_mean"], methods["flash"]["psnr"], "*", ms=13, color="tab:red", label="Flash")
    ax.set(xlabel="NFE (mean per image)", ylabel="PSNR (dB)", title=f"{result['solver']} on {result['task']}")
    if any(v["nfe_mean"] > 0 for v in methods.values()):
        ax.set_xscale("symlog", linthresh=1)
    ax.legend(fontsize=8)
    return _save(fig, path)


def example_grid(out: Path, result: dict, path: Path) -> Path | None:
    folder = out / "examples"
    stems = sorted({p.name.split("__")[0] for p in folder.glob("*__clean.png")})
    if not stems:
        return None
    columns = ["clean", "degraded", *result["methods"]]
    fig, axes = plt.subplots(len(stems), len(columns), figsize=(1.5 * len(columns), 1.6 * len(stems)), squeeze=False)
    by_name = {Path(r["name"]).stem: r for r in result["images"]}
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


def write_figures(out: Path, result: dict) -> list[Path]:
    paths = [
        severity_scatter(result, out / "sigma_hat_vs_severity.png"),
        start_histogram(result, out / "start_steps.png"),
        psnr_vs_nfe(result, out / "psnr_vs_nfe.png"),
        example_grid(out, result, out / "examples.png"),
    ]
    return [p for p in paths if p is not None]
