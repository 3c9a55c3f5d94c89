"""``flash-wrap tune``: the grid's table and JSON agree with the per-image rows, the best values
reach the bundle and are used afterwards (``get_solver``, ``eval``), resume, refusals before work."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import torch
from PIL import Image

from flash_wrap import LatentDiffusion, get_solver
from flash_wrap.apps import tune as tune_module
from flash_wrap.apps.cli import main
from flash_wrap.apps.evaluation.runner import EvalConfig, evaluate
from flash_wrap.degradation import image_generators, image_seed
from flash_wrap.testing import tiny_model, write_images

TASK = "gaussian-blur"
GRID = "ddim-6 (η=0)"  # the tests' grid (--steps 6): not Latent-DPS's own, so Flash's values go to flash_defaults


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A tiny bundle with a (random) Gaussian-blur severity encoder and 3 validation images."""
    model = tiny_model("taef2", image_size=32, seed=0)
    model.add_severity_encoder(TASK, model.make_severity_encoder())
    model.save_pretrained(tmp_path / "model")
    return tmp_path / "model", write_images(tmp_path / "val", 3, 40, 36), tmp_path / "out"


def _args(model: Path, data: Path, out: Path, *extra: str, eta=("0.05", "0.5"), c=("0.5", "1.2")) -> list[str]:
    args = ["tune", "--model", str(model), "--task", TASK, "--solver", "latent-dps", "--data", str(data),
            "--out", str(out), "--steps", "6", "--batch-size", "2", "--eta", *eta]
    return args + (["--c", *c] if c else []) + list(extra)


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "tune.jsonl").read_text().splitlines()]


def _index(model: Path) -> dict:
    return json.loads((model / "model_index.json").read_text())


