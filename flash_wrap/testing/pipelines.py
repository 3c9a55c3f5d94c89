"""Tiny diffusers pipeline folders in the exact layouts of the real models, for tests.

Each builder writes a randomly initialised pipeline with diffusers' own ``save_pretrained`` (so the
folder has the real ``model_index.json``, component subfolders and config fields) and returns the
in-memory pipeline, whose components are the reference a loaded model is checked against:

* :func:`tiny_ldm_pipeline`: ``LDMPipeline`` (the paper's LDM-VQ-4 CelebA-HQ layout: ``vqvae``
  VQModel f4 with 3 channels, ``unet`` UNet2DModel, ``scheduler`` DDIM config with LDM's betas);
* :func:`tiny_sd_pipeline`: ``StableDiffusionPipeline`` (``vae`` AutoencoderKL with
  ``scaling_factor`` 0.18215, ``unet`` UNet2DConditionModel, a tiny CLIP ``text_encoder``, a
  ``tokenizer`` whose byte-level vocabulary is written here, a PNDM or DDIM config with SD's
  betas); ``prediction_type="v_prediction"`` gives the SD 2.x layout;
* :func:`write_sd3_like_folder`: an SD3-style folder (transformer, flow-matching scheduler), JSON only.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch


def _byte_vocabulary() -> list[str]:
    """GPT-2/CLIP byte-level alphabet: the 256 byte values as printable characters."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes, extra = list(printable), 0
    for byte in range(256):
        if byte not in printable:
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def tiny_clip_tokenizer(model_max_length: int = 77):
    """A CLIP tokenizer over single bytes (no merges): 514 tokens, ``<|startoftext|>`` = 512,
    ``<|endoftext|>`` = 513 (also the padding token, as in CLIP)."""
    from transformers import CLIPTokenizer

    alphabet = _byte_vocabulary()
    vocab = {c: i for i, c in enumerate(alphabet)}
    vocab |= {c + "</w>": len(alphabet) + i for i, c in enumerate(alphabet)}
    vocab |= {"<|startoftext|>": 512, "<|endoftext|>": 513}
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
        (Path(folder) / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
        return CLIPTokenizer(str(Path(folder) / "vocab.json"), str(Path(folder) / "merges.txt"),
                             model_max_length=model_max_length)


def tiny_ldm_pipeline(folder: str | Path, *, seed: int = 0, sample_size: int = 8) -> Any:
    """Write an ``LDMPipeline`` folder; images are ``4 · sample_size`` pixels square."""
    from diffusers import DDIMScheduler, LDMPipeline, UNet2DModel, VQModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vqvae = VQModel(block_out_channels=(8, 8, 16), latent_channels=3, num_vq_embeddings=64, norm_num_groups=4,
                        layers_per_block=1, down_block_types=("DownEncoderBlock2D",) * 3,
                        up_block_types=("UpDecoderBlock2D",) * 3)
        unet = UNet2DModel(sample_size=sample_size, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                           layers_per_block=1, norm_num_groups=4, down_block_types=("DownBlock2D",) * 2,
                           up_block_types=("UpBlock2D",) * 2)
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_start=0.0015, beta_end=0.0195,
                              beta_schedule="scaled_linear", clip_sample=False)
    pipe = LDMPipeline(vqvae=vqvae, unet=unet, scheduler=scheduler)
    pipe.save_pretrained(str(folder))
    return pipe


def tiny_sd_pipeline(folder: str | Path, *, seed: int = 0, prediction_type: str = "epsilon",
                     cross_attention_dim: int = 32, sample_size: int = 16, variant: str | None = None) -> Any:
    """Write a ``StableDiffusionPipeline`` folder; images are ``2 · sample_size`` pixels square.

    ``prediction_type="v_prediction"`` writes the SD 2.x layout (DDIM config with v-prediction,
    as stabilityai/stable-diffusion-2-1); otherwise a PNDM config as SD 1.5. ``variant`` saves the
    weights as e.g. ``diffusion_pytorch_model.fp16.safetensors`` (in float16 for "fp16")."""
    from diffusers import AutoencoderKL, DDIMScheduler, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = AutoencoderKL(block_out_channels=(8, 16), latent_channels=4, norm_num_groups=4, layers_per_block=1,
                            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                            scaling_factor=0.18215)
        unet = UNet2DConditionModel(sample_size=sample_size, in_channels=4, out_channels=4, block_out_channels=(8, 16),
                                    layers_per_block=1, norm_num_groups=4, cross_attention_dim=cross_attention_dim,
                                    attention_head_dim=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
        text_encoder = CLIPTextModel(CLIPTextConfig(
            hidden_size=cross_attention_dim, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
            vocab_size=514, max_position_embeddings=77, bos_token_id=512, eos_token_id=513, pad_token_id=513,
        )).eval()
    betas = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    if prediction_type == "epsilon":
        scheduler = PNDMScheduler(**betas, skip_prk_steps=True, steps_offset=1)
    else:
        scheduler = DDIMScheduler(**betas, clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                                  prediction_type=prediction_type)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tiny_clip_tokenizer(), unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    if variant is not None:
        saved = pipe.to(torch.float16) if variant == "fp16" else pipe
        saved.save_pretrained(str(folder), variant=variant)
        pipe = pipe.to(torch.float32)
    else:
        pipe.save_pretrained(str(folder))
    return pipe


def write_sd3_like_folder(folder: str | Path) -> Path:
    """An SD3/FLUX-style pipeline folder (transformer denoiser, flow-matching scheduler), configs only."""
    folder = Path(folder)
    for sub in ("transformer", "vae", "scheduler"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    index = {"_class_name": "StableDiffusion3Pipeline", "_diffusers_version": "0.42.1",
             "transformer": ["diffusers", "SD3Transformer2DModel"], "vae": ["diffusers", "AutoencoderKL"],
             "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
             "text_encoder": ["transformers", "CLIPTextModelWithProjection"], "tokenizer": ["transformers", "CLIPTokenizer"]}
    (folder / "model_index.json").write_text(json.dumps(index))
    (folder / "vae" / "config.json").write_text(json.dumps(
        {"_class_name": "AutoencoderKL", "latent_channels": 16, "scaling_factor": 1.5305, "shift_factor": 0.0609}))
    (folder / "transformer" / "config.json").write_text(json.dumps({"_class_name": "SD3Transformer2DModel"}))
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(
        {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 3.0}))
    return folder
