"""Bring your own latent diffusion model: wrap diffusers folders, train a severity encoder, run Flash.

A whole diffusers *pipeline* folder (LDMPipeline, Stable Diffusion 1.x/2.x) needs none of this:
``LatentDiffusion.from_pretrained(PIPELINE_DIR)`` or any command's ``--model PIPELINE_DIR`` reads
it in one call (docs: "Your own model"). This example is for separate
component folders: an autoencoder and a latent ε-prediction UNet, each saved with diffusers'
``save_pretrained`` (safetensors), e.g. a ``VQModel`` or ``AutoencoderKL`` folder and a
``UNet2DModel`` folder. It

1. loads them with ``LatentDiffusion.from_diffusers`` (the class comes from each folder's
   ``config.json``: VQModel, AutoencoderKL, AutoencoderTiny or TAEF2; UNet2DModel, or
   UNet2DConditionModel with an explicit conditioning) together with a DDPM noise schedule,
2. saves the result as a flash-wrap bundle folder (safetensors + JSON),
3. fine-tunes a severity encoder for one task into that bundle by running the command
   ``flash-wrap train-severity`` (printed, then run as ``python -m flash_wrap``),
4. reloads the bundle and runs the solver bare and wrapped in Flash on the shipped faces.

    python examples/bring_your_own_model.py --autoencoder my_vq/ --unet my_unet/ \\
        --latent-scale 1.0 --data my_clean_images/ --task gaussian-blur --train-steps 2000

Without --autoencoder/--unet (as in the tests, which add --quick) it first creates *tiny random*
diffusers models and saves them to a temporary folder, so it runs offline in seconds: nothing is
ever downloaded. --quick only shortens the run (1 face, 5 training steps, DDIM 10 steps). Random models reconstruct nothing useful; they only exercise the
plumbing. To see a real model go through the same path, use the parts of the demo bundle (a TAEF2
autoencoder and a diffusers UNet2DModel, 128² images) as "your" model; the demo's Latent-DPS step size for
Gaussian blur is η = 0.4 (the paper's η = 1.0 diverges on its latent, so tune η for your model
with `flash-wrap tune`):

    python examples/bring_your_own_model.py --autoencoder flash_wrap/assets/demo/autoencoder \\
        --unet flash_wrap/assets/demo/unet --latent-scale 0.958850815775679 --eta 0.4 \\
        --data ../shared/data/celeba_train --limit 256 --train-steps 60
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import FACES_DIR, load_faces, parse_args, print_summary, print_table, save_figure
from diffusers import UNet2DModel, VQModel

from flash_wrap import Flash, LatentDiffusion, get_solver, get_task
from flash_wrap.images import list_images
from flash_wrap.metrics import psnr
from flash_wrap.models import Autoencoder, Denoiser


def make_tiny_diffusers_models(folder: Path, image_size: int = 32) -> tuple[Path, Path]:
    """Stand-ins for *your* models: a tiny random VQModel (downsampling 4, 3 latent channels) and
    a tiny random UNet2DModel over its latents, saved with diffusers' ``save_pretrained``."""
    torch.manual_seed(0)
    vq = VQModel(block_out_channels=(8, 8, 16), down_block_types=("DownEncoderBlock2D",) * 3,
                 up_block_types=("UpDecoderBlock2D",) * 3, layers_per_block=1, norm_num_groups=4,
                 latent_channels=3, num_vq_embeddings=64)
    unet = UNet2DModel(sample_size=image_size // 4, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                       layers_per_block=1, norm_num_groups=4, down_block_types=("DownBlock2D",) * 2,
                       up_block_types=("UpBlock2D",) * 2)
    vq.save_pretrained(folder / "my_vqmodel", safe_serialization=True)
    unet.save_pretrained(folder / "my_unet", safe_serialization=True)
    return folder / "my_vqmodel", folder / "my_unet"


