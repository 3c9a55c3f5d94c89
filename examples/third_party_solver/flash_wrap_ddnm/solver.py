"""Latent DDNM: denoising-diffusion null-space projection, run in an autoencoder's latent space.

Reference: Wang, Yu, Zhang, "Zero-Shot Image Restoration Using Denoising Diffusion Null-Space
Model" (ICLR 2023). DDNM works in pixel space: at every step it replaces the range-space part of
the Tweedie estimate by the measurement's, ``x̂0 = A†y + (I − A†A)·x0 = x0 − A†(A·x0 − y)``, and
samples ``x_{t−1}`` from ``p(x_{t−1} | x_t, x̂0)``.

What this solver does at grid index ``k`` (level ``t = g_k``), for the rows being stepped
(``state`` holds exactly those; see ``flash_wrap.StepState``):

1. ``ε = ε_θ(z_t, t)`` (the step's one denoiser call, 1 NFE); ``ẑ0 = (z_t − √(1−ᾱ_t)·ε)/√ᾱ_t``.
2. ``x0 = D(ẑ0)`` (one counted decoder call per row), [0, 1] image units, unclamped.
3. Range-space correction in pixel space, ``x̃ = x0 + λ·A†(y − A(x0))`` (y unclamped):

   * random inpainting, ``A = diag(m)`` with ``m ∈ {0, 1}``: the explicit pseudo-inverse
     ``A† = Aᵀ = A``, so with λ = 1 ``x̃ = m·y + (1 − m)·x0`` exactly;
   * any other linear operator: the Tikhonov-regularised pseudo-inverse
     ``A†_δ = Aᵀ(AAᵀ + δI)⁻¹``, the inner solve done by ``cg_iters`` conjugate-gradient steps
     per sample (``Operator.__call__`` and ``Operator.adjoint``; δ = ``delta``).

4. Back to the latent space by encoding the correction, ``z̃0 = ẑ0 + E(x̃) − E(x0)``
   (``model.encode(·, estimate=True)``, one encoder pass over both images, not counted).
5. ``z_{t−1}`` = the solver's own prior step taken from ``z̃0`` instead of ``ẑ0`` (DDIM:
   ``√a'·z̃0 + √(1 − a' − σ_k²)·ε + σ_k·ξ`` with the network's ε, as in DDNM's code; DDPM if
   chosen: the ancestral step of ``q(z_{t−1} | z_t, z̃0)``).

Differences to the original pixel-space DDNM:

* The projection acts on the decoded estimate and reaches the latent through the encoder.
  Encoding the *difference* keeps ``ẑ0`` wherever the correction is zero (λ = 0 is exactly the
  unconditional sampler) and keeps latent detail an imperfect autoencoder would lose in a round
  trip; with an autoencoder that round-trips (``E(D(ẑ0)) = ẑ0``) it equals ``E(x̂0)``, DDNM's
  corrected estimate encoded. Measurement consistency of ``D(z̃0)`` then holds only as far as
  ``D∘E`` is the identity near ``x̃``.
* DDNM computes exact pseudo-inverses from each operator's SVD; here inpainting is exact and the
  other linear operators use ``A†_δ`` (δ > 0 also damps the noise that ``A†`` amplifies).
* Noisy measurements: DDNM+ scales the correction by a time-dependent ``λ_t`` and shrinks the
  sampling noise to compensate; in latent space the measurement noise passes through the
  nonlinear encoder, so that variance bookkeeping does not apply. Here λ is one constant
  (``lam``; DDNM+'s ``Σ_t = λ·I`` without the schedule). No "time travel" (it costs extra NFE).
* Sampler: DDIM with 100 steps and η = 0.85, DDNM's published setting, on the latent prior;
  ``Flash`` runs the truncated trajectory ``s−1 … 0`` of that grid.
* Linear operators only (``Operator.linear``, they provide ``adjoint``): Gaussian blur, random
  inpainting, super-resolution. The nonlinear motion blur is rejected before any work.

Costs per step and row: 1 NFE, 1 decoder call, 1 encoder pass over two images, and for
non-inpainting operators ``cg_iters + 1`` applications of ``Aᵀ`` and ``cg_iters`` of ``A``.
No autograd graph is built (``Operator.adjoint`` differentiates internally).

Defaults are untuned starting points (no published latent DDNM numbers exist): λ = 1, the
Flash noise correction c = 1.2 (the Flash paper's value for blur and inpainting), δ = 0.05
for Gaussian blur (top eigenvalue of AAᵀ is 1) and δ = 0.005 for ×4 super-resolution (the top
eigenvalue of AAᵀ is about 1/16 there). Tune them for serious work, or ship tuned values in a
model bundle's ``solver_defaults["latent-ddnm"]``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from flash_wrap import Solver, StepState, hookimpl
from flash_wrap.operators import Operator, RandomInpainting

_COMMON = {"lam": 1.0, "cg_iters": 10}


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(n,)`` per-sample inner products, shaped ``(n, 1, …)`` to broadcast against ``a``."""
    return (a * b).flatten(1).sum(dim=1).view(-1, *([1] * (a.dim() - 1)))


