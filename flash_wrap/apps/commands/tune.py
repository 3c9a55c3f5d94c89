"""``flash-wrap tune``: grid-search a solver's step size eta (and c) and store the best in a bundle."""

from __future__ import annotations

import argparse

from ..arguments import POSITIVE, SEED, add_level_range, number
from ..options import add_device, add_renamed, run_options
from ..precheck import check_input_folder, check_model_path, check_solver_name, check_task_name, check_unused_results

NAME = "tune"
HELP = "grid-search a solver's step size eta (and c) on validation images; store the best in the bundle"
DESCRIPTION = (
    "For each (eta, c), Flash(solver) reconstructs the validation images, degraded exactly as eval degrades them; the "
    "best mean PSNR goes into the bundle, where every solver built on it (eval included) then uses it: into "
    "solver_defaults when --steps is the solver's own grid (they serve every grid without its own entry), into "
    "flash_defaults for that grid otherwise. Use held-out images, never the ones you will evaluate on, and the --steps "
    "you will evaluate with. --baseline tunes the bare solver instead (a whole run from noise on that grid) into the "
    "bundle's baseline_defaults, which only bare runs on that grid read.")
#: TuneConfig fields the options set under the same name
FIELDS = ("model", "task", "solver", "data", "out", "eta", "c", "output", "limit", "steps", "seed", "batch_size",
          "device", "write", "baseline")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    keep = argparse.SUPPRESS  # options left out take TuneConfig's defaults
    parser.add_argument("--model", required=True, help="bundle folder (written in place unless --save-to), a diffusers "
                        "pipeline folder or 'demo' (both need --save-to)")
    parser.add_argument("--task", required=True)
    parser.add_argument("--solver", required=True, help="a solver with a step size eta, e.g. latent-dps "
                        "(flash-wrap solvers --details)")
    parser.add_argument("--data", required=True, metavar="VALIDATION_DIR",
                        help="held-out validation images (png/jpg): not the images you will evaluate on, nor inside "
                             "--out")
    parser.add_argument("--eta", type=number(0.0, open_low=True), nargs="+", required=True, metavar="V",
                        help="step sizes to try")
    parser.add_argument("--c", type=number(0.0, open_low=True), nargs="+", metavar="V", default=keep,
                        help="noise-correction constants to try (default: keep the solver's value for the task)")
    parser.add_argument("--out", required=True, metavar="RESULTS_DIR",
                        help="results folder (tune.json, tune.jsonl, tune.png, run.json)")
    add_renamed(parser, "--save-to", "--output", dest="output", metavar="BUNDLE", default=keep,
                help="write the tuned bundle here (a new folder) instead of into --model")
    parser.add_argument("--limit", type=POSITIVE, default=keep, help="use only the first N images")
    parser.add_argument("--steps", type=POSITIVE, default=keep,
                        help="grid length (default: the solver's own; fewer implies DDIM)")
    add_level_range(parser)
    parser.add_argument("--seed", type=SEED, default=keep)
    parser.add_argument("--batch-size", type=POSITIVE, default=keep)
    add_device(parser, "cpu, cuda, cuda:1, ... (default: the GPU if there is one)")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run in --out (same arguments, model content and images; "
                             "refused otherwise)")
    parser.add_argument("--no-write", dest="write", action="store_false", default=keep,
                        help="only report: write nothing into any bundle")
    parser.add_argument("--baseline", action="store_true", default=keep,
                        help="tune the bare solver (every step from noise on the --steps grid, eval's baseline noise) "
                             "instead of Flash(solver); the best eta goes into baseline_defaults for that grid")


def check(args: argparse.Namespace) -> None:
    check_task_name(args.task)
    check_solver_name(args.solver)
    check_input_folder(args.data, "--data")
    check_model_path(args.model)
    check_unused_results(args.out, "tune.jsonl", resume=args.resume)


def run(args: argparse.Namespace) -> int:
    from ..tune import FIGURE, RECORDS, RESULT, TuneConfig, table, tune

    options = run_options(args, FIELDS)
    result = tune(TuneConfig(**options), resume=args.resume)
    best, written = result["best"], result["written"]
    print(table(result))
    c = "" if best["c"] is None else f", c={best['c']:g}"
    print(f"\nbest: eta={best['eta']:g}{c} (mean PSNR {best['psnr_mean']:.2f} dB over {best['n']} images)")
    if written:
        shown = ", ".join(f"{k}={v:g}" for k, v in written["values"].items())
        print(f"wrote {shown} into {written['folder']} ({written['readers']})")
    else:
        print("nothing written (--no-write)")
    print(f"results: {args.out}/{RESULT}, {args.out}/{RECORDS}, {args.out}/{FIGURE}")
    return 0
