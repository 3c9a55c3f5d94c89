"""Perceptual image metrics in plain torch, without torchvision and without downloads.

LPIPS (Zhang et al. 2018) on AlexNet (weights shipped) or VGG16 (weights from a user's file).
FID (Heusel et al. 2017) and KID (Bińkowski et al. 2018) between feature sets, and the FID variant
of InceptionV3 (Szegedy et al. 2016) that makes them from images (weights from a user's file).
"""

from .fid import FIDResult, KIDResult, frechet_distance, kernel_inception_distance
from .inception import FIDInception, load_fid_inception
from .lpips import BACKBONES, LPIPSNetwork, load_lpips
from .weights import inception_weights_path, lpips_weights_path

__all__ = ["BACKBONES", "FIDInception", "FIDResult", "KIDResult", "LPIPSNetwork", "frechet_distance",
           "inception_weights_path", "kernel_inception_distance", "load_fid_inception", "load_lpips", "lpips_weights_path"]
