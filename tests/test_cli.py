"""The command line's assembly and boundary (flash_wrap.apps.cli): one vocabulary of options with
the old spellings kept for a release, checks that run before torch loads, one line for the user's
errors and a plugin's, a traceback for a bug, and a quiet end when stdout's reader goes away."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flash_wrap.apps.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]

NO_TORCH = textwrap.dedent("""
    import sys

    class _NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is unimportable in this test")
            return None

    sys.meta_path.insert(0, _NoTorch())
""")


def _flash_wrap(args: list[str], *, env: dict[str, str] | None = None,
                **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flash_wrap", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})}, cwd=ROOT, **kwargs)


@pytest.fixture
def no_torch(tmp_path):
    """``PYTHONPATH`` with a sitecustomize that makes ``import torch`` fail."""
    (tmp_path / "blocker").mkdir()
    (tmp_path / "blocker" / "sitecustomize.py").write_text(NO_TORCH)
    env = {"PYTHONPATH": str(tmp_path / "blocker")}
    probe = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, text=True, env={**os.environ, **env})
    assert probe.returncode != 0 and "unimportable in this test" in probe.stderr  # the blocker works
    return env


def _images(folder: Path) -> Path:
    folder.mkdir()
    (folder / "000.png").write_bytes(b"not read before the checks")
    return folder


@pytest.mark.parametrize("case, message", [
    ("unknown task", "unknown task 'gaussian-blurr'; did you mean 'gaussian-blur'? the installed plugins declare "),
    ("unknown solver", "unknown solver 'dps'; "),
    ("missing data", "--data {tmp}/nowhere does not exist"),
    ("data is a file", "--data {tmp}/data/000.png is not a folder"),
    ("used out", "{tmp}/out/images.jsonl exists: pass --resume to continue that run, or choose another --out"),
])
def test_eval_refuses_names_paths_and_a_used_out_without_torch(tmp_path, no_torch, case, message):
    data = _images(tmp_path / "data")
    args = {"--task": "gaussian-blur", "--solver": "latent-dps", "--data": str(data), "--out": str(tmp_path / "out")}
    if case == "unknown task":
        args["--task"] = "gaussian-blurr"
    elif case == "unknown solver":
        args["--solver"] = "dps"
    elif case == "missing data":
        args["--data"] = str(tmp_path / "nowhere")
    elif case == "data is a file":
        args["--data"] = str(data / "000.png")
    else:
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "images.jsonl").write_text('{"name": "000.png"}\n')
    done = _flash_wrap(["eval", *[x for pair in args.items() for x in pair]], env=no_torch)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"flash-wrap eval: error: {message.format(tmp=tmp_path)}"), lines


def test_the_checks_pass_a_good_call_on_to_the_command(tmp_path, no_torch):
    """The same call with every name and path right gets past the checks and fails only on torch."""
    data = _images(tmp_path / "data")
    done = _flash_wrap(["eval", "--task", "gaussian-blur", "--data", str(data), "--out", str(tmp_path / "out")],
                       env=no_torch)
    assert "unimportable in this test" in done.stderr and done.returncode == 1


def test_the_cli_module_imports_no_torch():
    code = "import sys, flash_wrap.apps.cli; print('torch' in sys.modules, 'diffusers' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("argv, dest, value, new", [
    (["tune", "--model", "m", "--task", "t", "--solver", "s", "--data", "d", "--eta", "1", "--out", "o",
      "--output", "b"], "output", "b", "--save-to"),
    (["train-severity", "--model", "m", "--task", "t", "--data", "d", "--output", "b"], "output", "b", "--save-to"),
    (["train-prior", "--output", "b", "--data", "d", "--autoencoder", "a"], "output", "b", "--save-to"),
    (["import-encoder", "c.ckpt", "--model", "m", "--task", "t", "--output", "b"], "output", "b", "--save-to"),
    (["train-severity", "--model", "m", "--task", "t", "--data", "d", "--cpu"], "device", "cpu", "--device cpu"),
    (["train-prior", "--save-to", "b", "--data", "d", "--autoencoder", "a", "--cpu"], "device", "cpu", "--device cpu"),
    (["benchmark", "--config", "sd-v1"], "config", "sd-v1", "--model"),
])
def test_an_old_spelling_still_works_with_one_deprecation_line(capsys, argv, dest, value, new):
    old = next(a for a in argv if a in ("--output", "--cpu", "--config"))
    args = build_parser().parse_args(argv)
    assert getattr(args, dest) == value
    err = capsys.readouterr().err
    assert err.splitlines() == [f"flash-wrap: warning: {old} is deprecated and will be removed in the next release; "
                                f"use {new}"]


@pytest.mark.parametrize("argv, dest, value", [
    (["tune", "--model", "m", "--task", "t", "--solver", "s", "--data", "d", "--eta", "1", "--out", "o",
      "--save-to", "b"], "output", "b"),
    (["train-severity", "--model", "m", "--task", "t", "--data", "d", "--save-to", "b"], "output", "b"),
    (["import-encoder", "c.ckpt", "--model", "m", "--task", "t", "--save-to", "b"], "output", "b"),
    (["train-prior", "--save-to", "b", "--data", "d", "--autoencoder", "a", "--device", "cpu"], "device", "cpu"),
    (["benchmark", "--model", "sd-v1"], "config", "sd-v1"),
])
def test_the_new_spellings_parse_without_a_warning(capsys, argv, dest, value):
    assert getattr(build_parser().parse_args(argv), dest) == value
    assert capsys.readouterr().err == ""


def test_options_left_out_take_the_config_defaults():
    from flash_wrap.apps.commands.train_severity import FIELDS
    from flash_wrap.apps.options import given
    from flash_wrap.apps.training.severity import SeverityTrainingConfig

    args = build_parser().parse_args(["train-severity", "--model", "m", "--task", "t", "--data", "d"])
    assert given(args, FIELDS) == {"model": "m", "task": "t", "data": "d"}
    assert SeverityTrainingConfig(**given(args, FIELDS)).steps == SeverityTrainingConfig("m", "t", "d").steps


def test_verbose_is_accepted_after_the_command_too():
    assert build_parser().parse_args(["compare", "r", "-v"]).verbose
    assert build_parser().parse_args(["-v", "compare", "r"]).verbose
    assert not build_parser().parse_args(["compare", "r"]).verbose


def test_a_plugin_exception_ends_in_one_line_naming_plugin_and_step(tmp_path, capsys, monkeypatch):
    from flash_wrap.registry import get_solver
    from flash_wrap.testing import tiny_model, write_images

    def broken(self, state):
        raise RuntimeError("the plugin's own bug")

    monkeypatch.setattr(get_solver("latent-dps"), "step", broken)
    model = tiny_model("taef2", image_size=32, seed=0)
    model.add_severity_encoder("gaussian-blur", model.make_severity_encoder())
    model.save_pretrained(tmp_path / "model")
    write_images(tmp_path / "data", 2, 40, 36)
    status = main(["eval", "--data", str(tmp_path / "data"), "--task", "gaussian-blur", "--model", str(tmp_path / "model"),
                   "--steps", "4", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err, err
    last = err.strip().splitlines()[-1]  # after eval's own header line
    assert last.startswith("flash-wrap eval: error: solver plugin 'latent-dps' failed at grid step ")
    assert "RuntimeError: the plugin's own bug" in last


def test_a_bug_keeps_its_traceback_and_asks_for_a_report(capsys, monkeypatch):
    import flash_wrap.apps.evaluation.compare as compare_module

    def buggy(results):
        return {}["missing key"]

    monkeypatch.setattr(compare_module, "compare", buggy)
    status = main(["compare", "anywhere"])
    err = capsys.readouterr().err
    assert status == 1 and "Traceback" in err and "KeyError: 'missing key'" in err
    assert err.strip().splitlines()[-1].startswith("flash-wrap compare: internal error (a bug, not your input): "
                                                   "please report it")


def test_an_os_error_on_a_path_the_user_gave_is_one_line(tmp_path, capsys, monkeypatch):
    import flash_wrap.apps.evaluation.compare as compare_module

    def unreadable(results):
        raise PermissionError(13, "Permission denied", str(Path(results[0]) / "results.json"))

    monkeypatch.setattr(compare_module, "compare", unreadable)
    status = main(["compare", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and err == [f"flash-wrap compare: error: [Errno 13] Permission denied: '{tmp_path}/results.json'"]


def test_an_os_error_elsewhere_is_a_bug(capsys, monkeypatch):
    import flash_wrap.apps.evaluation.compare as compare_module

    def elsewhere(results):
        raise FileNotFoundError(2, "No such file or directory", "/usr/lib/flash-wrap-internal.json")

    monkeypatch.setattr(compare_module, "compare", elsewhere)
    assert main(["compare", "results"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_compare_into_a_closed_pipe_ends_quietly():
    """``flash-wrap compare ... | head -1``: the reader goes away; no traceback, no "Broken pipe"."""
    code = ("import sys\nimport flash_wrap.apps.evaluation.compare as c\n"
            "c.compare = lambda results: '| a | table row |\\n' * 100000\n"
            "from flash_wrap.apps.cli import main\nsys.exit(main(['compare', 'results']))\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    proc.stdout.readline()  # like head -1: read one line, then close
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == "", err
