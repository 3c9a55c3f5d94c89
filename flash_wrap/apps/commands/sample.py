"""``flash-wrap sample``: unconditional samples from a model's prior, as a PNG grid."""

from __future__ import annotations

import argparse

from ..arguments import POSITIVE, SEED
from ..options import given

NAME = "sample"
HELP = "draw unconditional samples from a model's prior into a PNG grid"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="demo", help="model bundle folder, or 'demo'")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--force", action="store_true", default=argparse.SUPPRESS, help="overwrite --out if it exists")
    parser.add_argument("-n", type=POSITIVE, default=argparse.SUPPRESS, help="number of samples")
    parser.add_argument("--steps", type=POSITIVE, default=argparse.SUPPRESS,
                        help="DDPM over every timestep (the default) or DDIM with fewer steps")
    parser.add_argument("--seed", type=SEED, default=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    from ..sample import sample_grid

    path = sample_grid(args.model, args.out, **given(args, ("n", "seed", "steps", "force")))
    print(f"wrote {path}")
    return 0
