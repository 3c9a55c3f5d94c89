"""Plumbing shared by the examples: command-line arguments, reading the shipped faces, the
figure and the printed table. Nothing here calls flash-wrap: every example shows the whole
public-API flow (model, operator, measurement, solver, Flash, metrics) itself.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import flash_wrap

#: The three 256×256 FFHQ faces shipped with flash-wrap for the demo (see their ATTRIBUTION.md).
FACES_DIR = Path(flash_wrap.__file__).resolve().parent / "assets" / "faces"


def parse_args(name: str, doc: str, *, extra=None) -> argparse.Namespace:
    """The common options: ``--out``, ``--solver``, ``--steps``, ``--seed``, ``--quick``.

    ``--steps`` defaults to 100 (10 with ``--quick``); ``extra(parser)`` may add more options.
    """
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("examples-output") / f"{name}.png",
                        help="figure to write (default: %(default)s)")
    parser.add_argument("--solver", default="latent-dps",
                        help="registered solver name (flash-wrap solvers); only latent-dps has step sizes "
                             "tuned for the demo model (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=None,
                        help="DDIM grid length used by the baseline and by Flash (default 100, 10 with --quick); "
                             "0 = the solver's own sampler (DDPM, 1000 steps for latent-dps: about 10x slower)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the measurement noise and of the solvers")
    parser.add_argument("--quick", action="store_true", help="one face, DDIM 10 steps: a few seconds (for tests)")
    if extra is not None:
        extra(parser)
    args = parser.parse_args()
    if args.steps is None:
        args.steps = 10 if args.quick else 100
    if args.steps < 0:
        parser.error("--steps must be >= 0")
    return args


def load_faces(size: int, limit: int | None = None, folder: Path = FACES_DIR) -> torch.Tensor:
    """The faces of ``folder`` as ``(N, 3, size, size)`` float32 in [0, 1] (centre crop, bicubic resize).

    flash-wrap never resizes silently: images must already have the model's size.
    """
    images = []
    for path in sorted(folder.glob("*.png"))[:limit]:
        with Image.open(path) as img:
            img = img.convert("RGB")
            side = min(img.size)
            left, top = (img.width - side) // 2, (img.height - side) // 2
            img = img.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BICUBIC)
            images.append(torch.from_numpy(np.array(img, dtype=np.float32) / 255.0).permute(2, 0, 1))
    if not images:
        raise FileNotFoundError(f"no PNG images in {folder}")
    return torch.stack(images)


def sampler_name(steps: int) -> str:
    return f"DDIM {steps} steps" if steps else "the solver's own sampler"


# -- figure ------------------------------------------------------------------------------------
Column = tuple[str, torch.Tensor, Sequence[str]]  # (header, (B, 3|1, h, w) images, one caption per row)


def save_figure(path: Path, title: str, columns: list[Column], *, row_labels: Sequence[str] | None = None,
                panel=None) -> Path:
    """One row per sample, one column per ``(header, images, captions)``; the caption goes under
    each image. ``panel(ax)``, if given, draws an extra plot to the right spanning all rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = columns[0][1].shape[0]
    cols = len(columns)
    extra = 3 if panel is not None else 0
    width = 1.3 * cols + (1.3 * extra if panel is not None else 0)
    height = 1.55 * rows + 0.7
    fig = plt.figure(figsize=(width, max(height, 3.2 if panel is not None else 0)))
    grid = fig.add_gridspec(rows, cols + extra)
    for j, (header, images, captions) in enumerate(columns):
        for i in range(rows):
            ax = fig.add_subplot(grid[i, j])
            img = images[i].detach().float().clamp(0, 1).cpu()
            if img.shape[0] == 1:
                ax.imshow(img[0].numpy(), cmap="gray", interpolation="nearest")
            else:
                ax.imshow(img.permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(captions[i], fontsize=6.5, labelpad=2)
            if i == 0:
                ax.set_title(header, fontsize=7.5)
            if j == 0 and row_labels is not None:
                ax.set_ylabel(row_labels[i], fontsize=7)
    if panel is not None:
        ax = fig.add_subplot(grid[:, cols + 1:])
        panel(ax)
    fig.suptitle(title, fontsize=8.5)
    fig.tight_layout(pad=0.3, h_pad=0.4, w_pad=0.2, rect=(0, 0, 1, 0.97 if rows > 2 else 0.93))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight", pad_inches=0.08)
    plt.close(fig)
    return path


def severity_panel(xlabel: str, severity: torch.Tensor, sigma_hat: torch.Tensor, nfe: torch.Tensor,
                   sweep: tuple[torch.Tensor, torch.Tensor] | None = None):
    """A ``panel`` for :func:`save_figure`: σ̂ (left axis) and Flash NFE (right axis) against the
    true severity; ``sweep = (severities, σ̂)`` adds the encoder's σ̂ on a dense grid."""

    def draw(ax) -> None:
        if sweep is not None:
            ax.plot(sweep[0].numpy(), sweep[1].numpy(), color="tab:blue", alpha=0.35, lw=1,
                    label="σ̂, dense sweep")
        ax.plot(severity.numpy(), sigma_hat.numpy(), "o", color="tab:blue", ms=4, label="σ̂ (images shown)")
        ax.set_xlabel(xlabel, fontsize=7)
        ax.set_ylabel("predicted severity σ̂", fontsize=7, color="tab:blue")
        ax.tick_params(labelsize=6)
        twin = ax.twinx()
        twin.plot(severity.numpy(), nfe.float().numpy(), "s", color="tab:red", ms=4, label="Flash NFE")
        twin.set_ylabel("Flash NFE", fontsize=7, color="tab:red")
        twin.tick_params(labelsize=6)
        low, high = float(nfe.min()), float(nfe.max())
        twin.set_ylim(max(low - 2, 0), high + 2)
        handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
        ax.legend(handles=handles, fontsize=6, loc="upper left")
        ax.set_title("σ̂ and Flash NFE vs true severity", fontsize=7.5)

    return draw


# -- table -------------------------------------------------------------------------------------
def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A Markdown table (floats with 2 or 3 significant decimals)."""

    def cell(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.3f}" if abs(v) < 1 else f"{v:.2f}"
        return str(v)

    print("| " + " | ".join(headers) + " |")
    print("|" + "---|" * len(headers))
    for row in rows:
        print("| " + " | ".join(cell(v) for v in row) + " |")


def print_summary(baseline_nfe: torch.Tensor, flash_nfe: torch.Tensor, baseline_psnr: torch.Tensor,
                  flash_psnr: torch.Tensor, baseline_seconds: float, flash_seconds: float) -> None:
    """One line the tests parse: mean NFE, PSNR and wall time, baseline vs Flash."""
    b, f = float(baseline_nfe.float().mean()), float(flash_nfe.float().mean())
    ratio = b / f if f > 0 else math.inf
    print(f"mean NFE: baseline {b:.1f} | Flash {f:.1f} ({ratio:.1f}x fewer); "
          f"mean PSNR: baseline {float(baseline_psnr.mean()):.2f} dB | Flash {float(flash_psnr.mean()):.2f} dB; "
          f"time: baseline {baseline_seconds:.1f} s | Flash {flash_seconds:.1f} s")
