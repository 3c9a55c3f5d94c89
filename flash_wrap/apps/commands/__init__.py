"""One module per ``flash-wrap`` command, each with its options next to its handler.

Every module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int`` (the
exit status), and may define ``check(args)``: checks that need no torch, run before ``run``
imports anything heavy. :mod:`flash_wrap.apps.cli` assembles them in the order of ``COMMANDS``.
"""

from __future__ import annotations

from . import (
    benchmark,
    compare,
    demo,
    evaluate,
    export,
    import_encoder,
    sample,
    severity_range,
    solvers,
    train_prior,
    train_severity,
    tune,
)

COMMANDS = (demo, evaluate, tune, benchmark, compare, solvers, train_severity, train_prior, export, import_encoder,
            severity_range, sample)
