"""Tests for flash_wrap.models: adapters, denoiser, bundle, persistence, TAEF2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel

from flash_wrap.models import (
    TAEF2,
    Autoencoder,
    Denoiser,
    LatentDiffusion,
    TAEF2Autoencoder,
    autoencoder_from_diffusers,
    convert_taef2,
    ldm_scheduler,
)
from flash_wrap.severity.encoder import SeverityEncoder
from flash_wrap.testing import tiny_model

KINDS = ["vq", "kl", "tiny", "taef2"]
SHARED = Path(__file__).resolve().parents[2] / "shared"
TAEF2_DIR = SHARED / "data/weights/taef2"
FACES_DIR = SHARED / "data/faces_dev"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy shared CPU the thread
    barriers make them ~10x slower; the previous setting is restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def images(batch: int = 2, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def outputs(model: LatentDiffusion, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    z = model.encode(x)
    return z, model.decode(z), model.predict_noise(z, torch.tensor([3, 700]))


def rescaled(model: LatentDiffusion, scale: float, shift: float) -> LatentDiffusion:
    parts = (model.autoencoder, model.denoiser, model.scheduler)
    return LatentDiffusion(*parts, image_size=model.image_size, latent_scale=scale, latent_shift=shift)


# -- schedule ------------------------------------------------------------------------------
def test_ldm_schedule_matches_reference_values() -> None:
    acp = ldm_scheduler().alphas_cumprod.double()
    inv_snr = (1 - acp) / acp
    expected = {10: 0.0171, 50: 0.0909, 100: 0.2149, 130: 0.3112, 200: 0.627, 300: 1.456, 500: 7.70}
    for t, value in expected.items():
        assert float(inv_snr[t]) == pytest.approx(value, rel=2e-3)
    assert float(acp[0]) == pytest.approx(0.9985, abs=1e-6)
    assert float(acp[999]) == pytest.approx(1.42e-4, rel=1e-2)


def test_bundle_schedule_buffers() -> None:
    model = tiny_model()
    assert model.num_train_timesteps == 1000
    assert model.alphas_cumprod.dtype == torch.float32 and model.alphas_cumprod.shape == (1000,)
    torch.testing.assert_close(model.alphas_cumprod, model.scheduler.alphas_cumprod, rtol=1e-5, atol=0)
    torch.testing.assert_close(model.betas, model.scheduler.betas)
    # casting the networks leaves the schedule in float32
    model.to(torch.float64)
    assert model.dtype == torch.float64 and model.alphas_cumprod.dtype == torch.float32
    torch.testing.assert_close(model.alphas_cumprod, model.scheduler.alphas_cumprod, rtol=1e-5, atol=0)


# -- tiny bundles ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_tiny_model_shapes_and_determinism(kind: str) -> None:
    rng_state = torch.get_rng_state()
    model = tiny_model(kind, seed=3)
    assert torch.equal(torch.get_rng_state(), rng_state), "tiny_model must not touch the global RNG"
    assert model.autoencoder.kind == kind and model.image_size == 32
    channels = 3 if kind == "vq" else 4
    assert model.latent_shape == (channels, 8, 8) and model.latent_channels == channels
    assert sum(p.numel() for p in model.parameters()) < 120_000
    assert not any(p.requires_grad for p in model.parameters()) and not model.training
    z, x_hat, eps = outputs(model, images())
    assert z.shape == eps.shape == (2, *model.latent_shape) and x_hat.shape == (2, 3, 32, 32)
    for a, b in zip(outputs(tiny_model(kind, seed=3), images()), (z, x_hat, eps)):
        assert torch.equal(a, b)
    other = tiny_model(kind, seed=4)
    assert not torch.equal(other.predict_noise(z, torch.tensor([3, 700])), eps)


@pytest.mark.parametrize("kind", KINDS)
def test_results_do_not_depend_on_batch(kind: str) -> None:
    model = tiny_model(kind)
    x = images(3)
    z = model.encode(x)
    torch.testing.assert_close(model.encode(x[1:2]), z[1:2], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model.decode(z[2:]), model.decode(z)[2:], rtol=1e-5, atol=1e-5)


# -- save / load -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,cross_attention", [(k, False) for k in KINDS] + [("vq", True), ("taef2", True)])
def test_round_trip(tmp_path: Path, kind: str, cross_attention: bool) -> None:
    model = rescaled(tiny_model(kind, cross_attention=cross_attention), 0.7, 0.1)
    model.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["autoencoder"] == kind and index["severity_tasks"] == []
    assert index["denoiser"] == ("unet2d-condition" if cross_attention else "unet2d")
    assert not list(tmp_path.rglob("*.bin")) and not list(tmp_path.rglob("*.pt*"))
    loaded = LatentDiffusion.from_pretrained(tmp_path)
    assert (loaded.latent_scale, loaded.latent_shift) == (0.7, 0.1)
    assert type(Autoencoder.from_pretrained(tmp_path / "autoencoder")) is type(model.autoencoder)
    assert type(loaded.autoencoder).from_pretrained(tmp_path / "autoencoder").kind == kind
    for a, b in zip(outputs(model, images()), outputs(loaded, images())):
        assert torch.equal(a, b)
    if cross_attention:
        assert loaded.denoiser.empty_conditioning.shape == (1, 2, 8)
        assert torch.equal(loaded.denoiser.empty_conditioning, model.denoiser.empty_conditioning)


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_with_severity_encoders(tmp_path: Path, kind: str) -> None:
    model = tiny_model(kind)
    for i, task in enumerate(["gaussian-blur", "random-inpainting"]):
        encoder = model.make_severity_encoder()
        with torch.no_grad():
            encoder.variance_head.bias.fill_(0.1 * (i + 1))
        model.add_severity_encoder(task, encoder, metadata={"steps": 10 * i})
    model.save_pretrained(tmp_path)
    loaded = LatentDiffusion.from_pretrained(tmp_path)
    assert sorted(loaded.severity_encoders) == ["gaussian-blur", "random-inpainting"]
    assert loaded.severity_metadata["random-inpainting"] == {"steps": 10}
    y = images()
    for task in loaded.severity_encoders:
        for a, b in zip(model.severity_encoder(task)(y), loaded.severity_encoder(task)(y)):
            assert torch.equal(a, b)


def test_tuned_sections_round_trip_at_the_lowest_format_that_holds_them(tmp_path: Path) -> None:
    """Without flash_defaults a bundle is written at format 1 (earlier readers read it exactly);
    with them at format 2, which an earlier reader refuses instead of running Flash with other
    step sizes. The table the bundle carries survives save_pretrained, save_tuned_values and a reload."""
    model = tiny_model("taef2")
    model.tuned_values = {"solver_defaults": {"latent-dps": {"gaussian-blur": {"eta": 0.4, "c": 0.1}}},
                          "baseline_defaults": {"latent-dps": {"gaussian-blur": {"ddpm-1000": {"eta": 0.1}}}}}
    model.save_pretrained(tmp_path / "one")
    assert json.loads((tmp_path / "one" / "model_index.json").read_text())["format_version"] == 1
    model.tuned_values["flash_defaults"] = {"latent-dps": {"gaussian-blur": {"ddim-100 (η=0)": {"eta": 0.3}}}}
    model.save_tuned_values(tmp_path / "one")  # the tuned values alone, into the existing folder
    model.save_pretrained(tmp_path / "two")
    for folder in ("one", "two"):
        assert json.loads((tmp_path / folder / "model_index.json").read_text())["format_version"] == 2
        loaded = LatentDiffusion.from_pretrained(tmp_path / folder)
        assert loaded.tuned_values == model.tuned_values
        assert loaded.tuned_source == str(tmp_path / folder / "model_index.json")
    model.tuned_values["severity_defaults"] = {}
    with pytest.raises(ValueError, match="tuned values must be an object with entries among"):
        model.save_pretrained(tmp_path / "three")


def test_save_severity_encoder_into_existing_folder(tmp_path: Path) -> None:
    model = tiny_model("kl")
    model.save_pretrained(tmp_path)
    model.add_severity_encoder("gaussian-blur", model.make_severity_encoder())
    model.save_severity_encoder(tmp_path, "gaussian-blur", metadata={"val_loss": 0.5})
    config = json.loads((tmp_path / "severity_encoders/gaussian-blur/config.json").read_text())
    assert config == {"task": "gaussian-blur", "latent_channels": 4, "metadata": {"val_loss": 0.5}}
    loaded = LatentDiffusion.from_pretrained(tmp_path)
    assert list(loaded.severity_encoders) == ["gaussian-blur"]
    assert loaded.severity_metadata["gaussian-blur"] == {"val_loss": 0.5}
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        model.save_severity_encoder(tmp_path / "elsewhere", "gaussian-blur")


def test_from_pretrained_device_and_dtype(tmp_path: Path) -> None:
    tiny_model("taef2").save_pretrained(tmp_path)
    assert LatentDiffusion.from_pretrained(tmp_path, device="cpu").dtype == torch.float32
    model = LatentDiffusion.from_pretrained(tmp_path, device="cpu", dtype=torch.float64)
    assert model.dtype == torch.float64 and model.device == torch.device("cpu")
    assert model.alphas_cumprod.dtype == torch.float32
    assert model.encode(images().double()).dtype == torch.float64


# -- encoders ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_make_encoder_is_an_independent_copy(kind: str) -> None:
    ae = tiny_model(kind).autoencoder
    x = images()
    before = ae.encode(x)
    encoder = ae.make_encoder()
    assert torch.equal(encoder(x), before)
    assert not any("decoder" in name or "post_quant" in name for name, _ in encoder.named_parameters())
    assert all(p.requires_grad for p in encoder.parameters())
    ae_storage = {p.data_ptr() for p in ae.parameters()}
    assert not ae_storage & {p.data_ptr() for p in encoder.parameters()}
    with torch.no_grad():
        for p in encoder.parameters():
            p.add_(0.5)
    assert torch.equal(ae.encode(x), before)
    assert not torch.equal(encoder(x), before)


@pytest.mark.parametrize("kind", KINDS)
def test_severity_backbone_matches_encode(kind: str) -> None:
    model = rescaled(tiny_model(kind), 0.5, 0.2)
    x = images()
    z = model.encode(x)
    torch.testing.assert_close(z, (model.autoencoder.encode(x) - 0.2) * 0.5)
    severity = model.make_severity_encoder()
    assert isinstance(severity, SeverityEncoder)
    z_hat, v = severity(x)
    assert torch.equal(z_hat, z) and v.shape == (2,) and bool((v >= 0).all())
    assert not {p.data_ptr() for p in model.parameters()} & {p.data_ptr() for p in severity.parameters()}


# -- value ranges ---------------------------------------------------------------------------------
def _capture_input(module: torch.nn.Module) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    module.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    return seen


@pytest.mark.parametrize("kind", ["vq", "kl", "tiny"])
def test_diffusers_autoencoders_work_in_signed_range(kind: str) -> None:
    ae = tiny_model(kind).autoencoder
    native = ae.model
    x = images()
    seen = _capture_input(native.encoder)
    z = ae.encode(x)
    torch.testing.assert_close(seen[0], x * 2 - 1)
    if kind == "vq":
        expected = native.encode(x * 2 - 1).latents
    elif kind == "kl":
        expected = native.encode(x * 2 - 1).latent_dist.mean
    else:
        expected = native.encode(x * 2 - 1).latents
    torch.testing.assert_close(z, expected)
    torch.testing.assert_close(ae.decode(z), (native.decode(z).sample + 1) / 2)


def test_taef2_works_in_unit_range() -> None:
    ae = tiny_model("taef2").autoencoder
    x = images()
    seen = _capture_input(ae.model.encoder)
    z = ae.encode(x)
    assert torch.equal(seen[0], x)
    assert torch.equal(ae.decode(z), ae.model.decoder(z))


@pytest.mark.parametrize("kind", KINDS)
def test_decode_is_differentiable(kind: str) -> None:
    model = tiny_model(kind)
    z = model.encode(images()).requires_grad_(True)
    model.decode(z).sum().backward()
    assert z.grad is not None and bool(torch.isfinite(z.grad).all()) and float(z.grad.abs().sum()) > 0


def test_vq_decode_quantizes_with_straight_through_gradient() -> None:
    ae = tiny_model("vq").autoencoder
    h = ae.encode(images())
    codes = ae.model.quantize(h)[0]
    torch.testing.assert_close(ae.decode(h), ae.decode(codes))  # decoding snaps to the codebook
    h = h.clone().requires_grad_(True)
    ae.decode(h).square().sum().backward()
    assert h.grad is not None and float(h.grad.abs().sum()) > 0


# -- construction errors -----------------------------------------------------------------------
def test_inconsistent_construction_is_rejected() -> None:
    vq, kl = tiny_model("vq"), tiny_model("kl")
    with pytest.raises(ValueError, match="denoiser takes 4 channels.*latents have 3"):
        LatentDiffusion(vq.autoencoder, kl.denoiser, vq.scheduler, image_size=32)
    with pytest.raises(ValueError, match="downsampling factor 4, got 30"):
        LatentDiffusion(vq.autoencoder, vq.denoiser, vq.scheduler, image_size=30)
    flow = DDPMScheduler.from_config(vq.scheduler.config, prediction_type="flow")
    with pytest.raises(ValueError, match="epsilon, v_prediction, sample, got 'flow'"):
        LatentDiffusion(vq.autoencoder, vq.denoiser, flow, image_size=32)
    with pytest.raises(ValueError, match="latent_scale must be > 0"):
        LatentDiffusion(vq.autoencoder, vq.denoiser, vq.scheduler, image_size=32, latent_scale=0.0)
    with pytest.raises(TypeError, match="VQModel, AutoencoderKL, AutoencoderTiny"):
        autoencoder_from_diffusers(tiny_model("vq").denoiser.unet)
    with pytest.raises(ValueError, match="unknown autoencoder kind 'vae'"):
        tiny_model("vae")


# -- input errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad,message",
    [
        (torch.rand(2, 3, 64, 64), "must be 32x32 pixels, got 64x64"),
        (torch.rand(2, 1, 32, 32), "must have 3 channels"),
        (torch.full((2, 3, 32, 32), float("nan")), "NaN or Inf"),
        (torch.rand(2, 3, 32, 32) * 255, "0-255"),
        (torch.randint(0, 255, (2, 3, 32, 32)), "floating-point"),
    ],
)
def test_bad_images_are_rejected(bad: torch.Tensor, message: str) -> None:
    model = tiny_model("vq")
    with pytest.raises((ValueError, TypeError), match=message):
        model.encode(bad)


def test_bad_latents_and_timesteps_are_rejected() -> None:
    model = tiny_model("vq")
    z = torch.randn(2, 3, 8, 8)
    with pytest.raises(ValueError, match=r"shape \(B, 3, 8, 8\), got \(2, 4, 8, 8\)"):
        model.decode(torch.randn(2, 4, 8, 8))
    with pytest.raises(ValueError, match=r"shape \(B, 3, 8, 8\), got \(3, 8, 8\)"):
        model.predict_noise(torch.randn(3, 8, 8), torch.tensor([1]))
    with pytest.raises(ValueError, match="NaN"):
        model.decode(z * float("nan"))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        model.predict_noise(z, torch.tensor([1, 2, 3]))
    with pytest.raises(TypeError, match="integer tensor"):
        model.predict_noise(z, torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"\[0, 1000\)"):
        model.predict_noise(z, torch.tensor([0, 1000]))
    torch.testing.assert_close(model.predict_noise(z, torch.tensor(7)), model.predict_noise(z, torch.tensor([7, 7])))


def test_inputs_on_another_device_are_rejected() -> None:
    model = tiny_model("vq").to("meta")
    assert model.alphas_cumprod.device.type == "meta"
    with pytest.raises(ValueError, match="images is on cpu but the model is on meta"):
        model.encode(images())
    with pytest.raises(ValueError, match="latents is on cpu but the model is on meta"):
        model.decode(torch.randn(2, 3, 8, 8))


def test_missing_severity_encoder_says_how_to_train_one() -> None:
    model = tiny_model("vq")
    model.add_severity_encoder("random-inpainting", model.make_severity_encoder())
    with pytest.raises(ValueError) as err:
        model.severity_encoder("gaussian-blur")
    message = str(err.value)
    assert "no severity encoder for task 'gaussian-blur'" in message and "(has: random-inpainting)" in message
    assert "flash-wrap train-severity --model MODEL --task gaussian-blur --data IMAGE_DIR" in message
    assert "flash-wrap import-encoder" in message
    with pytest.raises(ValueError, match="no dots or slashes"):
        model.add_severity_encoder("../evil", model.make_severity_encoder())
    with pytest.raises(ValueError, match="4 latent channels, this model's latents have 3"):
        model.add_severity_encoder("x", tiny_model("kl").make_severity_encoder())


# -- folder errors ---------------------------------------------------------------------------------
def test_missing_folders_are_reported(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        LatentDiffusion.from_pretrained(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no model_index.json"):
        LatentDiffusion.from_pretrained(tmp_path)
    if not (Path(__file__).resolve().parents[1] / "flash_wrap/assets/demo/model_index.json").exists():
        with pytest.raises(FileNotFoundError, match="demo bundle is not installed"):
            LatentDiffusion.from_pretrained("demo")


@pytest.mark.parametrize(
    "kind,file",
    [
        ("vq", "unet/diffusion_pytorch_model.safetensors"),
        ("kl", "autoencoder/diffusion_pytorch_model.safetensors"),
        ("taef2", "autoencoder/model.safetensors"),
        ("tiny", "severity_encoders/gaussian-blur/model.safetensors"),
    ],
)
@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_safetensors_named(tmp_path: Path, kind: str, file: str, damage: str) -> None:
    model = tiny_model(kind)
    model.add_severity_encoder("gaussian-blur", model.make_severity_encoder())
    model.save_pretrained(tmp_path)
    target = tmp_path / file
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x07garbage" * 40)
    with pytest.raises(ValueError, match=f"corrupt safetensors file .*{Path(file).name}"):
        LatentDiffusion.from_pretrained(tmp_path)


def test_mismatched_severity_encoder_is_named(tmp_path: Path) -> None:
    model = tiny_model("vq")
    model.add_severity_encoder("gaussian-blur", model.make_severity_encoder())
    model.save_pretrained(tmp_path)
    other = tiny_model("kl")
    other.add_severity_encoder("gaussian-blur", other.make_severity_encoder())
    other.save_pretrained(tmp_path / "other")
    target = "severity_encoders/gaussian-blur/model.safetensors"
    (tmp_path / target).write_bytes((tmp_path / "other" / target).read_bytes())
    first_key = r"tensor 'backbone\.encoder\.encoder\.conv_out\.weight'"
    with pytest.raises(ValueError, match=rf"task 'gaussian-blur'.*{first_key}"):
        LatentDiffusion.from_pretrained(tmp_path)


# -- TAEF2 ------------------------------------------------------------------------------------------
def test_taef2_layout_and_strict_conversion(tmp_path: Path) -> None:
    model = TAEF2()
    enc, dec = model.encoder.state_dict(), model.decoder.state_dict()
    assert len(enc) == len(dec) == 79
    assert sum(v.numel() for v in enc.values()) == 1_338_528
    assert sum(v.numel() for v in dec.values()) == 1_338_499
    assert enc["11.pool.0.weight"].shape == (256, 64, 1, 1) and dec["5.pool.3.weight"].shape == (64, 256, 1, 1)
    assert enc["14.weight"].shape == (32, 64, 3, 3) and dec["19.bias"].shape == (3,) and "2.bias" not in enc
    torch.save({k: v.half() for k, v in enc.items()}, tmp_path / "enc.pth")
    torch.save({**{k: v.half() for k, v in dec.items()}, "20.weight": torch.zeros(1)}, tmp_path / "dec.pth")
    with pytest.raises(ValueError, match="unexpected tensor '20.weight'"):
        convert_taef2(tmp_path / "enc.pth", tmp_path / "dec.pth")


def _load_face(file: Path) -> torch.Tensor:
    from PIL import Image

    array = np.array(Image.open(file).convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(array).permute(2, 0, 1)


@pytest.mark.skipif(not (TAEF2_DIR / "taef2_encoder.pth").exists(), reason="TAEF2 weights not available")
def test_taef2_real_weights_reconstruct_faces() -> None:
    model = convert_taef2(TAEF2_DIR / "taef2_encoder.pth", TAEF2_DIR / "taef2_decoder.pth")
    assert next(model.parameters()).dtype == torch.float32
    x = torch.stack([_load_face(FACES_DIR / f"0000{i}.png") for i in range(2)])
    assert x.shape == (2, 3, 256, 256)
    ae: Autoencoder = TAEF2Autoencoder(model)
    with torch.no_grad():
        z = ae.encode(x)
        x_hat = ae.decode(z)
    assert z.shape == (2, 32, 32, 32)
    assert 0.7 < float(z.std()) < 1.1
    psnr = -10 * torch.log10((x_hat.clamp(0, 1) - x).square().flatten(1).mean(1))
    assert bool((psnr > 30).all()), psnr


def test_denoiser_rejects_bad_unets() -> None:
    with pytest.raises(ValueError, match="takes 3 channels and predicts 6"):
        blocks = {"down_block_types": ("DownBlock2D",) * 2, "up_block_types": ("UpBlock2D",) * 2}
        Denoiser(UNet2DModel(in_channels=3, out_channels=6, block_out_channels=(8, 8), norm_num_groups=4, **blocks))
    with pytest.raises(TypeError, match="UNet2DModel or UNet2DConditionModel"):
        Denoiser(torch.nn.Conv2d(3, 3, 1))  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["vq", "taef2"])
def test_half_precision_bundle_loads_as_float32(tmp_path, kind):
    model = tiny_model(kind, image_size=32)
    model.add_severity_encoder("gaussian-blur", model.make_severity_encoder())
    model.half().save_pretrained(tmp_path / "half")
    loaded = LatentDiffusion.from_pretrained(tmp_path / "half")
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    reference = model.float()
    for name, tensor in loaded.state_dict().items():
        torch.testing.assert_close(tensor, reference.state_dict()[name])


def test_a_saved_bundle_does_not_record_where_its_parts_were_loaded_from(tmp_path):
    """diffusers writes ``_name_or_path`` (the source folder) into the configs of a loaded part; a
    bundle saved again must not carry the writer's paths."""
    from flash_wrap.testing import tiny_model

    tiny_model("vq", image_size=16, seed=0).save_pretrained(tmp_path / "first")
    LatentDiffusion.from_pretrained(tmp_path / "first").save_pretrained(tmp_path / "second")
    texts = [f.read_text() for f in (tmp_path / "second").rglob("*.json")]
    assert texts and not any("_name_or_path" in t or str(tmp_path) in t for t in texts)
