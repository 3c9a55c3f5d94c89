"""The slot scheduler (flash_wrap.scheduling): streamed results equal the fixed-batch path per image,
the input is read lazily (at most ``slots`` samples held), samples finish in their own order, slot
use, start-step buckets, what observers see, and the refusals of bad input before any work."""

from __future__ import annotations

import pytest
import torch

from flash_wrap import Flash, Solver, StepState
from flash_wrap.errors import FlashWrapError
from flash_wrap.operators import GaussianBlur, RandomInpainting
from flash_wrap.registry import get_solver
from flash_wrap.scheduling import SlotStats, StreamResult, bucket_batches, start_order, stream
from flash_wrap.testing import ProgrammedSeverity, generators, smooth_images, tiny_model

STEPS = 20
SEEDS = [100, 101, 102, 103, 104, 105]
#: a few Adam iterations and a hard-DC step every 3 keep ReSample cheap (as its contract suite does)
FAST = {"resample": {"iterations": 3, "every_n": 3}}


class Prior(Solver):
    """A probe: the unconditional prior step (one counted denoiser call), cheap enough for many samples."""

    name = "prior-probe"
    fallback = {"c": 1.0}

    def step(self, state: StepState) -> torch.Tensor:
        eps = state.predict_noise(state.z)
        z0 = state.sampler.tweedie(state.z, eps, state.index)
        return state.sampler.step(state.z, eps, z0, state.index, state.generator)


def _problem(n: int = len(SEEDS)):
    """``n`` blurred images of spread brightness (so spread programmed severities), ``(n, 3, 32, 32)``."""
    brightness = torch.linspace(0.05, 0.6, n)[torch.randperm(n, generator=torch.Generator().manual_seed(2))]
    op = GaussianBlur(sigma=torch.linspace(0.4, 2.5, n))
    x = smooth_images(n, brightness=brightness.tolist(), seed=1)
    return op.measure(x, generator=torch.Generator().manual_seed(0)), op


def _model(dtype: torch.dtype = torch.float32, scale: float = 1.0):
    model = tiny_model("vq", image_size=32, seed=0).to(dtype)
    model.add_severity_encoder("gaussian-blur", ProgrammedSeverity(model, scale).to(dtype))
    return model


def _spread_scale(solver: Solver, y: torch.Tensor, top: int) -> float:
    """The programmed-severity scale that puts the brightest sample at start ``top``."""
    return (1.0 / float(solver.sampler.snr[top])) / float(y.flatten(1).mean(dim=1).max())


def _adaptive(name: str, dtype: torch.dtype = torch.float32):
    """A solver whose Flash starts spread over the grid, with its problem."""
    y, op = _problem()
    solver_class = get_solver(name)
    probe = solver_class(_model(dtype), steps=STEPS)
    model = _model(dtype, _spread_scale(probe, y, 4))  # starts 1 … 4 with c·v below the noise cap
    return solver_class(model, steps=STEPS, **FAST.get(name, {})), y.to(dtype), op


def _samples(y, op, seeds=SEEDS):
    return [(y[i : i + 1], op.select([i]), torch.Generator().manual_seed(s)) for i, s in enumerate(seeds)]


def _by_index(results) -> dict[int, object]:
    out = {}
    for result in results:
        assert isinstance(result, StreamResult) and result.index not in out
        out[result.index] = result.reconstruction
    return out


def _assert_same_per_image(streamed, fixed, tol: float) -> None:
    assert sorted(streamed) == list(range(fixed.nfe.numel()))
    for i, out in streamed.items():
        assert out.images.shape == (1, *fixed.images.shape[1:])
        assert out.nfe.tolist() == [int(fixed.nfe[i])] and out.start_step.tolist() == [int(fixed.start_step[i])]
        assert out.decoder_calls.tolist() == [int(fixed.decoder_calls[i])]
        torch.testing.assert_close(out.latents[0], fixed.latents[i], atol=tol, rtol=tol)
        torch.testing.assert_close(out.images[0], fixed.images[i], atol=tol, rtol=tol)
        if fixed.sigma_hat is not None:
            torch.testing.assert_close(out.sigma_hat[0], fixed.sigma_hat[i], atol=tol, rtol=tol)


