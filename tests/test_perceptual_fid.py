"""FID and KID on feature sets (flash_wrap.perceptual.fid): exact cases and independent computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flash_wrap.errors import InvalidInput
from flash_wrap.perceptual import frechet_distance, kernel_inception_distance


def _features(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) @ torch.randn(d, d, generator=g) / d**0.5


def test_fid_of_a_set_with_itself_is_zero_and_reports_its_counts():
    x = _features(300, 64, 0)
    with pytest.warns(RuntimeWarning, match="300 and 300 images .fewer than 2048. is biased"):
        result = frechet_distance(x, x)
    assert abs(result.value) < 1e-6 and (result.n_real, result.n_fake) == (300, 300)


@pytest.mark.filterwarnings("ignore:FID from")
def test_fid_equals_the_closed_form_and_scipy_sqrtm():
    from scipy.linalg import sqrtm

    x, y = _features(400, 16, 1), _features(250, 16, 2) + 0.3
    assert frechet_distance(x, x + 0.5).value == pytest.approx(16 * 0.25, rel=1e-9)  # only the means differ
    a, b = x.double().numpy(), y.double().numpy()
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(ca + cb - 2 * sqrtm(ca @ cb).real)
    assert frechet_distance(x, y).value == pytest.approx(expected, rel=1e-8)


@pytest.mark.filterwarnings("ignore:FID from")
def test_fid_of_sets_smaller_than_the_feature_dimension_equals_the_dense_form():
    """Fewer vectors than dimensions take the nuclear-norm path (tr √(Σx^½ Σy Σx^½) = ‖ABᵀ‖*); it
    equals the closed form with scipy's sqrtm on the full covariances."""
    from scipy.linalg import sqrtm

    x, y = _features(12, 64, 3), _features(9, 64, 4) + 0.2
    a, b = x.double().numpy(), y.double().numpy()
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(ca + cb - 2 * sqrtm(ca @ cb).real)
    assert frechet_distance(x, y).value == pytest.approx(expected, rel=1e-7)
    assert abs(frechet_distance(x, x).value) < 1e-9


def _kid_direct(x: np.ndarray, y: np.ndarray) -> float:
    m, d = x.shape
    k = lambda a, b: (float(a @ b) / d + 1) ** 3
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return xx / (m * (m - 1)) + yy / (m * (m - 1)) - 2 * xy / (m * m)


def test_kid_equals_a_direct_quadratic_computation():
    x, y = _features(30, 8, 3), _features(30, 8, 4) + 0.2
    result = kernel_inception_distance(x, y, subset_size=30, subsets=3)  # each subset: all, permuted
    assert result.mean == pytest.approx(_kid_direct(x.double().numpy(), y.double().numpy()), rel=1e-10)
    assert result.std == pytest.approx(0.0, abs=1e-12)
    assert (result.n_real, result.n_fake, result.subset_size, result.subsets) == (30, 30, 30, 3)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_another():
    x, same = _features(800, 16, 5).split(400)  # two samples of one distribution
    other = same + 0.5
    with pytest.warns(RuntimeWarning, match="subsets of 400 images instead of 1000"):
        whole = kernel_inception_distance(x, same, subsets=3)
    assert whole.subset_size == 400 and whole.std < 1e-12  # every subset is the whole set
    near = kernel_inception_distance(x, same, subset_size=100, subsets=50)
    far = kernel_inception_distance(x, other, subset_size=100, subsets=50)
    assert abs(near.mean) < near.std and far.mean > 5 * far.std and abs(near.mean) < 0.05 * far.mean


@pytest.mark.parametrize(("real", "fake", "match"), [
    (torch.zeros(5, 4), torch.zeros(5, 3), "feature dimensions differ: real 4, fake 3"),
    (torch.zeros(5, 4, 1), torch.zeros(5, 4), r"\(N, D\), got real of shape \(5, 4, 1\)"),
    (torch.zeros(1, 4), torch.zeros(5, 4), "at least 2 feature vectors per set, got 1 real"),
])
def test_bad_feature_sets_are_refused_in_one_line(real, fake, match):
    for metric in (frechet_distance, kernel_inception_distance):
        with pytest.raises(InvalidInput, match=match):
            metric(real, fake)
