"""The Solver base class: construction, hyper-parameter resolution (solver → bundle → user),
input validation in prepare (before any work), the bare reconstruction, repr."""

from __future__ import annotations

import pytest
import torch

from flash_wrap import Flash, LatentDiffusion, Solver, StepState, tuning
from flash_wrap.grid import GridSpec
from flash_wrap.operators import GaussianBlur, Operator
from flash_wrap.registry import get_task
from flash_wrap.rng import randn
from flash_wrap.testing import Darken, generators, smooth_images, tiny_model
from flash_wrap.tuning import TunedKey
from flash_wrap_plugins.latent_dps import LatentDPS


class Prior(Solver):
    """The unconditional prior step: enough to exercise the base class."""

    name = "prior"
    defaults = {
        "gaussian-blur": {"c": 1.2, "eta": 1.0},
        "random-inpainting": {"c": 1.1, "eta": 7.0},
    }
    fallback = {"c": 1.0, "eta": 2.0, "extra": 0.0}

    def step(self, state: StepState) -> torch.Tensor:
        eps = state.predict_noise(state.z)
        z0 = state.sampler.tweedie(state.z, eps, state.index)
        return state.sampler.step(state.z, eps, z0, state.index, state.generator)


class RefusesBlur(Prior):
    name = "refuses-blur"

    def check_operator(self, operator: Operator) -> None:
        if isinstance(operator, GaussianBlur):
            raise ValueError("refuses-blur cannot handle GaussianBlur")


@pytest.fixture
def model():
    return tiny_model("vq", image_size=32, seed=0)


