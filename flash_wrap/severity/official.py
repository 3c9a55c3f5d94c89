"""The paper's released severity encoders (Flash-Diffusion, z-fabian/flash-diffusion) as ours.

ALGORITHMS.md §2 and §11 [C `flash_diffusion/severity_encoder.py`, `pl_modules/severity_encoder_module.py`].
An official checkpoint is PyTorch Lightning's dict (``state_dict``, ``hyper_parameters``, training
state) of a ``SeverityEncoderModule``, whose ``state_dict`` holds

* ``encoder.encoder.*``: the LDM VQ-f4 encoder in CompVis naming (``conv_in``,
  ``down.{i}.block.{j}``, ``down.{i}.downsample.conv``, ``mid.block_1``, ``mid.attn_1``,
  ``mid.block_2``, ``norm_out``, ``conv_out``);
* ``encoder.quant_conv.*``: 1×1 conv, 3 → 3 channels;
* ``encoder.std_conv.*``: the variance head, 1×1 conv, 3 → 3 channels;
* ``pretrained_autoencoder.*``: the frozen autoencoder used in training (ignored).

The official forward takes images in [−1, 1] ``(B, 3, H, W)``: ``z = quant_conv(Encoder(x))``
``(B, 3, H/4, W/4)`` is ẑ, and ``v = mean(std_conv(z)²)`` over all ``3·H/4·W/4`` entries, ``(B,)``,
is the predicted error variance σ̂ [P eq. 3, App. A]. Our :class:`SeverityEncoder` computes the same
from [0, 1] images: its backbone rescales to [−1, 1] before the same encoder and ``quant_conv``
(latent scale 1, shift 0 for this autoencoder), and ``variance_head`` plays ``std_conv``.

Only tensors are read: ``torch.load(..., weights_only=True)`` (never the full unpickler), or a
safetensors file.

The checkpoint's ``hyper_parameters`` say what it was trained on: ``operator_config`` (the
``operator:`` section of an ``flash_configs/inverse_configs/*.yaml``, its operator named by
``type``) and ``noise_config`` (``sigma_min``, ``sigma_max``), saved by ``save_hyperparameters()``
in ``SeverityEncoderModule.__init__`` [C `pl_modules/severity_encoder_module.py`] or kept by
``extract_sev_encoder_ckpt`` in its ``*_light.ckpt`` [C `scripts/utils.py`].
:func:`official_training` reads them as plain values and :func:`check_official_training` refuses an
encoder trained for another operator than the task it is imported as (each task declares the
official operators it imports, ``Task.official_operators``).
"""

from __future__ import annotations

import argparse
import logging
import math
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..errors import InvalidInput, NotFound, WrongType
from .encoder import SeverityEncoder

if TYPE_CHECKING:
    from ..models import LatentDiffusion

#: Plain containers a Lightning ``hyper_parameters`` entry may hold besides dicts and lists. Each
#: is rebuilt by ``__new__`` and an attribute update, so unpickling it runs no code of the file's.
SAFE_CONFIG_CLASSES: tuple[type, ...] = (argparse.Namespace,)

#: Key prefixes of the official ``LDMSevEncoder``'s own state dict.
_PARTS = ("encoder.", "quant_conv.", "std_conv.")
_MODULE_PREFIX = "encoder."  # SeverityEncoderModule.encoder is the LDMSevEncoder
_IGNORED_PREFIX = "pretrained_autoencoder."
_REFUSED_GLOBAL = re.compile(r"GLOBAL (\S+)")
log = logging.getLogger(__name__)

#: The official operators, as ``create_operator`` in [C `data_utils/operators.py`] spells
#: ``operator_config['type']``. Which flash-wrap task imports an encoder trained for one is the
#: task's own declaration (``Task.official_operators``, keyed by :func:`official_operator_key`):
#: ``nonlinear_blur`` (the bkse KernelWizard blur) is what flash-wrap's ``motion-blur`` stands in
#: for, and ``inpainting`` depends on ``mask_type`` (``random``, ``box``, ``random_box``, ``gaussian``;
#: an absent ``mask_type`` is the constructor's default, ``'box'``).
OFFICIAL_OPERATORS = ("gaussian_blur", "nonlinear_blur", "inpainting")
_DEFAULT_MASK_TYPE = "box"
#: Keys of ``operator_config`` that name the operator: the official ``type``, then ``operator``
#: (a hand-written checkpoint's spelling; the official code never writes it).
_OPERATOR_KEYS = ("type", "operator")
_SAVE_STATE_DICT = ("in an environment you trust, load it with the code that wrote it and save the weights alone, "
                    "e.g. torch.save(ckpt['state_dict'], 'encoder_state_dict.pt'), then import that file")


