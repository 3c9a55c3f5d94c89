"""A compute budget for Flash: one common SNR scale λ ≥ 1 for a set of samples (ALGORITHMS.md §3.1).

Each sample's start index becomes ``s_i(λ) = argmin_k |SNR_k − λ/v_i|`` (``λ = 1`` is the
unbudgeted rule of :func:`flash_wrap.start.start_index`). Because the grid's SNR decreases in
``k``, every ``s_i(λ)`` is non-increasing in ``λ`` and, for one ``λ``, ordered like ``v_i``: the
budget lowers the starts together and keeps their order by σ̂. The noise correction then uses the
matching variance ``v_i/λ`` (:func:`scaled_variance`).
"""

from __future__ import annotations

import math

import torch

from ._numbers import is_finite_number
from .errors import InvalidInput
from .start import start_index

#: Bisection on ``log λ`` stops when the bracket ``[λ_lo, λ_hi]`` satisfies ``λ_hi/λ_lo ≤ 1 + TOLERANCE``;
#: the returned ``λ_hi`` always meets the budget and exceeds the smallest such ``λ`` by at most this factor.
TOLERANCE = 1e-6


def check_budget(budget: float, grid_length: int) -> None:
    """Refuse a mean-NFE budget that is not a number in ``(0, grid_length]``."""
    if isinstance(budget, bool) or not is_finite_number(budget) or not 0 < budget <= grid_length:
        raise InvalidInput(f"nfe_budget must be a mean number of denoiser calls in (0, {grid_length}] (the sampler's "
                           f"grid length), got {budget!r}; pick a budget within the grid, or drop it")


def check_snr_scale(scale: float) -> None:
    """Refuse an SNR scale that is not a finite number ``λ >= 1`` (``λ < 1`` would start later than Flash's rule)."""
    if isinstance(scale, bool) or not is_finite_number(scale) or scale < 1:
        raise InvalidInput(f"snr_scale must be a finite number >= 1 (1 = the unbudgeted start rule), got {scale!r}; "
                           "calibrate one with flash_wrap.budget.calibrate_budget")


def scaled_variance(variance: torch.Tensor, scale: float) -> torch.Tensor:
    """``v/λ``: the variance whose unbudgeted start ``argmin_k |SNR_k − λ/v|`` and correction ``c·v/λ``
    a sample gets under the SNR scale ``λ``. ``variance``: ``(B,)``, ``v >= 0``; same shape and dtype back."""
    return variance / scale


def mean_start(variances: torch.Tensor, snr: torch.Tensor, scale: float) -> float:
    """``mean_i s_i(λ)``: the mean start index (= mean NFE of the built-in solvers) under the scale ``λ``."""
    return float(start_index(scaled_variance(variances.double(), scale), snr).double().mean())


def calibrate_budget(variances: torch.Tensor, snr: torch.Tensor, budget: float) -> float:
    """The smallest common SNR scale ``λ >= 1`` with ``mean_i s_i(λ) <= budget`` (to :data:`TOLERANCE`).

    Args:
        variances: ``(B,)`` predicted variances ``v_i >= 0`` (σ̂) of the calibration samples, finite.
        snr: ``(M,)`` the grid's SNR, decreasing in ``k`` (``Sampler.snr``).
        budget: mean start index (NFE per sample) allowed, in ``(0, M]``.
    Returns:
        ``λ``; ``1.0`` when the unbudgeted starts already meet the budget.
    """
    check_budget(budget, snr.numel())
    variances = variances.detach().reshape(-1).double().cpu()
    if variances.numel() == 0:
        raise InvalidInput("calibrate_budget needs at least one sample's variance, got none")
    if not bool(torch.isfinite(variances).all()) or bool((variances < 0).any()):
        raise InvalidInput(f"calibrate_budget needs finite variances >= 0, got {variances.tolist()[:8]}")
    if mean_start(variances, snr, 1.0) <= budget:
        return 1.0
    # at λ_hi every λ/v_i is at least twice the grid's largest SNR, so every sample starts at index 0
    low, high = 0.0, math.log(2 * float(snr.double().max()) * float(variances.max()) + 2.0)
    while high - low > math.log1p(TOLERANCE):
        middle = (low + high) / 2
        if mean_start(variances, snr, math.exp(middle)) <= budget:
            high = middle
        else:
            low = middle
    return math.exp(high)
