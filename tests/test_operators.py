"""Forward operators: shapes, per-sample independence, noise, exactness, differentiability, errors."""

from __future__ import annotations

import importlib
from collections.abc import Callable

import numpy as np
import pytest
import torch
from scipy import ndimage

from flash_wrap.operators import (
    DEFAULT_NOISE_STD,
    GaussianBlur,
    JoinedOperator,
    NonlinearMotionBlur,
    Operator,
    RandomInpainting,
    SuperResolution,
    Task,
    join_operators,
)
from flash_wrap.registry import get_task, task_names

SIZE = 32

#: Two-sample operators with different parameters per row (SR has none: shared).
OPERATORS: dict[str, Callable[[], Operator]] = {
    "gaussian-blur": lambda: GaussianBlur([0.4, 2.0]),  # radii 2 and 4: zero-padded kernels
    "inpainting-field": lambda: RandomInpainting([0.3, 0.7]),
    "inpainting-per-image": lambda: RandomInpainting.per_image([0.3, 0.7], SIZE, torch.Generator().manual_seed(3)),
    "motion-blur": lambda: NonlinearMotionBlur([2.0, 5.0], [1.5, 3.5], [0, 1]),
    "super-resolution": lambda: SuperResolution(4),
}
PER_SAMPLE = [name for name in OPERATORS if name != "super-resolution"]