@pytest.fixture
def no_model_load(monkeypatch):
    """Refusals must come before any model loads."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the refusal")

    monkeypatch.setattr(tune_module.LatentDiffusion, "from_pretrained", refuse)


def test_table_json_and_bundle_agree_with_the_rows(setup, capsys):
    model, data, out = setup
    assert main(_args(model, data, out)) == 0
    printed = capsys.readouterr()
    rows = _rows(out)
    assert len(rows) == 2 * 2 * 3 and len({(r["eta"], r["c"], r["name"]) for r in rows}) == 12
    result = json.loads((out / "tune.json").read_text())
    assert [(g["eta"], g["c"]) for g in result["grid"]] == [(0.05, 0.5), (0.5, 0.5), (0.05, 1.2), (0.5, 1.2)]
    for g in result["grid"]:
        mine = [r for r in rows if (r["eta"], r["c"]) == (g["eta"], g["c"])]
        assert g["n"] == len(mine) == 3 and g["diverged"] == 0
        assert g["psnr_mean"] == pytest.approx(statistics.fmean(r["psnr"] for r in mine), abs=1e-12)
        assert g["psnr_std"] == pytest.approx(statistics.pstdev(r["psnr"] for r in mine), abs=1e-12)
        assert g["nfe_mean"] == statistics.fmean(r["nfe"] for r in mine)
    best = max(result["grid"], key=lambda g: g["psnr_mean"])
    assert result["best"] == best
    assert len({g["psnr_mean"] for g in result["grid"]}) == 4  # η and c both change the result here
    # the start step depends on σ̂ alone: neither η nor c changes an image's NFE
    for name in ("000.png", "001.png", "002.png"):
        assert len({(r["nfe"], r["start_step"]) for r in rows if r["name"] == name}) == 1
        assert all(r["nfe"] == r["start_step"] for r in rows)
    # each image is degraded as eval degrades it: its level is its own file-name seed's draw
    for r in rows:
        level = float(torch.rand(1, generator=image_generators([image_seed(r["name"], 0)], 0)[0]))
        assert r["severity"] == pytest.approx(level, abs=1e-12)

    table = [line for line in printed.out.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(table) == 4 and sum("← best" in line for line in table) == 1
    marked = next(line for line in table if "← best" in line).split("|")
    assert (float(marked[1]), float(marked[2]), float(marked[3])) == pytest.approx(
        (best["eta"], best["c"], round(best["psnr_mean"], 2)))
    assert f"wrote eta={best['eta']:g}, c={best['c']:g} into {model.resolve()}" in printed.out
    # without a terminal: one line per configuration instead of progress bars
    stages = [line for line in printed.err.splitlines() if line.startswith("flash-wrap tune: ")]
    assert [s.split()[2] for s in stages] == ["1/4", "2/4", "3/4", "4/4"]

    tuned = {"eta": best["eta"], "c": best["c"]}
    assert _index(model)["flash_defaults"] == {"latent-dps": {TASK: {GRID: tuned}}}
    assert _index(model)["solver_defaults"] == {}  # another grid than the solver's own: that grid only
    reloaded = LatentDiffusion.from_pretrained(model)
    assert get_solver("latent-dps")(reloaded, steps=6).hyperparameters(TASK) == tuned  # what Flash on that grid uses
    readers = f"flash_defaults of latent-dps for {TASK} on {GRID}: read by Flash on {GRID} only"
    assert result["written"] == {"folder": str(model.resolve()), "copied": False, "values": tuned,
                                 "section": "flash_defaults", "grid": GRID, "readers": readers}
    assert f"(flash_defaults of latent-dps for {TASK} on {GRID}: read by Flash on {GRID} only)" in printed.out
    assert result["method"] == "flash" and _index(model)["baseline_defaults"] == {}

    figure = out / "tune.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(figure) as img:
        img.verify()
    with Image.open(figure) as img:
        assert img.width > 300 and img.height > 200


def test_eval_on_the_tuned_bundle_runs_the_tuned_eta(setup, monkeypatch, tmp_path):
    """Without --c only η is written; every solver built on the bundle uses it, and eval's Flash
    reproduces tune's best row image by image (same degradations, same noise)."""
    model, data, out = setup
    assert main(_args(model, data, out, c=None)) == 0
    result = json.loads((out / "tune.json").read_text())
    best = result["best"]
    default_c = get_solver("latent-dps").defaults[TASK]["c"]
    assert result["tuned"] == ["eta"] and {g["c"] for g in result["grid"]} == {default_c}
    assert _index(model)["flash_defaults"] == {"latent-dps": {TASK: {GRID: {"eta": best["eta"]}}}}

    loaded = LatentDiffusion.from_pretrained(model)
    params = get_solver("latent-dps")(loaded, steps=6).hyperparameters(TASK)
    assert params["eta"] == best["eta"] != get_solver("latent-dps").defaults[TASK]["eta"]
    assert params["c"] == default_c

    monkeypatch.setattr("flash_wrap.apps.evaluation.runner.LPIPS.load", classmethod(lambda cls: None))
    evaluated = evaluate(EvalConfig(data=str(data), task=TASK, solver="latent-dps", out=str(tmp_path / "eval"),
                                    model=str(model), steps=6, batch_size=2), progress=False)
    rows = {r["name"]: r for r in _rows(out) if (r["eta"], r["c"]) == (best["eta"], best["c"])}
    other = {r["name"]: r for r in _rows(out) if r["eta"] != best["eta"]}
    for record in evaluated["images"]:
        assert record["psnr"]["flash"] == pytest.approx(rows[record["name"]]["psnr"], abs=1e-4)
        assert record["nfe"]["flash"] == rows[record["name"]]["nfe"]
    assert any(abs(r["psnr"] - rows[n]["psnr"]) > 1e-3 for n, r in other.items())  # η visibly matters


def test_output_writes_a_copy_and_leaves_the_model_alone(setup, tmp_path, monkeypatch):
    model, data, out = setup
    before = (model / "model_index.json").read_bytes()
    copy = tmp_path / "tuned"
    assert main(_args(model, data, out, "--save-to", str(copy), c=("1.0",))) == 0
    assert (model / "model_index.json").read_bytes() == before
    best = json.loads((out / "tune.json").read_text())["best"]
    assert _index(copy)["flash_defaults"] == {"latent-dps": {TASK: {GRID: {"eta": best["eta"], "c": 1.0}}}}
    # the same command again continues into the copy it wrote: nothing to recompute
    monkeypatch.setattr(tune_module.Tuner, "run_batch", lambda *a: pytest.fail("recomputed a finished row"))
    assert main(_args(model, data, out, "--save-to", str(copy), "--resume", c=("1.0",))) == 0


