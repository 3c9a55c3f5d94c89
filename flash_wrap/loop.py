"""The reverse loop shared by bare solvers and ``Flash``: per-sample starts, joined batches.

Samples are sorted by start step (largest first) once, so at every grid index the active rows
are a prefix of the sorted batch: a sample joins when the loop reaches its start and costs
nothing before. Start steps are read to the host once, before the loop; inside it no value is
read back from the device.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from ._random import GeneratorArg, take
from .operators import Operator
from .plugins import get_registry
from .step import StepState


def run_reverse(
    solver,
    z: torch.Tensor,
    start: torch.Tensor,
    y: torch.Tensor,
    operator: Operator,
    generator: GeneratorArg,
    params: dict,
    *,
    progress: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run ``solver.step`` from each sample's start index down to grid index 0.

    Args:
        solver: a :class:`flash_wrap.solver.Solver`.
        z: ``(B, C, h, w)`` latents at their start levels.
        start: ``(B,)`` long; sample ``i`` is stepped at grid indices ``start[i]−1, …, 0``.
        y: ``(B, …)`` measurements; operator: forward model with per-sample parameters.
        generator: one generator or one per sample (then each sample's noise is its own).
        params: the solver's hyper-parameters for this task.
        progress: show a tqdm bar (``None``: only on a terminal).
    Returns:
        ``(z_0, nfe, decoder_calls)``: final latents ``(B, C, h, w)``, denoiser calls per sample
        ``(B,)`` and decoder calls per sample ``(B,)`` (those made through ``state.decode`` inside
        the steps; the final decode of ``z_0`` into images is not part of the loop).
    """
    starts = [int(s) for s in start.tolist()]
    order = sorted(range(len(starts)), key=lambda i: -starts[i])
    sorted_starts = [starts[i] for i in order]
    perm = torch.tensor(order, device=z.device)
    z_sorted = z.detach()[perm].clone()
    y_sorted = y[perm]
    op_sorted = operator.select(order) if operator.batch_size > 1 else operator
    gen_sorted = take(generator, order)
    calls = [0] * len(starts)
    decodes = [0] * len(starts)
    sampler = solver.sampler
    observe = get_registry().hook.flash_wrap_on_step

    n_active, rows = -1, None
    top = sorted_starts[0] if sorted_starts else 0
    for k in tqdm(range(top - 1, -1, -1), desc=solver.name, disable=None if progress is None else not progress, leave=False):
        n = sum(1 for s in sorted_starts if s > k)
        if n != n_active:
            n_active = n
            rows = slice(0, n)
            sub_y, sub_gen = y_sorted[rows], take(gen_sorted, rows)
            sub_op = op_sorted.select(rows) if op_sorted.batch_size > 1 else op_sorted
            row_ids = perm[rows]
            active = torch.ones(n, dtype=torch.bool, device=z.device)
        index = torch.full((n,), k, dtype=torch.long, device=z.device)
        t = sampler.timesteps[index]
        t_prev = sampler.timesteps[index - 1] if k > 0 else torch.full_like(index, -1)
        state = StepState(
            z=z_sorted[rows], index=index, t=t, t_prev=t_prev, active=active, rows=row_ids,
            y=sub_y, operator=sub_op, model=solver.model, sampler=sampler, params=params,
            generator=sub_gen,
        )
        z_next = solver.step(state)
        if state.denoiser_calls == 0:
            raise RuntimeError(
                f"solver {solver.name!r} made no denoiser call through state.predict_noise at step {k}; "
                "NFE must be counted (see the solver contract in flash_wrap.solver)"
            )
        z_sorted[rows] = z_next.detach()
        for i in range(n):
            calls[i] += state.denoiser_calls
            decodes[i] += state.decoder_calls[i]
        observe(state=state)

    out = torch.empty_like(z_sorted)
    out[perm] = z_sorted
    back = torch.tensor(order, dtype=torch.long)
    nfe = torch.zeros(len(starts), dtype=torch.long)
    nfe[back] = torch.tensor(calls, dtype=torch.long)
    decoder_calls = torch.zeros(len(starts), dtype=torch.long)
    decoder_calls[back] = torch.tensor(decodes, dtype=torch.long)
    return out, nfe.to(z.device), decoder_calls.to(z.device)
