"""Options shared by the commands, and the one-release spellings they replaced (no torch here).

Defaults are stated once: an option left out is absent from the parsed namespace
(``argparse.SUPPRESS``), and :func:`given` passes only the options the user gave, so the
command's config dataclass (or function signature) supplies the rest.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from .arguments import device

#: what every command accepts after its name too (``flash-wrap eval ... -v``)
VERBOSE_HELP = "log progress details (and show the traceback of an error)"


def deprecated_note(old: str, new: str) -> None:
    """The one-line notice on stderr for an old spelling that still works for one release."""
    print(f"flash-wrap: warning: {old} is deprecated and will be removed in the next release; use {new}",
          file=sys.stderr)


class Renamed(argparse.Action):
    """Stores like ``store`` under every spelling; the old spellings (``old``) add a deprecation line."""

    def __init__(self, option_strings: Sequence[str], dest: str, *, old: Sequence[str] = (), **kwargs: Any) -> None:
        self.old = tuple(old)
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if option_string in self.old:
            deprecated_note(option_string, self.option_strings[0])
        setattr(namespace, self.dest, values)


class RenamedFlag(argparse.Action):
    """A flag that became an option with a value (``--cpu`` → ``--device cpu``): stores ``const``
    and prints the deprecation line naming ``new``."""

    def __init__(self, option_strings: Sequence[str], dest: str, *, new: str, **kwargs: Any) -> None:
        self.new = new
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        deprecated_note(str(option_string), self.new)
        setattr(namespace, self.dest, self.const)


def add_renamed(parser: argparse.ArgumentParser, new: str, *old: str, **kwargs: Any) -> None:
    """``new`` with the old spellings ``old`` still accepted (one release, with a deprecation line);
    the help names only ``new``."""
    parser.add_argument(new, *old, action=Renamed, old=old, **kwargs)


def add_verbose(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    """``-v/--verbose``: on the top parser with its default, on each command without one (so it
    does not reset a ``-v`` given before the command)."""
    default = False if top else argparse.SUPPRESS
    parser.add_argument("-v", "--verbose", action="store_true", default=default, help=VERBOSE_HELP)


def add_device(parser: argparse.ArgumentParser, help: str) -> None:
    """``--device`` (checked against this machine's devices when given; torch loads only then)."""
    parser.add_argument("--device", type=device, default=argparse.SUPPRESS, help=help)


def add_training_device(parser: argparse.ArgumentParser) -> None:
    """``--device cpu|cuda`` of the training commands (accelerate places the processes; ``--cpu``
    is the old spelling of ``--device cpu``)."""
    parser.add_argument("--device", choices=["cpu", "cuda"], default=argparse.SUPPRESS,
                        help="cpu: train on CPU even if a GPU is present (default: the GPU if there is one; "
                             "one per process under accelerate launch)")
    parser.add_argument("--cpu", dest="device", action=RenamedFlag, const="cpu", new="--device cpu",
                        default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def given(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    """The options among ``names`` that the user gave (absent ones take the callee's defaults)."""
    return {name: getattr(args, name) for name in names if hasattr(args, name)}


def run_options(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    """:func:`given`, with ``--severity-range`` as the config's tuple and ``--device cpu|cuda`` of
    the training commands as their ``cpu`` flag."""
    options = given(args, names)
    if getattr(args, "severity_range", None):
        options["severity_range"] = tuple(args.severity_range)
    if "device" not in names and hasattr(args, "device"):  # a training command's --device cpu|cuda
        options["cpu"] = args.device == "cpu"
    return options
