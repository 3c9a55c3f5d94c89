"""``flash-wrap demo``: degraded input, D(z), baseline and Flash on the shipped faces."""

from __future__ import annotations

import argparse

from ..arguments import NON_NEGATIVE, POSITIVE, SEED
from ..options import given
from ..precheck import check_input_folder, check_model_path, check_solver_name

NAME = "demo"
HELP = ("degraded input, autoencoder-only D(z), baseline and Flash on the shipped faces, every task at an easy and "
        "a hard severity")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=argparse.SUPPRESS, help="model bundle folder, or 'demo' (shipped, the default)")
    parser.add_argument("--out", default=argparse.SUPPRESS, help="output folder for demo.png, demo_full.png, demo.md and demo.json")
    parser.add_argument("--solver", default=argparse.SUPPRESS)
    parser.add_argument("--steps", type=NON_NEGATIVE, default=argparse.SUPPRESS,
                        help="DDIM steps for both baseline and Flash (default: the demo's own, named in its table "
                             "header; 0: the solver's own sampler, DDPM-1000: slow)")
    parser.add_argument("--faces", default=argparse.SUPPRESS, help="folder of face images (default: the shipped faces)")
    parser.add_argument("--n-faces", type=POSITIVE, default=argparse.SUPPRESS,
                        help="use the first N faces of the folder (default: the demo's own number, recorded in "
                             "demo.json)")
    parser.add_argument("--baseline-faces", type=NON_NEGATIVE, default=argparse.SUPPRESS,
                        help="run the bare solver on the first N of those faces only (default: the demo's own "
                             "number, recorded in demo.json; 0: all); it takes every grid step, most of the time")
    parser.add_argument("--seed", type=SEED, default=argparse.SUPPRESS)
    parser.add_argument("--force", action="store_true", default=argparse.SUPPRESS,
                        help="overwrite the demo.png, demo_full.png, demo.md and demo.json of --out")


def check(args: argparse.Namespace) -> None:
    if hasattr(args, "solver"):
        check_solver_name(args.solver)
    if hasattr(args, "faces"):
        check_input_folder(args.faces, "--faces")
    if hasattr(args, "model"):
        check_model_path(args.model)


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    options = given(args, ("model", "out", "solver", "faces", "n_faces", "baseline_faces", "seed", "steps", "force"))
    if "steps" in options:
        options["steps"] = options["steps"] or None  # 0: the solver's own sampler
    if "baseline_faces" in options:
        options["baseline_faces"] = options["baseline_faces"] or None  # 0: every face
    out = run_demo(**options)
    print(out["table"])
    print(f"\nfigure: {out['figure']}\nnumbers: {out['json']}")
    return 0
