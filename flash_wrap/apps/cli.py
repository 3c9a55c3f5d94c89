"""The ``flash-wrap`` command line (also ``python -m flash_wrap``)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

from .arguments import NON_NEGATIVE, POSITIVE, SEED, add_level_range, device, number


def _cmd_solvers(args: argparse.Namespace) -> int:
    from ..grid import grid_for
    from ..registry import get_registry

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
            try:  # the label of its own grid on the usual 1000-step schedule, where solver_defaults belong
                own = f", own grid {grid_for(cls, 1000).label()!r} on a 1000-step schedule"
            except ValueError:
                own = ""
            print(f"{'':<{width}}  sampler {cls.sampler_kind} ({steps} steps{own}); reference: {cls.reference}")
            for task, values in sorted(cls.defaults.items()):
                shown = ", ".join(f"{k}={v:g}" for k, v in values.items())
                print(f"{'':<{width}}    {task}: {shown}")
    for broken in registry.broken:
        print(f"{broken.plugin:<{width}}  BROKEN ({broken.origin}): {broken.error}")
    for name, claimants in sorted(registry.conflicts.items()):
        print(f"{name:<{width}}  CONFLICT, disabled: registered by {'; '.join(r.origin for r in claimants)}")
    return 0


def _main_process() -> bool:
    """Under torchrun / accelerate launch only rank 0 prints the summary."""
    return int(os.environ.get("RANK", "0")) == 0


def _cmd_train_severity(args: argparse.Namespace) -> int:
    from .training.severity import SeverityTrainingConfig, train_severity

    config = SeverityTrainingConfig(
        model=args.model, task=args.task, data=args.data, steps=args.steps, batch_size=args.batch_size,
        lr=args.lr, lambda_sigma=args.lambda_sigma, lambda_image=args.lambda_image, seed=args.seed,
        val_images=args.val_images, checkpoint_every=args.checkpoint_every, output=args.output,
        checkpoints=args.checkpoints, prompt=args.prompt,
        limit=args.limit, cpu=args.cpu, workers=args.workers, resume=not args.no_resume, init_from=args.init_from,
        force=args.force,
    )
    summary = train_severity(config)
    if not _main_process():
        return 0
    best = summary["best"]
    judged = (f"best validation loss {best['val_loss']:.5g} at step {best['step']}" if best["step"] is not None
              else "no validation images (--val-images 0), so the last step's encoder was kept")
    print(f"trained severity encoder for {args.task}: {summary['steps']} steps, {judged}")
    if "written_to" in summary:
        print(f"written to {summary['written_to']}")
    return 0


def _cmd_train_prior(args: argparse.Namespace) -> int:
    from .training.prior import PriorTrainingConfig, train_prior

    config = PriorTrainingConfig(
        output=args.output, data=args.data, autoencoder=args.autoencoder, image_size=args.image_size,
        unet=args.unet, steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup_steps,
        ema_decay=args.ema_decay, mirror=not args.no_mirror, seed=args.seed, checkpoint_every=args.checkpoint_every,
        limit=args.limit, cpu=args.cpu, resume=not args.no_resume, init_from=args.init_from, force=args.force,
        objective=args.objective,
    )
    summary = train_prior(config)
    if not _main_process():
        return 0
    last = summary["history"][-1]["loss"] if summary["history"] else float("nan")
    print(f"trained prior: {summary['steps']} steps on {summary['latents']} latents, final loss {last:.4f}, "
          f"latent scale {summary['latent_scale']:.4f}")
    if "written_to" in summary:
        print(f"model bundle written to {summary['written_to']}")
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    from .sample import sample_grid

    path = sample_grid(args.model, args.out, n=args.n, seed=args.seed, steps=args.steps, force=args.force)
    print(f"wrote {path}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    given = {}  # options left out take run_demo's defaults (DEFAULT_STEPS, DEFAULT_FACES)
    if args.steps is not None:
        given["steps"] = args.steps or None  # 0: the solver's own sampler
    if args.n_faces is not None:
        given["n_faces"] = args.n_faces
    out = run_demo(model=args.model, out=args.out, solver=args.solver, faces=args.faces, seed=args.seed,
                   force=args.force, **given)
    print(out["table"])
    print(f"\nfigure: {out['figure']}\nnumbers: {out['json']}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import export_bundle

    out = export_bundle(args.model, args.out, dtype=args.dtype, force=args.force)
    print(f"exported {args.model} ({args.dtype} weights, no training files) to {out}")
    return 0


def _cmd_import_encoder(args: argparse.Namespace) -> int:
    from .import_encoder import import_encoder

    done = import_encoder(args.checkpoint, model=args.model, task=args.task, output=args.output, force=args.force)
    print(f"imported {args.checkpoint} (sha256 {done['sha256'][:12]}...) as the {args.task} severity encoder; "
          f"written to {done['written_to']}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from .evaluation.compare import table
    from .evaluation.runner import EvalConfig, evaluate

    config = EvalConfig(
        data=args.data, task=args.task, solver=args.solver, out=args.out, model=args.model, steps=args.steps,
        scheduler=args.scheduler, baseline=args.baseline, fixed_start=args.fixed_start or [],
        severity_range=tuple(args.severity_range) if args.severity_range else None, seed=args.seed,
        limit=args.limit, batch_size=args.batch_size, device=args.device, channels_last=args.channels_last,
        skip_unreadable=args.skip_unreadable, severity_from=args.severity_from,
        baseline_steps=args.baseline_steps, baseline_scheduler=args.baseline_scheduler,
    )
    result = evaluate(config, resume=args.resume)
    if not _main_process():
        return 0
    print(table(result))
    print(f"\nresults: {args.out}/results.json, {args.out}/images.csv and figures")
    return 0


def _cmd_tune(args: argparse.Namespace) -> int:
    from .tune import FIGURE, RECORDS, RESULT, TuneConfig, table, tune

    config = TuneConfig(
        model=args.model, task=args.task, solver=args.solver, data=args.data, out=args.out, eta=args.eta, c=args.c,
        output=args.output, limit=args.limit, steps=args.steps, seed=args.seed, batch_size=args.batch_size,
        device=args.device, write=not args.no_write, baseline=args.baseline,
        severity_range=tuple(args.severity_range) if args.severity_range else None,
    )
    result = tune(config, resume=args.resume)
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


def _cmd_benchmark(args: argparse.Namespace) -> int:
    from .benchmark import BenchmarkConfig, benchmark, markdown

    config = BenchmarkConfig(
        config=args.config, solver=args.solver, batch_sizes=args.batch_size, steps=args.steps, starts=args.starts,
        device=args.device, dtype=args.dtype, gradient_checkpointing=args.gradient_checkpointing,
        compile=args.compile, channels_last=args.channels_last, seed=args.seed,
    )
    print(markdown(benchmark(config, args.out, force=args.force)))
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from .evaluation.compare import compare

    print(compare(args.results))
    return 0


class OneLineParser(argparse.ArgumentParser):
    """argparse with one-line usage errors: ``flash-wrap <command>: error: <what> (see --help)``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="flash-wrap", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="degraded input, autoencoder-only D(z), baseline and Flash on the shipped "
                       "faces, every task at an easy and a hard severity")
    p.add_argument("--model", default="demo", help="model bundle folder, or 'demo' (shipped)")
    p.add_argument("--out", default="flash-demo", help="output folder for demo.png, demo.md and demo.json")
    p.add_argument("--solver", default="latent-dps")
    p.add_argument("--steps", type=NON_NEGATIVE,
                   help="DDIM steps for both baseline and Flash (default: the demo's own, named in its table "
                   "header; 0: the solver's own sampler, DDPM-1000: slow)")
    p.add_argument("--faces", help="folder of face images (default: the shipped faces)")
    p.add_argument("--n-faces", type=POSITIVE,
                   help="use the first N faces of the folder (default: the demo's own number, recorded in demo.json)")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--force", action="store_true", help="overwrite the demo.png, demo.md and demo.json of --out")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("eval", help="Flash(solver) vs the bare solver and fixed starts on an image folder")
    p.add_argument("--data", required=True, help="folder of clean images (png/jpg), centre-cropped and resized")
    p.add_argument("--task", required=True)
    p.add_argument("--solver", default="latent-dps")
    p.add_argument("--model", default="demo", help="model bundle folder, a diffusers pipeline folder, or 'demo'")
    p.add_argument("--severity-from", metavar="BUNDLE",
                   help="use this bundle's severity encoder for --task (e.g. one train-severity or import-encoder "
                   "wrote from the pipeline folder given as --model); its autoencoder must be the model's")
    p.add_argument("--steps", type=POSITIVE, help="grid length (default: the solver's own; fewer implies DDIM)")
    p.add_argument("--scheduler", choices=["ddpm", "ddim"])
    p.add_argument("--baseline", action="store_true", help="also run the bare solver from pure noise")
    p.add_argument("--baseline-steps", type=POSITIVE, metavar="N",
                   help="the bare solver's own grid length (default: --steps), e.g. --steps 100 --baseline-steps 1000: "
                   "Flash on DDIM-100 against the 1000-step baseline (needs --baseline)")
    p.add_argument("--baseline-scheduler", choices=["ddpm", "ddim"],
                   help="the bare solver's own sampler (default: --scheduler; ddpm alone means every timestep; "
                   "needs --baseline)")
    p.add_argument("--fixed-start", type=NON_NEGATIVE, nargs="*", help="also run fixed start indices K (CCDF-L style)")
    add_level_range(p)
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--limit", type=POSITIVE, help="use only the first N images")
    p.add_argument("--batch-size", type=POSITIVE, default=4)
    p.add_argument("--device", type=device, help="cpu, cuda, cuda:1, ... (default: the GPU if there is one; one per process under a launcher)")
    p.add_argument("--channels-last", action="store_true",
                   help="NHWC convolutions: ~20%% faster on CPU, same results up to float rounding")
    p.add_argument("--out", required=True, help="results folder")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run in --out (same arguments, model content and images; refused otherwise)")
    p.add_argument("--skip-unreadable", action="store_true",
                   help="skip (and name) images that cannot be used instead of refusing the whole run")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser(
        "tune", help="grid-search a solver's step size eta (and c) on validation images; store the best in the bundle",
        description="For each (eta, c), Flash(solver) reconstructs the validation images, degraded exactly as eval "
                    "degrades them; the best mean PSNR goes into the bundle, where every solver built on it (eval "
                    "included) then uses it: into solver_defaults when --steps is the solver's own grid (they serve "
                    "every grid without its own entry), into flash_defaults for that grid otherwise. Use held-out "
                    "images, never the ones you will evaluate on, and the --steps you will evaluate with. --baseline "
                    "tunes the bare solver instead (a whole run from noise on that grid) into the bundle's "
                    "baseline_defaults, which only bare runs on that grid read.")
    p.add_argument("--model", required=True, help="bundle folder (written in place unless --output), a diffusers "
                   "pipeline folder or 'demo' (both need --output)")
    p.add_argument("--task", required=True)
    p.add_argument("--solver", required=True, help="a solver with a step size eta, e.g. latent-dps "
                   "(flash-wrap solvers --details)")
    p.add_argument("--data", required=True, metavar="VALIDATION_DIR",
                   help="held-out validation images (png/jpg): not the images you will evaluate on, nor inside --out")
    p.add_argument("--eta", type=number(0.0, open_low=True), nargs="+", required=True, metavar="V",
                   help="step sizes to try")
    p.add_argument("--c", type=number(0.0, open_low=True), nargs="+", metavar="V",
                   help="noise-correction constants to try (default: keep the solver's value for the task)")
    p.add_argument("--out", required=True, metavar="RESULTS_DIR",
                   help="results folder (tune.json, tune.jsonl, tune.png, run.json)")
    p.add_argument("--output", metavar="BUNDLE", help="write the tuned bundle here (a new folder) instead of into --model")
    p.add_argument("--limit", type=POSITIVE, help="use only the first N images")
    p.add_argument("--steps", type=POSITIVE, help="grid length (default: the solver's own; fewer implies DDIM)")
    add_level_range(p)
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--batch-size", type=POSITIVE, default=4)
    p.add_argument("--device", type=device, help="cpu, cuda, cuda:1, ... (default: the GPU if there is one)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run in --out (same arguments, model content and images; refused otherwise)")
    p.add_argument("--no-write", action="store_true", help="only report: write nothing into any bundle")
    p.add_argument("--baseline", action="store_true",
                   help="tune the bare solver (every step from noise on the --steps grid, eval's baseline noise) "
                   "instead of Flash(solver); the best eta goes into baseline_defaults for that grid")
    p.set_defaults(func=_cmd_tune)

    p = sub.add_parser("benchmark", help="seconds per image, peak memory and mixed-batch efficiency: bare vs Flash")
    p.add_argument("--config", default="demo",
                   help="'demo', a bundle folder, or a random full-size model: full-ldm-vq4, sd-v1")
    p.add_argument("--solver", default="latent-dps")
    p.add_argument("--batch-size", type=POSITIVE, nargs="+", default=[1, 4], help="one or more batch sizes")
    p.add_argument("--steps", type=POSITIVE, help="DDIM grid length (default: the solver's own sampler)")
    p.add_argument("--starts", type=POSITIVE, nargs="+",
                   help="impose Flash start indices, cycled over the batch (default: adaptive on trained "
                        "models, 2/5/10/20%% of the grid on random ones)")
    p.add_argument("--device", type=device, help="cpu, cuda, ... (default: the GPU if there is one)")
    p.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp32", help="autocast dtype")
    p.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations in backward")
    p.add_argument("--compile", action="store_true", help="torch.compile the denoiser and decoder")
    p.add_argument("--channels-last", action="store_true", help="NHWC weights and activations (faster convolutions)")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--out", help="write the results as JSON here")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.set_defaults(func=_cmd_benchmark)

    p = sub.add_parser("compare", help="print the paper-style Markdown table of one or more eval results")
    p.add_argument("results", nargs="+", help="results folders written by flash-wrap eval")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("solvers", help="list registered solver plugins and where they come from")
    p.add_argument("--details", action="store_true", help="also show samplers and per-task defaults")
    p.set_defaults(func=_cmd_solvers)

    p = sub.add_parser("train-severity", help="fine-tune a severity encoder for one task into a model bundle")
    p.add_argument("--model", required=True,
                   help="a flash-wrap bundle (the encoder is written into it unless --output is given), 'demo', or a "
                        "diffusers pipeline folder (LDMPipeline, Stable Diffusion 1.x/2.x; never modified)")
    p.add_argument("--task", required=True, help="a registered task, e.g. gaussian-blur")
    p.add_argument("--data", required=True, help="folder of clean training images (png/jpg)")
    p.add_argument("--steps", type=POSITIVE, default=2000)
    p.add_argument("--batch-size", type=POSITIVE, default=16)
    p.add_argument("--lr", type=number(0.0, open_low=True), default=1e-4)
    p.add_argument("--lambda-sigma", type=number(0.0), default=1.0, help="weight of the variance term (paper 10, code 1)")
    p.add_argument("--lambda-image", type=number(0.0), default=1.0, help="weight of the image-domain term")
    p.add_argument("--seed", type=SEED, default=42)
    p.add_argument("--val-images", type=NON_NEGATIVE, default=64, help="images held out (from the end) for validation")
    p.add_argument("--checkpoint-every", type=POSITIVE, default=250)
    p.add_argument("--output", help="write the bundle here instead of into --model: a new folder, or one written "
                   "earlier from the same --model (required for 'demo' and pipeline folders)")
    p.add_argument("--checkpoints", help="checkpoint folder (default BUNDLE/training/severity-TASK)")
    p.add_argument("--prompt", help="pipeline folders with a text-conditioned UNet: the fixed prompt whose embedding "
                   "conditions it (default: the empty prompt, the pipeline's unconditional input)")
    p.add_argument("--limit", type=POSITIVE, help="use only the first N images")
    p.add_argument("--cpu", action="store_true", help="train on CPU even if a GPU is present")
    p.add_argument("--workers", type=NON_NEGATIVE, default=0, help="data-loading worker processes")
    p.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints")
    p.add_argument("--force", action="store_true", help="replace the encoder the bundle already has for the task")
    p.add_argument("--init-from", help="start from this bundle's encoder for the task ('demo' or a folder; "
                   "same autoencoder and latent scale), e.g. to fine-tune at a higher resolution")
    p.set_defaults(func=_cmd_train_severity)

    p = sub.add_parser("train-prior", help="train a latent DDPM prior on an image folder and save a model bundle")
    p.add_argument("--output", required=True, help="bundle folder to write (checkpoints go to OUTPUT/training)")
    p.add_argument("--data", required=True, help="folder of training images (png/jpg)")
    p.add_argument("--autoencoder", required=True,
                   help="folder with taef2_encoder.pth + taef2_decoder.pth, or a saved autoencoder folder")
    p.add_argument("--image-size", type=POSITIVE, default=64)
    p.add_argument("--unet", default="small", help="UNet preset: small (demo), tiny (tests)")
    p.add_argument("--steps", type=POSITIVE, default=8000)
    p.add_argument("--batch-size", type=POSITIVE, default=64)
    p.add_argument("--lr", type=number(0.0, open_low=True), default=2e-4)
    p.add_argument("--warmup-steps", type=NON_NEGATIVE, default=200)
    p.add_argument("--ema-decay", type=number(0.0, 1.0), default=0.999)
    p.add_argument("--no-mirror", action="store_true", help="do not add horizontally mirrored images")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--checkpoint-every", type=POSITIVE, default=500)
    p.add_argument("--limit", type=POSITIVE, help="use only the first N images")
    p.add_argument("--cpu", action="store_true", help="train on CPU even if a GPU is present")
    p.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints")
    p.add_argument("--force", action="store_true", help="train over a bundle that --output already holds")
    p.add_argument("--init-from", help="start from this bundle's UNet weights and keep its latent scale "
                   "('demo' or a folder; same preset and autoencoder), e.g. to fine-tune at a higher resolution")
    p.add_argument("--objective", choices=["epsilon", "velocity"], default="epsilon",
                   help="epsilon: a DDPM noise predictor on the LDM schedule; velocity: a rectified-flow prior "
                   "(ALGORITHMS.md §12)")
    p.set_defaults(func=_cmd_train_prior)

    p = sub.add_parser("export", help="copy a bundle without its training files, optionally in float16")
    p.add_argument("--model", required=True, help="model bundle folder")
    p.add_argument("--out", required=True, help="folder to write")
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float16",
                   help="storage precision (bundles always load as float32)")
    p.add_argument("--force", action="store_true", help="replace --out if it already holds a bundle or other files")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("import-encoder", help="convert a released Flash-Diffusion severity encoder into a bundle")
    p.add_argument("checkpoint", help="the official .ckpt (PyTorch Lightning), its state dict, or a .safetensors "
                   "of the same tensors; read as tensors only")
    p.add_argument("--model", required=True, help="bundle folder (written in place unless --output), a diffusers "
                   "LDMPipeline folder or 'demo' (both need --output); its autoencoder must be LDM VQ-f4")
    p.add_argument("--task", required=True, help="the task the encoder was trained for, e.g. gaussian-blur")
    p.add_argument("--output", metavar="BUNDLE", help="write a new bundle here instead of into --model")
    p.add_argument("--force", action="store_true", help="replace the encoder the bundle already has for the task")
    p.set_defaults(func=_cmd_import_encoder)

    p = sub.add_parser("sample", help="draw unconditional samples from a model's prior into a PNG grid")
    p.add_argument("--model", default="demo", help="model bundle folder, or 'demo'")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.add_argument("-n", type=POSITIVE, default=16, help="number of samples")
    p.add_argument("--steps", type=POSITIVE, default=1000, help="DDPM (1000) or DDIM with fewer steps")
    p.add_argument("--seed", type=SEED, default=0)
    p.set_defaults(func=_cmd_sample)
    return parser


#: Errors that are the user's (bad input, missing or unreadable files, unknown names): one line,
#: exit status 2. Anything else is a bug and keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError, LookupError, OSError)


def one_line(err: BaseException) -> str:
    """The error's message on one line (multi-line messages joined with "; ")."""
    text = str(err).strip() or type(err).__name__
    if isinstance(err, OSError) and err.filename and str(err.filename) not in text:
        text = f"{text} ({err.filename})"
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; user errors end in ``flash-wrap <command>: error: <what>`` and status 2
    (with the traceback only under ``-v``), an interrupt in status 130."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help, or a usage error already printed on one line
        return int(done.code or 0)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return args.func(args)
    except USER_ERRORS as err:
        if args.verbose:
            traceback.print_exc(file=sys.stderr)
        print(f"flash-wrap {args.command}: error: {one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"flash-wrap {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
