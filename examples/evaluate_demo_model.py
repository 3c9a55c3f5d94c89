"""Measure a bundle the way its model card reports it (demo model by default).

1. Severity encoder (Gaussian blur): Spearman correlation between σ̂ and the true blur σ, with
   σ drawn from U[0, 3] at 256² (scaled to the model's resolution), σ_y = 0.05; and ordering
   accuracy [P App. D, Def. 1] over 10 blur levels σ ∈ {0, 1/3, …, 3} per image, 3 noise seeds.
2. Gaussian deblurring with varying σ (the task's evaluation range): Latent-DPS over all 1000
   DDPM steps vs Flash(Latent-DPS), plus the autoencoder-only row D(ẑ); PSNR, NFE, seconds.

    python examples/evaluate_demo_model.py --faces ../shared/data/faces_dev --out eval-results
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from flash_wrap import Flash, LatentDiffusion, get_solver, get_task
from flash_wrap.images import list_images, load_image
from flash_wrap.metrics import ordering_accuracy, psnr, spearman
from flash_wrap.operators import GaussianBlur


def severity_check(model: LatentDiffusion, faces: torch.Tensor, seeds: int = 3, draws: int = 10) -> dict:
    encoder = model.severity_encoder("gaussian-blur")
    scale = model.image_size / 256
    n = faces.shape[0]
    g = torch.Generator().manual_seed(1234)
    sigma = torch.rand(n * draws, generator=g) * 3.0 * scale
    x = faces.repeat(draws, 1, 1, 1)
    with torch.no_grad():
        y = GaussianBlur(sigma).measure(x, generator=g)
        _, v = encoder(y)
    rho = spearman(sigma, v)

    grid = torch.linspace(0, 3, 10) * scale
    per_seed = []
    for seed in range(seeds):
        accs = []
        for i in range(n):
            op = GaussianBlur(grid)
            with torch.no_grad():
                y = op.measure(faces[i : i + 1].repeat(10, 1, 1, 1), generator=torch.Generator().manual_seed(seed))
                _, v = encoder(y)
            accs.append(ordering_accuracy(grid, v)[0])
        per_seed.append(sum(accs) / len(accs))
    oa = torch.tensor(per_seed)
    return {"spearman": rho, "ordering_accuracy_mean": float(oa.mean()), "ordering_accuracy_std": float(oa.std()),
            "n_spearman_samples": n * draws, "oa_levels_sigma_at_256": [round(float(s), 3) for s in torch.linspace(0, 3, 10)]}


def deblur_check(model: LatentDiffusion, faces: torch.Tensor, seed: int = 0, progress: bool = True) -> dict:
    task = get_task("gaussian-blur")
    op, levels = task.sample(faces.shape[0], model.image_size, torch.Generator().manual_seed(seed),
                             level_range=task.eval_range)
    y = op.measure(faces, generator=torch.Generator().manual_seed(seed + 1))
    gens = lambda: [torch.Generator().manual_seed(seed + 100 + i) for i in range(faces.shape[0])]  # noqa: E731
    solver = get_solver("latent-dps")(model)
    rows = {}
    start = time.perf_counter()
    flash = Flash(solver).reconstruct(y, op, generator=gens(), progress=progress)
    rows["flash"] = _row(flash.images, faces, flash.nfe, time.perf_counter() - start)
    with torch.no_grad():
        ae = model.decode(flash.z_hat).clamp(0, 1)
    rows["autoencoder"] = _row(ae, faces, torch.zeros_like(flash.nfe), 0.0)
    start = time.perf_counter()
    bare = solver.reconstruct(y, op, generator=gens(), progress=progress)
    rows["baseline"] = _row(bare.images, faces, bare.nfe, time.perf_counter() - start)
    rows["degraded"] = _row(y.clamp(0, 1), faces, torch.zeros_like(flash.nfe), 0.0)
    return {"levels": levels.tolist(), "sigma_px": op.severity.tolist(), "sigma_hat": flash.sigma_hat.tolist(),
            "start_step": flash.start_step.tolist(), "methods": rows,
            "nfe_ratio": rows["baseline"]["nfe_mean"] / max(rows["flash"]["nfe_mean"], 1e-9)}


def _row(images, target, nfe, seconds) -> dict:
    values = psnr(images, target)
    return {"psnr": float(values.mean()), "psnr_per_image": values.tolist(), "nfe_mean": float(nfe.float().mean()),
            "nfe_std": float(nfe.float().std()), "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--faces", required=True, help="folder of evaluation faces (e.g. ../shared/data/faces_dev)")
    parser.add_argument("--out", default="eval-results")
    parser.add_argument("--limit", type=int, help="use only the first N faces")
    parser.add_argument("--skip-baseline", action="store_true", help="only the severity check (fast)")
    args = parser.parse_args()

    model = LatentDiffusion.from_pretrained(args.model)
    faces = torch.stack([load_image(p, model.image_size) for p in list_images(args.faces)[: args.limit]])
    result = {"model": args.model, "n_images": faces.shape[0], "image_size": model.image_size,
              "severity": severity_check(model, faces)}
    print(json.dumps(result["severity"], indent=2))
    if not args.skip_baseline:
        result["deblur"] = deblur_check(model, faces)
        for name, row in result["deblur"]["methods"].items():
            print(f"{name:12s} PSNR {row['psnr']:.2f} dB  NFE {row['nfe_mean']:.1f} ± {row['nfe_std']:.1f}  "
                  f"{row['seconds']:.1f} s")
        print(f"NFE ratio baseline/Flash: {result['deblur']['nfe_ratio']:.2f}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model_card_eval.json").write_text(json.dumps(result, indent=2))
    print(f"wrote {out / 'model_card_eval.json'}")


if __name__ == "__main__":
    main()
