"""Nonlinear motion deblurring: camera shake under a camera response curve.

The operator is flash-wrap's *learning-free substitute* for the paper's nonlinear blur (which used
the learned GOPRO blur network of Tran et al. 2021, not shipped here), so the numbers are not the
paper's. Per image, a random-walk camera path of a given length is splatted into a blur kernel
(shown in the figure), applied in linear intensity, and mapped back through a gamma-2.2 camera
response: A(x) = g(k ⊛ g⁻¹(x)). The map is *nonlinear*, so it has no transpose Aᵀ, and solvers
that need one cannot run it: PSLD refuses it (demonstrated below); latent-dps (default) and
gml-dps only need gradients through A.

    python examples/motion_deblurring.py               # 6 path lengths on the shipped faces, ~4 min on 1 CPU thread
    python examples/motion_deblurring.py --quick       # 2 images, DDIM 10 steps: seconds

Path lengths span the `motion-blur` task (docs: "Solvers and tasks"): length = (2 + 30 t)·H/256
px, turning 1.5 + 2 t rad, t ∈ [0, 1] (1 to 16 px on the 128×128 demo model), σ_y = 0.05.
Baseline: the bare solver over a DDIM grid of --steps (100) steps, as in `flash-wrap demo`, so the
example fits in under two minutes on a CPU; Flash runs on the same grid. (The solver's own sampler,
DDPM over 1000 steps, is --steps 0 and about 10x slower.) Note that gml-dps's step sizes are the
paper's, not tuned for the demo model, and diverge on it.
"""

from __future__ import annotations

import sys
import time

import torch
from _common import load_faces, parse_args, print_summary, print_table, save_figure, severity_panel

from flash_wrap import Flash, LatentDiffusion, get_solver, get_task
from flash_wrap.metrics import psnr


def main() -> None:
    args = parse_args("motion_deblurring", __doc__)

    # 1. The model: the 128×128 face model shipped inside flash-wrap, with its severity encoders.
    model = LatentDiffusion.from_pretrained("demo")
    size = model.image_size

    # 2. Clean images and one random camera path per image, short to long.
    faces = load_faces(size, limit=1 if args.quick else None)
    n = 2 if args.quick else 6
    clean = faces[torch.arange(n) % len(faces)]
    levels = torch.linspace(0, 1, n)
    # the `motion-blur` task's operator for these levels: a NonlinearMotionBlur in this image's pixels
    operator = get_task("motion-blur").operator(levels, size, seed=torch.arange(n) + args.seed, noise_std=0.05)
    length, turning = operator.severity, operator.turning.expand(n)   # px, rad
    y = operator.measure(clean, generator=torch.Generator().manual_seed(args.seed))
    kernels = operator.kernels(size)                           # (B, k, k), each sums to 1

    # PSLD needs Aᵀ: it checks the operator before any work and says why it cannot run.
    try:
        get_solver("psld")(model).reconstruct(y, operator)
    except ValueError as err:
        print(f"PSLD on this operator: {err}\n")

    # 3. The solver, bare (baseline) and wrapped in Flash, on the same grid.
    solver_class = get_solver(args.solver)                     # e.g. the Latent-DPS class
    solver = solver_class(model, steps=args.steps or None)  # fewer steps than T: DDIM with the solver's own η
    try:
        solver.check_operator(operator)
    except ValueError as err:
        sys.exit(f"{args.solver} cannot run nonlinear motion blur: {err}")
    generators = lambda: [torch.Generator().manual_seed(args.seed + 1 + i) for i in range(n)]  # noqa: E731

    start = time.perf_counter()
    baseline = solver.reconstruct(y, operator, generator=generators())
    baseline_seconds = time.perf_counter() - start
    start = time.perf_counter()
    flash = Flash(solver).reconstruct(y, operator, generator=generators())
    flash_seconds = time.perf_counter() - start

    # 4. Metrics, table, figure.
    degraded_psnr = psnr(y.clamp(0, 1), clean)
    baseline_psnr = psnr(baseline.images, clean)
    flash_psnr = psnr(flash.images, clean)
    print(f"{args.solver}, {solver.grid.label()}; nonlinear motion blur (learning-free substitute), "
          f"σ_y = {operator.noise_std}, {size}×{size} demo model")
    print_table(
        ["image", "path length (px)", "σ̂", "start", "NFE baseline", "NFE Flash",
         "PSNR degraded", "PSNR baseline", "PSNR Flash"],
        [[i, float(length[i]), float(flash.sigma_hat[i]), int(flash.start_step[i]), int(baseline.nfe[i]),
          int(flash.nfe[i]), float(degraded_psnr[i]), float(baseline_psnr[i]), float(flash_psnr[i])]
         for i in range(n)],
    )
    print_summary(baseline.nfe, flash.nfe, baseline_psnr, flash_psnr, baseline_seconds, flash_seconds)

    shown_kernels = (kernels / kernels.amax(dim=(1, 2), keepdim=True))[:, None]   # (B, 1, k, k) for display
    figure = save_figure(
        args.out,
        f"Nonlinear motion deblurring (learning-free substitute kernel; PSLD cannot run it);\n"
        f"{args.solver} ({solver.grid.label()}) bare vs Flash, σ_y = 0.05",
        [
            ("clean", clean, [f"length {float(v):.1f} px" for v in length]),
            (f"kernel {kernels.shape[-1]}²", shown_kernels, [f"turning {float(v):.1f} rad" for v in turning]),
            ("blurred + noise", y, [f"{float(v):.1f} dB" for v in degraded_psnr]),
            ("baseline", baseline.images,
             [f"{float(p):.1f} dB\nNFE {int(k)}" for p, k in zip(baseline_psnr, baseline.nfe)]),
            ("Flash", flash.images,
             [f"{float(p):.1f} dB\nNFE {int(k)}  σ̂ {float(v):.3f}"
              for p, k, v in zip(flash_psnr, flash.nfe, flash.sigma_hat)]),
        ],
        panel=severity_panel("path length (px)", length, flash.sigma_hat, flash.nfe),
    )
    print(f"wrote {figure}")


if __name__ == "__main__":
    main()
