"""Input validation shared by every public entry point.

Every check raises ``TypeError``/``ValueError`` naming the argument, what was expected and what
came, and runs before any heavy work. Nothing here clamps, casts or resizes.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch

from .errors import InvalidInput, WrongType

#: Measurements carry Gaussian noise on top of a [0, 1] image, so they legitimately leave [0, 1].
#: This bound is loose enough for any sensible noise level (σ_y = 0.05 would need a 20σ outlier to
#: cross it) and still rejects 0-255 images.
MEASUREMENT_RANGE: tuple[float, float] = (-1.0, 2.0)
#: A measurement whose minimum lies below this (and below what its noise explains, 6 σ_y) looks like one
#: of [−1, 1] images, whose dark pixels sit near −1.
SIGNED_MINIMUM = -0.5


def check_tensor(value: object, name: str) -> torch.Tensor:
    """Require a floating-point tensor with only finite values."""
    if not isinstance(value, torch.Tensor):
        raise WrongType(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise WrongType(
            f"{name} must be a floating-point tensor (float32/float16/bfloat16/float64), "
            f"got dtype {value.dtype}; convert uint8 images with x.float() / 255"
        )
    if not bool(torch.isfinite(value).all()):
        n_bad = int((~torch.isfinite(value)).sum())
        raise InvalidInput(f"{name} contains {n_bad} NaN or Inf values")
    return value


def check_images(
    x: object,
    name: str = "images",
    *,
    value_range: tuple[float, float] | None = (0.0, 1.0),
    size: int | tuple[int, int] | None = None,
    channels: int | None = 3,
    batch: int | None = None,
) -> torch.Tensor:
    """Validate a ``(B, C, H, W)`` image batch.

    Args:
        x: the tensor to check.
        name: how the error message calls it.
        value_range: inclusive bounds on every value, or ``None`` for no bound.
        size: required spatial size, ``H`` (square) or ``(H, W)``.
        channels: required channel count, or ``None``.
        batch: required batch size, or ``None``.
    """
    x = check_tensor(x, name)
    if x.dim() != 4:
        raise InvalidInput(f"{name} must have shape (B, C, H, W), got {x.dim()} dims {tuple(x.shape)}")
    if channels is not None and x.shape[1] != channels:
        raise InvalidInput(f"{name} must have {channels} channels, got shape {tuple(x.shape)}")
    if size is not None:
        want = (size, size) if isinstance(size, int) else tuple(size)
        if tuple(x.shape[-2:]) != want:
            raise InvalidInput(
                f"{name} must be {want[0]}x{want[1]} pixels, got {x.shape[-2]}x{x.shape[-1]}; "
                "resize or crop before calling (flash-wrap never resizes silently)"
            )
    if batch is not None and x.shape[0] != batch:
        raise InvalidInput(f"{name} has batch size {x.shape[0]}, expected {batch}")
    if value_range is not None and x.numel():
        lo, hi = value_range
        x_min, x_max = float(x.min()), float(x.max())
        if x_min < lo or x_max > hi:
            hint = (" (looks like 0-255 data: divide by 255)" if x_max > 2.0 else
                    " (looks like [-1, 1] data: convert with (x + 1) / 2)" if x_min < lo and x_min <= SIGNED_MINIMUM
                    else "")
            raise InvalidInput(
                f"{name} values must lie in [{lo:g}, {hi:g}], got [{x_min:.4g}, {x_max:.4g}]{hint}"
            )
    return x


def warn_if_signed(y: torch.Tensor, name: str, noise_std: float) -> None:
    """Warn when ``y`` reaches far below 0 (at most :data:`SIGNED_MINIMUM` and below ``−6·noise_std``):
    a measurement of [−1, 1] images, which every solver would treat as [0, 1] ones."""
    if not y.numel():
        return
    y_min = float(y.min())
    if y_min <= min(SIGNED_MINIMUM, -6 * noise_std):
        warnings.warn(f"{name} reaches {y_min:.3g}, far below what noise of σ_y = {noise_std:g} gives a [0, 1] image: "
                      "it looks like a measurement of [-1, 1] images; flash_wrap takes [0, 1] images (convert "
                      "with (x + 1) / 2 before measuring)", UserWarning, stacklevel=5)


def per_sample(
    value: float | Sequence[float] | torch.Tensor,
    name: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
) -> torch.Tensor:
    """Turn a scalar, a sequence or a tensor into a 1-D float tensor of per-sample values.

    Scalars become shape ``(1,)`` and broadcast over any batch (see :func:`check_batch`).
    """
    if isinstance(value, torch.Tensor):
        tensor = value
        if not tensor.is_floating_point():
            tensor = tensor.to(torch.get_default_dtype())
    else:
        try:
            tensor = torch.as_tensor(value, dtype=torch.get_default_dtype())
        except (TypeError, ValueError) as err:
            raise WrongType(f"{name} must be a number, a sequence of numbers or a tensor: {err}") from None
    if tensor.dim() == 0:
        tensor = tensor.reshape(1)
    if tensor.dim() != 1:
        raise InvalidInput(f"{name} must be a scalar or a 1-D tensor of per-sample values, got shape {tuple(tensor.shape)}")
    if tensor.numel() == 0:
        raise InvalidInput(f"{name} is empty")
    check_tensor(tensor, name)
    if minimum is not None and float(tensor.min()) < minimum:
        raise InvalidInput(f"{name} must be >= {minimum:g}, got min {float(tensor.min()):.4g}")
    if maximum is not None and float(tensor.max()) > maximum:
        raise InvalidInput(f"{name} must be <= {maximum:g}, got max {float(tensor.max()):.4g}")
    return tensor


def check_batch(n_params: int, batch: int, what: str) -> None:
    """A per-sample parameter of length ``n_params`` must have length 1 or ``batch``."""
    if n_params not in (1, batch):
        raise InvalidInput(
            f"{what} holds {n_params} per-sample values but the batch has {batch} samples; "
            "pass one value per sample (or a single value for all)"
        )


def check_generator(generator: object, batch: int) -> None:
    """``generator`` is ``None``, one ``torch.Generator`` or a list with one per sample."""
    if generator is None or isinstance(generator, torch.Generator):
        return
    if isinstance(generator, (list, tuple)):
        if len(generator) != batch:
            raise InvalidInput(f"generator list has {len(generator)} entries but the batch has {batch} samples")
        first: dict[int, int] = {}
        for i, g in enumerate(generator):
            if not isinstance(g, torch.Generator):
                raise WrongType(f"generator list must hold torch.Generator objects, got {type(g).__name__}")
            if id(g) in first:
                raise InvalidInput(f"generator list holds one torch.Generator object at positions {first[id(g)]} and {i}: "
                                 "each sample needs its own generator (e.g. flash_wrap.rng.generators(seeds)), or its "
                                 "noise would depend on the other samples; pass one generator for all instead")
            first[id(g)] = i
        return
    raise WrongType(f"generator must be a torch.Generator, a list of them or None, got {type(generator).__name__}")
