"""Forward operators ``A`` with per-sample parameters and Gaussian measurement noise, and the
tasks that draw them (ALGORITHMS.md §1, §6)."""

from .base import DEFAULT_NOISE_STD, Operator
from .gaussian_blur import GaussianBlur
from .inpainting import RandomInpainting
from .motion_blur import NonlinearMotionBlur
from .super_resolution import SuperResolution
from .tasks import TASKS, Task, get_task, task_names

__all__ = [
    "DEFAULT_NOISE_STD",
    "GaussianBlur",
    "NonlinearMotionBlur",
    "Operator",
    "RandomInpainting",
    "SuperResolution",
    "TASKS",
    "Task",
    "get_task",
    "task_names",
]
