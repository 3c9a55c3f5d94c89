"""``eval --fid-weights`` (FID and KID per method, with their image count) and ``compare --table paper``.

The Inception weights here are random (the real ones are not shipped): these tests check the plumbing
(features kept per unit of work, counted, compared with the clean images), not FID values.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from flash_wrap.apps.cli import main
from flash_wrap.apps.evaluation.config import EvalConfig
from flash_wrap.apps.evaluation.features import FEATURES
from flash_wrap.apps.evaluation.runner import evaluate
from flash_wrap.errors import NotFound
from flash_wrap.perceptual import FIDInception
from flash_wrap.testing import tiny_model, write_images


@pytest.fixture
def setup(tmp_path):
    from safetensors.torch import save_file

    model = tiny_model("taef2", image_size=32, seed=0)
    model.add_severity_encoder("gaussian-blur", model.make_severity_encoder())
    model.save_pretrained(tmp_path / "model")
    torch.manual_seed(0)
    net = FIDInception()
    for name, p in net.state_dict().items():
        if name.endswith("weight"):
            p.normal_(0, (2 / p[0].numel()) ** 0.5)
    save_file(net.state_dict(), str(tmp_path / "inception.safetensors"))
    return tmp_path, write_images(tmp_path / "images", 5, 40, 36)


def _config(tmp_path, images, **kw):
    base = dict(data=str(images), task="gaussian-blur", solver="latent-dps", out=str(tmp_path / "run"),
                model=str(tmp_path / "model"), steps=4, baseline=True, batch_size=2, batching="fixed",
                fid_weights=str(tmp_path / "inception.safetensors"))
    return EvalConfig(**{**base, **kw})


def test_eval_reports_fid_and_kid_per_method_with_the_image_count_and_compare_prints_the_paper_table(setup, capsys):
    tmp_path, images = setup
    with pytest.warns(RuntimeWarning, match="FID from 5 and 5 images"):
        result = evaluate(_config(tmp_path, images), progress=False)
    assert len(list((tmp_path / "run" / FEATURES).glob("*.safetensors"))) == 3  # one per batch of 2
    assert set(result["fid"]) == set(result["methods"]) == {"flash", "baseline", "autoencoder", "degraded"}
    for m in result["fid"].values():
        assert m["images"] == 5 and m["kid_subset"] == 5
        assert math.isfinite(m["fid"]) and m["fid"] >= 0 and math.isfinite(m["kid"])
    assert all(v is not None for v in result["methods"]["flash"].values())  # LPIPS too (images of side 32)
    assert json.loads((tmp_path / "run" / "results.json").read_text())["fid"] == result["fid"]

    assert main(["compare", str(tmp_path / "run"), "--table", "paper"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| method | gaussian-blur: PSNR ↑ | SSIM ↑ | LPIPS ↓ | FID ↓ | KID×10³ ↓ | NFE |"
    flash = next(line for line in lines if line.startswith("| Flash(latent-dps) |"))
    cells = [c.strip() for c in flash.strip("|").split("|")]
    fid = result["fid"]["flash"]
    assert cells[4] == f"{fid['fid']:.2f} (n=5)" and cells[5].endswith("(n=5)")
    assert float(cells[3]) == pytest.approx(result["methods"]["flash"]["lpips"], abs=5e-5)


def test_a_missing_fid_weight_file_stops_eval_before_any_work(setup):
    tmp_path, images = setup
    missing = tmp_path / "nowhere.safetensors"
    with pytest.raises(NotFound, match="FID Inception weight file .*nowhere.safetensors not found"):
        evaluate(_config(tmp_path, images, fid_weights=str(missing)), progress=False)
    assert not (tmp_path / "run").exists()


def _results(task: str, solver: str, fid: dict | None) -> dict:
    methods = {"flash": {"psnr": 25.0, "ssim": 0.8, "lpips": 0.2, "nfe_mean": 40.0},
               "baseline": {"psnr": 24.0, "ssim": 0.7, "lpips": None, "nfe_mean": 1000.0}}
    return {"task": task, "solver": solver, "methods": methods, "fid": fid}


def test_paper_table_groups_tasks_and_refuses_two_runs_of_one_method_and_task():
    from flash_wrap.apps.evaluation.compare import paper_table
    from flash_wrap.errors import InvalidInput

    fid = {"flash": {"fid": 56.04, "kid": 0.0123, "kid_std": 0.0045, "images": 200}}
    text = paper_table([_results("gaussian-blur", "latent-dps", fid), _results("random-inpainting", "latent-dps", None)])
    rows = {line.split("|")[1].strip(): line for line in text.splitlines()[2:]}
    assert rows["Flash(latent-dps)"] == ("| Flash(latent-dps) | 25.00 | 0.8000 | 0.2000 | 56.04 (n=200) | 12.30 ± 4.50 "
                                          "(n=200) | 40.0 | 25.00 | 0.8000 | 0.2000 | – | – | 40.0 |")
    assert rows["latent-dps"].startswith("| latent-dps | 24.00 | 0.7000 | – | – | – | 1000.0 |")
    with pytest.raises(InvalidInput, match="two runs give Flash.latent-dps. on gaussian-blur"):
        paper_table([_results("gaussian-blur", "latent-dps", None)] * 2)
