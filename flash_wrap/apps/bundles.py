"""Which bundle folder a writing command writes (``train-severity``, ``import-encoder``, ``tune``).

Rules (README, "Use your own LDM or Stable Diffusion"):

* a flash-wrap bundle given as ``--model`` is written in place unless ``--save-to`` names another
  folder;
* ``demo`` (the bundle installed inside the package) and a diffusers pipeline folder are never
  written: ``--save-to`` is required and receives a flash-wrap bundle of the model first;
* an ``--save-to`` other than ``--model`` must be new or empty, so nothing of the user's is
  overwritten or merged; or a bundle written earlier from the same ``--model`` with the same content
  (its index records ``derived_from``: the path and a SHA-256 of the folder), so a second command
  adds to it and an interrupted one continues.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from ..models._io import read_json, write_json
from ..models.bundle_io import folder_kind, replace_folder
from ..models.bundle_io import resolve as resolve_bundle
from .runs import RunFolderError, check_output_folder, fingerprint_folder

if TYPE_CHECKING:
    from ..models import LatentDiffusion


def bundle_target(model: str | Path, output: str | Path | None, *, command: str,
                  inputs: tuple[str | Path, ...] = ()) -> tuple[Path, bool]:
    """Before any work: the bundle folder to write and whether the model must be saved there first.

    Returns ``(folder, copy)``: ``copy`` is true when ``folder`` is a new bundle that
    :func:`write_bundle` must fill with the loaded model before the command adds its part.
    Raises :class:`~flash_wrap.apps.runs.RunFolderError` saying how to fix a refused target.
    """
    kind = folder_kind(model)
    source = resolve_bundle(model) if kind != "pipeline" else Path(model)
    if output is None:
        if kind == "demo":
            raise RunFolderError(f"{command} writes a bundle and --model {model} is installed inside the package; "
                                 "pass --save-to NEW_FOLDER to write a copy with the result")
        if kind == "pipeline":
            raise RunFolderError(f"{command} writes a flash-wrap bundle and {model} is a diffusers pipeline folder, "
                                 "which is never modified; pass --save-to NEW_FOLDER to write the bundle there")
        return source.resolve(), False
    out = Path(output).expanduser()
    if kind == "bundle" and out.resolve() == source.resolve():
        return source.resolve(), False
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        record = derived_from(out)
        if record is not None and record.get("path") == str(source.resolve()):
            if record.get("fingerprint") != source_fingerprint(source):
                raise RunFolderError(f"--save-to {out} was written from {model}, which has changed since (its files' "
                                     "SHA-256 differs); write a new bundle to another --save-to")
            return out.resolve(), False
        raise RunFolderError(f"--save-to {out} exists and is not an empty folder (nor a bundle written from {model}); "
                             f"{command} writes a new bundle there: choose a new folder, or pass that bundle itself "
                             "as --model to add to it")
    resolved = check_output_folder(out, inputs=(source, *inputs), option="--save-to")
    return resolved, True


_FINGERPRINTS: dict[str, str] = {}


def source_fingerprint(folder: Path) -> str:
    """SHA-256 of a model folder's files, computed once per process (a Stable Diffusion folder is
    gigabytes)."""
    key = str(Path(folder).resolve())
    if key not in _FINGERPRINTS:
        _FINGERPRINTS[key] = fingerprint_folder(Path(key))
    return _FINGERPRINTS[key]


def derived_from(folder: Path) -> dict | None:
    """``{"path", "fingerprint"}`` of the ``--model`` a bundle folder was written from by
    :func:`write_bundle` (``None`` otherwise)."""
    index = folder / "model_index.json"
    try:
        data = read_json(index) if index.is_file() else {}
    except ValueError:
        return None
    record = data.get("derived_from") if data.get("_class_name") == "LatentDiffusion" else None
    return record if isinstance(record, dict) else None


def write_bundle(model: LatentDiffusion, target: Path, *, source: str | Path | None = None) -> None:
    """Save ``model`` as a bundle at ``target`` whole or not at all (a staging folder, then a rename).

    ``source``: the ``--model`` it was loaded from ("demo" or a folder), recorded in the index as
    ``derived_from`` so that a later command with the same ``--model`` and ``--save-to`` continues
    into this bundle."""
    staging = target.with_name(f".{target.name}.writing-{os.getpid()}")
    if staging.exists():
        shutil.rmtree(staging)
    try:
        model.save_pretrained(staging)
        if source is not None:
            index = read_json(staging / "model_index.json")
            folder = resolve_bundle(source).resolve()
            index["derived_from"] = {"path": str(folder), "fingerprint": source_fingerprint(folder)}
            write_json(staging / "model_index.json", index)
        replace_folder(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
