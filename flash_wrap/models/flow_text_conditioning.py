"""The fixed empty-prompt conditioning of SD3-class and FLUX-class pipeline folders (ALGORITHMS.md §12).

Computed once, at load, the way diffusers 0.42's pipelines compute ``encode_prompt("")``:

* ``StableDiffusion3Pipeline``: both CLIP encoders (``CLIPTextModelWithProjection``) see the
  prompt padded to the first tokenizer's ``model_max_length``; their penultimate hidden states
  are concatenated along the width and zero-padded to the transformer's ``joint_attention_dim``;
  the T5 encoder's last hidden state (prompt padded to ``max_sequence_length``, default 256), or
  zeros ``(1, max_sequence_length, joint_attention_dim)`` when the folder has no T5, is appended
  along the sequence. Pooled: the two CLIP projections concatenated.
  Shapes: ``encoder_hidden_states (1, 77 + 256, D)``, ``pooled_projections (1, P1 + P2)``.
* ``FluxPipeline``: the CLIP encoder's (``CLIPTextModel``) pooled output, and the T5 encoder's last
  hidden state for the prompt padded to ``max_sequence_length`` (default 512).
  Shapes: ``encoder_hidden_states (1, 512, D)``, ``pooled_projections (1, P)``.

Every file is read locally (safetensors only); a folder that cannot encode a prompt (a missing
tokenizer or encoder, or its vocabulary files) is refused with what is missing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import InvalidInput, NotFound
from ._io import read_json, weights_files
from .text_conditioning import load_text_encoder

log = logging.getLogger(__name__)

#: The prompt length the pipelines pad T5 prompts to when ``max_sequence_length`` is not given.
DEFAULT_MAX_SEQUENCE_LENGTH = {"StableDiffusion3Pipeline": 256, "FluxPipeline": 512}
#: Encoder classes each pipeline's components must have (model_index.json names), per component.
ENCODERS = {
    "StableDiffusion3Pipeline": {"text_encoder": ("CLIPTextModelWithProjection",),
                                 "text_encoder_2": ("CLIPTextModelWithProjection",),
                                 "text_encoder_3": ("T5EncoderModel",)},
    "FluxPipeline": {"text_encoder": ("CLIPTextModel",), "text_encoder_2": ("T5EncoderModel",)},
}
_CLIP_TOKENIZERS = ("CLIPTokenizer", "CLIPTokenizerFast")
_T5_TOKENIZERS = ("T5Tokenizer", "T5TokenizerFast")
#: Files that hold a tokenizer's vocabulary (any one set suffices).
_VOCABULARY = {"CLIP": ({"tokenizer.json"}, {"vocab.json", "merges.txt"}),
               "T5": ({"tokenizer.json"}, {"spiece.model"})}


@dataclass(frozen=True)
class TextPart:
    """One text encoder of a pipeline folder: its subfolders and classes (from model_index.json)."""

    encoder: str  # subfolder, e.g. "text_encoder_2"
    tokenizer: str  # subfolder, e.g. "tokenizer_2"
    encoder_class: str
    tokenizer_class: str


def _component(index: dict, name: str) -> str | None:
    entry = index.get(name)
    if isinstance(entry, (list, tuple)) and len(entry) == 2 and entry[1] is not None:
        return str(entry[1])
    return None


def plan_text_parts(folder: Path, index: dict, pipeline: str) -> list[TextPart]:
    """The text encoders ``pipeline`` needs to encode a prompt, checked from the folder's JSON files
    and file names alone (no weights read). SD3's T5 (``text_encoder_3``) is optional: absent
    (null in model_index.json, with its tokenizer) it is left out and zeros stand for it."""
    parts = []
    for encoder, classes in ENCODERS[pipeline].items():
        tokenizer = "tokenizer" + encoder[len("text_encoder"):]
        encoder_class, tokenizer_class = _component(index, encoder), _component(index, tokenizer)
        optional = pipeline == "StableDiffusion3Pipeline" and encoder == "text_encoder_3"
        if optional and encoder_class is None and tokenizer_class is None:
            continue
        if encoder_class is None or tokenizer_class is None:
            raise NotFound(f"{folder} ({pipeline}) cannot encode the empty prompt: model_index.json has "
                           f"{encoder}={encoder_class!r} and {tokenizer}={tokenizer_class!r}; both are needed"
                           + (" (or both null: zeros then stand for T5, as the pipeline does)" if optional else ""))
        if encoder_class not in classes:
            raise InvalidInput(f"{folder}: {encoder} is a {encoder_class}, the {pipeline} needs a {' or '.join(classes)}")
        family = "T5" if encoder_class == "T5EncoderModel" else "CLIP"
        accepted = _T5_TOKENIZERS if family == "T5" else _CLIP_TOKENIZERS
        if tokenizer_class not in accepted:
            raise InvalidInput(f"{folder}: {tokenizer} is a {tokenizer_class}, the {pipeline} needs a "
                               f"{' or '.join(accepted)} for its {encoder_class}")
        _check_vocabulary(folder / tokenizer, family)
        if not (folder / encoder / "config.json").is_file():
            raise NotFound(f"{folder} ({pipeline}) cannot encode the empty prompt: {folder / encoder / 'config.json'} "
                           "does not exist")
        weights_files(folder / encoder, stem="model")  # refuses a folder without safetensors weights
        parts.append(TextPart(encoder, tokenizer, encoder_class, tokenizer_class))
    return parts


def _check_vocabulary(folder: Path, family: str) -> None:
    names = {f.name for f in folder.iterdir()} if folder.is_dir() else set()
    if not any(required <= names for required in _VOCABULARY[family]):
        wanted = " or ".join(" and ".join(sorted(s)) for s in _VOCABULARY[family])
        raise NotFound(f"{folder} has no vocabulary, so the pipeline cannot encode a prompt: a {family} tokenizer "
                       f"needs {wanted} (found: {', '.join(sorted(names)) or 'nothing'})")


def _load_tokenizer(folder: Path, class_name: str) -> Any:
    import transformers

    try:
        return getattr(transformers, class_name).from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InvalidInput(f"{folder}: cannot load the {class_name} ({first})") from None


def _tokens(tokenizer: Any, prompt: str, length: int) -> torch.Tensor:
    return tokenizer(prompt, padding="max_length", max_length=length, truncation=True, return_tensors="pt").input_ids


def _finite(value: torch.Tensor, where: Path, prompt: str) -> torch.Tensor:
    if not bool(torch.isfinite(value).all()):
        raise InvalidInput(f"{where}: the text encoder gave NaN or infinite values for the prompt {prompt!r}")
    return value.float().detach()


def _check_length(max_sequence_length: int) -> int:
    if isinstance(max_sequence_length, bool) or not isinstance(max_sequence_length, int) or not (
            0 < max_sequence_length <= 512):
        raise InvalidInput(f"max_sequence_length must be an integer in [1, 512] (the T5 prompt length), "
                           f"got {max_sequence_length!r}")
    return max_sequence_length


def sd3_conditioning(folder: Path, parts: list[TextPart], joint_attention_dim: int, *, prompt: str = "",
                     max_sequence_length: int = 256, variant: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(encoder_hidden_states (1, Lc + max_sequence_length, joint_attention_dim),
    pooled_projections (1, P1 + P2))`` of a ``StableDiffusion3Pipeline`` folder for ``prompt``;
    ``Lc`` is the first CLIP tokenizer's ``model_max_length`` (77)."""
    length = _check_length(max_sequence_length)
    clip = [p for p in parts if p.encoder_class == "CLIPTextModelWithProjection"]
    t5 = [p for p in parts if p.encoder_class == "T5EncoderModel"]
    tokenizers = [_load_tokenizer(folder / p.tokenizer, p.tokenizer_class) for p in clip]
    clip_length = tokenizers[0].model_max_length  # the pipeline pads both CLIP prompts to the first one's length
    hidden, pooled = [], []
    for part, tokenizer in zip(clip, tokenizers):
        encoder = load_text_encoder(folder / part.encoder, part.encoder_class, variant)
        positions = encoder.config.max_position_embeddings
        if not isinstance(clip_length, int) or not 0 < clip_length <= positions:
            raise InvalidInput(f"{folder / clip[0].tokenizer}: model_max_length={clip_length!r} does not fit the "
                               f"{part.encoder} ({positions} positions); set it in tokenizer_config.json (77 for CLIP)")
        with torch.no_grad():
            out = encoder(_tokens(tokenizer, prompt, clip_length), output_hidden_states=True)
        pooled.append(_finite(out[0], folder / part.encoder, prompt))
        hidden.append(_finite(out.hidden_states[-2], folder / part.encoder, prompt))
    clip_hidden = torch.cat(hidden, dim=-1)
    if clip_hidden.shape[-1] > joint_attention_dim:
        raise InvalidInput(f"{folder}: the CLIP encoders' hidden states are {clip_hidden.shape[-1]} wide together, more "
                           f"than the transformer's joint_attention_dim {joint_attention_dim}; the folder's "
                           "components do not belong together")
    clip_hidden = torch.nn.functional.pad(clip_hidden, (0, joint_attention_dim - clip_hidden.shape[-1]))
    if t5:
        t5_hidden = _t5_hidden(folder, t5[0], prompt, length, variant)
        if t5_hidden.shape[-1] != joint_attention_dim:
            raise InvalidInput(f"{folder / t5[0].encoder}: T5 width {t5_hidden.shape[-1]} differs from the transformer's "
                               f"joint_attention_dim {joint_attention_dim}")
    else:
        t5_hidden = torch.zeros(1, length, joint_attention_dim)
    log.info("conditioning: SD3 prompt %r (%s)", prompt, "CLIP × 2 + T5" if t5 else "CLIP × 2, T5 absent: zeros")
    return torch.cat([clip_hidden, t5_hidden], dim=-2), torch.cat(pooled, dim=-1)


