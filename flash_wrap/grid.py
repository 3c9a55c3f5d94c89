"""The one rule that turns (solver, scheduler, steps) into a sampler grid.

Every entry point that builds a solver for "N steps" (``eval``, ``demo``, ``benchmark``,
``sample``, the examples, ``Solver(model, steps=N)`` itself) goes through :func:`grid_for`, so
the same request always runs the same sampler, and :class:`GridSpec` records which one ran
(kind, grid length, DDIM η) in every result.

The rule, with ``T`` the model's training timesteps:

* no ``steps`` and no ``scheduler``: the solver's own sampler (``sampler_kind``,
  ``default_steps``), e.g. DDPM-1000 for Latent-DPS, DDIM-500 for ReSample;
* ``steps = N < T`` without a scheduler: DDIM over ``N`` steps (DDPM cannot skip timesteps);
* ``steps = T`` without a scheduler: DDPM (LDM's uniform DDIM grid cannot hold all ``T``
  timesteps: ``g_k = k·(T // N) + 1`` would reach ``T``);
* an explicit ``scheduler`` is obeyed, and refused where it cannot run ``steps``;
* the DDIM stochasticity η is the solver's own ``ddim_eta`` unless given explicitly.

Flow-matching models (``path="flow"``, ALGORITHMS.md §12) have no training timesteps to walk: ``steps``
is the number of Euler (= DDIM) steps on the scheduler's σ grid, ``1 ≤ N ≤ T``; the sampler is always
DDIM (``scheduler="ddpm"`` is refused); without ``steps`` it is the solver's ``default_steps`` if its
own sampler is DDIM, else :data:`FLOW_DEFAULT_STEPS` (100, the DDIM-100 analogue of the demo).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch

from .errors import InvalidInput
from .samplers import Sampler, SamplerKind

if TYPE_CHECKING:
    from .models import LatentDiffusion

SAMPLER_KINDS: tuple[SamplerKind, ...] = ("ddpm", "ddim")
#: Euler steps of a flow model when neither the request nor a DDIM solver names a number.
FLOW_DEFAULT_STEPS = 100


class SamplerDefaults(Protocol):
    """What the rule reads from a solver class: its own sampler (read only)."""

    @property
    def sampler_kind(self) -> SamplerKind: ...

    @property
    def default_steps(self) -> int | None: ...

    @property
    def ddim_eta(self) -> float: ...


@dataclass(frozen=True)
class OwnSampler:
    """Sampler defaults for callers that are not solvers (e.g. unconditional sampling)."""

    sampler_kind: SamplerKind = "ddpm"
    default_steps: int | None = None
    ddim_eta: float = 0.0


@dataclass(frozen=True)
class GridSpec:
    """Which sampler a solver runs: ``kind``, grid length ``steps`` (= NFE of a full trajectory)
    and the DDIM stochasticity ``eta`` (``None`` for DDPM, whose noise is fixed by the schedule)."""

    kind: SamplerKind
    steps: int
    eta: float | None

    def build(self, model: LatentDiffusion) -> Sampler:
        """The sampler's tables for ``model``, on its device. VP: over its ``alphas_cumprod`` (float32
        tables); flow: DDIM over :meth:`~flash_wrap.models.LatentDiffusion.flow_sigmas` (float64 tables
        for a float64 model, else float32)."""
        eta = float(self.eta or 0.0)
        if model.path == "flow":
            if self.kind != "ddim":
                raise InvalidInput(f"a {self.kind.upper()} sampler cannot run a flow-matching model, which has no "
                                   "discrete training timesteps; use the DDIM (Euler) sampler with steps=N")
            dtype = torch.float64 if model.dtype == torch.float64 else torch.float32
            return Sampler.flow(model.flow_sigmas(self.steps).to(model.device), eta,
                                num_train_timesteps=model.num_train_timesteps, dtype=dtype)
        if self.kind == "ddpm":
            return Sampler.ddpm(model.alphas_cumprod)
        return Sampler.ddim(model.alphas_cumprod, self.steps, eta)

    def label(self) -> str:
        """``"ddpm-1000"`` or ``"ddim-100 (η=0)"``, for tables and logs."""
        name = f"{self.kind}-{self.steps}"
        return name if self.eta is None else f"{name} (η={self.eta + 0.0:g})"  # + 0.0: never "η=-0"


def grid_for(
    solver: SamplerDefaults,
    total: int,
    *,
    scheduler: str | None = None,
    steps: int | None = None,
    ddim_eta: float | None = None,
    path: str = "vp",
) -> GridSpec:
    """The sampler grid ``solver`` runs for this request (see the module docstring for the rule).

    Args:
        solver: a :class:`flash_wrap.Solver` subclass, or any :class:`SamplerDefaults` (its
            ``sampler_kind``, ``default_steps``, ``ddim_eta`` are the defaults).
        total: ``T``, the model's number of training timesteps.
        scheduler: ``"ddpm"``, ``"ddim"`` or ``None`` (the rule decides).
        steps: grid length ``N``, ``1 ≤ N ≤ T``, or ``None``.
        ddim_eta: DDIM η ``≥ 0``, or ``None`` for the solver's own.
        path: the model's noise path, ``"vp"`` or ``"flow"`` (then ``steps`` counts Euler steps on
            the σ grid, see the module docstring).
    Raises:
        ValueError: naming the argument, what was expected and what came.
    """
    if scheduler is not None and scheduler not in SAMPLER_KINDS:
        raise InvalidInput(f"sampler must be 'ddpm' or 'ddim', got {scheduler!r}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= total):
        raise InvalidInput(f"steps must be an integer in [1, {total}] (the model's training timesteps), got {steps!r}")
    if ddim_eta is not None and not ddim_eta >= 0:
        raise InvalidInput(f"DDIM eta must be >= 0, got {ddim_eta}")
    if path == "flow":
        if scheduler == "ddpm":
            raise InvalidInput("sampler='ddpm' cannot run a flow-matching model (it has no discrete training "
                               "timesteps); use sampler='ddim' (the flow's Euler step at η=0) with steps=N")
        own = solver.default_steps if solver.sampler_kind == "ddim" else None
        euler_steps = steps if steps is not None else (own or FLOW_DEFAULT_STEPS)
        return GridSpec("ddim", euler_steps, float(solver.ddim_eta if ddim_eta is None else ddim_eta))
    if scheduler is not None:
        kind = scheduler
    elif steps is None:
        kind = solver.sampler_kind
    else:
        kind = "ddim" if steps < total else "ddpm"
    if kind == "ddpm":
        if steps not in (None, total):
            raise InvalidInput(f"the DDPM sampler runs all {total} timesteps; use sampler='ddim' for steps={steps}")
        if ddim_eta is not None:
            raise InvalidInput(f"ddim_eta={ddim_eta} was given but the sampler is DDPM (its noise is fixed by the "
                             "schedule); pass steps < T or sampler='ddim' to run DDIM")
        return GridSpec("ddpm", total, None)
    n = steps if steps is not None else solver.default_steps
    if n is None:
        raise InvalidInput(f"sampler='ddim' needs a number of steps below the {total} training timesteps "
                         f"({getattr(solver, '__name__', 'the solver')} has no DDIM default); pass steps=N")
    if n >= total:
        raise InvalidInput(
            f"DDIM needs fewer steps than the {total} training timesteps (its grid k·(T//N)+1 would reach {total}), "
            f"got {n}; use the DDPM sampler for all {total}"
        )
    eta = float(solver.ddim_eta if ddim_eta is None else ddim_eta)
    return GridSpec("ddim", n, eta)
