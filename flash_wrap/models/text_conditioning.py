"""The fixed text conditioning of a text-conditioned UNet, as its pipeline computes it.

Stable Diffusion's unconditional input is not zeros: it is the text encoder's last hidden state for
the empty prompt, tokenized and padded to the tokenizer's ``model_max_length`` (77 for CLIP), with
the attention mask only when the encoder's config asks for one (ALGORITHMS.md §11; the same
computation as diffusers' ``StableDiffusionPipeline.encode_prompt``). Shapes: (1, 77, 768) for
SD 1.x, (1, 77, 1024) for SD 2.x.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, cast

import torch

from ..errors import InvalidInput, NotFound, WrongType
from ._io import check_safetensors, read_json, weights_files

log = logging.getLogger(__name__)

#: transformers classes accepted for the text encoder and the tokenizer of a pipeline folder.
TEXT_ENCODERS = ("CLIPTextModel",)
TOKENIZERS = ("CLIPTokenizer", "CLIPTokenizerFast")


def check_text_components(folder: Path, encoder_class: object, tokenizer_class: object, width: object) -> None:
    """From the configs alone: supported classes, and an encoder whose hidden size is the UNet's
    ``cross_attention_dim`` (``width``)."""
    if encoder_class not in TEXT_ENCODERS:
        raise InvalidInput(f"{folder}: text encoder {encoder_class!r} is not supported (supported: "
                         f"{', '.join(TEXT_ENCODERS)}, as in Stable Diffusion 1.x/2.x)")
    if tokenizer_class not in TOKENIZERS:
        raise InvalidInput(f"{folder}: tokenizer {tokenizer_class!r} is not supported (supported: {', '.join(TOKENIZERS)})")
    hidden = read_json(folder / "text_encoder" / "config.json").get("hidden_size")
    if isinstance(width, int) and hidden != width:
        raise InvalidInput(f"{folder}: the text encoder's hidden_size {hidden} differs from the UNet's "
                         f"cross_attention_dim {width}; the folder's components do not belong together")


def _load_tokenizer(folder: Path, tokenizer_class: str, encoder_config: dict):
    """The pipeline's tokenizer, checked against its text encoder: its vocabulary files must be
    there (transformers would otherwise build a default two-token tokenizer without a word), its
    ids must fit the encoder's vocabulary and its padded length the encoder's positions."""
    import transformers

    if not folder.is_dir():
        raise NotFound(f"the pipeline names a tokenizer but {folder} does not exist")
    names = {f.name for f in folder.iterdir()}
    if "tokenizer.json" not in names and not {"vocab.json", "merges.txt"} <= names:
        raise NotFound(f"{folder} has no vocabulary: a CLIP tokenizer needs tokenizer.json, or vocab.json "
                                f"and merges.txt (found: {', '.join(sorted(names)) or 'nothing'})")
    try:
        tokenizer = getattr(transformers, tokenizer_class).from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InvalidInput(f"{folder}: cannot load the {tokenizer_class} ({first})") from None
    positions = encoder_config.get("max_position_embeddings")
    length = tokenizer.model_max_length
    if not isinstance(positions, int) or not isinstance(length, int) or not 0 < length <= positions:
        raise InvalidInput(f"{folder}: the tokenizer pads prompts to model_max_length={length!r} tokens but the text "
                         f"encoder has max_position_embeddings={positions!r}; set model_max_length in "
                         "tokenizer_config.json (77 for the CLIP encoders of Stable Diffusion)")
    vocab = encoder_config.get("vocab_size")
    if isinstance(vocab, int) and len(tokenizer) > vocab:
        raise InvalidInput(f"{folder}: the tokenizer has {len(tokenizer)} tokens, more than the text encoder's "
                         f"vocab_size {vocab}; the folder's tokenizer and text encoder do not belong together")
    return tokenizer


def load_text_encoder(folder: Path, class_name: str, variant: str | None) -> Any:
    """The transformers text encoder ``class_name`` of ``folder`` from local safetensors only, every
    weight filled (missing or misshapen weights are an error), float32, eval mode."""
    import transformers

    files, variant = weights_files(folder, stem="model", variant=variant)
    for file in files:
        check_safetensors(file)
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()  # a bar per load would flood logs; the state is restored
    try:
        # with output_loading_info=True, from_pretrained returns (model, info); its annotation gives the model alone
        encoder, info = cast(tuple[Any, dict[str, Any]], getattr(transformers, class_name).from_pretrained(
            str(folder), local_files_only=True, use_safetensors=True, variant=variant, output_loading_info=True))
    finally:
        if bars:
            transformers.utils.logging.enable_progress_bar()
    bad = [*info.get("missing_keys", []), *[str(m) for m in info.get("mismatched_keys", [])]]
    if bad:
        raise InvalidInput(f"{', '.join(map(str, files))}: the text encoder's weights do not match its config "
                           f"({len(bad)} missing or misshapen, e.g. {bad[0]!r})")
    return encoder.float().eval()


def encode_prompt(folder: Path, tokenizer_class: str, prompt: str = "", *, variant: str | None = None) -> torch.Tensor:
    """The conditioning ``(1, L, D)`` (float32) for ``prompt`` with the pipeline folder's own
    ``tokenizer/`` and ``text_encoder/`` (local files, safetensors only)."""

    if not isinstance(prompt, str):
        raise WrongType(f"prompt must be a string, got {type(prompt).__name__}")
    encoder_folder = folder / "text_encoder"
    weights_files(encoder_folder, stem="model", variant=variant)  # no weights: refused before the tokenizer loads
    config = read_json(encoder_folder / "config.json")
    tokenizer = _load_tokenizer(folder / "tokenizer", tokenizer_class, config)
    encoder = load_text_encoder(encoder_folder, "CLIPTextModel", variant)
    tokens = tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                       return_tensors="pt")
    mask = tokens.attention_mask if getattr(encoder.config, "use_attention_mask", False) else None
    with torch.no_grad():
        hidden = encoder(tokens.input_ids, attention_mask=mask)[0]
    if not bool(torch.isfinite(hidden).all()):
        raise InvalidInput(f"{encoder_folder}: the text encoder gave NaN or infinite values for the prompt {prompt!r}")
    log.info("conditioning: text encoder output for prompt %r, shape %s", prompt, tuple(hidden.shape))
    return hidden.float().detach()
