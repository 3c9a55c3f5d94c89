"""The severity encoder's training loss [P eq. 3 and L_im.rec; ALGORITHMS.md §2].

Per sample, with ``z0 = E(x)`` from the frozen autoencoder and ``e = ẑ − z0``:

    L = (1/d)‖ẑ − z0‖² + λσ·(σ̄²(e) − v)² + λim·(1/n)‖D(ẑ) − x‖²

``σ̄²`` is the unbiased sample variance over the ``d`` latent entries and is not detached (as
in the official code). The image term is measured in [−1, 1] units (as in the code) and averaged
over the batch like the others (the code's per-GPU batch-size weighting is not reproduced).
"""

from __future__ import annotations

import torch

from ...models import LatentDiffusion
from ...severity.encoder import SeverityEncoder


def severity_loss(
    encoder: SeverityEncoder,
    model: LatentDiffusion,
    x: torch.Tensor,
    y_image: torch.Tensor,
    *,
    lambda_sigma: float = 1.0,
    lambda_image: float = 1.0,
) -> dict[str, torch.Tensor]:
    """Loss terms for one batch.

    Args:
        encoder: the severity encoder being trained.
        model: the bundle whose frozen autoencoder gives ``z0`` and decodes ``ẑ``.
        x: ``(B, 3, H, W)`` clean images in [0, 1].
        y_image: ``(B, 3, H, W)`` degraded measurements on the image grid (``operator.to_image(y)``).
    Returns:
        ``loss`` (scalar to minimise) and the batch means of ``latent``, ``error``, ``image``, plus
        per-sample ``variance`` (predicted ``v``) and ``target`` (σ̄²), both detached.
    """
    with torch.no_grad():
        z0 = model.encode(x)
    z_hat, variance = encoder(y_image)
    error = (z_hat - z0).flatten(1)
    latent_term = error.square().mean(dim=1)
    sample_variance = error.var(dim=1, unbiased=True)
    error_term = (sample_variance - variance).square()
    image_term = (2.0 * (model.decode(z_hat) - x)).square().flatten(1).mean(dim=1)
    total = latent_term + lambda_sigma * error_term + lambda_image * image_term
    return {
        "loss": total.mean(),
        "latent": latent_term.mean().detach(),
        "error": error_term.mean().detach(),
        "image": image_term.mean().detach(),
        "variance": variance.detach(),
        "target": sample_variance.detach(),
    }