def _torch_load(file: Path) -> Any:
    try:
        with torch.serialization.safe_globals(list(SAFE_CONFIG_CLASSES)):
            return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = _REFUSED_GLOBAL.search(str(err))
        if found is None:
            raise InvalidInput(f"{file} is not a readable PyTorch checkpoint ({type(err).__name__})") from None
        # torch's own message suggests the full unpickler: never do that with a downloaded file
        raise InvalidInput(
            f"{file} is not a tensors-only checkpoint: it pickles {found.group(1).rstrip('.')}, which only the full "
            "unpickler builds and which could run code, so flash-wrap does not load it; expected a Lightning "
            "checkpoint whose hyper_parameters hold plain values, a bare state dict or a safetensors file; "
            + _SAVE_STATE_DICT
        ) from None
    except (RuntimeError, EOFError, KeyError, ValueError, AttributeError, IndexError) as err:
        raise InvalidInput(f"{file} is not a readable PyTorch checkpoint ({type(err).__name__}: "
                         f"{str(err).strip().splitlines()[0] if str(err).strip() else 'no detail'})") from None


def _state_dict(content: Any, file: Path) -> dict[str, Any]:
    """The state dict inside a Lightning checkpoint, or ``content`` itself if it is one."""
    if not isinstance(content, dict):
        raise InvalidInput(f"{file} holds a {type(content).__name__}; expected a Lightning checkpoint (a dict with "
                         "'state_dict') or a state dict of tensors")
    if "state_dict" in content:
        content = content["state_dict"]
        if not isinstance(content, dict):
            raise InvalidInput(f"{file}: 'state_dict' is a {type(content).__name__}, expected a dict of tensors")
    return content


def _official_layout(state: dict[str, Any], file: Path) -> dict[str, Any]:
    """``SeverityEncoderModule`` keys (``encoder.encoder.*``, …) or ``LDMSevEncoder`` keys
    (``encoder.*``, ``quant_conv.*``, ``std_conv.*``) → the latter, ``pretrained_autoencoder.*`` dropped."""
    if "encoder.std_conv.weight" in state:
        out = {}
        for key, value in state.items():
            if key.startswith(_IGNORED_PREFIX):
                continue
            if not key.startswith(_MODULE_PREFIX):
                raise InvalidInput(f"{file}: unexpected tensor {key!r} (an official checkpoint holds encoder.* and "
                                 "pretrained_autoencoder.* only)")
            out[key[len(_MODULE_PREFIX):]] = value
    elif "std_conv.weight" in state:
        out = dict(state)
    else:
        first = ", ".join(sorted({k.split(".")[0] for k in state})[:4]) or "nothing"
        raise InvalidInput(f"{file} is not a Flash-Diffusion severity encoder for a VQ autoencoder: it has no variance "
                         f"head 'encoder.std_conv.weight' (its tensors start with: {first})")
    for key, value in out.items():
        if not key.startswith(_PARTS):
            raise InvalidInput(f"{file}: unexpected tensor {key!r} (expected encoder.*, quant_conv.* and std_conv.*)")
        if not isinstance(value, torch.Tensor):
            raise InvalidInput(f"{file}: {key!r} is a {type(value).__name__}, not a tensor")
        if not value.is_floating_point():
            raise InvalidInput(f"{file}: tensor {key!r} is stored as {value.dtype}, expected floating point")
        if not bool(torch.isfinite(value).all()):
            raise InvalidInput(f"{file}: tensor {key!r} holds NaN or infinite values")
    return out


@dataclass(frozen=True)
class OfficialCheckpoint:
    """An official checkpoint as read by :func:`read_official`.

    Attributes:
        tensors: the ``LDMSevEncoder``'s tensors (see :func:`read_official_checkpoint`).
        training: what its hyper-parameters say it was trained on, plain JSON values
            (see :func:`official_training`).
    """

    tensors: dict[str, torch.Tensor]
    training: dict[str, Any]