def test_an_output_bundle_written_earlier_from_the_model_is_the_one_tuned(setup, tmp_path):
    """After ``train-severity --model M --save-to X``, ``tune --model M --save-to X`` tunes X's new
    encoder (the one its values will go with), not M's."""
    from flash_wrap.apps.bundles import write_bundle

    model, data, out = setup
    retrained = LatentDiffusion.from_pretrained(model)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        retrained.add_severity_encoder(TASK, retrained.make_severity_encoder())  # a fresh variance head
    derived = tmp_path / "derived"
    write_bundle(retrained, derived, source=model)

    assert main(_args(model, data, out, "--save-to", str(derived), c=None)) == 0
    assert main(_args(derived, data, tmp_path / "direct", "--no-write", c=None)) == 0
    assert main(_args(model, data, tmp_path / "original", "--no-write", c=None)) == 0
    sigma = {run: [r["sigma_hat"] for r in _rows(tmp_path / run)] for run in ("out", "direct", "original")}
    assert sigma["out"] == sigma["direct"] != sigma["original"]
    assert "latent-dps" in _index(derived)["flash_defaults"] and _index(model)["flash_defaults"] == {}


def test_no_write_only_reports(setup, capsys):
    model, data, out = setup
    before = (model / "model_index.json").read_bytes()
    assert main(_args(model, data, out, "--no-write", c=None)) == 0
    assert (model / "model_index.json").read_bytes() == before
    assert json.loads((out / "tune.json").read_text())["written"] is None
    assert "nothing written (--no-write)" in capsys.readouterr().out


def test_resume_continues_without_recomputing(setup, monkeypatch, capsys):
    model, data, out = setup
    real = tune_module.Tuner.run_batch
    calls: list[tuple] = []

    def counted(self, files, setting):
        if len(calls) == limit[0]:
            raise KeyboardInterrupt
        calls.append((setting, tuple(f.name for f in files)))
        return real(self, files, setting)

    monkeypatch.setattr(tune_module.Tuner, "run_batch", counted)
    limit = [3]  # 2 configurations × 2 batches (2 + 1 images): stop before the last batch
    assert main(_args(model, data, out, c=("1.0",))) == 130
    assert len(_rows(out)) == 2 + 1 + 2
    assert _index(model)["flash_defaults"] == {}  # nothing is written before the grid is complete
    with open(out / "tune.jsonl", "a") as f:
        f.write('{"eta": 0.5, "c": 1.0, "na')  # a line cut short by the interruption

    calls.clear()
    limit[0] = 99
    assert main(_args(model, data, out, "--resume", c=("1.0",))) == 0
    assert calls == [((0.5, 1.0), ("002.png",))]  # only the missing batch ran
    rows = _rows(out)
    assert len(rows) == 6 and len({(r["eta"], r["name"]) for r in rows}) == 6

    uninterrupted = out.parent / "whole"
    calls.clear()
    assert main(_args(model, data, uninterrupted, "--no-write", c=("1.0",))) == 0
    assert len(calls) == 4
    key = {(r["eta"], r["name"]): r["psnr"] for r in _rows(uninterrupted)}
    assert {(r["eta"], r["name"]): r["psnr"] for r in rows} == pytest.approx(key, abs=1e-6)

    # resuming the finished run (whose bundle it has since written) recomputes nothing
    calls.clear()
    capsys.readouterr()
    assert main(_args(model, data, out, "--resume", c=("1.0",))) == 0
    assert calls == [] and len(_rows(out)) == 6
    assert "← best" in capsys.readouterr().out


