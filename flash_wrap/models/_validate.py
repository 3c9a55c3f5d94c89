"""Argument checks for the model bundle, raised before any work with messages naming both sides."""

from __future__ import annotations

import re
from collections.abc import Iterator

import torch
from diffusers import DDPMScheduler

from .._numbers import is_finite_number
from ..errors import InvalidInput, WrongType
from ..grid import check_grid_label
from .autoencoders import Autoencoder
from .denoiser import Denoiser
from .prediction import check_prediction_type

#: Task names become folder names and ``nn.ModuleDict`` keys: no dots, no slashes.
_TASK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def check_task_name(task: object) -> None:
    if not isinstance(task, str) or not _TASK_NAME.fullmatch(task):
        raise InvalidInput(f"task name must be letters, digits, '-' or '_' (no dots or slashes), got {task!r}")


def check_parts(
    autoencoder: object, denoiser: object, scheduler: object, image_size: object, scale: object, shift: object
) -> None:
    """Arguments of ``LatentDiffusion(...)``: types, ε-prediction, image size vs. downsampling,
    matching latent channels, a finite positive latent scale."""
    if not isinstance(autoencoder, Autoencoder):
        raise WrongType(f"autoencoder must be an Autoencoder adapter, got {type(autoencoder).__name__}")
    if not isinstance(denoiser, Denoiser):
        raise WrongType(f"denoiser must be a Denoiser, got {type(denoiser).__name__}")
    if not isinstance(scheduler, DDPMScheduler):
        raise WrongType(
            f"scheduler must be a diffusers DDPMScheduler, got {type(scheduler).__name__} "
            "(convert with DDPMScheduler.from_config(scheduler.config))"
        )
    check_prediction_type(scheduler.config.prediction_type, "the scheduler")
    check_schedule(scheduler)
    f = autoencoder.downsample_factor
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0 or image_size % f:
        raise InvalidInput(
            f"image_size must be a positive multiple of the autoencoder's downsampling factor {f}, got {image_size!r}"
        )
    if denoiser.in_channels != autoencoder.latent_channels:
        raise InvalidInput(
            f"the denoiser takes {denoiser.in_channels} channels but the autoencoder's latents "
            f"have {autoencoder.latent_channels}"
        )
    for name, value in (("latent_scale", scale), ("latent_shift", shift)):
        if not is_finite_number(value):
            raise InvalidInput(f"{name} must be a finite number, got {value!r}")
    if scale <= 0:  # type: ignore[operator]
        raise InvalidInput(f"latent_scale must be > 0, got {scale}")


def check_solver_defaults(defaults: object, where: str) -> dict:
    """``solver_defaults`` of a bundle: ``{solver name: {task: {hyper-parameter: finite number}}}``.

    The names are checked against each solver's known hyper-parameters when a solver is built
    (:class:`flash_wrap.Solver`); here the shape and the values, so a string or a NaN is refused
    at load instead of failing mid-run."""
    for solver, task, values in _per_task(defaults, "solver_defaults", where, "values"):
        _check_numbers(values, f"{where}: solver_defaults[{solver!r}][{task!r}]")
    return defaults  # type: ignore[return-value]  (checked to be a dict by _per_task)


def check_baseline_defaults(defaults: object, where: str, total: int | None = None) -> dict:
    """``baseline_defaults`` of a bundle: ``{solver: {task: {grid label: {hyper-parameter: number}}}}``,
    the bare solver's values tuned for a whole run from noise on that grid (``"ddpm-1000"``,
    ``"ddim-100 (η=0)"``: :meth:`flash_wrap.grid.GridSpec.label`). Checked like
    :func:`check_solver_defaults`, and the labels must be ones a grid has; the noise-correction
    ``c`` is Flash's alone, so it is refused here. With ``total`` (the schedule's training
    timesteps) a label no grid of that schedule has is refused too."""
    return _check_per_grid(defaults, "baseline_defaults", where, total, bare=True)