def read_official(path: str | Path) -> OfficialCheckpoint:
    """The tensors of an official severity-encoder checkpoint and its training record, read once.

    Accepts the Lightning checkpoint (``.ckpt``, or the ``*_light.ckpt`` of the official
    ``extract_sev_encoder_ckpt``), its bare ``state_dict`` saved with ``torch.save``, or a
    ``.safetensors`` file of the same keys; in either key layout, ``encoder.encoder.*`` (the
    Lightning module's) or ``encoder.*`` (the ``LDMSevEncoder``'s own).

    Raises ``FileNotFoundError`` for a missing file, ``ValueError`` for anything else that is not
    such a checkpoint, including a pickle that needs more than tensors and plain containers.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise NotFound(f"checkpoint {file} does not exist or is not a file")
    if file.suffix == ".safetensors":
        try:
            content: Any = load_file(str(file), device="cpu")
        except SafetensorError as err:
            raise InvalidInput(f"corrupt safetensors file {file}: {err}") from None
        training = official_training(None, "a safetensors file holds tensors only, no hyper-parameters")
    else:
        content = _torch_load(file)
        training = official_training(content)
    return OfficialCheckpoint(_official_layout(_state_dict(content, file), file), training)


def read_official_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of an official severity-encoder checkpoint, in the ``LDMSevEncoder``'s names.

    Accepts the files :func:`read_official` does.

    Returns:
        ``{"encoder.<CompVis name>": ..., "quant_conv.weight": (3, 3, 1, 1), "quant_conv.bias": (3,),
        "std_conv.weight": (3, 3, 1, 1), "std_conv.bias": (3,)}``, CPU tensors as stored.

    Raises ``FileNotFoundError`` for a missing file, ``ValueError`` for anything else that is not
    such a checkpoint, including a pickle that needs more than tensors and plain containers.
    """
    return read_official(path).tensors


_SKIP = object()


def _plain(value: Any) -> Any:
    """``value`` as a plain JSON value (None, bool, int, finite float, str, lists and str-keyed dicts
    of those), or ``_SKIP`` where it is something else (a tensor, a non-finite float, ...)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _SKIP
    if isinstance(value, (list, tuple)):
        items = [_plain(v) for v in value]
        return _SKIP if any(v is _SKIP for v in items) else items
    entries = _entries(value)
    if entries is not None:
        return {str(k): v for k, v in ((k, _plain(v)) for k, v in entries.items()) if v is not _SKIP}
    return _SKIP


def _entries(value: Any) -> dict[Any, Any] | None:
    """A dict or an ``argparse.Namespace`` (what Lightning's ``hparams`` may be saved as) as a dict."""
    if isinstance(value, argparse.Namespace):
        return vars(value)
    return value if isinstance(value, dict) else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) and value >= 0 else None


def _noise_std(hyper_parameters: dict[Any, Any]) -> tuple[float | list[float] | None, str | None]:
    """The training noise σ_y from ``noise_config`` and, where it is recorded but unreadable, why.

    The official ``NoiseScheduler`` draws σ_y(t) = sigma_min·(sigma_max/sigma_min)^t and adds it to
    images in [0, 1] before they are rescaled to [−1, 1] (``ImageDataTransform.__call__``,
    [C `data_utils/data_transforms.py`, `data_utils/operators.py`]): the same units as flash-wrap's
    ``noise_std``. ``noise_config: None`` trains without noise (σ_y = 0).
    """
    if "noise_config" not in hyper_parameters:
        return None, None
    config = hyper_parameters["noise_config"]
    if config is None:
        return 0.0, None
    entries = _entries(config)
    if entries is None:
        return None, f"noise_config is a {type(config).__name__}"
    low, high = _number(entries.get("sigma_min")), _number(entries.get("sigma_max"))
    if low is None or high is None:
        return None, "noise_config has no numbers sigma_min and sigma_max"
    return (low if low == high else [low, high]), None


