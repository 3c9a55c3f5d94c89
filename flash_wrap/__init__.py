"""flash-wrap: sample-adaptive latent-diffusion inverse solvers (Flash-Diffusion as a wrapper).

    >>> model = LatentDiffusion.from_pretrained("path/to/bundle")
    >>> out = Flash(LatentDPS(model)).reconstruct(y, operator, generator=torch.Generator().manual_seed(0))

Solvers are pluggy plugins (entry-point group ``flash_wrap``); see :mod:`flash_wrap.hookspecs`.
"""

from importlib.metadata import PackageNotFoundError, version

from .flash import Flash
from .hookspecs import hookimpl
from .models import LatentDiffusion
from .result import Reconstruction
from .solver import Solver
from .solvers import get_solver
from .step import StepState

try:
    __version__ = version("flash-wrap")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = ["Flash", "LatentDiffusion", "Reconstruction", "Solver", "StepState", "get_solver", "hookimpl", "__version__"]
