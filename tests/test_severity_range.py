"""The σ̂ range a severity encoder records on its training data, and the out-of-range flag at inference
(flash_wrap.severity.range, ``flash-wrap severity-range``, the shipped demo's records)."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import flash_wrap
from flash_wrap import Flash, InvalidInput, LatentDiffusion
from flash_wrap.apps.cli import main
from flash_wrap.images import load_images
from flash_wrap.operators import GaussianBlur, NonlinearMotionBlur, RandomInpainting, SuperResolution
from flash_wrap.registry import get_task
from flash_wrap.severity.range import (
    RANGE_KEY,
    SPREAD_KEY,
    latent_spread,
    out_of_range,
    sigma_hat_range,
    warn_out_of_range,
)
from flash_wrap.testing import ProgrammedSeverity, generators, smooth_images, tiny_model, write_images
from flash_wrap_plugins.latent_dps import LatentDPS

DEMO = Path(flash_wrap.__file__).resolve().parent / "assets" / "demo"
DEV_FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces_dev"
TASKS = ("gaussian-blur", "random-inpainting", "motion-blur", "super-resolution")


def test_the_record_holds_the_quantiles_and_the_count():
    record = sigma_hat_range(torch.arange(1001, dtype=torch.float32) + 100)
    assert record["quantiles"] == [0.001, 0.01, 0.99, 0.999] and record["n"] == 1001
    assert record["quantile_values"] == pytest.approx([101.0, 110.0, 1090.0, 1099.0])
    # one tail spacing beyond the extreme quantiles: 2·101 − 110 and 2·1099 − 1090
    assert record["low"] == pytest.approx(92.0) and record["high"] == pytest.approx(1108.0)
    assert sigma_hat_range(torch.arange(1001, dtype=torch.float32))["low"] == 0.0  # never below 0
    with pytest.raises(InvalidInput, match="finite values"):
        sigma_hat_range(torch.tensor([0.1, float("nan")]))


def test_values_outside_the_range_are_flagged_and_reported_in_one_warning():
    metadata = {RANGE_KEY: {"low": 0.1, "high": 0.5}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # flagging warns nothing: the caller reports once
        flags = out_of_range(torch.tensor([0.05, 0.1, 0.5, 0.7]), metadata, "test encoder")
        assert not out_of_range(torch.tensor([0.2, 0.3]), metadata, "test encoder").any()
        assert out_of_range(torch.tensor([9.0]), {}, "test encoder") is None  # no record: no flag
        warn_out_of_range(0, 4, metadata, "test encoder")
    assert flags.tolist() == [True, False, False, True]
    with pytest.warns(RuntimeWarning, match=r"2 of 4 samples lie outside what the test encoder saw .*\(σ̂ outside \[0\.1, 0\.5\]\)") as caught:
        warn_out_of_range(2, 4, metadata, "test encoder")
    assert len(caught) == 1


def test_a_latent_estimate_of_unusual_spread_is_flagged_even_with_sigma_hat_inside():
    spreads = torch.linspace(0.7, 0.9, 1001)
    record = sigma_hat_range(torch.full((1001,), 0.2) + torch.linspace(0, 0.1, 1001), spreads)
    assert record[SPREAD_KEY]["n"] == 1001 and 0.68 < record[SPREAD_KEY]["low"] < 0.7
    z_hat = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    z_hat = z_hat / latent_spread(z_hat).view(-1, 1, 1, 1).float() * torch.tensor([0.8, 0.4, 1.2]).view(-1, 1, 1, 1)
    assert latent_spread(z_hat).tolist() == pytest.approx([0.8, 0.4, 1.2], rel=1e-5)
    metadata = {RANGE_KEY: record}
    assert out_of_range(torch.full((3,), 0.25), metadata, "e", z_hat=z_hat).tolist() == [False, True, True]
    assert not out_of_range(torch.full((3,), 0.25), metadata, "e").any()  # without ẑ: σ̂ alone
    with pytest.raises(InvalidInput, match="one per σ̂"):
        sigma_hat_range(torch.ones(3), torch.ones(2))


def test_measurements_noisier_than_the_encoders_training_noise_are_flagged():
    metadata = {RANGE_KEY: {"low": 0.1, "high": 0.5, "noise_std": 0.05}}
    variance = torch.tensor([0.2, 0.3])
    assert not out_of_range(variance, metadata, "e", noise_std=0.05).any()
    assert not out_of_range(variance, metadata, "e", noise_std=0.01).any()
    assert out_of_range(variance, metadata, "e", noise_std=0.3).all()


def test_levels_outside_the_training_levels_are_flagged_even_with_sigma_hat_inside():
    metadata = {RANGE_KEY: {"low": 0.1, "high": 0.5, "levels": [0.0, 1.0]}}
    variance = torch.tensor([0.2, 0.2, 0.2, 0.2])
    flags = out_of_range(variance, metadata, "test encoder", torch.tensor([0.0, 1.0, 1.5, -0.2], dtype=torch.float64))
    assert flags.tolist() == [False, False, True, True]
    assert out_of_range(variance, metadata, "test encoder", torch.tensor([3.0])).all()  # one shared operator
    # a record without training levels judges σ̂ alone
    assert not out_of_range(variance, {RANGE_KEY: {"low": 0.1, "high": 0.5}}, "e", torch.tensor([3.0])).any()
    with pytest.warns(RuntimeWarning, match=r"\(σ̂ outside \[0\.1, 0\.5\] or a degradation level outside \[0, 1\]\)"):
        warn_out_of_range(2, 4, metadata, "test encoder")


@pytest.mark.parametrize("task, beyond", [
    ("gaussian-blur", lambda size: GaussianBlur(sigma=torch.full((1,), 4 * 3.0 * size / 256))),
    ("random-inpainting", lambda size: RandomInpainting(missing_ratio=torch.full((1,), 0.95))),
    ("motion-blur", lambda size: NonlinearMotionBlur(torch.full((1,), 15.0 * size / 128), torch.full((1,), 5.0),
                                                     torch.zeros(1, dtype=torch.long))),
    ("super-resolution", lambda size: SuperResolution(8)),
])
def test_each_task_reads_the_level_of_its_operators(task, beyond):
    spec = get_task(task)
    inside = spec.operator(torch.tensor([0.0, 0.5, 1.0]), 128)
    levels = spec.level_of(inside, 128)
    expected = [0.0, 0.0, 0.0] if task == "super-resolution" else [0.0, 0.5, 1.0]
    assert levels.tolist() == pytest.approx(expected[: levels.numel()], abs=1e-6)
    assert float(spec.level_of(beyond(128), 128).max()) > 1.1
    other = "gaussian-blur" if task != "gaussian-blur" else "random-inpainting"
    assert spec.level_of(get_task(other).operator(torch.tensor([0.5]), 128), 128) is None


@pytest.mark.parametrize("record", [{"low": 0.5, "high": 0.1}, {"low": "a", "high": 1}, [0, 1], {"low": float("nan"),
                                                                                                 "high": 1.0}])
def test_a_malformed_record_is_refused_naming_the_encoder(record):
    with pytest.raises(InvalidInput, match="my encoder: sigma_hat_range must be"):
        out_of_range(torch.tensor([0.2]), {RANGE_KEY: record}, "my encoder")


def _programmed(record=None):
    model = tiny_model("vq", image_size=32, seed=0)
    model.add_severity_encoder("gaussian-blur", ProgrammedSeverity(model),
                               {} if record is None else {RANGE_KEY: record})
    return model


def _measure(brightness):
    op = GaussianBlur(sigma=torch.full((len(brightness),), 0.5))
    return op.measure(smooth_images(len(brightness), brightness=brightness), generator=torch.Generator().manual_seed(0)), op


def test_flash_flags_each_sample_and_the_flag_survives_save_and_load(tmp_path):
    model = _programmed({"low": 0.02, "high": 0.1, "quantiles": [0.001, 0.999], "n": 50})
    model.save_pretrained(tmp_path / "bundle")
    loaded = LatentDiffusion.from_pretrained(tmp_path / "bundle")
    assert loaded.severity_metadata["gaussian-blur"][RANGE_KEY] == model.severity_metadata["gaussian-blur"][RANGE_KEY]
    loaded.severity_encoders["gaussian-blur"] = ProgrammedSeverity(loaded)  # v = mean(y), as above
    y, op = _measure([0.005, 0.05, 0.4])  # v ≈ brightness: below, inside, above [0.02, 0.1]
    with pytest.warns(RuntimeWarning, match="2 of 3 samples"):
        out = Flash(LatentDPS(loaded, steps=20)).reconstruct(y, op, generator=generators(range(3)), progress=False)
    assert out.out_of_range.tolist() == [True, False, True]


def test_a_stream_reports_its_flagged_samples_in_one_warning():
    model = _programmed({"low": 0.02, "high": 0.1, "quantiles": [0.001, 0.999], "n": 50})
    y, op = _measure([0.005, 0.05, 0.4, 0.06])
    samples = [(y[i : i + 1], op.select([i]), torch.Generator().manual_seed(i)) for i in range(4)]
    with pytest.warns(RuntimeWarning) as caught:
        results = list(Flash(LatentDPS(model, steps=20)).stream(samples, slots=2, progress=False))
    assert [str(w.message)[:24] for w in caught if "σ̂" in str(w.message)] == ["2 of 4 samples lie outsi"]
    assert {r.index: bool(r.reconstruction.out_of_range[0]) for r in results} == {0: True, 1: False, 2: True, 3: False}


def test_an_encoder_without_a_record_flags_nothing():
    y, op = _measure([0.005, 0.4])
    out = Flash(LatentDPS(_programmed(), steps=20)).reconstruct(y, op, generator=generators(range(2)), progress=False)
    assert out.out_of_range is None
    assert LatentDPS(_programmed(), steps=20).reconstruct(y, op, generator=generators(range(2)),
                                                          progress=False).out_of_range is None


def _sha(file: Path) -> str:
    return hashlib.sha256(file.read_bytes()).hexdigest()


def test_the_command_records_the_range_and_leaves_the_weights_alone(tmp_path, capsys):
    bundle = tmp_path / "model"
    _programmed().save_pretrained(bundle)
    images = write_images(tmp_path / "images", 12, 40, 40)
    weights = bundle / "severity_encoders" / "gaussian-blur" / "model.safetensors"
    # stored in float16, as the shipped demo's are: a rewrite (even of the same values) would show
    save_file({k: v.half() for k, v in load_file(weights).items()}, weights)
    before = _sha(weights)
    assert main(["severity-range", "--model", str(bundle), "--task", "gaussian-blur", "--data", str(images)]) == 0
    assert "σ̂ in [" in capsys.readouterr().out
    assert _sha(weights) == before
    config = json.loads((bundle / "severity_encoders" / "gaussian-blur" / "config.json").read_text())
    record = config["metadata"][RANGE_KEY]
    assert record["n"] == 3 * 12 and 0 <= record["low"] <= record["high"]  # random levels, and both ends
    assert record["degraded"].startswith("each image at a random training level and at both ends")
    assert record["levels"] == [0.0, 1.0] and record["data"] == "images"
    # the programmed encoder's σ̂ is the mean of the degraded image: the range spans those means
    assert record["high"] < 1


def test_the_command_refuses_the_demo_without_a_new_bundle_and_a_task_without_encoder(tmp_path, capsys):
    images = write_images(tmp_path / "images", 4, 32, 32)
    assert main(["severity-range", "--model", "demo", "--task", "gaussian-blur", "--data", str(images)]) == 2
    assert "--save-to" in capsys.readouterr().err
    bundle = tmp_path / "model"
    tiny_model("vq", image_size=32, seed=0).save_pretrained(bundle)
    assert main(["severity-range", "--model", str(bundle), "--task", "gaussian-blur", "--data", str(images)]) == 2
    assert "no severity encoder for task 'gaussian-blur'" in capsys.readouterr().err


@pytest.fixture(scope="module")
def demo_model() -> LatentDiffusion:
    return LatentDiffusion.from_pretrained("demo")


@pytest.mark.parametrize("task", TASKS)
def test_the_shipped_demo_encoders_record_their_range(demo_model, task):
    record = demo_model.severity_metadata[task][RANGE_KEY]
    assert record["n"] >= 1200 and record["quantiles"] == [0.001, 0.01, 0.99, 0.999] and 0 < record["low"] < record["high"]
    assert record[SPREAD_KEY]["n"] == record["n"] and 0 < record[SPREAD_KEY]["low"] < record[SPREAD_KEY]["high"]
    assert record["degraded"].startswith("each image at a random training level and at both ends")


def _demo_flags(model, y_image, noise_std=None):
    encoder = model.severity_encoder("gaussian-blur")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        z_hat, variance = encoder(y_image)
    return out_of_range(variance, model.severity_metadata["gaussian-blur"], "demo", z_hat=z_hat,
                        noise_std=noise_std).tolist()


def test_dev_faces_at_the_training_range_are_in_range_and_unlike_images_are_not(demo_model):
    faces = load_images(DEV_FACES, demo_model.image_size, limit=2)
    task = get_task("gaussian-blur")
    for level in task.train_range:  # both ends of the training range
        op = task.operator(torch.full((2,), level), demo_model.image_size)
        y = op.measure(faces, generator=torch.Generator().manual_seed(0))
        assert _demo_flags(demo_model, op.to_image(y)) == [False, False], level
    size = demo_model.image_size
    grey = torch.full((1, 3, size, size), 0.5)
    noise = torch.rand((1, 3, size, size), generator=torch.Generator().manual_seed(0))
    assert _demo_flags(demo_model, grey) == [True]
    assert _demo_flags(demo_model, noise) == [True]
    # the largest training blur with 6x the training noise (0.05): beyond the training degradations
    beyond = GaussianBlur(sigma=torch.full((2,), 3.0 * size / 256), noise_std=0.3)
    y = beyond.measure(faces, generator=torch.Generator().manual_seed(0))
    assert _demo_flags(demo_model, y, noise_std=0.3) == [True, True]


@pytest.mark.parametrize("task", TASKS)
def test_flash_flags_a_degradation_beyond_the_training_range_and_not_the_dev_faces_inside_it(demo_model, task):
    faces = load_images(DEV_FACES, demo_model.image_size)
    size, spec = demo_model.image_size, get_task(task)
    flash = Flash(LatentDPS(demo_model, steps=100))
    g = torch.Generator().manual_seed(0)
    for level in spec.train_range:  # every development face at both ends of the training range
        op = spec.operator(torch.full((len(faces),), level), size, seed=torch.arange(len(faces)))
        point = flash.start_point(op.measure(faces, generator=g), op, generators(range(len(faces))))
        assert not point.out_of_range.any(), (level, point.sigma_hat.tolist())
    beyond = {"gaussian-blur": GaussianBlur(sigma=torch.full((2,), 4 * 3.0 * size / 256)),
              "random-inpainting": RandomInpainting(missing_ratio=torch.full((2,), 0.95)),
              # the kernel container bounds the length near the training maximum: turn more instead
              "motion-blur": NonlinearMotionBlur(torch.full((2,), 15.0 * size / 128), torch.full((2,), 5.0),
                                                 torch.arange(2)),
              "super-resolution": SuperResolution(8)}[task]
    point = flash.start_point(beyond.measure(faces[:2], generator=g), beyond, generators(range(2)))
    assert point.out_of_range.all()
