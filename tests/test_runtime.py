"""GPU-path options of the model bundle: autocast, gradient checkpointing, diffusers folders."""

from __future__ import annotations

import pytest
import torch
from diffusers import UNet2DModel, VQModel

from flash_wrap import Flash, LatentDiffusion
from flash_wrap.operators import GaussianBlur
from flash_wrap.testing import ProgrammedSeverity, smooth_images, tiny_model
from flash_wrap_plugins.latent_dps import LatentDPS


def _value_and_grad(model: LatentDiffusion) -> tuple[torch.Tensor, torch.Tensor]:
    z = torch.randn(2, *model.latent_shape, generator=torch.Generator().manual_seed(0), requires_grad=True)
    x = model.decode(model.predict_noise(z, torch.tensor([10, 500])))
    (grad,) = torch.autograd.grad(x.square().sum(), z)
    return x.detach(), grad


def _checkpointed_modules(model: LatentDiffusion) -> int:
    return sum(1 for m in model.modules() if getattr(m, "gradient_checkpointing", False) is True)


@pytest.mark.parametrize("kind", ["vq", "kl", "tiny", "taef2"])
def test_gradient_checkpointing_changes_memory_not_results(kind):
    model = tiny_model(kind, image_size=32)
    plain = _value_and_grad(model)
    assert _checkpointed_modules(model) == 0
    model.set_runtime(gradient_checkpointing=True)
    assert _checkpointed_modules(model) >= 2  # the UNet's blocks and the decoder
    for a, b in zip(plain, _value_and_grad(model)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    model.set_runtime(gradient_checkpointing=False)
    assert _checkpointed_modules(model) == 0


@pytest.mark.parametrize("kind", ["vq", "kl", "tiny", "taef2"])
def test_channels_last_changes_layout_not_results(kind):
    model = tiny_model(kind, image_size=32)
    plain = _value_and_grad(model)
    model.set_runtime(channels_last=True)
    convs = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    x, grad = _value_and_grad(model)
    assert x.is_contiguous()  # callers still get outputs in the standard layout
    for a, b in zip(plain, (x, grad)):  # equal up to float rounding (other kernels, other summation order)
        assert (a - b).abs().max() <= 1e-4 * a.abs().max()
    model.set_runtime()  # every option back to its default, the layout included
    assert all(w.is_contiguous() for w in convs if w.shape[-1] > 1)


def test_bf16_autocast_stays_close_and_keeps_float32_outputs():
    model = tiny_model("taef2", image_size=32)
    x32, g32 = _value_and_grad(model)
    model.set_runtime(autocast="bf16")
    assert model.autocast_dtype == torch.bfloat16
    x16, g16 = _value_and_grad(model)
    assert x16.dtype == torch.float32 and g16.dtype == torch.float32
    assert not torch.equal(x16, x32)  # autocast really ran
    assert (x16 - x32).abs().max() < 0.05 * x32.abs().max()
    model.set_runtime(autocast="fp32")
    torch.testing.assert_close(_value_and_grad(model)[0], x32)
    with pytest.raises(ValueError, match="autocast"):
        model.set_runtime(autocast="int8")


def test_flash_runs_with_checkpointing_and_autocast():
    model = tiny_model("vq", image_size=32)
    model.add_severity_encoder("gaussian-blur", ProgrammedSeverity(model))
    op = GaussianBlur(torch.tensor([0.5, 2.0]))
    y = op.measure(smooth_images(2, brightness=[0.01, 0.05], seed=1), generator=torch.Generator().manual_seed(0))
    run = lambda: Flash(LatentDPS(model)).reconstruct(y, op, generator=torch.Generator().manual_seed(0))  # noqa: E731
    base = run()
    model.set_runtime(gradient_checkpointing=True, autocast="bf16")
    fast = run()
    assert fast.nfe.tolist() == base.nfe.tolist()
    assert (fast.images - base.images).abs().mean() < 0.05


def test_from_diffusers_folders(tmp_path):
    common = dict(block_out_channels=(8, 8, 16), latent_channels=3, norm_num_groups=4)
    VQModel(**common, down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
            num_vq_embeddings=64).save_pretrained(tmp_path / "vq")
    UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
                norm_num_groups=4, down_block_types=("DownBlock2D",) * 2,
                up_block_types=("UpBlock2D",) * 2).save_pretrained(tmp_path / "unet")
    model = LatentDiffusion.from_diffusers(tmp_path / "vq", tmp_path / "unet", image_size=32)
    assert model.latent_shape == (3, 8, 8) and not any(p.requires_grad for p in model.parameters())
    model.save_pretrained(tmp_path / "bundle")
    again = LatentDiffusion.from_pretrained(tmp_path / "bundle")
    z = torch.randn(1, 3, 8, 8)
    torch.testing.assert_close(again.decode(z), model.decode(z))
    with pytest.raises(FileNotFoundError, match="not a model folder"):
        LatentDiffusion.from_diffusers(tmp_path / "missing", tmp_path / "unet", image_size=32)
    (tmp_path / "pickled").mkdir()
    (tmp_path / "pickled" / "config.json").write_text('{"_class_name": "VQModel"}')
    (tmp_path / "pickled" / "diffusion_pytorch_model.bin").write_bytes(b"not safe")
    with pytest.raises(ValueError, match=r"pickled weights \(diffusion_pytorch_model.bin\).*never unpickles.*"
                                         "safe_serialization=True"):
        LatentDiffusion.from_diffusers(tmp_path / "pickled", tmp_path / "unet", image_size=32)
