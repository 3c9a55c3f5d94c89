"""``flash-wrap import-encoder``: a released Flash-Diffusion severity encoder into a bundle.

The checkpoint is converted by :mod:`flash_wrap.severity.official` (tensors only, strict
names and shapes) for a model with the LDM VQ-f4 autoencoder; the bundle written follows
:mod:`flash_wrap.apps.bundles` (in place for a bundle, ``--save-to`` for ``demo`` or a pipeline
folder). An encoder the bundle already has for the task is replaced only with ``--force``.

The operator the checkpoint's hyper-parameters name must be one ``--task`` declares in its
``official_operators`` (the built-in tasks: official ``gaussian_blur`` → ``gaussian-blur``,
``nonlinear_blur`` → ``motion-blur``, ``inpainting`` with ``mask_type: random`` →
``random-inpainting``); one that names none (a bare state dict, a
safetensors file) is imported with ``task_checked: false`` in the encoder's metadata, and a
training noise level other than flash-wrap's is a warning (:func:`~flash_wrap.severity.official.check_official_training`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ..errors import InvalidInput, NotFound
from ..images import list_images, usable_images
from ..models import LatentDiffusion
from ..operators.base import DEFAULT_NOISE_STD
from ..registry import get_registry
from ..severity.encoder import SeverityEncoder
from ..severity.official import check_official_model, check_official_training, official_encoder, read_official
from ..severity.range import RANGE_KEY
from .bundles import bundle_target, write_bundle
from .runs import exclusive
from .severity_range import CHECK_SIZE, encoder_range

COMMAND = "flash-wrap import-encoder"
SOURCE = "Flash-Diffusion severity encoder (github.com/z-fabian/flash-diffusion)"


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _converted(checkpoint: Path, model: str | Path, task: str, force: bool) -> tuple[LatentDiffusion, SeverityEncoder, dict]:
    """Load and check the model, then convert the checkpoint for it (nothing written yet)."""
    loaded = LatentDiffusion.from_pretrained(model)
    check_official_model(loaded)
    if task in loaded.severity_encoders and not force:
        raise InvalidInput(f"{model} already has a {task} severity encoder; pass --force to replace it, or import "
                         "into another bundle with --save-to NEW_FOLDER")
    official = read_official(checkpoint)
    what = f"checkpoint {checkpoint}"
    training = check_official_training(official.training, task, what, official_tasks=get_registry().official_tasks(),
                                       noise_std=DEFAULT_NOISE_STD)  # refuses another task's encoder
    encoder = official_encoder(official.tensors, loaded, what)
    metadata = {"imported_from": {"source": SOURCE, "file": checkpoint.name, "sha256": _sha256(checkpoint)},
                "official_training": training}
    return loaded, encoder, metadata


def import_encoder(checkpoint: str | Path, *, model: str | Path, task: str, output: str | Path | None = None,
                   force: bool = False, data: str | Path | None = None) -> dict[str, Any]:
    """Convert ``checkpoint`` into the severity encoder for ``task`` of the bundle written for ``model``.

    Everything is checked (task, checkpoint file, target folder, model, existing encoder, the
    operator the checkpoint was trained for, every tensor) before anything is written; a refused
    run leaves no empty ``--save-to`` behind. The encoder's metadata records the checkpoint's file
    and hash (``imported_from``) and its training operator and noise (``official_training``); with
    ``data`` (a folder of clean training-like images) also the σ̂ range of :mod:`flash_wrap.severity.range`.
    Returns ``{"task", "written_to", "sha256"}``.
    """
    get_registry().task(task)
    files = usable_images(list_images(data), CHECK_SIZE) if data is not None else None
    file = Path(checkpoint).expanduser()
    if not file.is_file():
        raise NotFound(f"checkpoint {file} does not exist or is not a file")
    out = Path(output).expanduser() if output is not None else None
    existed = out is None or out.exists()
    folder, copy = bundle_target(model, output, command=COMMAND)
    try:
        if copy:
            loaded, encoder, metadata = _converted(file, model, task, force)
            write_bundle(loaded, folder, source=model)
        with exclusive(folder, what=f"{COMMAND} {task}"):
            if not copy:  # the bundle itself is written: hold its lock from the first check on
                loaded, encoder, metadata = _converted(file, folder, task, force)
            loaded.add_severity_encoder(task, encoder, metadata)
            if files is not None and data is not None:
                metadata[RANGE_KEY] = encoder_range(loaded, task, files, data=data)
            loaded.save_severity_encoder(folder, task, metadata=metadata)
    except BaseException:
        if not existed and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        raise
    return {"task": task, "written_to": str(folder / "severity_encoders" / task),
            "sha256": metadata["imported_from"]["sha256"]}
