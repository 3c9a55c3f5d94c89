"""The demo's figures: one row per (task, level[, face]), five titled columns (clean | degraded |
D(ẑ) | bare | Flash), the PSNR and NFE under every tile and the degradation at the left of its row.

``demo.png`` shows the first face of each row, every tile at twice the model's resolution, and
stays within :data:`MAX_WIDTH_PX` so it reads without any other text; ``demo_full.png`` has the
same layout with one row per face.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..registry import get_task

if TYPE_CHECKING:
    from .demo import TaskResult

#: The columns, left to right.
COLUMNS = ("clean", "degraded", "D(ẑ): encoder only", "bare solver", "Flash")
#: Widest ``demo.png`` may be (pixels), so it reads on a laptop screen or a README page.
MAX_WIDTH_PX = 1600
#: Resolution of the saved figures; a tile is ``TILE_SCALE × image_size`` pixels wide.
DPI = 100
TILE_SCALE = 2
#: Inches beside and around the tiles: the row labels on the left, a caption under each tile,
#: the column titles and the figure title on top.
LABEL_IN, CAPTION_IN, HEADER_IN, GAP_IN = 2.1, 0.5, 1.0, 0.06


@dataclass(frozen=True)
class FigureRow:
    """One row of tiles: sample ``index`` of ``result`` (a task at one level, one face)."""

    result: TaskResult
    index: int

    def label(self, with_face: bool) -> str:
        r, i = self.result, self.index
        what = get_task(r.task).describe(float(r.severity[i]))
        face = f"\nface {i % r.n_faces + 1}" if with_face else ""
        return f"{r.task}\nt = {float(r.levels[i]):.3g}\n{what}{face}"

    def tiles(self) -> list[tuple[torch.Tensor | None, str]]:
        """The five ``(3, H, W)`` images in [0, 1] and their captions (PSNR against clean, NFE);
        the bare solver's image is ``None`` for a face it did not run on."""
        r, i = self.result, self.index
        b = r.baseline_row(i)
        bare = ((None, "not run on this face") if b is None else
                (r.baseline[b], f"{float(r.baseline_psnr[b]):.1f} dB · NFE {int(r.baseline_nfe[b])}"))
        return [
            (r.clean[i], "reference"),
            (r.degraded[i], f"{float(r.degraded_psnr[i]):.1f} dB"),
            (r.autoencoder[i], f"{float(r.autoencoder_psnr[i]):.1f} dB · NFE 0"),
            bare,
            (r.flash[i], f"{float(r.flash_psnr[i]):.1f} dB · NFE {int(r.flash_nfe[i])}"),
        ]


def figure_rows(results: Sequence[TaskResult], all_faces: bool) -> list[FigureRow]:
    """Task by task, level by level: the first face of each level, or every face (``all_faces``)."""
    rows = []
    for r in results:
        for k in range(len(r.task_levels)):
            picks = range(r.n_faces) if all_faces else range(1)
            rows += [FigureRow(r, k * r.n_faces + f) for f in picks]
    return rows


def grid_figure(rows: Sequence[FigureRow], path: Path, title: str, *, with_face: bool) -> Path:
    """Draw ``rows`` (five tiles each, :data:`COLUMNS`) into a PNG at ``path`` and return it; a tile is
    ``TILE_SCALE × H`` pixels, so a 128² model gives a 1540 px wide figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = rows[0].result.clean.shape[-1]
    tile = TILE_SCALE * size / DPI  # inches
    pitch = tile + GAP_IN
    width = LABEL_IN + len(COLUMNS) * pitch + 0.2
    height = HEADER_IN + len(rows) * (tile + CAPTION_IN)
    fig = plt.figure(figsize=(width, height), dpi=DPI)
    fig.suptitle(title, fontsize=12, y=1 - 0.2 / height, va="top")
    for j, head in enumerate(COLUMNS):
        fig.text((LABEL_IN + j * pitch + tile / 2) / width, 1 - (HEADER_IN - 0.15) / height, head,
                 ha="center", va="bottom", fontsize=14, fontweight="bold")
    for i, row in enumerate(rows):
        top = HEADER_IN + i * (tile + CAPTION_IN)
        fig.text(0.1 / width, 1 - (top + tile / 2) / height, row.label(with_face), ha="left", va="center",
                 fontsize=12)
        for j, (image, caption) in enumerate(row.tiles()):
            ax = fig.add_axes(((LABEL_IN + j * pitch) / width, 1 - (top + tile) / height, tile / width,
                               tile / height))
            if image is None:
                ax.set_facecolor("0.9")
            else:
                ax.imshow(image.detach().permute(1, 2, 0).clamp(0, 1).cpu().numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(caption, fontsize=12, labelpad=3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def demo_figures(results: Sequence[TaskResult], out: Path, title: str) -> tuple[Path, Path]:
    """Write ``demo.png`` (the first face of every task and level) and ``demo_full.png`` (every face)
    into ``out``; returns both paths."""
    compact = grid_figure(figure_rows(results, all_faces=False), out / "demo.png", title, with_face=False)
    full = grid_figure(figure_rows(results, all_faces=True), out / "demo_full.png", title, with_face=True)
    return compact, full