def images(batch: int = 2, size: int = SIZE, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.rand((batch, 3, size, size), generator=torch.Generator().manual_seed(seed), dtype=dtype)


def spread(kernel: torch.Tensor) -> float:
    """Second moment of a 2-D kernel about its centre of mass, in px²."""
    yy, xx = torch.meshgrid(*(torch.arange(n, dtype=kernel.dtype) for n in kernel.shape), indexing="ij")
    cy, cx = (kernel * yy).sum(), (kernel * xx).sum()
    return float((kernel * ((yy - cy) ** 2 + (xx - cx) ** 2)).sum())


# -- contract shared by every operator ------------------------------------------------------------
@pytest.mark.parametrize("name", OPERATORS)
def test_shapes_and_measurement_shape(name: str) -> None:
    op = OPERATORS[name]()
    x = images()
    y = op(x)
    assert y.shape == (2, *op.measurement_shape((3, SIZE, SIZE)))
    assert op.to_image(y).shape == x.shape
    assert op.severity.shape == (op.batch_size,)
    assert op.check_measurement(op.measure(x), (SIZE, SIZE)).shape == y.shape


@pytest.mark.parametrize("name", PER_SAMPLE)
def test_rows_match_running_alone(name: str) -> None:
    op = OPERATORS[name]()
    x = images()
    batched = op(x)
    for i in range(2):
        alone = op.select([i])
        assert alone.batch_size == 1
        torch.testing.assert_close(alone(x[i : i + 1]), batched[i : i + 1], atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "make",
    [lambda: GaussianBlur(1.3), lambda: RandomInpainting(0.5), lambda: NonlinearMotionBlur(4.0, 2.0, 7)],
)
def test_shared_parameter_broadcasts(make: Callable[[], Operator]) -> None:
    op = make()
    x = images(batch=3)
    out = op(x)
    assert op.select([0]).batch_size == 1
    for i in range(3):
        torch.testing.assert_close(op(x[i : i + 1]), out[i : i + 1], atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", OPERATORS)
def test_noise_level_and_reproducibility(name: str) -> None:
    op = OPERATORS[name]()
    x = images(size=64) if name != "inpainting-per-image" else images()
    y = op.measure(x, torch.Generator().manual_seed(1))
    residual_std = float((y - op(x)).std())
    assert abs(residual_std - DEFAULT_NOISE_STD) < 0.1 * DEFAULT_NOISE_STD
    torch.testing.assert_close(op.measure(x, torch.Generator().manual_seed(1)), y, atol=0, rtol=0)
    assert not torch.equal(op.measure(x, torch.Generator().manual_seed(2)), y)


@pytest.mark.parametrize("name", PER_SAMPLE)
def test_per_sample_generators_make_rows_independent(name: str) -> None:
    op = OPERATORS[name]()
    x = images()
    batched = op.measure(x, [torch.Generator().manual_seed(10), torch.Generator().manual_seed(11)])
    alone = op.select([1]).measure(x[1:], [torch.Generator().manual_seed(11)])
    torch.testing.assert_close(alone, batched[1:], atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", OPERATORS)
def test_float64_in_float64_out(name: str) -> None:
    op = OPERATORS[name]()
    x = images(dtype=torch.float64)
    assert op(x).dtype == torch.float64
    torch.testing.assert_close(op(x).float(), op(x.float()), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", OPERATORS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_keeps_its_dtype(name: str, dtype: torch.dtype) -> None:
    op = OPERATORS[name]()
    x = images()
    out = op(x.to(dtype))
    assert out.dtype == dtype and op.to_image(out).dtype == dtype
    torch.testing.assert_close(out.float(), op(x), atol=1e-2, rtol=0)


@pytest.mark.parametrize(
    ("make", "builder"),
    [
        (lambda: GaussianBlur([0.5, 1.5]), "gaussian_kernels_1d"),
        (lambda: NonlinearMotionBlur(3.0, 2.0, [0, 1]), "splat"),
    ],
)
def test_kernels_are_built_once_per_resolution(
    make: Callable[[], Operator], builder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    op = make()
    module = importlib.import_module(type(op).__module__)
    calls = []
    original = getattr(module, builder)
    monkeypatch.setattr(module, builder, lambda *args: calls.append(1) or original(*args))
    x = images()
    op(x)
    built = len(calls)
    for _ in range(3):  # a sampling loop: no rebuild, no host-to-device copy
        op(x)
    assert built > 0 and len(calls) == built
    op(images(size=64))
    assert len(calls) > built


@pytest.mark.parametrize("name", OPERATORS)
def test_measure_rejects_bad_images(name: str) -> None:
    op = OPERATORS[name]()
    x = images()
    with pytest.raises(ValueError, match="shape"):
        op.measure(x[0])
    with pytest.raises(ValueError, match="3 channels"):
        op.measure(x[:, :1])
    with pytest.raises(ValueError, match="NaN"):
        op.measure(torch.where(x > 0.5, float("nan"), x))
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\].*0-255"):
        op.measure(x * 255)


@pytest.mark.parametrize("name", PER_SAMPLE)
def test_batch_mismatch_is_rejected(name: str) -> None:
    op = OPERATORS[name]()
    # An explicit mask names its own shape; per-sample parameters name their count.
    expected = r"holds 2 per-sample values but the batch has 3|mask of shape \(2, 1, 32, 32\) .*\(3, 3, 32, 32\)"
    with pytest.raises(ValueError, match=expected):
        op(images(batch=3))
    with pytest.raises(ValueError, match="batch has 3"):
        op.measure(images(batch=3))


# -- differentiability ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make",
    [lambda: GaussianBlur([0.6, 1.4]), lambda: RandomInpainting([0.2, 0.6]), lambda: SuperResolution(2)],
)
def test_linear_operators_pass_gradcheck(make: Callable[[], Operator]) -> None:
    x = images(size=16, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(make(), (x,))


def test_motion_blur_gradient_is_finite_and_nonzero() -> None:
    x = (0.2 + 0.6 * images(size=SIZE, dtype=torch.float64)).requires_grad_()
    (OPERATORS["motion-blur"]()(x) ** 2).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    op = NonlinearMotionBlur(2.5, 2.0, 4)
    interior = (0.2 + 0.6 * images(batch=1, size=16, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda v: op(v)[..., 6:10, 6:10], (interior,), atol=1e-6)


# -- adjoints (transpose of the noise-free map) -----------------------------------------------------
LINEAR = [name for name in OPERATORS if name != "motion-blur"]


def test_linear_flags() -> None:
    assert {name for name, make in OPERATORS.items() if make().linear} == set(LINEAR)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", [*LINEAR, "gaussian-blur-wide"])
def test_adjoint_satisfies_the_dot_product_identity_per_sample(name: str, dtype: torch.dtype) -> None:
    make = OPERATORS.get(name, lambda: GaussianBlur([3.0, 0.0]))  # wide: radius capped, folds everywhere
    op = make()
    x = images(dtype=dtype)
    u = torch.randn(op(x).shape, generator=torch.Generator().manual_seed(5), dtype=dtype)
    transposed = op.adjoint(u)
    assert transposed.shape == x.shape and transposed.dtype == dtype
    lhs = (op(x) * u).flatten(1).sum(dim=1)
    rhs = (x * transposed).flatten(1).sum(dim=1)
    torch.testing.assert_close(lhs, rhs, rtol=1e-5, atol=0.0)


def _dense_matrix(op: Operator, size: int) -> torch.Tensor:
    basis = torch.eye(3 * size * size, dtype=torch.float64).view(-1, 3, size, size)
    return op(basis).flatten(1).T  # column j = A(e_j)


@pytest.mark.parametrize("make", [lambda: GaussianBlur(1.0), lambda: SuperResolution(4)])
def test_adjoint_is_the_transposed_matrix(make: Callable[[], Operator]) -> None:
    # Gaussian blur at 16² has a 2-px reflect padding: the transpose folds the padded borders
    # back onto the pixels they mirror, which the dense matrix of A encodes exactly.
    op, size = make(), 16
    matrix = _dense_matrix(op, size)
    u = torch.randn(2, matrix.shape[0], generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    shaped = u.view(2, *op.measurement_shape((3, size, size)))
    torch.testing.assert_close(op.adjoint(shaped).flatten(1), u @ matrix)


@pytest.mark.parametrize(
    "make",
    [lambda: GaussianBlur([0.6, 1.4]), lambda: RandomInpainting([0.2, 0.6]), lambda: SuperResolution(2)],
)
def test_adjoint_is_differentiable_in_its_input(make: Callable[[], Operator]) -> None:
    op = make()
    u = torch.randn(op(images(size=16, dtype=torch.float64)).shape, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(op.adjoint, (u,))


def test_nonlinear_motion_blur_has_no_adjoint() -> None:
    op = OPERATORS["motion-blur"]()
    assert not op.linear
    with pytest.raises(NotImplementedError, match="NonlinearMotionBlur is not linear.*no transpose"):
        op.adjoint(images())


def test_adjoint_rejects_a_batch_mismatch() -> None:
    with pytest.raises(ValueError, match="holds 2 per-sample values but the batch has 3"):
        GaussianBlur([0.5, 1.0]).adjoint(images(batch=3))


# -- Gaussian blur --------------------------------------------------------------------------------
def test_gaussian_blur_matches_scipy_on_delta_and_random_image() -> None:
    sigma = 2.0
    delta = torch.zeros(1, 3, 128, 128, dtype=torch.float64)
    delta[..., 64, 64] = 1
    noise = images(batch=1, size=128, dtype=torch.float64)
    op = GaussianBlur(sigma)
    for x in (delta, noise):
        expected = ndimage.gaussian_filter(x[0, 0].numpy(), sigma, truncate=6.0, mode="mirror")
        np.testing.assert_allclose(op(x)[0, 0].numpy(), expected, atol=1e-10)


def test_gaussian_radius_is_capped_at_the_container() -> None:
    x = images(batch=1, size=64, dtype=torch.float64)
    radius = 8  # round(30 * 64 / 256) = 7.5, rounded half up
    assert GaussianBlur(3.0).kernels_1d(64).shape == (1, 2 * radius + 1)
    expected = ndimage.gaussian_filter(x[0, 2].numpy(), 3.0, mode="mirror", radius=radius)
    np.testing.assert_allclose(GaussianBlur(3.0)(x)[0, 2].numpy(), expected, atol=1e-10)


def test_gaussian_sigma_zero_is_identity_and_constants_stay_constant() -> None:
    x = images()
    torch.testing.assert_close(GaussianBlur(0.0)(x), x, atol=0, rtol=0)
    constant = torch.full((2, 3, SIZE, SIZE), 0.3)
    torch.testing.assert_close(GaussianBlur([0.5, 2.5])(constant), constant, atol=1e-6, rtol=0)


def test_gaussian_rejects_negative_sigma_and_too_small_images() -> None:
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        GaussianBlur([1.0, -0.1])
    with pytest.raises(ValueError, match="reflect padding of 4 px.*32x3"):
        GaussianBlur(2.0)(torch.rand(1, 3, 32, 3))


# -- inpainting -----------------------------------------------------------------------------------
def test_inpainting_masks_are_nested_and_hit_the_ratio() -> None:
    masks = RandomInpainting([0.2, 0.5, 0.8]).mask_for(128)
    assert masks.shape == (3, 1, 128, 128)
    assert bool((masks[2] <= masks[1]).all() and (masks[1] <= masks[0]).all())
    torch.testing.assert_close(1 - masks.mean(dim=(1, 2, 3)), torch.tensor([0.2, 0.5, 0.8]), atol=0.01, rtol=0)
    x = images(size=128)
    zeroed = (RandomInpainting(0.5)(x) == 0).float().mean()
    assert abs(float(zeroed) - 0.5) < 0.01


def test_inpainting_field_is_shared_and_seeded() -> None:
    a, b = RandomInpainting(0.5).mask_for(64), RandomInpainting(0.5).mask_for(64)
    assert torch.equal(a, b)
    assert not torch.equal(a, RandomInpainting(0.5, field_seed=1).mask_for(64))


def test_inpainting_per_image_masks_differ_and_severity_is_their_fraction() -> None:
    op = RandomInpainting.per_image(0.6, 64, torch.Generator().manual_seed(0), batch=2)
    masks = op.mask_for(64)
    assert not torch.equal(masks[0], masks[1])
    torch.testing.assert_close(op.severity, 1 - masks.mean(dim=(1, 2, 3)))
    assert bool((op.severity - 0.6).abs().max() < 0.03)


def test_inpainting_rejects_bad_masks_and_ratios() -> None:
    with pytest.raises(ValueError, match=r"missing_ratio must be <= 1"):
        RandomInpainting(1.2)
    with pytest.raises(ValueError, match=r"missing_ratio must be >= 0"):
        RandomInpainting(-0.1)
    with pytest.raises(ValueError, match=r"mask must have shape \(B, 1, H, W\), got \(1, 3, 8, 8\)"):
        RandomInpainting(mask=torch.ones(1, 3, 8, 8))
    with pytest.raises(ValueError, match="0 .*or 1"):
        RandomInpainting(mask=torch.full((1, 1, 8, 8), 0.5))
    op = RandomInpainting(mask=torch.ones(2, 1, 8, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"mask of shape \(2, 1, 8, 8\) does not fit 16x16"):
        op(torch.rand(2, 3, 16, 16))
    with pytest.raises(ValueError, match=r"mask of shape \(2, 1, 8, 8\) does not fit images of shape \(3, 3, 8, 8\)"):
        op(torch.rand(3, 3, 8, 8))


# -- motion blur ----------------------------------------------------------------------------------
def test_motion_kernels_are_normalized_deterministic_and_seeded() -> None:
    kernels = NonlinearMotionBlur(20.0, 2.5, [0, 1]).kernels(256)
    assert kernels.shape == (2, 61, 61)
    assert bool((kernels >= 0).all())
    torch.testing.assert_close(kernels.sum(dim=(1, 2)), torch.ones(2))
    assert torch.equal(kernels, NonlinearMotionBlur(20.0, 2.5, [0, 1]).kernels(256))
    assert (kernels[0] - kernels[1]).abs().sum() > 0.5
    nearby = NonlinearMotionBlur(20.0 + 1e-4, 2.5, [0, 1]).kernels(256)
    assert (kernels - nearby).abs().max() < 1e-3


def test_longer_motion_spreads_further() -> None:
    spreads = [spread(NonlinearMotionBlur(length, 2.0, 5).kernels(256)[0].double()) for length in (4, 12, 30)]
    assert spreads[0] < spreads[1] < spreads[2]
    assert NonlinearMotionBlur(0.0, 2.0, 5).kernels(64)[0, 8, 8] == 1  # zero length: identity


def test_motion_blur_rejects_paths_outside_the_container() -> None:
    with pytest.raises(ValueError, match="leaves the 9x9 kernel container"):
        NonlinearMotionBlur(20.0, 0.0, 0)(images())
    with pytest.raises(ValueError, match="seed must hold integers"):
        NonlinearMotionBlur(2.0, 1.0, 0.5)


# -- super-resolution -----------------------------------------------------------------------------
def test_super_resolution_sizes_and_divisibility() -> None:
    op = SuperResolution(4)
    assert op(images(size=64)).shape == (2, 3, 16, 16)
    assert op.measurement_shape((3, 64, 32)) == (3, 16, 8)
    assert op.severity.tolist() == [4.0] and op.batch_size == 1
    with pytest.raises(ValueError, match="factor 4 must divide the image size, got 30x30"):
        op(torch.rand(1, 3, 30, 30))
    with pytest.raises(ValueError, match="factor must be an integer"):
        SuperResolution(2.5)  # type: ignore[arg-type]


# -- tasks ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", task_names())
def test_task_sampling_is_reproducible_and_in_range(name: str) -> None:
    task = get_task(name)
    op, levels = task.sample(4, SIZE, torch.Generator().manual_seed(0))
    op2, levels2 = task.sample(4, SIZE, torch.Generator().manual_seed(0))
    assert op.task == name
    assert torch.equal(levels, levels2) and torch.equal(op.severity, op2.severity)
    x = images(batch=4)
    assert torch.equal(op(x), op2(x))
    lo, hi = task.train_range
    assert levels.shape == (4,) and bool(((levels >= lo) & (levels <= hi)).all())


@pytest.mark.parametrize("name", ["gaussian-blur", "random-inpainting", "motion-blur"])
def test_task_severity_grows_with_level(name: str) -> None:
    severity = get_task(name).operator(torch.linspace(0, 1, 5), 256).severity
    assert bool((severity.diff() > 0).all())


def test_inpainting_eval_range_gives_70_to_80_percent_missing() -> None:
    task = get_task("random-inpainting")
    op, _ = task.sample(64, 64, torch.Generator().manual_seed(0), level_range=task.eval_range)
    assert bool(((op.severity >= 0.7 - 1e-6) & (op.severity <= 0.8 + 1e-6)).all())


def test_task_parameters_scale_with_image_size() -> None:
    task = get_task("gaussian-blur")
    torch.testing.assert_close(task.operator(0.5, 64).severity * 4, task.operator(0.5, 256).severity)
    torch.testing.assert_close(task.operator(1.0, 256).severity, torch.tensor([3.0]))
    motion = get_task("motion-blur")
    torch.testing.assert_close(motion.operator(0.5, 64).severity * 4, motion.operator(0.5, 256).severity)


def test_task_errors_name_the_problem() -> None:
    with pytest.raises(LookupError, match="unknown task 'deblur'; known tasks: gaussian-blur, motion-blur, "
                       "random-inpainting, super-resolution"):
        get_task("deblur")
    with pytest.raises(ValueError, match="level must be <= 1"):
        get_task("gaussian-blur").operator(1.5, 64)
    with pytest.raises(ValueError, match="level_range"):
        get_task("gaussian-blur").sample(2, 64, torch.Generator(), level_range=(0.5, 0.2))


def _build(t: torch.Tensor, size: int, noise_std: float, seeds: torch.Tensor) -> Operator:
    return GaussianBlur(1.0 + t, noise_std)


def test_a_task_states_its_demo_levels_and_severity_words() -> None:
    assert get_task("motion-blur").demo_levels == (0.0, 1.0)
    assert get_task("random-inpainting").describe(0.3) == "30% missing"
    assert get_task("super-resolution").demo_levels == (0.0,)  # t is ignored: one severity row
    # left out: the ends of the training range (one level for a point range), a plain number
    assert Task("a-b", "", (0.0, 1.0), (0.2, 0.6), _build).demo_levels == (0.2, 0.6)
    assert Task("a-b", "", (0.0, 1.0), (0.5, 0.5), _build).demo_levels == (0.5,)
    assert Task("a-b", "", (0.0, 1.0), (0.0, 1.0), _build).describe(0.123456) == "severity 0.123"


@pytest.mark.parametrize(
    "changes,match",
    [
        ({"name": "Box Inpainting"}, "lower-case words joined by '-'"),
        ({"name": ""}, "lower-case words"),
        ({"eval_range": (0.5, 0.2)}, "eval_range must satisfy 0 <= low <= high <= 1"),
        ({"train_range": (0.0, 1.5)}, "train_range must satisfy"),
        ({"build": "GaussianBlur"}, "build must be callable"),
        ({"demo_levels": (0.0, 2.0)}, "demo_levels must lie in \\[0, 1\\]"),
        ({"severity_format": "{name}"}, "severity_format must format one number"),
    ],
)
def test_a_wrong_task_definition_is_refused_when_it_is_made(changes: dict, match: str) -> None:
    fields = {"name": "ok", "summary": "", "eval_range": (0.0, 1.0), "train_range": (0.0, 1.0), "build": _build}
    with pytest.raises((ValueError, TypeError), match=match):
        Task(**{**fields, **changes})


# -- joining one-sample operators (what a stream steps together) ------------------------------------
def _rows(op: Operator) -> list[Operator]:
    return [op.select([i]) if op.batch_size > 1 else op for i in range(2)]


#: the generic row-wise join: parts that cannot share one object (another truncate; a mask beside a ratio)
MIXED: dict[str, Callable[[], list[Operator]]] = {
    "blur-truncate": lambda: [GaussianBlur(0.4), GaussianBlur(2.0, truncate=3.0)],
    "inpainting-mask-and-ratio": lambda: [
        RandomInpainting.per_image(0.3, SIZE, torch.Generator().manual_seed(3)), RandomInpainting(0.7)],
}


@pytest.mark.parametrize("name", OPERATORS)
def test_joining_rows_gives_the_batched_operator(name: str) -> None:
    op = OPERATORS[name]()
    joined = join_operators(_rows(op))
    assert type(joined) is type(op), f"{name}: the built-in join fell back to {type(joined).__name__}"
    assert joined.batch_size == op.batch_size and joined.task == op.task and joined.noise_std == op.noise_std
    x = images()
    torch.testing.assert_close(joined(x), op(x), rtol=0, atol=0)
    torch.testing.assert_close(joined.severity, op.severity)


@pytest.mark.parametrize("name", MIXED)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_row_wise_join_applies_each_row_s_own_operator_and_its_transpose(name: str, dtype: torch.dtype) -> None:
    parts = MIXED[name]()
    joined = join_operators(parts)
    assert isinstance(joined, JoinedOperator) and joined.linear and joined.batch_size == 2
    x = images(dtype=dtype)
    expected = torch.cat([part(x[i : i + 1]) for i, part in enumerate(parts)])
    torch.testing.assert_close(joined(x), expected, rtol=0, atol=0)
    u = torch.randn(expected.shape, generator=torch.Generator().manual_seed(5), dtype=dtype)
    lhs = (joined(x) * u).flatten(1).sum(dim=1)
    rhs = (x * joined.adjoint(u)).flatten(1).sum(dim=1)
    torch.testing.assert_close(lhs, rhs, rtol=1e-5, atol=0.0)
    torch.testing.assert_close(joined.select([1])(x[1:]), parts[1](x[1:]), rtol=0, atol=0)
    torch.testing.assert_close(joined.severity, torch.cat([p.severity for p in parts]))


def test_a_join_of_linear_and_nonlinear_rows_has_no_transpose() -> None:
    joined = JoinedOperator([GaussianBlur(1.0), NonlinearMotionBlur(2.0, 1.0, 0)])
    assert not joined.linear
    with pytest.raises(NotImplementedError, match="not linear"):
        joined.adjoint(images())


@pytest.mark.parametrize(
    "parts,match",
    [
        ([], "at least one operator"),
        ([GaussianBlur([1.0, 2.0])], "part 0 \\(GaussianBlur\\) has 2 rows"),
        ([GaussianBlur(1.0), RandomInpainting(0.5)], "part 1 belongs to task 'random-inpainting'"),
        ([GaussianBlur(1.0), GaussianBlur(1.0, noise_std=0.1)], "part 1 has noise_std 0.1"),
        ([GaussianBlur(1.0), "blur"], "part 1 is a str"),
    ],
)
def test_joins_that_cannot_be_one_batch_are_refused(parts: list, match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        join_operators(parts)


def test_joined_rows_of_different_measurement_sizes_are_refused_when_applied() -> None:
    joined = join_operators([SuperResolution(2), SuperResolution(4)])
    assert isinstance(joined, JoinedOperator)
    with pytest.raises(ValueError, match="outputs of different shapes"):
        joined(images())