def official_training(content: Any, unrecorded: str | None = None) -> dict[str, Any]:
    """What an official checkpoint's ``hyper_parameters`` say it was trained on, plain JSON values.

    Args:
        content: what the checkpoint file holds (a Lightning dict, or a bare state dict).
        unrecorded: why nothing can be recorded, where the caller knows (a safetensors file).

    Returns:
        ``{"operator": the official name or None, "operator_config": {...}, "noise_std": σ_y or
        [σ_min, σ_max] or None, ...}``; where no operator is named, ``"task_not_checked_because"``
        says why, and where the noise is recorded but unreadable, ``"noise_std_unreadable"``.
        Only plain values of ``operator_config`` are kept.
    """
    record: dict[str, Any] = {"operator": None, "noise_std": None}
    entries = _entries(content)
    if unrecorded is None:
        if entries is None or "state_dict" not in entries:
            unrecorded = "a bare state dict records no hyper-parameters"
        elif "hyper_parameters" not in entries:
            unrecorded = "the checkpoint has no hyper_parameters"
        elif _entries(entries["hyper_parameters"]) is None:
            unrecorded = f"its hyper_parameters are a {type(entries['hyper_parameters']).__name__}"
    if unrecorded is not None:
        record["task_not_checked_because"] = unrecorded
        return record
    assert entries is not None  # unrecorded stays None only for a checkpoint with dict hyper_parameters
    hyper_parameters = _entries(entries["hyper_parameters"])
    assert hyper_parameters is not None
    record["noise_std"], unreadable = _noise_std(hyper_parameters)
    if unreadable is not None:
        record["noise_std_unreadable"] = unreadable
    config = _entries(hyper_parameters.get("operator_config"))
    if config is None:
        record["task_not_checked_because"] = "its hyper_parameters name no operator_config"
        return record
    record["operator_config"] = _plain(config)
    named = [(key, config[key]) for key in _OPERATOR_KEYS if key in config]
    if len({repr(name) for _, name in named}) > 1:
        record["operator_conflict"] = " and ".join(f"{key} {name!r}" for key, name in named)
    if not named:
        record["task_not_checked_because"] = "its operator_config names no operator (no 'type')"
        return record
    name = _plain(named[0][1])
    record["operator"] = name if name is not _SKIP else repr(named[0][1])
    return record


def _operator_label(name: str, config: dict[str, Any]) -> str:
    if name == "inpainting":
        return f"'inpainting' with mask_type {config.get('mask_type', _DEFAULT_MASK_TYPE)!r}"
    return repr(name)


def official_operator_key(name: str, config: dict[str, Any]) -> str:
    """How a task names an official operator in ``Task.official_operators``: the official
    ``type`` (``"gaussian_blur"``), for ``inpainting`` with its ``mask_type`` (``"inpainting/random"``)."""
    if name == "inpainting":
        return f"inpainting/{config.get('mask_type', _DEFAULT_MASK_TYPE)}"
    return name


def _official_task(name: Any, config: dict[str, Any], what: str, official_tasks: Mapping[str, str]) -> str:
    """The flash-wrap task of the official operator ``name``; ``ValueError`` if it has none."""
    known = ", ".join(f"{key} as {task}" for key, task in sorted(official_tasks.items())) or "none"
    if not isinstance(name, str) or name not in OFFICIAL_OPERATORS:
        raise InvalidInput(f"{what} records the operator {name!r}, which is not one of the official code's "
                         f"({', '.join(OFFICIAL_OPERATORS)}); flash-wrap imports {known}")
    task = official_tasks.get(official_operator_key(name, config))
    if task is None:
        raise InvalidInput(f"{what} was trained for the official operator {_operator_label(name, config)}, which has "
                         f"no flash-wrap task; flash-wrap imports {known}")
    return task


