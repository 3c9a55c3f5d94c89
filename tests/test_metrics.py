"""Metrics on [0, 1] images: PSNR (capped), SSIM, optional LPIPS, ordering accuracy, Spearman."""

import pytest
import torch

from flash_wrap.metrics import LPIPS, PSNR_CAP_DB, ordering_accuracy, psnr, spearman, ssim


def test_psnr_known_values():
    x = torch.full((2, 3, 8, 8), 0.5)
    assert psnr(x, x).tolist() == [PSNR_CAP_DB, PSNR_CAP_DB]
    assert psnr(x + 0.1, x).tolist() == pytest.approx([20.0, 20.0], abs=1e-4)
    assert float(psnr(torch.ones(1, 3, 4, 4) * 1.7, torch.zeros(1, 3, 4, 4))) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="equal shapes"):
        psnr(x, x[:1])


def test_ordering_accuracy_perfect_reversed_and_random():
    levels = torch.linspace(0, 1, 10)
    assert ordering_accuracy(levels, levels * 3 + 1) == (1.0, 0.0)
    assert ordering_accuracy(levels, -levels) == (0.0, 0.0)
    oa, ties = ordering_accuracy(levels, torch.zeros(10))
    assert oa == 0.0 and ties == 1.0  # Def. 1: ties count as wrong
    g = torch.Generator().manual_seed(0)
    random = [ordering_accuracy(levels, torch.rand(10, generator=g))[0] for _ in range(400)]
    assert abs(sum(random) / len(random) - 0.5) < 0.02
    assert spearman(levels, levels**2) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="equal-length"):
        ordering_accuracy(levels, levels[:3])


def test_ordering_accuracy_orders_only_pairs_of_distinct_levels():
    """Pairs at one level cannot be ordered: they are left out, not counted wrong; one level alone
    leaves no pair (the earlier formula scored it 0)."""
    assert ordering_accuracy(torch.tensor([0.2, 0.2, 0.8]), torch.tensor([1.0, 2.0, 3.0])) == (1.0, 0.0)
    with pytest.raises(ValueError, match="at least two distinct levels, got only 0.5"):
        ordering_accuracy(torch.full((10,), 0.5), torch.rand(10))


def test_ssim_identical_and_degraded():
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert ssim(x, x).tolist() == pytest.approx([1.0, 1.0], abs=1e-5)
    noisy = x + 0.2 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    assert (ssim(noisy, x) < 0.9).all()
    assert ssim(torch.full_like(x, 1.5), x).tolist() == ssim(torch.ones_like(x), x).tolist()  # clipped first


def test_lpips_uses_the_shipped_network_and_clips_estimates_like_psnr():
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    lpips = LPIPS.load()
    assert lpips(x, x).tolist() == [0.0, 0.0]
    assert lpips(x * 1.5, x).tolist() == lpips((x * 1.5).clamp(0, 1), x).tolist()
    assert (lpips(x.flip(-1), x) > 0.05).all()
