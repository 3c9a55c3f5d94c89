"""Random inpainting with 70, 75 and 80 % of the pixels missing.

The operator keeps a random subset of pixels (shared by the three colour channels) and sets the
rest to 0, then adds Gaussian noise σ_y = 0.05 to every pixel. The masks are nested: the pixels
kept at 80 % missing are also kept at 70 %, so the only difference between the rows of one face is
how much is missing. Flash's severity encoder predicts a larger error σ̂ for more missing pixels
and starts those images earlier (more denoiser calls, NFE).

    python examples/random_inpainting.py               # 2 faces × 3 ratios, ~4 min on 1 CPU thread
    python examples/random_inpainting.py --quick       # 1 face × 2 ratios, DDIM 10 steps: seconds

The ratios are the `random-inpainting` task's evaluation range (docs: "Solvers and tasks").
Baseline: the bare solver over a DDIM grid of --steps (100) steps, as in `flash-wrap demo`, so the
example fits in under two minutes on a CPU; Flash runs on the same grid. (The solver's own sampler,
DDPM over 1000 steps, is --steps 0 and about 10x slower.)
"""

from __future__ import annotations

import time

import torch
from _common import load_faces, parse_args, print_summary, print_table, save_figure, severity_panel

from flash_wrap import Flash, LatentDiffusion, get_solver
from flash_wrap.metrics import psnr
from flash_wrap.operators import RandomInpainting


def main() -> None:
    args = parse_args("random_inpainting", __doc__)

    # 1. The model: the 128×128 face model shipped inside flash-wrap, with its severity encoders.
    model = LatentDiffusion.from_pretrained("demo")
    size = model.image_size

    # 2. Each face at each missing ratio: (B, 3, H, W) in [0, 1] and one ratio per image.
    faces = load_faces(size, limit=1 if args.quick else 2)
    ratios = torch.tensor([0.70, 0.80] if args.quick else [0.70, 0.75, 0.80])
    clean = faces.repeat_interleave(len(ratios), dim=0)
    missing = ratios.repeat(len(faces))
    n = len(missing)
    operator = RandomInpainting(missing_ratio=missing, noise_std=0.05)
    y = operator.measure(clean, generator=torch.Generator().manual_seed(args.seed))

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

    # 4. The severity encoder alone on a dense sweep of ratios (no diffusion, cheap).
    encoder = model.severity_encoder("random-inpainting")
    dense = torch.linspace(0.6, 0.8, 3 if args.quick else 9)       # within the training range (≤ 80 %)
    with torch.no_grad():
        sweep = torch.stack([
            encoder(RandomInpainting(dense).measure(face.expand(len(dense), -1, -1, -1),
                                                    generator=torch.Generator().manual_seed(args.seed)))[1]
            for face in faces
        ]).mean(dim=0)

    # 5. Metrics, table, figure.
    degraded_psnr = psnr(y.clamp(0, 1), clean)
    baseline_psnr = psnr(baseline.images, clean)
    flash_psnr = psnr(flash.images, clean)
    print(f"{args.solver}, {solver.grid.label()}; random inpainting, σ_y = {operator.noise_std}, "
          f"{size}×{size} demo model")
    print_table(
        ["image", "face", "missing", "σ̂", "start", "NFE baseline", "NFE Flash",
         "PSNR degraded", "PSNR baseline", "PSNR Flash"],
        [[i, i // len(ratios), f"{float(missing[i]):.0%}", float(flash.sigma_hat[i]), int(flash.start_step[i]),
          int(baseline.nfe[i]), int(flash.nfe[i]), float(degraded_psnr[i]), float(baseline_psnr[i]),
          float(flash_psnr[i])]
         for i in range(n)],
    )
    print_summary(baseline.nfe, flash.nfe, baseline_psnr, flash_psnr, baseline_seconds, flash_seconds)

    figure = save_figure(
        args.out,
        f"Random inpainting, 70-80 % missing; {args.solver} ({solver.grid.label()}) bare vs Flash, σ_y = 0.05",
        [
            ("clean", clean, [f"{float(m):.0%} missing" for m in missing]),
            ("masked + noise", y, [f"{float(v):.1f} dB" for v in degraded_psnr]),
            ("baseline", baseline.images,
             [f"{float(p):.1f} dB\nNFE {int(k)}" for p, k in zip(baseline_psnr, baseline.nfe)]),
            ("Flash", flash.images,
             [f"{float(p):.1f} dB\nNFE {int(k)}  σ̂ {float(v):.3f}"
              for p, k, v in zip(flash_psnr, flash.nfe, flash.sigma_hat)]),
        ],
        panel=severity_panel("fraction of pixels missing", missing, flash.sigma_hat, flash.nfe, (dense, sweep)),
    )
    print(f"wrote {figure}")


if __name__ == "__main__":
    main()
