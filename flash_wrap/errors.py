"""The errors flash-wrap raises for its users: one base, :class:`FlashWrapError`.

Each subclass also subclasses the built-in type that case has always raised, so code written
against the built-in types (``except ValueError``, ``except FileNotFoundError``) keeps working.
The command line prints a :class:`FlashWrapError` as one line (exit status 2); any other
exception is a bug in flash-wrap and keeps its traceback.

This module imports nothing, so every layer may use it (and the command line can check its
input before torch loads).
"""

from __future__ import annotations


class FlashWrapError(Exception):
    """Base of every error that is the user's to fix (input, files, names, plugins); its
    message says what was expected, what came, and how to fix it."""


class InvalidInput(FlashWrapError, ValueError):
    """A value, file content or option combination is not usable (was ``ValueError``)."""


class WrongType(FlashWrapError, TypeError):
    """An argument of the wrong type (was ``TypeError``)."""


class NotFound(FlashWrapError, FileNotFoundError):
    """A file or folder the user named does not exist (was ``FileNotFoundError``)."""


class UnknownName(FlashWrapError, KeyError):
    """A name (solver, task, operator, grid, hyper-parameter) that nothing registers (a
    ``KeyError``, so also a ``LookupError``)."""

    def __str__(self) -> str:  # KeyError would quote the message like a dict key
        return str(self.args[0]) if self.args else ""


class PluginFailure(FlashWrapError, RuntimeError):
    """A plugin raised while it ran: names the plugin and the step, chained to the plugin's own
    exception (``__cause__``).

    Attributes:
        plugin: the plugin's registered name (e.g. ``"latent-dps"``).
        step: the grid index (0-based, counting down to 0) whose step failed, or ``None``.
    """

    def __init__(self, message: str, *, plugin: str, step: int | None = None) -> None:
        super().__init__(message)
        self.plugin = plugin
        self.step = step


class ContractError(PluginFailure):
    """A plugin broke the solver contract (e.g. its step made no denoiser call); fix the plugin."""
