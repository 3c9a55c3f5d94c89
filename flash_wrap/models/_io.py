"""File helpers for model folders: JSON configs and safetensors, with errors naming the file."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ..errors import InvalidInput, NotFound

if TYPE_CHECKING:
    from diffusers import ModelMixin


def read_json(file: Path) -> dict[str, Any]:
    """Read a JSON object; a missing file is ``FileNotFoundError``, bad JSON ``ValueError``."""
    if not file.is_file():
        raise NotFound(f"missing {file.name}: {file} does not exist")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InvalidInput(f"{file} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{file} must hold a JSON object, got {type(data).__name__}")
    return data


def write_json(file: Path, data: dict[str, Any]) -> None:
    file.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def check_safetensors(file: Path) -> None:
    """Parse the header of a safetensors file; truncated or garbage files raise ``ValueError``."""
    if not file.is_file():
        raise NotFound(f"missing weights file {file}")
    try:
        with safe_open(str(file), framework="pt"):
            pass
    except SafetensorError as err:
        raise InvalidInput(f"corrupt safetensors file {file}: {err}") from None


def load_tensors(file: Path) -> dict[str, torch.Tensor]:
    check_safetensors(file)
    try:
        return load_file(str(file), device="cpu")
    except SafetensorError as err:
        raise InvalidInput(f"corrupt safetensors file {file}: {err}") from None


def save_tensors(tensors: dict[str, torch.Tensor], file: Path, metadata: dict[str, str] | None = None) -> None:
    """Save detached, contiguous CPU copies (safetensors refuses shared or strided storage), with
    optional string ``metadata`` in the file's header."""
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(file), metadata=metadata)


def read_metadata(file: Path) -> dict[str, str]:
    """The string metadata of a safetensors file's header (``{}`` when it has none)."""
    check_safetensors(file)
    with safe_open(str(file), framework="pt") as f:
        return dict(f.metadata() or {})


def load_strict(module: torch.nn.Module, tensors: dict[str, torch.Tensor], what: str) -> None:
    """``module.load_state_dict(tensors, strict=True)``, but a mismatch is a ``ValueError`` that
    names ``what`` and the first offending key (in the module's own key order)."""
    expected = module.state_dict()
    for key, ref in expected.items():
        if key not in tensors:
            raise InvalidInput(f"{what}: missing tensor {key!r} (the model expects shape {tuple(ref.shape)})")
        if tuple(tensors[key].shape) != tuple(ref.shape):
            raise InvalidInput(
                f"{what}: tensor {key!r} has shape {tuple(tensors[key].shape)}, "
                f"the model expects {tuple(ref.shape)}"
            )
        if ref.is_floating_point() and not tensors[key].is_floating_point():
            raise InvalidInput(f"{what}: tensor {key!r} is stored as {tensors[key].dtype}, the model expects floating "
                             "point (loading would truncate it)")
    extra = [key for key in tensors if key not in expected]
    if extra:
        raise InvalidInput(f"{what}: unexpected tensor {extra[0]!r} ({len(extra)} unexpected in all)")
    for key, value in tensors.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise InvalidInput(f"{what}: tensor {key!r} holds NaN or infinite values")
    module.load_state_dict(tensors, strict=True)


#: diffusers' weights file name (a single file; shards are ``…-00001-of-00002.safetensors``).
WEIGHTS_STEM = "diffusion_pytorch_model"
#: Pickle-based weight formats that are never loaded (they can run code when unpickled).
PICKLED_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl")


def _variant_of(file: Path, stem: str) -> str | None:
    """``"fp16"`` for ``stem.fp16.safetensors`` or ``stem-00001-of-00002.fp16.safetensors``; ``None``
    for the plain weights; ``"?"`` for a name that is not ``stem``'s."""
    name = file.name[: -len(".safetensors")]
    if name == stem or re.fullmatch(re.escape(stem) + r"-\d+-of-\d+", name):
        return None
    # diffusers writes variant shards both ways: stem-00001-of-00002.fp16 and stem.fp16-00001-of-00002
    match = re.fullmatch(re.escape(stem) + r"(?:-\d+-of-\d+)?\.([A-Za-z0-9_]+)(?:-\d+-of-\d+)?", name)
    return match.group(1) if match else "?"


