"""The base class every solver plugin subclasses.

A solver implements one reverse step of the prior plus its data-consistency update in
:meth:`Solver.step`; the loop, the schedule, start steps, per-sample masking and NFE counting
belong to flash-wrap. Subclass contract:

* ``name``: unique registry name (e.g. ``"latent-dps"``); ``summary`` and ``reference``: one line each.
* ``sampler_kind`` (``"ddpm"``/``"ddim"``), ``default_steps`` (grid length; ``None`` = every
  training timestep) and ``ddim_eta``: the solver's own sampler, used bare and wrapped.
* ``defaults``: per task, the hyper-parameters (always including the noise-correction constant
  ``c``); ``fallback`` is used for tasks not listed.
* ``step(state)``: return the next latents for ``state.z`` (all rows active). Call the denoiser
  only through ``state.predict_noise`` so NFE is counted, and the decoder only through
  ``state.decode`` so decoder calls are counted. Never keep autograd graphs across steps.
* ``check_operator(operator)``: raise before any work if the solver cannot handle an operator.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from ._checks import check_generator
from ._random import GeneratorArg, randn
from .loop import run_reverse
from .models import LatentDiffusion
from .operators import Operator
from .result import Reconstruction
from .samplers import Sampler, SamplerKind
from .step import StepState


class Solver(ABC):
    """A latent-diffusion inverse-problem solver; calling :meth:`reconstruct` runs the bare baseline.

    Args:
        model: the latent diffusion bundle.
        sampler: override the solver's sampler kind ("ddpm" or "ddim").
        steps: grid length (DDIM); DDPM always uses every training timestep.
        ddim_eta: DDIM stochasticity η (0 = deterministic).
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
            raise TypeError(f"{type(self).__name__} needs a flash_wrap.LatentDiffusion, got {type(model).__name__}")
        known = self.hyperparameter_names()
        unknown = sorted(set(hyperparameters) - known)
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unknown hyper-parameter(s) {unknown}; known: {sorted(known)}"
            )
        self.model = model
        self.overrides = dict(hyperparameters)
        kind = sampler or self.sampler_kind
        if kind not in ("ddpm", "ddim"):
            raise ValueError(f"sampler must be 'ddpm' or 'ddim', got {kind!r}")
        total = model.num_train_timesteps
        if kind == "ddpm" and steps not in (None, total):
            raise ValueError(f"the DDPM sampler runs all {total} timesteps; use sampler='ddim' for steps={steps}")
        self._sampler_args = (kind, steps or self.default_steps or total, self.ddim_eta if ddim_eta is None else ddim_eta)
        self._sampler: Sampler | None = None

    @classmethod
    def hyperparameter_names(cls) -> set[str]:
        names = {"c", *cls.fallback}
        for values in cls.defaults.values():
            names.update(values)
        return names

    def hyperparameters(self, task: str | None) -> dict[str, Any]:
        """Resolved hyper-parameters for ``task``, later sources winning: the solver's defaults for
        the task (or ``fallback``), the model bundle's tuned values (``model.solver_defaults``),
        this instance's keyword overrides."""
        params = dict(self.defaults.get(task, self.fallback)) if task is not None else dict(self.fallback)
        params.update(self.model.solver_defaults.get(self.name, {}).get(task, {}))
        params.update(self.overrides)
        return params

    @property
    def sampler(self) -> Sampler:
        """The prior's grid and update rule, on the model's device."""
        ac = self.model.alphas_cumprod
        if self._sampler is None or self._sampler.coef_z0.device != ac.device or self._sampler.coef_z0.dtype != ac.dtype:
            kind, steps, eta = self._sampler_args
            self._sampler = Sampler.ddpm(ac) if kind == "ddpm" else Sampler.ddim(ac, steps, eta)
        return self._sampler

    def check_operator(self, operator: Operator) -> None:
        """Raise if this solver cannot use ``operator`` (default: any operator works)."""

    @abstractmethod
    def step(self, state: StepState) -> torch.Tensor:
        """One reverse step plus data consistency: return ``(b, C, h, w)`` latents at ``state.t_prev``."""

    def prepare(self, y: object, operator: object, generator: GeneratorArg) -> torch.Tensor:
        """Validate inputs (before any heavy work); returns ``y`` on the model's device and dtype."""
        if not isinstance(operator, Operator):
            raise TypeError(f"operator must be a flash_wrap.operators.Operator, got {type(operator).__name__}")
        y = operator.check_measurement(y, (self.model.image_size, self.model.image_size))
        if y.device != self.model.device:
            raise ValueError(f"y is on {y.device} but the model is on {self.model.device}; move one of them")
        check_generator(generator, y.shape[0])
        self.check_operator(operator)
        return y.to(self.model.dtype)

    def run(
        self,
        z: torch.Tensor,
        start: torch.Tensor,
        y: torch.Tensor,
        operator: Operator,
        generator: GeneratorArg,
        params: dict[str, Any],
        progress: bool | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reverse loop from ``start`` then decode: ``(latents, images in [0,1], nfe)``.

        :meth:`run_counted` also returns the decoder calls."""
        return self.run_counted(z, start, y, operator, generator, params, progress)[:3]

    def run_counted(
        self,
        z: torch.Tensor,
        start: torch.Tensor,
        y: torch.Tensor,
        operator: Operator,
        generator: GeneratorArg,
        params: dict[str, Any],
        progress: bool | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Like :meth:`run`: ``(latents, images in [0,1], nfe, decoder_calls)``, the last two
        ``(B,)`` long per sample (decoder calls made by the steps; the final decode is not counted)."""
        latents, nfe, decoder_calls = run_reverse(self, z, start, y, operator, generator, params, progress=progress)
        with torch.no_grad():
            images = self.model.decode(latents).clamp(0, 1)
        return latents, images, nfe, decoder_calls

    def reconstruct(
        self,
        y: torch.Tensor,
        operator: Operator,
        generator: GeneratorArg = None,
        *,
        progress: bool | None = None,
    ) -> Reconstruction:
        """The bare baseline: the full reverse process from pure noise ``z ~ N(0, I)``.

        Args:
            y: ``(B, C, h, w)`` measurements in [0, 1] image units (noisy, so not clamped).
            operator: the forward model that produced ``y`` (per-sample parameters).
            generator: one ``torch.Generator``, or a list with one per sample.
            progress: tqdm bar (``None``: only on a terminal).
        """
        y = self.prepare(y, operator, generator)
        params = self.hyperparameters(operator.task)
        batch = y.shape[0]
        sampler = self.sampler
        z = randn((batch, *self.model.latent_shape), generator, device=self.model.device, dtype=self.model.dtype)
        start = torch.full((batch,), sampler.num_steps, dtype=torch.long, device=self.model.device)
        latents, images, nfe, decoder_calls = self.run_counted(z, start, y, operator, generator, params, progress)
        return Reconstruction(
            images, latents, nfe, start, self.name, sampler.kind, sampler.num_steps, decoder_calls=decoder_calls
        )

    def __repr__(self) -> str:
        kind, steps, _ = self._sampler_args
        return f"{type(self).__name__}(sampler={kind!r}, steps={steps}, overrides={self.overrides})"