def check_official_training(training: dict[str, Any], task: str, what: str, *, official_tasks: Mapping[str, str],
                            noise_std: float | None = None) -> dict[str, Any]:
    """Refuse an encoder imported as ``task`` that was trained for another operator; compare its noise.

    Args:
        training: :func:`official_training`'s record.
        task: the flash-wrap task it is imported as.
        what: names the checkpoint in messages.
        official_tasks: :func:`official_operator_key` → the task that imports it (the registered
            tasks' ``official_operators``: ``flash_wrap.registry.get_registry().official_tasks()``).
        noise_std: the measurement noise σ_y the encoder will see (flash-wrap's tasks: 0.05); ``None``
            skips the comparison.

    Returns the record for the bundle's metadata: ``training`` plus ``"task_checked"`` (False where
    the checkpoint names no operator, which is accepted), ``"noise_std_matches"`` (None where no
    noise is recorded) and ``"flash_wrap_noise_std"``. A noise level other than flash-wrap's σ_y is
    a warning, not an error: the encoder still works, its σ̂ is calibrated to other measurements.

    Raises ``ValueError`` (one line naming both and the ``--task`` to pass) for an operator of another
    task, and for an operator flash-wrap has no task for.
    """
    record = dict(training)
    config = record.get("operator_config") or {}
    if record.get("operator") is None:
        record["task_checked"] = False
        log.warning("%s: could not check that it was trained for %s (%s); imported as %s unchecked", what, task,
                    record.get("task_not_checked_because", "no operator recorded"), task)
    elif "operator_conflict" in record:
        raise InvalidInput(f"{what}: its operator_config names two operators, {record['operator_conflict']}; "
                         "import it with the operator_config of the official code (one 'type')")
    else:
        expected = _official_task(record["operator"], config, what, official_tasks)
        if expected != task:
            raise InvalidInput(f"{what} was trained for the official operator {_operator_label(record['operator'], config)}"
                             f" (flash-wrap task {expected}), not {task}; pass --task {expected}")
        record["task_checked"] = True
    noise = record.get("noise_std")
    if noise_std is None:
        return record
    record["flash_wrap_noise_std"] = noise_std
    if noise is None:
        record["noise_std_matches"] = None
        if "noise_std_unreadable" in record:
            log.warning("%s: its training noise level could not be read (%s)", what, record["noise_std_unreadable"])
        return record
    levels = noise if isinstance(noise, list) else [noise]
    record["noise_std_matches"] = all(math.isclose(v, noise_std, rel_tol=1e-6, abs_tol=1e-9) for v in levels)
    if not record["noise_std_matches"]:
        shown = f"{noise:g}" if not isinstance(noise, list) else f"from {noise[0]:g} to {noise[1]:g}"
        log.warning("%s was trained with measurement noise sigma_y %s (its noise_config, on [0, 1] images) but "
                    "flash-wrap's tasks use %g: imported anyway, its predicted severities were calibrated on that "
                    "noise", what, shown, noise_std)
    return record


def _diffusers_config(autoencoder: object) -> Any:
    """The config of a diffusers-backed autoencoder (its ``model.config``): duck-typed, since this
    layer does not import :mod:`flash_wrap.models`, where that adapter is declared."""
    return cast(Any, autoencoder).model.config


def check_official_model(model: LatentDiffusion) -> None:
    """Refuse a model the official encoders do not fit, before any work.

    They were trained on the LDM VQ-f4 autoencoder (the diffusers ``LDMPipeline`` layout of the
    paper's CelebA-HQ / LSUN models): a ``VQModel`` with downsampling 4, 3 latent channels,
    ``DownEncoderBlock2D`` levels, 32 GroupNorm groups and SiLU as in CompVis' ``Encoder``, used
    with unscaled latents (scale 1, shift 0). Channel widths and depth are checked tensor by
    tensor at load time.
    """
    autoencoder = model.autoencoder
    kind = getattr(autoencoder, "kind", type(autoencoder).__name__)
    expected = ("the official Flash-Diffusion severity encoders fit the LDM VQ-f4 autoencoder (diffusers "
                "LDMPipeline layout: VQModel, downsampling 4, 3 latent channels, 32 norm groups, latent scale 1, "
                "shift 0)")
    if kind != "vq":
        raise InvalidInput(f"{expected}; this model's autoencoder is {kind!r}")
    config = _diffusers_config(autoencoder)
    found = {
        "downsampling": (autoencoder.downsample_factor, 4),
        "latent channels": (int(config.latent_channels), 3),
        "quantizer channels": (int(config.vq_embed_dim or config.latent_channels), 3),
        "image channels": (int(config.in_channels), 3),
        "norm groups": (int(config.norm_num_groups), 32),
        "activation": (config.act_fn, "silu"),
        "encoder blocks": (sorted(set(config.down_block_types)), ["DownEncoderBlock2D"]),
        "mid-block attention": (bool(config.mid_block_add_attention), True),
    }
    differs = [f"{name} {got} (expected {want})" for name, (got, want) in found.items() if got != want]
    if not math.isclose(model.latent_scale, 1.0, rel_tol=1e-9):
        differs.append(f"latent scale {model.latent_scale:g} (expected 1)")
    if model.latent_shift != 0:
        differs.append(f"latent shift {model.latent_shift:g} (expected 0)")
    if differs:
        raise InvalidInput(f"{expected}; this model has {', '.join(differs)}")


