"""GML-DPS: the solver contract, plus what is specific to it (one step reduces the residual, the
goodness term acts per sample, γ = 0 is exactly Latent-DPS, re-encoding out-of-range estimates,
one decode per step, defaults, registration)."""

from __future__ import annotations

import pytest
import torch

import flash_wrap
from flash_wrap.registry import load_registry
from flash_wrap.testing import (
    SolverContract,
    smooth_images,
)
from flash_wrap_plugins.gml_dps import GMLDPS


class TestGMLDPSContract(SolverContract):
    solver_class = GMLDPS
    tasks = ("gaussian-blur", "random-inpainting", "motion-blur", "super-resolution")
    steps = 10


def _measure(op, x, seed=0):
    return op.measure(x, generator=torch.Generator().manual_seed(seed))


def test_encoding_accepts_out_of_range_estimates(programmed_model):
    # The goodness term re-encodes D(ẑ0), which leaves [0, 1]: estimate mode accepts it (and
    # equals the plain encoder inside [0, 1]), plain mode refuses it, NaN is refused in both.
    x = smooth_images(1)
    torch.testing.assert_close(programmed_model.encode(x, estimate=True), programmed_model.encode(x))
    assert torch.isfinite(programmed_model.encode(1.5 * x - 0.2, estimate=True)).all()
    with pytest.raises(ValueError, match="must lie in"):
        programmed_model.encode(1.5 * x - 0.2)
    with pytest.raises(ValueError, match="NaN"):
        programmed_model.encode(torch.full_like(x, float("nan")), estimate=True)


def test_defaults_per_task():
    assert GMLDPS.defaults["gaussian-blur"] == GMLDPS.defaults["motion-blur"] == {"c": 1.2, "eta": 3.0, "gamma": 0.05}
    assert GMLDPS.defaults["random-inpainting"] == {"c": 1.0, "eta": 10.0, "gamma": 0.05}
    assert GMLDPS.defaults["super-resolution"] == GMLDPS.defaults["gaussian-blur"]
    assert GMLDPS.hyperparameter_names() == {"c", "eta", "gamma"}
    assert GMLDPS.sampler_kind == "ddpm" and GMLDPS.default_steps is None


def test_registered_and_listed(capsys):
    record = load_registry().solvers["gml-dps"]
    assert record.cls is GMLDPS and "flash_wrap_plugins.gml_dps" in record.origin
    assert flash_wrap.get_solver("gml-dps") is GMLDPS
    assert GMLDPS.summary and "Rout et al." in GMLDPS.reference and "NeurIPS 2023" in GMLDPS.reference
    cli = pytest.importorskip("flash_wrap.apps.cli", reason="the CLI is moving to flash_wrap.apps")
    assert cli.main(["solvers", "--details"]) == 0
    out = capsys.readouterr().out
    assert any(line.startswith("gml-dps ") for line in out.splitlines())
    assert "random-inpainting: c=1, eta=10, gamma=0.05" in out
