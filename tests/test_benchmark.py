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


def test_benchmark_images_compares_the_four_modes_on_a_mixed_set(tiny_bundle, tmp_path):
    # imposed starts spread over the grid and mixed in input order: fixed batches of 4 each run their
    # largest start (11) while their rows need 2..11 steps; the stream refills freed slots
    starts = [11, 2, 5, 8]
    config = BenchmarkConfig(config=str(tiny_bundle), steps=12, starts=starts, images=12, slots=4, bare_images=8)
    result = benchmark(config, tmp_path / "mixed.json", progress=False)
    assert json.loads((tmp_path / "mixed.json").read_text())["mixed"] == result["mixed"]
    assert "rows" not in result
    mixed = result["mixed"]
    assert (mixed["images"], mixed["slots"], mixed["task"], mixed["window"]) == (12, 4, "gaussian-blur", 32)
    modes = mixed["modes"]
    assert list(modes) == ["bare", "flash_fixed", "flash_buckets", "flash_stream"]
    for figures in modes.values():
        assert set(figures) == {"images", "images_per_second", "seconds", "nfe_mean", "peak_memory_mb", "slot_use",
                                "denoiser_batches", "slot_steps"}
        assert figures["images_per_second"] == pytest.approx(figures["images"] / figures["seconds"])
        assert figures["slot_use"] == pytest.approx(figures["slot_steps"] / (4 * figures["denoiser_batches"]))
    assert [modes[m]["images"] for m in modes] == [8, 12, 12, 12]  # the bare solver on the first 8 only
    assert modes["bare"]["nfe_mean"] == 12 and modes["bare"]["slot_use"] == 1.0
    assert modes["bare"]["denoiser_batches"] == 2 * 12
    for mode in ("flash_fixed", "flash_buckets", "flash_stream"):
        assert modes[mode]["nfe_mean"] == pytest.approx(sum(starts) / 4)  # the same samples, the same NFE
        assert modes[mode]["slot_steps"] == 3 * sum(starts)
    # fixed batches: 3 batches × 11 calls of 4 slots for 78 sample-steps
    assert modes["flash_fixed"]["denoiser_batches"] == 33
    assert modes["flash_fixed"]["slot_use"] == pytest.approx(78 / 132)
    # buckets: starts sorted (11,11,11,8 | 8,8,5,5 | 5,2,2,2): 11 + 8 + 5 calls
    assert modes["flash_buckets"]["denoiser_batches"] == 24
    assert modes["flash_stream"]["slot_use"] > modes["flash_buckets"]["slot_use"] > modes["flash_fixed"]["slot_use"]
    table = markdown(result)
    assert table.count("\n| ") == 5 and "Flash, streamed (continuous batching, window 32)" in table and "slot use" in table


def test_benchmark_cli_images_options(tiny_bundle, tmp_path, capsys):
    assert main(["benchmark", "--model", str(tiny_bundle), "--slots", "4"]) == 2
    assert "--slots sets the mixed-severity comparison, which runs with --images N; add it" in capsys.readouterr().err
    assert main(["benchmark", "--model", str(tiny_bundle), "--bare-images", "4"]) == 2
    assert "--bare-images sets the mixed-severity comparison" in capsys.readouterr().err
    assert main(["benchmark", "--model", str(tiny_bundle), "--images", "3", "--bare-images", "4"]) == 2
    assert "--bare-images 4 is more than --images 3; give at most 3" in capsys.readouterr().err
    assert main(["benchmark", "--model", str(tiny_bundle), "--images", "3", "--data", str(tmp_path / "nothing")]) == 2
    assert "--data" in capsys.readouterr().err
    out = tmp_path / "b.json"
    assert main(["benchmark", "--model", str(tiny_bundle), "--steps", "6", "--starts", "1", "4", "--images", "4",
                 "--slots", "2", "--bare-images", "1", "--out", str(out)]) == 0
    modes = json.loads(out.read_text())["mixed"]["modes"]
    assert modes["flash_stream"]["nfe_mean"] == 2.5
    # one bare image runs in a batch of one: its slot use is that batch's, not that of 2 slots
    assert (modes["bare"]["images"], modes["bare"]["slot_use"], modes["bare"]["denoiser_batches"]) == (1, 1.0, 6)
    assert "| Flash, start-step buckets |" in capsys.readouterr().out
