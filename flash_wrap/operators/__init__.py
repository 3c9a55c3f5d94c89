"""Forward operators ``A`` with per-sample parameters and Gaussian measurement noise, and the
:class:`Task` type that draws them (ALGORITHMS.md §1, §6); the tasks themselves are plugins
(:func:`flash_wrap.registry.get_task`); :func:`join_operators` joins one-sample
operators into one batch."""

from ._filters import REFERENCE_SIZE
from .base import DEFAULT_NOISE_STD, Operator
from .gaussian_blur import GaussianBlur
from .inpainting import RandomInpainting
from .joined import JoinedOperator, join_operators
from .motion_blur import NonlinearMotionBlur
from .super_resolution import SuperResolution
from .tasks import SEED_BOUND, Task

__all__ = [
    "DEFAULT_NOISE_STD",
    "GaussianBlur",
    "JoinedOperator",
    "NonlinearMotionBlur",
    "Operator",
    "RandomInpainting",
    "SuperResolution",
    "REFERENCE_SIZE",
    "SEED_BOUND",
    "Task",
    "join_operators",
]
