"""The FID variant of InceptionV3 (Szegedy et al. 2016, "Rethinking the Inception Architecture"), in
plain torch: the network of the original TensorFlow FID code (``pool_3``, 2048-d), which the standard
FID implementations port. It differs from torchvision's classifier: batch norm without a scale
(ε = 1e-3), average pools that exclude padding in the A, C and first E blocks, and a max pool in the
last E block's pool branch.

:class:`FIDInception` maps ``(B, 3, H, W)`` images in [0, 1] to ``(B, 2048)`` pool features:
bilinear resize to 299² (``align_corners=False``, no antialias), then ``(255·x − 128) / 128`` (the
TensorFlow graph's input scaling). Parameter names follow NVIDIA's TorchScript port
(``conv``, ``mixed_3.tower.conv_1``, …; each convolution has ``weight``, ``beta``, ``mean``, ``var``).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import InvalidInput
from .weights import inception_weights_path

__all__ = ["FEATURE_DIM", "INPUT_SIDE", "FIDInception", "load_fid_inception"]

#: the pool features' dimension and the side images are resized to
FEATURE_DIM = 2048
INPUT_SIDE = 299


class ConvBN(nn.Module):
    """Convolution without bias, batch norm without scale (ε = 1e-3, running statistics), ReLU.
    ``padding=None`` keeps the size (``kernel // 2`` per axis)."""

    mean: torch.Tensor
    var: torch.Tensor

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int], stride: int = 1,
                 padding: int | tuple[int, int] | None = None) -> None:
        super().__init__()
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        self.stride = stride
        self.padding = (kh // 2, kw // 2) if padding is None else padding
        self.weight = nn.Parameter(torch.zeros(cout, cin, kh, kw))
        self.beta = nn.Parameter(torch.zeros(cout))
        self.register_buffer("mean", torch.zeros(cout))
        self.register_buffer("var", torch.ones(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight, stride=self.stride, padding=self.padding)
        return F.relu(F.batch_norm(x, self.mean, self.var, None, self.beta, False, 0.0, 1e-3))


class Pool(nn.Module):
    """3×3 pooling: ``"avg"`` (stride 1, padding excluded from the mean), ``"max"`` (stride 1,
    padded) or ``"max2"`` (stride 2, no padding)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "avg":
            return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
        if self.kind == "max":
            return F.max_pool2d(x, 3, 1, 1)
        return F.max_pool2d(x, 3, 2)


def _chain(*convs: ConvBN | Pool) -> nn.Sequential:
    """Branch layers named like the reference port: ``conv``, ``conv_1``, … (and ``pool``)."""
    names: list[tuple[str, nn.Module]] = []
    count = 0
    for layer in convs:
        if isinstance(layer, Pool):
            names.append(("pool", layer))
        else:
            names.append(("conv" if count == 0 else f"conv_{count}", layer))
            count += 1
    return nn.Sequential(OrderedDict(names))


class _Concat(nn.Module):
    """Runs its branches on one input and concatenates their outputs along channels."""

    branches: tuple[str, ...]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([getattr(self, name)(x) for name in self.branches], dim=1)


class BlockA(_Concat):
    """35×35 block: 1×1; 1×1→5×5; 1×1→3×3→3×3; avg-pool→1×1 (``pool_channels``)."""

    branches = ("conv", "tower", "tower_1", "tower_2")

    def __init__(self, cin: int, pool_channels: int) -> None:
        super().__init__()
        self.conv = ConvBN(cin, 64, 1)
        self.tower = _chain(ConvBN(cin, 48, 1), ConvBN(48, 64, 5))
        self.tower_1 = _chain(ConvBN(cin, 64, 1), ConvBN(64, 96, 3), ConvBN(96, 96, 3))
        self.tower_2 = _chain(Pool("avg"), ConvBN(cin, pool_channels, 1))


class BlockB(_Concat):
    """35→17 reduction: 3×3 stride 2; 1×1→3×3→3×3 stride 2; max-pool stride 2."""

    branches = ("conv", "tower", "pool")

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.conv = ConvBN(cin, 384, 3, stride=2, padding=0)
        self.tower = _chain(ConvBN(cin, 64, 1), ConvBN(64, 96, 3), ConvBN(96, 96, 3, stride=2, padding=0))
        self.pool = Pool("max2")


class BlockC(_Concat):
    """17×17 block with factorised 7×7 convolutions of ``mid`` channels."""

    branches = ("conv", "tower", "tower_1", "tower_2")

    def __init__(self, mid: int) -> None:
        super().__init__()
        self.conv = ConvBN(768, 192, 1)
        self.tower = _chain(ConvBN(768, mid, 1), ConvBN(mid, mid, (1, 7)), ConvBN(mid, 192, (7, 1)))
        self.tower_1 = _chain(ConvBN(768, mid, 1), ConvBN(mid, mid, (7, 1)), ConvBN(mid, mid, (1, 7)),
                              ConvBN(mid, mid, (7, 1)), ConvBN(mid, 192, (1, 7)))
        self.tower_2 = _chain(Pool("avg"), ConvBN(768, 192, 1))


class BlockD(_Concat):
    """17→8 reduction: 1×1→3×3 stride 2; 1×1→1×7→7×1→3×3 stride 2; max-pool stride 2."""

    branches = ("tower", "tower_1", "pool")

    def __init__(self) -> None:
        super().__init__()
        self.tower = _chain(ConvBN(768, 192, 1), ConvBN(192, 320, 3, stride=2, padding=0))
        self.tower_1 = _chain(ConvBN(768, 192, 1), ConvBN(192, 192, (1, 7)), ConvBN(192, 192, (7, 1)),
                              ConvBN(192, 192, 3, stride=2, padding=0))
        self.pool = Pool("max2")


class BlockE(nn.Module):
    """8×8 block with split 1×3 / 3×1 branches; ``pool`` is ``"avg"`` (first) or ``"max"`` (last)."""

    def __init__(self, cin: int, pool: str) -> None:
        super().__init__()
        self.conv = ConvBN(cin, 320, 1)
        self.tower_conv = ConvBN(cin, 384, 1)
        self.tower_mixed_conv = ConvBN(384, 384, (1, 3))
        self.tower_mixed_conv_1 = ConvBN(384, 384, (3, 1))
        self.tower_1_conv = ConvBN(cin, 448, 1)
        self.tower_1_conv_1 = ConvBN(448, 384, 3)
        self.tower_1_mixed_conv = ConvBN(384, 384, (1, 3))
        self.tower_1_mixed_conv_1 = ConvBN(384, 384, (3, 1))
        self.tower_2_pool = Pool(pool)
        self.tower_2_conv = ConvBN(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.tower_conv(x)
        b = self.tower_1_conv_1(self.tower_1_conv(x))
        return torch.cat([self.conv(x), self.tower_mixed_conv(a), self.tower_mixed_conv_1(a),
                          self.tower_1_mixed_conv(b), self.tower_1_mixed_conv_1(b),
                          self.tower_2_conv(self.tower_2_pool(x))], dim=1)


class FIDInception(nn.Module):
    """InceptionV3 of TensorFlow's FID graph up to its 2048-d average pool."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = ConvBN(3, 32, 3, stride=2, padding=0)
        self.conv_1 = ConvBN(32, 32, 3, padding=0)
        self.conv_2 = ConvBN(32, 64, 3)
        self.conv_3 = ConvBN(64, 80, 1)
        self.conv_4 = ConvBN(80, 192, 3, padding=0)
        self.mixed = BlockA(192, 32)
        self.mixed_1 = BlockA(256, 64)
        self.mixed_2 = BlockA(288, 64)
        self.mixed_3 = BlockB(288)
        self.mixed_4 = BlockC(128)
        self.mixed_5 = BlockC(160)
        self.mixed_6 = BlockC(160)
        self.mixed_7 = BlockC(192)
        self.mixed_8 = BlockD()
        self.mixed_9 = BlockE(1280, "avg")
        self.mixed_10 = BlockE(2048, "max")
        self.requires_grad_(False).eval()

    @staticmethod
    def prepare(images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` in [0, 1] → ``(B, 3, 299, 299)`` in the graph's range [−1, 0.9921875]."""
        x = images.float()
        if x.shape[-2:] != (INPUT_SIDE, INPUT_SIDE):
            x = F.interpolate(x, size=(INPUT_SIDE, INPUT_SIDE), mode="bilinear", align_corners=False)
        return (x * 255 - 128) / 128

    def pool_features(self, x: torch.Tensor) -> torch.Tensor:
        """Prepared ``(B, 3, 299, 299)`` → ``(B, 2048)``."""
        x = F.max_pool2d(self.conv_2(self.conv_1(self.conv(x))), 3, 2)
        x = F.max_pool2d(self.conv_4(self.conv_3(x)), 3, 2)
        for block in (self.mixed, self.mixed_1, self.mixed_2, self.mixed_3, self.mixed_4, self.mixed_5,
                      self.mixed_6, self.mixed_7, self.mixed_8, self.mixed_9, self.mixed_10):
            x = block(x)
        return x.mean(dim=(2, 3))

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` in [0, 1] → ``(B, 2048)`` float32 pool features."""
        return self.pool_features(self.prepare(images))


def load_fid_inception(path: str | Path, device: torch.device | str | None = None) -> FIDInception:
    """:class:`FIDInception` with its weights from the safetensors file ``path`` (made by
    ``scripts/convert_inception_weights.py``); a missing file raises
    :class:`~flash_wrap.errors.NotFound` naming it and where to get it, before anything is built."""
    from safetensors.torch import load_file

    file = inception_weights_path(path)
    network = FIDInception()
    try:
        network.load_state_dict(load_file(str(file)))
    except RuntimeError as err:
        raise InvalidInput(f"{file} is not an FID Inception weight file: {str(err).splitlines()[1].strip()}") from None
    return network.to(device) if device is not None else network
