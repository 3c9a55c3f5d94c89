"""Gaussian deblurring with a different blur σ for every image of one batch.

Flash's severity encoder reads each blurred measurement, predicts how wrong its own latent
estimate is (σ̂, an error variance), and starts that image's reverse process at the step whose
noise level matches: the more severe the blur, the earlier the start and the more denoiser calls
(NFE). One batch mixes all severities; each image starts at its own step.

    python examples/gaussian_deblurring.py              # 6 blur levels on the shipped faces, ~4 min on 1 CPU thread
    python examples/gaussian_deblurring.py --quick      # 2 images, DDIM 10 steps: seconds

The blur σ spans the `gaussian-blur` task (docs: "Solvers and tasks"): σ = (0.3 + 2.7 t)·H/256
pixels for t ∈ [0, 1], i.e. 0.15 to 1.5 px on the 128×128 demo model, with measurement noise
σ_y = 0.05. Much of the error is the noise's and the autoencoder's, so on the demo model σ̂ rises
from about 0.11 to 0.20 over the range and the start moves from 6 to 9 steps of the 100-step grid
(2026-12-02); the side panel shows σ̂ on a dense σ sweep.

Baseline: the bare solver over a DDIM grid of --steps (100) steps, as in `flash-wrap demo`, so the
example fits in under two minutes on a CPU; Flash runs on the same grid. (The solver's own
sampler, DDPM over 1000 steps, is --steps 0 and about 10x slower.) With only 100 guided steps
from pure noise the bare baseline, even at its own step size for this grid (the bundle's
`baseline_defaults`), is weakly tied to the measurement and can drift to a different face.
"""

from __future__ import annotations

import time

import torch
from _common import load_faces, parse_args, print_summary, print_table, save_figure, severity_panel

from flash_wrap import Flash, LatentDiffusion, get_solver, get_task
from flash_wrap.metrics import psnr


def main() -> None:
    args = parse_args("gaussian_deblurring", __doc__)

    # 1. The model: the 128×128 face model shipped inside flash-wrap, with its severity encoders.
    model = LatentDiffusion.from_pretrained("demo")
    size = model.image_size

    # 2. Clean images (B, 3, H, W) in [0, 1] and one blur σ per image, mild to severe.
    faces = load_faces(size, limit=1 if args.quick else None)
    n = 2 if args.quick else 6
    clean = faces[torch.arange(n) % len(faces)]
    levels = torch.linspace(0, 1, n)
    task = get_task("gaussian-blur")                           # the task's σ range, scaled to this resolution
    operator = task.operator(levels, size, noise_std=0.05)     # a GaussianBlur with one σ per image
    sigma = operator.severity                                  # px
    y = operator.measure(clean, generator=torch.Generator().manual_seed(args.seed))

    # 3. The solver, bare (baseline) and wrapped in Flash, on the same grid.
    solver_class = get_solver(args.solver)                     # e.g. the Latent-DPS class
    solver = solver_class(model, steps=args.steps or None)  # fewer steps than T: DDIM with the solver's own η
    # One generator per image: an image's result does not depend on the rest of the batch.
    generators = lambda: [torch.Generator().manual_seed(args.seed + 1 + i) for i in range(n)]  # noqa: E731

    start = time.perf_counter()
    baseline = solver.reconstruct(y, operator, generator=generators())
    baseline_seconds = time.perf_counter() - start
    start = time.perf_counter()
    flash = Flash(solver).reconstruct(y, operator, generator=generators())
    flash_seconds = time.perf_counter() - start

    # 4. The severity encoder alone on a dense σ sweep (no diffusion, cheap): does σ̂ follow σ?
    encoder = model.severity_encoder("gaussian-blur")
    dense = torch.linspace(0, 1, 3 if args.quick else 11)
    dense_operator = task.operator(dense, size)
    dense_sigma = dense_operator.severity
    with torch.no_grad():
        sweep = torch.stack([
            encoder(dense_operator.measure(face.expand(len(dense), -1, -1, -1),
                                                      generator=torch.Generator().manual_seed(args.seed)))[1]
            for face in faces
        ]).mean(dim=0)

    # 5. Metrics, table, figure.
    degraded_psnr = psnr(y.clamp(0, 1), clean)
    baseline_psnr = psnr(baseline.images, clean)
    flash_psnr = psnr(flash.images, clean)
    print(f"{args.solver}, {solver.grid.label()}; Gaussian blur, σ_y = {operator.noise_std}, "
          f"{size}×{size} demo model")
    print_table(
        ["image", "blur σ (px)", "σ̂", "start", "NFE baseline", "NFE Flash",
         "PSNR degraded", "PSNR baseline", "PSNR Flash"],
        [[i, float(sigma[i]), float(flash.sigma_hat[i]), int(flash.start_step[i]), int(baseline.nfe[i]),
          int(flash.nfe[i]), float(degraded_psnr[i]), float(baseline_psnr[i]), float(flash_psnr[i])]
         for i in range(n)],
    )
    print_summary(baseline.nfe, flash.nfe, baseline_psnr, flash_psnr, baseline_seconds, flash_seconds)

    figure = save_figure(
        args.out,
        f"Gaussian deblurring, blur σ varying across the batch; {args.solver} ({solver.grid.label()}) "
        f"bare vs Flash, σ_y = 0.05",
        [
            ("clean", clean, [f"σ = {float(s):.2f} px" for s in sigma]),
            ("blurred + noise", y, [f"{float(v):.1f} dB" for v in degraded_psnr]),
            ("baseline", baseline.images,
             [f"{float(p):.1f} dB\nNFE {int(k)}" for p, k in zip(baseline_psnr, baseline.nfe)]),
            ("Flash", flash.images,
             [f"{float(p):.1f} dB\nNFE {int(k)}  σ̂ {float(v):.3f}"
              for p, k, v in zip(flash_psnr, flash.nfe, flash.sigma_hat)]),
        ],
        panel=severity_panel("blur σ (px)", sigma, flash.sigma_hat, flash.nfe, (dense_sigma, sweep)),
    )
    print(f"wrote {figure}")


if __name__ == "__main__":
    main()
