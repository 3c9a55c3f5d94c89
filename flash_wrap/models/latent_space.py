"""Whether two models share one latent space, so that a severity encoder moves between them.

A severity encoder predicts ``z_hat`` in its model's *scaled* latent units and σ̂ on that scale
[P Sec. 3.1]; it is meaningful for another model only when both encode images the same way:
the same kind of autoencoder with the same latent channels, the same ``latent_scale`` and
``latent_shift`` and, when the encoder is to be used as it is, the same autoencoder weights (up to
the rounding of a float16 or bfloat16 export). One rule, used by ``train-severity --init-from``
(a starting point, so weights may differ) and ``eval --severity-from`` (used as it is).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from ..errors import InvalidInput

if TYPE_CHECKING:
    from .bundle import LatentDiffusion

#: Relative tolerance of the weight comparison: a bfloat16 export rounds to 2⁻⁸ ≈ 3.9e-3.
WEIGHT_RTOL = 1e-2
#: Absolute floor for weights near zero (float16 subnormals).
WEIGHT_ATOL = 1e-5


def latent_space_difference(model: LatentDiffusion, other: LatentDiffusion, *, weights: bool) -> str | None:
    """``None`` when ``other``'s latents are ``model``'s; otherwise what differs, in words.

    ``weights`` also compares the two autoencoders' parameters (same names and shapes, values
    within :data:`WEIGHT_RTOL`): two autoencoders of one kind trained apart have the same
    architecture but unrelated latent spaces.
    """
    a, b = model.autoencoder, other.autoencoder
    if a.kind != b.kind:
        return f"its autoencoder is {b.kind}, the model's is {a.kind}"
    if model.latent_channels != other.latent_channels:
        return f"its latents have {other.latent_channels} channels, the model's {model.latent_channels}"
    if not math.isclose(model.latent_scale, other.latent_scale, rel_tol=1e-6) or not math.isclose(
        model.latent_shift, other.latent_shift, rel_tol=1e-6, abs_tol=1e-9
    ):
        return (f"its latent scale and shift ({other.latent_scale:.6g}, {other.latent_shift:.6g}) differ from "
                f"the model's ({model.latent_scale:.6g}, {model.latent_shift:.6g})")
    if not weights:
        return None
    mine, theirs = a.state_dict(), b.state_dict()
    if mine.keys() != theirs.keys():
        return "its autoencoder has other parameters than the model's"
    for name, value in mine.items():
        them = theirs[name]
        if value.shape != them.shape:
            return f"its autoencoder's {name} has shape {tuple(them.shape)}, the model's {tuple(value.shape)}"
        if value.is_floating_point() and not torch.allclose(
            value.detach().float().cpu(), them.detach().float().cpu(), rtol=WEIGHT_RTOL, atol=WEIGHT_ATOL
        ):
            return f"its autoencoder's weights differ from the model's (first: {name})"
    return None


def check_encoder_source(model: LatentDiffusion, source: LatentDiffusion, tasks: list[str], *, origin: str,
                         weights: bool) -> None:
    """Refuse (``ValueError`` naming ``origin``) to take ``source``'s severity encoders for ``tasks``
    into ``model`` unless ``source`` has each and shares the latent space (:func:`latent_space_difference`)."""
    missing = [t for t in tasks if t not in source.severity_encoders]
    if missing:
        raise InvalidInput(f"{origin} has no severity encoder for {', '.join(map(repr, missing))} "
                         f"(it has: {', '.join(source.severity_encoders) or 'none'})")
    difference = latent_space_difference(model, source, weights=weights)
    if difference is not None:
        raise InvalidInput(f"{origin}: {difference}, so its severity encoders would predict latents in another "
                         "space; use encoders trained from this model (flash-wrap train-severity --model MODEL)")
