"""The forward-model contract shared by every operator.

An operator is a batch of forward models ``A_i`` with per-sample parameters, plus Gaussian
measurement noise: ``y_i = A_i(x_i) + noise_std * n``. Images are ``(B, 3, H, W)`` in [0, 1];
``A`` is differentiable so solvers can back-propagate a data-consistency residual through it.
Linear operators (``Operator.linear``) also apply the transpose ``Aᵀ`` of their noise-free map
(:meth:`Operator.adjoint`), which PSLD needs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar, TypeVar

import torch

from .._checks import MEASUREMENT_RANGE, check_batch, check_generator, check_images, warn_if_signed
from ..errors import InvalidInput
from ..rng import GeneratorArg, randn

#: σ_y on [0, 1] images, for every task (ALGORITHMS.md §1, §6).
DEFAULT_NOISE_STD = 0.05

Op = TypeVar("Op", bound="Operator")


class Operator(ABC):
    """A batch of forward models with per-sample parameters and Gaussian measurement noise.

    Subclasses hold their per-sample parameters as 1-D tensors of length ``B`` (or 1, shared by
    the whole batch) and implement :meth:`forward`, :meth:`severity` and :meth:`select`.

    Attributes:
        task: name of the task (parameter distribution) this operator belongs to, used to pick
            the matching severity encoder; ``None`` for operators outside any task.
        noise_std: σ_y of the additive Gaussian noise, in [0, 1] image units.
    """

    task: ClassVar[str | None] = None
    #: Whether the noise-free map ``x ↦ A(x)`` is linear; only linear operators have :meth:`adjoint`.
    linear: ClassVar[bool] = False

    def __init__(self, noise_std: float = DEFAULT_NOISE_STD) -> None:
        if not isinstance(noise_std, (int, float)) or noise_std < 0 or noise_std != noise_std:
            raise InvalidInput(f"noise_std must be a non-negative number, got {noise_std!r}")
        self.noise_std = float(noise_std)

    # -- what subclasses implement -------------------------------------------------------
    @property
    @abstractmethod
    def batch_size(self) -> int:
        """Number of per-sample parameter rows (1 means shared by any batch)."""

    @property
    @abstractmethod
    def severity(self) -> torch.Tensor:
        """Ground-truth scalar severity per sample, shape ``(batch_size,)``; larger = harder."""

    @abstractmethod
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Noiseless ``A(x)`` for ``x`` of shape ``(B, 3, H, W)``; differentiable, no range check
        (solvers call it on decoded estimates that may leave [0, 1])."""

    @abstractmethod
    def select(self: Op, index: torch.Tensor | slice | list[int]) -> Op:
        """The same operator restricted to the given rows (shared parameters stay shared)."""

    @classmethod
    def join_rows(cls: type[Op], parts: Sequence[Op]) -> Op | None:
        """A fast path for :func:`~flash_wrap.operators.join_operators`: one operator of this class
        whose row ``i`` is ``parts[i]`` (one-sample operators of this class, one ``noise_std``), or
        ``None`` where their parameters cannot share one object (the generic row-wise join then
        applies). The default has no fast path."""
        return None

    # -- shared behaviour ----------------------------------------------------------------
    def measurement_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """``(C, h, w)`` of ``A(x)`` for images of shape ``(C, H, W)``; same size by default."""
        return image_shape

    def to_image(self, y: torch.Tensor) -> torch.Tensor:
        """Map a measurement onto the image grid ``(B, 3, H, W)`` for the severity encoder.

        Identity for operators whose measurement already is an image of the input's size.
        """
        return y

    def image_shape(self, measurement_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """``(C, H, W)`` of the images whose measurement is ``(C, h, w)``: the inverse of
        :meth:`measurement_shape` (same size by default)."""
        return measurement_shape

    def adjoint(self, u: torch.Tensor) -> torch.Tensor:
        """``Aᵀ(u)``: the transpose of the noise-free forward map, in [0, 1] image units.

        ``<A(x), u> = <x, Aᵀ(u)>`` for every sample, each with its own parameters. Differentiable
        in ``u`` (its backward applies ``A``, since ``(Aᵀ)ᵀ = A``).

        The default computes it as the exact vector-Jacobian product of :meth:`forward`, taken
        at ``x = 0``: for a linear map the Jacobian *is* the map, so this is exactly ``Aᵀ`` (for
        a Gaussian blur: the transposed depthwise convolution with the reflect-padded borders
        folded back onto their mirrored pixels) with no hand-written transpose to get wrong.
        Subclasses may override it with an explicit formula.

        Args:
            u: ``(B, C, h, w)`` shaped like a measurement.
        Returns:
            ``(B, 3, H, W)`` image-shaped, same device and dtype as ``u``.
        Raises:
            NotImplementedError: the operator is not linear (no transpose exists).
        """
        if not self.linear:
            raise NotImplementedError(
                f"{type(self).__name__} is not linear, so it has no transpose Aᵀ (adjoint); "
                "solvers that need Aᵀ (e.g. PSLD) cannot use it"
            )
        if not isinstance(u, torch.Tensor) or u.dim() != 4:
            raise InvalidInput(f"adjoint expects a (B, C, h, w) measurement tensor, got {getattr(u, 'shape', u)!r}")
        check_batch(self.batch_size, u.shape[0], f"{type(self).__name__} parameters")
        channels, height, width = u.shape[1:]
        shape = (u.shape[0], *self.image_shape((channels, height, width)))
        return _Transpose.apply(u, self, shape)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    def check_images(self, x: object, name: str = "x") -> torch.Tensor:
        """Validate clean images for :meth:`measure`: ``(B, 3, H, W)`` in [0, 1], batch matching."""
        x = check_images(x, name)
        check_batch(self.batch_size, x.shape[0], f"{type(self).__name__} parameters")
        return x

    def check_measurement(self, y: object, image_size: tuple[int, int], name: str = "y") -> torch.Tensor:
        """Validate a measurement for images of ``image_size`` ``(H, W)``.

        Values must lie in ``MEASUREMENT_RANGE`` (noise legitimately leaves [0, 1]); a minimum near −1
        that the noise cannot explain gets a warning (a measurement of [−1, 1] images). This is where
        every solver's and Flash's ``reconstruct`` checks its ``y``.
        """
        c, h, w = self.measurement_shape((3, *image_size))
        y = check_images(y, name, value_range=MEASUREMENT_RANGE, size=(h, w), channels=c)
        warn_if_signed(y, name, self.noise_std)
        check_batch(self.batch_size, y.shape[0], f"{type(self).__name__} parameters")
        return y

    def measure(self, x: torch.Tensor, generator: GeneratorArg = None) -> torch.Tensor:
        """Simulate ``y = A(x) + noise_std * n`` with ``n ~ N(0, I)`` drawn from ``generator``.

        Args:
            x: clean images ``(B, 3, H, W)`` in [0, 1].
            generator: one ``torch.Generator`` or one per sample; ``None`` uses torch's global RNG.
        Returns:
            ``(B, C, h, w)`` measurement (not clamped: noise leaves [0, 1]).
        """
        x = self.check_images(x)
        check_generator(generator, x.shape[0])
        with torch.no_grad():
            clean = self.forward(x)
            noise = randn(clean.shape, generator, device=clean.device, dtype=clean.dtype)
        return clean + self.noise_std * noise

    def __repr__(self) -> str:
        return f"{type(self).__name__}(batch_size={self.batch_size}, noise_std={self.noise_std:g})"


class _Transpose(torch.autograd.Function):
    """``u ↦ Aᵀ(u)`` for a linear operator, as the vector-Jacobian product of ``A`` at 0.

    Its own backward is ``A`` applied to the incoming gradient (the transpose of ``Aᵀ``), so no
    double-backward of ``A`` is ever needed and the result is differentiable in ``u``.
    """

    @staticmethod
    def forward(ctx, u: torch.Tensor, operator: Operator, shape: tuple[int, ...]) -> torch.Tensor:
        ctx.operator = operator
        with torch.enable_grad():
            x = torch.zeros(shape, device=u.device, dtype=u.dtype, requires_grad=True)
            (transposed,) = torch.autograd.grad(operator.forward(x), x, grad_outputs=u.detach())
        return transposed

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return ctx.operator.forward(grad), None, None
