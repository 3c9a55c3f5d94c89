"""The solver contract suite: the invariants every flash-wrap solver keeps, as pytest tests.

A plugin's test module subclasses :class:`SolverContract` once per solver (in the spirit of
diffusers' ``SchedulerCommonTest``) and gets every check below, on tiny random models built in
the test process (nothing is downloaded)::

    from flash_wrap.testing import SolverContract
    from flash_wrap_ddnm import LatentDDNM

    class TestLatentDDNMContract(SolverContract):
        solver_class = LatentDDNM
        tasks = ("gaussian-blur", "random-inpainting", "super-resolution")
        refused_tasks = ("motion-blur",)

Why these invariants (``plugins/README.md`` §5–7 states them for authors):

* **NFE is the step count.** Users and the evaluation report the denoiser calls per sample as
  the cost; the whole point of Flash is that a sample started at grid index ``s`` costs ``s``.
  That holds only if a step makes exactly one counted denoiser call (``state.predict``)
  and decodes only through the counted ``state.decode``.
* **The runner owns the batch.** Samples join the loop at their own start; a step sees only the
  rows being stepped, its input is the previous step's output, and what it returns is what the
  next step and the observers get.
* **A sample's result is its own.** With one generator per sample, a reconstruction must not
  depend on the batch it ran in (no batch-wide norms, noise or stopping rules), and the same
  generators must give bit-identical results. The slot scheduler (:mod:`flash_wrap.scheduling`)
  steps rows that sit at different grid indices in one step, so each row's update must use its
  own index, and a stream must give each sample its fixed-batch result.
* **No hidden state.** A step keeps no autograd graph (memory would grow with every step) and
  does not depend on whether its caller has autograd on.
* **Fail early.** Bad measurements and operators the solver cannot handle are refused before
  any network runs, with an error that says why.
* **Flash can wrap it.** Every task has a noise-correction constant ``c``; unknown keywords are
  a ``TypeError`` rather than silently ignored.

The suite costs a few seconds per solver at one CPU thread with ``steps = 10``; ``steps = None``
runs the bare checks over the solver's own grid (e.g. all 1000 DDPM steps), which is slower.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import pytest
import torch

from ..flash import Flash
from ..grid import grid_for
from ..models import LatentDiffusion
from ..operators import Operator
from ..registry import get_task, task_names
from ..result import Reconstruction
from ..rng import generators
from ..scheduling import stream
from ..solver import Solver
from ..start import MAX_NOISE_FRACTION, start_index
from ..state import StepState
from .images import smooth_images
from .models import tiny_model
from .severity import ProgrammedSeverity
from .state import make_state

#: A recorded step: (grid index, caller rows, input latents, output latents), copies.
Step = tuple[int, list[int], torch.Tensor, torch.Tensor]


class StepLog:
    """A ``callback(state, output)`` that keeps a copy of everything it is shown."""

    def __init__(self) -> None:
        self.steps: list[Step] = []
        self.states: list[StepState] = []

    def __call__(self, state: StepState, output: torch.Tensor) -> None:
        index = state.index.tolist()
        assert len(set(index)) == 1, f"the rows of one step sit at different grid indices {index}"
        self.states.append(state)
        self.steps.append((index[0], state.rows.tolist(), state.z.detach().clone(), output.detach().clone()))


class SolverContract:
    """Mixin of pytest tests every solver passes; subclass it as ``Test<Name>Contract``.

    Class attributes to set:
        solver_class: the :class:`~flash_wrap.Solver` subclass under test.
        tasks: task names the solver supports; each runs end to end (bare and in ``Flash``).
            ``None`` (the default): every registered task (:func:`flash_wrap.registry.task_names`,
            built-in and installed plugins' alike) but the refused ones.
        refused_tasks: tasks whose operator ``check_operator`` must refuse before any work.
        steps: grid length the tests build the solver with (a short DDIM grid keeps the suite
            fast); ``None`` runs the solver's own grid.
        overrides: hyper-parameter overrides for speed (e.g. ``{"iterations": 3}``).
        starts: fixed start steps of the mixed-start tests (capped at ``M − 1``); unsorted, so
            the runner's reordering is exercised.
        batch_tolerance: absolute and relative tolerance of the float64 alone-vs-batched
            comparison (rounding there is ~1e-14; a real coupling between rows is far larger).
        autoencoder: the tiny model's autoencoder kind ("vq", "kl", "tiny", "taef2").
        flow_shift: ``None`` (a VP tiny model), or the ``shift`` of a rectified-flow tiny model: the
            whole suite then runs on the flow path (ALGORITHMS.md §12).
    """

    solver_class: ClassVar[type[Solver]]
    tasks: ClassVar[tuple[str, ...] | None] = None
    refused_tasks: ClassVar[tuple[str, ...]] = ()
    steps: ClassVar[int | None] = 10
    overrides: ClassVar[Mapping[str, float]] = {}
    starts: ClassVar[tuple[int, ...]] = (2, 7, 4)
    batch_tolerance: ClassVar[float] = 1e-9
    autoencoder: ClassVar[str] = "vq"
    flow_shift: ClassVar[float | None] = None
    image_size: ClassVar[int] = 32
    #: Highest start the adaptive-start tests aim for (cost, not correctness).
    max_adaptive_start: ClassVar[int] = 12

    # -- parametrisation by the declared tasks -----------------------------------------------
    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """``contract_task`` runs once per supported task, ``contract_refused_task`` once per
        refused task (no refused task: one skipped test saying so)."""
        if "contract_task" in metafunc.fixturenames:
            metafunc.parametrize("contract_task", self.supported_tasks)
        if "contract_refused_task" in metafunc.fixturenames:
            none = pytest.param(None, marks=pytest.mark.skip(reason=f"{type(self).__name__} declares no refused_tasks"))
            metafunc.parametrize("contract_refused_task", self.refused_tasks or [none])

    # -- building blocks (not tests) --------------------------------------------------------
    @property
    def supported_tasks(self) -> tuple[str, ...]:
        """``tasks``, or every registered task but the refused ones where ``tasks`` is ``None``."""
        if self.tasks is not None:
            return tuple(self.tasks)
        return tuple(t for t in task_names() if t not in self.refused_tasks)

    @property
    def first_task(self) -> str:
        """The task of the single-task tests: the first supported one."""
        return self.supported_tasks[0]

    def make_prior(self) -> LatentDiffusion:
        """A fresh tiny prior without severity encoders, the same one at every call: by default
        :func:`tiny_model` of :attr:`autoencoder`, :attr:`image_size` and :attr:`flow_shift`;
        override it to run the suite on another prior (e.g. tiny SD3/FLUX pipeline stand-ins)."""
        return tiny_model(self.autoencoder, image_size=self.image_size, seed=0, flow_shift=self.flow_shift)

    def make_model(self, *tasks: str, scale: float = 1.0) -> LatentDiffusion:
        """A tiny random model with a :class:`ProgrammedSeverity` encoder (``v = scale·mean(y)``)
        for each of ``tasks`` (default: the first supported task)."""
        model = self.make_prior()
        for task in tasks or (self.first_task,):
            model.add_severity_encoder(task, ProgrammedSeverity(model, scale))
        return model

    def make_solver(self, model: LatentDiffusion, **hyperparameters: float) -> Solver:
        """``solver_class`` on ``model`` with the suite's grid and overrides."""
        # hyper-parameters only (typed Any so the checker does not match them to sampler= or steps=)
        values: dict[str, Any] = {**self.overrides, **hyperparameters}
        return self.solver_class(model, steps=self.steps, **values)

    def problem(
        self, task: str, brightness: Sequence[float], seed: int = 0
    ) -> tuple[torch.Tensor, Operator]:
        """Smooth images of the given mean ``brightness`` (one per sample, in [0, 1]), degraded by
        the task's operator with per-sample parameters (moderate levels) and σ_y = 0.05 noise.
        Returns ``(y, operator)``, ``y`` ``(B, C, h, w)`` in [0, 1] units, noisy."""
        batch = len(brightness)
        operator, _ = get_task(task).sample(
            batch, self.image_size, torch.Generator().manual_seed(seed), level_range=(0.2, 0.5)
        )
        x = smooth_images(batch, self.image_size, seed=seed, brightness=list(brightness))
        return operator.measure(x, generator=torch.Generator().manual_seed(seed + 1)), operator

    def mixed_starts(self, solver: Solver) -> list[int]:
        """``starts`` capped at ``M − 1``; skips the test if fewer than two remain distinct."""
        top = solver.sampler.num_steps - 1
        starts = [min(s, top) for s in self.starts]
        if len(set(starts)) < 2 or min(starts) < 1:
            pytest.skip(f"a grid of {top + 1} steps cannot hold two different start steps >= 1")
        return starts

    def adaptive_problem(self, task: str) -> tuple[Solver, torch.Tensor, Operator, torch.Tensor]:
        """A solver whose model's programmed severity puts two samples at *different* adaptive
        starts ``1 ≤ s ≤ max_adaptive_start`` with ``c·v`` below the noise cap.

        Returns ``(solver, y, operator, v)`` with ``v`` ``(2,)`` the variances the encoder will
        report. The dim sample's mean is ~7x smaller than the bright one's, so one scale that
        puts the bright sample at start ``k`` puts the dim one lower on the grid.
        """
        y, operator = self.problem(task, (0.1, 0.7))
        model = self.make_prior()
        solver = self.make_solver(model)
        snr, c = solver.sampler.snr, float(solver.hyperparameters(task)["c"])
        means = operator.to_image(y.to(model.dtype)).flatten(1).mean(dim=1).clamp_min(0)
        for k in range(min(solver.sampler.num_steps - 1, self.max_adaptive_start), 0, -1):
            if float(snr[k]) == 0:
                continue  # σ = 1 at the top of a flow grid: only an infinite variance starts there
            target = 1.0 / float(snr[k])
            if c * target >= 0.9 * MAX_NOISE_FRACTION:
                continue  # the correction would be capped: not the regime under test
            scale = target / float(means[1])
            variance = scale * means
            starts = start_index(variance, snr).tolist()
            if starts[0] != starts[1] and min(starts) >= 1:
                model.add_severity_encoder(task, ProgrammedSeverity(model, scale))
                return solver, y, operator, variance
        pytest.fail(f"could not program two different adaptive starts on {solver.grid.label()} for {task}")

    @staticmethod
    def rows_of(operator: Operator, i: int) -> Operator:
        """The operator of sample ``i`` alone (a shared operator stays shared)."""
        return operator.select([i]) if operator.batch_size > 1 else operator

    @staticmethod
    def refuse_denoiser(monkeypatch: pytest.MonkeyPatch, model: LatentDiffusion) -> None:
        """Make any denoiser evaluation fail loudly (with an error no refusal check expects)."""

        def refuse(*args: Any, **kwargs: Any) -> torch.Tensor:
            raise AssertionError("the denoiser ran before the input was refused")

        monkeypatch.setattr(model.denoiser, "forward", refuse)

    @staticmethod
    def count_network_calls(monkeypatch: pytest.MonkeyPatch, model: LatentDiffusion) -> dict[str, int]:
        """Count every denoiser forward pass and every decoded row, however they are reached
        (``state.predict`` and ``state.decode`` go through these too)."""
        counts = {"denoiser": 0, "decoded_rows": 0}
        forward, decode = model.denoiser.forward, model.decode

        def counted_forward(*args: Any, **kwargs: Any) -> torch.Tensor:
            counts["denoiser"] += 1
            return forward(*args, **kwargs)

        def counted_decode(latents: torch.Tensor) -> torch.Tensor:
            counts["decoded_rows"] += int(latents.shape[0])
            return decode(latents)

        monkeypatch.setattr(model.denoiser, "forward", counted_forward)
        monkeypatch.setattr(model, "decode", counted_decode)
        return counts

    @staticmethod
    def assert_grid_recorded(out: Reconstruction, solver: Solver) -> None:
        grid = solver.grid
        recorded = (out.solver, out.sampler, out.steps, out.eta)
        assert recorded == (solver.name, grid.kind, grid.steps, grid.eta), (
            f"the Reconstruction records (solver, sampler, steps, eta) = {recorded}, "
            f"but {solver.name} ran {grid}"
        )

    @staticmethod
    def assert_valid_images(out: Reconstruction, batch: int, size: int) -> None:
        assert out.images.shape == (batch, 3, size, size), f"images have shape {tuple(out.images.shape)}"
        assert bool(torch.isfinite(out.latents).all()), "the final latents hold NaN or Inf"
        assert bool(torch.isfinite(out.images).all()), "the images hold NaN or Inf"
        low, high = float(out.images.min()), float(out.images.max())
        assert 0.0 <= low <= high <= 1.0, f"images span [{low}, {high}], not [0, 1]"

    # -- configuration ------------------------------------------------------------------------
    def test_declared_tasks_are_known_and_disjoint(self) -> None:
        """The suite's own configuration: ``solver_class`` is a Solver, every declared task
        exists, and no task is both supported and refused (otherwise the other tests would
        silently check nothing)."""
        assert isinstance(self.solver_class, type) and issubclass(self.solver_class, Solver), self.solver_class
        assert self.supported_tasks, "declare at least one supported task"
        unknown = sorted(set(self.supported_tasks + self.refused_tasks) - set(task_names()))
        assert not unknown, f"unknown tasks {unknown}; known: {task_names()}"
        both = sorted(set(self.supported_tasks) & set(self.refused_tasks))
        assert not both, f"tasks {both} are declared both supported and refused"

    # -- the grid and NFE ---------------------------------------------------------------------
    def test_grid_follows_the_one_grid_rule(self) -> None:
        """``solver.grid`` is what :func:`flash_wrap.grid.grid_for` says for this request and
        ``solver.sampler`` runs exactly that grid: every entry point that asks for "N steps"
        must get the same sampler, and results record which one ran."""
        model = self.make_prior()
        solver = self.make_solver(model)
        expected = grid_for(self.solver_class, model.num_train_timesteps, steps=self.steps, path=model.path)
        assert solver.grid == expected, f"solver.grid is {solver.grid}, the grid rule gives {expected}"
        sampler = solver.sampler
        assert (sampler.kind, sampler.num_steps) == (expected.kind, expected.steps), (
            f"the sampler runs {sampler.kind}-{sampler.num_steps}, the grid says {expected.label()}"
        )
        if expected.kind == "ddim":
            assert sampler.eta == expected.eta, f"the sampler's DDIM eta is {sampler.eta}, the grid's {expected.eta}"

    def test_bare_nfe_is_the_grid_length(self) -> None:
        """A bare run starts every sample at the top of the grid (``start_step == M``) and costs
        exactly ``M`` denoiser calls per sample, one per step; the result records the grid
        (sampler, steps, η) the solver ran and no severity outputs."""
        y, operator = self.problem(self.first_task, (0.3, 0.5))
        solver = self.make_solver(self.make_model())
        out = solver.reconstruct(y, operator, generators([0, 1]), progress=False)
        m = solver.grid.steps
        assert out.start_step.tolist() == [m, m], f"bare start steps {out.start_step.tolist()}, expected [{m}, {m}]"
        assert out.nfe.tolist() == [m, m], f"bare NFE {out.nfe.tolist()} for a grid of {m} steps"
        self.assert_grid_recorded(out, solver)
        assert out.sigma_hat is None and out.z_hat is None, "a bare run has no severity outputs"
        assert out.decoder_calls.shape == (2,) and out.decoder_calls.dtype == torch.long

    def test_flash_nfe_is_the_adaptive_start(self) -> None:
        """Inside ``Flash`` each sample starts at ``s = start_index(v, sampler.snr)`` for the
        variance ``v`` its severity encoder reports, and costs exactly ``s`` denoiser calls
        (steps ``s−1, …, 0``); the two samples here are programmed to different starts."""
        solver, y, operator, variance = self.adaptive_problem(self.first_task)
        out = Flash(solver).reconstruct(y, operator, generators([0, 1]), progress=False)
        assert out.sigma_hat is not None, "Flash returned no sigma_hat"
        torch.testing.assert_close(out.sigma_hat, variance.to(out.sigma_hat.dtype))
        expected = start_index(out.sigma_hat, solver.sampler.snr).tolist()
        assert out.start_step.tolist() == expected, f"starts {out.start_step.tolist()}, the start rule gives {expected}"
        assert len(set(expected)) == 2, f"the programmed samples share a start {expected}"
        assert out.nfe.tolist() == expected, f"Flash NFE {out.nfe.tolist()} != start steps {expected}"
        self.assert_grid_recorded(out, solver)

    # -- the loop -----------------------------------------------------------------------------
    def test_samples_join_at_their_start(self) -> None:
        """With starts ``s_i`` the loop runs grid indices ``max(s)−1, …, 0`` and the step at
        index ``k`` holds exactly the samples with ``s_i > k`` (all at index ``k``, timestep
        ``g_k``): a sample joins when the loop reaches its start and costs nothing before."""
        y, operator = self.problem(self.first_task, (0.1, 0.3, 0.2))
        solver = self.make_solver(self.make_model())
        starts = self.mixed_starts(solver)
        log = StepLog()
        out = Flash(solver, fixed_start=starts).reconstruct(
            y, operator, generators([0, 1, 2]), progress=False, callback=log
        )
        indices = [k for k, _, _, _ in log.steps]
        assert indices == list(range(max(starts) - 1, -1, -1)), f"grid indices stepped: {indices}"
        for (k, rows, _, _), state in zip(log.steps, log.states):
            expected = [i for i, s in enumerate(starts) if s > k]
            assert sorted(rows) == expected, f"at grid index {k} the rows {sorted(rows)} stepped, expected {expected}"
            assert bool((state.t == solver.sampler.timesteps[k]).all()), f"wrong timesteps at index {k}: {state.t}"
        assert out.start_step.tolist() == starts and out.nfe.tolist() == starts, (out.start_step, out.nfe)

    def test_callback_sees_each_step_input_and_output(self) -> None:
        """The callback gets the step's input ``state.z`` and its ``output``; the input of the next
        step is exactly the previous output for the rows that continue, and the final latents are
        the last outputs: what a step returns is what the loop carries on with."""
        y, operator = self.problem(self.first_task, (0.1, 0.3, 0.2))
        solver = self.make_solver(self.make_model())
        log = StepLog()
        out = Flash(solver, fixed_start=self.mixed_starts(solver)).reconstruct(
            y, operator, generators([0, 1, 2]), progress=False, callback=log
        )
        latest: dict[int, torch.Tensor] = {}  # caller row -> the last output it got
        for k, rows, z_in, z_out in log.steps:
            assert z_in.shape == z_out.shape == (len(rows), *solver.model.latent_shape), (k, z_in.shape, z_out.shape)
            assert not torch.equal(z_in, z_out), f"at grid index {k} the callback saw the output as the input"
            for position, row in enumerate(rows):
                if row in latest:
                    assert torch.equal(z_in[position], latest[row]), (
                        f"sample {row} entered grid index {k} with latents other than its previous output"
                    )
                latest[row] = z_out[position]
        for row, last in latest.items():
            assert torch.equal(out.latents[row], last), f"sample {row}'s final latents are not its last output"

    # -- randomness and batches ---------------------------------------------------------------
    def test_same_generator_is_bit_identical(self) -> None:
        """The same generator gives bit-identical results (latents, images, counts); another
        seed gives other latents: all randomness comes from the caller's generators."""
        y, operator = self.problem(self.first_task, (0.1, 0.3, 0.2))
        solver = self.make_solver(self.make_model())
        flash = Flash(solver, fixed_start=self.mixed_starts(solver))

        def run(seed: int) -> Reconstruction:
            return flash.reconstruct(y, operator, torch.Generator().manual_seed(seed), progress=False)

        a, b, c = run(3), run(3), run(4)
        assert torch.equal(a.latents, b.latents) and torch.equal(a.images, b.images), "same seed, different results"
        assert torch.equal(a.nfe, b.nfe) and torch.equal(a.decoder_calls, b.decoder_calls)
        assert not torch.equal(a.latents, c.latents), "seeds 3 and 4 gave identical latents: noise is not drawn"

    def test_a_sample_does_not_depend_on_its_batch(self) -> None:
        """With one generator per sample, each sample's reconstruction is the same alone as in a
        batch whose rows start at different steps. Run in float64, where rounding is ~1e-14, so
        any coupling between rows (a batch-wide norm, shared noise, a joint stopping rule) shows
        far above ``batch_tolerance``."""
        y, operator = self.problem(self.first_task, (0.1, 0.3, 0.2))
        model = self.make_model().double()
        solver = self.make_solver(model)
        starts = self.mixed_starts(solver)
        seeds = [10, 11, 12]
        together = Flash(solver, fixed_start=starts).reconstruct(y, operator, generators(seeds), progress=False)
        assert together.latents.dtype == torch.float64, together.latents.dtype
        tol = self.batch_tolerance
        for i, (start, seed) in enumerate(zip(starts, seeds)):
            alone = Flash(solver, fixed_start=[start]).reconstruct(
                y[i : i + 1], self.rows_of(operator, i), generators([seed]), progress=False
            )
            assert alone.nfe.tolist() == [int(together.nfe[i])], (i, alone.nfe, together.nfe)
            assert alone.decoder_calls.tolist() == [int(together.decoder_calls[i])], (i, alone.decoder_calls)
            torch.testing.assert_close(alone.latents[0], together.latents[i], atol=tol, rtol=tol)
            torch.testing.assert_close(alone.images[0], together.images[i], atol=tol, rtol=tol)

    def test_rows_at_different_grid_indices_step_as_if_alone(self) -> None:
        """One step whose rows sit at *different* grid indices (as the slot scheduler hands them)
        gives each row what a step of that row alone at its own index gives (float64, within
        ``batch_tolerance``): per-row timesteps, coefficients and stages, nothing taken from row 0."""
        y, operator = self.problem(self.first_task, (0.1, 0.3, 0.2))
        model = self.make_model().double()
        solver = self.make_solver(model)
        top = solver.sampler.num_steps - 1
        ks = sorted({top, top // 2, 0}, reverse=True)
        if len(ks) < 2:
            pytest.skip(f"a grid of {top + 1} steps has no two different indices")
        ks = (ks * 3)[:3]
        z = torch.randn(3, *model.latent_shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        together = solver.step(make_state(solver, z, y, operator, ks, generators([1, 2, 3])))
        tol = self.batch_tolerance
        for i, k in enumerate(ks):
            alone = solver.step(make_state(solver, z[i : i + 1], y[i : i + 1], self.rows_of(operator, i), k,
                                           generators([1 + i])))
            torch.testing.assert_close(together[i], alone[0], atol=tol, rtol=tol, msg=_prefixed(f"row {i} at grid index {k}"))

    def test_a_stream_gives_each_sample_its_fixed_batch_result(self) -> None:
        """Streamed over two slots (samples entering and leaving at their own starts, steps with
        rows at different indices), each sample gets the result of the fixed-batch path, bare and
        in ``Flash`` (float64, within ``batch_tolerance``), with the same NFE and decoder calls."""
        y, operator = self.problem(self.first_task, (0.1, 0.3, 0.2))
        solver = self.make_solver(self.make_model().double())
        starts = self.mixed_starts(solver)
        seeds = [10, 11, 12]
        tol = self.batch_tolerance
        for runner in (solver, Flash(solver, fixed_start=starts)):
            fixed = runner.reconstruct(y, operator, generators(seeds), progress=False)
            samples = [(y[i : i + 1], self.rows_of(operator, i), torch.Generator().manual_seed(s))
                       for i, s in enumerate(seeds)]
            flash = runner if isinstance(runner, Flash) else None
            streamed = {r.index: r.reconstruction for r in stream(solver, samples, slots=2, flash=flash, progress=False)}
            assert sorted(streamed) == [0, 1, 2], f"the stream handed back samples {sorted(streamed)}"
            for i, out in streamed.items():
                assert out.nfe.tolist() == [int(fixed.nfe[i])], (i, out.nfe, fixed.nfe)
                assert out.decoder_calls.tolist() == [int(fixed.decoder_calls[i])], (i, out.decoder_calls)
                torch.testing.assert_close(out.latents[0], fixed.latents[i], atol=tol, rtol=tol)
                torch.testing.assert_close(out.images[0], fixed.images[i], atol=tol, rtol=tol)

    # -- one step -------------------------------------------------------------------------------
    def test_a_step_keeps_no_autograd_graph(self) -> None:
        """A step returns latents without an autograd graph, leaves its input untouched (no
        ``requires_grad`` flipped on it, no ``.grad``), and gives the same result whether or not
        the caller has autograd on: graphs kept across steps would grow memory with every step,
        and the caller may run under ``torch.no_grad()``."""
        y, operator = self.problem(self.first_task, (0.3, 0.5))
        model = self.make_model()
        solver = self.make_solver(model)
        z = torch.randn(2, *model.latent_shape, generator=torch.Generator().manual_seed(0))
        for k in sorted({solver.sampler.num_steps - 1, 0}):
            state = make_state(solver, z.clone(), y, operator, k, generators([1, 2]))
            out = solver.step(state)
            assert not out.requires_grad and out.grad_fn is None, f"the step at index {k} returned a graph"
            assert torch.equal(state.z, z) and not state.z.requires_grad and state.z.grad is None, (
                f"the step at index {k} modified its input latents"
            )
            with torch.no_grad():
                quiet = solver.step(make_state(solver, z.clone(), y, operator, k, generators([1, 2])))
            assert torch.equal(out, quiet), f"the step at index {k} depends on the caller's autograd mode"
        log = StepLog()
        result = Flash(solver, fixed_start=[2, 1] if solver.sampler.num_steps > 2 else [1, 1]).reconstruct(
            y, operator, generators([1, 2]), progress=False, callback=log
        )
        for state, (k, _, _, _) in zip(log.states, log.steps):
            assert state.z.grad_fn is None, f"the input at grid index {k} carries a graph"
        assert not result.latents.requires_grad and result.latents.grad_fn is None, "the final latents carry a graph"

    def test_one_counted_denoiser_call_per_step(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Each step makes exactly one denoiser call, through ``state.predict`` (so NFE =
        steps), and every decoder pass goes through ``state.decode`` (so ``decoder_calls`` is
        the real decoding cost); checked against the networks' own call counts."""
        y, operator = self.problem(self.first_task, (0.3, 0.5))
        model = self.make_model()
        solver = self.make_solver(model)
        z = torch.randn(2, *model.latent_shape, generator=torch.Generator().manual_seed(0))
        counts = self.count_network_calls(monkeypatch, model)
        top = solver.sampler.num_steps - 1
        for k in sorted({top, top // 2, 0}):
            counts.update(denoiser=0, decoded_rows=0)
            state = make_state(solver, z, y, operator, k, generators([1, 2]))
            solver.step(state)
            assert state.denoiser_calls == 1, f"{state.denoiser_calls} counted denoiser calls at grid index {k}"
            assert counts["denoiser"] == 1, f"{counts['denoiser']} denoiser passes at grid index {k}, 1 counted"
            assert counts["decoded_rows"] == sum(state.decoder_calls), (
                f"{counts['decoded_rows']} rows decoded at grid index {k}, {sum(state.decoder_calls)} counted"
            )

    # -- refusals and hyper-parameters ------------------------------------------------------------
    def test_bad_measurements_are_refused_before_any_work(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Measurements of the wrong size, on the 0-255 scale or with NaNs, and a generator list
        of the wrong length, are refused with an error naming the problem before the denoiser
        ever runs, bare and in ``Flash``: no compute is wasted on an input that cannot work."""
        y, operator = self.problem(self.first_task, (0.3, 0.5))
        model = self.make_model()
        solver = self.make_solver(model)
        self.refuse_denoiser(monkeypatch, model)
        b, c, h, w = y.shape
        nan = y.clone()
        nan[0, 0, 0, 0] = float("nan")
        cases: list[tuple[torch.Tensor, Any, str]] = [
            (torch.rand(b, c, max(h // 2, 1), max(w // 2, 1)), generators([0, 1]), "pixels"),
            (y * 255, generators([0, 1]), "0-255"),
            (nan, generators([0, 1]), "NaN or Inf"),
            (y, generators([0]), "generator list has 1 entries but the batch has 2"),
        ]
        for runner in (solver, Flash(solver)):
            for bad, gens, match in cases:
                with pytest.raises((ValueError, TypeError), match=match):
                    runner.reconstruct(bad, operator, gens, progress=False)

    def test_refused_task_is_refused_before_any_work(
        self, contract_refused_task: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """``check_operator`` refuses the operators of a refused task, and ``reconstruct`` (bare
        and in ``Flash``) raises that refusal before the denoiser ever runs."""
        task = contract_refused_task
        y, operator = self.problem(task, (0.3, 0.5))
        model = self.make_model(task)  # an encoder exists: Flash cannot fail for lack of one
        solver = self.make_solver(model)
        refusals = (ValueError, TypeError, NotImplementedError)
        with pytest.raises(refusals):
            solver.check_operator(operator)
        self.refuse_denoiser(monkeypatch, model)
        for runner in (solver, Flash(solver)):
            with pytest.raises(refusals):
                runner.reconstruct(y, operator, generators([0, 1]), progress=False)

    def test_every_task_has_a_noise_correction_constant(self, contract_task: str) -> None:
        """The resolved hyper-parameters of every supported task (and the fallback) contain
        Flash's noise-correction constant ``c ≥ 0``: ``Flash`` reads it for every sample."""
        solver = self.make_solver(self.make_prior())
        for task in (contract_task, None):
            params = solver.hyperparameters(task)
            assert "c" in params, f"hyper-parameters for task {task!r} lack 'c': {params}"
            assert float(params["c"]) >= 0, f"c = {params['c']} for task {task!r}"

    def test_defaults_pass_the_solver_s_own_value_checks(self) -> None:
        """Every per-task default and the fallback pass :meth:`Solver.check_values` (no negative
        step size, counts whole numbers at or above their least value), and every declared count
        or signed name is a hyper-parameter the solver has."""
        names = self.solver_class.hyperparameter_names()
        for label, values in [*self.solver_class.defaults.items(), ("fallback", self.solver_class.fallback)]:
            self.solver_class.check_values(values, f"{self.solver_class.__name__}.defaults[{label!r}]")
        stray = sorted((set(self.solver_class.counts) | self.solver_class.signed) - names)
        assert not stray, f"counts/signed name {stray}, which are not hyper-parameters of the solver"

    def test_unknown_keyword_is_a_type_error(self) -> None:
        """A misspelt hyper-parameter raises ``TypeError`` naming it (a silently ignored keyword
        would run the defaults while the user believes otherwise); every declared name is
        accepted and lands in the resolved hyper-parameters."""
        model = self.make_prior()
        with pytest.raises(TypeError, match="definitely_not_a_hyperparameter"):
            self.make_solver(model, definitely_not_a_hyperparameter=1.0)
        fallback = self.solver_class(model).hyperparameters(None)
        for name in sorted(self.solver_class.hyperparameter_names()):
            default = fallback.get(name, 1.0)
            value = type(default)(2 * default + 1)  # differs from every default, keeps int/float
            solver = self.solver_class(model, **{name: value})
            assert solver.hyperparameters(self.first_task)[name] == value, f"the override {name}={value} was not applied"

    # -- every task end to end ---------------------------------------------------------------------
    def test_every_task_runs_end_to_end(self, contract_task: str) -> None:
        """Every supported task runs bare (the full grid, NFE ``M``) and in ``Flash`` (adaptive
        starts, NFE = start) on per-sample operators, with finite images in [0, 1]."""
        task = contract_task
        y, operator = self.problem(task, (0.3, 0.5))
        solver = self.make_solver(self.make_model(task))
        bare = solver.reconstruct(y, operator, generators([0, 1]), progress=False)
        self.assert_valid_images(bare, 2, self.image_size)
        assert bare.nfe.tolist() == [solver.grid.steps] * 2, f"{task}: bare NFE {bare.nfe.tolist()}"
        flash_solver, y, operator, _ = self.adaptive_problem(task)
        wrapped = Flash(flash_solver).reconstruct(y, operator, generators([0, 1]), progress=False)
        self.assert_valid_images(wrapped, 2, self.image_size)
        assert wrapped.nfe.tolist() == wrapped.start_step.tolist(), f"{task}: {wrapped.nfe} != {wrapped.start_step}"


def _prefixed(where: str) -> Callable[[str], str]:
    """An ``assert_close`` message that names where the mismatch is."""
    return lambda message: f"{where}: {message}"
