"""Reverse-process samplers over a timestep grid, vectorised per sample.

diffusers' ``step()`` takes one timestep for the whole batch; Flash needs each sample at its own
grid index, so the DDPM and DDIM updates are short functions over ``alphas_cumprod`` here
(ALGORITHMS.md §4), with the grids taken from diffusers' schedulers. A rectified-flow model's σ grid
is a DDIM grid on the VP path (:meth:`Sampler.flow`, ALGORITHMS.md §12). A sampler's grid is
``g_0 < g_1 < ... < g_{M-1}``; "grid index" ``k`` always refers to it, and one reverse step at
index ``k`` maps a latent at level ``g_k`` to level ``g_{k-1}`` (or to the clean end for ``k = 0``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import torch
from diffusers import DDIMScheduler, DDPMScheduler

from .errors import InvalidInput
from .models.flow_path import flow_alpha_bar, flow_snr
from .rng import GeneratorArg, randn

SamplerKind = Literal["ddpm", "ddim"]


@dataclass(frozen=True)
class Sampler:
    """A timestep grid plus per-index coefficient tables (all ``(M,)`` tensors on one device).

    Build one with :meth:`ddpm`, :meth:`ddim` or :meth:`flow`. Update rules (ALGORITHMS.md §4):

    * DDPM ancestral (LDM ``p_sample``, ``fixed_small``):
      ``z' = A_k·ẑ0 + B_k·z_t + σ_k·ξ`` with ``A_k = β_t√ᾱ_{t−1}/(1−ᾱ_t)``,
      ``B_k = (1−ᾱ_{t−1})√α_t/(1−ᾱ_t)``, ``σ_k² = β_t(1−ᾱ_{t−1})/(1−ᾱ_t)``, no noise at ``t = 0``.
    * DDIM (LDM ``p_sample_ddim``): ``z' = √a'·ẑ0 + √(1−a'−σ_k²)·ε + σ_k·ξ`` with ``a = ᾱ_{g_k}``,
      ``a' = ᾱ_{g_{k−1}}`` (``ᾱ_0`` for ``k = 0``), ``σ_k = η√((1−a')/(1−a))·√(1−a/a')``.
    * Flow (``path = "flow"``): the same DDIM update on ``ᾱ_k = ᾱ(σ_k)``, ``a' = 1`` below index 0.
    """

    kind: SamplerKind
    timesteps: torch.Tensor  # (M,) increasing: g_0 .. g_{M-1}; long (VP) or float64 σ·T (flow)
    sqrt_alpha_bar: torch.Tensor  # (M,) √ᾱ_{g_k}
    sqrt_one_minus_alpha_bar: torch.Tensor  # (M,) √(1-ᾱ_{g_k})
    coef_z0: torch.Tensor  # (M,) multiplies ẑ0
    coef_other: torch.Tensor  # (M,) multiplies z_t (DDPM) or ε (DDIM)
    noise_std: torch.Tensor  # (M,) σ_k
    snr: torch.Tensor  # (M,) float64 ᾱ/(1−ᾱ) at g_k, for the start rule
    eta: float = 1.0
    path: str = "vp"  # "vp" (a DDPM schedule) or "flow" (a rectified-flow σ grid)

    @property
    def num_steps(self) -> int:
        """``M``, the length of the grid (= NFE of a full trajectory)."""
        return int(self.timesteps.numel())

    @classmethod
    def ddpm(cls, alphas_cumprod: torch.Tensor) -> Sampler:
        """Ancestral DDPM over every training timestep: ``g_k = k``, ``M = T``."""
        scheduler = DDPMScheduler(num_train_timesteps=alphas_cumprod.numel())
        scheduler.set_timesteps(alphas_cumprod.numel())
        grid = scheduler.timesteps.flip(0).long()
        a_bar = alphas_cumprod.double().cpu()
        a_prev = torch.cat([torch.ones(1, dtype=torch.float64), a_bar[:-1]])
        beta = 1 - a_bar / a_prev
        coef_z0 = beta * a_prev.sqrt() / (1 - a_bar)
        coef_zt = (1 - a_prev) * (1 - beta).sqrt() / (1 - a_bar)
        var = beta * (1 - a_prev) / (1 - a_bar)
        var[0] = 0.0  # the last step (t = 0) adds no noise
        return cls._build("ddpm", grid, a_bar, coef_z0, coef_zt, var.sqrt(), 1.0, alphas_cumprod)

    @classmethod
    def ddim(cls, alphas_cumprod: torch.Tensor, steps: int, eta: float = 0.0) -> Sampler:
        """DDIM on LDM's uniform grid ``g_k = k·(T // N) + 1`` (diffusers "leading", offset 1)."""
        total = alphas_cumprod.numel()
        if not isinstance(steps, int) or not 1 <= steps <= total:
            raise InvalidInput(f"DDIM steps must be an integer in [1, {total}], got {steps!r}")
        if eta < 0:
            raise InvalidInput(f"DDIM eta must be >= 0, got {eta}")
        scheduler = DDIMScheduler(num_train_timesteps=total, timestep_spacing="leading", steps_offset=1)
        scheduler.set_timesteps(steps)
        grid = scheduler.timesteps.flip(0).long()
        all_bar = alphas_cumprod.double().cpu()
        a = all_bar[grid]
        a_prev = torch.cat([all_bar[:1], a[:-1]])  # set_alpha_to_one=False: ᾱ_0 below g_0
        sigma = eta * ((1 - a_prev) / (1 - a)).sqrt() * (1 - a / a_prev).sqrt()
        coef_eps = (1 - a_prev - sigma**2).clamp_min(0).sqrt()
        return cls._build("ddim", grid, a, a_prev.sqrt(), coef_eps, sigma, float(eta), alphas_cumprod)

    @classmethod
    def flow(
        cls, sigmas: torch.Tensor, eta: float = 0.0, *, num_train_timesteps: int = 1000,
        dtype: torch.dtype = torch.float32,
    ) -> Sampler:
        """DDIM on a rectified-flow σ grid (ALGORITHMS.md §12); with η = 0 each step is the flow's Euler step.

        Args:
            sigmas: ``(M,)`` σ's in (0, 1], strictly decreasing (as :meth:`LatentDiffusion.flow_sigmas`
                returns them); grid index ``k`` is σ in increasing order, so ``k = M − 1`` is the top.
            eta: DDIM stochasticity η ≥ 0.
            num_train_timesteps: ``T``: the denoiser's timestep input is ``σ·T`` (float64 here).
            dtype: of the coefficient tables (float64 for exact float64 runs); on ``sigmas``' device.
        Tables: ``ᾱ_k = (1−σ_k)²/((1−σ_k)²+σ_k²)``, ``a' = 1`` (σ = 0) below index 0, DDIM coefficients
        as :meth:`ddim`, ``snr = (1−σ_k)²/σ_k²`` in float64 (0 at σ = 1, never ∞ since σ > 0).
        """
        sig = sigmas.detach().to(torch.float64)
        if sig.dim() != 1 or sig.numel() < 1 or not bool(((sig > 0) & (sig <= 1)).all()) or bool((sig[1:] >= sig[:-1]).any()):
            raise InvalidInput(f"flow sigmas must be a non-empty (M,) tensor, strictly decreasing within (0, 1], got "
                               f"{sig.tolist()[:4]}...")
        if eta < 0:
            raise InvalidInput(f"DDIM eta must be >= 0, got {eta}")
        sig = sig.flip(0).cpu()
        a = flow_alpha_bar(sig)
        a_prev = torch.cat([torch.ones(1, dtype=torch.float64), a[:-1]])
        noise = eta * ((1 - a_prev) / (1 - a)).sqrt() * (1 - a / a_prev).sqrt()
        coef_eps = (1 - a_prev - noise**2).clamp_min(0).sqrt()
        like = torch.empty(0, device=sigmas.device, dtype=dtype)
        sampler = cls._build("ddim", sig * num_train_timesteps, a, a_prev.sqrt(), coef_eps, noise, float(eta), like)
        return dataclasses.replace(sampler, snr=flow_snr(sig), path="flow")

    @classmethod
    def _build(cls, kind, grid, a_bar, coef_z0, coef_other, sigma, eta, like) -> Sampler:
        as_like = dict(device=like.device, dtype=like.dtype)
        return cls(
            kind=kind,
            timesteps=grid.to(like.device),
            sqrt_alpha_bar=a_bar.sqrt().to(**as_like),
            sqrt_one_minus_alpha_bar=(1 - a_bar).sqrt().to(**as_like),
            coef_z0=coef_z0.to(**as_like),
            coef_other=coef_other.to(**as_like),
            noise_std=sigma.to(**as_like),
            snr=(a_bar / (1 - a_bar)),
            eta=eta,
        )

    @staticmethod
    def _rows(table: torch.Tensor, index: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return table[index].to(like.dtype).view(-1, *([1] * (like.dim() - 1)))

    def tweedie(self, z_t: torch.Tensor, eps: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Posterior mean ``ẑ0 = (z_t − √(1−ᾱ_t)·ε)/√ᾱ_t`` (never clamped), per-sample index ``(B,)``.

        Refused at a level with ``ᾱ = 0`` (the top σ = 1 of a flow grid), where it would divide by zero:
        take ẑ0 from the denoiser there (``StepState.predict(z).z0``, ALGORITHMS.md §12)."""
        if bool((self.sqrt_alpha_bar[index] == 0).any()):
            raise InvalidInput("Sampler.tweedie: ᾱ = 0 at this grid level (σ = 1, the top of a flow grid), so "
                               "(z − √(1−ᾱ)·ε)/√ᾱ divides by zero; use StepState.predict(z).z0, which is finite there")
        return (z_t - self._rows(self.sqrt_one_minus_alpha_bar, index, z_t) * eps) / self._rows(
            self.sqrt_alpha_bar, index, z_t
        )

    def step(
        self,
        z_t: torch.Tensor,
        eps: torch.Tensor,
        z0: torch.Tensor,
        index: torch.Tensor,
        generator: GeneratorArg = None,
    ) -> torch.Tensor:
        """One unconditional reverse step ``z_t → z'`` at grid indices ``index`` ``(B,)``.

        Args:
            z_t, eps, z0: ``(B, C, h, w)`` current latent, predicted noise and Tweedie estimate.
            generator: source of the fresh noise ξ (one, or one per row).
        """
        other = z_t if self.kind == "ddpm" else eps
        mean = self._rows(self.coef_z0, index, z0) * z0 + self._rows(self.coef_other, index, z0) * other
        xi = randn(mean.shape, generator, device=mean.device, dtype=mean.dtype)
        return mean + self._rows(self.noise_std, index, mean) * xi
