"""Perceptual image metrics in plain torch, without torchvision and without downloads.

LPIPS (Zhang et al. 2018) on AlexNet (weights shipped) or VGG16 (weights from a user's file).
"""

from .lpips import BACKBONES, LPIPSNetwork, load_lpips
from .weights import lpips_weights_path

__all__ = ["BACKBONES", "LPIPSNetwork", "load_lpips", "lpips_weights_path"]
