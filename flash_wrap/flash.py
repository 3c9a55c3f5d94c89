"""``Flash(solver)``: sample-adaptive start for any registered solver (Flash-Diffusion, Fabian et al.).

Flash changes *where* the solver starts and *from what*, nothing else:

    y ─► severity encoder ─► (ẑ, v) ─► s = argmin_k |SNR(g_k) − 1/v|
      ─► z_s = √(1 − c·v)·ẑ + √(c·v)·ε ─► solver steps s−1 … 0 ─► decoder ─► x̂ ∈ [0, 1]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from ._numbers import is_finite_number
from .budget import calibrate_budget, check_budget, check_snr_scale, scaled_variance
from .errors import InvalidInput, WrongType
from .operators import Operator
from .registry import get_registry
from .result import Reconstruction
from .rng import GeneratorArg
from .runner import StartPoint, StepCallback, check_callback, reconstruct_from
from .scheduling import Stream, stream
from .severity.range import out_of_range, warn_out_of_range
from .solver import Solver
from .start import correct_noise, start_index


class Flash:
    """Wrap a solver so each sample starts at the step its predicted severity calls for.

    Args:
        solver: any :class:`flash_wrap.Solver` (built-in or from a plugin).
        c: noise-correction constant; default: the solver's value for the operator's task.
        fixed_start: if given, every sample starts at this grid index instead of the adaptive
            one (the "FixedStart" ablation of ALGORITHMS.md §7; same encoder and correction),
            or, given one index per sample (a sequence or ``(B,)`` tensor), each at its own
            (used by the benchmark to impose a severity mix on untrained models).
        nfe_budget: mean NFE allowed per call: every sample's matched SNR is scaled by the smallest
            common ``λ >= 1`` that keeps the batch's mean start step within it, order by σ̂ kept
            (ALGORITHMS.md §3.1; :func:`flash_wrap.budget.calibrate_budget`), in ``(0, M]``.
        snr_scale: a fixed ``λ >= 1`` instead (e.g. calibrated once on a whole dataset).
    """

    def __init__(
        self, solver: Solver, *, c: float | None = None, fixed_start: int | Sequence[int] | torch.Tensor | None = None,
        nfe_budget: float | None = None, snr_scale: float | None = None,
    ) -> None:
        if isinstance(solver, type) and issubclass(solver, Solver):
            raise WrongType(f"Flash wraps a solver instance, got the class {solver.__name__}; "
                            f"build one first: Flash({solver.__name__}(model))")
        if not isinstance(solver, Solver):
            raise WrongType(f"Flash wraps a flash_wrap.Solver instance, got {type(solver).__name__}")
        if c is not None and (not is_finite_number(c) or c < 0):
            raise InvalidInput(f"Flash: c must be a finite number >= 0, got {c!r}")
        if isinstance(fixed_start, bool):
            raise WrongType("Flash: fixed_start must be a grid index (int) or one per sample, got a bool")
        if fixed_start is not None:
            starts = torch.as_tensor(fixed_start).reshape(-1).tolist()
            if not all(isinstance(k, int) and 0 <= k < solver.sampler.num_steps for k in starts):
                raise InvalidInput(f"fixed_start must be in [0, {solver.sampler.num_steps - 1}], got {fixed_start}")
        given = [name for name, value in (("fixed_start", fixed_start), ("nfe_budget", nfe_budget),
                                          ("snr_scale", snr_scale)) if value is not None]
        if len(given) > 1:
            raise InvalidInput(f"Flash: {' and '.join(given)} each set the start steps; give one of them")
        if nfe_budget is not None:
            check_budget(nfe_budget, solver.sampler.num_steps)
        if snr_scale is not None:
            check_snr_scale(snr_scale)
        self.solver = solver
        self.c = c
        self.fixed_start = fixed_start
        self.nfe_budget = nfe_budget
        self.snr_scale = snr_scale

    @property
    def name(self) -> str:
        return f"flash({self.solver.name})"

    def reconstruct(
        self,
        y: torch.Tensor,
        operator: Operator,
        generator: GeneratorArg = None,
        *,
        progress: bool | None = None,
        callback: StepCallback | None = None,
    ) -> Reconstruction:
        """Reconstruct ``y`` with an adaptive start per sample.

        Args:
            y: ``(B, C, h, w)`` measurements in [0, 1] image units (noisy, so not clamped).
            operator: the forward model that produced ``y``; its ``task`` picks the severity encoder.
            generator: one ``torch.Generator``, or one per sample (then a sample's result does not
                depend on the rest of its batch). It draws the correction noise, then the solver's.
            progress: tqdm bar (``None``: only on a terminal).
            callback: ``callback(state, output)`` after every step (see
                :data:`flash_wrap.runner.StepCallback`), before the process-wide observers.
        Returns:
            :class:`Reconstruction` with ``sigma_hat`` (predicted variance ``v``), ``start_step``
            (grid index ``s``; ``s`` denoiser calls follow), ``nfe`` and ``decoder_calls`` per sample,
            the SNR scale ``snr_scale`` used, and ``out_of_range`` (σ̂ outside the encoder's recorded range).
        """
        check_callback(callback)
        point = self.start_point(y, operator, generator)
        if point.out_of_range is not None:
            metadata = self.solver.model.severity_metadata.get(str(operator.task), {})
            warn_out_of_range(int(point.out_of_range.sum()), point.out_of_range.numel(), metadata,
                              f"{operator.task!r} severity encoder")
        result = reconstruct_from(
            self.solver, point.z, point.start, point.y, operator, generator, point.params, progress=progress,
            callback=callback, sigma_hat=point.sigma_hat, z_hat=point.z_hat,
        )
        result.snr_scale, result.out_of_range = point.snr_scale, point.out_of_range
        return result

    def start_point(
        self,
        y: torch.Tensor,
        operator: Operator,
        generator: GeneratorArg = None,
        *,
        positions: Sequence[int] | None = None,
    ) -> StartPoint:
        """Flash's start, the one rule :meth:`reconstruct` and :meth:`stream` run from: validate ``y``,
        encode it (``ẑ``, ``v``), pick each sample's start ``s = start_index(v)`` and correct the noise
        (``z_s = √(1 − c·v)·ẑ + √(c·v)·ε``, ``ε`` from ``generator``).

        Args:
            y, operator, generator: as for :meth:`reconstruct`.
            positions: where these samples sit in the caller's whole sequence, to pick their entries
                of a per-sample ``fixed_start`` (a stream passes ``[i]`` for sample ``i``); ``None``:
                ``y``'s rows are the sequence.
        """
        solver, model = self.solver, self.solver.model
        y = solver.prepare(y, operator, generator)
        if operator.task is None:
            raise InvalidInput(f"{type(operator).__name__} belongs to no task, so no severity encoder applies")
        encoder = model.severity_encoder(operator.task)
        params = solver.hyperparameters(operator.task)
        c = params["c"] if self.c is None else self.c
        sampler = solver.sampler

        with torch.no_grad():
            image = operator.to_image(y)
            z_hat, variance = encoder(image)
        metadata = model.severity_metadata.get(operator.task, {})
        _check_estimate(z_hat, variance, operator.task, metadata)
        flags = out_of_range(variance, metadata, f"{operator.task!r} severity encoder",
                             _levels(operator, image.shape[-1]), z_hat, operator.noise_std)
        scale = self.snr_scale or (1.0 if self.nfe_budget is None else calibrate_budget(variance, sampler.snr,
                                                                                        self.nfe_budget))
        matched = scaled_variance(variance, scale)  # start and correction both follow v/λ
        if self.fixed_start is None:
            start = start_index(matched, sampler.snr)
        elif isinstance(self.fixed_start, int):
            start = torch.full_like(variance, self.fixed_start, dtype=torch.long)
        else:
            start = torch.as_tensor(self.fixed_start, dtype=torch.long, device=variance.device).reshape(-1)
            if positions is not None:
                if max(positions) >= start.numel():
                    raise InvalidInput(f"fixed_start has {start.numel()} entries but sample {max(positions)} came; "
                                       "give one start per sample of the whole sequence")
                start = start[list(positions)]
            if start.shape != variance.shape:
                raise InvalidInput(f"fixed_start has {start.numel()} entries for a batch of {variance.numel()}")
        z_start = correct_noise(z_hat, matched, c, generator)
        return StartPoint(y, z_start, start, params, sigma_hat=variance, z_hat=z_hat, snr_scale=scale,
                          out_of_range=flags)

    def stream(
        self,
        samples: Iterable[tuple[torch.Tensor, Operator, torch.Generator]],
        *,
        slots: int = 16,
        window: int | None = None,
        progress: bool | None = None,
        callback: StepCallback | None = None,
    ) -> Stream:
        """Flash over a dataset by continuous batching: each sample is encoded when it is read and
        enters a free slot at its own start step (:meth:`start_point`); see
        :func:`flash_wrap.scheduling.stream` for ``samples``, ``slots``, ``window`` and what the
        returned :class:`~flash_wrap.scheduling.Stream` yields."""
        return stream(self.solver, samples, slots=slots, flash=self, window=window, progress=progress,
                      callback=callback)

    def __repr__(self) -> str:
        budget = "".join(f", {name}={value}" for name, value in (("nfe_budget", self.nfe_budget),
                                                                 ("snr_scale", self.snr_scale)) if value is not None)
        return f"Flash({self.solver!r}, c={self.c}, fixed_start={self.fixed_start}{budget})"


def _encoder_origin(metadata: dict) -> str:
    """Where a severity encoder came from, as its bundle metadata records it (newest step first)."""
    steps = []
    if "adopted_from" in metadata:
        steps.append(f"adopted from {metadata['adopted_from']}")
    imported = metadata.get("imported_from")
    if isinstance(imported, dict):
        steps.append(f"imported from {imported.get('file', '?')} ({imported.get('source', 'unknown source')})")
    elif "training" in metadata:
        steps.append("trained by flash-wrap train-severity")
    return ", ".join(steps) or "no origin recorded"


def _check_estimate(z_hat: torch.Tensor, variance: torch.Tensor, task: str, metadata: dict) -> None:
    """A non-finite σ̂ (``(B,)``) or ẑ would silently start a sample at the grid's first or last
    step: refuse it, naming the encoder, its task and where it came from."""
    bad = ~torch.isfinite(variance) | ~torch.isfinite(z_hat.flatten(1)).all(dim=1)
    if bool(bad.any()):
        rows = bad.nonzero().flatten().tolist()
        values = ", ".join(f"{float(variance[i]):g}" for i in rows[:4])
        raise InvalidInput(f"the severity encoder for task {task!r} ({_encoder_origin(metadata)}) gave a non-finite "
                         f"estimate for samples {rows} (σ̂ {values}{', …' if len(rows) > 4 else ''}); no start step can "
                         "follow from it: check that encoder's weights and its input, or retrain it with "
                         "flash-wrap train-severity")


def _levels(operator: Operator, image_size: int) -> torch.Tensor | None:
    """The degradation level of each sample of ``operator`` by its registered task's inverse map
    (:attr:`Task.level_of <flash_wrap.operators.Task.level_of>`), ``None`` when unknown."""
    record = get_registry().tasks.get(str(operator.task))
    if record is None or record.task.level_of is None:
        return None
    return record.task.level_of(operator, image_size)
