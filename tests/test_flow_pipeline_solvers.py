"""The four solvers through the contract suite on tiny SD3 and FLUX pipeline stand-ins (ALGORITHMS.md §12).

Each stand-in is a real pipeline folder (random weights, local tokenizers) loaded with
``LatentDiffusion.from_pretrained``: 16-channel KL latents with the VAE's shift and scale, the SD3
transformer (σ·1000 as is) or the FLUX transformer (2×2 packing, ids, distilled guidance, dynamic
shifting); images 16² (latents 16 × 8 × 8: the contract holds at any size, and the transformers
cost per token). Grids are short to keep the suite fast.
"""

from __future__ import annotations

import copy
import functools
import tempfile
from pathlib import Path
from typing import ClassVar

from flash_wrap.models import LatentDiffusion
from flash_wrap.testing import SolverContract
from flash_wrap.testing.flow_pipelines import tiny_flux_pipeline, tiny_sd3_pipeline
from flash_wrap_plugins.gml_dps import GMLDPS
from flash_wrap_plugins.latent_dps import LatentDPS
from flash_wrap_plugins.psld import PSLD
from flash_wrap_plugins.resample import ReSample

_FOLDERS = tempfile.TemporaryDirectory(prefix="flash-wrap-flow-stand-ins-")


@functools.cache
def _stand_in(family: str, image_size: int) -> LatentDiffusion:
    folder = Path(_FOLDERS.name) / family
    if not folder.exists():
        (tiny_sd3_pipeline if family == "sd3" else tiny_flux_pipeline)(folder)
    return LatentDiffusion.from_pretrained(folder, image_size=image_size)


class _PipelineStandIn(SolverContract):
    """The contract on a pipeline stand-in instead of a tiny UNet prior. The pipelines' shifted grids
    leave few low-noise levels on a short grid (8 steps: two SNRs above 1), too few for two different
    adaptive starts below the noise cap, so the grids have 16 steps."""

    family: ClassVar[str]
    steps = 16
    image_size = 16

    def make_prior(self) -> LatentDiffusion:
        return copy.deepcopy(_stand_in(self.family, self.image_size))


class TestLatentDPSOnSD3(_PipelineStandIn):
    solver_class = LatentDPS
    family = "sd3"
    tasks = ("gaussian-blur",)


class TestLatentDPSOnFlux(_PipelineStandIn):
    solver_class = LatentDPS
    family = "flux"
    tasks = ("random-inpainting",)


class TestPSLDOnSD3(_PipelineStandIn):
    solver_class = PSLD
    family = "sd3"
    tasks = ("super-resolution",)
    refused_tasks = ("motion-blur",)


class TestPSLDOnFlux(_PipelineStandIn):
    solver_class = PSLD
    family = "flux"
    tasks = ("gaussian-blur",)
    refused_tasks = ("motion-blur",)


class TestGMLDPSOnSD3(_PipelineStandIn):
    solver_class = GMLDPS
    family = "sd3"
    tasks = ("motion-blur",)


class TestGMLDPSOnFlux(_PipelineStandIn):
    solver_class = GMLDPS
    family = "flux"
    tasks = ("gaussian-blur",)


class TestReSampleOnSD3(_PipelineStandIn):
    solver_class = ReSample
    family = "sd3"
    tasks = ("random-inpainting",)
    overrides = {"iterations": 3, "every_n": 3}


class TestReSampleOnFlux(_PipelineStandIn):
    solver_class = ReSample
    family = "flux"
    tasks = ("gaussian-blur",)
    overrides = {"iterations": 3, "every_n": 3}
