"""The range of σ̂ a severity encoder produced on its own training data, and the flag for values outside it.

A σ̂ below the recorded 0.1 % quantile or above the 99.9 % one turns into a start step by
extrapolation: the image is unlike the encoder's training data (not a face for a face model, a
flat or noise image) or its degradation lies beyond the training range. The record lives in the
encoder's metadata under :data:`RANGE_KEY`::

    {"low": q_0.001, "high": q_0.999, "quantiles": [0.001, 0.999], "n": number of σ̂ values}
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from typing import Any

import torch

from ..errors import InvalidInput

#: the encoder-metadata key of the record
RANGE_KEY = "sigma_hat_range"
#: the quantiles recorded as the range's ends
QUANTILES = (0.001, 0.999)


def sigma_hat_range(values: torch.Tensor) -> dict[str, Any]:
    """The record of ``values`` (σ̂ of ``n`` training-like samples, any shape, finite): its
    :data:`QUANTILES` (linear interpolation) and ``n``."""
    flat = values.detach().reshape(-1).double().cpu()
    if flat.numel() == 0 or not bool(torch.isfinite(flat).all()):
        raise InvalidInput(f"a σ̂ range needs finite values from at least one sample, got {flat.numel()} values"
                           f"{'' if flat.numel() == 0 else ' with non-finite ones'}")
    low, high = torch.quantile(flat, torch.tensor(QUANTILES, dtype=torch.float64)).tolist()
    return {"low": low, "high": high, "quantiles": list(QUANTILES), "n": flat.numel()}


@torch.no_grad()
def measure_range(encoder: torch.nn.Module, images: Iterable[torch.Tensor]) -> dict[str, Any]:
    """The record of the σ̂ that ``encoder`` (a :class:`~flash_wrap.severity.SeverityEncoder`) gives
    on ``images``: batches ``(b, 3, H, W)`` of degraded training-like images on the image grid."""
    device = next(encoder.parameters()).device
    return sigma_hat_range(torch.cat([encoder(y.to(device))[1].cpu() for y in images]))


def check_range(record: object, where: str) -> tuple[float, float]:
    """``(low, high)`` of a stored record, refused (naming ``where``) unless ``0 <= low <= high`` are finite."""
    ends = (record.get("low"), record.get("high")) if isinstance(record, dict) else (None, None)
    low, high = (float(e) if isinstance(e, (int, float)) and not isinstance(e, bool) else math.nan for e in ends)
    if not (math.isfinite(low) and math.isfinite(high) and 0 <= low <= high):
        raise InvalidInput(f"{where}: {RANGE_KEY} must be {{'low': number, 'high': number}} with 0 <= low <= high, "
                           f"got {record!r}; recompute it with flash-wrap severity-range")
    return low, high


def out_of_range(variance: torch.Tensor, metadata: dict[str, Any], where: str) -> torch.Tensor | None:
    """Per sample, whether σ̂ (``variance``, ``(B,)``) lies outside the range recorded in the
    encoder's ``metadata``: ``(B,)`` bool on ``variance``'s device, or ``None`` when it records none.

    Flagged samples get one :class:`RuntimeWarning` per call naming their count and the range."""
    if RANGE_KEY not in metadata:
        return None
    low, high = check_range(metadata[RANGE_KEY], where)
    flags = (variance < low) | (variance > high)
    count = int(flags.sum())
    if count:
        warnings.warn(f"{count} of {variance.numel()} samples have σ̂ outside the range the {where} saw on its "
                      f"training data [{low:.4g}, {high:.4g}] (0.1 %–99.9 % quantiles): their start steps are "
                      "extrapolated (an image unlike the training data, or a degradation beyond its range)",
                      RuntimeWarning, stacklevel=3)
    return flags
