"""Reading and writing :class:`~flash_wrap.models.LatentDiffusion` folders.

Layout (safetensors + JSON only)::

    model_index.json                     our own config (see ``_index``)
    autoencoder/                         adapter's save_pretrained
    unet/                                diffusers UNet (+ empty_conditioning.safetensors), or
    transformer/                         a flow transformer (SD3, FLUX: index "denoiser" names its kind;
                                         diffusers weights + flow_conditioning.safetensors)
    scheduler/scheduler_config.json      diffusers DDPMScheduler, or FlowMatchEulerDiscreteScheduler
                                         (a flow model: index entry "flow_grid": {"style": "sd3" | "flux"})
    severity_encoders/<task>/            model.safetensors + config.json {task, latent_channels, metadata}
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diffusers import DDPMScheduler

from ..errors import InvalidInput, NotFound
from ._io import load_strict, load_tensors, read_json, save_tensors, write_json
from ._validate import check_schedule, check_task_name
from .autoencoders import Autoencoder
from .denoiser import Denoiser
from .flow_denoisers import FLOW_DENOISER_KINDS, FlowTransformerDenoiser
from .flow_grid import check_flow_grid_style
from .prediction import check_prediction_type
from .schedule_config import flow_schedule_from_config

if TYPE_CHECKING:
    from .bundle import LatentDiffusion

FORMAT_VERSION = 3
#: Versions this code reads. A bundle is written at the lowest version that holds what it carries.
READABLE_VERSIONS = (1, 2, 3)
#: The format version that introduced flow-matching bundles: a version-2 reader would rebuild their
#: scheduler config as a default DDPM schedule without a word, so flow bundles are written at 3.
FLOW_VERSION = 3
#: The index entries that hold the model's tuned values (:attr:`LatentDiffusion.tuned_values`,
#: interpreted by :mod:`flash_wrap.tuning` alone), each with the format version that introduced it:
#: a version-1 reader would ignore ``flash_defaults`` without a word (running Flash with other step
#: sizes), so a bundle holding them is written at version 2, which that reader refuses.
TUNED_ENTRIES = {"solver_defaults": 1, "baseline_defaults": 1, "flash_defaults": 2}


def format_version(tuned: dict[str, Any], path: str = "vp") -> int:
    """The ``format_version`` a bundle with these tuned values, on this noise ``path``, is written at."""
    least = FLOW_VERSION if path == "flow" else 1
    return max([least] + [TUNED_ENTRIES[name] for name, entry in tuned.items() if entry and name in TUNED_ENTRIES])


def _tuned_entries(tuned: dict[str, Any], where: str) -> dict[str, Any]:
    """The index entries of ``tuned`` (all of :data:`TUNED_ENTRIES`, empty ones as ``{}``)."""
    if not isinstance(tuned, dict) or set(tuned) - set(TUNED_ENTRIES):
        raise InvalidInput(f"{where}: tuned values must be an object with entries among {sorted(TUNED_ENTRIES)}, "
                         f"got {tuned!r}")
    return {name: tuned.get(name, {}) for name in TUNED_ENTRIES}


#: Where ``from_pretrained("demo")`` looks: the demo bundle shipped inside the package.
DEMO_PATH = Path(__file__).resolve().parents[1] / "assets" / "demo"
#: The bundles shipped inside the package, by the name ``from_pretrained`` and ``--model`` accept:
#: the DDPM demo prior and the rectified-flow demo prior (the same autoencoder and severity encoders).
SHIPPED_BUNDLES = {"demo": DEMO_PATH, "demo-flow": DEMO_PATH.with_name("demo-flow")}


def _index(model: LatentDiffusion) -> dict[str, Any]:
    return {
        "_class_name": "LatentDiffusion",
        "format_version": format_version(model.tuned_values, model.path),
        "image_size": model.image_size,
        "latent_scale": model.latent_scale,
        "latent_shift": model.latent_shift,
        "autoencoder": model.autoencoder.kind,
        "denoiser": model.denoiser.kind,
        "prediction_type": model.prediction_type,
        "conditioning": model.denoiser.conditioning_source,
        "severity_tasks": sorted(model.severity_encoders),
        **({"flow_grid": {"style": model.flow_grid}} if model.path == "flow" else {}),
        **_tuned_entries(model.tuned_values, "the model's tuned values"),
    }


def _write_severity(model: LatentDiffusion, path: Path, task: str) -> None:
    """Write ``severity_encoders/<task>/`` whole or not at all: into a hidden sibling first, then
    renamed over the old one, so an interruption never leaves a half-written encoder."""
    check_task_name(task)
    folder = path / "severity_encoders" / task
    staging = folder.with_name(f".{task}.writing-{os.getpid()}")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    save_tensors(model.severity_encoder(task).state_dict(), staging / "model.safetensors")
    metadata = model.severity_metadata.get(task, {})
    write_json(staging / "config.json", {"task": task, "latent_channels": model.latent_channels, "metadata": metadata})
    replace_folder(staging, folder)


def replace_folder(new: Path, target: Path) -> None:
    """Put the folder ``new`` at ``target`` by renames (same file system), removing what was there."""
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    if old.exists():
        shutil.rmtree(old)


def denoiser_folder(kind: object) -> str:
    """The bundle subfolder of a denoiser of ``kind``: ``"transformer"`` for the flow transformers
    (:data:`~flash_wrap.models.flow_denoisers.FLOW_DENOISER_KINDS`), ``"unet"`` otherwise."""
    return "transformer" if kind in FLOW_DENOISER_KINDS else "unet"


def save_bundle(model: LatentDiffusion, path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    model.autoencoder.save_pretrained(path / "autoencoder")
    model.denoiser.save_pretrained(path / denoiser_folder(model.denoiser.kind))
    model.scheduler.save_pretrained(str(path / "scheduler"))
    for task in model.severity_encoders:
        _write_severity(model, path, task)
    _drop_source_paths(path)
    write_json(path / "model_index.json", _index(model))


def _drop_source_paths(path: Path) -> None:
    """diffusers records the folder a part was loaded from (``_name_or_path``) in the configs it
    saves; a bundle does not carry the writer's file paths (a shipped bundle named our home folder)."""
    for config in (path / "autoencoder" / "config.json", path / "unet" / "config.json",
                   path / "transformer" / "config.json"):
        if config.is_file():
            data = read_json(config)
            if data.pop("_name_or_path", None) is not None:
                write_json(config, data)