def check_flash_defaults(defaults: object, where: str, total: int | None = None) -> dict:
    """``flash_defaults`` of a bundle: ``{solver: {task: {grid label: {hyper-parameter: number}}}}``,
    Flash's values tuned on a grid other than the solver's own (whose values are
    ``solver_defaults``; a solver refuses an entry under its own grid when it is built). Checked
    like :func:`check_baseline_defaults`, ``c`` included."""
    return _check_per_grid(defaults, "flash_defaults", where, total, bare=False)


def _check_per_grid(defaults: object, section: str, where: str, total: int | None, *, bare: bool) -> dict:
    for solver, task, grids in _per_task(defaults, section, where, "grids"):
        if not isinstance(grids, dict):
            raise InvalidInput(f"{where}: {section}[{solver!r}][{task!r}] must map grid labels "
                             f"(e.g. 'ddpm-1000') to values, got {grids!r}")
        for label, values in grids.items():
            check_grid_label(label, f"{where}: {section}[{solver!r}][{task!r}]", total)
            entry = f"{where}: {section}[{solver!r}][{task!r}][{label!r}]"
            if not isinstance(values, dict):
                raise InvalidInput(f"{entry} must be an object of values ({section} map solver, task, "
                                 f"then grid labels (e.g. 'ddpm-1000') to values), got {values!r}")
            _check_numbers(values, entry)
            if bare and "c" in values:
                raise InvalidInput(f"{entry} sets c, the noise correction of Flash, which a bare run never "
                                 "uses; put it in solver_defaults")
    return defaults  # type: ignore[return-value]


def _per_task(defaults: object, section: str, where: str, what: str) -> Iterator[tuple[str, str, object]]:
    """``(solver, task, entry)`` of a ``{solver: {task: entry}}`` section, its names checked."""
    if not isinstance(defaults, dict):
        raise InvalidInput(f"{where}: {section} must be an object, got {type(defaults).__name__}")
    for solver, tasks in defaults.items():
        if not isinstance(solver, str) or not solver:
            raise InvalidInput(f"{where}: {section}: solver names must be non-empty strings, got {solver!r}")
        if not isinstance(tasks, dict):
            raise InvalidInput(f"{where}: {section}[{solver!r}] must map task names to {what}, got {tasks!r}")
        for task, entry in tasks.items():
            try:
                check_task_name(task)
            except ValueError as err:
                raise InvalidInput(f"{where}: {section}[{solver!r}]: {err}") from None
            yield solver, task, entry


def _check_numbers(values: object, where: str) -> None:
    """``values`` maps hyper-parameter names to finite numbers (``where`` names the entry)."""
    if not isinstance(values, dict):
        raise InvalidInput(f"{where} must be an object, got {values!r}")
    for name, value in values.items():
        if not is_finite_number(value):
            raise InvalidInput(f"{where}[{name!r}] must be a finite number, got {value!r}")


def check_schedule(scheduler: DDPMScheduler) -> None:
    """A usable noise schedule: at least one timestep, every β in (0, 1), ᾱ finite and decreasing."""
    betas = scheduler.betas.double()
    if betas.numel() < 1:
        raise InvalidInput("the scheduler has no timesteps (num_train_timesteps must be >= 1)")
    if betas.numel() != scheduler.config.num_train_timesteps:
        raise InvalidInput(f"the scheduler has {betas.numel()} betas but num_train_timesteps is "
                         f"{scheduler.config.num_train_timesteps}; they must agree")
    if not bool(((betas > 0) & (betas < 1)).all()):
        raise InvalidInput(f"the scheduler's betas must lie in (0, 1), got [{float(betas.min()):.4g}, "
                         f"{float(betas.max()):.4g}] (check beta_start, beta_end, trained_betas)")
    alphas_cumprod = scheduler.alphas_cumprod.double()
    if not bool(torch.isfinite(alphas_cumprod).all()) or bool((alphas_cumprod[1:] >= alphas_cumprod[:-1]).any()):
        raise InvalidInput("the scheduler's alphas_cumprod must be finite and strictly decreasing")
