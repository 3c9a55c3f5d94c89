"""``flash-wrap train-prior``: train a latent prior on an image folder and save a model bundle."""

from __future__ import annotations

import argparse

from ..arguments import NON_NEGATIVE, POSITIVE, SEED, number
from ..options import add_renamed, add_training_device, run_options
from ..precheck import check_input_folder

NAME = "train-prior"
HELP = "train a latent DDPM prior on an image folder and save a model bundle"
#: PriorTrainingConfig fields the options set under the same name (``--save-to`` sets ``output``)
FIELDS = ("output", "data", "autoencoder", "image_size", "unet", "steps", "batch_size", "lr", "warmup_steps",
          "ema_decay", "mirror", "seed", "checkpoint_every", "limit", "resume", "init_from", "force", "objective",
          "flow_shift")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    keep = argparse.SUPPRESS  # options left out take PriorTrainingConfig's defaults
    add_renamed(parser, "--save-to", "--output", dest="output", metavar="BUNDLE", required=True,
                help="bundle folder to write (checkpoints go to BUNDLE/training)")
    parser.add_argument("--data", required=True, help="folder of training images (png/jpg)")
    parser.add_argument("--autoencoder", required=True,
                        help="folder with taef2_encoder.pth + taef2_decoder.pth, or a saved autoencoder folder")
    parser.add_argument("--image-size", type=POSITIVE, default=keep)
    parser.add_argument("--unet", default=keep, help="UNet preset: small (demo), tiny (tests)")
    parser.add_argument("--steps", type=POSITIVE, default=keep)
    parser.add_argument("--batch-size", type=POSITIVE, default=keep)
    parser.add_argument("--lr", type=number(0.0, open_low=True), default=keep)
    parser.add_argument("--warmup-steps", type=NON_NEGATIVE, default=keep)
    parser.add_argument("--ema-decay", type=number(0.0, 1.0), default=keep)
    parser.add_argument("--no-mirror", dest="mirror", action="store_false", default=keep,
                        help="do not add horizontally mirrored images")
    parser.add_argument("--seed", type=SEED, default=keep)
    parser.add_argument("--checkpoint-every", type=POSITIVE, default=keep)
    parser.add_argument("--limit", type=POSITIVE, default=keep, help="use only the first N images")
    add_training_device(parser)
    parser.add_argument("--no-resume", dest="resume", action="store_false", default=keep,
                        help="ignore existing checkpoints")
    parser.add_argument("--force", action="store_true", default=keep, help="train over a bundle that --save-to already holds")
    parser.add_argument("--init-from", default=keep,
                        help="start from this bundle's UNet weights and keep its latent scale ('demo' or a folder; "
                             "same preset and autoencoder), e.g. to fine-tune at a higher resolution")
    parser.add_argument("--objective", choices=["epsilon", "velocity"], default=keep,
                        help="epsilon (the default): a DDPM noise predictor on the LDM schedule; velocity: a "
                             "rectified-flow prior (ALGORITHMS.md §12)")
    parser.add_argument("--flow-shift", type=float, default=keep,
                        help="the flow prior's sampling shift written into its scheduler (default 3, as SD3's: more "
                             "of an N-step grid at high noise); training is the same whatever it is")


def check(args: argparse.Namespace) -> None:
    check_input_folder(args.data, "--data")


def run(args: argparse.Namespace) -> int:
    from ..runs import main_process
    from ..training.prior import PriorTrainingConfig, train_prior

    options = run_options(args, FIELDS)
    summary = train_prior(PriorTrainingConfig(**options))
    if not main_process():
        return 0
    last = summary["history"][-1]["loss"] if summary["history"] else float("nan")
    print(f"trained prior: {summary['steps']} steps on {summary['latents']} latents, final loss {last:.4f}, "
          f"latent scale {summary['latent_scale']:.4f}")
    if "written_to" in summary:
        print(f"model bundle written to {summary['written_to']}")
    return 0
