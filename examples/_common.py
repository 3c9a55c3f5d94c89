"""Plumbing shared by the examples: command-line arguments, reading the shipped faces and the
printed table (figures come from :mod:`flash_wrap.figures`). Every example shows the
whole public-API flow (model, operator, measurement, solver, Flash, metrics) itself.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

import torch

import flash_wrap
from flash_wrap.figures import save_figure, severity_panel
from flash_wrap.images import load_images

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
    """The faces of ``folder`` as ``(N, 3, size, size)`` float32 in [0, 1], loaded by flash-wrap's
    one image loader (:func:`flash_wrap.images.load_images`: centre crop, resize)."""
    return load_images(folder, size, limit)


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


__all__ = ["FACES_DIR", "load_faces", "parse_args", "print_summary", "print_table", "save_figure",
           "severity_panel"]
