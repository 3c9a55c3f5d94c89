"""``flash-wrap eval`` / ``compare``: schema, exact resume, per-image seeding, report files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from flash_wrap import get_solver, get_task
from flash_wrap.apps.cli import main
from flash_wrap.apps.demo import run_demo
from flash_wrap.apps.evaluation.compare import compare, paired
from flash_wrap.apps.evaluation.config import OA_LEVELS, OA_SEEDS, RECORDS, EvalConfig
from flash_wrap.apps.evaluation.runner import Evaluator, evaluate
from flash_wrap.apps.runs import RunFolderError
from flash_wrap.degradation import SEED_RULE, degrade, image_generators, image_seed
from flash_wrap.errors import InvalidInput
from flash_wrap.images import load_image
from flash_wrap.metrics import psnr, spearman
from flash_wrap.testing import tiny_model, write_images


@pytest.fixture
def setup(tmp_path):
    model = tiny_model("taef2", image_size=32, seed=0)
    model.add_severity_encoder("gaussian-blur", model.make_severity_encoder())
    model.save_pretrained(tmp_path / "model")
    return tmp_path, write_images(tmp_path / "images", 5, 40, 36)


def _config(tmp_path, images, out, **kw):
    base = dict(data=str(images), task="gaussian-blur", solver="latent-dps", out=str(tmp_path / out),
                model=str(tmp_path / "model"), steps=6, baseline=True, fixed_start=[2], batch_size=2)
    return EvalConfig(**{**base, **kw})


@pytest.fixture
def quiet_lpips(monkeypatch):
    monkeypatch.setattr("flash_wrap.apps.evaluation.runner.LPIPS.load", classmethod(lambda cls: None))


def test_results_schema_and_files(setup, quiet_lpips):
    tmp_path, images = setup
    result = evaluate(_config(tmp_path, images, "out"), progress=False)
    for key in ("task", "solver", "model", "steps", "scheduler", "seed", "n_images", "methods", "severity", "images"):
        assert key in result
    assert result["n_images"] == 5 and result["steps"] == 6 and result["scheduler"] == "ddim"
    assert set(result["methods"]) == {"flash", "baseline", "fixed_start_2", "autoencoder", "degraded"}
    assert result["methods"]["degraded"]["nfe_mean"] == 0
    # the degraded row scores the measurement itself as an image, exactly as eval degraded it
    names = [r["name"] for r in result["images"]]
    x = torch.stack([load_image(images / n, 32) for n in names])
    task = get_task("gaussian-blur")
    _, _, op, y = degrade(task, names, x, tuple(task.eval_range), result["seed"])
    assert [r["psnr"]["degraded"] for r in result["images"]] == pytest.approx(
        psnr(op.to_image(y).clamp(0, 1), x).tolist(), abs=1e-4)
    for m in result["methods"].values():
        assert set(m) >= {"psnr", "ssim", "lpips", "nfe_mean", "nfe_std", "seconds_total", "seconds_per_image"}
        assert m["lpips"] is None
    assert result["methods"]["baseline"]["nfe_mean"] == 6 and result["methods"]["fixed_start_2"]["nfe_mean"] == 2
    assert set(result["severity"]) >= {"spearman", "ordering_accuracy", "spearman_grid"}
    # the grid Spearman pools every image's σ̂ at the OA levels × seeds: 5 × 10 × 3 draws
    assert result["severity"]["spearman_grid_pairs"] == 5 * OA_LEVELS * OA_SEEDS
    pooled_t = [t for r in result["images"] for _ in range(OA_SEEDS) for t in r["ordering_levels"]]
    pooled_s = [v for r in result["images"] for seed in r["ordering_sigma_hat"] for v in seed]
    assert result["severity"]["spearman_grid"] == pytest.approx(spearman(torch.tensor(pooled_t),
                                                                         torch.tensor(pooled_s)))
    assert result["images"][0]["ordering_levels"] == pytest.approx(torch.linspace(0, 1, OA_LEVELS).tolist())
    record = result["images"][0]
    assert set(record) >= {"name", "severity", "sigma_hat", "start_step", "nfe", "psnr", "ssim", "lpips"}
    assert record["nfe"]["flash"] == record["start_step"]
    assert record["decoder_calls"]["flash"] == record["start_step"]  # Latent-DPS decodes once per step
    assert result["methods"]["baseline"]["decoder_calls_mean"] == 6
    assert result["ddim_eta"] == 0.0  # the solver's own DDIM η, recorded
    for r in result["images"]:  # each level is the image's own draw from its file-name seed
        generator = image_generators([image_seed(r["name"], 0)], 0)[0]
        assert r["severity"] == pytest.approx(float(torch.rand(1, generator=generator)), abs=1e-12)
    out = tmp_path / "out"
    for name in ("results.json", "images.csv", "sigma_hat_vs_severity.png", "start_steps.png", "psnr_vs_nfe.png",
                 "examples.png"):
        assert (out / name).is_file(), name
    assert len((out / "images.csv").read_text().splitlines()) == 6
    assert json.loads((out / "results.json").read_text())["n_images"] == 5


def test_interrupted_then_resumed_equals_uninterrupted(setup, quiet_lpips, monkeypatch):
    tmp_path, images = setup
    whole = evaluate(_config(tmp_path, images, "whole"), progress=False)

    calls = []
    real = Evaluator.run_batch

    def interrupt_after_one(self, files):
        if calls:
            raise KeyboardInterrupt
        calls.append([f.name for f in files])
        return real(self, files)

    monkeypatch.setattr(Evaluator, "run_batch", interrupt_after_one)
    with pytest.raises(KeyboardInterrupt):
        evaluate(_config(tmp_path, images, "split", window=2), progress=False)  # streamed, units of 2
    records = (tmp_path / "split" / RECORDS).read_text().splitlines()
    assert len(records) == 2
    with open(tmp_path / "split" / RECORDS, "a") as f:
        f.write('{"name": "00')  # a line cut short by the interruption

    resumed_batches = []
    monkeypatch.setattr(Evaluator, "run_batch", lambda self, files: resumed_batches.append(files) or real(self, files))
    resumed = evaluate(_config(tmp_path, images, "split", window=2), resume=True, progress=False)
    assert [f.name for b in resumed_batches for f in b] == ["002.png", "003.png", "004.png"]  # nothing recomputed
    strip = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]  # noqa: E731
    assert strip(resumed["images"]) == strip(whole["images"])


def test_channels_last_is_a_speed_option_only(setup, quiet_lpips):
    tmp_path, images = setup
    plain = evaluate(_config(tmp_path, images, "plain", limit=2), progress=False)
    fast = evaluate(_config(tmp_path, images, "fast", limit=2, channels_last=True), progress=False)
    for a, b in zip(plain["images"], fast["images"]):
        assert a["name"] == b["name"] and a["nfe"] == b["nfe"]
        for method in ("flash", "baseline", "autoencoder"):
            assert b["psnr"][method] == pytest.approx(a["psnr"][method], abs=1e-3)
    # resuming with the other layout is allowed: it changes nothing but float rounding
    evaluate(_config(tmp_path, images, "plain", limit=2, channels_last=True), resume=True, progress=False)


def test_resume_refuses_other_settings_and_fresh_run_refuses_old_results(setup, quiet_lpips):
    tmp_path, images = setup
    evaluate(_config(tmp_path, images, "out", fixed_start=[], baseline=False, limit=2), progress=False)
    with pytest.raises(ValueError, match=r"was run with a different --seed \(0 then, 1 now\); resume with the same"):
        evaluate(_config(tmp_path, images, "out", fixed_start=[], baseline=False, limit=2, seed=1), resume=True)
    with pytest.raises(ValueError, match="pass --resume"):
        evaluate(_config(tmp_path, images, "out", fixed_start=[], baseline=False, limit=2))


def test_bad_arguments_fail_before_work(setup):
    tmp_path, images = setup
    with pytest.raises(ValueError, match="no severity encoder for task 'motion-blur'"):
        Evaluator(_config(tmp_path, images, "x", task="motion-blur"))
    with pytest.raises(ValueError, match="outside the sampler's grid"):
        Evaluator(_config(tmp_path, images, "x", fixed_start=[6]))
    with pytest.raises(ValueError, match="severity-range"):
        Evaluator(_config(tmp_path, images, "x", severity_range=(0.5, 2.0)))


def test_a_log_file_gets_a_line_per_method_and_batch(setup, quiet_lpips, capsys):
    """stderr not a terminal (pytest captures it): one line at the start, then one per method and
    batch with its NFE; progress=False is silent."""
    tmp_path, images = setup
    evaluate(_config(tmp_path, images, "lines", limit=3, batching="fixed"), progress=None)
    lines = capsys.readouterr().err.splitlines()
    ours = [line for line in lines if line.startswith("eval gaussian-blur: ")]
    assert ours[0] == ("eval gaussian-blur: 3 images in 2 batches of up to 2, 1 process: Flash(latent-dps) on "
                       "ddim-6 (η=0), latent-dps on ddim-6 (η=0), fixed start 2")
    stages = ours[1:]
    assert len(stages) == 2 * 3
    assert stages[0].startswith("eval gaussian-blur: batch 1/2: Flash(latent-dps): 2 images, mean NFE ")
    assert stages[1].startswith("eval gaussian-blur: batch 1/2: latent-dps on ddim-6 (η=0): 2 images, mean NFE 6.0, ")
    assert stages[5].startswith("eval gaussian-blur: batch 2/2: fixed start 2: 1 image, mean NFE 2.0, ")
    assert all("s/image)" in line for line in stages)
    evaluate(_config(tmp_path, images, "silent", limit=3), progress=False)
    assert "eval gaussian-blur" not in capsys.readouterr().err


def test_image_seed_depends_on_name_and_seed_only():
    assert image_seed("00001.png", 0) == image_seed("00001.png", 0)
    assert image_seed("00001.png", 0) != image_seed("00002.png", 0)
    assert image_seed("00001.png", 0) != image_seed("00001.png", 1)
    assert 0 <= image_seed("a" * 200, 3) < 2**63


def test_image_seeds_do_not_collide():
    """The old rule (the name's bytes as a little-endian integer mod 2³²−1) gave 10000.png and
    00001.png one seed, and 00000…29999.png only 12,000 seeds."""
    seeds = {image_seed(f"{i:05d}.png", 0) for i in range(30_000)}
    assert len(seeds) == 30_000
    assert image_seed("10000.png", 0) != image_seed("00001.png", 0)
    x = torch.full((2, 3, 16, 16), 0.5)
    _, levels, operator, y = degrade(get_task("motion-blur"), ["10000.png", "00001.png"], x, (0.0, 1.0), 0)
    assert levels[0] != levels[1] and operator.seed[0] != operator.seed[1]
    assert not torch.equal(y[0], y[1])


def test_resume_refuses_a_run_made_with_the_old_seed_rule(setup, quiet_lpips):
    tmp_path, images = setup
    config = _config(tmp_path, images, "old", fixed_start=[], baseline=False, limit=2)
    evaluate(config, progress=False)
    run_file = tmp_path / "old" / "run.json"
    identity = json.loads(run_file.read_text())
    assert identity["seed_rule"] == SEED_RULE
    del identity["seed_rule"]  # what a run of the earlier versions recorded
    run_file.write_text(json.dumps(identity))
    records = (tmp_path / "old" / RECORDS).read_text()
    with pytest.raises(ValueError, match=r"^--resume: .* drew its per-image seeds by the file name's bytes as a "
                                         r"little-endian integer .* never mixes the two; start a new run"):
        evaluate(config, resume=True, progress=False)
    assert (tmp_path / "old" / RECORDS).read_text() == records  # nothing deleted or added


def test_one_severity_level_has_no_ordering_accuracy_or_spearman(setup, quiet_lpips, capsys):
    """--severity-range 0.5 0.5: no pair of levels can be ordered, so OA and Spearman are null in
    results.json and "–" in eval's and compare's tables (an earlier version reported OA 0.000)."""
    tmp_path, images = setup
    out = tmp_path / "point"
    assert main(["eval", "--data", str(images), "--task", "gaussian-blur", "--model", str(tmp_path / "model"),
                 "--steps", "2", "--limit", "3", "--severity-range", "0.5", "0.5", "--out", str(out)]) == 0
    line = "Severity encoder: Spearman(σ̂, t) = –; ordering accuracy = –"
    assert line in capsys.readouterr().out
    saved = json.loads((out / "results.json").read_text())
    assert {k: saved["severity"][k] for k in ("spearman", "spearman_grid", "ordering_accuracy",
                                              "ordering_accuracy_std")} == dict.fromkeys(
        ("spearman", "spearman_grid", "ordering_accuracy", "ordering_accuracy_std"))
    assert [r["ordering_accuracy"] for r in saved["images"]] == [None] * 3
    assert line in compare([out])
    # results written by an earlier version (OA 0 for one level) are shown as "–" too
    saved["severity"] |= {"ordering_accuracy": 0.0, "ordering_accuracy_std": 0.0}
    (out / "results.json").write_text(json.dumps(saved))
    assert line in compare([out])


def test_cli_eval_and_compare(setup, quiet_lpips, capsys):
    tmp_path, images = setup
    out = tmp_path / "cli"
    assert main(["eval", "--data", str(images), "--task", "gaussian-blur", "--model", str(tmp_path / "model"),
                 "--steps", "4", "--baseline", "--limit", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| Flash(latent-dps) |" in printed and "| latent-dps |" in printed
    table = compare([out])
    assert "speed-up" in table and "AE (decode ẑ)" in table and "| 4.0 |" in table
    assert f"over the ordering grid ({2 * OA_LEVELS * OA_SEEDS} draws)" in table
    # each method's hyper-parameters, as results.json records them (the solver's defaults here)
    params = json.loads((out / "results.json").read_text())["hyperparameters"]
    assert params["flash"] == get_solver("latent-dps").defaults["gaussian-blur"] == {**params["baseline"], "c": 1.2}
    assert "Hyper-parameters: Flash(latent-dps) c=1.2, η=1; latent-dps η=1" in table
    assert main(["compare", str(tmp_path / "missing")]) == 2


def _comparable_records(result: dict) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in result["images"]]


def test_two_process_launch_equals_one_process(setup, tmp_path):
    """``torchrun --standalone --nproc_per_node 2 -m flash_wrap eval`` exactly as the README writes it
    (no ``--device``, on a machine without CUDA) shards the images and merges one results file,
    equal to the same command's in one process (run here in the test process: a third process
    would only import torch and diffusers once more)."""
    import os
    import subprocess
    import sys

    tmp_path, images = setup
    args = ["eval", "--data", str(images), "--task", "gaussian-blur", "--model", str(tmp_path / "model"),
            "--steps", "6", "--baseline", "--batch-size", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    launcher = Path(sys.executable).with_name("torchrun")  # the console script, as the README calls it
    torchrun = [str(launcher)] if launcher.is_file() else [sys.executable, "-m", "torch.distributed.run"]
    torchrun += ["--standalone", "--nproc_per_node", "2"]
    multi = subprocess.run([*torchrun, "-m", "flash_wrap", *args, "--out", str(tmp_path / "two")],
                           env=env, capture_output=True, text=True, timeout=300)
    assert multi.returncode == 0, multi.stderr[-3000:]
    one = json.loads((tmp_path / "one" / "results.json").read_text())
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert [r["name"] for r in two["images"]] == [r["name"] for r in one["images"]]  # each image once, in order
    assert len((tmp_path / "two" / RECORDS).read_text().splitlines()) == 5
    a, b = _comparable_records(one), _comparable_records(two)
    def same(u, v) -> bool:
        if isinstance(u, float) and isinstance(v, float):
            return u == pytest.approx(v, rel=1e-4, abs=1e-5)
        return u == v

    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys()
        for key in ra:
            if isinstance(ra[key], dict):
                assert ra[key].keys() == rb[key].keys()
                for m in ra[key]:
                    assert same(ra[key][m], rb[key][m]), (key, m, ra[key][m], rb[key][m])
            else:
                assert same(ra[key], rb[key]), (key, ra[key], rb[key])


def test_eval_and_demo_run_the_same_sampler_for_the_same_steps(setup):
    # one grid rule: "--steps 6" is DDIM-6 with the solver's own η in both commands (the demo used
    # to pass η = 1 while eval used 0, so the same request ran two different samplers)
    tmp_path, images = setup
    result = evaluate(_config(tmp_path, images, "same", baseline=False, fixed_start=[], limit=2), progress=False)
    demo = run_demo(model=str(tmp_path / "model"), out=tmp_path / "demo", faces=images, n_faces=1, steps=6,
                    tasks=("gaussian-blur",), progress=False)
    assert (result["scheduler"], result["steps"], result["ddim_eta"]) == ("ddim", 6, 0.0)
    assert demo["grid"] == "ddim-6 (η=0)"


def test_baseline_on_its_own_grid(setup, quiet_lpips):
    """--baseline-steps: Flash on one grid, the bare solver on another, each with its own step size;
    each method's records equal those of a run on its grid alone."""
    tmp_path, images = setup
    model = Path(tmp_path / "model")
    from flash_wrap import LatentDiffusion, tuning
    from flash_wrap.grid import GridSpec

    loaded = LatentDiffusion.from_pretrained(model)
    tuning.record(loaded, tuning.TunedKey("latent-dps", "gaussian-blur", GridSpec("ddim", 6, 0.0), bare=True),
                  {"eta": 0.3})
    loaded.save_tuned_values(model)
    mixed = evaluate(_config(tmp_path, images, "mixed", steps=4, baseline_steps=6, fixed_start=[], limit=3),
                     progress=False)
    flash_only = evaluate(_config(tmp_path, images, "flash4", steps=4, baseline=False, fixed_start=[], limit=3),
                          progress=False)
    bare_six = evaluate(_config(tmp_path, images, "bare6", steps=6, fixed_start=[], limit=3), progress=False)
    assert mixed["steps"] == 4 and mixed["grid"] == "ddim-4 (η=0)" and mixed["methods"]["baseline"]["nfe_mean"] == 6
    assert mixed["baseline_grid"] == {"steps": 6, "scheduler": "ddim", "ddim_eta": 0.0, "label": "ddim-6 (η=0)"}
    assert flash_only["baseline_grid"] is None and bare_six["baseline_grid"]["label"] == "ddim-6 (η=0)"
    for m, f, b in zip(mixed["images"], flash_only["images"], bare_six["images"]):
        assert m["psnr"]["flash"] == f["psnr"]["flash"] and m["nfe"]["flash"] == f["nfe"]["flash"]
        assert m["psnr"]["baseline"] == b["psnr"]["baseline"]
    # the bare run reads baseline_defaults for its own grid, not for Flash's
    assert mixed["hyperparameters"]["baseline"] == {"eta": 0.3}
    assert mixed["hyperparameters"]["flash"]["eta"] == 1.0
    table = compare([tmp_path / "mixed"])
    assert "Flash on ddim-4 (η=0), baseline on ddim-6 (η=0)" in table
    assert "| latent-dps on ddim-6 (η=0) | " in table and "latent-dps on ddim-6 (η=0) η=0.3" in table
    # a run on one grid keeps its plain table
    assert "| latent-dps |" in compare([tmp_path / "bare6"]) and "baseline on" not in compare([tmp_path / "bare6"])
    # Flash against the bare solver, image by image, under each table and in one summary table
    diffs = [r["psnr"]["flash"] - r["psnr"]["baseline"] for r in mixed["images"]]
    pair = paired(mixed)
    assert pair["difference"] == pytest.approx(sum(diffs) / 3) and pair["n"] == 3
    assert pair["above"] == sum(d > 0 for d in diffs) and pair["nfe_ratio"] == pytest.approx(
        6 / mixed["methods"]["flash"]["nfe_mean"])
    mean = sum(diffs) / 3
    assert pair["standard_error"] == pytest.approx((sum((d - mean) ** 2 for d in diffs) / 2 / 3) ** 0.5)
    assert f"Flash − bare: {pair['difference']:+.2f} dB PSNR" in table
    both = compare([tmp_path / "mixed", tmp_path / "flash4", tmp_path / "bare6"])
    assert "**Flash against the bare solver**" in both and "**Flash against the bare solver**" not in table
    rows = [line for line in both.split("**Flash against the bare solver**")[1].splitlines() if line.startswith("| ")]
    assert len(rows) == 3  # header + the two runs with a baseline; the Flash-only run has none
    model_cell = f"`{mixed['model']}`"
    assert rows[1].startswith(f"| gaussian-blur | latent-dps | {model_cell} | Flash on ddim-4 (η=0), bare on ddim-6 (η=0) | ")
    assert f"| {pair['difference']:+.2f} dB |" in rows[1] and f"| {pair['above']} / 3 |" in rows[1]
    assert rows[2].startswith(f"| gaussian-blur | latent-dps | {model_cell} | ddim-6 (η=0) | ") and paired(flash_only) is None
    assert len(rows[0].split("|")) == len(rows[1].split("|"))  # as many cells as the header
    # a diverged image (NaN PSNR) is left out of the pairing and said so, not a traceback
    broken = json.loads((tmp_path / "mixed" / "results.json").read_text())
    broken["images"][0]["psnr"]["flash"] = float("nan")
    (tmp_path / "nan").mkdir()
    (tmp_path / "nan" / "results.json").write_text(json.dumps(broken))
    text = compare([tmp_path / "nan"])
    assert "above on " in text and "of 2 images" in text and "; 1 image without a finite PSNR left out" in text
    assert paired(broken)["n"] == 2 and paired(broken)["left_out"] == 1
    # results written before per-image records were kept: the summary row keeps the means, no pairing
    del broken["images"]
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "results.json").write_text(json.dumps(broken))
    old_rows = [line for line in compare([tmp_path / "old", tmp_path / "mixed"]).splitlines()
                if line.startswith("| gaussian-blur | latent-dps |")]
    assert len(old_rows) == 2 and "| – | – |" in old_rows[0] and "Flash − bare" not in compare([tmp_path / "old"])
    # a run without the options records neither in run.json, so runs from before them still resume
    assert "baseline_steps" not in (tmp_path / "bare6" / "run.json").read_text()
    assert json.loads((tmp_path / "mixed" / "run.json").read_text())["arguments"]["baseline_steps"] == 6
    # a resume with another baseline grid is refused; one with the same continues
    with pytest.raises(ValueError, match=r"different --baseline-steps \(6 then, 5 now\)"):
        evaluate(_config(tmp_path, images, "mixed", steps=4, baseline_steps=5, fixed_start=[], limit=3), resume=True)
    evaluate(_config(tmp_path, images, "mixed", steps=4, baseline_steps=6, fixed_start=[], limit=3), resume=True,
             progress=False)