def save_severity(model: LatentDiffusion, path: Path, task: str) -> None:
    """Add one severity encoder to an existing bundle folder and list it in its index."""
    index = read_json(path / "model_index.json")
    _write_severity(model, path, task)
    index["severity_tasks"] = sorted(set(index.get("severity_tasks", [])) | {task})
    write_json(path / "model_index.json", index)


def save_severity_metadata(path: Path, task: str, metadata: dict[str, Any]) -> None:
    """Replace only the metadata in ``severity_encoders/<task>/config.json`` of the bundle folder
    ``path`` (a temporary file renamed into place); the weights file is not touched."""
    check_task_name(task)
    file = path / "severity_encoders" / task / "config.json"
    config = read_json(file)
    staging = file.with_name(f".config.json.writing-{os.getpid()}")
    write_json(staging, {**config, "metadata": metadata})
    os.replace(staging, file)


def save_tuned_values(path: Path, tuned: dict[str, Any]) -> None:
    """Replace the tuned-value entries (:data:`TUNED_ENTRIES`) in the index of the bundle folder
    ``path`` (atomically)."""
    index_file = resolve(path) / "model_index.json"
    index = read_json(index_file)
    index.update(_tuned_entries(tuned, str(index_file)))
    index["format_version"] = format_version(tuned, "flow" if "flow_grid" in index else "vp")
    staging = index_file.with_name(f".model_index.json.writing-{os.getpid()}")
    write_json(staging, index)
    os.replace(staging, index_file)


