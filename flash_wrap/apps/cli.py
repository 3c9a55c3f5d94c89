"""The ``flash-wrap`` command line (also ``python -m flash_wrap``).

Each command lives in :mod:`flash_wrap.apps.commands` with its options next to its handler; this
module assembles them and is the one error boundary: a :class:`~flash_wrap.errors.FlashWrapError`,
or an ``OSError`` on a path the user gave, ends in one line and exit status 2; anything else is
a bug and keeps its traceback, with a line asking to report it (exit status 1).
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NoReturn

from ..errors import FlashWrapError
from .commands import COMMANDS
from .options import add_verbose

#: Where a file system refuses for a reason the user fixes, whatever the path.
ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


class OneLineParser(argparse.ArgumentParser):
    """argparse with one-line usage errors: ``flash-wrap <command>: error: <what> (see --help)``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command (no torch is imported to build it)."""
    parser = OneLineParser(prog="flash-wrap", description=__doc__.split("\n\n")[0])
    add_verbose(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        p = sub.add_parser(command.NAME, help=command.HELP, description=getattr(command, "DESCRIPTION", None))
        command.add_arguments(p)
        add_verbose(p)
        p.set_defaults(func=command.run, check=getattr(command, "check", None))
    return parser


def one_line(err: BaseException) -> str:
    """The error's message on one line (multi-line messages joined with "; ")."""
    text = str(err).strip() or type(err).__name__
    if isinstance(err, OSError) and err.filename and str(err.filename) not in text:
        text = f"{text} ({err.filename})"
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def _given_paths(args: argparse.Namespace) -> Iterator[Path]:
    """Every string option of the command, as a resolved path (most are not paths; harmless)."""
    for value in vars(args).values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and item:
                yield Path(item).expanduser().resolve()


def is_users_os_error(err: OSError, args: argparse.Namespace) -> bool:
    """An ``OSError`` on a path the user gave (or below one), or one the file system raises
    whatever the path (disk full, read-only): the user's to fix."""
    if err.errno in ENVIRONMENT_ERRNOS:
        return True
    names = [n for n in (err.filename, err.filename2) if n]
    for name in names:
        path = Path(os.fsdecode(name)).expanduser().resolve()
        if any(path == given or given in path.parents for given in _given_paths(args)):
            return True
    return False


def _quiet_closed_pipe() -> int:
    """stdout's reader went away (``flash-wrap compare ... | head -1``): end quietly, as a shell
    tool killed by SIGPIPE would, with no message and no traceback at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # the interpreter's last flush of stdout then succeeds
    os.close(devnull)
    return 128 + 13  # 128 + SIGPIPE


def _run(args: argparse.Namespace) -> int:
    if args.check is not None:
        args.check(args)  # names, paths and output folders, before torch loads
    status = args.func(args)
    sys.stdout.flush()  # a closed pipe is reported here, inside the boundary
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; user errors end in ``flash-wrap <command>: error: <what>`` and status 2
    (with the traceback only under ``-v``), a bug in status 1 with its traceback, an interrupt in
    status 130, a closed stdout pipe quietly in status 141."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help, or a usage error already printed on one line
        return int(done.code or 0)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return _run(args)
    except BrokenPipeError:
        return _quiet_closed_pipe()
    except (FlashWrapError, OSError) as err:
        if isinstance(err, FlashWrapError) or is_users_os_error(err, args):
            if args.verbose:
                traceback.print_exc(file=sys.stderr)
            print(f"flash-wrap {args.command}: error: {one_line(err)}", file=sys.stderr)
            return 2
        return _bug(args.command)
    except KeyboardInterrupt:
        print(f"flash-wrap {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception:
        return _bug(args.command)


def _bug(command: str) -> int:
    """Anything that is not the user's error is a bug in flash-wrap (or a library below it)."""
    traceback.print_exc(file=sys.stderr)
    print(f"flash-wrap {command}: internal error (a bug, not your input): please report it with the traceback above "
          "and the command you ran", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
