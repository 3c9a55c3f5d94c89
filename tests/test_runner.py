"""The shared reverse loop (flash_wrap.runner): samples join at their start, rows are handed to
the step sorted by start and mapped back, NFE and decoder calls are booked per sample, and
observers (the call's callback, plugin hooks) see each step's input and output."""

from __future__ import annotations

import pytest
import torch

from flash_wrap import Flash, Solver, StepState, hookimpl
from flash_wrap.discovery import new_plugin_set
from flash_wrap.errors import ContractError, FlashWrapError, InvalidInput, PluginFailure
from flash_wrap.operators import GaussianBlur
from flash_wrap.runner import observers_for, reconstruct_from, run_reverse
from flash_wrap.testing import generators, smooth_images, tiny_model
from flash_wrap_plugins.latent_dps import LatentDPS


class Halving(Solver):
    """A probe: ``z ↦ z / 2`` per step (exact in floating point, so a sample's final latents
    say how many steps it got), one denoiser call per step, and a counted decode of the rows
    whose caller index is even. Records what each step was handed."""

    name = "halving"
    fallback = {"c": 1.0}

    def __init__(self, model, **kwargs):
        super().__init__(model, **kwargs)
        self.seen: list[StepState] = []

    def step(self, state: StepState) -> torch.Tensor:
        self.seen.append(state)
        state.predict_noise(state.z)
        even = [i for i, row in enumerate(state.rows.tolist()) if row % 2 == 0]
        if even:
            state.decode(state.z[even], even)
        return state.z / 2


class Lazy(Halving):
    """Breaks the contract: no denoiser call."""

    name = "lazy"

    def step(self, state: StepState) -> torch.Tensor:
        return state.z / 2


@pytest.fixture
def model():
    return tiny_model("vq", image_size=32, seed=0)


def _batch(n):
    sigma = torch.linspace(0.5, 2.5, n)
    op = GaussianBlur(sigma=sigma)
    y = op.measure(smooth_images(n), generator=torch.Generator().manual_seed(0))
    return y, op


def _latents(model, n, seed=0):
    return torch.randn(n, *model.latent_shape, generator=torch.Generator().manual_seed(seed))


def test_samples_join_at_their_start_and_get_exactly_their_steps(model):
    solver = Halving(model, steps=20)
    y, op = _batch(4)
    z, start = _latents(model, 4), torch.tensor([3, 12, 7, 0])
    gens = generators([0, 1, 2, 3])
    out, nfe, decodes = run_reverse(solver, z, start, y, op, gens, {"c": 1.0}, progress=False)
    assert [int(s.index[0]) for s in solver.seen] == list(range(11, -1, -1))
    rows = {int(s.index[0]): sorted(s.rows.tolist()) for s in solver.seen}
    assert rows[11] == rows[7] == [1] and rows[6] == rows[3] == [1, 2] and rows[2] == rows[0] == [0, 1, 2]
    assert nfe.tolist() == [3, 12, 7, 0]
    assert decodes.tolist() == [3, 0, 7, 0]  # only even caller rows decode, once per step
    torch.testing.assert_close(out, z * 0.5 ** start.view(-1, 1, 1, 1).float(), atol=0, rtol=0)


def test_each_step_gets_the_rows_own_data(model):
    solver = Halving(model, steps=20)
    y, op = _batch(3)
    z, start = _latents(model, 3), torch.tensor([2, 6, 4])
    gens = generators([0, 1, 2])
    params = {"c": 1.0, "tag": "mine"}
    run_reverse(solver, z, start, y, op, gens, params, progress=False)
    for state in solver.seen:
        rows = state.rows.tolist()
        k = int(state.index[0])
        assert (state.index == k).all() and (state.t == solver.sampler.timesteps[k]).all()
        assert torch.equal(state.y, y[rows])
        assert torch.equal(state.operator.sigma, op.sigma[rows])
        assert [id(g) for g in state.generator] == [id(gens[r]) for r in rows]
        assert state.params is params and state.model is model and state.sampler is solver.sampler


def test_zero_starts_run_no_step(model):
    solver = Halving(model, steps=20)
    y, op = _batch(2)
    z = _latents(model, 2)
    out, nfe, decodes = run_reverse(solver, z, torch.tensor([0, 0]), y, op, None, {}, progress=False)
    assert solver.seen == [] and torch.equal(out, z)
    assert nfe.tolist() == [0, 0] and decodes.tolist() == [0, 0]


def test_a_step_without_a_denoiser_call_is_a_contract_error(model):
    y, op = _batch(2)
    with pytest.raises(ContractError, match="'lazy' made no denoiser call through state.predict or state.predict_noise at grid step 4") \
            as raised:
        run_reverse(Lazy(model, steps=20), _latents(model, 2), torch.tensor([5, 5]), y, op, None, {}, progress=False)
    assert isinstance(raised.value, (FlashWrapError, RuntimeError)) and (raised.value.plugin, raised.value.step) == ("lazy", 4)


class Faulty(Halving):
    """Raises from its third step: a plugin's own bug."""

    name = "faulty"

    def step(self, state: StepState) -> torch.Tensor:
        if len(self.seen) == 2:
            raise IndexError("index 7 is out of bounds")
        return super().step(state)


def test_a_plugin_exception_names_the_plugin_and_the_step_and_keeps_its_cause(model):
    y, op = _batch(2)
    with pytest.raises(PluginFailure, match=r"solver plugin 'faulty' failed at grid step 2: IndexError: index 7") \
            as raised:
        run_reverse(Faulty(model, steps=20), _latents(model, 2), torch.tensor([5, 5]), y, op, None, {}, progress=False)
    assert (raised.value.plugin, raised.value.step) == ("faulty", 2)
    assert isinstance(raised.value.__cause__, IndexError) and isinstance(raised.value, FlashWrapError)


