"""``flash-wrap severity-range``: record the σ̂ range of a bundle's severity encoder (once, after the fact).

For bundles whose encoder was written without the record of :mod:`flash_wrap.severity.range`
(trained before it existed, or imported without ``--data``): the encoder runs on clean images
degraded as ``train-severity`` degrades its validation images (a level drawn over the task's
training range, and both ends of the range; the encoder's training noise level), and the range of its σ̂ (:data:`~flash_wrap.severity.range.RANGE_RULE`) is written
into the encoder's ``config.json``; its weights file is not rewritten. The bundle written follows
:mod:`flash_wrap.apps.bundles` (in place, or ``--save-to`` for ``demo`` and pipeline folders).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..images import list_images, usable_images
from ..models import LatentDiffusion
from ..models.bundle_io import save_severity_metadata
from ..operators.base import DEFAULT_NOISE_STD
from ..registry import get_task
from ..severity.range import RANGE_KEY, measure_range
from .bundles import bundle_target, write_bundle
from .runs import exclusive
from .training.severity import range_batches, range_source

COMMAND = "flash-wrap severity-range"
#: images are fully decoded at this size when checked, before any work
CHECK_SIZE = 16


def encoder_range(model: LatentDiffusion, task: str, files: list[Path], *, data: str | Path, seed: int = 0,
                  batch_size: int = 16) -> dict[str, Any]:
    """The σ̂ range record of ``model``'s ``task`` encoder on ``files`` (clean images), each degraded at a
    level drawn from the task's training range and at both its ends, with the encoder's training noise
    (seeded by ``seed``)."""
    spec = get_task(task)
    metadata = model.severity_metadata.get(task, {})
    training = metadata.get("training", {})
    noise_std = training.get("noise_std", DEFAULT_NOISE_STD) if isinstance(training, dict) else DEFAULT_NOISE_STD
    encoder = model.severity_encoder(task)
    was_training = encoder.training
    batches = range_batches(spec, files, model.image_size, seed, noise_std, batch_size)
    try:
        record = measure_range(encoder.eval(), batches)
    finally:
        encoder.train(was_training)
    return {**record, **range_source(spec, data, noise_std), "seed": seed}


def record_severity_range(model: str | Path, task: str, data: str | Path, *, output: str | Path | None = None,
                          limit: int | None = None, seed: int = 0, batch_size: int = 16) -> dict[str, Any]:
    """Measure and store the σ̂ range of ``task``'s encoder in the bundle written for ``model``.

    Everything (task, images, target folder, the encoder's presence) is checked before any is written.
    Returns the stored record with ``written_to`` (the encoder's folder).
    """
    get_task(task)
    files = usable_images(list_images(data)[:limit], CHECK_SIZE)
    folder, copy = bundle_target(model, output, command=COMMAND, inputs=(data,))
    loaded = LatentDiffusion.from_pretrained(model if copy else folder)
    loaded.severity_encoder(task)  # no encoder for the task: refused before anything is written
    record = encoder_range(loaded, task, files, data=data, seed=seed, batch_size=batch_size)
    if copy:
        write_bundle(loaded, folder, source=model)
    with exclusive(folder, what=f"{COMMAND} {task}"):  # the weights file stays as it is, bytes and dtype
        save_severity_metadata(folder, task, {**loaded.severity_metadata.get(task, {}), RANGE_KEY: record})
    return {**record, "written_to": str(folder / "severity_encoders" / task)}
