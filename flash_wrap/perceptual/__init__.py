"""Perceptual image metrics in plain torch, without torchvision and without downloads.

LPIPS (Zhang et al. 2018) on AlexNet (weights shipped) or VGG16 (weights from a user's file).
FID (Heusel et al. 2017) and KID (Bińkowski et al. 2018) between feature sets.
"""

from .fid import FIDResult, KIDResult, frechet_distance, kernel_inception_distance
from .lpips import BACKBONES, LPIPSNetwork, load_lpips
from .weights import lpips_weights_path

__all__ = ["BACKBONES", "FIDResult", "KIDResult", "LPIPSNetwork", "frechet_distance", "kernel_inception_distance",
           "load_lpips", "lpips_weights_path"]
