"""Checks of a command's names, paths and output folder that need no torch, run before the
command imports anything heavy: a typo in ``--task`` is refused in a fraction of a second, not
after torch, diffusers and the model have loaded.

Solver and task names come from the entry-point metadata of the ``flash_wrap`` group (no plugin
module is imported): every name a plugin registers is also one of its entry-point names. These
checks only refuse what is certainly wrong; the full checks still run when the command loads.
"""

from __future__ import annotations

import difflib
from importlib.metadata import entry_points
from pathlib import Path

from ..discovery import ENTRY_POINT_GROUP
from ..errors import InvalidInput, NotFound, UnknownName


def entry_point_names() -> set[str]:
    """Names in the ``flash_wrap`` entry-point group of the installed distributions (read from
    their metadata, nothing imported)."""
    return {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _check_declared(name: str, kind: str) -> None:
    # the metadata names solvers and tasks alike: a name no entry point declares is certainly unknown
    names = entry_point_names()
    if names and name not in names:
        close = difflib.get_close_matches(name, sorted(names), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UnknownName(f"unknown {kind} {name!r}; {hint}the installed plugins declare {', '.join(sorted(names))} "
                          "(solvers and tasks: flash-wrap solvers lists which is which)")


def check_solver_name(name: str) -> None:
    """Refuse a solver name no installed plugin declares (skipped when no entry point is
    installed at all, e.g. a source tree run without ``pip install -e .``)."""
    _check_declared(name, "solver")


def check_task_name(name: str) -> None:
    """Refuse a task name no installed plugin declares (as :func:`check_solver_name`)."""
    _check_declared(name, "task")


def check_input_folder(path: str, option: str) -> None:
    """``option`` names an existing folder."""
    folder = Path(path).expanduser()
    if not folder.exists():
        raise NotFound(f"{option} {path} does not exist; give a folder of images")
    if not folder.is_dir():
        raise InvalidInput(f"{option} {path} is not a folder; give a folder of images")


def check_model_path(model: str) -> None:
    """``--model`` is ``demo``, a random full-size preset name, or an existing folder (a name with
    no path separator that is not a folder is left to the full check, which lists the choices)."""
    if model in ("demo", "demo-flow") or ("/" not in model and not Path(model).exists()):
        return
    if not Path(model).expanduser().exists():
        raise NotFound(f"--model {model} does not exist; give a model bundle folder, a diffusers pipeline folder "
                       "or 'demo' / 'demo-flow'")


def check_unused_results(out: str, records: str, *, resume: bool) -> None:
    """``--out`` holds no records of an earlier run, unless ``resume`` continues it."""
    file = Path(out).expanduser() / records
    if not resume and file.is_file() and file.stat().st_size > 0:
        raise InvalidInput(f"{file} exists: pass --resume to continue that run, or choose another --out")