# -- the same result per image as the fixed-batch path ------------------------------------------------
@pytest.mark.parametrize("name", ["latent-dps", "gml-dps", "psld", "resample"])
def test_streamed_and_fixed_batch_results_agree_per_image_in_float32(name):
    solver, y, op = _adaptive(name)
    flash = Flash(solver)
    fixed = flash.reconstruct(y, op, generators(SEEDS), progress=False)
    assert len(set(fixed.start_step.tolist())) >= 3, fixed.start_step  # the samples enter at different steps
    _assert_same_per_image(_by_index(flash.stream(_samples(y, op), slots=3, progress=False)), fixed, 1e-4)
    # bare on a short grid: from pure noise a random tiny model's guided steps amplify float32
    # rounding by orders of magnitude per step, alone vs batched alike (float64 below is exact)
    short = get_solver(name)(solver.model, steps=4, **FAST.get(name, {}))
    bare = short.reconstruct(y[:3], op.select([0, 1, 2]), generators(SEEDS[:3]), progress=False)
    _assert_same_per_image(_by_index(stream(short, _samples(y, op)[:3], slots=2, progress=False)), bare, 1e-4)


@pytest.mark.parametrize("window", [None, 4])
def test_streamed_and_fixed_batch_results_agree_exactly_in_float64(window):
    solver, y, op = _adaptive("latent-dps", torch.float64)
    flash = Flash(solver)
    fixed = flash.reconstruct(y, op, generators(SEEDS), progress=False)
    assert fixed.latents.dtype == torch.float64
    streamed = _by_index(flash.stream(_samples(y, op), slots=3, window=window, progress=False))
    _assert_same_per_image(streamed, fixed, 1e-9)
    bare = solver.reconstruct(y, op, generators(SEEDS), progress=False)
    _assert_same_per_image(_by_index(stream(solver, _samples(y, op), slots=4, window=window, progress=False)), bare, 1e-9)


def test_a_three_dimensional_measurement_is_one_sample():
    solver, y, op = _adaptive("latent-dps")
    flat = [(y[i], op.select([i]), torch.Generator().manual_seed(s)) for i, s in enumerate(SEEDS[:2])]
    a = _by_index(Flash(solver).stream(flat, slots=2, progress=False))
    b = _by_index(Flash(solver).stream(_samples(y, op)[:2], slots=2, progress=False))
    for i in (0, 1):
        assert torch.equal(a[i].latents, b[i].latents)


# -- lazy reading, order, buckets ---------------------------------------------------------------------
def test_the_stream_reads_lazily_and_holds_at_most_slots_samples():
    solver, y, op = _adaptive("latent-dps")
    samples = _samples(y, op)
    for slots, window in [(2, None), (3, None), (2, 3)]:
        taken = 0

        def counting():
            nonlocal taken
            for sample in samples:
                taken += 1
                yield sample

        held = []
        for handed_back, _ in enumerate(Flash(solver).stream(counting(), slots=slots, window=window, progress=False)):
            held.append(taken - handed_back)  # read and not yet handed back, this one included
        limit = slots + (window or 0)
        assert max(held) <= limit, (slots, window, held)
        assert held[0] < len(samples), f"the whole input was read before the first result: {held}"
        assert taken == len(samples)


def test_samples_finish_in_their_own_order():
    solver, y, op = _adaptive("latent-dps")
    starts = Flash(solver).reconstruct(y, op, generators(SEEDS), progress=False).start_step.tolist()
    n = len(starts)
    # all at once: each leaves when its own start is used up (ties in input order)
    together = [r.index for r in Flash(solver).stream(_samples(y, op), slots=n, progress=False)]
    assert together == sorted(range(n), key=lambda i: starts[i]) and together != list(range(n))
    # one slot: input order; one slot and a window over everything: largest start first (buckets)
    assert [r.index for r in Flash(solver).stream(_samples(y, op), slots=1, progress=False)] == list(range(n))
    bucketed = [r.index for r in Flash(solver).stream(_samples(y, op), slots=1, window=n, progress=False)]
    assert bucketed == start_order(starts) and [starts[i] for i in bucketed] == sorted(starts, reverse=True)


