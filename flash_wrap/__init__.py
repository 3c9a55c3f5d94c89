"""flash-wrap: sample-adaptive latent-diffusion inverse solvers (Flash-Diffusion as a wrapper).

    >>> model = LatentDiffusion.from_pretrained("path/to/bundle")
    >>> LatentDPS = get_solver("latent-dps")
    >>> out = Flash(LatentDPS(model)).reconstruct(y, operator, generator=torch.Generator().manual_seed(0))

Solvers and tasks are pluggy plugins (entry-point group ``flash_wrap``); see :mod:`flash_wrap.hookspecs`.
Helpers beside the solvers are public modules: :mod:`flash_wrap.metrics` (PSNR, SSIM, ...),
:mod:`flash_wrap.images` (load and save images), :mod:`flash_wrap.figures` and
:mod:`flash_wrap.degradation` (``eval``'s reproducible per-image degradations).
The names below are imported on first use, so ``import flash_wrap`` (and ``flash-wrap --help``)
loads neither torch nor diffusers.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from .errors import ContractError, FlashWrapError, InvalidInput, NotFound, PluginFailure, UnknownName, WrongType
from .hookspecs import hookimpl

if TYPE_CHECKING:
    from .flash import Flash
    from .models import LatentDiffusion
    from .registry import get_solver, get_task
    from .result import Reconstruction
    from .solver import Solver
    from .state import StepState

try:
    __version__ = version("flash-wrap")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

#: public name -> module that defines it
_LAZY = {
    "Flash": "flash",
    "LatentDiffusion": "models",
    "Reconstruction": "result",
    "Solver": "solver",
    "StepState": "state",
    "get_solver": "registry",
    "get_task": "registry",
}

__all__ = [
    "ContractError", "Flash", "FlashWrapError", "InvalidInput", "LatentDiffusion", "NotFound", "PluginFailure",
    "Reconstruction", "Solver", "StepState", "UnknownName", "WrongType", "get_solver", "get_task", "hookimpl",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'flash_wrap' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