class Refusing(Halving):
    """Refuses the user's input from inside its step with the library's own error type."""

    name = "refusing"

    def step(self, state: StepState) -> torch.Tensor:
        raise InvalidInput("this operator is not linear")


def test_a_plugin_refusing_the_input_passes_through_unchanged(model):
    y, op = _batch(2)
    with pytest.raises(InvalidInput, match="^this operator is not linear$"):
        run_reverse(Refusing(model, steps=20), _latents(model, 2), torch.tensor([5, 5]), y, op, None, {}, progress=False)


def test_observers_see_the_input_and_the_output_in_order(model):
    solver = Halving(model, steps=20)
    y, op = _batch(3)
    z, start = _latents(model, 3), torch.tensor([2, 6, 4])
    calls = []

    def first(state, output):
        calls.append(("first", int(state.index[0])))
        # the step's input, not its output: the runner never writes the output into state.z
        torch.testing.assert_close(output, state.z / 2, atol=0, rtol=0)
        assert not torch.equal(state.z, output)

    def second(state, output):
        calls.append(("second", int(state.index[0])))

    run_reverse(solver, z, start, y, op, None, {}, progress=False, observers=[first, second])
    assert calls == [(name, k) for k in range(5, -1, -1) for name in ("first", "second")]


class OnStepRecorder:
    """An observer plugin: the two forms pluggy allows (with and without ``output``)."""

    def __init__(self):
        self.steps: list[tuple[list[int], torch.Tensor, torch.Tensor]] = []

    @hookimpl
    def flash_wrap_on_step(self, state, output):
        self.steps.append((state.rows.tolist(), state.z.clone(), output.clone()))


class StateOnlyRecorder:
    def __init__(self):
        self.indices: list[int] = []

    @hookimpl
    def flash_wrap_on_step(self, state):
        self.indices.append(int(state.index[0]))


def test_plugin_observers_of_a_fresh_plugin_set_see_the_input_latent(model):
    plugin_set = new_plugin_set(strict=True)  # never the process-wide one
    full, state_only = OnStepRecorder(), StateOnlyRecorder()
    assert plugin_set.add(full, "full") and plugin_set.add(state_only, "state-only")

    def broadcast(state, output):
        plugin_set.hook.flash_wrap_on_step(state=state, output=output)

    solver = Halving(model, steps=20)
    y, op = _batch(2)
    z = _latents(model, 2)
    run_reverse(solver, z, torch.tensor([3, 1]), y, op, None, {}, progress=False, observers=[broadcast])
    assert state_only.indices == [2, 1, 0]
    assert [rows for rows, _, _ in full.steps] == [[0], [0], [0, 1]]
    (_, first_in, first_out), (_, second_in, _) = full.steps[:2]
    assert torch.equal(first_in, z[:1]) and torch.equal(first_out, z[:1] / 2)
    assert torch.equal(second_in, first_out)  # the next step's input is the previous output


def test_observers_for_puts_the_call_callback_first():
    def mine(state, output):
        pass

    observers = observers_for(mine)
    assert observers[0] is mine and len(observers) == 2
    assert len(observers_for(None)) == 1  # the process-wide broadcast alone


def test_reconstruct_passes_its_callback_to_every_step(model):
    solver = Halving(model, steps=6)
    y, op = _batch(2)
    seen = []
    out = solver.reconstruct(y, op, generators([0, 1]), progress=False, callback=lambda s, o: seen.append(s))
    assert [int(s.index[0]) for s in seen] == list(range(5, -1, -1)) and seen == solver.seen
    assert out.nfe.tolist() == [6, 6] and out.decoder_calls.tolist() == [6, 0]


def test_reconstruct_from_decodes_and_records(model):
    solver = Halving(model, steps=10)
    y, op = _batch(2)
    z, start = _latents(model, 2), torch.tensor([4, 9])
    sigma_hat, z_hat = torch.tensor([0.1, 0.2]), _latents(model, 2, seed=1)
    out = reconstruct_from(solver, z, start, y, op, None, {}, progress=False, sigma_hat=sigma_hat, z_hat=z_hat)
    torch.testing.assert_close(out.images, model.decode(out.latents).clamp(0, 1))
    assert out.nfe.tolist() == [4, 9] and out.start_step is start and out.decoder_calls.tolist() == [4, 0]
    assert (out.solver, out.sampler, out.steps, out.eta) == ("halving", "ddim", 10, 0.0)
    assert out.sigma_hat is sigma_hat and out.z_hat is z_hat


def test_a_sample_is_bit_identical_whatever_its_batch_mates(programmed_model):
    # Same batch size, mates with other starts and measurements: the shared sample's trajectory
    # must not change by a single bit (rows never mix, whoever is stepped beside them).
    op = GaussianBlur(sigma=torch.tensor([0.4, 2.8, 1.5]))
    y = op.measure(smooth_images(3, brightness=[0.05, 0.6, 0.3], seed=1), generator=torch.Generator().manual_seed(0))
    flash = Flash(LatentDPS(programmed_model, steps=50))
    with_b = flash.reconstruct(y[[0, 1]], op.select([0, 1]), generator=generators([10, 11]), progress=False)
    with_c = flash.reconstruct(y[[0, 2]], op.select([0, 2]), generator=generators([10, 12]), progress=False)
    assert with_b.start_step[0] < with_b.start_step[1] and with_b.start_step[1] != with_c.start_step[1]
    assert torch.equal(with_b.latents[0], with_c.latents[0])
    assert with_b.nfe[0] == with_c.nfe[0] == with_b.start_step[0]