def test_resume_refuses_changes_and_a_fresh_run_refuses_a_used_folder(setup, capsys):
    model, data, out = setup
    assert main(_args(model, data, out, "--no-write", c=None)) == 0
    capsys.readouterr()

    def refused(*args: str) -> str:
        assert main(list(args)) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("flash-wrap tune: error: ")
        return err

    assert "was run with a different --eta" in refused(*_args(model, data, out, "--resume", "--no-write",
                                                               eta=("0.05", "0.7"), c=None))
    assert "different --c" in refused(*_args(model, data, out, "--resume", "--no-write", c=("1.0",)))
    assert "different --seed" in refused(*_args(model, data, out, "--resume", "--no-write", "--seed", "3", c=None))
    write_images(data, 4, 40, 36, seed=1)  # one more image, and new content for the others
    assert "set of images" in refused(*_args(model, data, out, "--resume", "--no-write", c=None))
    assert "pass --resume" in refused(*_args(model, data, out, "--no-write", c=None))


def test_refusals_come_before_any_work(setup, capsys, no_model_load, tmp_path):
    model, data, out = setup

    def refused(args: list[str], expected: str) -> None:
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expected in err, err

    # the installed demo bundle and a diffusers pipeline folder are never written in place
    refused(_args("demo", data, out), "--save-to NEW_FOLDER")
    pipeline = tmp_path / "pipeline"
    pipeline.mkdir()
    (pipeline / "model_index.json").write_text(json.dumps({"_class_name": "LDMPipeline"}))
    refused(_args(pipeline, data, out), "pass --save-to")
    assert not out.exists()  # a refused run leaves no empty --out behind
    refused(_args("demo", data, out, "--no-write", "--save-to", str(tmp_path / "x")), "drop one of them")
    # a solver without a step size, listing what it has
    args = _args(model, data, out)
    args[args.index("latent-dps")] = "resample"
    refused(args, "solver 'resample' has no step size eta to tune; its hyper-parameters are c, every_n, gamma")
    # values are finite positives, checked while parsing
    for bad in ("0", "-1", "nan", "inf"):
        refused(_args(model, data, out, eta=("0.5", bad)), "--eta")
        refused(_args(model, data, out, c=(bad,)), "--c")
    # the validation images are never inside (or) the results folder
    inner = write_images(out / "val", 2, 40, 36)
    refused(_args(model, inner, out), "lies inside --out")
    refused(_args(model, inner, inner), "is inside the input folder")
    assert _index(model)["flash_defaults"] == {}


def test_a_configuration_that_diverged_on_an_image_is_never_the_best(setup, monkeypatch, capsys):
    model, data, out = setup
    real = tune_module.Tuner.run_batch

    def diverge_at_large_eta(self, files, setting):
        rows = real(self, files, setting)
        if setting[0] == 0.5:
            rows[0]["psnr"] = None  # as a non-finite reconstruction is recorded
        return rows

    monkeypatch.setattr(tune_module.Tuner, "run_batch", diverge_at_large_eta)
    assert main(_args(model, data, out, c=None)) == 0
    result = json.loads((out / "tune.json").read_text())
    large = next(g for g in result["grid"] if g["eta"] == 0.5)
    assert large["psnr_mean"] is None and large["diverged"] == 2  # one image in each of its two batches
    assert result["best"]["eta"] == 0.05 and _index(model)["flash_defaults"]["latent-dps"][TASK][GRID]["eta"] == 0.05
    assert "diverged (2/3)" in capsys.readouterr().out


def test_a_bundle_another_command_is_writing_is_refused(setup, capsys):
    from flash_wrap.apps.runs import exclusive

    model, data, out = setup
    with exclusive(model, what="flash-wrap train-severity gaussian-blur"):
        assert main(_args(model, data, out)) == 2
    err = capsys.readouterr().err
    assert "is being written by flash-wrap train-severity gaussian-blur" in err
    assert _index(model)["flash_defaults"] == {} and not (out / "tune.jsonl").exists()