def folder_kind(path: str | Path) -> str:
    """``"demo"`` (a bundle installed in the package, :data:`SHIPPED_BUNDLES`), ``"bundle"`` (a
    flash-wrap bundle folder) or ``"pipeline"`` (a diffusers pipeline folder: its ``model_index.json``
    names another class). A missing folder or index is ``FileNotFoundError``."""
    if str(path) in SHIPPED_BUNDLES:
        return "demo"
    folder = Path(path)
    if not folder.is_dir():
        shipped = ", ".join(repr(name) for name in SHIPPED_BUNDLES)
        raise NotFound(f"model folder {folder} does not exist (the bundles installed with flash-wrap are named {shipped})")
    index_file = folder / "model_index.json"
    if not index_file.is_file():
        raise NotFound(f"{folder} is neither a flash-wrap bundle nor a diffusers pipeline folder: it has "
                                "no model_index.json")
    if any(folder.resolve() == shipped.resolve() for shipped in SHIPPED_BUNDLES.values()):
        return "demo"
    return "bundle" if read_json(index_file).get("_class_name") == "LatentDiffusion" else "pipeline"


def resolve(path: str | Path) -> Path:
    """The model folder for ``path`` (a bundle or a diffusers pipeline folder); ``"demo"`` and
    ``"demo-flow"`` mean the bundles shipped inside the package (:data:`SHIPPED_BUNDLES`)."""
    if str(path) in SHIPPED_BUNDLES:
        folder = SHIPPED_BUNDLES[str(path)]
        if not (folder / "model_index.json").is_file():
            raise NotFound(
                f"the {path} bundle is not installed (expected it at {folder}); "
                "reinstall flash-wrap or pass the path of a saved model folder"
            )
        return folder
    folder_kind(path)  # a folder with a model_index.json: a bundle or a diffusers pipeline
    return Path(path)


def load_bundle(cls: type[LatentDiffusion], path: str | Path) -> LatentDiffusion:
    """Build ``cls`` from a local folder on the CPU in float32."""
    path = resolve(path)
    index = read_json(path / "model_index.json")
    version = index.get("format_version")
    if index.get("_class_name") != "LatentDiffusion" or isinstance(version, bool) or version not in READABLE_VERSIONS:
        newer = isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION
        raise InvalidInput(
            f"{path / 'model_index.json'} is not a LatentDiffusion index of a format this flash-wrap reads "
            f"({', '.join(map(str, READABLE_VERSIONS))}; _class_name={index.get('_class_name')!r}, "
            f"format_version={version!r})" + ("; it was written by a newer flash-wrap: upgrade" if newer else "")
        )
    newer_entries = [name for name in TUNED_ENTRIES if index.get(name) and TUNED_ENTRIES[name] > version]
    if newer_entries:
        name = newer_entries[0]
        raise InvalidInput(f"{path / 'model_index.json'} has format_version {version} but holds {name}, which "
                         f"need format {TUNED_ENTRIES[name]} (a version-{version} reader would ignore them); set "
                         f"format_version to {TUNED_ENTRIES[name]}")
    network = denoiser_folder(index.get("denoiser"))
    for sub in ("autoencoder", network, "scheduler"):
        if not (path / sub).is_dir():
            raise NotFound(f"model folder {path} has no {sub}/ subfolder")
    autoencoder = Autoencoder.from_pretrained(path / "autoencoder")
    if autoencoder.kind != index.get("autoencoder"):
        raise InvalidInput(
            f"{path / 'model_index.json'} says autoencoder {index.get('autoencoder')!r}, found {autoencoder.kind!r}"
        )
    denoiser: Denoiser | FlowTransformerDenoiser
    if network == "transformer":
        denoiser = FlowTransformerDenoiser.from_pretrained(path / network)
        if denoiser.kind != index["denoiser"]:
            raise InvalidInput(f"{path / 'model_index.json'} says denoiser {index['denoiser']!r}, "
                               f"{path / network} holds a {denoiser.kind}; the bundle is inconsistent")
    else:
        denoiser = Denoiser.from_pretrained(path / network)
    scheduler_file = path / "scheduler" / "scheduler_config.json"
    missing = [key for key in ("image_size", "autoencoder", "denoiser") if key not in index]
    if missing:
        raise InvalidInput(f"{path / 'model_index.json'} lacks {', '.join(missing)}")
    config = read_json(scheduler_file)
    if config.get("_class_name") == "FlowMatchEulerDiscreteScheduler":
        return _finish(cls, path, index, autoencoder, denoiser, *_flow_scheduler(path, index, config))
    if "flow_grid" in index:
        raise InvalidInput(f"{path / 'model_index.json'} has a flow_grid entry but {scheduler_file} is a "
                           f"{config.get('_class_name')!r}, not a FlowMatchEulerDiscreteScheduler; the bundle is inconsistent")
    try:
        scheduler = DDPMScheduler.from_config(config)
    except (NotImplementedError, RuntimeError, TypeError, ValueError) as err:
        raise InvalidInput(f"{scheduler_file}: not a usable DDPM schedule ({err})") from None
    try:
        check_schedule(scheduler)
    except ValueError as err:
        raise InvalidInput(f"{scheduler_file}: {err}") from None
    recorded = index.get("prediction_type")
    if recorded is None and scheduler.config.prediction_type != "epsilon":  # older bundles were ε-only
        raise InvalidInput(f"{path / 'model_index.json'} records no prediction_type (bundles without one are ε) but "
                         f"{scheduler_file} says {scheduler.config.prediction_type!r}; the bundle is inconsistent")
    if recorded is not None and recorded != scheduler.config.prediction_type:
        raise InvalidInput(f"{path / 'model_index.json'} says prediction_type {recorded!r} but {scheduler_file} says "
                         f"{scheduler.config.prediction_type!r}; the bundle is inconsistent")
    try:
        check_prediction_type(scheduler.config.prediction_type, str(scheduler_file))
    except ValueError as err:
        raise InvalidInput(str(err)) from None
    return _finish(cls, path, index, autoencoder, denoiser, scheduler)