def _refuse_denoiser(model, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the denoiser ran before the input was validated")

    monkeypatch.setattr(model.denoiser, "forward", refuse)


def test_hyperparameters_resolve_solver_then_bundle_then_user(model, tmp_path):
    assert Prior(model).hyperparameters("random-inpainting") == {"c": 1.1, "eta": 7.0}
    assert Prior(model).hyperparameters("super-resolution") == {"c": 1.0, "eta": 2.0, "extra": 0.0}  # fallback
    assert Prior(model).hyperparameters(None) == {"c": 1.0, "eta": 2.0, "extra": 0.0}
    tuning.record(model, TunedKey("prior", "random-inpainting"), {"eta": 3.0})
    tuning.record(model, TunedKey("other", "random-inpainting"), {"c": 9.0})
    model.save_pretrained(tmp_path / "m")
    loaded = LatentDiffusion.from_pretrained(tmp_path / "m")
    assert tuning.read(loaded) == tuning.read(model)  # tuned values travel with the bundle
    assert Prior(loaded).hyperparameters("random-inpainting") == {"c": 1.1, "eta": 3.0}
    assert Prior(loaded, eta=0.5).hyperparameters("random-inpainting") == {"c": 1.1, "eta": 0.5}
    assert Prior(loaded).hyperparameters("gaussian-blur") == {"c": 1.2, "eta": 1.0}  # other tasks untouched


def test_a_bare_run_takes_the_bundles_baseline_values_for_its_own_grid(model, tmp_path, monkeypatch):
    """baseline_defaults apply to Solver.reconstruct on the grid they were tuned on, never to Flash."""
    tuning.record(model, TunedKey("prior", "random-inpainting"), {"eta": 3.0})
    ddim4 = GridSpec("ddim", 4, 0.0)
    tuning.record(model, TunedKey("prior", "random-inpainting", ddim4, bare=True), {"eta": 0.25})
    model.save_pretrained(tmp_path / "m")
    loaded = LatentDiffusion.from_pretrained(tmp_path / "m")
    assert loaded.tuned_values["baseline_defaults"] == {"prior": {"random-inpainting": {"ddim-4 (η=0)": {"eta": 0.25}}}}
    four, five = Prior(loaded, steps=4), Prior(loaded, steps=5)
    assert four.hyperparameters("random-inpainting", baseline=True) == {"eta": 0.25}  # no c: no correction
    assert four.hyperparameters("random-inpainting") == {"c": 1.1, "eta": 3.0}
    assert five.hyperparameters("random-inpainting", baseline=True) == {"eta": 3.0}
    seen = []
    monkeypatch.setattr("flash_wrap.solver.reconstruct_from", lambda *a, **k: seen.append(a[6]))
    op = get_task("random-inpainting").operator(torch.tensor([0.5]), 32, seed=torch.tensor([1]))
    four.reconstruct(op.measure(torch.rand(1, 3, 32, 32)), op)
    assert seen == [{"eta": 0.25}]
    with pytest.raises(ValueError, match="sets c, the noise correction of Flash"):
        tuning.record(loaded, TunedKey("prior", "random-inpainting", GridSpec("ddpm", 1000, None), bare=True), {"c": 1.0})
    with pytest.raises(ValueError, match="tuned values of a bare run are per grid"):
        TunedKey("prior", "random-inpainting", bare=True)


def test_hyperparameter_names_and_unknown_keywords(model):
    assert Prior.hyperparameter_names() == {"c", "eta", "extra"}
    assert Prior(model, extra=1.0).overrides == {"extra": 1.0}
    with pytest.raises(TypeError, match=r"unknown hyper-parameter\(s\) \['step_size'\]; known: \['c', 'eta', 'extra'\]"):
        Prior(model, step_size=1.0)


def test_values_a_solver_cannot_mean_are_refused_before_any_work(model):
    """A negative step size (gradient ascent away from y) or a count that is not a whole number
    >= 1 (truncated, or a division by zero mid-run) is refused, from a keyword or from the bundle;
    0 stays allowed (η = 0 is the prior alone), and a solver may declare a name ``signed``."""
    with pytest.raises(ValueError, match=r"Prior: eta must be >= 0, got -0.5"):
        Prior(model, eta=-0.5)
    assert Prior(model, eta=0.0).hyperparameters("gaussian-blur")["eta"] == 0.0

    class Counting(Prior):
        name = "counting"
        fallback = {"c": 1.0, "eta": 1.0, "extra": 0.0, "iterations": 3}
        counts = {"iterations": 1}
        signed = frozenset({"extra"})

    assert Counting(model, extra=-2.0).hyperparameters(None)["extra"] == -2.0
    for bad in (0, 2.5, -1):
        with pytest.raises(ValueError, match=rf"iterations counts steps or iterations and must be a whole number >= 1, got {bad}"):
            Counting(model, iterations=bad)
    assert Counting(model, iterations=4.0).hyperparameters(None)["iterations"] == 4.0
    key = TunedKey("counting", "gaussian-blur")
    tuning.record(model, key, {"iterations": 0.5})
    with pytest.raises(ValueError, match=r"the model bundle's solver_defaults for 'counting' \(task 'gaussian-blur'\): "
                                         r"iterations counts .* got 0.5 \(fix model_index.json, or the "
                                         r"flash_wrap.tuning.record call"):
        Counting(model)
    tuning.record(model, key, {"iterations": 2})
    built = Counting(model)  # built while the value was good, refused at use once it is not
    tuning.record(model, key, {"iterations": 0.5})
    with pytest.raises(ValueError, match=r"iterations counts steps or iterations"):
        built.hyperparameters("gaussian-blur")


def test_construction_errors(model):
    with pytest.raises(TypeError, match="Prior needs a flash_wrap.LatentDiffusion, got str"):
        Prior("a model")
    with pytest.raises(TypeError, match="abstract"):
        Solver(model)  # step is the one abstract method
    with pytest.raises(ValueError, match="use sampler='ddim'"):
        Prior(model, sampler="ddpm", steps=100)


def test_repr_names_the_grid_and_overrides(model):
    assert repr(Prior(model, steps=10, eta=2.0)) == "Prior(grid='ddim-10 (η=0)', overrides={'eta': 2.0})"
    assert repr(Prior(model)) == "Prior(grid='ddpm-1000', overrides={})"


BAD_MEASUREMENTS = [
    (lambda: torch.rand(2, 3, 16, 16), "must be 32x32 pixels"),
    (lambda: torch.rand(2, 1, 32, 32), "must have 3 channels"),
    (lambda: torch.rand(2, 3, 32), r"shape \(B, C, H, W\)"),
    (lambda: torch.rand(2, 3, 32, 32) * 255, "looks like 0-255"),
    (lambda: torch.full((2, 3, 32, 32), float("nan")), "NaN or Inf"),
    (lambda: torch.randint(0, 255, (2, 3, 32, 32), dtype=torch.uint8), "floating-point"),
    (lambda: torch.rand(3, 3, 32, 32), "holds 2 per-sample values but the batch has 3"),
    (lambda: [[0.5]], "must be a torch.Tensor"),
]


@pytest.mark.parametrize("make_y,match", BAD_MEASUREMENTS)
def test_bad_measurements_are_refused_before_any_work(model, monkeypatch, make_y, match):
    _refuse_denoiser(model, monkeypatch)
    op = GaussianBlur(sigma=torch.tensor([0.5, 1.0]))
    with pytest.raises((ValueError, TypeError), match=match):
        Prior(model).reconstruct(make_y(), op)


def test_other_inputs_are_refused_before_any_work(model, monkeypatch):
    _refuse_denoiser(model, monkeypatch)
    solver = Prior(model)
    op = GaussianBlur(sigma=0.5)
    y = torch.rand(2, 3, 32, 32)
    with pytest.raises(ValueError, match=r"y is an empty batch \(0 measurements\)"):
        solver.reconstruct(torch.rand(0, 3, 32, 32), op)
    with pytest.raises(TypeError, match="operator must be a flash_wrap.operators.Operator, got function"):
        solver.reconstruct(y, lambda x: x)
    with pytest.raises(ValueError, match="generator list has 3 entries but the batch has 2"):
        solver.reconstruct(y, op, generators([0, 1, 2]))
    with pytest.raises(TypeError, match="generator list must hold torch.Generator objects, got int"):
        solver.reconstruct(y, op, [0, 1])
    with pytest.raises(TypeError, match="generator must be a torch.Generator, a list of them or None, got int"):
        solver.reconstruct(y, op, 0)
    with pytest.raises(ValueError, match="refuses-blur cannot handle GaussianBlur"):  # check_operator, in prepare
        RefusesBlur(model).reconstruct(y, op)


def test_prepare_returns_y_in_the_model_dtype(model):
    model = model.double()
    y = torch.rand(2, 3, 32, 32)
    prepared = Prior(model).prepare(y, GaussianBlur(sigma=0.5), None)
    assert prepared.dtype == torch.float64 and torch.equal(prepared, y.double())


def test_the_bare_run_starts_from_noise_of_the_generators(model):
    # z_M ~ N(0, I) drawn from each sample's own generator, every sample at the top of the grid,
    # stepped with the hyper-parameters of the operator's task.
    solver = Prior(model, steps=5, eta=4.0)
    op = GaussianBlur(sigma=torch.tensor([0.5, 1.0]))
    y = op.measure(smooth_images(2), generator=torch.Generator().manual_seed(0))
    seen = []
    out = solver.reconstruct(y, op, generators([3, 4]), progress=False, callback=lambda s, o: seen.append(s))
    expected = randn((2, *model.latent_shape), generators([3, 4]), device=model.device, dtype=model.dtype)
    assert torch.equal(seen[0].z, expected) and seen[0].rows.tolist() == [0, 1]
    assert all(s.params == {"eta": 4.0} for s in seen)  # a bare run has no noise correction c
    assert out.start_step.tolist() == [5, 5] and out.nfe.tolist() == [5, 5]
    assert (out.solver, out.sampler, out.steps, out.eta) == ("prior", "ddim", 5, 0.0)
    assert out.sigma_hat is None and out.z_hat is None and out.decoder_calls.tolist() == [0, 0]


def test_an_operator_without_task_runs_with_the_fallback(model):
    solver = Prior(model, steps=3)
    y = Darken().measure(smooth_images(1), generator=torch.Generator().manual_seed(0))
    seen = []
    solver.reconstruct(y, Darken(), progress=False, callback=lambda s, o: seen.append(s.params))
    assert seen == [{"eta": 2.0, "extra": 0.0}] * 3  # the fallback, without Flash's c


def test_the_sampler_is_built_once_on_the_model_device(model):
    solver = Prior(model, steps=10)
    sampler = solver.sampler
    assert solver.sampler is sampler and sampler.num_steps == 10
    assert sampler.coef_z0.device == model.alphas_cumprod.device


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "0.5", True])
def test_hyper_parameter_values_must_be_finite_numbers(programmed_model, value):
    with pytest.raises(TypeError, match="must be a finite number"):
        LatentDPS(programmed_model, eta=value)


def test_a_negative_correction_constant_and_a_non_callable_callback_are_refused(programmed_model):
    with pytest.raises(ValueError, match="c must be >= 0"):
        LatentDPS(programmed_model, c=-1.0)
    with pytest.raises(ValueError, match="c must be a finite number >= 0"):
        Flash(LatentDPS(programmed_model), c=float("inf"))
    with pytest.raises(TypeError, match="fixed_start must be a grid index"):
        Flash(LatentDPS(programmed_model), fixed_start=True)
    op = GaussianBlur(sigma=0.5)
    y = torch.rand(1, 3, 32, 32)
    for runner in (LatentDPS(programmed_model), Flash(LatentDPS(programmed_model))):
        with pytest.raises(TypeError, match="callback must be callable"):
            runner.reconstruct(y, op, callback=5)
