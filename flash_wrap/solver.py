"""The base class every solver plugin subclasses.

A solver implements one reverse step of the prior plus its data-consistency update in
:meth:`Solver.step`; the loop, the schedule, start steps, per-sample masking and NFE counting
belong to flash-wrap. Subclass contract:

* ``name``: unique registry name (e.g. ``"latent-dps"``); ``summary`` and ``reference``: one line each.
* ``sampler_kind`` (``"ddpm"``/``"ddim"``), ``default_steps`` (grid length; ``None`` = every
  training timestep) and ``ddim_eta``: the solver's own sampler, used bare and wrapped; a request
  for other steps goes through the one grid rule, :func:`flash_wrap.grid.grid_for`.
* ``defaults``: per task, the hyper-parameters (always including the noise-correction constant
  ``c``); ``fallback`` is used for tasks not listed. Every value must be >= 0 (step sizes,
  weights, variances) unless its name is in ``signed``; ``counts`` maps the names that count
  something (iterations, an interval in steps) to their least value, and those must be whole
  numbers at or above it (:meth:`Solver.check_values`).
* ``step(state)``: return the next latents for ``state.z`` (all rows active). Call the denoiser
  only through ``state.predict`` (ε̂ and ẑ₀; or ``state.predict_noise``) so NFE is counted, and the decoder only through
  ``state.decode`` so decoder calls are counted. Never keep autograd graphs across steps.
* ``check_operator(operator)``: raise before any work if the solver cannot handle an operator.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from . import tuning
from ._checks import check_generator
from ._numbers import is_finite_number
from .errors import InvalidInput, WrongType
from .grid import GridSpec, SamplerKind, grid_for
from .models import LatentDiffusion
from .operators import Operator
from .result import Reconstruction
from .rng import GeneratorArg, randn
from .runner import StartPoint, StepCallback, check_callback, reconstruct_from
from .samplers import Sampler
from .state import StepState


class Solver(ABC):
    """A latent-diffusion inverse-problem solver; calling :meth:`reconstruct` runs the bare baseline.

    Args:
        model: the latent diffusion bundle.
        sampler: override the solver's sampler kind ("ddpm" or "ddim").
        steps: grid length; fewer than the training timesteps implies DDIM
            (:func:`flash_wrap.grid.grid_for` is the rule). DDPM always uses every timestep.
        ddim_eta: DDIM stochasticity η (0 = deterministic; default: the solver's own).
        **hyperparameters: overrides of the per-task defaults (e.g. ``eta=2.0``, ``c=1.0``).
    """

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    reference: ClassVar[str] = ""
    sampler_kind: ClassVar[SamplerKind] = "ddpm"
    default_steps: ClassVar[int | None] = None
    ddim_eta: ClassVar[float] = 0.0
    defaults: ClassVar[Mapping[str, Mapping[str, float]]] = {}
    fallback: ClassVar[Mapping[str, float]] = {}
    #: hyper-parameters that count something (Adam iterations, an interval in steps), each mapped
    #: to its least value: whole numbers at or above it
    counts: ClassVar[Mapping[str, int]] = {}
    #: hyper-parameters that may be negative; any other value below 0 is refused
    signed: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        model: LatentDiffusion,
        *,
        sampler: SamplerKind | None = None,
        steps: int | None = None,
        ddim_eta: float | None = None,
        **hyperparameters: float,
    ) -> None:
        if not isinstance(model, LatentDiffusion):
            raise WrongType(f"{type(self).__name__} needs a flash_wrap.LatentDiffusion, got {type(model).__name__}")
        known = self.hyperparameter_names()
        unknown = sorted(set(hyperparameters) - known)
        if unknown:
            raise WrongType(
                f"{type(self).__name__} got unknown hyper-parameter(s) {unknown}; known: {sorted(known)}"
            )
        for key, value in hyperparameters.items():
            if not is_finite_number(value):
                raise WrongType(f"{type(self).__name__}: hyper-parameter {key}={value!r} must be a finite number")
        self.check_values(hyperparameters, type(self).__name__)
        tuning.check(model, type(self))  # the bundle's values for this solver, refused now rather than mid-run
        self.model = model
        self.overrides = dict(hyperparameters)
        #: the sampler this solver runs, bare and inside Flash (recorded in every Reconstruction)
        self.grid: GridSpec = grid_for(
            type(self), model.num_train_timesteps, scheduler=sampler, steps=steps, ddim_eta=ddim_eta, path=model.path
        )
        self._sampler: Sampler | None = None
        self._placement: tuple[torch.device, torch.dtype] | None = None

    @classmethod
    def check_values(cls, values: Mapping[str, float], where: str, *, fix: str = "") -> None:
        """Refuse values this solver cannot mean, before any work: a value below 0 (a step size,
        weight or variance whose sign would reverse it; names in :attr:`signed` are exempt) and a
        count (:attr:`counts`) that is not a whole number at or above its least value (it would be
        truncated, or divide by zero mid-run). ``values`` are finite numbers already; ``where`` and ``fix`` go into the message."""
        hint = f" ({fix})" if fix else ""
        for name, value in values.items():
            if name in cls.counts and (value < cls.counts[name] or value != int(value)):
                raise InvalidInput(f"{where}: {name} counts steps or iterations and must be a whole number "
                                 f">= {cls.counts[name]}, got {value!r}{hint}")
            if name not in cls.signed and value < 0:
                what = "the noise-correction constant c" if name == "c" else name
                raise InvalidInput(f"{where}: {what} must be >= 0, got {value!r}{hint}")

    @classmethod
    def hyperparameter_names(cls) -> set[str]:
        names = {"c", *cls.fallback}
        for values in cls.defaults.values():
            names.update(values)
        return names

    def hyperparameters(self, task: str | None, *, baseline: bool = False) -> dict[str, Any]:
        """Resolved hyper-parameters for ``task`` on this solver's grid, by the one precedence rule of
        :func:`flash_wrap.tuning.resolve`: this instance's keyword overrides, then the model bundle's
        values tuned for this grid (Flash's, or the bare solver's with ``baseline=True``), then its
        solver-wide tuned values, then the solver's own defaults for the task (or ``fallback``). A
        bare run has no noise correction, so ``baseline=True`` leaves ``c`` out.

        Flash runs a few steps from ẑ, the bare solver every step from noise, so each has its own
        tuned step size where the bundle holds one (``flash-wrap tune`` and ``tune --baseline``)."""
        return tuning.resolve(self.model, type(self), task, self.grid, bare=baseline, overrides=self.overrides)

    @property
    def sampler(self) -> Sampler:
        """The prior's grid and update rule, on the model's device (rebuilt when the model moves or changes dtype)."""
        placement = (self.model.device, self.model.dtype)
        if self._sampler is None or self._placement != placement:
            self._sampler, self._placement = self.grid.build(self.model), placement
        return self._sampler

    def check_operator(self, operator: Operator) -> None:  # noqa: B027 (an optional hook, not abstract)
        """Raise if this solver cannot use ``operator`` (default: any operator works)."""

    @abstractmethod
    def step(self, state: StepState) -> torch.Tensor:
        """One reverse step plus data consistency: return ``(b, C, h, w)`` latents one grid level below ``state.t``."""

    def prepare(self, y: object, operator: object, generator: GeneratorArg) -> torch.Tensor:
        """Validate inputs (before any heavy work); returns ``y`` on the model's device and dtype."""
        if not isinstance(operator, Operator):
            raise WrongType(f"operator must be a flash_wrap.operators.Operator, got {type(operator).__name__}")
        y = operator.check_measurement(y, (self.model.image_size, self.model.image_size))
        if y.shape[0] == 0:
            raise InvalidInput("y is an empty batch (0 measurements); pass at least one")
        if y.device != self.model.device:
            raise InvalidInput(f"y is on {y.device} but the model is on {self.model.device}; move one of them")
        check_generator(generator, y.shape[0])
        self.check_operator(operator)
        return y.to(self.model.dtype)

    def reconstruct(
        self,
        y: torch.Tensor,
        operator: Operator,
        generator: GeneratorArg = None,
        *,
        progress: bool | None = None,
        callback: StepCallback | None = None,
    ) -> Reconstruction:
        """The bare baseline: the full reverse process from pure noise ``z ~ N(0, I)``, i.e. the
        shared runner started at the top of the grid for every sample, with the bare run's
        hyper-parameters (:meth:`hyperparameters` with ``baseline=True``).

        Args:
            y: ``(B, C, h, w)`` measurements in [0, 1] image units (noisy, so not clamped).
            operator: the forward model that produced ``y`` (per-sample parameters).
            generator: one ``torch.Generator``, or a list with one per sample.
            progress: tqdm bar (``None``: only on a terminal).
            callback: ``callback(state, output)`` after every step (see
                :data:`flash_wrap.runner.StepCallback`), before the process-wide observers.
        """
        check_callback(callback)
        point = self.start_point(y, operator, generator)
        return reconstruct_from(
            self, point.z, point.start, point.y, operator, generator, point.params, progress=progress, callback=callback
        )

    def start_point(self, y: torch.Tensor, operator: Operator, generator: GeneratorArg = None) -> StartPoint:
        """The bare start, used by :meth:`reconstruct` and by :func:`flash_wrap.scheduling.stream`: validate ``y``
        (:meth:`prepare`), draw pure noise ``z ~ N(0, I)`` ``(B, C, h, w)`` from ``generator`` and start
        every sample at the top of the grid (``start = M``), with the bare run's hyper-parameters."""
        y = self.prepare(y, operator, generator)
        params = self.hyperparameters(operator.task, baseline=True)
        batch = y.shape[0]
        z = randn((batch, *self.model.latent_shape), generator, device=self.model.device, dtype=self.model.dtype)
        start = torch.full((batch,), self.grid.steps, dtype=torch.long, device=self.model.device)
        return StartPoint(y, z, start, params)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(grid={self.grid.label()!r}, overrides={self.overrides})"
