"""4× super-resolution: 32×32 noisy low-resolution faces back to 128×128.

The operator is antialiased bicubic downsampling by 4 plus noise σ_y = 0.05; the measurement is
the small image itself. Super-resolution has no severity parameter of its own, so the severity
encoder (which sees the bicubic upsampling of y) predicts a similar σ̂ for every face, and Flash
starts every image at about the same, late step. The bicubic upsampling is shown as the classical
reference. On the demo model Flash beats it (by 0.7–2.1 dB on the 3 shipped faces, 2026-12-02)
and the bare solver, at about a seventh of the bare solver's denoiser calls.

    python examples/super_resolution.py                # the 3 shipped faces, ~2 min on 1 CPU thread
    python examples/super_resolution.py --quick        # 1 face, DDIM 10 steps: seconds

Baseline: the bare solver over a DDIM grid of --steps (100) steps, as in `flash-wrap demo`, so the
example fits in about a minute on a CPU; Flash runs on the same grid. (The solver's own sampler,
DDPM over 1000 steps, is --steps 0 and about 10x slower.)
"""

from __future__ import annotations

import time

import torch
from _common import load_faces, parse_args, print_summary, print_table, save_figure

from flash_wrap import Flash, LatentDiffusion, get_solver
from flash_wrap.metrics import psnr, ssim
from flash_wrap.operators import SuperResolution


def main() -> None:
    args = parse_args("super_resolution", __doc__)

    # 1. The model: the 128×128 face model shipped inside flash-wrap, with its severity encoders.
    model = LatentDiffusion.from_pretrained("demo")
    size = model.image_size

    # 2. Clean images (B, 3, 128, 128) in [0, 1] → noisy (B, 3, 32, 32) measurements.
    clean = load_faces(size, limit=1 if args.quick else None)
    n = clean.shape[0]
    operator = SuperResolution(factor=4, noise_std=0.05)     # one operator shared by the batch
    y = operator.measure(clean, generator=torch.Generator().manual_seed(args.seed))
    bicubic = operator.to_image(y).clamp(0, 1)                 # (B, 3, 128, 128): the classical reference

    # 3. The solver, bare (baseline) and wrapped in Flash, on the same grid.
    solver_class = get_solver(args.solver)                     # e.g. the Latent-DPS class
    solver = solver_class(model, steps=args.steps or None)  # fewer steps than T: DDIM with the solver's own η
    generators = lambda: [torch.Generator().manual_seed(args.seed + 1 + i) for i in range(n)]  # noqa: E731

    start = time.perf_counter()
    baseline = solver.reconstruct(y, operator, generator=generators())
    baseline_seconds = time.perf_counter() - start
    start = time.perf_counter()
    flash = Flash(solver).reconstruct(y, operator, generator=generators())
    flash_seconds = time.perf_counter() - start

    # 4. Metrics, table, figure.
    bicubic_psnr = psnr(bicubic, clean)
    baseline_psnr = psnr(baseline.images, clean)
    flash_psnr = psnr(flash.images, clean)
    ssims = {name: ssim(images, clean) for name, images in
             (("bicubic", bicubic), ("baseline", baseline.images), ("Flash", flash.images))}
    print(f"{args.solver}, {solver.grid.label()}; 4x super-resolution {size // 4}² → {size}², "
          f"σ_y = {operator.noise_std}, demo model")
    print_table(
        ["image", "σ̂", "start", "NFE baseline", "NFE Flash", "PSNR bicubic", "PSNR baseline", "PSNR Flash",
         "SSIM bicubic", "SSIM baseline", "SSIM Flash"],
        [[i, float(flash.sigma_hat[i]), int(flash.start_step[i]), int(baseline.nfe[i]), int(flash.nfe[i]),
          float(bicubic_psnr[i]), float(baseline_psnr[i]), float(flash_psnr[i]),
          float(ssims["bicubic"][i]), float(ssims["baseline"][i]), float(ssims["Flash"][i])]
         for i in range(n)],
    )
    print_summary(baseline.nfe, flash.nfe, baseline_psnr, flash_psnr, baseline_seconds, flash_seconds)

    figure = save_figure(
        args.out,
        f"4× super-resolution; {args.solver} ({solver.grid.label()}) bare vs Flash, σ_y = 0.05",
        [
            ("clean", clean, [f"face {i}" for i in range(n)]),
            (f"measured {size // 4}×{size // 4}", y, ["input y" for _ in range(n)]),
            ("bicubic ×4", bicubic, [f"{float(v):.1f} dB" for v in bicubic_psnr]),
            ("baseline", baseline.images,
             [f"{float(p):.1f} dB\nNFE {int(k)}" for p, k in zip(baseline_psnr, baseline.nfe)]),
            ("Flash", flash.images,
             [f"{float(p):.1f} dB\nNFE {int(k)}  σ̂ {float(v):.3f}"
              for p, k, v in zip(flash_psnr, flash.nfe, flash.sigma_hat)]),
        ],
    )
    print(f"wrote {figure}")


if __name__ == "__main__":
    main()
