"""flash_wrap.tuning: the key, the one precedence rule, validation and the bundle's JSON, including
the bundle files already on disk (format 1 and 2, the shipped demo)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from diffusers import DDPMScheduler

from flash_wrap import LatentDiffusion, tuning
from flash_wrap.grid import GridSpec
from flash_wrap.registry import get_solver
from flash_wrap.testing import tiny_model
from flash_wrap.tuning import TunedKey, TunedValues, parse_grid
from flash_wrap_plugins.latent_dps import LatentDPS
from flash_wrap_plugins.resample import ReSample

T = 1000
DDPM, DDIM4 = GridSpec("ddpm", T, None), GridSpec("ddim", 4, 0.0)


@pytest.fixture
def model() -> LatentDiffusion:
    return tiny_model("vq", image_size=32, seed=0)


# -- grids as stored ---------------------------------------------------------------------------------
@pytest.mark.parametrize("text,grid", [("ddpm-1000", DDPM), ("ddim-100 (η=0)", GridSpec("ddim", 100, 0.0)),
                                       ("ddim-25 (η=0.85)", GridSpec("ddim", 25, 0.85)),
                                       ("ddim-999 (η=1)", GridSpec("ddim", 999, 1.0))])
def test_every_grid_a_bundle_stores_reads_back_as_that_grid(text, grid):
    assert parse_grid(text, "here", total=T) == grid


@pytest.mark.parametrize("text,reason", [
    ("ddim-100 (η=0.0)", "is not a grid label"), ("ddim-100 (η=inf)", "is not a grid label"),
    ("ddim-100", "is not a grid label"), ("ddim-100 (eta=0)", "is not a grid label"),
    ("ddim-100 (η=-0)", "is not a grid label"), (100, "is not a grid label"),
    ("ddpm-500", "is no grid of this model's schedule (1000 training"),
    ("ddim-1000 (η=0)", "is no grid of this model's schedule"),
])
def test_a_grid_no_schedule_or_no_writer_has_is_refused(text, reason):
    with pytest.raises(ValueError, match=reason.replace("(", r"\(")):
        parse_grid(text, "here", total=T)
    if "schedule" in reason:
        parse_grid(text, "here")  # without the schedule only the spelling is checked


# -- the key and the store ---------------------------------------------------------------------------
def test_the_key_is_typed_and_a_bare_key_needs_its_grid():
    assert TunedKey("latent-dps", "gaussian-blur").section == "solver_defaults"
    assert TunedKey("latent-dps", "gaussian-blur", DDIM4).section == "flash_defaults"
    assert TunedKey("latent-dps", "gaussian-blur", DDIM4, bare=True).section == "baseline_defaults"
    # a DDIM η is keyed as it is stored (6 significant digits), so a solver on η = 1/3 finds its values
    assert TunedKey("s", "gaussian-blur", GridSpec("ddim", 4, 1 / 3)).grid == GridSpec("ddim", 4, 0.333333)
    assert TunedKey("s", "gaussian-blur", GridSpec("ddim", 4, -0.0)) == TunedKey("s", "gaussian-blur", DDIM4)
    with pytest.raises(ValueError, match="tuned values of a bare run are per grid"):
        TunedKey("latent-dps", "gaussian-blur", bare=True)
    with pytest.raises(TypeError, match="grid must be a GridSpec"):
        TunedKey("latent-dps", "gaussian-blur", "ddim-4 (η=0)")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="task name must be letters"):
        TunedKey("latent-dps", "../x")


def test_the_json_table_round_trips_through_typed_keys():
    table = {"solver_defaults": {"latent-dps": {"gaussian-blur": {"eta": 0.4, "c": 0.1}}},
             "flash_defaults": {"latent-dps": {"super-resolution": {"ddim-100 (η=0)": {"eta": 1.5}}}},
             "baseline_defaults": {"latent-dps": {"gaussian-blur": {"ddpm-1000": {"eta": 0.1},
                                                                    "ddim-4 (η=0)": {"eta": 0.2}}}}}
    values = TunedValues.from_json(table, "here", T)
    assert values.get(TunedKey("latent-dps", "gaussian-blur", DDIM4, bare=True)) == {"eta": 0.2}
    assert values.get(TunedKey("latent-dps", "super-resolution", GridSpec("ddim", 100, 0.0))) == {"eta": 1.5}
    assert values.get(TunedKey("latent-dps", "super-resolution", GridSpec("ddim", 100, 0.0), bare=True)) == {}
    assert values.to_json() == table
    assert TunedValues.from_json(values.to_json(), "again", T) == values
    assert TunedValues.from_json({}, "here").to_json() == {"solver_defaults": {}, "flash_defaults": {},
                                                           "baseline_defaults": {}}


@pytest.mark.parametrize("table,message", [
    ({"solver_defaults": []}, "here: solver_defaults must be an object, got list"),
    ({"solver_defaults": {"s": {"gaussian-blur": {"eta": "0.2"}}}}, "['eta'] must be a finite number, got '0.2'"),
    ({"solver_defaults": {"s": {"gaussian-blur": {"eta": float("nan")}}}}, "must be a finite number, got nan"),
    ({"baseline_defaults": {"s": {"gaussian-blur": {"ddpm-1000": {"c": 1.0}}}}}, "sets c, the noise correction"),
    ({"flash_defaults": {"s": {"gaussian-blur": {"ddim-4 (η=0)": 0.2}}}}, "to values), got 0.2"),
    ({"flash_defaults": {"s": {"gaussian.blur": {}}}}, "here: flash_defaults['s']: task name must be letters"),
    ([], "here: the tuned values must be an object, got list"),
])
def test_a_malformed_table_is_refused_naming_the_entry(table, message):
    with pytest.raises(ValueError) as err:
        TunedValues.from_json(table, "here", T)
    assert message in str(err.value)


# -- the one precedence rule -------------------------------------------------------------------------
def test_call_beats_this_grid_beats_solver_wide_beats_the_plugin(model):
    task = "gaussian-blur"
    plugin = dict(LatentDPS.defaults[task])
    assert tuning.resolve(model, LatentDPS, task, DDIM4) == plugin
    tuning.record(model, TunedKey("latent-dps", task), {"eta": 0.3})
    assert tuning.resolve(model, LatentDPS, task, DDIM4) == {**plugin, "eta": 0.3}
    tuning.record(model, TunedKey("latent-dps", task, DDIM4), {"eta": 0.2})
    tuning.record(model, TunedKey("latent-dps", task, DDIM4, bare=True), {"eta": 0.05})
    assert tuning.resolve(model, LatentDPS, task, DDIM4) == {**plugin, "eta": 0.2}
    assert tuning.resolve(model, LatentDPS, task, DDIM4, bare=True) == {"eta": 0.05}  # no c in a bare run
    assert tuning.resolve(model, LatentDPS, task, GridSpec("ddim", 5, 0.0)) == {**plugin, "eta": 0.3}
    assert tuning.resolve(model, LatentDPS, task, DDIM4, overrides={"eta": 9.0}) == {**plugin, "eta": 9.0}
    assert LatentDPS(model, steps=4).hyperparameters(task) == {**plugin, "eta": 0.2}  # the solver asks the same rule


def test_a_tune_writes_solver_wide_on_the_own_grid_and_per_grid_elsewhere():
    assert tuning.key_for(LatentDPS, "gaussian-blur", DDPM, T) == TunedKey("latent-dps", "gaussian-blur")
    assert tuning.key_for(LatentDPS, "gaussian-blur", DDIM4, T).grid == DDIM4
    assert tuning.key_for(LatentDPS, "gaussian-blur", DDPM, T, bare=True) == \
        TunedKey("latent-dps", "gaussian-blur", DDPM, bare=True)
    assert tuning.readers(TunedKey("latent-dps", "gaussian-blur", DDIM4), DDIM4) == \
        "flash_defaults of latent-dps for gaussian-blur on ddim-4 (η=0): read by Flash on ddim-4 (η=0) only"


def test_the_bundles_values_for_a_solver_are_checked_against_the_plugin(model):
    tuning.record(model, TunedKey("latent-dps", "gaussian-blur", DDPM), {"eta": 0.2})
    with pytest.raises(ValueError, match="hold values for ddpm-1000, the solver's own grid, whose values are "
                                         "solver_defaults"):
        LatentDPS(model)
    model.tuned_values = {"solver_defaults": {"latent-dps": {"gaussian-blur": {"etaa": 0.2}}}}
    with pytest.raises(TypeError, match=r"name unknown hyper-parameter\(s\) \['etaa'\]; LatentDPS knows"):
        LatentDPS(model)
    with pytest.raises(ValueError, match="is no grid of this model's schedule"):
        tuning.record(model, TunedKey("latent-dps", "gaussian-blur", GridSpec("ddim", 1000, 0.0)), {"eta": 1.0})


def test_unread_entries_are_named_per_section(model):
    model.tuned_values = {"solver_defaults": {"latent-dsp": {"gaussian-blur": {"eta": 0.2}},
                                              "latent-dps": {"gausian-blur": {"eta": 0.2}}}}
    assert tuning.unread(model, ["latent-dps"], ["gaussian-blur"]) == {
        "solver_defaults": ["solver 'latent-dsp' (not installed)", "task 'gausian-blur' of 'latent-dps' (unknown task)"]}


def test_a_solver_builds_where_its_own_grid_does_not_fit_the_schedule():
    """ReSample's own grid is DDIM-500: on a 200-step schedule it cannot exist, and a solver on
    another grid must still build (the own-grid checks of the bundle's tuned values skip it)."""
    tiny = tiny_model("taef2")
    schedule = DDPMScheduler(num_train_timesteps=200, beta_schedule="scaled_linear", beta_start=0.0015,
                             beta_end=0.0195, clip_sample=False)
    model = LatentDiffusion(tiny.autoencoder, tiny.denoiser, schedule, image_size=32)
    assert ReSample(model, steps=6).grid.label() == "ddim-6 (η=1)"
    tuning.record(model, TunedKey("resample", "gaussian-blur", GridSpec("ddim", 6, 1.0)), {"gamma": 100.0})
    assert ReSample(model, steps=6).hyperparameters("gaussian-blur")["gamma"] == 100.0
    with pytest.raises(ValueError, match="is no grid of this model's schedule"):
        tuning.record(model, TunedKey("resample", "gaussian-blur", GridSpec("ddim", 500, 1.0)), {"gamma": 100.0})


# -- bundles already on disk -------------------------------------------------------------------------
def _write_index(folder: Path, index: dict) -> Path:
    (folder / "model_index.json").write_text(json.dumps(index, ensure_ascii=False))
    return folder


def _index_base(model: LatentDiffusion) -> dict:
    """The entries every format has had since the first (commit 9decba1, bundles.py ``_index``)."""
    return {"_class_name": "LatentDiffusion", "image_size": model.image_size, "latent_scale": model.latent_scale,
            "latent_shift": model.latent_shift, "autoencoder": model.autoencoder.kind,
            "denoiser": model.denoiser.kind, "severity_tasks": []}


def test_bundle_files_of_format_1_and_2_load_with_their_tuned_values(model, tmp_path):
    model.save_pretrained(tmp_path / "weights")
    task = "random-inpainting"
    plugin = dict(LatentDPS.defaults[task])
    # format 1 as first written: solver_defaults only, no prediction_type
    first = _write_index(tmp_path / "weights", {**_index_base(model), "format_version": 1,
                                                "solver_defaults": {"latent-dps": {task: {"eta": 0.3, "c": 0.2}}}})
    loaded = LatentDiffusion.from_pretrained(first)
    assert LatentDPS(loaded).hyperparameters(task) == {**plugin, "eta": 0.3, "c": 0.2}
    assert LatentDPS(loaded, steps=4).hyperparameters(task, baseline=True) == {"eta": 0.3}
    # format 1 with prediction_type, conditioning and baseline_defaults (commit d5219ab)
    later = {**_index_base(model), "format_version": 1, "prediction_type": "epsilon", "conditioning": None,
             "solver_defaults": {"latent-dps": {task: {"eta": 0.3}}},
             "baseline_defaults": {"latent-dps": {task: {"ddim-4 (η=0)": {"eta": 0.1}}}}}
    loaded = LatentDiffusion.from_pretrained(_write_index(tmp_path / "weights", later))
    assert LatentDPS(loaded, steps=4).hyperparameters(task, baseline=True) == {"eta": 0.1}
    assert LatentDPS(loaded, steps=4).hyperparameters(task) == {**plugin, "eta": 0.3}
    # format 2 adds flash_defaults (commit f6953bd)
    second = {**later, "format_version": 2, "flash_defaults": {"latent-dps": {task: {"ddim-4 (η=0)": {"eta": 0.7}}}}}
    loaded = LatentDiffusion.from_pretrained(_write_index(tmp_path / "weights", second))
    assert LatentDPS(loaded, steps=4).hyperparameters(task) == {**plugin, "eta": 0.7}
    assert LatentDPS(loaded, steps=5).hyperparameters(task) == {**plugin, "eta": 0.3}
    # saved again unchanged: the same table, at the same format
    loaded.save_pretrained(tmp_path / "again")
    again = json.loads((tmp_path / "again" / "model_index.json").read_text())
    assert again["format_version"] == 2
    assert {k: again[k] for k in ("solver_defaults", "flash_defaults", "baseline_defaults")} == \
        {k: second[k] for k in ("solver_defaults", "flash_defaults", "baseline_defaults")}
    # refused in one line: flash_defaults in a format-1 file (a version-1 reader would ignore them)
    _write_index(tmp_path / "weights", {**second, "format_version": 1})
    with pytest.raises(ValueError, match="has format_version 1 but holds flash_defaults, which need format 2"):
        LatentDiffusion.from_pretrained(tmp_path / "weights")


#: Today's resolution on the shipped demo bundle (flash_wrap/assets/demo/model_index.json),
#: computed with the code before flash_wrap.tuning existed: (solver, steps, task) -> (Flash, bare).
DEMO_EXPECTED = {
    # solver_defaults["latent-dps"]["super-resolution"] on its own grid; baseline_defaults[...]["ddpm-1000"]
    ("latent-dps", None, "super-resolution"): ({"c": 0.05, "eta": 1.0}, {"eta": 1.0}),
    # flash_defaults["latent-dps"]["super-resolution"]["ddim-100 (η=0)"]; baseline_defaults[...]["ddim-100 (η=0)"]
    ("latent-dps", 100, "super-resolution"): ({"c": 0.05, "eta": 1.5}, {"eta": 0.4}),
    # flash_defaults["latent-dps"]["random-inpainting"]["ddim-100 (η=0)"] over solver_defaults' c;
    # baseline_defaults[...]["ddim-100 (η=0)"]
    ("latent-dps", 100, "random-inpainting"): ({"c": 0.1, "eta": 0.5}, {"eta": 0.2}),
    # no entry for DDIM-50: solver_defaults["latent-dps"]["random-inpainting"] for both
    ("latent-dps", 50, "random-inpainting"): ({"c": 0.1, "eta": 1.0}, {"eta": 1.0}),
    # baseline_defaults["latent-dps"]["motion-blur"]["ddpm-1000"]
    ("latent-dps", None, "motion-blur"): ({"c": 0.1, "eta": 0.4}, {"eta": 0.05}),
    # solver_defaults["psld"]["gaussian-blur"] over PSLD's own defaults
    ("psld", None, "gaussian-blur"): ({"c": 1.0, "eta": 0.4, "gamma": 0.2}, {"eta": 0.4, "gamma": 0.2}),
    # solver_defaults["gml-dps"]["gaussian-blur"] over GML-DPS's own defaults
    ("gml-dps", 100, "gaussian-blur"): ({"c": 1.2, "eta": 0.4, "gamma": 0.05}, {"eta": 0.4, "gamma": 0.05}),
}


def test_the_shipped_demo_resolves_as_before():
    demo = LatentDiffusion.from_pretrained("demo")
    for (solver, steps, task), (flash, bare) in DEMO_EXPECTED.items():
        built = get_solver(solver)(demo, steps=steps)
        assert built.hyperparameters(task) == flash, (solver, steps, task)
        assert built.hyperparameters(task, baseline=True) == bare, (solver, steps, task)
