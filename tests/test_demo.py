"""The demo command: its severities, the numbers it writes (demo.json, demo.md), the figure and
its progress output."""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import math
import re
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from flash_wrap.apps import demo as demo_module
from flash_wrap.apps.cli import main
from flash_wrap.apps.demo import (
    DEFAULT_BASELINE_FACES,
    DEFAULT_FACES,
    DEFAULT_STEPS,
    NOISE_STREAM,
    ROW_KEYS,
    STREAMS,
    Progress,
    run_demo,
    sample_seed,
)
from flash_wrap.apps.demo_figure import CAPTION_IN, COLUMNS, DPI, HEADER_IN, MAX_WIDTH_PX, TILE_SCALE, figure_rows
from flash_wrap.images import list_images, load_image
from flash_wrap.models import LatentDiffusion
from flash_wrap.registry import get_task
from flash_wrap.testing import tiny_model, write_images

STEPS = 6
TASKS = ("gaussian-blur", "random-inpainting", "motion-blur", "super-resolution")
TOP_LEVEL = {"model", "solver", "grid", "image_size", "n_faces", "seed", "seconds", "rows", "hyperparameters"}


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(scope="module")
def demo_setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo")
    model = tiny_model("taef2", image_size=32, seed=0)
    for task in TASKS:
        model.add_severity_encoder(task, model.make_severity_encoder())
    model.save_pretrained(tmp / "model")
    return tmp, tmp / "model", write_images(tmp / "faces", 3, 64, 64)


@pytest.fixture(scope="module")
def demo_run(demo_setup):
    """One demo run on 2 faces with stderr captured as a non-terminal (a log file)."""
    tmp, model, faces = demo_setup
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        out = run_demo(model=str(model), out=tmp / "out", faces=faces, n_faces=2, steps=STEPS, seed=3)
    return out, err.getvalue(), json.loads((tmp / "out" / "demo.json").read_text())


def _mean_psnr(estimate: torch.Tensor, clean: torch.Tensor) -> float:
    mse = (estimate.clamp(0, 1).double() - clean.double()).square().flatten(1).mean(1)
    return float((-10 * torch.log10(mse)).mean())


def _degrade(model: LatentDiffusion, faces, task: str, level: float, seed: int):
    """The demo's degradation, rebuilt from the documented seeds: the clean faces, the operator, y."""
    files = list_images(faces)[:2]
    clean = torch.stack([load_image(f, model.image_size) for f in files])
    seeds = [sample_seed(seed, task, level, f.name) for f in files]
    operator = get_task(task).operator(torch.full((len(files),), level), model.image_size, seed=torch.tensor(seeds))
    y = operator.measure(clean, generator=[torch.Generator().manual_seed(s * STREAMS + NOISE_STREAM) for s in seeds])
    return clean, operator, y


def _levels(task: str) -> tuple[float, ...]:
    return get_task(task).demo_levels


def test_demo_levels_span_each_tasks_training_range():
    for task in TASKS:
        lo, hi = get_task(task).train_range
        assert all(lo <= t <= hi for t in _levels(task)) and list(_levels(task)) == sorted(_levels(task))
    assert _levels("gaussian-blur") == _levels("motion-blur") == get_task("gaussian-blur").train_range
    missing = get_task("random-inpainting").operator(torch.tensor(_levels("random-inpainting")), 64).severity
    assert missing.tolist() == pytest.approx([0.3, 0.8])
    assert len(_levels("super-resolution")) == 1  # t is ignored: one severity row


def test_demo_json_has_one_row_per_task_and_level_with_exactly_the_documented_keys(demo_run):
    out, _, summary = demo_run
    assert TOP_LEVEL <= set(summary)
    assert (summary["solver"], summary["grid"], summary["image_size"], summary["n_faces"], summary["seed"]) == (
        "latent-dps", f"ddim-{STEPS} (η=0)", 32, 2, 3)
    assert summary["seconds"] > 0
    rows = summary["rows"]
    assert all(list(row) == list(ROW_KEYS) for row in rows)
    assert [(r["task"], r["level"]) for r in rows] == [(t, lv) for t in TASKS for lv in _levels(t)]
    assert sum(r["task"] == "super-resolution" for r in rows) == 1
    assert rows == out["rows"]
    for r in rows:
        assert r["baseline_nfe"] == STEPS and 0 <= r["flash_nfe"] <= STEPS
        assert all(math.isfinite(r[k]) for k in ROW_KEYS[2:])


