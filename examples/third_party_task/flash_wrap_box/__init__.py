"""Centred box inpainting as a flash-wrap task plugin (an example of a third-party task)."""

from .operator import BoxInpainting
from .task import BOX_INPAINTING

__all__ = ["BOX_INPAINTING", "BoxInpainting"]
