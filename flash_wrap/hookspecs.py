"""The pluggy contract between flash-wrap and its plugins (built-in or third-party).

A plugin is a module (or object) listed in the ``flash_wrap`` entry-point group that implements
any of these hooks with ``@flash_wrap.hookimpl``::

    from flash_wrap import hookimpl

    @hookimpl
    def flash_wrap_register_solvers(register):
        register(MySolver)          # a flash_wrap.Solver subclass with a unique ``name``

    @hookimpl
    def flash_wrap_register_tasks(register):
        register(my_task)           # a flash_wrap.operators.Task with a unique ``name``

Every name a plugin registers (solver or task) must also be the name of one of its distribution's
entry points in the ``flash_wrap`` group (several entry points may name the same module, which is
loaded once): commands check a name against that metadata before torch loads. Discovery warns
about a registered name that no entry point declares.

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

    from .operators import Task
    from .state import StepState

PROJECT = "flash_wrap"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def flash_wrap_register_solvers(register: Callable[[type], None]) -> None:
    """Register solver classes by calling ``register(SolverClass)`` once per solver."""


@hookspec
def flash_wrap_register_tasks(register: Callable[[Task], None]) -> None:
    """Register tasks by calling ``register(task)`` once per :class:`~flash_wrap.operators.Task`.

    A task is a degradation family: its operator factory (per-sample levels t ∈ [0, 1] ``(B,)``
    → an operator with batch ``B``), its level ranges for training and evaluation, the demo's
    levels and how its physical severity reads. Its name is what ``--task`` accepts, what a
    bundle's severity encoders and tuned values are keyed by, and what solvers' ``defaults``
    are keyed by.

    Hyper-parameters for a task a solver lists no defaults for: the solver's ``fallback``
    (every solver declares one, with the noise-correction constant ``c``), unless a bundle
    carries values tuned for that solver, task and grid, or the call overrides them. A task
    carries no solver's hyper-parameters: ``flash-wrap tune --task NAME`` finds them for a
    model.
    """


@hookspec
def flash_wrap_on_step(state: StepState, output: torch.Tensor) -> None:
    """Observe one reverse step after the solver's update (progress, logging, trajectories).

    ``state`` holds the stepped rows only, with ``state.z`` the step's input latents;
    ``output`` ``(b, C, h, w)`` holds the latents the step produced. Observers must not modify
    either. An implementation may take ``state`` alone (pluggy passes the arguments it names).
    """
