"""Hostile use of the command line: every case must end in one line naming the problem, exit
status 2, no traceback, and leave the user's files exactly as they were.

Each case builds what it needs in ``tmp_path`` (a tiny bundle, an image folder, an output
folder), hashes those folders, runs ``main([...])`` in-process and compares.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flash_wrap.apps.cli import main
from flash_wrap.apps.runs import exclusive
from flash_wrap.testing import tiny_model, write_images


def _tree_hash(folder: Path) -> str:
    """Names and bytes of everything below ``folder`` (missing folder: a fixed value)."""
    if not folder.exists():
        return "absent"
    if folder.is_file():
        return hashlib.sha256(folder.read_bytes()).hexdigest()
    digest = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.name == ".flash-wrap.lock":
            continue
        digest.update(p.relative_to(folder).as_posix().encode())
        if p.is_file() and not p.is_symlink():
            digest.update(p.read_bytes())
    return digest.hexdigest()


@pytest.fixture
def world(tmp_path):
    """A tiny bundle with a Gaussian-blur encoder, 3 clean images and an empty results folder."""
    model = tiny_model("taef2", image_size=32, seed=0)
    model.add_severity_encoder("gaussian-blur", model.make_severity_encoder())
    model.save_pretrained(tmp_path / "model")
    write_images(tmp_path / "data", 3, 40, 36)
    return tmp_path


def _eval(world: Path, *extra: str, data: str = "data", out: str = "out") -> list[str]:
    return ["eval", "--data", str(world / data), "--task", "gaussian-blur", "--model", str(world / "model"),
            "--steps", "4", "--batch-size", "2", "--out", str(world / out), *extra]


def _one_line_error(capsys, status: int, command: str) -> str:
    err = capsys.readouterr().err.strip()
    assert status == 2, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"flash-wrap {command}: error: "), err
    assert "Traceback" not in err and "weights_only=False" not in err  # never advise the unsafe unpickler
    return lines[0]


@dataclass
class Case:
    """One hostile call: how to set it up, the command, what the message must say."""

    name: str
    argv: Callable[[Path], list[str]]
    message: str
    setup: Callable[[Path], None] = lambda world: None
    command: str = "eval"


def _png_16bit_white(world: Path) -> None:
    Image.fromarray(np.full((36, 40), 65535, np.uint16)).save(world / "data" / "wide.png")


def _transparent(world: Path) -> None:
    rgba = np.zeros((36, 40, 4), np.uint8)
    rgba[..., 1] = 200
    Image.fromarray(rgba, "RGBA").save(world / "data" / "ghost.png")


def _truncated(world: Path) -> None:
    raw = (world / "data" / "000.png").read_bytes()
    (world / "data" / "cut.png").write_bytes(raw[: len(raw) // 2])


def _not_an_image(world: Path) -> None:
    (world / "data" / "notes.png").write_text("this is text")


def _folder_named_png(world: Path) -> None:
    (world / "data" / "album.png").mkdir()


def _symlink_loop(world: Path) -> None:
    (world / "data" / "loop.png").symlink_to(world / "data" / "loop.png")


def _records_without_run_json(world: Path) -> None:
    (world / "out").mkdir()
    (world / "out" / "images.jsonl").write_text('{"name": "000.png"}\n')


def _out_is_a_file(world: Path) -> None:
    (world / "results.txt").write_text("keep me")


def _malformed_results(world: Path) -> None:
    (world / "res").mkdir()
    (world / "res" / "results.json").write_text("{not json")


def _foreign_results(world: Path) -> None:
    (world / "res").mkdir()
    (world / "res" / "results.json").write_text(json.dumps({"hello": 1}))


def _index_edit(**changes):
    def edit(world: Path) -> None:
        index_file = world / "model" / "model_index.json"
        index = json.loads(index_file.read_text())
        index.update(changes)
        index_file.write_text(json.dumps(index))

    return edit


def _other_bundle_at(name: str):
    def make(world: Path) -> None:
        tiny_model("vq", image_size=32, seed=3).save_pretrained(world / name)

    return make


def _edit_weights(folder: str, how: str):
    """Remove one tensor, add one, or poison one with NaN in ``model/<folder>``'s weights."""

    def edit(world: Path) -> None:
        import torch
        from safetensors.torch import load_file, save_file

        file = next((world / "model" / folder).glob("*.safetensors"))
        tensors = load_file(file)
        key = sorted(k for k, v in tensors.items() if v.is_floating_point())[0]
        if how == "missing":
            del tensors[key]
        elif how == "extra":
            tensors["surplus.weight"] = torch.zeros(2)
        else:
            tensors[key] = torch.full_like(tensors[key], float("nan"))
        save_file(tensors, file)

    return edit