def test_demo_numbers_are_the_means_of_the_per_face_results(demo_run):
    out, _, summary = demo_run
    rows = iter(summary["rows"])
    for result in out["results"]:
        n = result.n_faces
        assert n == 2 and result.baseline_nfe.tolist() == [STEPS] * len(result.task_levels)  # the first face
        assert result.baseline_index.tolist() == [k * n for k in range(len(result.task_levels))]
        for k in range(len(result.task_levels)):
            row, s = next(rows), slice(k * n, (k + 1) * n)
            assert row["baseline_psnr"] == pytest.approx(result.baseline_psnr[k].item(), abs=1e-4)
            assert row["flash_nfe"] == pytest.approx(result.flash_nfe[s].double().mean().item(), abs=1e-4)
            assert row["flash_psnr"] == pytest.approx(result.flash_psnr[s].double().mean().item(), abs=1e-4)
            assert row["sigma_hat"] == pytest.approx(result.sigma_hat[s].double().mean().item(), abs=1e-6)


def test_degraded_and_autoencoder_psnr_recomputed_from_the_faces_and_the_seeds(demo_setup, demo_run):
    _, model_path, faces = demo_setup
    _, _, summary = demo_run
    model = LatentDiffusion.from_pretrained(str(model_path))
    for row in summary["rows"]:
        clean, operator, y = _degrade(model, faces, row["task"], row["level"], seed=3)
        degraded = operator.to_image(y)
        if row["task"] == "super-resolution":  # the degraded input shown is the bicubic upsampling
            assert torch.allclose(degraded, F.interpolate(y, scale_factor=4, mode="bicubic", align_corners=False))
        assert row["degraded_psnr"] == pytest.approx(_mean_psnr(degraded, clean), abs=1e-3)
        with torch.no_grad():
            z_hat, variance = model.severity_encoder(row["task"])(degraded)
            estimate = model.decode(z_hat)
        assert row["autoencoder_psnr"] == pytest.approx(_mean_psnr(estimate, clean), abs=1e-2)
        assert row["sigma_hat"] == pytest.approx(float(variance.double().mean()), rel=1e-3)
        # the actual error σ̂ predicts: the unbiased variance of ẑ − E(x) over the latent entries
        with torch.no_grad():
            error = (z_hat - model.encode(clean)).flatten(1).double()
        wanted = float(((error - error.mean(1, keepdim=True)) ** 2).sum(1).div(error.shape[1] - 1).mean())
        assert row["latent_error"] == pytest.approx(wanted, rel=1e-3)


def test_demo_md_shows_the_numbers_of_demo_json(demo_run, demo_setup):
    out, _, summary = demo_run
    md = (demo_setup[0] / "out" / "demo.md").read_text()
    assert md == out["table"] + "\n" and md.startswith(f"latent-dps, ddim-{STEPS} (η=0)")
    lines = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| task")]
    assert len(lines) == len(summary["rows"])
    for line, row in zip(lines, summary["rows"]):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0] == row["task"] and float(cells[1]) == pytest.approx(row["level"], abs=5e-4)
        shown = [float(c) for c in cells[3:]]
        wanted = [row[k] for k in ("degraded_psnr", "autoencoder_psnr", "baseline_psnr", "flash_psnr")]
        assert shown[:4] == pytest.approx(wanted, abs=0.051)
        assert shown[4:6] == pytest.approx([row["baseline_lpips"], row["flash_lpips"]], abs=5e-5)
        assert 0 < row["flash_lpips"] < 1 and 0 < row["baseline_lpips"] < 1
        assert shown[6:8] == pytest.approx([row["baseline_nfe"], row["flash_nfe"]], abs=0.051)
        assert shown[8] == pytest.approx(row["sigma_hat"], rel=1e-3)
        assert shown[9] == pytest.approx(row["latent_error"], rel=1e-3)
    # each method's step size, as demo.json records it
    params = summary["hyperparameters"]
    assert set(params) == set(TASKS)
    for task, p in params.items():
        assert f"{task} Flash η={p['flash']['eta']:g}, bare η={p['baseline']['eta']:g}" in md


