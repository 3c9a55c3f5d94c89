"""``flash-wrap benchmark`` and the full-size model configs."""

from __future__ import annotations

import json

import pytest
import torch
from accelerate import init_empty_weights

from flash_wrap.apps.benchmark import BenchmarkConfig, PeakMemory, benchmark, markdown
from flash_wrap.apps.cli import main
from flash_wrap.models import full_size
from flash_wrap.testing import tiny_model


@pytest.mark.parametrize(
    "build,millions",
    [(full_size.ldm_vq4_autoencoder, 55.3), (full_size.ldm_vq4_unet, 274.1),
     (full_size.sd_v1_autoencoder, 83.7), (full_size.sd_v1_unet, 859.5)],
)
def test_full_size_configs_have_the_published_sizes(build, millions):
    with init_empty_weights():  # shapes only, no memory
        module = build()
    assert sum(p.numel() for p in module.parameters()) / 1e6 == pytest.approx(millions, abs=0.1)


def test_full_ldm_vq4_latent_shape_without_building_weights():
    with init_empty_weights():
        ae, unet = full_size.ldm_vq4_autoencoder(), full_size.ldm_vq4_unet()
    assert ae.config.latent_channels == 3 and len(ae.config.block_out_channels) - 1 == 2  # f4
    assert unet.config.sample_size == 64 and unet.config.in_channels == 3


@pytest.fixture
def tiny_bundle(tmp_path):
    model = tiny_model("vq", image_size=32, seed=0)
    model.add_severity_encoder("gaussian-blur", model.make_severity_encoder())
    model.save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def test_benchmark_reports_bare_and_flash_side_by_side(tiny_bundle, tmp_path):
    config = BenchmarkConfig(config=str(tiny_bundle), batch_sizes=[1, 3], steps=12, starts=[2, 6])
    result = benchmark(config, tmp_path / "bench.json", progress=False)
    assert json.loads((tmp_path / "bench.json").read_text())["rows"] == result["rows"]
    assert [r["batch_size"] for r in result["rows"]] == [1, 3]
    for row in result["rows"]:
        assert row["baseline"]["nfe_mean"] == 12
        assert row["flash"]["nfe"] == [2, 6, 2][: row["batch_size"]]  # imposed starts, cycled
        assert row["nfe_ratio"] == pytest.approx(12 * row["batch_size"] / sum(row["flash"]["nfe"]))
        bare_s, flash_s = row["baseline"]["seconds_per_image"], row["flash"]["seconds_per_image"]
        assert row["speedup"] == pytest.approx(bare_s / flash_s)
        # efficiency = (bare cost per sample-step × Σ Flash NFE) / Flash time
        ideal = bare_s / 12 * sum(row["flash"]["nfe"])
        assert row["mixed_batch_efficiency"] == pytest.approx(ideal / (flash_s * row["batch_size"]))
        assert row["baseline"]["peak_memory_mb"] >= 0
    table = markdown(result)
    assert table.count("\n| ") == 3 and "mixed-batch efficiency" in table and "DDIM-12 (η=0)" in table
    assert result["ddim_eta"] == 0.0
    assert "channels-last" not in table
    config.channels_last, config.batch_sizes = True, [2]
    assert "fp32, channels-last," in markdown(benchmark(config, progress=False))


def test_benchmark_cli_rejects_bad_starts(tiny_bundle, capsys):
    assert main(["benchmark", "--model", str(tiny_bundle), "--steps", "10", "--starts", "0", "--batch-size", "1"]) == 2
    assert "argument --starts: expected an integer in [1, inf), got 0" in capsys.readouterr().err
    assert main(["benchmark", "--model", str(tiny_bundle), "--steps", "10", "--starts", "10", "--batch-size", "1"]) == 2
    assert "--starts must lie in [1, 9], got [10]" in capsys.readouterr().err


def test_peak_memory_sees_a_large_allocation():
    with PeakMemory(torch.device("cpu")) as memory:
        block = torch.ones(64 * 2**20 // 4)  # 64 MiB
        block += 1
        import time

        time.sleep(0.05)
    del block
    assert memory.peak > 32 * 2**20
