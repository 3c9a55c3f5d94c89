"""``train-prior``: latent caching, unit-variance scaling, EMA, exact resume, bundle output."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from flash_wrap import LatentDiffusion
from flash_wrap.apps.cli import main
from flash_wrap.apps.training.prior import PriorTrainingConfig, encode_images, load_autoencoder, train_prior
from flash_wrap.models import TAEF2, TAEF2Autoencoder
from flash_wrap.testing import tiny_model, write_images


@pytest.fixture
def autoencoder_dir(tmp_path) -> Path:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        ae = TAEF2Autoencoder(TAEF2(latent_channels=4, channels=8, pool_channels=16, pool_groups=4, num_downsamples=2))
    ae.save_pretrained(tmp_path / "ae")
    return tmp_path / "ae"


@pytest.fixture
def faces(tmp_path) -> Path:
    return write_images(tmp_path / "faces", 12, 36, 32, seed=1)


def _config(out, faces, ae, steps, **kw):
    return PriorTrainingConfig(output=str(out), data=str(faces), autoencoder=str(ae), image_size=32, unet="tiny",
                               steps=steps, batch_size=4, checkpoint_every=2, warmup_steps=2, cpu=True, **kw)


def test_prior_training_writes_a_loadable_bundle(tmp_path, faces, autoencoder_dir):
    summary = train_prior(_config(tmp_path / "model", faces, autoencoder_dir, 4), progress=False)
    assert summary["latents"] == 24  # 12 images and their mirrors
    model = LatentDiffusion.from_pretrained(tmp_path / "model")
    assert model.image_size == 32 and model.latent_shape == (4, 8, 8)
    raw = encode_images(load_autoencoder(autoencoder_dir), sorted(faces.iterdir()), 32, mirror=True)
    assert model.latent_scale == pytest.approx(1 / float(raw.std()), rel=1e-5)
    # the bundle's UNet holds the EMA weights, not the last raw weights
    last = load_file(tmp_path / "model" / "training" / "checkpoints" / "checkpoint-4" / "model.safetensors")
    ema = load_file(tmp_path / "model" / "training" / "checkpoints" / "checkpoint-4" / "ema.safetensors")
    shipped = dict(model.denoiser.unet.named_parameters())
    names = [n for n, _ in model.denoiser.unet.named_parameters()]
    torch.testing.assert_close(shipped[names[0]], ema["0"])
    assert any(not torch.equal(shipped[n], last[n]) for n in names)


def test_prior_training_resumes_exactly(tmp_path, faces, autoencoder_dir):
    train_prior(_config(tmp_path / "a", faces, autoencoder_dir, 4), progress=False)
    train_prior(_config(tmp_path / "b", faces, autoencoder_dir, 2), progress=False)
    train_prior(_config(tmp_path / "b", faces, autoencoder_dir, 4), progress=False)
    for name in ("model", "ema"):
        a = load_file(tmp_path / "a" / "training" / "checkpoints" / "checkpoint-4" / f"{name}.safetensors")
        b = load_file(tmp_path / "b" / "training" / "checkpoints" / "checkpoint-4" / f"{name}.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_bad_prior_settings(tmp_path, faces, autoencoder_dir):
    with pytest.raises(ValueError, match="unknown UNet preset 'huge'"):
        config = _config(tmp_path / "x", faces, autoencoder_dir, 2)
        config.unet = "huge"
        train_prior(config)
    with pytest.raises(FileNotFoundError, match="neither taef2_encoder.pth"):
        load_autoencoder(tmp_path)
    with pytest.raises(ValueError, match="not a multiple"):
        train_prior(PriorTrainingConfig(output=str(tmp_path / "y"), data=str(faces), autoencoder=str(autoencoder_dir),
                                        image_size=30, unet="tiny", steps=1, cpu=True))


def test_cli_train_prior_and_sample(tmp_path, faces, autoencoder_dir, capsys):
    assert main(["train-prior", "--save-to", str(tmp_path / "m"), "--data", str(faces), "--autoencoder",
                 str(autoencoder_dir), "--image-size", "32", "--unet", "tiny", "--steps", "2", "--batch-size", "4",
                 "--device", "cpu"]) == 0
    assert "model bundle written to" in capsys.readouterr().out
    grid = tmp_path / "grid.png"
    assert main(["sample", "--model", str(tmp_path / "m"), "--out", str(grid), "-n", "4", "--steps", "5"]) == 0
    with Image.open(grid) as img:
        assert img.size == (2 * (2 * (32 + 2) + 2), 2 * (2 * (32 + 2) + 2))


def test_cli_export_writes_a_half_precision_copy(tmp_path):
    model = tiny_model("taef2", image_size=32)
    model.add_severity_encoder("gaussian-blur", model.make_severity_encoder())
    model.save_pretrained(tmp_path / "full")
    (tmp_path / "full" / "training").mkdir()
    assert main(["export", "--model", str(tmp_path / "full"), "--out", str(tmp_path / "small")]) == 0
    assert not (tmp_path / "small" / "training").exists()
    size = lambda p: sum(f.stat().st_size for f in p.rglob("*.safetensors"))  # noqa: E731
    assert size(tmp_path / "small") < 0.6 * size(tmp_path / "full")
    loaded = LatentDiffusion.from_pretrained(tmp_path / "small")
    assert "gaussian-blur" in loaded.severity_encoders
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(loaded.encode(x), model.encode(x), atol=2e-2, rtol=2e-2)


def test_cli_export_adds_the_severity_encoders_of_another_bundle_on_the_same_latents(tmp_path, capsys):
    """``export --severity-from``: a flow prior on a VP bundle's latents ships with that bundle's
    encoders as they are (how the flow demo prior gets the demo's four); another autoencoder is refused."""
    donor = tiny_model("taef2", image_size=32)
    donor.add_severity_encoder("gaussian-blur", donor.make_severity_encoder())
    donor.save_pretrained(tmp_path / "donor")
    flow = tiny_model("taef2", image_size=32, flow_shift=3.0)
    flow.autoencoder.load_state_dict(donor.autoencoder.state_dict())
    flow.save_pretrained(tmp_path / "flow")
    assert main(["export", "--model", str(tmp_path / "flow"), "--out", str(tmp_path / "shipped"), "--dtype", "float32",
                 "--severity-from", str(tmp_path / "donor")]) == 0
    shipped = LatentDiffusion.from_pretrained(tmp_path / "shipped")
    assert shipped.path == "flow" and sorted(shipped.severity_encoders) == ["gaussian-blur"]
    assert shipped.severity_metadata["gaussian-blur"]["adopted_from"] == str(tmp_path / "donor")
    for name, value in donor.severity_encoder("gaussian-blur").state_dict().items():
        assert torch.equal(shipped.severity_encoder("gaussian-blur").state_dict()[name], value), name
    for name, value in flow.denoiser.state_dict().items():
        assert torch.equal(shipped.denoiser.state_dict()[name], value), name
    capsys.readouterr()
    tiny_model("taef2", image_size=32, seed=1, flow_shift=3.0).save_pretrained(tmp_path / "other")
    assert main(["export", "--model", str(tmp_path / "other"), "--out", str(tmp_path / "refused"),
                 "--severity-from", str(tmp_path / "donor")]) != 0
    assert "autoencoder" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()


def test_prior_fine_tunes_from_a_parent_at_a_new_resolution(tmp_path, faces, autoencoder_dir):
    """``init_from``: the run starts from the parent's UNet weights and keeps its latent units."""
    train_prior(_config(tmp_path / "parent", faces, autoencoder_dir, 2), progress=False)
    parent = LatentDiffusion.from_pretrained(tmp_path / "parent")
    config = _config(tmp_path / "child", faces, autoencoder_dir, 2, init_from=str(tmp_path / "parent"))
    config.image_size, config.lr = 48, 0.0  # lr 0: the child's weights must be exactly the parent's
    train_prior(config, progress=False)
    child = LatentDiffusion.from_pretrained(tmp_path / "child")
    assert child.image_size == 48 and child.latent_shape == (4, 12, 12)
    assert child.latent_scale == parent.latent_scale
    raw = encode_images(load_autoencoder(autoencoder_dir), sorted(faces.iterdir()), 48, mirror=True)
    assert child.latent_scale != pytest.approx(1 / float(raw.std()), rel=1e-3)  # not recomputed
    for (name, a), (_, b) in zip(parent.denoiser.unet.named_parameters(), child.denoiser.unet.named_parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    # without init_from, the same run starts from a fresh random UNet
    fresh = _config(tmp_path / "fresh", faces, autoencoder_dir, 2, seed=5)
    fresh.image_size, fresh.lr = 48, 0.0
    train_prior(fresh, progress=False)
    other = next(LatentDiffusion.from_pretrained(tmp_path / "fresh").denoiser.unet.parameters())
    assert not torch.equal(other, next(parent.denoiser.unet.parameters()))


def test_prior_fine_tuning_rejects_a_mismatched_parent_before_training(tmp_path, faces, autoencoder_dir):
    train_prior(_config(tmp_path / "parent", faces, autoencoder_dir, 2), progress=False)
    config = _config(tmp_path / "child", faces, autoencoder_dir, 2, init_from=str(tmp_path / "parent"))
    config.unet = "small"
    with pytest.raises(ValueError, match="does not match preset 'small'"):
        train_prior(config, progress=False)
    assert not (tmp_path / "child" / "training").exists()  # rejected before encoding the data
    other_ae = tmp_path / "ae8"
    TAEF2Autoencoder(TAEF2(latent_channels=8, channels=8, pool_channels=16, pool_groups=4,
                           num_downsamples=2)).save_pretrained(other_ae)
    config = _config(tmp_path / "child2", faces, other_ae, 2, init_from=str(tmp_path / "parent"))
    with pytest.raises(ValueError, match="8 channels"):
        train_prior(config, progress=False)


def test_velocity_training_writes_a_flow_bundle_that_samples(tmp_path, faces, autoencoder_dir, capsys):
    """The velocity objective ends in a flow bundle (sd3-style grid, the sampling shift asked for) that
    reloads, samples and runs the four solvers' shared loop (ALGORITHMS.md §12)."""
    assert main(["train-prior", "--save-to", str(tmp_path / "flow"), "--data", str(faces), "--autoencoder",
                 str(autoencoder_dir), "--image-size", "32", "--unet", "tiny", "--steps", "2", "--batch-size", "4",
                 "--device", "cpu", "--objective", "velocity", "--flow-shift", "1"]) == 0
    assert "model bundle written to" in capsys.readouterr().out
    model = LatentDiffusion.from_pretrained(tmp_path / "flow")
    assert model.path == "flow" and model.flow_grid == "sd3" and model.scheduler.config.shift == 1.0
    assert model.prediction_type == "velocity" and not model.scheduler.config.use_dynamic_shifting
    assert model.flow_sigmas(4).tolist() == pytest.approx([1.0, 0.667, 0.334, 0.001], abs=1e-7)  # linspace(1, 1/T)
    # the default shift, 3, is written on resume too (it is not a training setting); the grid is
    # diffusers': shift(linspace(1, shift(1/T), N)) with shift(σ) = 3σ / (1 + 2σ)
    assert main(["train-prior", "--save-to", str(tmp_path / "flow"), "--data", str(faces), "--autoencoder",
                 str(autoencoder_dir), "--image-size", "32", "--unet", "tiny", "--steps", "2", "--batch-size", "4",
                 "--device", "cpu", "--objective", "velocity", "--force"]) == 0
    shifted = LatentDiffusion.from_pretrained(tmp_path / "flow")
    assert shifted.scheduler.config.shift == 3.0
    def shift(s):
        return 3 * s / (1 + 2 * s)
    low = shift(0.001)
    assert shifted.flow_sigmas(4).tolist() == pytest.approx(
        [shift(1 - k * (1 - low) / 3) for k in range(4)], abs=1e-6)
    grid = tmp_path / "grid.png"
    assert main(["sample", "--model", str(tmp_path / "flow"), "--out", str(grid), "-n", "4", "--steps", "5"]) == 0
    assert grid.is_file()
