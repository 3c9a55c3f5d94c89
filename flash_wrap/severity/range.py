"""The range of σ̂ a severity encoder produced on its own training data, and the flag for values outside it.

A σ̂ outside the range the encoder gave on its training data turns into a start step by
extrapolation: the image is unlike the encoder's training data (not a face for a face model, a
flat or noise image) or its degradation lies beyond the training range. The record lives in the
encoder's metadata under :data:`RANGE_KEY`::

    {"low": ..., "high": ..., "quantiles": [0.001, 0.01, 0.99, 0.999], "quantile_values": [...],
     "n": number of σ̂ values, "levels": [t_low, t_high]}

``low`` and ``high`` estimate where the training distribution's support ends, one tail spacing
beyond its extreme quantiles: ``low = max(0, 2·q(0.001) − q(0.01))``, ``high = 2·q(0.999) − q(0.99)``
(the order-statistics endpoint estimate ``2·X₍₁₎ − X₍₂₎``, taken on quantiles so that one odd
training image does not move it). The extreme quantiles alone are sample extremes: a new image
of the training kind falls a little beyond them about as often as the sample is small.
Records written before this rule (``"quantiles": [0.001, 0.999]``) are read as they are.

σ̂ is not always enough to tell an image unlike the training data: a flat grey image under the
demo's Gaussian-blur encoder gets σ̂ 0.089, within the faces' range. Its latent estimate ẑ is
unlike a face's, though: the record also holds the range of the spread of ẑ (:func:`latent_spread`,
the standard deviation of its entries; 0.69–0.93 for blurred faces, 0.38–0.53 for grey, black and
noise images) under :data:`SPREAD_KEY`, by the same rule.

It is measured on training-like images degraded at random levels *and* at both ends of the
training range (an encoder's σ̂ is often extreme at the ends, which random levels rarely reach).

σ̂ alone cannot see every degradation beyond the training range: past the strongest training blur
an encoder's σ̂ may turn back down. So a sample whose degradation *level* is known (the task's
:attr:`~flash_wrap.operators.Task.level_of` inverts its operator's parameters) is also flagged when
that level lies outside the record's ``levels``.
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
#: the quantiles recorded: the extreme pair and the inner pair one tail spacing in
QUANTILES = (0.001, 0.01, 0.99, 0.999)
#: the record's key of the ẑ-spread range (:func:`latent_spread`), beside σ̂'s ends
SPREAD_KEY = "z_hat_spread"
#: the rule of the range's ends, stored with every record
RANGE_RULE = "low = max(0, 2 q(0.001) - q(0.01)), high = 2 q(0.999) - q(0.99)"


def sigma_hat_range(values: torch.Tensor, z_hat_spread: torch.Tensor | None = None) -> dict[str, Any]:
    """The record of ``values`` (σ̂ of ``n`` training-like samples, any shape, finite): the ends
    ``low``/``high`` by :data:`RANGE_RULE`, the :data:`QUANTILES` (linear interpolation) and ``n``;
    with ``z_hat_spread`` (:func:`latent_spread` of the same samples' ẑ) its own such record under
    :data:`SPREAD_KEY`."""
    flat = values.detach().reshape(-1).double().cpu()
    if flat.numel() == 0 or not bool(torch.isfinite(flat).all()):
        raise InvalidInput(f"a σ̂ range needs finite values from at least one sample, got {flat.numel()} values"
                           f"{'' if flat.numel() == 0 else ' with non-finite ones'}")
    record = _ends(flat)
    if z_hat_spread is not None:
        spread = z_hat_spread.detach().reshape(-1).double().cpu()
        if spread.numel() != flat.numel() or not bool(torch.isfinite(spread).all()):
            raise InvalidInput(f"the ẑ spreads must be finite, one per σ̂ ({flat.numel()}), got {spread.numel()}")
        record[SPREAD_KEY] = _ends(spread)
    return record


def latent_spread(z_hat: torch.Tensor) -> torch.Tensor:
    """``(B,)`` standard deviation of each sample's latent estimate ẑ ``(B, C, h, w)`` over its
    entries: an image unlike the training data (flat, noise) gives a ẑ of another spread, even
    where its σ̂ looks ordinary."""
    return z_hat.detach().flatten(1).double().std(dim=1)


def _ends(flat: torch.Tensor) -> dict[str, Any]:
    """``low``/``high`` of finite ``flat`` values by :data:`RANGE_RULE`, with the quantiles they come from."""
    q_low, q_low_inner, q_high_inner, q_high = torch.quantile(flat, torch.tensor(QUANTILES, dtype=torch.float64)).tolist()
    return {"low": max(0.0, 2 * q_low - q_low_inner), "high": 2 * q_high - q_high_inner, "rule": RANGE_RULE,
            "quantiles": list(QUANTILES), "quantile_values": [q_low, q_low_inner, q_high_inner, q_high],
            "n": flat.numel()}


@torch.no_grad()
def measure_range(encoder: torch.nn.Module, images: Iterable[torch.Tensor]) -> dict[str, Any]:
    """The record of the σ̂ (and ẑ spreads) that ``encoder`` (a :class:`~flash_wrap.severity.SeverityEncoder`)
    gives on ``images``: batches ``(b, 3, H, W)`` of degraded training-like images on the image grid."""
    device = next(encoder.parameters()).device
    variances, spreads = [], []
    for y in images:
        z_hat, variance = encoder(y.to(device))
        variances.append(variance.cpu())
        spreads.append(latent_spread(z_hat).cpu())
    return sigma_hat_range(torch.cat(variances), torch.cat(spreads))


def check_range(record: object, where: str) -> tuple[float, float]:
    """``(low, high)`` of a stored record, refused (naming ``where``) unless ``0 <= low <= high`` are finite."""
    ends = (record.get("low"), record.get("high")) if isinstance(record, dict) else (None, None)
    low, high = (float(e) if isinstance(e, (int, float)) and not isinstance(e, bool) else math.nan for e in ends)
    if not (math.isfinite(low) and math.isfinite(high) and 0 <= low <= high):
        raise InvalidInput(f"{where}: {RANGE_KEY} must be {{'low': number, 'high': number}} with 0 <= low <= high, "
                           f"got {record!r}; recompute it with flash-wrap severity-range")
    return low, high


#: levels within this of the recorded training levels count as inside (float round-off of the inverse map)
LEVEL_TOLERANCE = 1e-4


def training_levels(metadata: dict[str, Any]) -> tuple[float, float] | None:
    """The training levels ``(t_low, t_high)`` a record states, ``None`` for records without them."""
    levels = metadata.get(RANGE_KEY, {}).get("levels") if isinstance(metadata.get(RANGE_KEY), dict) else None
    if isinstance(levels, (list, tuple)) and len(levels) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in levels):
        return float(levels[0]), float(levels[1])
    return None


def out_of_range(variance: torch.Tensor, metadata: dict[str, Any], where: str,
                 levels: torch.Tensor | None = None, z_hat: torch.Tensor | None = None,
                 noise_std: float | None = None) -> torch.Tensor | None:
    """Per sample, whether σ̂ (``variance``, ``(B,)``) lies outside the range recorded in the
    encoder's ``metadata``, the spread of its ẑ (``z_hat`` ``(B, C, h, w)``, when the record has
    one) outside the recorded spreads, its degradation level (``levels`` ``(B,)``, when known)
    outside the record's training levels, or the measurement noise ``noise_std`` above the
    record's (the encoder never saw noisier measurements): ``(B,)`` bool on ``variance``'s device, or ``None`` when
    no range is recorded. Warns nothing: callers report flagged samples once (:func:`warn_out_of_range`)."""
    if RANGE_KEY not in metadata:
        return None
    low, high = check_range(metadata[RANGE_KEY], where)
    flags = (variance < low) | (variance > high)
    spread_record = metadata[RANGE_KEY].get(SPREAD_KEY)
    if z_hat is not None and spread_record is not None:
        s_low, s_high = check_range(spread_record, f"{where} ({SPREAD_KEY})")
        spread = latent_spread(z_hat).to(variance.device)
        flags = flags | (spread < s_low) | (spread > s_high)
    trained_noise = metadata[RANGE_KEY].get("noise_std")
    if noise_std is not None and isinstance(trained_noise, (int, float)) and noise_std > trained_noise * (1 + 1e-6):
        flags = torch.ones_like(flags)
    trained = training_levels(metadata)
    if levels is not None and trained is not None:
        t = levels.to(variance.device, torch.float64).reshape(-1)
        t = t.expand(flags.shape) if t.numel() == 1 else t.reshape(flags.shape)  # a shared operator: one level
        flags = flags | (t < trained[0] - LEVEL_TOLERANCE) | (t > trained[1] + LEVEL_TOLERANCE) | t.isnan()
    return flags


def warn_out_of_range(count: int, total: int, metadata: dict[str, Any], where: str, *, stacklevel: int = 3) -> None:
    """One :class:`RuntimeWarning` line for ``count`` flagged samples of ``total`` (none when 0)."""
    if not count:
        return
    record = metadata[RANGE_KEY]
    low, high = check_range(record, where)
    reasons = [f"σ̂ outside [{low:.4g}, {high:.4g}]"]
    if isinstance(record.get(SPREAD_KEY), dict):
        s_low, s_high = check_range(record[SPREAD_KEY], f"{where} ({SPREAD_KEY})")
        reasons.append(f"a ẑ spread outside [{s_low:.3g}, {s_high:.3g}]")
    if isinstance(record.get("noise_std"), (int, float)):
        reasons.append(f"measurement noise above σ_y = {record['noise_std']:g}")
    trained = training_levels(metadata)
    if trained is not None:
        reasons.append(f"a degradation level outside [{trained[0]:g}, {trained[1]:g}]")
    listed = ", ".join(reasons[:-1]) + (" or " if len(reasons) > 1 else "") + reasons[-1]
    warnings.warn(f"{count} of {total} samples lie outside what the {where} saw on its training data ({listed}): "
                  "their start steps are extrapolated (an image unlike the training data, or a degradation beyond "
                  "its range)",
                  RuntimeWarning, stacklevel=stacklevel)
