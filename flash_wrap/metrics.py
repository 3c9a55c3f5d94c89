"""Image-quality metrics on ``(B, 3, H, W)`` images in [0, 1] (ALGORITHMS.md §7)."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import torch

from .errors import InvalidInput
from .perceptual import LPIPSNetwork, load_lpips

__all__ = ["LPIPS", "PSNR_CAP_DB", "ordering_accuracy", "psnr", "spearman", "ssim"]

#: PSNR of identical images is infinite; it is reported as this cap instead (documented).
PSNR_CAP_DB = 100.0


def psnr(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB, ``20·log10(1/√MSE)``, with ``estimate`` clipped to [0, 1].

    Returns ``(B,)``; identical images give :data:`PSNR_CAP_DB`.
    """
    if estimate.shape != target.shape:
        raise InvalidInput(f"psnr needs equal shapes, got {tuple(estimate.shape)} and {tuple(target.shape)}")
    mse = (estimate.clamp(0, 1) - target).double().square().flatten(1).mean(dim=1)
    value = -10.0 * torch.log10(mse.clamp_min(10 ** (-PSNR_CAP_DB / 10)))
    return value.float()


def ordering_accuracy(levels: torch.Tensor, predicted: torch.Tensor) -> tuple[float, float]:
    """Ordering accuracy of [P App. D, Def. 1] for one clean image and ``n`` severities.

    ``OA = 1/|P| · Σ_{(i,j)∈P} 1[sign(s_i − s_j) = sign(σ̂_i − σ̂_j)]`` over the pairs ``P`` of distinct
    levels (all ``n(n−1)`` ordered pairs when the levels are distinct, as in Def. 1); a tie in σ̂
    counts as wrong (as in Def. 1, unlike the official code). Returns ``(OA, fraction of P tied in σ̂)``.
    Fewer than two distinct levels leave no pair to order: ``ValueError``.
    """
    s = levels.double().flatten()
    v = predicted.double().flatten()
    if s.numel() != v.numel() or s.numel() < 2:
        raise InvalidInput(f"need two equal-length sequences of at least 2 values, got {s.numel()} and {v.numel()}")
    ds = torch.sign(s[:, None] - s[None, :])
    dv = torch.sign(v[:, None] - v[None, :])
    pairs = ds != 0
    if not bool(pairs.any()):
        raise InvalidInput(f"ordering accuracy needs at least two distinct levels, got only {float(s[0]):g}")
    agree = (ds == dv)[pairs].double().mean()
    ties = (dv[pairs] == 0).double().mean()
    return float(agree), float(ties)


def spearman(x: torch.Tensor, y: torch.Tensor) -> float:
    """Spearman rank correlation (scipy's, average ranks for ties)."""
    from scipy.stats import spearmanr

    return float(spearmanr(x.double().flatten().cpu().numpy(), y.double().flatten().cpu().numpy()).statistic)


def ssim(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM ``(B,)`` with torchmetrics' defaults (Gaussian window 11, σ 1.5, data range 1),
    ``estimate`` clipped to [0, 1] (ALGORITHMS.md §7)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    if estimate.shape != target.shape:
        raise InvalidInput(f"ssim needs equal shapes, got {tuple(estimate.shape)} and {tuple(target.shape)}")
    value = structural_similarity_index_measure(
        estimate.clamp(0, 1).float(), target.float(), data_range=1.0, reduction="none"
    )
    # a tuple only with return_full_image=True
    return cast(torch.Tensor, value).reshape(-1)


class LPIPS:
    """LPIPS (Zhang et al. 2018) of estimates against targets, both ``(B, 3, H, W)`` with side ≥ 32:
    our plain-torch network (:mod:`flash_wrap.perceptual`), AlexNet backbone by default (its weights
    ship with the package), ``estimate`` clipped to [0, 1] as for PSNR and SSIM, ``target`` in [0, 1].
    """

    def __init__(self, network: LPIPSNetwork) -> None:
        self.network = network

    @classmethod
    def load(cls, net: str = "alex", path: str | Path | None = None) -> LPIPS:
        """LPIPS-``net`` from ``path`` (default: the shipped AlexNet weights); a missing weight file
        raises :class:`~flash_wrap.errors.NotFound` naming it and where to get it."""
        return cls(load_lpips(net, path))

    @property
    def min_side(self) -> int:
        """The smallest image side the backbone takes (pixels)."""
        return int(self.network.backbone.min_side)

    def __call__(self, estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``(B,)`` float32 distances, 0 for identical images."""
        network = self.network.to(estimate.device)
        return network(estimate.clamp(0, 1), target)