def test_a_sample_starting_at_zero_is_decoded_without_a_step():
    model = _model()
    solver = Prior(model, steps=STEPS)
    y, op = _problem(3)
    flash = Flash(solver, fixed_start=[3, 0, 2])
    seen: list[list[int]] = []
    streamed = _by_index(flash.stream(_samples(y, op, SEEDS[:3]), slots=2, progress=False,
                                      callback=lambda state, output: seen.append(state.rows.tolist())))
    assert 1 not in {row for rows in seen for row in rows}
    assert streamed[1].nfe.tolist() == [0] and streamed[1].start_step.tolist() == [0]
    _assert_same_per_image(streamed, flash.reconstruct(y, op, generators(SEEDS[:3]), progress=False), 1e-5)


def test_observers_see_the_busy_slots_each_at_its_own_grid_index():
    model = _model()
    solver = Prior(model, steps=STEPS)
    y, op = _problem(4)
    steps: list[tuple[list[int], list[int]]] = []

    def callback(state, output):
        assert torch.equal(state.t, solver.sampler.timesteps[state.index])
        assert output.shape == state.z.shape and state.y.shape[0] == state.z.shape[0] == state.operator.batch_size
        steps.append((state.rows.tolist(), state.index.tolist()))

    flash = Flash(solver, fixed_start=[5, 2, 7, 3])
    results = flash.stream(_samples(y, op, SEEDS[:4]), slots=2, progress=False, callback=callback)
    streamed = _by_index(results)
    assert any(len(set(index)) > 1 for _, index in steps), "no step held rows at different grid indices"
    assert all(len(rows) <= 2 for rows, _ in steps)
    for i, out in streamed.items():
        visits = [index[rows.index(i)] for rows, index in steps if i in rows]
        assert visits == list(range(int(out.start_step[0]) - 1, -1, -1)), (i, visits)  # s−1, …, 0 once each
    assert results.stats.denoiser_batches == len(steps)
    assert results.stats.slot_steps == sum(int(out.nfe[0]) for out in streamed.values()) == 5 + 2 + 7 + 3


def test_slot_use_of_a_stream_against_fixed_batches_and_buckets():
    n, slots = 64, 4
    starts = torch.randint(1, STEPS, (n,), generator=torch.Generator().manual_seed(4)).tolist()
    model = _model()
    solver = Prior(model, steps=STEPS)
    y, op = _problem(n)
    flash = Flash(solver, fixed_start=starts)
    seeds = list(range(n))

    streamed = flash.stream(_samples(y, op, seeds), slots=slots, window=16, progress=False)
    nfe = sum(int(r.reconstruction.nfe[0]) for r in streamed)
    assert streamed.stats.slot_steps == nfe == sum(starts)

    def fixed_batches(batches):
        stats = SlotStats(slots)
        for rows in batches:
            Flash(solver, fixed_start=[starts[i] for i in rows]).reconstruct(
                y[rows], op.select(rows), generators([seeds[i] for i in rows]), progress=False, callback=stats)
        assert stats.slot_steps == sum(starts)
        return stats.slot_use

    in_order = fixed_batches([list(range(i, i + slots)) for i in range(0, n, slots)])
    buckets = fixed_batches(bucket_batches(starts, slots))
    print(f"slot use: stream {streamed.stats.slot_use:.3f}, buckets {buckets:.3f}, fixed batches {in_order:.3f}")
    assert streamed.stats.slot_use >= 0.95
    assert in_order < 0.8 and in_order < buckets < streamed.stats.slot_use + 0.05


def test_bucket_batches_group_similar_start_steps():
    assert bucket_batches([3, 9, 1, 9, 5], 2) == [[1, 3], [4, 0], [2]]
    assert bucket_batches(torch.tensor([2, 4]), 5) == [[1, 0]]
    assert bucket_batches([], 3) == []
    assert start_order([1, 1, 2]) == [2, 0, 1]
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        bucket_batches([1, 2], 0)


def test_slot_stats_before_any_call_is_not_a_number():
    assert SlotStats(4).slot_use != SlotStats(4).slot_use