def weights_files(folder: Path, stem: str = WEIGHTS_STEM, variant: str | None = None) -> tuple[list[Path], str | None]:
    """The safetensors files of ``folder``'s weights for ``variant`` and the variant actually used.

    With ``variant=None`` the plain weights are taken; a folder that holds only one variant (e.g.
    ``fp16``) uses that one. Pickled weights alone are refused with how to convert them; a folder
    with several variants and no plain weights must be told which (``variant=``)."""
    found: dict[str | None, list[Path]] = {}
    for file in sorted(folder.glob(f"{stem}*.safetensors")):
        tag = _variant_of(file, stem)
        if tag != "?":
            found.setdefault(tag, []).append(file)
    if variant is not None:
        if variant not in found:
            have = ", ".join(repr(v) for v in found) or "none"
            raise NotFound(f"{folder} has no {variant!r} variant of {stem}.safetensors (variants here: {have})")
        return found[variant], variant
    if None in found:
        return found[None], None
    if len(found) == 1:
        only = next(iter(found))
        return found[only], only
    if found:
        raise InvalidInput(f"{folder} holds the weights variants {', '.join(repr(v) for v in found)} and no plain "
                         "weights; choose one with variant=")
    pickled = sorted(f.name for f in folder.iterdir() if f.is_file() and f.suffix in PICKLED_SUFFIXES) \
        if folder.is_dir() else []
    if pickled:
        raise InvalidInput(
            f"{folder} holds pickled weights ({', '.join(pickled)}) and no .safetensors; flash-wrap never unpickles "
            "model files (they can run code). Convert once where you trust the file: load the folder with diffusers "
            "or transformers and call save_pretrained(folder, safe_serialization=True)"
        )
    raise NotFound(f"no .safetensors weights in {folder}")


def verify_loaded(module: torch.nn.Module, folder: Path, files: list[Path] | None = None) -> None:
    """After a diffusers ``from_pretrained``: the folder's weights filled the module exactly.

    diffusers leaves a weight that is missing from the file on the ``meta`` device and skips
    unexpected ones with a log line; here either is a ``ValueError`` naming the file and the
    tensor, and so is a NaN or infinite value. ``files``: the weights files that were loaded
    (default: the folder's plain weights).
    """
    if files is None:
        files = weights_files(folder)[0]
    stored_dtypes: dict[str, str] = {}  # tensor name -> safetensors dtype ("F32", "I32", …), one header read per file
    for file in files:
        try:
            with safe_open(str(file), "pt") as f:
                for key in f.keys():
                    stored_dtypes[key] = f.get_slice(key).get_dtype()
        except (SafetensorError, OSError) as err:
            raise InvalidInput(f"corrupt safetensors file {file}: {err}") from None
    stored = set(stored_dtypes)
    where = ", ".join(str(f) for f in files) or str(folder)
    expected = module.state_dict()
    missing = [k for k in expected if k not in stored]
    if missing:
        raise InvalidInput(f"{where}: missing tensor {missing[0]!r} ({len(missing)} missing in all); the weights file "
                         "does not match the config")
    extra = sorted(stored - set(expected))
    if extra:
        raise InvalidInput(f"{where}: unexpected tensor {extra[0]!r} ({len(extra)} unexpected in all)")
    for key, value in expected.items():
        if value.is_floating_point() and not stored_dtypes.get(key, "F").startswith(("F", "BF")):
            raise InvalidInput(f"{where}: tensor {key!r} is stored as {stored_dtypes[key]}, the model expects floating "
                             "point (loading would truncate it)")
        if value.is_meta:
            raise InvalidInput(f"{where}: tensor {key!r} was not loaded (left on the meta device)")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise InvalidInput(f"{where}: tensor {key!r} holds NaN or infinite values")


def build_from_folder(model_class: type[ModelMixin], folder: Path, *, variant: str | None = None) -> torch.nn.Module:
    """``model_class.from_pretrained(folder)`` from local safetensors in float32, then
    :func:`verify_loaded`; a config that cannot build the model (e.g. negative channel counts)
    is a ``ValueError`` naming its ``config.json`` instead of an error from deep inside torch.
    ``variant``: diffusers' weights variant (``"fp16"`` reads ``diffusion_pytorch_model.fp16.safetensors``);
    by default the plain weights, or the only variant the folder has."""
    files, variant = weights_files(folder, variant=variant)
    for file in files:
        check_safetensors(file)
    try:
        model = model_class.from_pretrained(str(folder), local_files_only=True, use_safetensors=True,
                                            torch_dtype=torch.float32, variant=variant)
    except (RuntimeError, TypeError, KeyError, AttributeError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InvalidInput(f"{folder / 'config.json'}: cannot build a {model_class.__name__} from it ({first})") from None
    verify_loaded(model, folder, files)
    return model
