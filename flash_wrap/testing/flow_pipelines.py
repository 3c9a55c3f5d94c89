"""Tiny SD3 and FLUX pipeline folders in the real layouts (random weights, local tokenizers), for tests.

Each builder writes the pipeline with diffusers' own ``save_pretrained`` and returns the in-memory
pipeline, the reference a loaded model is checked against:

* :func:`tiny_sd3_pipeline`: ``StableDiffusion3Pipeline`` (16-channel ``AutoencoderKL`` with SD3's
  ``scaling_factor``/``shift_factor``, ``SD3Transformer2DModel``, two ``CLIPTextModelWithProjection``
  with byte-level CLIP tokenizers, optionally a ``T5EncoderModel`` with :func:`tiny_t5_tokenizer`,
  ``FlowMatchEulerDiscreteScheduler`` with ``shift`` 3);
* :func:`tiny_flux_pipeline`: ``FluxPipeline`` (FLUX's VAE factors, ``FluxTransformer2DModel``
  with or without guidance embedding, ``CLIPTextModel`` + ``T5EncoderModel``, dynamic shifting).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .pipelines import tiny_clip_tokenizer


def tiny_t5_tokenizer(model_max_length: int = 512) -> Any:
    """A T5 tokenizer built locally (no sentencepiece file): a unigram model over printable ASCII
    with ``<pad>`` = 0, ``</s>`` = 1 (appended to every prompt, as T5 does), ``<unk>`` = 2."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    # T5TokenizerFast is the tokenizers-backed class in transformers 4.x and an alias of T5Tokenizer in 5.x
    from transformers import T5TokenizerFast  # type: ignore[attr-defined]

    chars = [chr(c) for c in range(32, 127)]
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [(c, -3.0) for c in chars] + [("▁" + c, -2.5) for c in chars]
    model = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    model.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    model.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    model.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                         special_tokens=[("</s>", 1)])
    return T5TokenizerFast(tokenizer_object=model, extra_ids=0, model_max_length=model_max_length)


def _t5(d_model: int) -> Any:
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(vocab_size=200, d_model=d_model, d_kv=8, d_ff=37, num_layers=1, num_heads=2,
                                   relative_attention_num_buckets=8, pad_token_id=0,
                                   eos_token_id=1)).eval()


def _clip_config(hidden: int, **extra: Any) -> Any:
    from transformers import CLIPTextConfig

    return CLIPTextConfig(hidden_size=hidden, intermediate_size=37, num_attention_heads=2, num_hidden_layers=2,
                          vocab_size=514, max_position_embeddings=77, bos_token_id=512, eos_token_id=513,
                          pad_token_id=513, **extra)


def _vae(scaling_factor: float, shift_factor: float) -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=(8, 16), latent_channels=16, norm_num_groups=4, layers_per_block=1,
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         scaling_factor=scaling_factor, shift_factor=shift_factor, use_quant_conv=False,
                         use_post_quant_conv=False)


def tiny_sd3_pipeline(folder: str | Path, *, seed: int = 0, with_t5: bool = True, sample_size: int = 8) -> Any:
    """Write a ``StableDiffusion3Pipeline`` folder; images are ``2 · sample_size`` pixels square."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = _vae(1.5305, 0.0609)
        transformer = SD3Transformer2DModel(sample_size=sample_size, patch_size=2, in_channels=16, out_channels=16,
                                            num_layers=1, attention_head_dim=8, num_attention_heads=2,
                                            joint_attention_dim=32, caption_projection_dim=16, pooled_projection_dim=32,
                                            pos_embed_max_size=16)
        clip_1 = CLIPTextModelWithProjection(_clip_config(8, projection_dim=16)).eval()
        clip_2 = CLIPTextModelWithProjection(_clip_config(8, projection_dim=16)).eval()
        t5 = _t5(32) if with_t5 else None
    pipe = StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0),
        vae=vae, text_encoder=clip_1, tokenizer=tiny_clip_tokenizer(), text_encoder_2=clip_2,
        tokenizer_2=tiny_clip_tokenizer(), text_encoder_3=t5, tokenizer_3=tiny_t5_tokenizer() if with_t5 else None)
    pipe.save_pretrained(str(folder))
    return pipe


def tiny_flux_pipeline(folder: str | Path, *, seed: int = 0, guidance_embeds: bool = True,
                       use_dynamic_shifting: bool = True) -> Any:
    """Write a ``FluxPipeline`` folder (guidance-distilled, FLUX.1-dev-like, by default; with
    ``guidance_embeds=False, use_dynamic_shifting=False`` the FLUX.1-schnell-like configs)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = _vae(0.3611, 0.1159)
        transformer = FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=1, num_single_layers=1,
                                             attention_head_dim=8, num_attention_heads=2, joint_attention_dim=32,
                                             pooled_projection_dim=16, guidance_embeds=guidance_embeds,
                                             axes_dims_rope=(2, 2, 4))
        clip = CLIPTextModel(_clip_config(16)).eval()
        t5 = _t5(32)
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0 if use_dynamic_shifting else 1.0,
                                                use_dynamic_shifting=use_dynamic_shifting, base_shift=0.5,
                                                max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096)
    pipe = FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=clip, tokenizer=tiny_clip_tokenizer(),
                        text_encoder_2=t5, tokenizer_2=tiny_t5_tokenizer(), transformer=transformer)
    pipe.save_pretrained(str(folder))
    return pipe
