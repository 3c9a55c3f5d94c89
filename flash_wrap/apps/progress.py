"""How long-running commands show progress (``demo``, ``tune``, ``eval``)."""

from __future__ import annotations

import sys


def progress_mode(progress: bool | None) -> tuple[bool, bool]:
    """``(bars, lines)``: tqdm bars when stderr is a terminal, otherwise one line per stage, so a
    log file is not flooded; ``progress`` True forces bars, False is silent."""
    tty = sys.stderr.isatty()
    return (tty if progress is None else bool(progress)), (progress is None and not tty)


def plural(n: int, word: str, ending: str = "s") -> str:
    """``1 image``, ``2 images``; ``ending`` for other words (``plural(2, "batch", "es")``)."""
    return f"{n} {word}{'' if n == 1 else ending}"
