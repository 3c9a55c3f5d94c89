"""``flash-wrap severity-range``: record the σ̂ range of a bundle's severity encoder on training-like data."""

from __future__ import annotations

import argparse

from ..arguments import POSITIVE, SEED
from ..options import add_renamed, given
from ..precheck import check_input_folder, check_model_path, check_task_name

NAME = "severity-range"
HELP = "record the range of σ̂ a severity encoder gives on training-like data (for the out-of-range flag)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="bundle folder (written in place unless --save-to), or 'demo' "
                        "(needs --save-to)")
    parser.add_argument("--task", required=True, help="the task whose encoder is measured, e.g. gaussian-blur")
    parser.add_argument("--data", required=True, help="folder of clean training-like images (png/jpg); each is "
                        "degraded once over the task's training range")
    parser.add_argument("--limit", type=POSITIVE, default=argparse.SUPPRESS, help="use only the first N images")
    parser.add_argument("--seed", type=SEED, default=argparse.SUPPRESS, help="seed of the degradations (default 0)")
    parser.add_argument("--batch-size", type=POSITIVE, default=argparse.SUPPRESS)
    add_renamed(parser, "--save-to", "--output", dest="output", metavar="BUNDLE", default=argparse.SUPPRESS,
                help="write a new bundle here instead of into --model")


def check(args: argparse.Namespace) -> None:
    check_task_name(args.task)
    check_input_folder(args.data, "--data")
    check_model_path(args.model)


def run(args: argparse.Namespace) -> int:
    from ..severity_range import record_severity_range

    done = record_severity_range(args.model, args.task, args.data,
                                 **given(args, ("output", "limit", "seed", "batch_size")))
    print(f"{args.task}: σ̂ in [{done['low']:.4g}, {done['high']:.4g}] (the ends of the training σ̂ support, estimated "
          f"from {done['n']} degraded images from {done['data']}); written to {done['written_to']}")
    return 0
