"""``flash-wrap import-encoder``: a released Flash-Diffusion severity encoder into a bundle."""

from __future__ import annotations

import argparse

from ..options import add_renamed, given
from ..precheck import check_input_folder, check_model_path, check_task_name

NAME = "import-encoder"
HELP = "convert a released Flash-Diffusion severity encoder into a bundle"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="the official .ckpt (PyTorch Lightning), its state dict, or a .safetensors "
                        "of the same tensors; read as tensors only")
    parser.add_argument("--model", required=True, help="bundle folder (written in place unless --save-to), a diffusers "
                        "LDMPipeline folder or 'demo' (both need --save-to); its autoencoder must be LDM VQ-f4")
    parser.add_argument("--task", required=True, help="the task the encoder was trained for, e.g. gaussian-blur")
    add_renamed(parser, "--save-to", "--output", dest="output", metavar="BUNDLE", default=argparse.SUPPRESS,
                help="write a new bundle here instead of into --model")
    parser.add_argument("--force", action="store_true", default=argparse.SUPPRESS,
                        help="replace the encoder the bundle already has for the task")
    parser.add_argument("--data", default=argparse.SUPPRESS,
                        help="folder of clean training-like images: also record the range of σ̂ the encoder gives on "
                             "them, degraded over the task's training range (see flash-wrap severity-range)")


def check(args: argparse.Namespace) -> None:
    check_task_name(args.task)
    check_model_path(args.model)
    if hasattr(args, "data"):
        check_input_folder(args.data, "--data")


def run(args: argparse.Namespace) -> int:
    from ..import_encoder import import_encoder

    done = import_encoder(args.checkpoint, model=args.model, task=args.task, **given(args, ("output", "force", "data")))
    print(f"imported {args.checkpoint} (sha256 {done['sha256'][:12]}...) as the {args.task} severity encoder; "
          f"written to {done['written_to']}")
    return 0