def test_demo_figures_are_pngs_one_row_per_task_and_level_the_full_one_per_face(demo_run):
    out, _, summary = demo_run
    with open(out["figure"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert out["figure"].name == "demo.png" and out["full_figure"] == out["figure"].with_name("demo_full.png")
    rows = len(summary["rows"])  # 7: one per task and level
    with Image.open(out["figure"]) as compact, Image.open(out["full_figure"]) as full:
        assert compact.format == full.format == "PNG"
        assert compact.width == full.width <= MAX_WIDTH_PX
        # the same layout: a header, then one band of equal height per row (2 faces: twice the rows)
        band = (full.height - compact.height) / rows
        assert compact.height == pytest.approx(HEADER_IN * DPI + rows * band, abs=2)
        assert band == pytest.approx((TILE_SCALE * 32 / DPI + CAPTION_IN) * DPI, abs=1)


def test_figure_rows_are_the_first_face_of_each_task_and_level_with_psnr_and_nfe(demo_run):
    out, _, _ = demo_run
    results = out["results"]
    compact, full = figure_rows(results, all_faces=False), figure_rows(results, all_faces=True)
    assert [(r.result.task, r.index) for r in compact] == [
        (res.task, k * res.n_faces) for res in results for k in range(len(res.task_levels))]
    assert len(full) == sum(res.clean.shape[0] for res in results)
    row = compact[1]  # gaussian-blur at its hard level
    assert row.label(with_face=False).startswith("gaussian-blur\nt = 1\nσ ")
    captions = [caption for _, caption in row.tiles()]
    i = row.index
    assert (i, row.result.baseline_row(i)) == (2, 1)  # the bare solver's second row: face 1 at the hard level
    assert captions[1] == f"{float(row.result.degraded_psnr[i]):.1f} dB"
    assert captions[2].endswith("· NFE 0")
    assert captions[3] == f"{float(row.result.baseline_psnr[1]):.1f} dB · NFE {STEPS}"
    assert captions[4] == f"{float(row.result.flash_psnr[i]):.1f} dB · NFE {int(row.result.flash_nfe[i])}"
    images = [image for image, _ in row.tiles()]
    assert torch.equal(images[3], row.result.baseline[1])
    assert all(torch.equal(image, getattr(row.result, name)[i]) for image, name in
               zip(images[:3] + images[4:], ("clean", "degraded", "autoencoder", "flash")))
    assert full[1].label(with_face=True).endswith("face 2") and len(COLUMNS) == 5
    assert full[1].tiles()[3] == (None, "not run on this face")


def test_bare_rows_do_not_depend_on_which_faces_ran_beside_them(demo_setup, demo_run):
    tmp, model, faces = demo_setup
    _, _, summary = demo_run
    assert summary["baseline_faces"] == 1 and "(the bare solver's: the first 1 face)" in demo_run[0]["table"]
    every = run_demo(model=str(model), out=tmp / "every", faces=faces, n_faces=2, baseline_faces=None, steps=STEPS,
                     seed=3, tasks=("motion-blur",), progress=False)
    result = every["results"][0]
    assert result.baseline_faces == 2 and result.baseline_nfe.tolist() == [STEPS] * 4
    first = next(r for r in demo_run[0]["results"] if r.task == "motion-blur")
    # face 1 at both levels, alone or beside face 2 (the batch's size only changes the rounding)
    assert torch.allclose(result.baseline[[0, 2]], first.baseline, atol=1e-4)
    assert every["rows"][0]["baseline_psnr"] == pytest.approx(float(result.baseline_psnr[:2].double().mean()),
                                                              abs=1e-4)
    assert "bare solver's" not in every["table"]


def test_progress_without_a_terminal_is_one_line_per_stage(demo_run):
    _, err, _ = demo_run
    assert "\r" not in err
    lines = err.splitlines()
    assert all(line.startswith("demo: ") for line in lines)
    stages = [line for line in lines if ": baseline ddim" in line or ": flash ddim" in line]
    assert len(stages) == 2 * len(TASKS) and len(lines) == len(stages) + 2  # plus a header and a summary
    for task in TASKS:
        for method in ("baseline", "flash"):
            assert sum(line.startswith(f"demo: {task} t=") and f": {method} ddim-{STEPS}" in line
                       and line.endswith(" s") for line in stages) == 1
    assert "demo: gaussian-blur t=0.00/1.00: baseline" in err and "demo: super-resolution t=0.00: flash" in err


def test_progress_lines_inside_a_stage_follow_the_clock():
    now = [0.0]
    progress = Progress(None, 1, interval=30.0, clock=lambda: now[0])
    assert progress.lines  # stderr is not a terminal under pytest's capture
    started = progress.start("inpainting: baseline")
    report = progress.steps("inpainting: baseline", started)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        for k in range(99, -1, -1):  # a 100-step grid counts down, 1 s a step
            now[0] += 1.0
            report(SimpleNamespace(index=torch.tensor([k, k])), torch.zeros(2))
    assert err.getvalue().splitlines() == [
        "demo: inpainting: baseline: 30 steps done, 70 to go, 30 s",
        "demo: inpainting: baseline: 60 steps done, 40 to go, 60 s",
        "demo: inpainting: baseline: 90 steps done, 10 to go, 90 s",
    ]
    assert Progress(False, 1).steps("x", 0.0) is None  # silent: no callback at all


def test_progress_without_a_terminal_reports_inside_long_stages(demo_setup, monkeypatch):
    tmp, model, faces = demo_setup
    monkeypatch.setattr(demo_module, "PROGRESS_INTERVAL_S", 0.0)  # every step is "30 s later"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        run_demo(model=str(model), out=tmp / "chatty", faces=faces, n_faces=1, steps=3, tasks=("motion-blur",))
    inside = [line for line in err.getvalue().splitlines() if "steps done" in line]
    pattern = re.compile(r"demo: motion-blur t=0\.00/1\.00: (baseline|flash) ddim-3 \(η=0\): (\d) steps done, "
                         r"(\d) to go, \d+ s")
    matches = [pattern.fullmatch(line) for line in inside]
    assert all(matches)
    baseline = [(int(m[2]), int(m[3])) for m in matches if m[1] == "baseline"]
    assert baseline == [(1, 2), (2, 1), (3, 0)]  # every step of the 3-step grid, counting down


def test_progress_on_a_terminal_is_tqdm_bars(demo_setup, monkeypatch):
    tmp, model, faces = demo_setup
    term = _Terminal()
    monkeypatch.setattr("sys.stderr", term)
    run_demo(model=str(model), out=tmp / "tty", faces=faces, n_faces=1, steps=2, tasks=("super-resolution",))
    assert "\r" in term.getvalue() and "demo: super-resolution" in term.getvalue()
    assert ": flash ddim-2 (η=0): 1 image, mean NFE" not in term.getvalue()  # no stage lines beside the bars


def test_two_runs_write_the_same_rows_and_the_seed_matters(demo_setup, demo_run):
    tmp, model, faces = demo_setup
    again = run_demo(model=str(model), out=tmp / "again", faces=faces, n_faces=2, steps=STEPS, seed=3,
                     progress=False)
    assert json.loads((tmp / "again" / "demo.json").read_text())["rows"] == demo_run[2]["rows"]
    assert again["rows"] == demo_run[2]["rows"]
    other = run_demo(model=str(model), out=tmp / "other", faces=faces, n_faces=2, steps=STEPS, seed=4,
                     tasks=("motion-blur",), progress=False)
    assert [r["degraded_psnr"] for r in other["rows"]] != [r["degraded_psnr"] for r in demo_run[2]["rows"][4:6]]


def test_demo_defaults_are_the_module_constants(demo_setup):
    params = inspect.signature(run_demo).parameters
    assert params["steps"].default == DEFAULT_STEPS and params["n_faces"].default == DEFAULT_FACES
    assert params["baseline_faces"].default == DEFAULT_BASELINE_FACES


def test_demo_cli_passes_only_the_options_given(monkeypatch, capsys, tmp_path):
    calls = []

    def fake(**kwargs):
        calls.append(kwargs)
        return {"table": "table", "figure": tmp_path / "demo.png", "json": tmp_path / "demo.json"}

    monkeypatch.setattr(demo_module, "run_demo", fake)
    assert main(["demo", "--out", str(tmp_path / "a")]) == 0
    assert "steps" not in calls[-1] and "n_faces" not in calls[-1]  # run_demo's defaults apply
    assert main(["demo", "--out", str(tmp_path / "a"), "--steps", "0", "--n-faces", "2", "--seed", "5"]) == 0
    assert (calls[-1]["steps"], calls[-1]["n_faces"], calls[-1]["seed"]) == (None, 2, 5)  # 0: the solver's sampler
    assert main(["demo", "--out", str(tmp_path / "a"), "--baseline-faces", "0"]) == 0
    assert calls[-1]["baseline_faces"] is None  # 0: every face
    assert main(["demo", "--out", str(tmp_path / "a"), "--baseline-faces", "2"]) == 0
    assert calls[-1]["baseline_faces"] == 2
    assert "figure:" in capsys.readouterr().out


def test_demo_cli(demo_setup, tmp_path, capsys):
    _, model, faces = demo_setup
    assert main(["demo", "--model", str(model), "--faces", str(faces), "--n-faces", "1", "--steps", "4",
                 "--out", str(tmp_path / "cli")]) == 0
    printed = capsys.readouterr().out
    assert "figure:" in printed and "numbers:" in printed
    summary = json.loads((tmp_path / "cli" / "demo.json").read_text())
    assert summary["n_faces"] == 1 and summary["grid"] == "ddim-4 (η=0)"
    assert main(["demo", "--model", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_demo_refuses_an_out_with_an_earlier_demo_unless_force(demo_setup, tmp_path, capsys):
    _, model, faces = demo_setup
    used = tmp_path / "used"
    used.mkdir()
    (used / "demo.md").write_text("an earlier demo\n")
    (used / "notes.txt").write_text("mine\n")
    assert main(["demo", "--model", str(model), "--faces", str(faces), "--out", str(used)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"--out {used} already holds demo.md from an earlier demo" in err and "--force" in err
    assert (used / "demo.md").read_text() == "an earlier demo\n" and not (used / "demo.json").exists()
    run_demo(model=str(model), out=used, faces=faces, n_faces=1, steps=2, tasks=("super-resolution",),
             progress=False, force=True)
    assert (used / "demo.md").read_text() != "an earlier demo\n" and (used / "demo.json").is_file()
    assert (used / "notes.txt").read_text() == "mine\n"
