"""argparse types that range-check numbers where they are parsed, so a bad value is refused in
one line before any model loads (``--batch-size -2`` used to evaluate nothing and exit 0)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from typing import TypeVar

from .._numbers import is_finite_number
from ..errors import InvalidInput

_Number = TypeVar("_Number", int, float)


def _number(kind: type[_Number], text: str) -> _Number:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def integer(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    """An ``int`` in ``[minimum, maximum]`` (either bound optional)."""

    def parse(text: str) -> int:
        value = _number(int, text)
        if minimum is not None and value < minimum or maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"expected an integer in {_bounds(minimum, maximum)}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def number(minimum: float | None = None, maximum: float | None = None, *, open_low: bool = False) -> Callable[[str], float]:
    """A finite ``float`` in ``[minimum, maximum]`` (``(minimum, …`` with ``open_low``)."""

    def parse(text: str) -> float:
        value = _number(float, text)
        low_bad = minimum is not None and (value <= minimum if open_low else value < minimum)
        if low_bad or maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(
                f"expected a number in {_bounds(minimum, maximum, open_low=open_low)}, got {value:g}"
            )
        return value

    parse.__name__ = "number"
    return parse


def _bounds(low: float | None, high: float | None, *, open_low: bool = False) -> str:
    left = "(-inf" if low is None else f"{'(' if open_low else '['}{low:g}"
    right = "inf)" if high is None else f"{high:g}]"
    return f"{left}, {right}"


POSITIVE = integer(1)
NON_NEGATIVE = integer(0)
#: seeds go into torch.Generator.manual_seed, which takes 64-bit values
SEED = integer(0, 2**63 - 1)


def device(text: str) -> str:
    """A torch device that exists here: ``cpu``, ``cuda``, ``cuda:N`` (N below the GPU count), ``mps``."""
    import torch

    try:
        parsed = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected a device such as cpu, cuda or cuda:1, got {text!r}") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise argparse.ArgumentTypeError(f"{text!r} was asked for but this machine has no usable CUDA GPU "
                                             "(torch.cuda.is_available() is False); use --device cpu")
        if parsed.index is not None and parsed.index >= count:
            raise argparse.ArgumentTypeError(f"{text!r} was asked for but only {count} GPU(s) are visible")
    elif parsed.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise argparse.ArgumentTypeError(f"{text!r} was asked for but MPS is not available here")
    elif parsed.type not in ("cpu", "cuda", "mps"):
        raise argparse.ArgumentTypeError(f"unsupported device {text!r}; use cpu, cuda or cuda:N")
    return text


def check_settings(settings: object, rules: dict[str, tuple[float | None, float | None]]) -> None:
    """Range-check a settings dataclass built from Python (the CLI checks while parsing):
    ``rules`` maps a field to inclusive ``(minimum, maximum)`` bounds; ``None`` values pass."""
    for name, (low, high) in rules.items():
        value = getattr(settings, name)
        if value is None:
            continue
        if not is_finite_number(value):
            raise InvalidInput(f"{type(settings).__name__}.{name} must be a finite number, got {value!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            raise InvalidInput(f"{type(settings).__name__}.{name} must lie in {_bounds(low, high)}, got {value!r}")


def checked_level_range(value: Sequence[float] | None, default: tuple[float, float]) -> tuple[float, float]:
    """``--severity-range LOW HIGH`` of ``eval`` and ``tune``: the task levels t to draw from,
    ``default`` (the task's evaluation range) when ``None``; ``0 <= low <= high <= 1`` or ``ValueError``."""
    if value is None:
        return default
    lo, hi = (float(v) for v in value)
    if not 0.0 <= lo <= hi <= 1.0:
        raise InvalidInput(f"--severity-range must satisfy 0 <= low <= high <= 1, got {(lo, hi)}")
    return lo, hi


def add_level_range(parser: argparse.ArgumentParser) -> None:
    """The ``--severity-range LOW HIGH`` option (see :func:`checked_level_range`)."""
    parser.add_argument("--severity-range", type=number(0.0, 1.0), nargs=2, metavar=("LOW", "HIGH"),
                        help="task levels t to draw from (default: the task's evaluation range)")