def test_baseline_tunes_the_bare_solver_into_baseline_defaults(setup, monkeypatch, tmp_path, capsys):
    """--baseline: bare runs from noise (eval's baseline stream), the best η stored for this grid
    only; eval --baseline reproduces the best row image by image while Flash keeps its own η."""
    model, data, out = setup
    flash = get_solver("latent-dps").defaults[TASK]
    monkeypatch.setattr(tune_module.Flash, "reconstruct", lambda *a, **k: pytest.fail("--baseline ran Flash"))
    assert main(_args(model, data, out, c=None)[:-3] + ["--eta", "0.05", "0.5", "--baseline"]) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "tune.json").read_text())
    best = result["best"]
    assert result["method"] == "baseline" and result["grid_label"] == "ddim-6 (η=0)"
    assert [g["c"] for g in result["grid"]] == [None, None] and best["c"] is None
    rows = _rows(out)
    assert all(r["nfe"] == 6 and r["start_step"] == 6 and r["sigma_hat"] is None for r in rows)
    assert len({r["psnr"] for r in rows}) == len(rows)  # η changes every bare run here
    assert f"wrote eta={best['eta']:g} into {model.resolve()} (baseline_defaults of latent-dps for {TASK} on " \
           f"{GRID}: read by bare runs on {GRID} only)" in printed and "| – |" in printed
    index = _index(model)
    assert index["baseline_defaults"] == {"latent-dps": {TASK: {"ddim-6 (η=0)": {"eta": best["eta"]}}}}
    assert index["solver_defaults"] == index["flash_defaults"] == {}  # Flash's values are untouched

    loaded = LatentDiffusion.from_pretrained(model)
    solver = get_solver("latent-dps")(loaded, steps=6)
    assert solver.hyperparameters(TASK, baseline=True)["eta"] == best["eta"]
    assert solver.hyperparameters(TASK)["eta"] == flash["eta"] != best["eta"]  # Flash keeps its own
    # another grid is another tuning: the value is not used there
    assert get_solver("latent-dps")(loaded, steps=5).hyperparameters(TASK, baseline=True)["eta"] == flash["eta"]
    # an explicit override still wins over both
    assert get_solver("latent-dps")(loaded, steps=6, eta=0.3).hyperparameters(TASK, baseline=True)["eta"] == 0.3

    monkeypatch.undo()
    monkeypatch.setattr("flash_wrap.apps.evaluation.runner.LPIPS.load", classmethod(lambda cls: None))
    evaluated = evaluate(EvalConfig(data=str(data), task=TASK, solver="latent-dps", out=str(tmp_path / "eval"),
                                    model=str(model), steps=6, batch_size=2, baseline=True), progress=False)
    mine = {r["name"]: r for r in rows if r["eta"] == best["eta"]}
    for record in evaluated["images"]:
        assert record["psnr"]["baseline"] == pytest.approx(mine[record["name"]]["psnr"], abs=1e-4)
    assert evaluated["hyperparameters"]["baseline"]["eta"] == best["eta"]
    assert evaluated["hyperparameters"]["flash"]["eta"] == flash["eta"]


def test_baseline_refuses_c_before_any_work(setup, capsys, no_model_load):
    model, data, out = setup
    assert main(_args(model, data, out) + ["--baseline"]) == 2
    err = capsys.readouterr().err
    assert "--c is Flash's noise correction, which a bare run (--baseline) never uses" in err
    assert not out.exists()


def test_a_flash_tune_from_before_baseline_existed_still_resumes(setup, capsys):
    """run.json written before --baseline existed has no such argument: it reads as a Flash tune."""
    model, data, out = setup
    args = _args(model, data, out, "--no-write")
    assert main(args) == 0
    identity = json.loads((out / "run.json").read_text())
    assert "baseline" not in identity["arguments"]  # a Flash tune records none, as before
    assert "severity_range" not in identity["arguments"]  # nor a range it was not given
    assert main(args + ["--resume"]) == 0
    capsys.readouterr()
    # the same folder resumed as a baseline tune is another run
    assert main(_args(model, data, out, "--no-write", "--resume", "--baseline", c=None)) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and ("different" in err or "another version" in err), err


