"""Images in and out (:mod:`flash_wrap.images`): what is saved loads back as it was."""

from __future__ import annotations

import torch

from flash_wrap.images import load_image, load_images, save_image, to_uint8
from flash_wrap.testing import smooth_images


def test_a_saved_image_loads_back_within_one_grey_level(tmp_path):
    x = smooth_images(2, 24, seed=3)
    for i in range(2):
        save_image(x[i], tmp_path / "nested" / f"{i}.png")
    back = load_images(tmp_path / "nested", 24)
    assert back.shape == (2, 3, 24, 24) and back.dtype == torch.float32
    assert float((back - x).abs().max()) <= 0.5 / 255 + 1e-6
    assert torch.equal(load_image(tmp_path / "nested" / "1.png", 24), back[1])


def test_to_uint8_rounds_and_orders_channels_last():
    x = torch.tensor([0.0, 0.5, 1.0]).view(1, 3, 1, 1)
    assert to_uint8(x).tolist() == [[[[0, 128, 255]]]]
