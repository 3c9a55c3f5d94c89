"""``flash-wrap eval``: Flash(solver) against the bare solver and fixed starts on an image folder."""

from __future__ import annotations

import argparse

from ..arguments import NON_NEGATIVE, POSITIVE, SEED, add_level_range, number
from ..options import add_device, run_options
from ..precheck import check_input_folder, check_model_path, check_solver_name, check_task_name, check_unused_results

NAME = "eval"
HELP = "Flash(solver) vs the bare solver and fixed starts on an image folder"
#: EvalConfig fields the options set under the same name
FIELDS = ("data", "task", "solver", "out", "model", "steps", "scheduler", "baseline", "fixed_start", "seed", "limit",
          "batch_size", "device", "channels_last", "skip_unreadable", "severity_from", "baseline_steps",
          "baseline_scheduler", "nfe_budget", "batching", "window", "fid_weights")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    keep = argparse.SUPPRESS  # options left out take EvalConfig's defaults
    parser.add_argument("--data", required=True, help="folder of clean images (png/jpg), centre-cropped and resized")
    parser.add_argument("--task", required=True)
    parser.add_argument("--solver", default="latent-dps")
    parser.add_argument("--model", default=keep,
                        help="model bundle folder, a diffusers pipeline folder, or 'demo' (the default)")
    parser.add_argument("--severity-from", metavar="BUNDLE", default=keep,
                        help="use this bundle's severity encoder for --task (e.g. one train-severity or import-encoder "
                             "wrote from the pipeline folder given as --model); its autoencoder must be the model's")
    parser.add_argument("--steps", type=POSITIVE, default=keep,
                        help="grid length (default: the solver's own; fewer implies DDIM)")
    parser.add_argument("--scheduler", choices=["ddpm", "ddim"], default=keep)
    parser.add_argument("--baseline", action="store_true", default=keep,
                        help="also run the bare solver from pure noise")
    parser.add_argument("--baseline-steps", type=POSITIVE, metavar="N", default=keep,
                        help="the bare solver's own grid length (default: --steps), e.g. --steps 100 --baseline-steps "
                             "1000: Flash on DDIM-100 against the 1000-step baseline (needs --baseline)")
    parser.add_argument("--baseline-scheduler", choices=["ddpm", "ddim"], default=keep,
                        help="the bare solver's own sampler (default: --scheduler; ddpm alone means every timestep; "
                             "needs --baseline)")
    parser.add_argument("--fixed-start", type=NON_NEGATIVE, nargs="*", default=keep,
                        help="also run fixed start indices K (CCDF-L style)")
    parser.add_argument("--nfe-budget", type=number(0.0, open_low=True), metavar="N", default=keep,
                        help="also run Flash with its mean NFE over the images at most N (in (0, grid length]): every "
                             "image is encoded first to calibrate one SNR scale that keeps the order by σ̂")
    add_level_range(parser)
    parser.add_argument("--seed", type=SEED, default=keep)
    parser.add_argument("--limit", type=POSITIVE, default=keep, help="use only the first N images")
    parser.add_argument("--batch-size", type=POSITIVE, default=keep,
                        help="images per batched denoiser call (the slots of --batching stream; default 4)")
    parser.add_argument("--batching", choices=["stream", "buckets", "fixed"], default=keep,
                        help="how Flash batches: stream (the default) = continuous batching, each image enters a free "
                             "slot at its own start step; buckets = fixed batches of similar start steps; fixed = "
                             "fixed batches in file order (the bare solver and fixed starts always run fixed batches)")
    parser.add_argument("--window", type=POSITIVE, metavar="N", default=keep,
                        help="with stream/buckets: images per unit of work (dealt to a process, resumed whole; "
                             "default 8 × --batch-size)")
    parser.add_argument("--fid-weights", metavar="FILE", default=keep,
                        help="FID InceptionV3 weights (safetensors, made by scripts/convert_inception_weights.py): "
                             "FID and KID per method against the clean images, with their image count")
    add_device(parser, "cpu, cuda, cuda:1, ... (default: the GPU if there is one; one per process under a launcher)")
    parser.add_argument("--channels-last", action="store_true", default=keep,
                        help="NHWC convolutions: ~20%% faster on CPU, same results up to float rounding")
    parser.add_argument("--out", required=True, help="results folder")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run in --out (same arguments, model content and images; "
                             "refused otherwise)")
    parser.add_argument("--skip-unreadable", action="store_true", default=keep,
                        help="skip (and name) images that cannot be used instead of refusing the whole run")


def check(args: argparse.Namespace) -> None:
    check_task_name(args.task)
    check_solver_name(args.solver)
    check_input_folder(args.data, "--data")
    if hasattr(args, "model"):
        check_model_path(args.model)
    check_unused_results(args.out, "images.jsonl", resume=args.resume)


def run(args: argparse.Namespace) -> int:
    from ..evaluation.compare import table
    from ..evaluation.runner import EvalConfig, evaluate
    from ..runs import main_process

    options = run_options(args, FIELDS)
    result = evaluate(EvalConfig(**options), resume=args.resume)
    if not main_process():
        return 0
    print(table(result))
    print(f"\nresults: {args.out}/results.json, {args.out}/images.csv and figures")
    return 0
