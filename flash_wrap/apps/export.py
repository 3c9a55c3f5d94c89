"""``flash-wrap export``: copy a bundle without its training files, optionally in lower precision.

Never in place, never into another bundle unless asked: the copy is written into a hidden
sibling folder and renamed into place only when complete.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from ..errors import InvalidInput
from ..models import LatentDiffusion
from ..models.bundle_io import replace_folder, resolve
from .runs import RunFolderError

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def export_bundle(model: str | Path, out: str | Path, *, dtype: str = "float16", force: bool = False,
                  severity_from: str | Path | None = None) -> Path:
    """Write ``model``'s bundle to the new folder ``out`` with weights stored in ``dtype``.

    ``severity_from`` (a bundle, or ``"demo"``) adds that bundle's severity encoders, as they are, for
    every task it has: an encoder of an autoencoder serves every prior on those latents (refused
    unless both share the latent space, autoencoder weights included; the copy records where
    each came from). They replace ``model``'s own encoders for the same tasks.

    Refused before loading anything: ``out`` equal to or inside ``model`` (it would rewrite the
    source), ``out`` a file, ``out`` a non-empty folder that is not a bundle (``force`` or not: its
    files would be deleted), or ``out`` another bundle without ``force`` (the two would merge). With
    ``force`` the old bundle is replaced whole, after the copy is done.
    """
    if dtype not in DTYPES:
        raise InvalidInput(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    source = resolve(model).resolve()
    target = Path(out).expanduser()
    resolved = target.resolve()
    if resolved == source or source in resolved.parents:
        raise RunFolderError(f"--out {target} is the model folder {model} or inside it; export writes a copy, "
                             "choose another --out")
    if resolved in source.parents:
        raise RunFolderError(f"--out {target} contains the model folder {model}; replacing it would delete the source")
    if target.exists() and not target.is_dir():
        raise RunFolderError(f"--out {target} is a file, not a folder")
    if target.is_dir() and any(target.iterdir()):
        if not (target / "model_index.json").is_file():
            shown = ", ".join(sorted(p.name for p in target.iterdir())[:3])
            raise RunFolderError(f"--out {target} holds files that are not a bundle ({shown}, ...); export replaces "
                                 "only a bundle folder (with --force) or an empty one: choose a new or empty folder")
        if not force:
            raise RunFolderError(f"--out {target} already holds another bundle; choose an empty or new folder, or pass "
                                 "--force to replace it")
    resolved.parent.mkdir(parents=True, exist_ok=True)
    staging = resolved.with_name(f".{resolved.name}.writing-{os.getpid()}")
    if staging.exists():
        shutil.rmtree(staging)
    try:
        loaded = LatentDiffusion.from_pretrained(model)
        if severity_from is not None:
            try:
                donor = LatentDiffusion.from_pretrained(severity_from)
            except (OSError, ValueError) as err:
                raise type(err)(f"--severity-from: {err}") from None
            if not donor.severity_encoders:
                raise InvalidInput(f"--severity-from {severity_from} has no severity encoders to add")
            loaded.adopt_severity_encoders(donor, sorted(donor.severity_encoders), origin=str(severity_from))
        cast = loaded.to(DTYPES[dtype])
        bad = [name for name, t in cast.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
        if bad:
            raise InvalidInput(f"{model} has weights that {dtype} cannot hold (e.g. {bad[0]!r} overflows to inf); "
                             "export as float32 or bfloat16")
        cast.save_pretrained(staging)
        replace_folder(staging, resolved)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return target
