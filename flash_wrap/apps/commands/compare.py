"""``flash-wrap compare``: the paper-style Markdown table of one or more eval results."""

from __future__ import annotations

import argparse

NAME = "compare"
HELP = "print the paper-style Markdown table of one or more eval results"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", nargs="+", help="results folders written by flash-wrap eval")
    parser.add_argument("--table", choices=["runs", "paper"], default="runs",
                        help="runs: one table per run (default); paper: the paper's Table 1 layout, one row per "
                             "method and PSNR, SSIM, LPIPS, FID, KID and NFE per task")


def run(args: argparse.Namespace) -> int:
    from ..evaluation.compare import compare, compare_paper

    print(compare_paper(args.results) if args.table == "paper" else compare(args.results))
    return 0
