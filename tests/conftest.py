"""Shared fixtures: tiny random models built in the test session (nothing downloaded).

Helpers live in :mod:`flash_wrap.testing` (public, so plugin packages use the same ones);
this file holds fixtures only.
"""

from __future__ import annotations

import pytest
import torch

from flash_wrap.models import LatentDiffusion
from flash_wrap.testing import ProgrammedSeverity, tiny_model


@pytest.fixture(scope="session", autouse=True)
def _one_thread_per_test_process():
    # Tiny models gain nothing from intra-op threads, and on a 2-core machine shared with other
    # processes, spinning OpenMP threads slow everything down by orders of magnitude.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def programmed_model() -> LatentDiffusion:
    """A tiny VQ model for 32x32 images with a programmed Gaussian-blur severity encoder."""
    model = tiny_model("vq", image_size=32, seed=0)
    model.add_severity_encoder("gaussian-blur", ProgrammedSeverity(model))
    return model
