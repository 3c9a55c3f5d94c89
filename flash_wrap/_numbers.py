"""A check on plain numbers, free of torch so the CLI's argument parsing can use it cheaply."""

from __future__ import annotations

import math


def is_finite_number(value: object) -> bool:
    """A real number (int or float, not a bool) that is finite, also as a float: an ``int`` too
    large for a float (``10**400``) is not, rather than an ``OverflowError`` mid-check."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False
