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
"""

from __future__ import annotations

import argparse
import math
import pickle
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
from safetensors import SafetensorError
from safetensors.torch import load_file

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
_SAVE_STATE_DICT = ("in an environment you trust, load it with the code that wrote it and save the weights alone, "
                    "e.g. torch.save(ckpt['state_dict'], 'encoder_state_dict.pt'), then import that file")


def _torch_load(file: Path) -> Any:
    try:
        with torch.serialization.safe_globals(list(SAFE_CONFIG_CLASSES)):
            return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = _REFUSED_GLOBAL.search(str(err))
        if found is None:
            raise ValueError(f"{file} is not a readable PyTorch checkpoint ({type(err).__name__})") from None
        # torch's own message suggests the full unpickler: never do that with a downloaded file
        raise ValueError(
            f"{file} is not a tensors-only checkpoint: it pickles {found.group(1).rstrip('.')}, which only the full "
            "unpickler builds and which could run code, so flash-wrap does not load it; expected a Lightning "
            "checkpoint whose hyper_parameters hold plain values, a bare state dict or a safetensors file; "
            + _SAVE_STATE_DICT
        ) from None
    except (RuntimeError, EOFError, KeyError, ValueError, AttributeError, IndexError) as err:
        raise ValueError(f"{file} is not a readable PyTorch checkpoint ({type(err).__name__}: "
                         f"{str(err).strip().splitlines()[0] if str(err).strip() else 'no detail'})") from None


def _state_dict(content: Any, file: Path) -> dict[str, Any]:
    """The state dict inside a Lightning checkpoint, or ``content`` itself if it is one."""
    if not isinstance(content, dict):
        raise ValueError(f"{file} holds a {type(content).__name__}; expected a Lightning checkpoint (a dict with "
                         "'state_dict') or a state dict of tensors")
    if "state_dict" in content:
        content = content["state_dict"]
        if not isinstance(content, dict):
            raise ValueError(f"{file}: 'state_dict' is a {type(content).__name__}, expected a dict of tensors")
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
                raise ValueError(f"{file}: unexpected tensor {key!r} (an official checkpoint holds encoder.* and "
                                 "pretrained_autoencoder.* only)")
            out[key[len(_MODULE_PREFIX):]] = value
    elif "std_conv.weight" in state:
        out = dict(state)
    else:
        first = ", ".join(sorted({k.split(".")[0] for k in state})[:4]) or "nothing"
        raise ValueError(f"{file} is not a Flash-Diffusion severity encoder for a VQ autoencoder: it has no variance "
                         f"head 'encoder.std_conv.weight' (its tensors start with: {first})")
    for key, value in out.items():
        if not key.startswith(_PARTS):
            raise ValueError(f"{file}: unexpected tensor {key!r} (expected encoder.*, quant_conv.* and std_conv.*)")
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{file}: {key!r} is a {type(value).__name__}, not a tensor")
        if not value.is_floating_point():
            raise ValueError(f"{file}: tensor {key!r} is stored as {value.dtype}, expected floating point")
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"{file}: tensor {key!r} holds NaN or infinite values")
    return out


def read_official_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of an official severity-encoder checkpoint, in the ``LDMSevEncoder``'s names.

    Accepts the Lightning checkpoint (``.ckpt``), its bare ``state_dict`` saved with ``torch.save``,
    or a ``.safetensors`` file of the same keys; in either key layout, ``encoder.encoder.*`` (the
    Lightning module's) or ``encoder.*`` (the ``LDMSevEncoder``'s own).

    Returns:
        ``{"encoder.<CompVis name>": ..., "quant_conv.weight": (3, 3, 1, 1), "quant_conv.bias": (3,),
        "std_conv.weight": (3, 3, 1, 1), "std_conv.bias": (3,)}``, CPU tensors as stored.

    Raises ``FileNotFoundError`` for a missing file, ``ValueError`` for anything else that is not
    such a checkpoint, including a pickle that needs more than tensors and plain containers.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"checkpoint {file} does not exist or is not a file")
    if file.suffix == ".safetensors":
        try:
            content: Any = load_file(str(file), device="cpu")
        except SafetensorError as err:
            raise ValueError(f"corrupt safetensors file {file}: {err}") from None
    else:
        content = _torch_load(file)
    return _official_layout(_state_dict(content, file), file)


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
        raise ValueError(f"{expected}; this model's autoencoder is {kind!r}")
    config = autoencoder.model.config
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
        raise ValueError(f"{expected}; this model has {', '.join(differs)}")


def convert_official_state_dict(tensors: dict[str, torch.Tensor], model: LatentDiffusion) -> dict[str, torch.Tensor]:
    """``LDMSevEncoder`` tensors (from :func:`read_official_checkpoint`) → the state dict of
    ``model.make_severity_encoder()``.

    CompVis names become diffusers' with diffusers' own VAE converter
    (``convert_ldm_vae_checkpoint``, which also turns the 1×1-conv attention weights ``(C, C, 1, 1)``
    into linear ones ``(C, C)``); ``std_conv`` becomes ``variance_head``. The converter passes over
    names it does not know without a word, so a tensor it left out is a ``ValueError`` here.
    """
    backbone = {k: v for k, v in tensors.items() if not k.startswith("std_conv.")}
    converted = convert_ldm_vae_checkpoint(backbone, dict(model.autoencoder.model.config))
    used = {value.data_ptr() for value in converted.values()}  # the converter keeps tensors or views of them
    left_out = [key for key, value in backbone.items() if value.data_ptr() not in used]
    if left_out:
        raise ValueError(f"unexpected tensor {left_out[0]!r} in the checkpoint: diffusers' LDM converter has no "
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
            raise ValueError(f"{what}: no tensor for {key!r} (this model's encoder has it, shape "
                             f"{tuple(ref.shape)}; names after diffusers' conversion of the CompVis ones)")
        if state[key].shape != ref.shape:
            raise ValueError(f"{what}: tensor for {key!r} has shape {tuple(state[key].shape)}, this model's encoder "
                             f"expects {tuple(ref.shape)}: the checkpoint was trained for another autoencoder")
    extra = [key for key in state if key not in expected]
    if extra:
        raise ValueError(f"{what}: unexpected tensor {extra[0]!r} ({len(extra)} in all): the checkpoint was trained "
                         "for another autoencoder")
    encoder.load_state_dict(state, strict=True)


def load_official_severity_encoder(path: str | Path, model: LatentDiffusion) -> SeverityEncoder:
    """An official Flash-Diffusion severity-encoder checkpoint as a :class:`SeverityEncoder` of ``model``.

    Args:
        path: the checkpoint (see :func:`read_official_checkpoint`).
        model: a bundle whose autoencoder is the LDM VQ-f4 one (:func:`check_official_model`).

    Returns:
        A new encoder on the model's device and dtype, in eval mode, mapping ``(B, 3, H, W)``
        images in [0, 1] to ``(ẑ (B, 3, H/4, W/4), v (B,))`` equal to the official
        ``LDMSevEncoder`` on ``2·y − 1``.
    """
    check_official_model(model)
    tensors = read_official_checkpoint(path)
    encoder = model.make_severity_encoder()
    _load_checked(encoder, convert_official_state_dict(tensors, model), f"checkpoint {path}")
    return encoder.eval()