def extra_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--autoencoder", type=Path, help="diffusers VQModel/AutoencoderKL/AutoencoderTiny folder "
                        "(or a TAEF2 folder); default: a tiny random VQModel")
    parser.add_argument("--unet", type=Path, help="diffusers UNet2DModel folder (ε-prediction over the latents); "
                        "default: a tiny random UNet2DModel")
    parser.add_argument("--scheduler", type=Path, help="diffusers DDPMScheduler folder (default: the LDM schedule, "
                        "1000 steps, scaled_linear β 0.0015…0.0195)")
    parser.add_argument("--latent-scale", type=float, default=1.0,
                        help="z = (E(x) − shift)·scale: the scale your UNet was trained with "
                             "(LDM VQ-f4: 1.0; Stable-Diffusion-style KL: 0.18215) (default: %(default)s)")
    parser.add_argument("--latent-shift", type=float, default=0.0)
    parser.add_argument("--image-size", type=int, help="default: the UNet's sample_size × the autoencoder's downsampling")
    parser.add_argument("--task", default="gaussian-blur", help="task to train the severity encoder for and to solve")
    parser.add_argument("--data", type=Path, default=FACES_DIR,
                        help="clean training images for the severity encoder (default: the 3 shipped faces)")
    parser.add_argument("--limit", type=int, help="use only the first N training images")
    parser.add_argument("--train-steps", type=int, help="severity-encoder training steps (default 40, 5 with --quick)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--eta", type=float, help="override the solver's data-consistency step size η")
    parser.add_argument("--bundle", type=Path, help="where to save the flash-wrap bundle (default: a temporary folder)")


def infer_image_size(autoencoder_dir: str | Path, unet_dir: str | Path) -> int:
    """Image side = the UNet's latent size × the autoencoder's downsampling (read from the folders)."""
    autoencoder = Autoencoder.from_pretrained(autoencoder_dir)
    return Denoiser.from_pretrained(unet_dir).unet.config.sample_size * autoencoder.downsample_factor