class Arbitrary:
    """Any class: unpickling it needs the full unpickler (it could run code)."""


def _pickled_autoencoder(world: Path) -> None:
    import torch

    (world / "evil").mkdir()
    for half in ("encoder", "decoder"):
        torch.save({"weights": Arbitrary()}, world / "evil" / f"taef2_{half}.pth")


def _negative_channels(world: Path) -> None:
    config_file = world / "model" / "unet" / "config.json"
    config = json.loads(config_file.read_text())
    config["block_out_channels"] = [-8, 16]
    config_file.write_text(json.dumps(config))


def _colour_key(world: Path) -> None:
    rgb = np.full((36, 40, 3), 90, np.uint8)
    rgb[0, 0] = (1, 2, 3)
    Image.fromarray(rgb).save(world / "data" / "keyed.png", transparency=(1, 2, 3))


def _all_unreadable(world: Path) -> None:
    (world / "bad").mkdir()
    (world / "bad" / "a.png").write_text("x")
    (world / "bad" / "b.png").write_text("y")


def _scheduler_edit(**changes):
    def edit(world: Path) -> None:
        file = world / "model" / "scheduler" / "scheduler_config.json"
        config = json.loads(file.read_text())
        config.update(changes)
        file.write_text(json.dumps(config))

    return edit


