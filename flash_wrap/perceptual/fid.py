"""FID and KID between two sets of image features (e.g. the 2048-d Inception pool features).

- FID (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
  Equilibrium"): the Fréchet distance of Gaussians fitted to the two sets,
  ``|μ₁ − μ₂|² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁^½ Σ₂ Σ₁^½)^½``, statistics in float64; the trace of the
  matrix square root comes from the eigenvalues of the symmetric ``Σ₁^½ Σ₂ Σ₁^½`` (no complex
  ``sqrtm``, no off-by-round-off imaginary parts). Biased for small sets.
- KID (Bińkowski et al. 2018, "Demystifying MMD GANs"): the unbiased MMD² with the cubic polynomial
  kernel ``k(x, y) = (x·y / d + 1)³``, averaged over random subsets of a given size (mean ± std).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from ..errors import InvalidInput

__all__ = ["FID_MIN_IMAGES", "FIDResult", "KIDResult", "frechet_distance", "kernel_inception_distance"]

#: below this many images per set, the feature covariance (2048-d for Inception) is rank-deficient
#: and FID is strongly biased upwards: it is reported with a warning
FID_MIN_IMAGES = 2048


@dataclass(frozen=True)
class FIDResult:
    """An FID value and the number of images of each set it used."""

    value: float
    n_real: int
    n_fake: int


@dataclass(frozen=True)
class KIDResult:
    """KID over ``subsets`` random subsets of ``subset_size`` images per set: mean and std of MMD²."""

    mean: float
    std: float
    n_real: int
    n_fake: int
    subset_size: int
    subsets: int


def _check(real: torch.Tensor, fake: torch.Tensor, minimum: int) -> tuple[torch.Tensor, torch.Tensor]:
    for name, f in (("real", real), ("fake", fake)):
        if f.ndim != 2:
            raise InvalidInput(f"features must be (N, D), got {name} of shape {tuple(f.shape)}")
        if f.shape[0] < minimum:
            raise InvalidInput(f"need at least {minimum} feature vectors per set, got {f.shape[0]} {name}")
    if real.shape[1] != fake.shape[1]:
        raise InvalidInput(f"feature dimensions differ: real {real.shape[1]}, fake {fake.shape[1]}")
    return real.detach().double().cpu(), fake.detach().double().cpu()


def _sqrt_psd(matrix: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a symmetric positive semi-definite matrix (negative round-off → 0)."""
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def _trace_root(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """tr √(Σx^½ Σy Σx^½) for Σx = AᵀA, Σy = BᵀB (A: (N₁, D), B: (N₂, D)). Its eigenvalues are the
    nonzero eigenvalues of AᵀA·BᵀB, which are those of (ABᵀ)(ABᵀ)ᵀ: the trace is the nuclear norm of the
    N₁×N₂ matrix ABᵀ, exact and far cheaper than two D×D eigendecompositions while the sets are
    smaller than the feature dimension (2048 for Inception)."""
    if min(a.shape[0], b.shape[0]) < a.shape[1]:
        return torch.linalg.svdvals(a @ b.T).sum()
    root_x = _sqrt_psd(a.T @ a)
    middle = root_x @ (b.T @ b) @ root_x
    return torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()


def frechet_distance(real: torch.Tensor, fake: torch.Tensor) -> FIDResult:
    """FID between feature sets ``(N₁, D)`` and ``(N₂, D)`` (N ≥ 2 each); warns below
    :data:`FID_MIN_IMAGES` images per set."""
    x, y = _check(real, fake, 2)
    if min(x.shape[0], y.shape[0]) < FID_MIN_IMAGES:
        warnings.warn(f"FID from {x.shape[0]} and {y.shape[0]} images (fewer than {FID_MIN_IMAGES}) is biased "
                      "upwards; compare it only with FIDs from equally many images, or use KID", RuntimeWarning,
                      stacklevel=2)
    mu_x, mu_y = x.mean(0), y.mean(0)
    # Σx = AᵀA and Σy = BᵀB with A, B the centred features over √(N − 1)
    a, b = (x - mu_x) / (x.shape[0] - 1) ** 0.5, (y - mu_y) / (y.shape[0] - 1) ** 0.5
    value = (mu_x - mu_y).square().sum() + a.square().sum() + b.square().sum() - 2 * _trace_root(a, b)
    return FIDResult(float(value), x.shape[0], y.shape[0])


def _mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Unbiased MMD² of two equal-size sets ``(m, D)`` with the cubic polynomial kernel."""
    m, d = x.shape
    k = lambda a, b: (a @ b.T / d + 1) ** 3
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    within = (kxx.sum() - kxx.diagonal().sum() + kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return within - 2 * kxy.sum() / (m * m)


def kernel_inception_distance(real: torch.Tensor, fake: torch.Tensor, subset_size: int = 1000,
                              subsets: int = 100, seed: int = 0) -> KIDResult:
    """KID between feature sets ``(N₁, D)`` and ``(N₂, D)``: the unbiased MMD² on ``subsets``
    random subsets of ``subset_size`` vectors drawn without replacement from each set (seeded).
    With fewer vectors than ``subset_size`` in a set, the subsets take all of the smaller set,
    with a warning."""
    x, y = _check(real, fake, 2)
    if subset_size < 2 or subsets < 1:
        raise InvalidInput(f"KID needs subset_size >= 2 and subsets >= 1, got {subset_size} and {subsets}")
    size = min(subset_size, x.shape[0], y.shape[0])
    if size < subset_size:
        warnings.warn(f"KID subsets of {size} images instead of {subset_size} (sets of {x.shape[0]} and "
                      f"{y.shape[0]} images): its spread is larger", RuntimeWarning, stacklevel=2)
    g = torch.Generator().manual_seed(seed)
    values = torch.stack([
        _mmd2_unbiased(x[torch.randperm(x.shape[0], generator=g)[:size]], y[torch.randperm(y.shape[0], generator=g)[:size]])
        for _ in range(subsets)
    ])
    std = float(values.std()) if subsets > 1 else 0.0
    return KIDResult(float(values.mean()), std, x.shape[0], y.shape[0], size, subsets)