def _flow_scheduler(path: Path, index: dict[str, Any], config: dict[str, Any]) -> tuple[Any, str]:
    """A flow bundle's scheduler (refusing options flash-wrap cannot reproduce) and grid style."""
    where = str(path / "model_index.json")
    if index["format_version"] < FLOW_VERSION:
        raise InvalidInput(f"{where}: format_version {index['format_version']} cannot hold a flow-matching model "
                           f"(its scheduler is FlowMatchEulerDiscreteScheduler); set format_version to {FLOW_VERSION}")
    if index.get("prediction_type", "velocity") != "velocity":
        raise InvalidInput(f"{where} says prediction_type {index['prediction_type']!r} but the scheduler is "
                           "flow matching (velocity); the bundle is inconsistent")
    grid = index.get("flow_grid", {"style": "sd3"})
    if not isinstance(grid, dict) or set(grid) != {"style"}:
        raise InvalidInput(f"{where}: flow_grid must be an object {{\"style\": \"sd3\" | \"flux\"}}, got {grid!r}")
    style = check_flow_grid_style(grid["style"], f"{where}: flow_grid")
    return flow_schedule_from_config(config, str(path / "scheduler" / "scheduler_config.json")), style


def _finish(cls: type[LatentDiffusion], path: Path, index: dict[str, Any], autoencoder: Autoencoder,
            denoiser: Denoiser | FlowTransformerDenoiser, scheduler: Any, flow_grid: str | None = None) -> LatentDiffusion:
    """The bundle from its parts (``flow_grid``: the σ grid style of a flow model), with its tuned
    values and severity encoders."""
    flow = {} if flow_grid is None else {"flow_grid": flow_grid}
    model = cls(
        autoencoder,
        denoiser,
        scheduler,
        image_size=index["image_size"],
        latent_scale=index.get("latent_scale", 1.0),
        latent_shift=index.get("latent_shift", 0.0),
        **flow,
    )
    model.tuned_values = {name: index[name] for name in TUNED_ENTRIES if name in index}
    model.tuned_source = str(path / "model_index.json")
    tasks = index.get("severity_tasks", [])
    if not isinstance(tasks, list):
        raise InvalidInput(f"{path / 'model_index.json'}: severity_tasks must be a list of task names, got {tasks!r}")
    for task in tasks:  # names from JSON become paths: all checked before any file is opened
        check_task_name(task)
    for task in tasks:
        folder = path / "severity_encoders" / task
        config = read_json(folder / "config.json")
        encoder = model.make_severity_encoder()
        file = folder / "model.safetensors"
        load_strict(encoder, load_tensors(file), f"severity encoder for task {task!r} does not fit this model ({file})")
        model.add_severity_encoder(task, encoder, metadata=config.get("metadata", {}))
    return model
