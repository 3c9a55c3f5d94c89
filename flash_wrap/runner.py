"""The one runner shared by bare solvers and ``Flash``: per-sample starts, joined batches, decode.

A bare solver is the special case "every sample starts at the top of the grid from pure noise";
``Flash`` hands in its corrected latents and adaptive start steps. Samples are sorted by start
step (largest first) once, so at every grid index the stepped rows are a prefix of the sorted
batch: a sample joins when the loop reaches its start and costs nothing before. Start steps are
read to the host once, before the loop; inside it no value is read back from the device.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from .discovery import plugins
from .errors import ContractError, FlashWrapError, PluginFailure, WrongType
from .operators import Operator
from .result import Reconstruction
from .rng import GeneratorArg, take
from .state import StepState

if TYPE_CHECKING:
    from .solver import Solver

#: ``callback(state, output)``: called after every reverse step with the step's state (``state.z``
#: is its input) and the ``(b, C, h, w)`` latents it produced. Must not modify either.
StepCallback = Callable[[StepState, torch.Tensor], Any]


@dataclass
class StartPoint:
    """Where the reverse loop starts for a batch: what ``Solver.start_point`` (the bare rule: pure
    noise at the top of the grid) and ``Flash.start_point`` (encode, start rule, noise correction)
    return, and what both ``reconstruct`` and the slot scheduler run from.

    Attributes:
        y: ``(B, C', h', w')`` validated measurements on the model's device and dtype.
        z: ``(B, C, h, w)`` latents at their start levels.
        start: ``(B,)`` long grid indices in ``[0, M]``; sample ``i`` is stepped at ``start[i]−1, …, 0``.
        params: the solver's hyper-parameters for the operator's task.
        sigma_hat: ``(B,)`` the severity encoder's predicted variance (``None`` for a bare solver).
        z_hat: ``(B, C, h, w)`` the severity encoder's latent estimate (``None`` for a bare solver).
        snr_scale: Flash's common SNR scale λ (ALGORITHMS.md §3; ``None`` for a bare solver).
        out_of_range: ``(B,)`` bool, σ̂ outside the encoder's recorded range (``None``: no range or bare).
    """

    y: torch.Tensor
    z: torch.Tensor
    start: torch.Tensor
    params: dict[str, Any]
    sigma_hat: torch.Tensor | None = None
    z_hat: torch.Tensor | None = None
    snr_scale: float | None = None
    out_of_range: torch.Tensor | None = None


def check_callback(callback: object) -> None:
    """``callback`` is ``None`` or callable (refused before any work, not after the first step)."""
    if callback is not None and not callable(callback):
        raise WrongType(f"callback must be callable as callback(state, output), got {type(callback).__name__}")


def observers_for(callback: StepCallback | None) -> list[StepCallback]:
    """The observers of one call: its own ``callback`` (if any), then the process-wide
    ``flash_wrap_on_step`` plugins (a pluggy broadcast, a no-op when none is installed)."""
    broadcast = plugins().hook.flash_wrap_on_step
    own = [callback] if callback is not None else []
    return [*own, lambda state, output: broadcast(state=state, output=output)]


def _step(solver: Solver, state: StepState, k: int) -> torch.Tensor:
    """``solver.step(state)``, detached; an exception from the plugin becomes a :class:`PluginFailure`
    naming the plugin and the grid step (chained to the plugin's own, which keeps its traceback).
    A :class:`FlashWrapError` (the plugin refusing the user's input) passes through unchanged."""
    try:
        return solver.step(state).detach()
    except FlashWrapError:
        raise
    except Exception as err:
        raise PluginFailure(
            f"solver plugin {solver.name!r} failed at grid step {k}: {type(err).__name__}: {err} "
            "(run with -v for its traceback; report it to the plugin's authors)", plugin=solver.name, step=k,
        ) from err


def advance(solver: Solver, state: StepState, k: int, observers: Sequence[StepCallback]) -> torch.Tensor:
    """One reverse step of the busy rows in ``state``: ``solver.step`` (a plugin's exception named
    with grid step ``k``), the contract check that it made a counted denoiser call, then the
    observers. Returns the ``(b, C, h, w)`` next latents; ``state`` keeps the step's call counts.
    The one step of both the runner's loop and the slot scheduler (:mod:`flash_wrap.scheduling`)."""
    output = _step(solver, state, k)
    if state.denoiser_calls == 0:
        raise ContractError(
            f"solver plugin {solver.name!r} made no denoiser call through state.predict or state.predict_noise at grid step {k}; "
            "NFE must be counted (see the solver contract in flash_wrap.solver)", plugin=solver.name, step=k,
        )
    for observe in observers:
        observe(state, output)
    return output


def run_reverse(
    solver: Solver,
    z: torch.Tensor,
    start: torch.Tensor,
    y: torch.Tensor,
    operator: Operator,
    generator: GeneratorArg,
    params: dict[str, Any],
    *,
    progress: bool | None = None,
    observers: Sequence[StepCallback] = (),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run ``solver.step`` from each sample's start index down to grid index 0.

    Args:
        solver: a :class:`flash_wrap.Solver`.
        z: ``(B, C, h, w)`` latents at their start levels.
        start: ``(B,)`` long; sample ``i`` is stepped at grid indices ``start[i]−1, …, 0``.
        y: ``(B, …)`` measurements; operator: forward model with per-sample parameters.
        generator: one generator or one per sample (then each sample's noise is its own).
        params: the solver's hyper-parameters for this task.
        progress: show a tqdm bar (``None``: only on a terminal).
        observers: called as ``observer(state, output)`` after every step, in order.
    Returns:
        ``(z_0, nfe, decoder_calls)``: final latents ``(B, C, h, w)``, denoiser calls per sample
        ``(B,)`` and decoder calls per sample ``(B,)`` (those made through ``state.decode`` inside
        the steps; the final decode of ``z_0`` into images is not part of the loop).
    """
    starts = [int(s) for s in start.tolist()]
    order = sorted(range(len(starts)), key=lambda i: -starts[i])
    sorted_starts = [starts[i] for i in order]
    perm = torch.tensor(order, device=z.device, dtype=torch.long)
    z_sorted = z.detach()[perm]
    y_sorted = y[perm]
    op_sorted = operator.select(order) if operator.batch_size > 1 else operator
    gen_sorted = take(generator, order)
    calls = [0] * len(starts)
    decodes = [0] * len(starts)
    sampler = solver.sampler

    n_active = -1
    top = sorted_starts[0] if sorted_starts else 0
    bar = tqdm(range(top - 1, -1, -1), desc=solver.name, disable=None if progress is None else not progress, leave=False)
    for k in bar:
        n = sum(1 for s in sorted_starts if s > k)
        if n != n_active:
            n_active = n
            rows = slice(0, n)
            sub_y, sub_gen = y_sorted[rows], take(gen_sorted, rows)
            sub_op = op_sorted.select(rows) if op_sorted.batch_size > 1 else op_sorted
            row_ids = perm[rows]
        index = torch.full((n,), k, dtype=torch.long, device=z.device)
        state = StepState(
            z=z_sorted[:n], index=index, t=sampler.timesteps[index], rows=row_ids, y=sub_y, operator=sub_op,
            model=solver.model, sampler=sampler, params=params, generator=sub_gen,
        )
        output = advance(solver, state, k, observers)
        # a new tensor, not an in-place write: state.z stays the step's input for the observers
        z_sorted = output if n == len(starts) else torch.cat([output, z_sorted[n:]])
        for i in range(n):
            calls[i] += state.denoiser_calls
            decodes[i] += state.decoder_calls[i]

    out = torch.empty_like(z_sorted)
    out[perm] = z_sorted
    back = torch.tensor(order, dtype=torch.long)
    nfe = torch.zeros(len(starts), dtype=torch.long)
    nfe[back] = torch.tensor(calls, dtype=torch.long)
    decoder_calls = torch.zeros(len(starts), dtype=torch.long)
    decoder_calls[back] = torch.tensor(decodes, dtype=torch.long)
    return out, nfe.to(z.device), decoder_calls.to(z.device)


def reconstruct_from(
    solver: Solver,
    z: torch.Tensor,
    start: torch.Tensor,
    y: torch.Tensor,
    operator: Operator,
    generator: GeneratorArg,
    params: dict[str, Any],
    *,
    progress: bool | None = None,
    callback: StepCallback | None = None,
    sigma_hat: torch.Tensor | None = None,
    z_hat: torch.Tensor | None = None,
) -> Reconstruction:
    """Run the reverse loop from ``(z, start)``, decode, and package the :class:`Reconstruction`.

    ``y`` must already be validated (``solver.prepare``). ``sigma_hat`` and ``z_hat`` are the
    severity encoder's outputs when the caller is ``Flash`` (``None`` for a bare solver).
    """
    latents, nfe, decoder_calls = run_reverse(
        solver, z, start, y, operator, generator, params, progress=progress, observers=observers_for(callback)
    )
    return package(solver, latents, nfe, start, decoder_calls, sigma_hat=sigma_hat, z_hat=z_hat)


def package(
    solver: Solver,
    latents: torch.Tensor,
    nfe: torch.Tensor,
    start: torch.Tensor,
    decoder_calls: torch.Tensor,
    *,
    sigma_hat: torch.Tensor | None = None,
    z_hat: torch.Tensor | None = None,
) -> Reconstruction:
    """Decode final latents ``(B, C, h, w)`` into images in [0, 1] and record them with their
    per-sample ``(B,)`` counts and the solver's grid as a :class:`Reconstruction`."""
    with torch.no_grad():
        images = solver.model.decode(latents).clamp(0, 1)
    grid = solver.grid
    return Reconstruction(
        images, latents, nfe, start, solver.name, grid.kind, grid.steps, eta=grid.eta,
        sigma_hat=sigma_hat, z_hat=z_hat, decoder_calls=decoder_calls, path=solver.model.path,
    )
