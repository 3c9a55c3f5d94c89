"""How well can a severity encoder rank Gaussian blur at a given image size? (model-card study)

The paper's Gaussian-blur task draws σ ~ U[0, 3] px at 256². At a smaller model resolution the
same blur scales to σ · size/256 px, and at 64² it is at most 0.75 px: nearly the identity. The
severity encoder is trained to predict the error of its own latent estimate, so σ̂ can rank the
blur levels only as well as that error does. This script measures, per image size, over draws
σ ~ U[0, 3]·size/256 with σ_y = 0.05 on the given faces:

- Spearman(σ, error of the frozen autoencoder's encoder on y), error = mean((E(y) − E(x))²);
- Spearman(σ, error of the bundle's severity-encoder estimate ẑ), same error;
- Spearman(σ, σ̂), the bundle's variance output.

The encoder weights are fully convolutional and run at any size; for sizes other than the
bundle's own they were trained at another resolution, which the table states.

    python examples/severity_resolution_study.py --faces ../shared/data/faces_dev --sizes 64 96 128
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from flash_wrap import LatentDiffusion
from flash_wrap.images import list_images, load_image
from flash_wrap.metrics import spearman
from flash_wrap.operators import GaussianBlur


@torch.no_grad()
def study(model: LatentDiffusion, faces_dir: str | Path, size: int, *, draws: int = 10, limit: int | None = None,
          seed: int = 1234) -> dict:
    """Spearman correlations of σ with the true latent errors and with σ̂ at one image size."""
    faces = torch.stack([load_image(p, size) for p in list_images(faces_dir)[:limit]])
    encoder = model.severity_encoder("gaussian-blur").eval()
    g = torch.Generator().manual_seed(seed)
    sigma = torch.rand(faces.shape[0] * draws, generator=g) * 3.0 * size / 256
    x = faces.repeat(draws, 1, 1, 1)
    y = GaussianBlur(sigma).measure(x, generator=g)  # [0,1] images plus N(0, 0.05²) noise, unclamped
    z0 = encoder_of_autoencoder(model, x)  # the target latent E(x) of the clean image
    z_raw = encoder_of_autoencoder(model, y)
    z_hat, v = encoder(y)
    err = lambda z: ((z - z0) ** 2).flatten(1).mean(1)  # noqa: E731
    return {"size": size, "native": size == model.image_size, "samples": int(sigma.numel()),
            "sigma_max_px": 3.0 * size / 256,
            "spearman_autoencoder_error": float(spearman(sigma, err(z_raw))),
            "spearman_estimate_error": float(spearman(sigma, err(z_hat))),
            "spearman_sigma_hat": float(spearman(sigma, v))}


def encoder_of_autoencoder(model: LatentDiffusion, images: torch.Tensor) -> torch.Tensor:
    """The bundle's own (frozen) encoder at any size, scaled like ``model.encode``."""
    raw = model.autoencoder.encode(images)
    return (raw - model.latent_shift) * model.latent_scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="demo", help="bundle with a gaussian-blur severity encoder")
    parser.add_argument("--faces", required=True, help="folder of evaluation faces (e.g. ../shared/data/faces_dev)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 96, 128])
    parser.add_argument("--draws", type=int, default=10, help="blur draws per face")
    parser.add_argument("--limit", type=int, help="use only the first N faces")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()

    model = LatentDiffusion.from_pretrained(args.model)
    rows = [study(model, args.faces, size, draws=args.draws, limit=args.limit) for size in args.sizes]
    print(f"model {args.model} (trained at {model.image_size}²); σ ~ U[0, 3]·size/256, σ_y = 0.05")
    print("| size | σ max (px) | Spearman(σ, AE error) | Spearman(σ, ẑ error) | Spearman(σ, σ̂) | n |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        note = "" if r["native"] else " (encoder trained at another size)"
        print(f"| {r['size']}²{note} | {r['sigma_max_px']:.2f} | {r['spearman_autoencoder_error']:.3f} "
              f"| {r['spearman_estimate_error']:.3f} | {r['spearman_sigma_hat']:.3f} | {r['samples']} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