def test_flash_values_tuned_on_another_grid_serve_that_grid_only(setup, tmp_path, capsys):
    """A tune on the solver's own grid (DDPM-1000 for Latent-DPS) writes solver_defaults, which
    serve every grid; one on another grid writes flash_defaults for that grid, which never move
    the own grid (nor a third), and which win over solver_defaults on theirs."""
    model, data, out = setup
    assert main(_args(model, data, out, "--limit", "1", "--steps", "1000", eta=("0.3",), c=("0.7",))) == 0
    assert "(solver_defaults of latent-dps for gaussian-blur: read by Flash on every grid without its own entry; " \
           "tuned on ddpm-1000, latent-dps's own)" in capsys.readouterr().out
    assert _index(model)["solver_defaults"] == {"latent-dps": {TASK: {"eta": 0.3, "c": 0.7}}}
    assert _index(model)["flash_defaults"] == {}
    assert main(_args(model, data, tmp_path / "ddim", eta=("0.05", "0.5"), c=None)) == 0
    best = json.loads((tmp_path / "ddim" / "tune.json").read_text())["best"]
    assert best["c"] == 0.7  # a tune without --c keeps the bundle's c
    assert _index(model)["flash_defaults"] == {"latent-dps": {TASK: {GRID: {"eta": best["eta"]}}}}
    loaded = LatentDiffusion.from_pretrained(model)
    latent_dps = get_solver("latent-dps")
    assert latent_dps(loaded, steps=6).hyperparameters(TASK) == {"eta": best["eta"], "c": 0.7}
    for other in ({}, {"steps": 5}):  # the own grid and a third: solver_defaults
        assert latent_dps(loaded, **other).hyperparameters(TASK) == {"eta": 0.3, "c": 0.7}
    # a bare run reads neither flash_defaults nor c
    assert latent_dps(loaded, steps=6).hyperparameters(TASK, baseline=True) == {"eta": 0.3}




def test_a_bad_severity_range_is_refused_before_any_work(setup, capsys, no_model_load):
    model, data, out = setup
    assert main(_args(model, data, out, "--severity-range", "0.5", "0.2")) == 2
    assert "--severity-range must satisfy 0 <= low <= high <= 1, got (0.5, 0.2)" in capsys.readouterr().err
    assert not out.exists()


def test_severity_range_sets_the_levels_and_must_match_on_resume(setup, capsys, tmp_path):
    """--severity-range LOW HIGH draws each image's level from it exactly as eval's option does
    (the best η can depend on the severity); a resume without it is another run."""
    model, data, out = setup
    assert main(_args(model, data, out, "--no-write", "--severity-range", "0.1", "0.2", c=None)) == 0
    result = json.loads((out / "tune.json").read_text())
    assert result["severity_range"] == [0.1, 0.2]
    levels = {r["name"]: r["severity"] for r in _rows(out)}
    for name, level in levels.items():  # eval's draw from the same file-name seed, within the range
        u = float(torch.rand(1, generator=image_generators([image_seed(name, 0)], 0)[0]))
        assert level == pytest.approx(0.1 + 0.1 * u, abs=1e-6)  # levels are float32
    evaluated = evaluate(EvalConfig(data=str(data), task=TASK, solver="latent-dps", out=str(tmp_path / "eval"),
                                    model=str(model), steps=6, batch_size=2, severity_range=(0.1, 0.2)),
                         progress=False)
    assert {r["name"]: r["severity"] for r in evaluated["images"]} == pytest.approx(levels, abs=1e-6)
    assert main(_args(model, data, out, "--no-write", "--severity-range", "0.1", "0.2", "--resume", c=None)) == 0
    capsys.readouterr()
    assert main(_args(model, data, out, "--no-write", "--resume", c=None)) == 2
    assert "--severity-range (0.1 0.2 then, unset now)" in capsys.readouterr().err


def test_a_finite_reconstruction_far_below_the_degraded_input_counts_as_diverged(tmp_path, capsys):
    """--eta 1e30 on the demo model gives a finite PSNR far below the blurred input's: diverged,
    never written (earlier only a non-finite PSNR counted, and 1e30 reached the bundle)."""
    from flash_wrap.apps.demo import FACES_DIR

    out = tmp_path / "out"
    assert main(["tune", "--model", "demo", "--task", TASK, "--solver", "latent-dps", "--data", str(FACES_DIR),
                 "--limit", "1", "--steps", "4", "--eta", "1e30", "--no-write", "--out", str(out)]) == 2
    assert "every configuration diverged on at least one image" in capsys.readouterr().err
    (row,) = _rows(out)
    assert row["psnr"] is None and row["psnr_floor"] > 10  # 10 dB below an input of about 26 dB
