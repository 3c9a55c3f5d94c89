"""``flash-wrap benchmark``: seconds per image, peak memory and mixed-batch efficiency, bare vs Flash."""

from __future__ import annotations

import argparse

from ...errors import InvalidInput
from ..arguments import POSITIVE, SEED
from ..options import add_device, add_renamed, given
from ..precheck import check_input_folder, check_solver_name

NAME = "benchmark"
HELP = "seconds per image, peak memory and mixed-batch efficiency: bare vs Flash"
#: BenchmarkConfig fields the options set under the same name (``--model`` sets ``config``)
FIELDS = ("config", "solver", "batch_sizes", "steps", "starts", "device", "dtype", "gradient_checkpointing", "compile",
          "channels_last", "seed", "images", "slots", "data", "window", "bare_images")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    keep = argparse.SUPPRESS  # options left out take BenchmarkConfig's defaults
    add_renamed(parser, "--model", "--config", dest="config", metavar="MODEL", default=keep,
                help="'demo' (the default), a bundle folder, or a random full-size model: full-ldm-vq4, sd-v1")
    parser.add_argument("--solver", default=keep)
    parser.add_argument("--batch-size", dest="batch_sizes", type=POSITIVE, nargs="+", default=keep,
                        help="one or more batch sizes")
    parser.add_argument("--steps", type=POSITIVE, default=keep, help="DDIM grid length (default: the solver's own sampler)")
    parser.add_argument("--starts", type=POSITIVE, nargs="+", default=keep,
                        help="impose Flash start indices, cycled over the batch (default: adaptive on trained "
                             "models, 2/5/10/20%% of the grid on random ones)")
    add_device(parser, "cpu, cuda, ... (default: the GPU if there is one)")
    parser.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default=keep, help="autocast dtype")
    parser.add_argument("--gradient-checkpointing", action="store_true", default=keep,
                        help="recompute activations in backward")
    parser.add_argument("--compile", action="store_true", default=keep, help="torch.compile the denoiser and decoder")
    parser.add_argument("--channels-last", action="store_true", default=keep,
                        help="NHWC weights and activations (faster convolutions)")
    parser.add_argument("--seed", type=SEED, default=keep)
    parser.add_argument("--images", type=POSITIVE, metavar="N", default=keep,
                        help="instead of the batch sizes: N Gaussian-blur images with levels spread over the task's "
                             "range, run by the bare solver, Flash in fixed batches, Flash in start-step buckets and "
                             "Flash streamed (continuous batching); reports images/s, mean NFE, peak memory and slot use")
    parser.add_argument("--slots", type=POSITIVE, default=keep,
                        help="rows per batched denoiser call with --images (default 16)")
    parser.add_argument("--window", type=POSITIVE, default=keep,
                        help="with --images: the streamed mode reads this many images, encodes them and feeds them to "
                             "the slots by start step (default 8 x --slots, as eval)")
    parser.add_argument("--bare-images", type=POSITIVE, metavar="K", default=keep,
                        help="with --images: run the bare solver on the first K images only (its cost per image does "
                             "not depend on severity; default all)")
    parser.add_argument("--data", metavar="FOLDER", default=keep,
                        help="images of the --images set, cycled (default: the shipped faces)")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")


def check(args: argparse.Namespace) -> None:
    if hasattr(args, "solver"):
        check_solver_name(args.solver)
    for option in ("slots", "data", "window", "bare_images"):
        if hasattr(args, option) and not hasattr(args, "images"):
            flag = "--" + option.replace("_", "-")
            raise InvalidInput(f"{flag} sets the mixed-severity comparison, which runs with --images N; add it")
    if hasattr(args, "bare_images") and args.bare_images > args.images:
        raise InvalidInput(f"--bare-images {args.bare_images} is more than --images {args.images}; give at most "
                           f"{args.images}")
    if hasattr(args, "data"):
        check_input_folder(args.data, "--data")


def run(args: argparse.Namespace) -> int:
    from ..benchmark import BenchmarkConfig, benchmark, markdown

    print(markdown(benchmark(BenchmarkConfig(**given(args, FIELDS)), args.out, force=args.force)))
    return 0