def _t5_hidden(folder: Path, part: TextPart, prompt: str, length: int, variant: str | None) -> torch.Tensor:
    tokenizer = _load_tokenizer(folder / part.tokenizer, part.tokenizer_class)
    encoder = load_text_encoder(folder / part.encoder, part.encoder_class, variant)
    vocab = encoder.config.vocab_size
    if len(tokenizer) > vocab:
        raise InvalidInput(f"{folder / part.tokenizer}: {len(tokenizer)} tokens, more than the {part.encoder}'s "
                           f"vocab_size {vocab}; the folder's tokenizer and encoder do not belong together")
    with torch.no_grad():
        return _finite(encoder(_tokens(tokenizer, prompt, length))[0], folder / part.encoder, prompt)


def flux_conditioning(folder: Path, parts: list[TextPart], *, prompt: str = "", max_sequence_length: int = 512,
                      variant: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(encoder_hidden_states (1, max_sequence_length, D), pooled_projections (1, P))`` of a
    ``FluxPipeline`` folder for ``prompt``: the T5 last hidden state and the CLIP pooled output."""
    length = _check_length(max_sequence_length)
    clip = next(p for p in parts if p.encoder_class == "CLIPTextModel")
    t5 = next(p for p in parts if p.encoder_class == "T5EncoderModel")
    tokenizer = _load_tokenizer(folder / clip.tokenizer, clip.tokenizer_class)
    encoder = load_text_encoder(folder / clip.encoder, clip.encoder_class, variant)
    clip_length = tokenizer.model_max_length
    if not isinstance(clip_length, int) or not 0 < clip_length <= encoder.config.max_position_embeddings:
        raise InvalidInput(f"{folder / clip.tokenizer}: model_max_length={clip_length!r} does not fit the CLIP "
                           f"encoder's {encoder.config.max_position_embeddings} positions; set it in "
                           "tokenizer_config.json (77 for CLIP)")
    with torch.no_grad():
        pooled = _finite(encoder(_tokens(tokenizer, prompt, clip_length)).pooler_output, folder / clip.encoder, prompt)
    hidden = _t5_hidden(folder, t5, prompt, length, variant)
    log.info("conditioning: FLUX prompt %r, T5 %s, CLIP pooled %s", prompt, tuple(hidden.shape), tuple(pooled.shape))
    return hidden, pooled


def read_encoder_width(folder: Path, part: TextPart, key: str) -> object:
    """A config entry of a text encoder (e.g. ``projection_dim``), read from its ``config.json``."""
    return read_json(folder / part.encoder / "config.json").get(key)
