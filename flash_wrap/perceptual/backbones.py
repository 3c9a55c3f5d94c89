"""The feature stacks LPIPS compares: AlexNet and VGG16 convolutions up to their fifth ReLU stage.

Plain-torch definitions of the ImageNet classifiers' ``features`` parts (Krizhevsky et al. 2012;
Simonyan & Zisserman 2015), cut where LPIPS taps them (Zhang et al. 2018, "The Unreasonable
Effectiveness of Deep Features as a Perceptual Metric"). Each takes ``(B, 3, H, W)`` images already
through LPIPS's scaling layer and returns the five tapped activations, coarsest last.
Parameters are named ``convN.weight`` / ``convN.bias`` (``N`` = 0, 1, …, in order).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["AlexNetFeatures", "Backbone", "VGG16Features"]


class Backbone(nn.Module):
    """A stack of 3×3-or-larger convolutions with ReLUs and max-pools, tapped at five ReLUs.

    ``layout`` lists, in order, ``(out_channels, kernel, stride, padding)`` for a convolution + ReLU,
    ``"pool"`` for a max-pool, and ``"tap"`` to record the current activation.
    """

    #: channels of the five tapped activations
    channels: tuple[int, ...]
    #: smallest image side for which every tapped activation is at least 1×1
    min_side: int

    def __init__(self, layout: list[tuple[int, int, int, int] | str], pool: tuple[int, int]) -> None:
        super().__init__()
        self.layout = layout
        self.pool_kernel, self.pool_stride = pool
        convs: list[nn.Conv2d] = []
        taps: list[int] = []
        channels = 3
        for item in layout:
            if isinstance(item, tuple):
                out, kernel, stride, padding = item
                convs.append(nn.Conv2d(channels, out, kernel, stride=stride, padding=padding))
                channels = out
            elif item == "tap":
                taps.append(channels)
        for index, conv in enumerate(convs):
            self.add_module(f"conv{index}", conv)
        self.channels = tuple(taps)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(B, 3, H, W)`` → five activations ``(B, C_k, H_k, W_k)``."""
        taps: list[torch.Tensor] = []
        index = 0
        for item in self.layout:
            if isinstance(item, tuple):
                x = F.relu(getattr(self, f"conv{index}")(x))
                index += 1
            elif item == "pool":
                x = F.max_pool2d(x, self.pool_kernel, self.pool_stride)
            else:
                taps.append(x)
        return taps


class AlexNetFeatures(Backbone):
    """AlexNet's five convolutions (64, 192, 384, 256, 256 channels), tapped after each ReLU;
    3×3 max-pools of stride 2 after the first two. Images of side ≥ 32."""

    min_side = 32

    def __init__(self) -> None:
        super().__init__(
            [(64, 11, 4, 2), "tap", "pool", (192, 5, 1, 2), "tap", "pool",
             (384, 3, 1, 1), "tap", (256, 3, 1, 1), "tap", (256, 3, 1, 1), "tap"],
            pool=(3, 2),
        )


class VGG16Features(Backbone):
    """VGG16's thirteen 3×3 convolutions, tapped at relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3;
    2×2 max-pools of stride 2 between the blocks. Images of side ≥ 16."""

    min_side = 16

    def __init__(self) -> None:
        layout: list[tuple[int, int, int, int] | str] = []
        for block, (width, depth) in enumerate(((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))):
            if block:
                layout.append("pool")
            layout += [(width, 3, 1, 1)] * depth + ["tap"]
        super().__init__(layout, pool=(2, 2))
