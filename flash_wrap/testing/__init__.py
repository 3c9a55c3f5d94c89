"""Test helpers and the solver contract suite, public so third-party plugins run the same checks.

* :func:`tiny_model`: a tiny random :class:`~flash_wrap.LatentDiffusion` built in-process.
* :class:`ProgrammedSeverity`: a severity encoder whose variance the test chooses.
* :func:`smooth_images`: reproducible smooth images in [0, 1].
* :func:`make_state`: the :class:`~flash_wrap.StepState` of one step, for step-level tests;
  :func:`tweedie_residual`: how far a step's result is from the measurement;
  :func:`assert_step_reduces_residual`: a guided step moves towards the measurement.
* :class:`Darken`: a linear operator that belongs to no task.
* :class:`SolverContract` (:mod:`flash_wrap.testing.contract`): the invariants every solver
  keeps, as a pytest mixin. Imported on first use, since it needs pytest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..rng import generators
from .images import smooth_images, write_images
from .models import tiny_autoencoder, tiny_denoiser, tiny_model
from .operators import Darken
from .severity import ProgrammedSeverity
from .state import assert_step_reduces_residual, make_state, tweedie_residual

if TYPE_CHECKING:
    from .contract import SolverContract

__all__ = [
    "Darken",
    "ProgrammedSeverity",
    "assert_step_reduces_residual",
    "SolverContract",
    "generators",
    "make_state",
    "smooth_images",
    "tiny_autoencoder",
    "tiny_denoiser",
    "tiny_model",
    "tweedie_residual",
    "write_images",
]


def __getattr__(name: str) -> Any:
    if name == "SolverContract":
        import sys

        import pytest

        module = f"{__name__}.contract"
        if module not in sys.modules:
            # Before the first import, so a failing contract check shows pytest's detailed
            # assertion message (a no-op outside a pytest session).
            pytest.register_assert_rewrite(module)
        from .contract import SolverContract

        globals()[name] = SolverContract
        return SolverContract
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
