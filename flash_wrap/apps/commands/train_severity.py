"""``flash-wrap train-severity``: fine-tune a severity encoder for one task into a model bundle."""

from __future__ import annotations

import argparse

from ..arguments import NON_NEGATIVE, POSITIVE, SEED, number
from ..options import add_renamed, add_training_device, run_options
from ..precheck import check_input_folder, check_model_path, check_task_name

NAME = "train-severity"
HELP = "fine-tune a severity encoder for one task into a model bundle"
#: SeverityTrainingConfig fields the options set under the same name (``--save-to`` sets ``output``)
FIELDS = ("model", "task", "data", "steps", "batch_size", "lr", "lambda_sigma", "lambda_image", "seed", "val_images",
          "checkpoint_every", "output", "checkpoints", "prompt", "limit", "workers", "resume", "init_from", "force")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    keep = argparse.SUPPRESS  # options left out take SeverityTrainingConfig's defaults
    parser.add_argument("--model", required=True,
                        help="a flash-wrap bundle (the encoder is written into it unless --save-to is given), 'demo', "
                             "or a diffusers pipeline folder (LDMPipeline, Stable Diffusion 1.x/2.x; never modified)")
    parser.add_argument("--task", required=True, help="a registered task, e.g. gaussian-blur")
    parser.add_argument("--data", required=True, help="folder of clean training images (png/jpg)")
    parser.add_argument("--steps", type=POSITIVE, default=keep)
    parser.add_argument("--batch-size", type=POSITIVE, default=keep)
    parser.add_argument("--lr", type=number(0.0, open_low=True), default=keep)
    parser.add_argument("--lambda-sigma", type=number(0.0), default=keep,
                        help="weight of the variance term (paper 10, code 1)")
    parser.add_argument("--lambda-image", type=number(0.0), default=keep, help="weight of the image-domain term")
    parser.add_argument("--seed", type=SEED, default=keep)
    parser.add_argument("--val-images", type=NON_NEGATIVE, default=keep, help="images held out (from the end) for validation")
    parser.add_argument("--checkpoint-every", type=POSITIVE, default=keep)
    add_renamed(parser, "--save-to", "--output", dest="output", metavar="BUNDLE", default=keep,
                help="write the bundle here instead of into --model: a new folder, or one written earlier from the "
                     "same --model (required for 'demo' and pipeline folders)")
    parser.add_argument("--checkpoints", default=keep, help="checkpoint folder (default BUNDLE/training/severity-TASK)")
    parser.add_argument("--prompt", default=keep,
                        help="pipeline folders with a text-conditioned UNet: the fixed prompt whose embedding "
                             "conditions it (default: the empty prompt, the pipeline's unconditional input)")
    parser.add_argument("--limit", type=POSITIVE, default=keep, help="use only the first N images")
    add_training_device(parser)
    parser.add_argument("--workers", type=NON_NEGATIVE, default=keep, help="data-loading worker processes")
    parser.add_argument("--no-resume", dest="resume", action="store_false", default=keep,
                        help="ignore existing checkpoints")
    parser.add_argument("--force", action="store_true", default=keep,
                        help="replace the encoder the bundle already has for the task")
    parser.add_argument("--init-from", default=keep,
                        help="start from this bundle's encoder for the task ('demo' or a folder; same autoencoder and "
                             "latent scale), e.g. to fine-tune at a higher resolution")


def check(args: argparse.Namespace) -> None:
    check_task_name(args.task)
    check_input_folder(args.data, "--data")
    check_model_path(args.model)


def run(args: argparse.Namespace) -> int:
    from ..runs import main_process
    from ..training.severity import SeverityTrainingConfig, train_severity

    options = run_options(args, FIELDS)
    summary = train_severity(SeverityTrainingConfig(**options))
    if not main_process():
        return 0
    best = summary["best"]
    judged = (f"best validation loss {best['val_loss']:.5g} at step {best['step']}" if best["step"] is not None
              else "no validation images (--val-images 0), so the last step's encoder was kept")
    print(f"trained severity encoder for {args.task}: {summary['steps']} steps, {judged}")
    if "written_to" in summary:
        print(f"written to {summary['written_to']}")
    return 0
