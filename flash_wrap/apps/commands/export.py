"""``flash-wrap export``: a bundle without its training files, optionally in float16."""

from __future__ import annotations

import argparse
import inspect

from ..options import given

NAME = "export"
HELP = "copy a bundle without its training files, optionally in float16"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model bundle folder")
    parser.add_argument("--out", required=True, help="folder to write")
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default=argparse.SUPPRESS,
                        help="storage precision (bundles always load as float32)")
    parser.add_argument("--force", action="store_true", default=argparse.SUPPRESS,
                        help="replace --out if it already holds a bundle or other files")
    parser.add_argument("--severity-from", default=argparse.SUPPRESS,
                        help="add this bundle's severity encoders ('demo' or a folder with the same autoencoder), "
                             "e.g. to ship a new prior on the demo's latents with the demo's encoders")


def run(args: argparse.Namespace) -> int:
    from ..export import export_bundle

    options = given(args, ("dtype", "force", "severity_from"))
    out = export_bundle(args.model, args.out, **options)
    dtype = options.get("dtype", inspect.signature(export_bundle).parameters["dtype"].default)
    print(f"exported {args.model} ({dtype} weights, no training files) to {out}")
    return 0