def convert_official_state_dict(tensors: dict[str, torch.Tensor], model: LatentDiffusion) -> dict[str, torch.Tensor]:
    """``LDMSevEncoder`` tensors (from :func:`read_official_checkpoint`) → the state dict of
    ``model.make_severity_encoder()``.

    CompVis names become diffusers' with diffusers' own VAE converter
    (``convert_ldm_vae_checkpoint``, which also turns the 1×1-conv attention weights ``(C, C, 1, 1)``
    into linear ones ``(C, C)``); ``std_conv`` becomes ``variance_head``. The converter passes over
    names it does not know without a word, so a tensor it left out is a ``ValueError`` here.
    """
    backbone = {k: v for k, v in tensors.items() if not k.startswith("std_conv.")}
    converted = convert_ldm_vae_checkpoint(backbone, dict(_diffusers_config(model.autoencoder)))
    used = {value.data_ptr() for value in converted.values()}  # the converter keeps tensors or views of them
    left_out = [key for key, value in backbone.items() if value.data_ptr() not in used]
    if left_out:
        raise InvalidInput(f"unexpected tensor {left_out[0]!r} in the checkpoint: diffusers' LDM converter has no "
                         f"counterpart for it ({len(left_out)} such tensors in all)")
    # make_severity_encoder(): backbone = LatentEncoder(EncoderPath(encoder, quant_conv))
    state = {f"backbone.encoder.{key}": value for key, value in converted.items()}
    state.update({f"variance_head.{k.removeprefix('std_conv.')}": v for k, v in tensors.items()
                  if k.startswith("std_conv.")})
    return state


def _load_checked(encoder: SeverityEncoder, state: dict[str, torch.Tensor], what: str) -> None:
    """Strict load; a missing, extra or misshapen tensor is a ``ValueError`` naming the first one."""
    expected = encoder.state_dict()
    for key, ref in expected.items():
        if key not in state:
            raise InvalidInput(f"{what}: no tensor for {key!r} (this model's encoder has it, shape "
                             f"{tuple(ref.shape)}; names after diffusers' conversion of the CompVis ones)")
        if state[key].shape != ref.shape:
            raise InvalidInput(f"{what}: tensor for {key!r} has shape {tuple(state[key].shape)}, this model's encoder "
                             f"expects {tuple(ref.shape)}: the checkpoint was trained for another autoencoder")
    extra = [key for key in state if key not in expected]
    if extra:
        raise InvalidInput(f"{what}: unexpected tensor {extra[0]!r} ({len(extra)} in all): the checkpoint was trained "
                         "for another autoencoder")
    encoder.load_state_dict(state, strict=True)


def official_encoder(tensors: dict[str, torch.Tensor], model: LatentDiffusion, what: str) -> SeverityEncoder:
    """:func:`read_official` tensors as a new :class:`SeverityEncoder` of ``model`` (already checked
    with :func:`check_official_model`), on its device and dtype, in eval mode."""
    encoder = model.make_severity_encoder()
    _load_checked(encoder, convert_official_state_dict(tensors, model), what)
    return encoder.eval()


def load_official_severity_encoder(path: str | Path, model: LatentDiffusion, task: str | None = None, *,
                                   official_tasks: Mapping[str, str] | None = None,
                                   noise_std: float | None = None) -> SeverityEncoder:
    """An official Flash-Diffusion severity-encoder checkpoint as a :class:`SeverityEncoder` of ``model``.

    Args:
        path: the checkpoint (see :func:`read_official`).
        model: a bundle whose autoencoder is the LDM VQ-f4 one (:func:`check_official_model`).
        task: where given, the checkpoint's recorded operator must be this task's
            (:func:`check_official_training`), which also compares the training noise with ``noise_std``.
        official_tasks: with ``task``, which task imports which official operator
            (``flash_wrap.registry.get_registry().official_tasks()``).

    Returns:
        A new encoder on the model's device and dtype, in eval mode, mapping ``(B, 3, H, W)``
        images in [0, 1] to ``(ẑ (B, 3, H/4, W/4), v (B,))`` equal to the official
        ``LDMSevEncoder`` on ``2·y − 1``.
    """
    if task is not None and official_tasks is None:
        raise WrongType("load_official_severity_encoder: a task needs official_tasks, which task imports which "
                        "official operator; pass flash_wrap.registry.get_registry().official_tasks()")
    check_official_model(model)
    checkpoint = read_official(path)
    if task is not None and official_tasks is not None:
        check_official_training(checkpoint.training, task, f"checkpoint {path}", official_tasks=official_tasks,
                                noise_std=noise_std)
    return official_encoder(checkpoint.tensors, model, f"checkpoint {path}")
