"""TAEF2: the tiny autoencoder distilled from the FLUX.2 VAE (madebyollin/taesd, MIT).

Our own implementation of the TAEF2 architecture of madebyollin/taesd (commit 5cccb12; its MIT
notice: the demo bundle's model card and ``autoencoder/LICENSE``).
Both halves are plain ``nn.Sequential`` stacks, so their state-dict keys ("0.weight",
"11.pool.0.weight", ...) match the published ``taef2_encoder.pth`` / ``taef2_decoder.pth`` exactly.
Images are in [0, 1] (not [-1, 1]); latents have 32 channels at 1/8 resolution.
"""

from __future__ import annotations

from os import PathLike
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint_sequential

from ..errors import InvalidInput
from ._io import load_strict


def _conv(c_in: int, c_out: int, *, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, stride=stride, bias=bias)


class SoftClamp(nn.Module):
    """``tanh(z / 3) * 3``: squashes latents into (-3, 3) before decoding."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(z / 3) * 3


class Block(nn.Module):
    """Residual block ``ReLU(conv(ReLU(conv(ReLU(conv(x))))) + x)``.

    With ``pool_channels`` set, an extra global-statistics branch runs first:
    ``x = x + Conv1x1(ReLU(GroupNorm(Conv1x1(x))))`` (the FLUX.2-specific "pool" branch).
    """

    def __init__(self, channels: int, pool_channels: int | None = None, pool_groups: int = 4) -> None:
        super().__init__()
        self.pool: nn.Sequential | None
        if pool_channels is not None:
            self.pool = nn.Sequential(
                nn.Conv2d(channels, pool_channels, kernel_size=1, bias=False),
                nn.GroupNorm(pool_groups, pool_channels),
                nn.ReLU(),
                nn.Conv2d(pool_channels, channels, kernel_size=1, bias=False),
            )
        else:
            self.pool = None
        self.conv = nn.Sequential(
            _conv(channels, channels), nn.ReLU(), _conv(channels, channels), nn.ReLU(), _conv(channels, channels)
        )
        self.fuse = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return self.fuse(self.conv(x) + x)


class TAEF2(nn.Module):
    """Tiny autoencoder: ``encoder`` maps [0, 1] images ``(B, 3, H, W)`` to latents
    ``(B, latent_channels, H/f, W/f)`` with ``f = 2**num_downsamples``; ``decoder`` maps back
    (output nominally in [0, 1], not clamped). H and W must be multiples of ``f``.

    The defaults are the published TAEF2 (32 latent channels, f = 8); smaller settings build
    tiny test models with the same layout.
    """

    def __init__(
        self,
        latent_channels: int = 32,
        channels: int = 64,
        pool_channels: int = 256,
        pool_groups: int = 4,
        num_downsamples: int = 3,
    ) -> None:
        super().__init__()
        if num_downsamples < 1:
            raise InvalidInput(f"num_downsamples must be >= 1, got {num_downsamples}")
        self.config: dict[str, Any] = {
            "latent_channels": latent_channels,
            "channels": channels,
            "pool_channels": pool_channels,
            "pool_groups": pool_groups,
            "num_downsamples": num_downsamples,
        }
        c = channels

        def blocks(n: int, pooled: bool) -> list[nn.Module]:
            return [Block(c, pool_channels if pooled else None, pool_groups) for _ in range(n)]

        enc: list[nn.Module] = [_conv(3, c), *blocks(1, False)]
        for level in range(1, num_downsamples + 1):
            enc += [_conv(c, c, stride=2, bias=False), *blocks(3, level == num_downsamples)]
        enc.append(_conv(c, latent_channels))
        self.encoder = nn.Sequential(*enc)

        dec: list[nn.Module] = [SoftClamp(), _conv(latent_channels, c), nn.ReLU()]
        for level in range(1, num_downsamples + 1):
            dec += [*blocks(3, level == 1), nn.Upsample(scale_factor=2), _conv(c, c, bias=False)]
        dec += [*blocks(1, False), _conv(c, 3)]
        self.decoder = nn.Sequential(*dec)

    @property
    def latent_channels(self) -> int:
        return int(self.config["latent_channels"])

    @property
    def downsample_factor(self) -> int:
        return 2 ** int(self.config["num_downsamples"])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` images in [0, 1] → ``(B, C, H/f, W/f)`` latents (std about 1)."""
        return self.encoder(x)

    #: Recompute the decoder's activations in the backward pass, in 4 segments (set by
    #: ``LatentDiffusion.set_runtime(gradient_checkpointing=True)``).
    gradient_checkpointing: bool = False

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, C, h, w)`` latents → ``(B, 3, h·f, w·f)`` images, nominally [0, 1], unclamped."""
        if self.gradient_checkpointing and torch.is_grad_enabled() and z.requires_grad:
            return checkpoint_sequential(self.decoder, 4, z, use_reentrant=False)
        return self.decoder(z)


def convert_taef2(encoder_pth: str | PathLike[str], decoder_pth: str | PathLike[str]) -> TAEF2:
    """Load the published fp16 ``taef2_encoder.pth`` / ``taef2_decoder.pth`` into a float32 TAEF2.

    The files are plain state dicts; they are read with ``weights_only=True`` (no pickled code)
    and loaded strictly: a missing, unexpected or misshapen tensor is a ``ValueError`` naming it.
    """
    model = TAEF2()
    for half, file in ((model.encoder, encoder_pth), (model.decoder, decoder_pth)):
        try:
            state = torch.load(file, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as err:  # torch's own message suggests weights_only=False: never do that here
            raise InvalidInput(
                f"{file} is not a plain tensor checkpoint: it needs the full unpickler "
                f"({type(err).__name__}), which could run arbitrary code, so flash-wrap refuses it; "
                "use the published TAEF2 .pth files or a safetensors autoencoder folder"
            ) from None
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise InvalidInput(f"{file} does not hold a state dict of tensors (got {type(state).__name__})")
        load_strict(half, {k: v.float() for k, v in state.items()}, f"TAEF2 weights {file}")
    return model.float().eval()


#: Written as ``LICENSE`` next to every saved copy of the weights (the MIT notice must travel with them).
TAEF2_LICENSE = """TAEF2 weights (taef2_encoder.pth / taef2_decoder.pth from https://github.com/madebyollin/taesd,
commit 5cccb12dc72074a4be35680c3b108548a7c69978), converted to safetensors by flash-wrap.

MIT License

Copyright (c) 2023 Ollin Boer Bohan

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""
