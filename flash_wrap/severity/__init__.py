"""Severity encoding: the encoder module, its loss and its training step (ALGORITHMS.md §2)."""

from .encoder import SeverityEncoder

__all__ = ["SeverityEncoder"]
