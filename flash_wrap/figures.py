"""Figures for users and examples: a PNG grid of images and captioned panel figures (one row per
sample, one column per method, an optional plot beside them).

matplotlib is imported inside the functions that draw with it (:func:`pyplot`), so importing this
module is cheap.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .images import to_uint8

__all__ = ["Column", "image_grid", "pyplot", "save_figure", "severity_panel"]


def image_grid(images: torch.Tensor, columns: int | None = None, pad: int = 2) -> Image.Image:
    """Tile ``(B, 3, H, W)`` images in [0, 1] into one RGB image, white gaps of ``pad`` pixels."""
    pixels = to_uint8(images)
    b, h, w, _ = pixels.shape
    cols = columns or math.ceil(math.sqrt(b))
    rows = math.ceil(b / cols)
    canvas = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for i in range(b):
        r, c = divmod(i, cols)
        canvas[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = pixels[i]
    return Image.fromarray(canvas)


def pyplot():
    """matplotlib's ``pyplot`` on the non-interactive Agg backend (figures are only ever saved)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# -- captioned panels (demo, examples) ---------------------------------------------------------
Column = tuple[str, torch.Tensor, Sequence[str]]  # (header, (B, 3|1, h, w) images, one caption per row)


def save_figure(path: str | Path, title: str, columns: list[Column], *, row_labels: Sequence[str] | None = None,
                panel: Callable | None = None) -> Path:
    """One row per sample, one column per ``(header, images, captions)``; the caption goes under
    each image. ``panel(ax)``, if given, draws an extra plot to the right spanning all rows.
    Writes a PNG to ``path`` (parent folders created) and returns it."""
    plt = pyplot()
    path = Path(path)

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
