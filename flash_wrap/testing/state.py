"""Hand-built step states, for testing one solver step without the reverse loop."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..operators import Operator
from ..rng import GeneratorArg
from ..solver import Solver
from ..state import StepState


def make_state(
    solver: Solver,
    z: torch.Tensor,
    y: torch.Tensor,
    operator: Operator,
    k: int | Sequence[int],
    generator: GeneratorArg = None,
    task: str | None = None,
) -> StepState:
    """The :class:`~flash_wrap.StepState` the runner would hand ``solver.step`` at grid index ``k``
    (or, as the slot scheduler does, row ``i`` at its own index ``k[i]``) for a batch whose every
    row is being stepped.

    Args:
        solver: the solver whose sampler, model and hyper-parameters the state carries.
        z: ``(b, C, h, w)`` latents at level ``g_k``.
        y: ``(b, C', h', w')`` measurements in [0, 1] image units (noisy, unclamped).
        operator: the forward model of these ``b`` rows (or one shared by all).
        k: grid index, ``0 ≤ k < M`` (``M = solver.sampler.num_steps``), or one per row.
        generator: one generator, one per row, or ``None``.
        task: whose hyper-parameters ``state.params`` holds; default ``operator.task``.
    Returns:
        A fresh state with zeroed call counters; ``z`` and ``y`` are on the model's device and
        dtype, as the runner's are (``Solver.prepare`` casts ``y``, the latents are made there).
    Raises:
        ValueError: ``k`` is not a grid index, or ``z`` and ``y`` have different batch sizes.
    """
    sampler, model = solver.sampler, solver.model
    batch = int(z.shape[0])
    ks = [k] * batch if isinstance(k, int) else list(k)
    if len(ks) != batch or any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < sampler.num_steps for i in ks):
        raise ValueError(f"k must be a grid index in [0, {sampler.num_steps - 1}] or one per row, got {k!r}")
    if z.shape[0] != y.shape[0]:
        raise ValueError(f"z has {z.shape[0]} rows but y has {y.shape[0]}")
    index = torch.tensor(ks, dtype=torch.long, device=model.device)
    return StepState(
        z=z.to(device=model.device, dtype=model.dtype),
        index=index,
        t=sampler.timesteps[index],
        rows=torch.arange(batch, device=model.device),
        y=y.to(device=model.device, dtype=model.dtype),
        operator=operator,
        model=model,
        sampler=sampler,
        params=solver.hyperparameters(operator.task if task is None else task),
        generator=generator,
    )


def tweedie_residual(solver: Solver, z: torch.Tensor, k: int, y: torch.Tensor, operator: Operator) -> torch.Tensor:
    """``(b,)`` per-sample ‖A(D(ẑ0)) − y‖₂ ([0, 1] units) of the Tweedie estimate ẑ0 of latents
    ``z`` ``(b, C, h, w)`` at grid index ``k``: how far a step's result is from the measurement,
    e.g. to check that a data-consistency step reduces it. Computed without autograd and outside
    any state's counters (a test-side measurement, not a solver's cost)."""
    sampler, model = solver.sampler, solver.model
    with torch.no_grad():
        index = torch.full((z.shape[0],), k, dtype=torch.long, device=z.device)
        z0 = model.predict(z, sampler.timesteps[index]).z0
        return (operator(model.decode(z0)) - y.to(z0.dtype)).flatten(1).norm(dim=1)


def assert_step_reduces_residual(
    solver_class: type[Solver],
    model,
    task: str,
    operator: Operator,
    y: torch.Tensor,
    weights: tuple[str, ...] = ("eta",),
    k: int = 100,
) -> None:
    """A gradient-based data-consistency step moves towards the measurement.

    From the same latents with the same generators, the next latents of a step with the task's
    guidance weights and of one with those weights set to 0 differ only by the guidance, so the
    Tweedie estimate's residual ‖A(D(ẑ0)) − y‖ at the next level must drop for every sample (by
    at least 0.1 % on average); with the weights' signs flipped it must rise on average and stay
    above the guided one for every sample (so the check would catch a sign error or a gradient with
    respect to the wrong tensor). Per sample the flipped step need not rise: where the gradient is
    small the residual's curvature can cancel its first-order rise to float rounding.

    Args:
        solver_class: the solver; weights: the names of its guidance weights (e.g. ``("eta", "gamma")``).
        model: a bundle; task: picks the weights' values; operator, y: ``(b, …)`` measurements.
        k: the grid index of the step (the latents are standard normal there).
    """
    values = solver_class(model).hyperparameters(task)
    z = torch.randn(y.shape[0], *model.latent_shape, generator=torch.Generator().manual_seed(1))

    def residual_after_step(sign: float) -> torch.Tensor:
        solver = solver_class(model)
        # set directly: the constructor refuses a negative weight, which is what this probe needs
        solver.overrides.update({name: sign * float(values[name]) for name in weights})
        generator = [torch.Generator().manual_seed(2 + i) for i in range(y.shape[0])]  # the same noise each time
        stepped = solver.step(make_state(solver, z, y, operator, k, generator, task))
        return tweedie_residual(solver, stepped, k - 1, y, operator)

    plain, guided, flipped = residual_after_step(0.0), residual_after_step(1.0), residual_after_step(-1.0)
    assert (guided < plain).all(), f"the guided step did not reduce the residual: {guided.tolist()} vs {plain.tolist()}"
    assert plain.mean() - guided.mean() > 1e-3 * plain.mean(), "the guidance barely acted"
    assert flipped.mean() > plain.mean(), "flipping the guidance's sign did not raise the residual"
    assert (flipped > guided).all(), f"the flipped step is not above the guided one: {flipped.tolist()} vs {guided.tolist()}"
