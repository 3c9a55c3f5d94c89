"""Tasks: an operator family plus the map from a normalized severity level t ∈ [0, 1] to its
physical parameters, and the level ranges used for training and evaluation (ALGORITHMS.md §2, §6).

A :class:`Task` is what a plugin registers through ``flash_wrap_register_tasks``
(:mod:`flash_wrap.hookspecs`); the built-in four live in ``flash_wrap_plugins.tasks`` and are
found, like a third party's, through the task registry (:func:`flash_wrap.registry.get_task`).
Physical parameters are stated at :data:`REFERENCE_SIZE`² and scale with ``image_size / 256``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from .._checks import per_sample
from ..errors import InvalidInput, WrongType
from .base import DEFAULT_NOISE_STD, Operator

#: ``(operator, image_size) -> levels (B,) float64``, or ``None`` for an operator it cannot read
LevelOf = Callable[[Operator, int], torch.Tensor | None]
#: ``(levels (B,), image_size, noise_std, seeds (B,) int64) -> Operator``
Builder = Callable[[torch.Tensor, int, float, torch.Tensor], Operator]

#: Seeds drawn by :meth:`Task.sample` lie in [0, SEED_BOUND).
SEED_BOUND = 2**31 - 1
#: What a task name looks like: lower-case words of letters and digits joined by ``-``.
NAME = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")


def _check_range(level_range: tuple[float, float], name: str) -> tuple[float, float]:
    lo, hi = (float(v) for v in level_range)
    if not 0.0 <= lo <= hi <= 1.0:
        raise InvalidInput(f"{name} must satisfy 0 <= low <= high <= 1, got {level_range!r}")
    return lo, hi


@dataclass(frozen=True)
class Task:
    """A degradation family with its severity parametrization: everything flash-wrap's commands
    need to know about it (nothing else keeps a per-task table).

    Attributes:
        name: task name, equal to the ``task`` attribute of the operators it builds; lower-case
            words joined by ``-`` (it names bundle folders and ``--task`` values).
        summary: one line describing the level → parameter map.
        eval_range: levels t drawn at evaluation, ``(low, high)`` within [0, 1].
        train_range: levels t drawn for severity-encoder training.
        build: makes the operator from levels ``(B,)``, image size, noise level σ_y and seeds
            ``(B,)`` int64 (an operator with batch ``B``, or a shared one with batch 1).
        demo_levels: the levels t ``flash-wrap demo`` shows (an easy and a hard one); default the
            ends of ``train_range`` (one level when the range is a point).
        severity_format: ``str.format`` pattern for the operator's physical ``severity`` in tables
            and figures (``"σ {:.2f} px"``).
        level_of: the inverse of ``build``, optional: ``level_of(operator, image_size)`` gives the
            level t ``(B,)`` float64 of each sample of an operator of this task (beyond [0, 1] for
            a degradation outside the parametrization, e.g. an operator made directly with a
            stronger blur), or ``None`` for an operator it cannot read. Flash flags samples whose
            level lies outside their severity encoder's training levels.
        official_operators: the operators of the official Flash-Diffusion code whose released
            severity encoders ``flash-wrap import-encoder`` imports as this task, spelt as
            :func:`flash_wrap.severity.official.official_operator_key` does (``"gaussian_blur"``,
            ``"inpainting/random"``).
    """

    name: str
    summary: str
    eval_range: tuple[float, float]
    train_range: tuple[float, float]
    build: Builder = field(repr=False, compare=False)
    demo_levels: tuple[float, ...] = ()
    severity_format: str = "severity {:.3g}"
    official_operators: tuple[str, ...] = ()
    level_of: LevelOf | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME.fullmatch(self.name):
            raise InvalidInput(f"a task name must be lower-case words joined by '-' (e.g. 'box-inpainting'), "
                             f"got {self.name!r}")
        if not callable(self.build):
            raise WrongType(f"task {self.name!r}: build must be callable (levels, image_size, noise_std, seeds) -> "
                            f"Operator, got {self.build!r}")
        object.__setattr__(self, "eval_range", _check_range(self.eval_range, f"task {self.name!r}: eval_range"))
        object.__setattr__(self, "train_range", _check_range(self.train_range, f"task {self.name!r}: train_range"))
        lo, hi = self.train_range
        levels = tuple(float(t) for t in self.demo_levels) or ((lo,) if lo == hi else (lo, hi))
        if not all(0.0 <= t <= 1.0 for t in levels):
            raise InvalidInput(f"task {self.name!r}: demo_levels must lie in [0, 1], got {self.demo_levels!r}")
        object.__setattr__(self, "demo_levels", levels)
        try:
            self.severity_format.format(1.0)
        except (AttributeError, IndexError, KeyError, ValueError) as err:
            raise InvalidInput(f"task {self.name!r}: severity_format must format one number, like 'σ {{:.2f}} px'; "
                             f"got {self.severity_format!r} ({err})") from None
        object.__setattr__(self, "official_operators", tuple(self.official_operators))
        if self.level_of is not None and not callable(self.level_of):
            raise WrongType(f"task {self.name!r}: level_of must be callable (operator, image_size) -> levels (B,), "
                            f"got {self.level_of!r}")

    def describe(self, severity: float) -> str:
        """``"σ 0.75 px"``, ``"30% missing"``, …: a physical severity in words."""
        return self.severity_format.format(severity)

    def operator(
        self,
        level: float | Sequence[float] | torch.Tensor,
        image_size: int,
        *,
        noise_std: float = DEFAULT_NOISE_STD,
        seed: int | Sequence[int] | torch.Tensor | None = None,
    ) -> Operator:
        """The operator for levels ``t`` ∈ [0, 1] (scalar or ``(B,)``) on ``image_size``² images.

        ``seed`` (``(B,)`` integers, default ``0..B-1``) picks the random kernels of motion blur;
        other tasks ignore it.
        """
        levels = per_sample(level, "level", minimum=0.0, maximum=1.0)
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise InvalidInput(f"image_size must be a positive integer (pixels), got {image_size!r}")
        seeds = torch.arange(len(levels)) if seed is None else torch.as_tensor(seed)
        return self.build(levels, image_size, noise_std, seeds)

    def sample(
        self,
        batch: int,
        image_size: int,
        generator: torch.Generator,
        *,
        noise_std: float = DEFAULT_NOISE_STD,
        level_range: tuple[float, float] | None = None,
    ) -> tuple[Operator, torch.Tensor]:
        """Draw ``t ~ U[level_range or train_range]`` per sample, and motion-blur seeds, from
        ``generator``; return the operator and the levels ``(batch,)``."""
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise InvalidInput(f"batch must be a positive integer, got {batch!r}")
        lo, hi = _check_range(level_range or self.train_range, "level_range")
        draw = torch.rand(batch, generator=generator, device=generator.device, dtype=torch.float64)
        levels = (lo + (hi - lo) * draw.cpu()).to(torch.get_default_dtype())
        # Drawn for every task so a generator advances the same way whatever the task.
        seeds = torch.randint(0, SEED_BOUND, (batch,), generator=generator, device=generator.device)
        return self.operator(levels, image_size, noise_std=noise_std, seed=seeds.cpu()), levels
