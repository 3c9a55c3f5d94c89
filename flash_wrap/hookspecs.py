"""The pluggy contract between flash-wrap and its plugins (built-in or third-party).

A plugin is a module (or object) listed in the ``flash_wrap`` entry-point group that implements
any of these hooks with ``@flash_wrap.hookimpl``::

    from flash_wrap import hookimpl

    @hookimpl
    def flash_wrap_register_solvers(register):
        register(MySolver)          # a flash_wrap.Solver subclass with a unique ``name``

The math is not a broadcast: exactly one solver runs, through its ``step`` method (see
:class:`flash_wrap.solver.Solver`). Hooks are for discovery and for process-wide observers; an
observer for one call is the ``callback`` argument of ``reconstruct`` instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import torch

    from .state import StepState

PROJECT = "flash_wrap"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def flash_wrap_register_solvers(register: Callable[[type], None]) -> None:
    """Register solver classes by calling ``register(SolverClass)`` once per solver."""


@hookspec
def flash_wrap_on_step(state: StepState, output: torch.Tensor) -> None:
    """Observe one reverse step after the solver's update (progress, logging, trajectories).

    ``state`` holds the stepped rows only, with ``state.z`` the step's input latents;
    ``output`` ``(b, C, h, w)`` holds the latents the step produced. Observers must not modify
    either. An implementation may take ``state`` alone (pluggy passes the arguments it names).
    """