def _int_weights(world: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    file = next((world / "model" / "unet").glob("*.safetensors"))
    tensors = load_file(file)
    key = sorted(k for k, v in tensors.items() if v.is_floating_point())[0]
    tensors[key] = tensors[key].to(torch.int32)
    save_file(tensors, file)


def _existing(name: str):
    def make(world: Path) -> None:
        (world / name).write_text("a file the user keeps")

    return make


def _results_with_list_methods(world: Path) -> None:
    (world / "res").mkdir()
    fields = dict(task="t", solver="s", scheduler="ddpm", steps=1, n_images=1, model="m", methods=[1, 2], severity={})
    (world / "res" / "results.json").write_text(json.dumps(fields))


CASES = [
    Case("limit -1", lambda w: _eval(w, "--limit", "-1"), "argument --limit: expected an integer in [1, inf), got -1"),
    Case("batch size -2", lambda w: _eval(w, "--batch-size", "-2"), "argument --batch-size: expected an integer in [1"),
    Case("steps 0", lambda w: _eval(w, "--steps", "0"), "argument --steps: expected an integer in [1"),
    Case("steps 100000", lambda w: _eval(w, "--steps", "100000"), "steps must be an integer in [1, 1000]"),
    Case("ddim over all 1000 steps", lambda w: _eval(w, "--steps", "1000", "--scheduler", "ddim"),
         "DDIM needs fewer steps than the 1000 training timesteps"),
    Case("severity range above 1", lambda w: _eval(w, "--severity-range", "0.2", "1.5"),
         "argument --severity-range: expected a number in [0, 1], got 1.5"),
    Case("cuda without a GPU", lambda w: _eval(w, "--device", "cuda"), "no usable CUDA GPU"),
    Case("unknown solver", lambda w: _eval(w, "--solver", "dps-plus"), "unknown solver 'dps-plus'; "),
    Case("unknown task", lambda w: ["eval", "--data", str(w / "data"), "--task", "deraining", "--model",
                                     str(w / "model"), "--out", str(w / "out")], "deraining"),
    Case("transparent image", lambda w: _eval(w), "ghost.png has transparent pixels", _transparent),
    Case("truncated image", lambda w: _eval(w), "cut.png is not a readable image", _truncated),
    Case("text file named .png", lambda w: _eval(w), "notes.png is not a readable image", _not_an_image),
    Case("folder named .png", lambda w: _eval(w), "not readable files: album.png", _folder_named_png),
    Case("symlink loop", lambda w: _eval(w), "not readable files: loop.png", _symlink_loop),
    Case("resume without run.json", lambda w: _eval(w, "--resume"), "has images.jsonl but no run.json",
         _records_without_run_json),
    Case("out equals data", lambda w: _eval(w, out="data"), "is inside the input folder"),
    Case("out inside data", lambda w: _eval(w, out="data/results"), "is inside the input folder"),
    Case("out inside the model", lambda w: _eval(w, out="model/results"), "is inside the input folder"),
    Case("out is a file", lambda w: _eval(w, out="results.txt"), "is a file, not a folder", _out_is_a_file),
    Case("out below a file", lambda w: _eval(w, out="results.txt/sub"), "which is a file", _out_is_a_file),
    Case("compare malformed json", lambda w: ["compare", str(w / "res")], "is not valid JSON", _malformed_results,
         "compare"),
    Case("compare foreign json", lambda w: ["compare", str(w / "res")], "is not an eval results file",
         _foreign_results, "compare"),
    Case("compare missing folder", lambda w: ["compare", str(w / "nowhere")], "does not exist", command="compare"),
    Case("train-severity 0 steps",
         lambda w: ["train-severity", "--model", str(w / "model"), "--task", "gaussian-blur", "--data",
                    str(w / "data"), "--steps", "0"], "argument --steps: expected an integer in [1",
         command="train-severity"),
    Case("checkpoint every 0",
         lambda w: ["train-severity", "--model", str(w / "model"), "--task", "gaussian-blur", "--data",
                    str(w / "data"), "--checkpoint-every", "0"], "argument --checkpoint-every", command="train-severity"),
    Case("negative learning rate",
         lambda w: ["train-prior", "--save-to", str(w / "p"), "--data", str(w / "data"), "--autoencoder",
                    str(w / "model"), "--lr", "-1"], "argument --lr: expected a number in (0, inf)", command="train-prior"),
    Case("sample -n 0", lambda w: ["sample", "--model", str(w / "model"), "--out", str(w / "s.png"), "-n", "0"],
         "argument -n: expected an integer in [1", command="sample"),
    Case("demo --n-faces 0", lambda w: ["demo", "--model", str(w / "model"), "--n-faces", "0"],
         "argument --n-faces: expected an integer in [1", command="demo"),
    Case("export in place", lambda w: ["export", "--model", str(w / "model"), "--out", str(w / "model")],
         "is the model folder", command="export"),
    Case("export inside the model", lambda w: ["export", "--model", str(w / "model"), "--out", str(w / "model/copy")],
         "is the model folder", command="export"),
    Case("export over another bundle", lambda w: ["export", "--model", str(w / "model"), "--out", str(w / "out")],
         "already holds another bundle", _other_bundle_at("out"), "export"),
    Case("task name escaping the bundle", lambda w: _eval(w), "task name must be letters, digits",
         _index_edit(severity_tasks=["gaussian-blur", "../../x"])),
    Case("absolute task name", lambda w: _eval(w), "task name must be letters, digits",
         _index_edit(severity_tasks=["/etc"])),
    Case("solver default typo", lambda w: _eval(w), "name unknown hyper-parameter(s) ['etaa']",
         _index_edit(solver_defaults={"latent-dps": {"gaussian-blur": {"etaa": 0.2}}})),
    Case("solver default string", lambda w: _eval(w), "must be a finite number, got '0.2'",
         _index_edit(solver_defaults={"latent-dps": {"gaussian-blur": {"eta": "0.2"}}})),
    Case("baseline default typo", lambda w: _eval(w),
         "baseline_defaults (grid 'ddim-5 (η=0)') for 'latent-dps' (task 'gaussian-blur') name unknown hyper-parameter(s) ['etaa']",
         _index_edit(baseline_defaults={"latent-dps": {"gaussian-blur": {"ddim-5 (η=0)": {"etaa": 0.2}}}})),
    Case("baseline default without a grid", lambda w: _eval(w), "'eta' is not a grid label; grids are labelled like 'ddpm-1000'",
         _index_edit(baseline_defaults={"latent-dps": {"gaussian-blur": {"eta": 0.2}}})),
    Case("baseline default not an object", lambda w: _eval(w), "then grid labels (e.g. 'ddpm-1000') to values), got 0.2",
         _index_edit(baseline_defaults={"latent-dps": {"gaussian-blur": {"ddpm-1000": 0.2}}})),
    Case("baseline default sets c", lambda w: _eval(w), "sets c, the noise correction of Flash, which a bare run never uses",
         _index_edit(baseline_defaults={"latent-dps": {"gaussian-blur": {"ddpm-1000": {"c": 0.2}}}})),
    Case("baseline default under a label no grid has", lambda w: _eval(w),
         "'ddim-5 (eta=0)' is not a grid label; grids are labelled like 'ddpm-1000' or 'ddim-100 (η=0)'",
         _index_edit(baseline_defaults={"latent-dps": {"gaussian-blur": {"ddim-5 (eta=0)": {"eta": 0.2}}}})),
    Case("baseline default under a task name with a dot", lambda w: _eval(w),
         "model_index.json: baseline_defaults['latent-dps']: task name must be letters",
         _index_edit(baseline_defaults={"latent-dps": {"gaussian.blur": {"ddpm-1000": {"eta": 0.2}}}})),
    Case("baseline default NaN", lambda w: _eval(w), "must be a finite number, got nan",
         _index_edit(baseline_defaults={"latent-dps": {"gaussian-blur": {"ddpm-1000": {"eta": float("nan")}}}})),
    Case("flash defaults in a format-1 index", lambda w: _eval(w),
         "has format_version 1 but holds flash_defaults, which need format 2 (a version-1 reader would ignore them)",
         _index_edit(flash_defaults={"latent-dps": {"gaussian-blur": {"ddim-4 (η=0)": {"eta": 0.2}}}})),
    Case("index from a newer flash-wrap", lambda w: _eval(w),
         "format_version=4); it was written by a newer flash-wrap: upgrade", _index_edit(format_version=4)),
    Case("flash default under a grid the schedule has not", lambda w: _eval(w),
         "'ddim-1000 (η=0)' is no grid of this model's schedule (1000 training timesteps: 'ddpm-1000' or "
         "'ddim-N (η=…)' with N < 1000)",
         _index_edit(format_version=2, flash_defaults={"latent-dps": {"gaussian-blur": {"ddim-1000 (η=0)": {"eta": 1}}}})),
    Case("huge integer step size", lambda w: _eval(w), "['eta'] must be a finite number, got 1000000",
         _index_edit(solver_defaults={"latent-dps": {"gaussian-blur": {"eta": 10**400}}})),
    Case("flash default typo", lambda w: _eval(w),
         "flash_defaults (grid 'ddim-4 (η=0)') for 'latent-dps' (task 'gaussian-blur') name unknown hyper-parameter(s) ['etaa']",
         _index_edit(format_version=2, flash_defaults={"latent-dps": {"gaussian-blur": {"ddim-4 (η=0)": {"etaa": 0.2}}}})),
    Case("flash default under the solver's own grid", lambda w: _eval(w),
         "flash_defaults for 'latent-dps' (task 'gaussian-blur') hold values for ddpm-1000, the solver's own grid, "
         "whose values are solver_defaults (fix model_index.json, or the flash_wrap.tuning.record call that wrote it: move them there)",
         _index_edit(format_version=2, flash_defaults={"latent-dps": {"gaussian-blur": {"ddpm-1000": {"eta": 0.2}}}})),
    Case("flash default under a label no grid has", lambda w: _eval(w),
         "model_index.json: flash_defaults['latent-dps']['gaussian-blur']: 'ddim4' is not a grid label",
         _index_edit(format_version=2, flash_defaults={"latent-dps": {"gaussian-blur": {"ddim4": {"eta": 0.2}}}})),
    Case("solver default negative", lambda w: _eval(w),
         "solver_defaults for 'latent-dps' (task 'gaussian-blur'): eta must be >= 0, got -0.4 (fix model_index.json, or the "
         "flash_wrap.tuning.record call that wrote it)",
         _index_edit(solver_defaults={"latent-dps": {"gaussian-blur": {"eta": -0.4}}})),
    Case("baseline default negative", lambda w: _eval(w),
         "baseline_defaults (grid 'ddpm-1000') for 'latent-dps' (task 'gaussian-blur'): eta must be >= 0, got -1",
         _index_edit(baseline_defaults={"latent-dps": {"gaussian-blur": {"ddpm-1000": {"eta": -1}}}})),
    Case("train into the installed demo",
         lambda w: ["train-severity", "--model", "demo", "--task", "gaussian-blur", "--data", str(w / "data")],
         "--model demo is installed inside the package; pass --save-to NEW_FOLDER", command="train-severity"),
    Case("train over a trained encoder",
         lambda w: ["train-severity", "--model", str(w / "model"), "--task", "gaussian-blur", "--data", str(w / "data")],
         "already has a trained gaussian-blur encoder; pass --force", command="train-severity"),
    Case("train-prior over a bundle",
         lambda w: ["train-prior", "--save-to", str(w / "model"), "--data", str(w / "data"), "--autoencoder",
                    str(w / "model" / "autoencoder"), "--unet", "tiny", "--image-size", "32", "--steps", "1"],
         "already holds a model bundle", command="train-prior"),
    Case("unet tensor missing", lambda w: _eval(w), "missing tensor", _edit_weights("unet", "missing")),
    Case("unet tensor extra", lambda w: _eval(w), "unexpected tensor 'surplus.weight'", _edit_weights("unet", "extra")),
    Case("unet tensor NaN", lambda w: _eval(w), "holds NaN or infinite values", _edit_weights("unet", "nan")),
    Case("autoencoder tensor missing", lambda w: _eval(w), "missing tensor", _edit_weights("autoencoder", "missing")),
    Case("severity encoder NaN", lambda w: _eval(w), "holds NaN or infinite values",
         _edit_weights("severity_encoders/gaussian-blur", "nan")),
    Case("pickled autoencoder", lambda w: ["train-prior", "--save-to", str(w / "p"), "--data", str(w / "data"),
                                           "--autoencoder", str(w / "evil"), "--steps", "1"],
         "is not a plain tensor checkpoint", _pickled_autoencoder, "train-prior"),
    Case("negative channels in a config", lambda w: _eval(w), "unet/config.json: cannot build a UNet2DModel",
         _negative_channels),
    Case("data inside out", lambda w: _eval(w, out="."), "lies inside --out"),
    Case("colour-key transparency", lambda w: _eval(w), "keyed.png has transparent pixels", _colour_key),
    Case("every image unusable, skipping asked",
         lambda w: _eval(w, "--skip-unreadable", data="bad"), "none of the 2 images can be used", _all_unreadable),
    Case("too many validation images",
         lambda w: ["train-severity", "--model", str(w / "model"), "--task", "gaussian-blur", "--data",
                    str(w / "data"), "--val-images", "2", "--force"], "--val-images 2 asks for more than a fifth",
         command="train-severity"),
    Case("too many validation images, into a new --save-to",
         lambda w: ["train-severity", "--model", str(w / "model"), "--task", "gaussian-blur", "--data",
                    str(w / "data"), "--val-images", "2", "--save-to", str(w / "out")],
         "--val-images 2 asks for more than a fifth", command="train-severity"),  # no bundle copied first
    Case("scheduler beta_end 1.5", lambda w: _eval(w), "betas must lie in (0, 1)", _scheduler_edit(beta_end=1.5)),
    Case("scheduler beta_schedule typo", lambda w: _eval(w), "not a usable DDPM schedule",
         _scheduler_edit(beta_schedule="linearr")),
    Case("integer weights", lambda w: _eval(w), "is stored as I32, the model expects floating point", _int_weights),
    Case("sample over an existing file", lambda w: ["sample", "--model", str(w / "model"), "--out",
                                                    str(w / "results.txt"), "-n", "1"], "must be a .png file name",
         _existing("results.txt"), "sample"),
    Case("sample over an existing png", lambda w: ["sample", "--model", str(w / "model"), "--out",
                                                   str(w / "data" / "000.png"), "-n", "1"], "exists; choose another name",
         command="sample"),
    Case("sample inside the model", lambda w: ["sample", "--model", str(w / "model"), "--out",
                                               str(w / "model" / "x.png"), "-n", "1"], "is inside the input folder",
         command="sample"),
    Case("benchmark over an existing file", lambda w: ["benchmark", "--model", str(w / "model"), "--steps", "4",
                                                       "--batch-size", "1", "--starts", "2", "--out",
                                                       str(w / "results.txt")], "exists; choose another name",
         _existing("results.txt"), "benchmark"),
    Case("demo into its faces", lambda w: ["demo", "--model", str(w / "model"), "--faces", str(w / "data"),
                                           "--out", str(w / "data"), "--steps", "4"], "is inside the input folder",
         command="demo"),
    Case("seed too large", lambda w: ["demo", "--model", str(w / "model"), "--seed", "99999999999999999999999"],
         "argument --seed: expected an integer in [0, 9.22337e+18]", command="demo"),
    Case("compare with a list of methods", lambda w: ["compare", str(w / "res")], "is not a well-formed eval results",
         _results_with_list_methods, "compare"),
    Case("model folder missing", lambda w: ["eval", "--data", str(w / "data"), "--task", "gaussian-blur",
                                            "--model", str(w / "nomodel"), "--out", str(w / "out")],
         "nomodel does not exist"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_call_ends_in_one_line_and_changes_nothing(world, capsys, case):
    case.setup(world)
    before = {name: _tree_hash(world / name) for name in ("data", "model", "out", "res", "results.txt")}
    status = main(case.argv(world))
    line = _one_line_error(capsys, status, case.command)
    assert case.message in line, line
    after = {name: _tree_hash(world / name) for name in before}
    if case.command != "eval" and before["out"] == "absent" and after["out"] != "absent":
        # other commands may leave an empty --out folder they created, nothing else
        assert not any((world / "out").iterdir()), sorted((world / "out").iterdir())
        after["out"] = "absent"
    assert after == before  # a refused eval leaves not even an empty --out behind


def test_a_second_run_on_a_locked_folder_is_refused(world, capsys):
    assert main(_eval(world)) == 0
    capsys.readouterr()
    before = _tree_hash(world / "out")
    with exclusive(world / "out", what="a test holding the lock"):
        line = _one_line_error(capsys, main(_eval(world, "--resume")), "eval")
    assert "is being written by a test holding the lock" in line
    assert _tree_hash(world / "out") == before


def test_resume_refuses_a_changed_model_and_accepts_the_same_one_spelled_differently(world, capsys, monkeypatch):
    assert main(_eval(world)) == 0
    capsys.readouterr()
    monkeypatch.chdir(world)
    relative = ["eval", "--data", "data", "--task", "gaussian-blur", "--model", "./model", "--steps", "4",
                "--batch-size", "2", "--out", "out", "--resume"]
    assert main(relative) == 0  # the same model through another path: its content decides
    capsys.readouterr()
    weights = next((world / "model" / "severity_encoders" / "gaussian-blur").glob("*.safetensors"))
    retrained = tiny_model("taef2", image_size=32, seed=5).make_severity_encoder()
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in retrained.state_dict().items()}, weights)
    before = _tree_hash(world / "out")
    line = _one_line_error(capsys, main(relative), "eval")
    assert "different model (its weights, configs or tokenizer files changed" in line
    assert _tree_hash(world / "out") == before


def test_resume_refuses_changed_images(world, capsys):
    assert main(_eval(world)) == 0
    capsys.readouterr()
    write_images(world / "data", 1, 40, 36, seed=9)  # 000.png rewritten with other content
    line = _one_line_error(capsys, main(_eval(world, "--resume")), "eval")
    assert "different set of images" in line


def test_unreadable_images_can_be_skipped_by_name(world, capsys, caplog):
    _not_an_image(world)
    assert main(_eval(world, "--skip-unreadable")) == 0
    results = json.loads((world / "out" / "results.json").read_text())
    assert sorted(r["name"] for r in results["images"]) == ["000.png", "001.png", "002.png"]
    assert "notes.png" in caplog.text


def test_a_decompression_bomb_is_refused(world, capsys, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 400)  # 40x36 images are then "bombs"
    line = _one_line_error(capsys, main(_eval(world)), "eval")
    assert "is not a readable image (DecompressionBomb" in line


def test_verbose_adds_the_traceback_for_user_errors(world, capsys):
    status = main(["-v", *_eval(world, "--solver", "dps-plus")])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" in err and err.strip().splitlines()[-1].startswith("flash-wrap eval: error:")


def test_sixteen_bit_grayscale_is_evaluated_as_gray_not_white(world):
    from flash_wrap.images import load_image

    ramp = (np.linspace(0, 65535, 40 * 36).reshape(36, 40)).astype(np.uint16)
    Image.fromarray(ramp).save(world / "ramp.png")
    x = load_image(world / "ramp.png", 32)
    assert x.shape == (3, 32, 32) and torch_equal_channels(x)
    assert 0.4 < float(x.mean()) < 0.6 and float(x.min()) < 0.1 and float(x.max()) > 0.9
    _png_16bit_white(world)
    assert float(load_image(world / "data" / "wide.png", 32).min()) == pytest.approx(1.0)


def torch_equal_channels(x) -> bool:
    return bool((x[0] == x[1]).all() and (x[1] == x[2]).all())


def test_an_opaque_alpha_channel_is_dropped_and_partial_transparency_refused(world):
    from flash_wrap.images import ImageFileError, load_image

    rgba = np.zeros((36, 40, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 255
    Image.fromarray(rgba, "RGBA").save(world / "opaque.png")
    x = load_image(world / "opaque.png", 32)
    assert x[:, 5, 5].tolist() == [1.0, 0.0, 0.0]
    rgba[0, 0, 3] = 254
    Image.fromarray(rgba, "RGBA").save(world / "almost.png")
    with pytest.raises(ImageFileError, match="alpha down to 254/255"):
        load_image(world / "almost.png", 32)


def test_export_with_force_replaces_the_folder_whole(world, capsys):
    _other_bundle_at("out")(world)
    assert main(["export", "--model", str(world / "model"), "--out", str(world / "out"), "--force",
                 "--dtype", "float32"]) == 0
    assert not (world / "out" / "severity_encoders").exists() or \
        sorted(p.name for p in (world / "out" / "severity_encoders").iterdir()) == ["gaussian-blur"]
    index = json.loads((world / "out" / "model_index.json").read_text())
    assert index["severity_tasks"] == ["gaussian-blur"] and index["autoencoder"] == "taef2"  # no merge
    assert not [p for p in world.iterdir() if p.name.startswith(".out.")]  # no staging left behind


@pytest.mark.parametrize("kind", ["vq", "kl"])
def test_a_diffusers_autoencoder_with_a_missing_decoder_tensor_is_refused(tmp_path, kind):
    # diffusers itself would leave the weight on the meta device and load "successfully"
    from safetensors.torch import load_file, save_file

    from flash_wrap.models import LatentDiffusion

    tiny_model(kind, image_size=32).save_pretrained(tmp_path / "m")
    file = next((tmp_path / "m" / "autoencoder").glob("*.safetensors"))
    tensors = load_file(file)
    key = next(k for k in sorted(tensors) if k.startswith("decoder."))
    del tensors[key]
    save_file(tensors, file)
    with pytest.raises(ValueError, match=f"missing tensor '{key}'"):
        LatentDiffusion.from_pretrained(tmp_path / "m")


def test_python_api_settings_are_range_checked_too():
    from flash_wrap.apps.evaluation.config import EvalConfig
    from flash_wrap.apps.training.prior import PriorTrainingConfig
    from flash_wrap.apps.training.severity import SeverityTrainingConfig

    base = dict(data="d", task="gaussian-blur", solver="latent-dps", out="o")
    for bad, message in ((dict(batch_size=-2), "batch_size must lie in"), (dict(limit=0), "limit must lie in"),
                         (dict(limit=-1), "limit must lie in"), (dict(steps=0), "steps must lie in")):
        with pytest.raises(ValueError, match=message):
            EvalConfig(**base, **bad)
    assert EvalConfig(**base, fixed_start=[4, 1, 4]).fixed_start == [1, 4]  # each start once
    with pytest.raises(ValueError, match="steps must lie in"):
        SeverityTrainingConfig(model="m", task="gaussian-blur", data="d", steps=0)
    with pytest.raises(ValueError, match="checkpoint_every must lie in"):
        PriorTrainingConfig(output="o", data="d", autoencoder="a", checkpoint_every=0)


def test_export_refuses_weights_the_dtype_cannot_hold(world, capsys):
    import torch
    from safetensors.torch import load_file, save_file

    file = next((world / "model" / "unet").glob("*.safetensors"))
    tensors = load_file(file)
    key = sorted(k for k, v in tensors.items() if v.is_floating_point())[0]
    tensors[key] = torch.full_like(tensors[key], 1e6)  # beyond float16's 65504
    save_file(tensors, file)
    line = _one_line_error(capsys, main(["export", "--model", str(world / "model"), "--out", str(world / "e")]),
                           "export")
    assert "float16 cannot hold" in line and not (world / "e").exists()


def test_a_diverging_prior_stops_without_writing_a_bundle(world, capsys):
    status = main(["train-prior", "--save-to", str(world / "p"), "--data", str(world / "data"), "--autoencoder",
                   str(world / "model" / "autoencoder"), "--unet", "tiny", "--image-size", "32", "--steps", "2",
                   "--batch-size", "2", "--checkpoint-every", "1", "--lr", "1e30", "--warmup-steps", "0", "--device", "cpu"])
    line = _one_line_error(capsys, status, "train-prior")
    assert "training diverged at step" in line and not (world / "p" / "model_index.json").exists()


def test_a_prior_resume_with_changed_images_is_refused_before_encoding(world, capsys):
    args = ["train-prior", "--save-to", str(world / "p"), "--data", str(world / "data"), "--autoencoder",
            str(world / "model" / "autoencoder"), "--unet", "tiny", "--image-size", "32", "--batch-size", "2",
            "--checkpoint-every", "1", "--device", "cpu"]
    assert main([*args, "--steps", "1"]) == 0
    capsys.readouterr()
    cache = (world / "p" / "training" / "latents.safetensors").read_bytes()
    write_images(world / "data", 1, 40, 36, seed=7)  # same names, other content
    line = _one_line_error(capsys, main([*args, "--steps", "2"]), "train-prior")
    assert "the images in" in line and "changed since it was written" in line
    assert (world / "p" / "training" / "latents.safetensors").read_bytes() == cache


def test_a_model_folder_behind_a_symlink_is_fingerprinted_through_it(world):
    from flash_wrap.apps.runs import fingerprint_folder

    (world / "linked").mkdir()
    (world / "linked" / "unet").symlink_to(world / "model" / "unet", target_is_directory=True)
    before = fingerprint_folder(world / "linked")
    weights = next((world / "model" / "unet").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    assert fingerprint_folder(world / "linked") != before


def test_editing_a_model_card_is_not_a_change_of_the_model(world, tmp_path):
    """A resumed run compares the model by its weights, configs and tokenizer files; the model
    card and figures beside them do not count (a model card edit used to refuse ``--resume``)."""
    from flash_wrap.apps.runs import fingerprint_folder

    model = shutil.copytree(world / "model", tmp_path / "edited-card")
    before = fingerprint_folder(model)
    (model / "README.md").write_text("# a model card, edited\n")
    (model / "samples.png").write_bytes(b"not a model file")
    assert fingerprint_folder(model) == before != fingerprint_folder(model, documents=True)
    (model / "scheduler" / "scheduler_config.json").write_text(
        (model / "scheduler" / "scheduler_config.json").read_text() + " ")
    assert fingerprint_folder(model) != before


def test_examples_of_a_png_and_a_jpg_with_one_stem_do_not_collide(world):
    Image.open(world / "data" / "000.png").convert("RGB").save(world / "data" / "000.jpg")
    assert main(_eval(world, "--limit", "2")) == 0
    names = sorted(p.name for p in (world / "out" / "examples").glob("*__clean.png"))
    assert names == ["000.jpg__clean.png", "000.png__clean.png"]


def test_solver_defaults_nobody_reads_are_named(world, caplog):
    _index_edit(solver_defaults={"latent-dsp": {"gaussian-blur": {"eta": 0.2}},
                                 "latent-dps": {"gausian-blur": {"eta": 0.2}}})(world)
    assert main(_eval(world, "--limit", "2")) == 0
    assert "solver 'latent-dsp' (not installed)" in caplog.text
    assert "task 'gausian-blur' of 'latent-dps' (unknown task)" in caplog.text
    _index_edit(baseline_defaults={"latent-dsp": {"gaussian-blur": {"ddpm-1000": {"eta": 0.2}}}})(world)
    caplog.clear()
    assert main(_eval(world, "--limit", "2", "--out", str(world / "out2"))) == 0
    assert "baseline_defaults name solver 'latent-dsp' (not installed)" in caplog.text


def test_a_baseline_tuned_for_another_grid_is_named(world, caplog):
    _index_edit(baseline_defaults={"latent-dps": {"gaussian-blur": {"ddim-5 (η=0)": {"eta": 0.2}}}})(world)
    assert main(_eval(world, "--limit", "2", "--baseline")) == 0
    assert ("baseline_defaults for latent-dps on gaussian-blur cover ddim-5 (η=0), not the baseline's ddim-4 (η=0): "
            "the baseline runs with the solver_defaults and the solver's own defaults (eta=") in caplog.text
    results = json.loads((world / "out" / "results.json").read_text())
    eta = results["hyperparameters"]["baseline"]["eta"]
    assert eta == results["hyperparameters"]["flash"]["eta"] != 0.2 and f"(eta={eta:g}; tune it" in caplog.text


def _train_severity_args(world: Path, *extra: str) -> list[str]:
    return ["train-severity", "--model", str(world / "model"), "--task", "gaussian-blur", "--data", str(world / "data"),
            "--batch-size", "2", "--val-images", "0", "--checkpoint-every", "1", "--device", "cpu", "--force",
            "--checkpoints", str(world / "ckpt"), *extra]


def test_train_severity_resume_with_changed_images_is_refused(world, capsys):
    assert main(_train_severity_args(world, "--steps", "1")) == 0
    capsys.readouterr()
    write_images(world / "data", 1, 40, 36, seed=11)  # same names, other content
    line = _one_line_error(capsys, main(_train_severity_args(world, "--steps", "2")), "train-severity")
    assert "the images in" in line and "changed since it was written" in line


def test_train_severity_on_a_bundle_another_run_is_writing_is_refused(world, capsys):
    before = _tree_hash(world / "model")
    with exclusive(world / "model", what="another train-severity"):
        line = _one_line_error(capsys, main(_train_severity_args(world, "--steps", "1")), "train-severity")
    assert "is being written by another train-severity" in line and _tree_hash(world / "model") == before


def test_a_taef2_config_with_negative_channels_is_refused(world, capsys):
    config_file = world / "model" / "autoencoder" / "config.json"
    config = json.loads(config_file.read_text())
    config["latent_channels"] = -4
    config_file.write_text(json.dumps(config))
    line = _one_line_error(capsys, main(_eval(world)), "eval")
    assert "autoencoder/config.json is not a usable TAEF2 config" in line


def test_export_force_replaces_only_a_bundle_or_an_empty_folder(world, capsys, monkeypatch):
    """``export --force --out .`` deleted the working directory's other files; now a folder that is
    not a bundle is refused, with or without --force, and keeps every file."""
    work = world / "work"
    (work / "notes").mkdir(parents=True)
    (work / "thesis.tex").write_text("years of work\n")
    monkeypatch.chdir(work)
    for force in (["--force"], []):
        line = _one_line_error(capsys, main(["export", "--model", str(world / "model"), "--out", ".", *force]),
                               "export")
        assert "holds files that are not a bundle (notes, thesis.tex, ...)" in line and "empty one" in line
        assert (work / "thesis.tex").read_text() == "years of work\n" and (work / "notes").is_dir()
        assert sorted(p.name for p in work.iterdir()) == ["notes", "thesis.tex"]
    (world / "empty").mkdir()
    assert main(["export", "--model", str(world / "model"), "--out", str(world / "empty"), "--force",
                 "--dtype", "float32"]) == 0
    assert (world / "empty" / "model_index.json").is_file()