def test_baseline_grid_options_need_a_baseline_and_a_valid_grid(setup, capsys):
    tmp_path, images = setup
    with pytest.raises(ValueError, match=r"--baseline-steps set the bare solver's grid, but the run has no baseline"):
        _config(tmp_path, images, "x", baseline=False, baseline_steps=6)
    with pytest.raises(ValueError, match="baseline_steps must lie in"):
        _config(tmp_path, images, "x", baseline_steps=0)
    with pytest.raises(ValueError, match=r"the bare solver's grid \(--baseline-steps 6, --baseline-scheduler ddpm\) "
                                         r"is not one latent-dps can run: .*set both --baseline-steps and"):
        Evaluator(_config(tmp_path, images, "x", baseline_scheduler="ddpm", baseline_steps=6))
    with pytest.raises(ValueError, match=r"\(--baseline-steps 1000, ddim from --scheduler\)"):
        Evaluator(_config(tmp_path, images, "x", steps=4, scheduler="ddim", baseline_steps=1000))
    # DDPM has one grid, so --baseline-scheduler ddpm alone runs every timestep (not the run's 6)
    assert Evaluator(_config(tmp_path, images, "x", baseline_scheduler="ddpm")).baseline_solver.grid.label() == "ddpm-1000"
    argv = ["eval", "--data", str(images), "--task", "gaussian-blur", "--model", str(tmp_path / "model"),
            "--out", str(tmp_path / "cli"), "--baseline-scheduler", "ddim"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--baseline-scheduler set the bare solver's grid" in err and "add --baseline" in err
    assert not (tmp_path / "cli").exists()


def test_paired_nfe_wording_follows_the_ratio():
    """The bare solver may be given fewer steps than Flash takes (--baseline-steps): the line then
    says "more", and the same NFE is said as such."""
    from flash_wrap.apps.evaluation.compare import _paired_text

    base = {"difference": 0.5, "standard_error": 0.1, "above": 2, "n": 3, "left_out": 0}
    assert _paired_text({**base, "nfe_ratio": 6.0}).endswith("above on 2 of 3 images, at 6.0× fewer NFE")
    assert _paired_text({**base, "nfe_ratio": 0.75}).endswith("at 1.3× more NFE")
    assert _paired_text({**base, "nfe_ratio": 1.0}).endswith("at the same NFE")
    assert _paired_text({**base, "nfe_ratio": None}).endswith("above on 2 of 3 images")
    assert _paired_text({**base, "n": 1, "above": 1, "standard_error": None, "nfe_ratio": None}) == (
        "+0.50 dB PSNR, above on 1 of 1 image")


def test_nfe_budget_is_calibrated_on_every_image_and_reported_beside_the_unbudgeted_run(tmp_path, quiet_lpips,
                                                                                        capsys):
    from flash_wrap.apps.evaluation.budget import dataset_snr_scale
    from flash_wrap.budget import calibrate_budget
    from flash_wrap.images import list_images

    model = tiny_model("taef2", image_size=32, seed=0)
    with torch.random.fork_rng(devices=[]), torch.no_grad():  # a head that does not depend on the test order,
        torch.manual_seed(1)
        encoder = model.make_severity_encoder()
        for tensor in encoder.variance_head.parameters():  # scaled so that σ̂ asks for several of the 20 steps
            tensor.mul_(5)
    model.add_severity_encoder("gaussian-blur", encoder)
    model.save_pretrained(tmp_path / "model")
    images = write_images(tmp_path / "images", 5, 40, 36)
    task, snr = get_task("gaussian-blur"), get_solver("latent-dps")(model, steps=20).sampler.snr
    free = dataset_snr_scale(model, task, list_images(images), task.eval_range, 0, 2, snr, 20)["nfe_mean_expected"]
    assert free >= 2  # enough unbudgeted steps for half of them to be a binding budget
    out = tmp_path / "budget"
    assert main(["eval", "--data", str(images), "--task", "gaussian-blur", "--model", str(tmp_path / "model"),
                 "--steps", "20", "--batch-size", "2", "--nfe-budget", str(free / 2), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "results.json").read_text())
    budget, records = result["nfe_budget"], result["images"]
    assert result["methods"]["flash"]["nfe_mean"] == pytest.approx(free)
    assert budget["nfe_mean"] == result["methods"]["flash_budget"]["nfe_mean"] <= free / 2
    assert budget["nfe_mean_unbudgeted"] == result["methods"]["flash"]["nfe_mean"]
    assert budget["within_budget"] and budget["order_kept"] and budget["snr_scale"] > 1
    assert budget["psnr"] is not None and budget["psnr_unbudgeted"] == result["methods"]["flash"]["psnr"]
    # one λ for the whole dataset (5 images in 3 batches), as calibrate_budget gives on all σ̂
    sigma_hat = torch.tensor([r["sigma_hat"] for r in records])
    assert budget["snr_scale"] == pytest.approx(calibrate_budget(sigma_hat, snr, free / 2), rel=1e-5)
    assert budget["calibrated_on"] == 5
    assert all(r["nfe"]["flash_budget"] == r["start_step_budget"] <= r["start_step"] for r in records)
    assert all(r["out_of_range"] is None for r in records)  # this encoder records no σ̂ range
    assert "| Flash(latent-dps) within NFE budget |" in printed and f"NFE budget {free / 2:g}: SNR scale λ = " in printed


def test_an_nfe_budget_outside_the_grid_is_refused_before_work(setup, capsys):
    tmp_path, images = setup
    base = ["eval", "--data", str(images), "--task", "gaussian-blur", "--model", str(tmp_path / "model"),
            "--steps", "20"]
    assert main([*base, "--nfe-budget", "0", "--out", str(tmp_path / "a")]) == 2
    assert "--nfe-budget" in capsys.readouterr().err
    assert main([*base, "--nfe-budget", "21", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert "nfe_budget must be a mean number of denoiser calls in (0, 20]" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "b").exists()


def test_eval_records_the_out_of_range_flag_per_image(tmp_path, quiet_lpips, capsys):
    model = tiny_model("taef2", image_size=32, seed=0)
    # a recorded range no σ̂ of this random encoder can fall into: every image is flagged
    model.add_severity_encoder("gaussian-blur", model.make_severity_encoder(),
                               {"sigma_hat_range": {"low": 0.0, "high": 1e-9, "quantiles": [0.001, 0.999], "n": 1}})
    model.save_pretrained(tmp_path / "model")
    images = write_images(tmp_path / "images", 3, 32, 32)
    with pytest.warns(RuntimeWarning, match=r"samples lie outside what the .* saw on its training data \(σ̂ outside"):
        assert main(["eval", "--data", str(images), "--task", "gaussian-blur", "--model", str(tmp_path / "model"),
                     "--steps", "3", "--out", str(tmp_path / "out")]) == 0
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [r["out_of_range"] for r in result["images"]] == [True] * 3 and result["out_of_range"] == 3
    assert "σ̂ outside the severity encoder's training range: 3 images" in capsys.readouterr().out


def test_streamed_bucketed_and_fixed_batches_give_the_same_images(setup, quiet_lpips):
    """A sample's result depends only on its own seed: the three --batching modes agree per image
    (exactly here, float32 on CPU), and the mode is recorded; a resume with another mode is refused."""
    tmp_path, images = setup
    runs = {mode: evaluate(_config(tmp_path, images, mode, batching=mode, fixed_start=[], batch_size=2),
                             progress=False)
            for mode in ("stream", "buckets", "fixed")}
    def flat(records):  # every number of the records but the timings, by path
        def walk(value, path):
            if isinstance(value, dict):
                return [kv for k, v in value.items() if k != "seconds" for kv in walk(v, f"{path}.{k}")]
            if isinstance(value, list):
                return [kv for i, v in enumerate(value) for kv in walk(v, f"{path}[{i}]")]
            return [(path, value)]
        return dict(walk(records, ""))

    fixed = flat(runs["fixed"]["images"])
    for mode in ("stream", "buckets"):
        other = flat(runs[mode]["images"])
        assert other.keys() == fixed.keys()
        exact = [k for k in fixed if isinstance(fixed[k], (str, int, bool)) or fixed[k] is None]
        assert {k: other[k] for k in exact} == {k: fixed[k] for k in exact}  # names, start steps, NFE
        assert {k: other[k] for k in fixed if k not in exact} == pytest.approx(
            {k: fixed[k] for k in fixed if k not in exact}, rel=1e-4, abs=1e-5)  # float32 rounding
    assert runs["stream"]["batching"] == {"flash": "stream", "slots": 2, "unit": 16}
    assert runs["fixed"]["batching"] == {"flash": "fixed", "slots": 2, "unit": 2}
    assert json.loads((tmp_path / "stream" / "run.json").read_text())["arguments"]["batching"] == "stream"
    with pytest.raises(RunFolderError, match=r"^--resume: .* was run with a different --batching"):
        evaluate(_config(tmp_path, images, "stream", batching="fixed", fixed_start=[]), resume=True, progress=False)
    with pytest.raises(InvalidInput, match="drop --window"):
        _config(tmp_path, images, "x", batching="fixed", window=4)


def test_eval_on_a_flow_model_records_the_path(tmp_path, quiet_lpips):
    """eval runs a rectified-flow bundle (Flash, bare and fixed starts on its σ grid) and records the path
    in results.json and in run.json (ALGORITHMS.md §12); a VP run records "vp" in results.json only."""
    model = tiny_model("taef2", image_size=32, seed=0, flow_shift=1.0)
    model.add_severity_encoder("gaussian-blur", model.make_severity_encoder())
    model.save_pretrained(tmp_path / "model")
    images = write_images(tmp_path / "images", 3, 32, 32)
    result = evaluate(_config(tmp_path, images, "flow"), progress=False)
    assert result["path"] == "flow" and result["grid"] == "ddim-6 (η=0)"
    assert result["methods"]["baseline"]["nfe_mean"] == 6 and result["methods"]["fixed_start_2"]["nfe_mean"] == 2
    assert all(0 <= r["start_step"] <= 6 and r["nfe"]["flash"] == r["start_step"] for r in result["images"])
    assert all(r["psnr"]["flash"] == r["psnr"]["flash"] for r in result["images"])  # finite, not NaN
    assert json.loads((tmp_path / "flow" / "run.json").read_text())["path"] == "flow"