def main() -> None:
    args = parse_args("bring_your_own_model", __doc__, extra=extra_options)
    train_steps = args.train_steps or (5 if args.quick else 40)
    with tempfile.TemporaryDirectory(prefix="flash-wrap-byom-") as tmp:
        tmp = Path(tmp)
        if args.autoencoder is None or args.unet is None:
            if args.autoencoder is not None or args.unet is not None:
                raise SystemExit("pass both --autoencoder and --unet, or neither (tiny random stand-ins)")
            args.autoencoder, args.unet = make_tiny_diffusers_models(tmp)
            print(f"no model folders given: saved tiny random diffusers models to {args.autoencoder} and {args.unet}")

        # 1-2. Your diffusers folders (or models in memory) → one bundle: autoencoder + denoiser +
        # DDPM schedule (default: LDM's), local files only, never the network. The adapter is
        # chosen from each folder's config.json.
        image_size = args.image_size or infer_image_size(args.autoencoder, args.unet)
        model = LatentDiffusion.from_diffusers(args.autoencoder, args.unet, image_size=image_size,
                                               scheduler=args.scheduler, latent_scale=args.latent_scale,
                                               latent_shift=args.latent_shift)
        autoencoder, denoiser = model.autoencoder, model.denoiser
        bundle = args.bundle or tmp / "my_bundle"
        model.save_pretrained(bundle)
        print(f"saved the bundle ({autoencoder.kind} autoencoder, {denoiser.kind} denoiser, {image_size}² images, "
              f"latents {model.latent_shape}) to {bundle}")

        # 3. A severity encoder for the task: the bundle's encoder (weights copied) + a variance head,
        #    trained on fresh random degradations of clean images, written into the bundle by the
        #    command-line tool (its Python side belongs to the application, not to the library API).
        n_images = len(list_images(args.data)[: args.limit])
        val_images = min(16, n_images // 5)  # train-severity holds out at most a fifth of the images
        command = ["train-severity", "--model", str(bundle), "--task", args.task, "--data", str(args.data),
                   "--steps", str(train_steps), "--batch-size", str(args.batch_size), "--lr", f"{args.lr:g}",
                   "--val-images", str(val_images), "--checkpoint-every", str(train_steps), "--device", "cpu"]
        command += ["--limit", str(args.limit)] if args.limit else []
        print(f"training a {args.task} severity encoder for {train_steps} steps:\n  flash-wrap {' '.join(command)}",
              flush=True)
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "flash_wrap", *command])
        if done.returncode != 0:
            raise SystemExit(f"flash-wrap train-severity failed (exit status {done.returncode})")
        print(f"trained in {time.perf_counter() - start:.1f} s")

        # 4. Reload the bundle like any other and solve: bare solver vs Flash.
        model = LatentDiffusion.from_pretrained(bundle)
        faces = load_faces(model.image_size, limit=1 if args.quick else None)
        levels = torch.tensor([0.15, 0.9])                         # mild and severe, as in `flash-wrap demo`
        task = get_task(args.task)
        lo, hi = task.eval_range
        levels = lo + levels * (hi - lo)
        clean = faces.repeat(len(levels), 1, 1, 1)
        levels = levels.repeat_interleave(len(faces))
        n = len(levels)
        operator = task.operator(levels, model.image_size, seed=torch.arange(n) + args.seed)
        y = operator.measure(clean, generator=torch.Generator().manual_seed(args.seed))

        solver_class = get_solver(args.solver)
        overrides = {} if args.eta is None else {"eta": args.eta}
        solver = solver_class(model, steps=args.steps or None, **overrides)  # the one grid rule
        generators = lambda: [torch.Generator().manual_seed(args.seed + 1 + i) for i in range(n)]  # noqa: E731
        start = time.perf_counter()
        baseline = solver.reconstruct(y, operator, generator=generators())
        baseline_seconds = time.perf_counter() - start
        start = time.perf_counter()
        flash = Flash(solver).reconstruct(y, operator, generator=generators())
        flash_seconds = time.perf_counter() - start

        degraded = operator.to_image(y).clamp(0, 1)
        degraded_psnr = psnr(degraded, clean)
        baseline_psnr = psnr(baseline.images, clean)
        flash_psnr = psnr(flash.images, clean)
        print(f"{args.solver}, {solver.grid.label()}; {args.task} on your model ({model.image_size}² images)")
        print_table(
            ["image", "level t", "severity", "σ̂", "start", "NFE baseline", "NFE Flash",
             "PSNR degraded", "PSNR baseline", "PSNR Flash"],
            [[i, float(levels[i]), float(operator.severity.expand(n)[i]), float(flash.sigma_hat[i]),
              int(flash.start_step[i]), int(baseline.nfe[i]), int(flash.nfe[i]), float(degraded_psnr[i]),
              float(baseline_psnr[i]), float(flash_psnr[i])]
             for i in range(n)],
        )
        print_summary(baseline.nfe, flash.nfe, baseline_psnr, flash_psnr, baseline_seconds, flash_seconds)
        figure = save_figure(
            args.out,
            f"Your model ({autoencoder.kind} + {denoiser.kind}, severity encoder trained {train_steps} steps), "
            f"{args.task};\n{args.solver} ({solver.grid.label()}) bare vs Flash, σ_y = {operator.noise_std}",
            [
                ("clean", clean, [f"t = {float(t):.2f}" for t in levels]),
                ("degraded", degraded, [f"{float(v):.1f} dB" for v in degraded_psnr]),
                ("baseline", baseline.images,
                 [f"{float(p):.1f} dB\nNFE {int(k)}" for p, k in zip(baseline_psnr, baseline.nfe)]),
                ("Flash", flash.images,
                 [f"{float(p):.1f} dB\nNFE {int(k)}  σ̂ {float(v):.3f}"
                  for p, k, v in zip(flash_psnr, flash.nfe, flash.sigma_hat)]),
            ],
        )
        print(f"wrote {figure}")
        if args.bundle:
            print(f"the bundle stays in {bundle}: LatentDiffusion.from_pretrained({str(bundle)!r}), "
                  f"or flash-wrap eval --model {bundle} ...")


if __name__ == "__main__":
    main()
