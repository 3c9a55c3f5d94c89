"""LPIPS, the learned perceptual image distance of Zhang et al. 2018, in plain torch.

``d(x, y) = Σ_l mean_{h,w} w_lᵀ (x̂_l − ŷ_l)²`` where ``x̂_l`` is the ``l``-th tapped backbone
activation unit-normalised along channels and ``w_l ≥ 0`` the learned 1×1 linear head of layer
``l`` (version 0.1 of the reference, "The Unreasonable Effectiveness of Deep Features as a
Perceptual Metric", CVPR 2018). Inputs in [0, 1] are mapped to [−1, 1], then shifted and scaled
per channel as the reference's scaling layer does, before the backbone.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..errors import InvalidInput
from .backbones import AlexNetFeatures, Backbone, VGG16Features
from .weights import lpips_weights_path

__all__ = ["BACKBONES", "LPIPSNetwork", "load_lpips"]

#: backbone name → its feature stack
BACKBONES: dict[str, Callable[[], Backbone]] = {"alex": AlexNetFeatures, "vgg": VGG16Features}

#: the reference scaling layer: ``(x − shift) / scale`` per RGB channel, on [−1, 1] images
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
#: added to the channel norm before dividing (the reference's)
_EPS = 1e-10


class LPIPSNetwork(nn.Module):
    """A backbone and its five linear heads; call it on two ``(B, 3, H, W)`` batches in [0, 1]
    to get ``(B,)`` distances (0 for identical images, larger = more different)."""

    shift: torch.Tensor
    scale: torch.Tensor

    def __init__(self, net: str = "alex") -> None:
        super().__init__()
        if net not in BACKBONES:
            raise InvalidInput(f"LPIPS backbone must be one of {sorted(BACKBONES)}, got {net!r}")
        self.net = net
        self.backbone = BACKBONES[net]()
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in self.backbone.channels)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False).eval()

    def check(self, estimate: torch.Tensor, target: torch.Tensor) -> None:
        """Raise :class:`InvalidInput` (one line) unless both are equal-shape ``(B, 3, H, W)`` float
        batches in [0, 1] with ``H, W`` at least the backbone's minimum side."""
        for name, t in (("estimate", estimate), ("target", target)):
            if t.ndim != 4 or t.shape[1] != 3 or not t.is_floating_point():
                raise InvalidInput(f"LPIPS needs float (B, 3, H, W) images, got {name} of shape "
                                   f"{tuple(t.shape)} and dtype {t.dtype}")
            if min(t.shape[-2:]) < self.backbone.min_side:
                raise InvalidInput(f"LPIPS-{self.net} needs images of side >= {self.backbone.min_side}, "
                                   f"got {name} of shape {tuple(t.shape)}: upsample them first")
            low, high = float(t.min()), float(t.max())
            if low < 0 or high > 1:
                raise InvalidInput(f"LPIPS needs images in [0, 1], got {name} in [{low:.4g}, {high:.4g}]: "
                                   "map [-1, 1] images with (x + 1) / 2, or clip estimates first")
        if estimate.shape != target.shape:
            raise InvalidInput(f"LPIPS needs equal shapes, got {tuple(estimate.shape)} and {tuple(target.shape)}")

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """``(B, 3, H, W)`` in [0, 1] → five channel-normalised activations ``(B, C_l, H_l, W_l)``."""
        x = ((images * 2 - 1) - self.shift) / self.scale
        return [f / (f.square().sum(dim=1, keepdim=True).sqrt() + _EPS) for f in self.backbone(x)]

    @torch.no_grad()
    def forward(self, estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` × 2 in [0, 1] → ``(B,)`` LPIPS distances (float32)."""
        self.check(estimate, target)
        total = estimate.new_zeros(estimate.shape[0], dtype=torch.float32)
        pairs = zip(self.features(estimate.float()), self.features(target.float()), self.heads)
        for a, b, head in pairs:
            total = total + head((a - b).square()).mean(dim=(1, 2, 3))
        return total


def load_lpips(net: str = "alex", path: str | Path | None = None,
               device: torch.device | str | None = None) -> LPIPSNetwork:
    """The LPIPS network ``net`` ("alex" or "vgg") with its weights from ``path`` (a safetensors
    file; default: the shipped AlexNet weights, see :func:`lpips_weights_path`).

    A missing file raises :class:`~flash_wrap.errors.NotFound` naming it and where to get it,
    before anything is built; a file of another network raises :class:`InvalidInput`.
    """
    from safetensors.torch import load_file

    file = lpips_weights_path(net, path)
    network = LPIPSNetwork(net)
    state = load_file(str(file))
    expected = set(network.state_dict())
    if set(state) != expected:
        missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
        raise InvalidInput(f"{file} is not an LPIPS-{net} weight file (missing {missing[:3]}, unexpected "
                           f"{extra[:3]}): convert it with scripts/convert_lpips_weights.py --net {net}")
    try:
        network.load_state_dict(state)
    except RuntimeError as err:  # shapes of another network under the same names
        raise InvalidInput(f"{file} does not fit LPIPS-{net}: {str(err).splitlines()[-1].strip()}") from None
    return network.to(device) if device is not None else network