# -- bad input: one line, before any work -------------------------------------------------------------
class Untouchable:
    def __iter__(self):
        raise AssertionError("the samples were read before the arguments were checked")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"slots": 0}, "slots must be >= 1, got 0"),
        ({"slots": -2}, "slots must be >= 1, got -2"),
        ({"slots": 2.5}, "slots must be a whole number >= 1, got float 2.5"),
        ({"slots": True}, "slots must be a whole number"),
        ({"window": 0}, "window must be >= 1, got 0"),
        ({"callback": "print"}, "callback must be callable"),
    ],
)
def test_bad_arguments_are_refused_before_the_samples_are_read(kwargs, match):
    solver = Prior(_model(), steps=STEPS)
    for flash in (None, Flash(solver)):
        with pytest.raises(FlashWrapError, match=match) as err:
            stream(solver, Untouchable(), flash=flash, **kwargs)
        assert "\n" not in str(err.value)


def test_a_flash_of_another_solver_and_samples_that_are_not_iterable_are_refused():
    model = _model()
    solver = Prior(model, steps=STEPS)
    with pytest.raises(FlashWrapError, match="flash must wrap the solver"):
        stream(solver, [], flash=Flash(Prior(model, steps=STEPS)))
    with pytest.raises(TypeError, match="samples must be an iterable"):
        stream(solver, 5)


def _bad_samples(y, op):
    good = _samples(y, op, SEEDS[:3])
    small = torch.rand(1, 3, 16, 16)
    shared = torch.Generator().manual_seed(0)
    return {
        "operator batch": ([good[0], (y[1:2], op.select([1, 2]), good[1][2])], "stream sample 1: its operator has batch size 2"),
        "mixed sizes": ([*good[:2], (small, GaussianBlur(1.0), torch.Generator())], "stream sample 2: y has shape \\(1, 3, 16, 16\\) but sample 0's is \\(1, 3, 32, 32\\)"),
        "generator list": ([(y[:1], op.select([0]), generators([1]))], "stream sample 0: its generator is a list; a stream takes one torch.Generator per sample"),
        "no generator": ([good[0], (y[1:2], op.select([1]), None)], "stream sample 1: expected a torch.Generator of its own, got NoneType"),
        "shared generator": ([(y[:1], op.select([0]), shared), (y[1:2], op.select([1]), shared)], "stream sample 1 uses the generator object of sample 0"),
        "batch of measurements": ([(y[:2], op.select([0]), torch.Generator())], "stream sample 0: y holds 2 measurements"),
        "mixed tasks": ([good[0], (y[1:2], RandomInpainting(0.5), torch.Generator())], "stream sample 1: its operator belongs to task 'random-inpainting' but sample 0's to 'gaussian-blur'"),
        "mixed noise": ([good[0], (y[1:2], GaussianBlur(1.0, noise_std=0.1), torch.Generator())], "stream sample 1: its operator has noise_std 0.1 but sample 0's 0.05"),
        "not a tuple": ([y[0]], "stream sample 0: expected a \\(y, operator, generator\\) tuple, got Tensor"),
        "fixed start too short": ([*good, (y[:1], op.select([0]), torch.Generator())], "fixed_start has 3 entries but sample 3 came"),
    }


@pytest.mark.parametrize("case", list(_bad_samples(*_problem(3))))
def test_a_bad_sample_is_refused_in_one_line_before_any_step(case, monkeypatch):
    y, op = _problem(3)
    samples, match = _bad_samples(y, op)[case]
    model = _model()
    solver = Prior(model, steps=STEPS)

    def refuse(*args, **kwargs):
        raise AssertionError("the denoiser ran before the sample was refused")

    monkeypatch.setattr(model.denoiser, "forward", refuse)
    flashes = [Flash(solver, fixed_start=[1, 2, 3])] if case == "fixed start too short" else [None, Flash(solver)]
    for flash in flashes:
        with pytest.raises(FlashWrapError, match=match) as err:
            list(stream(solver, samples, slots=4, flash=flash, progress=False))
        assert "\n" not in str(err.value)