def conjugate_gradient(apply: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iterations: int) -> torch.Tensor:
    """Solve ``apply(w) = b`` for a symmetric positive definite ``apply``, ``iterations`` CG steps
    per sample, started at 0. Every scalar (step length, direction update) is per sample, so a
    row's solution does not depend on its batch mates."""
    tiny = torch.finfo(b.dtype).tiny
    w = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rs = _dot(r, r)
    for _ in range(iterations):
        ap = apply(p)
        alpha = rs / _dot(p, ap).clamp_min(tiny)  # a converged row has p = 0: alpha = 0
        w = w + alpha * p
        r = r - alpha * ap
        rs_next = _dot(r, r)
        p = r + (rs_next / rs.clamp_min(tiny)) * p
        rs = rs_next
    return w


def pseudo_inverse(operator: Operator, u: torch.Tensor, delta: float, iterations: int) -> torch.Tensor:
    """``A†(u)`` for a measurement-shaped ``u``, image-shaped result in [0, 1] units.

    Random inpainting: ``A† = Aᵀ = A`` (a 0/1 diagonal is its own pseudo-inverse). Other linear
    operators: ``Aᵀ(AAᵀ + δI)⁻¹u`` with ``iterations`` CG steps for the inner solve.
    """
    if isinstance(operator, RandomInpainting):
        return operator.adjoint(u)
    if delta <= 0:
        raise ValueError(f"latent-ddnm needs delta > 0 for {type(operator).__name__}, got {delta}")
    w = conjugate_gradient(lambda v: operator(operator.adjoint(v)) + delta * v, u, iterations)
    return operator.adjoint(w)


def null_space_correction(state: StepState, x0: torch.Tensor) -> torch.Tensor:
    """DDNM's corrected estimate ``x̃ = x0 + λ·A†(y − A(x0))`` for the state's rows, [0, 1] units,
    computed in at least float32 and returned in ``x0``'s dtype."""
    params, op = state.params, state.operator
    work = x0.to(torch.promote_types(x0.dtype, torch.float32))
    residual = state.y.to(work.dtype) - op(work)
    correction = pseudo_inverse(op, residual, float(params["delta"]), int(params["cg_iters"]))
    return (work + float(params["lam"]) * correction).to(x0.dtype)


class LatentDDNM(Solver):
    """Latent DDNM (Wang et al., ICLR 2023): DDIM-100 whose Tweedie estimate gets DDNM's
    range-space correction ``A†(y − A(D(ẑ0)))`` in pixel space, encoded back as
    ``ẑ0 + E(x̃) − E(x0)`` (see the module docstring for the exact step and the differences).

    Hyper-parameters: ``lam`` (correction weight λ, 1 = full projection), ``delta`` (Tikhonov δ
    of ``A†`` for non-inpainting operators), ``cg_iters`` (CG steps of that inner solve), ``c``
    (Flash noise correction). Linear operators only.
    """

    name = "latent-ddnm"
    summary = "Latent DDNM: DDIM-100 + null-space projection x0 - A^+(A x0 - y) of D(z0), re-encoded (linear operators)"
    reference = (
        "Wang, Yu, Zhang, Zero-Shot Image Restoration Using Denoising Diffusion Null-Space Model "
        "(ICLR 2023); latent variant for flash-wrap"
    )
    sampler_kind = "ddim"
    default_steps = 100
    ddim_eta = 0.85
    defaults = {
        "gaussian-blur": {"c": 1.2, "delta": 0.05, **_COMMON},
        "random-inpainting": {"c": 1.2, "delta": 0.05, **_COMMON},  # delta unused: exact A†
        "super-resolution": {"c": 1.2, "delta": 0.005, **_COMMON},
    }
    fallback = {"c": 1.2, "delta": 0.05, **_COMMON}
    counts = {"cg_iters": 1}

    def check_operator(self, operator: Operator) -> None:
        super().check_operator(operator)
        if not getattr(operator, "linear", False):
            raise ValueError(
                f"latent-ddnm projects onto {{x : A(x) = y}} with a pseudo-inverse, which needs a linear "
                f"operator; {type(operator).__name__} (task {operator.task!r}) is not linear. "
                "Use latent-dps or gml-dps instead"
            )

    def step(self, state: StepState) -> torch.Tensor:
        with torch.no_grad():
            prediction = state.predict(state.z)
            eps, z0 = prediction.eps, prediction.z0
            if float(state.params["lam"]) != 0.0:
                x0 = state.decode(z0)
                x_tilde = null_space_correction(state, x0)
                encoded = state.model.encode(torch.cat([x_tilde, x0]), estimate=True)
                b = z0.shape[0]
                z0 = z0 + (encoded[:b] - encoded[b:])
            return state.sampler.step(state.z, eps, z0, state.index, state.generator)


@hookimpl
def flash_wrap_register_solvers(register):
    register(LatentDDNM)
