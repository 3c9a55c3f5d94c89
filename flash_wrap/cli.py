"""The ``flash-wrap`` command line (also ``python -m flash_wrap``)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence


def _cmd_solvers(args: argparse.Namespace) -> int:
    from .plugins import get_registry

    registry = get_registry()
    if not registry.solvers and not registry.broken:
        print("no solver plugins found (is flash-wrap installed? `pip install -e .`)")
        return 1
    width = max([len(n) for n in registry.solvers] + [len(b.plugin) for b in registry.broken] + [6])
    for name, record in sorted(registry.solvers.items()):
        cls = record.cls
        print(f"{name:<{width}}  {cls.summary}")
        print(f"{'':<{width}}  from {record.origin}")
        if args.details:
            steps = cls.default_steps or "all"
            print(f"{'':<{width}}  sampler {cls.sampler_kind} ({steps} steps); reference: {cls.reference}")
            for task, values in sorted(cls.defaults.items()):
                shown = ", ".join(f"{k}={v:g}" for k, v in values.items())
                print(f"{'':<{width}}    {task}: {shown}")
    for broken in registry.broken:
        print(f"{broken.plugin:<{width}}  BROKEN ({broken.origin}): {broken.error}")
    return 0


def _cmd_train_severity(args: argparse.Namespace) -> int:
    from .train.severity import SeverityTrainingConfig, train_severity

    config = SeverityTrainingConfig(
        model=args.model, task=args.task, data=args.data, steps=args.steps, batch_size=args.batch_size,
        lr=args.lr, lambda_sigma=args.lambda_sigma, lambda_image=args.lambda_image, seed=args.seed,
        val_images=args.val_images, checkpoint_every=args.checkpoint_every, output=args.output,
        limit=args.limit, cpu=args.cpu, workers=args.workers, resume=not args.no_resume,
    )
    summary = train_severity(config)
    best = summary["best"]
    print(f"trained severity encoder for {args.task}: {summary['steps']} steps, "
          f"best validation loss {best['val_loss']:.5g} at step {best['step']}")
    if "written_to" in summary:
        print(f"written to {summary['written_to']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flash-wrap", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("solvers", help="list registered solver plugins and where they come from")
    p.add_argument("--details", action="store_true", help="also show samplers and per-task defaults")
    p.set_defaults(func=_cmd_solvers)

    p = sub.add_parser("train-severity", help="fine-tune a severity encoder for one task into a model bundle")
    p.add_argument("--model", required=True, help="model bundle folder (the encoder is written into it)")
    p.add_argument("--task", required=True, help="gaussian-blur, random-inpainting, motion-blur, super-resolution")
    p.add_argument("--data", required=True, help="folder of clean training images (png/jpg)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--lambda-sigma", type=float, default=1.0, help="weight of the variance term (paper 10, code 1)")
    p.add_argument("--lambda-image", type=float, default=1.0, help="weight of the image-domain term")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--val-images", type=int, default=64, help="images held out (from the end) for validation")
    p.add_argument("--checkpoint-every", type=int, default=250)
    p.add_argument("--output", help="checkpoint folder (default MODEL/training/severity-TASK)")
    p.add_argument("--limit", type=int, help="use only the first N images")
    p.add_argument("--cpu", action="store_true", help="train on CPU even if a GPU is present")
    p.add_argument("--workers", type=int, default=0, help="data-loading worker processes")
    p.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints")
    p.set_defaults(func=_cmd_train_severity)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, LookupError) as err:
        print(f"flash-wrap {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
