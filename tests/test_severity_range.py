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
from flash_wrap.operators import GaussianBlur
from flash_wrap.registry import get_task
from flash_wrap.severity.range import RANGE_KEY, out_of_range, sigma_hat_range
from flash_wrap.testing import ProgrammedSeverity, generators, smooth_images, tiny_model, write_images
from flash_wrap_plugins.latent_dps import LatentDPS

DEMO = Path(flash_wrap.__file__).resolve().parent / "assets" / "demo"
DEV_FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces_dev"
TASKS = ("gaussian-blur", "random-inpainting", "motion-blur", "super-resolution")


def test_the_record_holds_the_quantiles_and_the_count():
    record = sigma_hat_range(torch.arange(1001, dtype=torch.float32))
    assert record["quantiles"] == [0.001, 0.999] and record["n"] == 1001
    assert record["low"] == pytest.approx(1.0) and record["high"] == pytest.approx(999.0)
    with pytest.raises(InvalidInput, match="finite values"):
        sigma_hat_range(torch.tensor([0.1, float("nan")]))


def test_values_outside_the_range_are_flagged_with_one_warning():
    metadata = {RANGE_KEY: {"low": 0.1, "high": 0.5}}
    with pytest.warns(RuntimeWarning, match=r"2 of 4 samples have σ̂ outside .* \[0\.1, 0\.5\]") as caught:
        flags = out_of_range(torch.tensor([0.05, 0.1, 0.5, 0.7]), metadata, "test encoder")
    assert len(caught) == 1
    assert flags.tolist() == [True, False, False, True]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not out_of_range(torch.tensor([0.2, 0.3]), metadata, "test encoder").any()
        assert out_of_range(torch.tensor([9.0]), {}, "test encoder") is None  # no record: no flag


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
    assert record["n"] == 12 and 0 <= record["low"] <= record["high"]
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
    assert record["n"] >= 200 and record["quantiles"] == [0.001, 0.999] and 0 < record["low"] < record["high"]


def _demo_flags(model, y_image):
    encoder = model.severity_encoder("gaussian-blur")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        variance = encoder(y_image)[1]
    return out_of_range(variance, model.severity_metadata["gaussian-blur"], "demo").tolist()


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
    assert _demo_flags(demo_model, beyond.measure(faces, generator=torch.Generator().manual_seed(0))) == [True, True]
