"""ReSample (hard data consistency + stochastic resampling), as re-implemented by Flash-Diffusion.

flash_wrap/ALGORITHMS.md §5 [C ``samplers/latent_recon.py`` ``ReSample``, ``data_consistency.py``
``resample``]. The prior is DDIM with 500 steps and η_DDIM = 1.0 on LDM's grid
``g_k = 2k + 1`` (so g_0 = 1, g_10 = 21, …, g_499 = 999); there is **no** latent-DPS gradient
step. At grid index ``k`` (the step from level ``t = g_k``):

1. ``ε = ε_θ(z_t, t)`` (the one denoiser call, 1 NFE), ``ẑ0 = (z_t − √(1−ᾱ_t)·ε)/√ᾱ_t``,
   ``z' =`` the DDIM step (noise included).
2. If ``k`` is not a hard-data-consistency (DC) index, or the stage is "skip": return ``z'``.
3. Otherwise solve for a measurement-consistent ``ẑ0^c`` (stage by timestep ``t``):

   * ``t > 750`` ("chaotic"): skip, return ``z'``.
   * ``300 < t ≤ 750`` ("semantic"), pixel-space solve: ``u ← D(ẑ0)``, minimise
     ``Σ(A₋₁(u) − y)² + λ·Σ(u − D(ẑ0))²`` over ``u``; then ``ẑ0^c = E(u)``.
   * ``t ≤ 300`` ("refinement"), latent-space solve: minimise
     ``Σ(A₋₁(D(w)) − y)² + λ·Σ(w − ẑ0)²`` over ``w`` (init ``ẑ0``); ``ẑ0^c = w``.

   Images and ``y`` are in [−1, 1] units here (``A₋₁(x) = 2·A((x+1)/2) − 1``, flash_wrap/ALGORITHMS.md §1),
   so Adam's learning rate acts on the same scale as in the official code. Adam (β = 0.9, 0.999,
   ε = 1e-8), lr ``lr`` = 0.1, at most ``iterations`` = 100 updates, λ = ``lam`` = 1.0. Before
   every update the discrepancy principle is checked per sample: a sample stops for good when
   ``mean((A₋₁(·) − y)²) ≤ (2σ_y)²`` (σ_y = ``operator.noise_std`` in [0, 1] units, so 2σ_y is
   the noise std in [−1, 1] units: 0.01 for σ_y = 0.05). Samples stop independently; a stopped
   sample is no longer decoded or changed while its batch mates continue, so a batched sample
   follows exactly the updates it would follow alone.
4. Stochastic resampling with ``ᾱ = ᾱ_t``, ``ᾱ⁻ = ᾱ_{t−1}`` (DDPM neighbours, ᾱ_{−1} := 1,
   although DDIM steps by 2; on a flow model, ALGORITHMS.md §12, ``t = σ·T`` and ``ᾱ⁻ = ᾱ(σ − 1/T)``
   on the flow path)::

       σ_t² = γ·(1 − ᾱ⁻)/ᾱ·(1 − ᾱ/ᾱ⁻)
       z_{t−1} = [σ_t²·√ᾱ·ẑ0^c + (1 − ᾱ)·z'] / (σ_t² + 1 − ᾱ) + √(σ_t²(1 − ᾱ)/(σ_t² + 1 − ᾱ))·ξ

   (γ = ``gamma``; e.g. γ = 400 gives σ_t² = 0.20 at t = 100, 2.8 at t = 300, 24.5 at t = 500.)

**Hard-DC schedule** (:meth:`ReSample.consistency_schedule`): every ``every_n``-th (= 10th) DDIM
step counted from the lowest timestep of the grid, i.e. grid indices ``k ≡ 0 (mod every_n)``,
plus the final ``LAST_N`` = 1 step(s) (``k = 0``, always included). The indices do not depend on
where the trajectory starts, so Flash's truncated trajectory ``s−1 … 0`` uses the same DC steps
below ``s``. For DDIM-500 on T = 1000: 50 DC indices ``k = 0, 10, …, 490`` (t = 1, 21, …, 981):
k = 0…140 latent (15 steps, t ≤ 281), k = 150…370 pixel (23 steps, t = 301…741), k = 380…490
skipped (12 steps, t ≥ 761).

**Costs.** One denoiser call per step (NFE = steps). Decoder calls (``state.decode``, counted per
sample in ``Reconstruction.decoder_calls``): a pixel solve decodes once (``D(ẑ0)``; its Adam
loop only applies ``A``); a latent solve decodes once per convergence check, i.e. ``n`` decodes
for ``n`` Adam updates if the sample never reaches the threshold, ``n + 1`` if it stops on the
check before update ``n + 1``. Encoder calls (one per pixel solve) and backward passes are not
counted. The convergence checks read one bool per sample to the host per Adam iteration.

**Differences to the official ReSample** (Song et al., "Solving Inverse Problems with Latent
Diffusion Models via Hard Data Consistency", ICLR 2024; repo ``soominkwon/resample``), all
following Flash's re-implementation (flash_wrap/ALGORITHMS.md §5):

* DDIM η = 1.0 here; official η = 0.
* Stages by timestep (750 / 300) here; official: thirds of the trajectory, hard DC when the DDIM
  index % 10 = 0 in stages 2–3 only.
* ẑ0 is Tweedie's estimate at ``z_t``; official uses a 5-step unconditional DDIM look-ahead.
* Adam lr 0.1, ≤ 100 iterations, λ = 1 proximal term, discrepancy stop at (2σ_y)²; official: pixel
  AdamW lr 1e-2 ≤ 2000 iterations, latent AdamW lr 5e-3 ≤ 500 iterations, stop at MSE < 1e-6
  (latent also when the loss rises over a 200-iteration window), no proximal term.
* σ_t² = γ·(1 − ᾱ⁻)/ᾱ·(1 − ᾱ/ᾱ⁻) with DDPM neighbours, mixing at ᾱ = ᾱ_t; official:
  σ_t² = 40·(1 − a')/(1 − a)·(1 − a/a') mixing at the target level a'.
* No latent-DPS gradient step (official: one every iteration, scale 0.5·ᾱ_t) and no final extra
  latent solve.
* Official Tweedie uses (1 − ᾱ)·ε instead of √(1 − ᾱ)·ε (a bug, not reproduced); official task
  noise σ = 0.01 vs 0.05 here.

Flash's reported ReSample numbers are for this re-implementation.

**Flow-matching models** (flash_wrap/ALGORITHMS.md §12): the same solver on the flow's σ grid (DDIM-500
by default, i.e. 500 Euler steps with η = 1 noise), ε and ẑ0 from the denoiser's flow form. The stage
boundaries stay on the model's timestep clock, ``t = σ·T``: pixel solves for 0.3 < σ ≤ 0.75, latent
solves for σ ≤ 0.3 (an analogue, not a tuned choice). The top level σ = 1 (ᾱ = 0, where the
resampling variance would divide by zero) is always above 0.75, so it is never resampled.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

import torch

from flash_wrap import Solver, StepState, hookimpl
from flash_wrap.models.flow_path import flow_alpha_bar
from flash_wrap.rng import randn, take
from flash_wrap.samplers import Sampler

#: Hyper-parameters shared by every task (flash_wrap/ALGORITHMS.md §5: "All ReSample configs").
_COMMON = {"every_n": 10, "iterations": 100, "lr": 0.1, "lam": 1.0}

#: ``residual(x, rows) -> A₋₁(·) − y`` for the rows ``rows`` (positions in the solve's batch) of ``x``.
Residual = Callable[[torch.Tensor, Sequence[int]], torch.Tensor]


class ReSample(Solver):
    """ReSample (Song et al., ICLR 2024) as re-implemented by Flash-Diffusion: DDIM-500 (η = 1)
    with hard data consistency and stochastic resampling every 10th step (see the module
    docstring for the formulas, the schedule and the differences to the official code).

    Hyper-parameters (all tasks share the last four; see flash_wrap/ALGORITHMS.md §5):

    * ``c``: Flash noise-correction constant; ``gamma``: resampling variance scale γ.
    * ``every_n`` (10): hard DC at grid indices ``k ≡ 0 (mod every_n)`` (plus ``k < LAST_N``).
    * ``iterations`` (100): most Adam updates per solve; ``lr`` (0.1): Adam learning rate.
    * ``lam`` (1.0): weight λ of the proximal term ``Σ(· − init)²``.

    Per-task (c, γ) from the official FFHQ configs; super-resolution is ours (no SR experiment in
    the paper): the Gaussian-blur values (1.2, 400), SR ×f being a blur-like low-pass operator.
    Class constants: ``SKIP_ABOVE`` = 750, ``LATENT_AT_OR_BELOW`` = 300 (stage boundaries in
    timesteps), ``LAST_N`` = 1 (final steps always corrected), ``DISCREPANCY`` = 2 (stop when
    the mean squared residual in [−1, 1] units is ≤ (DISCREPANCY·σ_y)²).
    """

    name = "resample"
    summary = "ReSample (Flash re-implementation): DDIM-500, hard data consistency + stochastic resampling"
    reference = (
        "Song et al., Solving Inverse Problems with Latent Diffusion Models via Hard Data Consistency (ICLR 2024); "
        "as re-implemented in Fabian, Tinaz, Soltanolkotabi, Adapt and Diffuse (ICML 2024)"
    )
    sampler_kind = "ddim"
    default_steps = 500
    ddim_eta = 1.0
    defaults = {
        "gaussian-blur": {"c": 1.2, "gamma": 400.0, **_COMMON},
        "motion-blur": {"c": 1.2, "gamma": 200.0, **_COMMON},
        "random-inpainting": {"c": 1.2, "gamma": 200.0, **_COMMON},
        "super-resolution": {"c": 1.2, "gamma": 400.0, **_COMMON},
    }
    fallback = {"c": 1.2, "gamma": 400.0, **_COMMON}
    counts = {"every_n": 1, "iterations": 0}  # every_n = 0 would divide by zero; 0 iterations: resampling only

    SKIP_ABOVE: ClassVar[int] = 750
    LATENT_AT_OR_BELOW: ClassVar[int] = 300
    LAST_N: ClassVar[int] = 1
    DISCREPANCY: ClassVar[float] = 2.0
    ADAM_BETAS: ClassVar[tuple[float, float]] = (0.9, 0.999)
    ADAM_EPS: ClassVar[float] = 1e-8

    # -- schedule ----------------------------------------------------------------------------
    @classmethod
    def stage(cls, index: int, timestep: int, every_n: int) -> str | None:
        """The hard-DC stage at grid index ``index`` (level ``timestep``): ``None`` (no DC step),
        ``"skip"`` (a DC index above ``SKIP_ABOVE``: nothing happens), ``"pixel"`` or ``"latent"``."""
        if every_n < 1:
            raise ValueError(f"every_n must be >= 1, got {every_n}")
        if index % every_n != 0 and index >= cls.LAST_N:
            return None
        if timestep > cls.SKIP_ABOVE:
            return "skip"
        return "pixel" if timestep > cls.LATENT_AT_OR_BELOW else "latent"

    def consistency_schedule(
        self, sampler: Sampler | None = None, every_n: int | None = None
    ) -> list[tuple[int, int, str]]:
        """The hard-DC steps of a full trajectory, lowest grid index first.

        Args:
            sampler: the grid (default: this solver's, e.g. DDIM-500).
            every_n: default: this solver's ``every_n`` hyper-parameter (override or default).
        Returns:
            ``(grid index k, timestep g_k, stage)`` for every ``k ≡ 0 (mod every_n)`` and every
            ``k < LAST_N``, with stage ``"skip"`` (t > 750), ``"pixel"`` (300 < t ≤ 750) or
            ``"latent"`` (t ≤ 300). A trajectory started at index ``s`` (Flash) runs the entries
            with ``k < s``. DDIM-500: k = 0…140 latent, 150…370 pixel, 380…490 skip.
        """
        sampler = sampler or self.sampler
        every_n = int(self.hyperparameters(None)["every_n"] if every_n is None else every_n)
        schedule = []
        for k, t in enumerate(sampler.timesteps.tolist()):
            stage = self.stage(k, int(t), every_n)
            if stage is not None:
                schedule.append((k, int(t), stage))
        return schedule

    # -- the step ----------------------------------------------------------------------------
    def step(self, state: StepState) -> torch.Tensor:
        every_n = int(state.params["every_n"])
        stages = [self.stage(k, t, every_n) for k, t in zip(state.index.tolist(), state.t.tolist())]
        with torch.no_grad():
            prediction = state.predict(state.z)
            eps, z0 = prediction.eps, prediction.z0
            z_prime = state.sampler.step(state.z, eps, z0, state.index, state.generator)
        corrected = [i for i, s in enumerate(stages) if s in ("pixel", "latent")]
        if not corrected:
            return z_prime
        z0c = z0.clone()
        for stage, solve in (("pixel", self.pixel_solve), ("latent", self.latent_solve)):
            rows = [i for i, s in enumerate(stages) if s == stage]
            if rows:
                z0c[rows] = solve(state, z0[rows], rows).to(z0c.dtype)
        return self.resample(state, z0c, z_prime, corrected)

    def pixel_solve(self, state: StepState, z0: torch.Tensor, rows: Sequence[int]) -> torch.Tensor:
        """``ẑ0^c = E(u*)`` with ``u*`` the pixel-space solve started at ``D(ẑ0)`` (1 decoder call
        per row) for the state's rows ``rows``; detached, float32."""
        with torch.no_grad():
            x0 = state.decode(z0, rows)
        u = self.pixel_minimize(state, x0, rows)
        with torch.no_grad():
            return state.model.encode(u, estimate=True)

    def pixel_minimize(self, state: StepState, x0: torch.Tensor, rows: Sequence[int]) -> torch.Tensor:
        """The pixel-space solve alone: images ``(n, 3, H, W)`` on the [0, 1] scale for the state's
        rows ``rows``, starting at ``x0``; returns the solution on the [0, 1] scale (unclamped)."""
        y, op = self._measurement(state, rows)
        u0 = 2 * x0.detach().float() - 1

        def residual(u: torch.Tensor, sub: Sequence[int]) -> torch.Tensor:
            return 2 * (op(sub)((u + 1) / 2) - y[list(sub)])  # A₋₁(u) − y₋₁

        u, _ = self.minimize(u0, residual, state.params, self._tolerance(state))
        return (u + 1) / 2

    def latent_solve(self, state: StepState, z0: torch.Tensor, rows: Sequence[int]) -> torch.Tensor:
        """``ẑ0^c = w*``, the latent-space solve started at ``ẑ0`` for the state's rows ``rows``
        (one decoder call per row and convergence check); detached, float32."""
        y, op = self._measurement(state, rows)
        rows = list(rows)

        def residual(w: torch.Tensor, sub: Sequence[int]) -> torch.Tensor:
            images = state.decode(w, [rows[i] for i in sub])
            return 2 * (op(sub)(images) - y[list(sub)])  # A₋₁(D(w)) − y₋₁

        w, _ = self.minimize(z0.detach().float(), residual, state.params, self._tolerance(state))
        return w

    def _measurement(self, state: StepState, rows: Sequence[int]):
        rows = list(rows)
        y = state.y[rows].float()
        operator = state.operator

        def op(sub: Sequence[int]):
            if operator.batch_size == 1:
                return operator
            return operator.select([rows[i] for i in sub])

        return y, op

    def _tolerance(self, state: StepState) -> float:
        return (self.DISCREPANCY * state.operator.noise_std) ** 2

    @classmethod
    def minimize(
        cls, x0: torch.Tensor, residual: Residual, params: dict, tolerance: float
    ) -> tuple[torch.Tensor, list[int]]:
        """Per-sample Adam on ``Σ r_i(x_i)² + λ·Σ(x_i − x0_i)²`` with the discrepancy stop.

        Before each update the residual of every still-running row is evaluated; rows with
        ``mean(r_i²) ≤ tolerance`` stop for good (they are neither evaluated nor changed again).
        The running rows' losses are summed; each row's gradient and Adam state depend on that
        row only, so a row's result does not depend on its batch mates.

        Args:
            x0: ``(n, …)`` float initial point (also the proximal centre).
            residual: ``residual(x, sub)`` → ``A₋₁(·) − y`` for the rows ``sub`` of the batch
                (``x`` holds exactly those rows), differentiable in ``x``.
            params: uses ``iterations``, ``lr``, ``lam``.
            tolerance: stop threshold on the per-row mean squared residual.
        Returns:
            ``(x, updates)``: the detached solution and the Adam updates applied to each row.
        """
        iterations, lr, lam = int(params["iterations"]), float(params["lr"]), float(params["lam"])
        beta1, beta2 = cls.ADAM_BETAS
        x0 = x0.detach()
        x = x0.clone()
        m, v = torch.zeros_like(x), torch.zeros_like(x)
        running = list(range(x.shape[0]))
        updates = [0] * x.shape[0]
        for n in range(1, iterations + 1):
            index = torch.tensor(running, device=x.device)
            with torch.enable_grad():
                xs = x[index].requires_grad_(True)
                r = residual(xs, running)
                mse = r.detach().flatten(1).pow(2).mean(dim=1)
                keep = mse > tolerance
                keep_list = keep.tolist()
                if not any(keep_list):
                    break
                per_row = r.flatten(1).pow(2).sum(dim=1) + lam * (xs - x0[index]).flatten(1).pow(2).sum(dim=1)
                (grad,) = torch.autograd.grad((per_row * keep).sum(), xs)
            running = [i for i, k in zip(running, keep_list) if k]
            index, grad = index[keep], grad[keep]
            # torch.optim.Adam's update (no weight decay), on the running rows only.
            m_rows = m[index].mul_(beta1).add_(grad, alpha=1 - beta1)
            v_rows = v[index].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = (v_rows.sqrt() / (1 - beta2**n) ** 0.5).add_(cls.ADAM_EPS)
            m[index], v[index] = m_rows, v_rows
            x[index] = x[index].addcdiv_(m_rows, denom, value=-lr / (1 - beta1**n))
            for i in running:
                updates[i] += 1
        return x.detach(), updates

    @staticmethod
    def resampling_levels(state: StepState, rows: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ᾱ, ᾱ⁻)`` ``(n,)`` float64 for the state's rows ``rows``: ᾱ at the current level from the
        sampler's tables (``snr/(1 + snr)``), ᾱ⁻ one training timestep below (``t − 1``; 1 below 0).
        On a flow model the timestep is ``σ·T``, so ᾱ⁻ = ᾱ(σ − 1/T) on the flow path (1 at σ ≤ 1/T)."""
        snr = state.sampler.snr.double().cpu()[state.index[list(rows)].cpu()]
        a = snr / (1 + snr)
        below = state.t[list(rows)].double().cpu() - 1
        if state.model.path == "flow":
            a_prev = flow_alpha_bar((below / state.model.num_train_timesteps).clamp_min(0))
        else:
            a_bar = state.model.alphas_cumprod.detach().double().cpu()
            a_prev = torch.where(below >= 0, a_bar[below.clamp_min(0).long()], torch.ones_like(below))
        return a, a_prev

    def resample(
        self, state: StepState, z0c: torch.Tensor, z_prime: torch.Tensor, rows: Sequence[int]
    ) -> torch.Tensor:
        """Stochastic resampling of the rows ``rows`` (fresh noise from their own generators);
        the other rows keep ``z'``."""
        rows = list(rows)
        gamma = float(state.params["gamma"])
        a, a_prev = self.resampling_levels(state, rows)
        var = gamma * (1 - a_prev) / a * (1 - a / a_prev)
        denom = var + 1 - a
        shape = (-1, *([1] * (z_prime.dim() - 1)))

        def col(values: torch.Tensor) -> torch.Tensor:
            return values.to(device=z_prime.device, dtype=z_prime.dtype).view(shape)

        mean = col(var * a.sqrt() / denom) * z0c[rows] + col((1 - a) / denom) * z_prime[rows]
        xi = randn(mean.shape, take(state.generator, rows), device=mean.device, dtype=mean.dtype)
        out = z_prime.clone()
        out[rows] = mean + col((var * (1 - a) / denom).sqrt()) * xi
        return out


@hookimpl
def flash_wrap_register_solvers(register):
    register(ReSample)
