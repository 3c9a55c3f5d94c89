"""Pieces the convolutional operators share: the kernel container size, reflect padding with a
size check, per-sample depthwise filtering, compute dtype and per-sample row selection."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import InvalidInput

#: Resolution at which the paper's physical parameters are stated.
REFERENCE_SIZE = 256
#: The official code draws every blur kernel into a 61×61 container at 256², i.e. radius 30 px.
REFERENCE_RADIUS = 30

RowIndex = torch.Tensor | slice | list[int]


def container_radius(image_height: int) -> int:
    """Kernel container radius at ``image_height`` px: 30 px at 256², scaled, rounded half up."""
    return int(math.floor(REFERENCE_RADIUS * image_height / REFERENCE_SIZE + 0.5))


def take_rows(param: torch.Tensor, index: RowIndex) -> torch.Tensor:
    """Rows ``index`` of a per-sample parameter (first axis); a shared (length-1) one stays shared."""
    if param.shape[0] == 1:
        return param
    if isinstance(index, (list, tuple)):
        index = torch.as_tensor(index, dtype=torch.long)
    rows = param[index]
    # An integer index drops the batch axis; keep the parameter a batch of one.
    return rows if rows.dim() == param.dim() else rows.unsqueeze(0)


def reflect_pad(x: torch.Tensor, pad: int, what: str) -> torch.Tensor:
    """Reflect-pad ``(B, C, H, W)`` by ``pad`` px on every side (torch 'reflect' = scipy 'mirror')."""
    h, w = x.shape[-2:]
    if pad >= h or pad >= w:
        raise InvalidInput(
            f"{what} needs reflect padding of {pad} px, which requires images larger than {pad} px "
            f"on each side; got {h}x{w}"
        )
    return F.pad(x, (pad, pad, pad, pad), mode="reflect") if pad else x


def working_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype to compute in: ``x``'s, except float16/bfloat16 on CPU, which run in float32.

    torch's CPU kernels for half-precision depthwise convolution can stall for minutes, and
    antialiased bicubic resizing has none at all; on GPUs the input dtype is kept.
    """
    if x.device.type == "cpu" and x.dtype in (torch.float16, torch.bfloat16):
        return torch.float32
    return x.dtype


def filter_per_sample(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Valid (unpadded) depthwise correlation of every channel of sample ``i`` with ``kernel[i]``.

    Args:
        x: ``(B, C, H, W)``.
        kernel: ``(1 or B, kh, kw)`` on ``x``'s device and dtype; one row is shared by the batch.
    Returns:
        ``(B, C, H - kh + 1, W - kw + 1)``.
    """
    b, c, h, w = x.shape
    if kernel.shape[0] == 1:
        return F.conv2d(x, kernel.expand(c, -1, -1).unsqueeze(1), groups=c)
    # Samples are folded into channels so one grouped conv applies each sample's own kernel.
    weight = kernel.repeat_interleave(c, dim=0).unsqueeze(1)
    out = F.conv2d(x.reshape(1, b * c, h, w), weight, groups=b * c)
    return out.reshape(b, c, *out.shape[-2:])
