"""The slot scheduler: continuous batching of adaptive starts across a dataset.

What it is for: on an accelerator one denoiser call costs about the same whether 3 or 16 rows of
its batch are busy. A fixed batch runs from its largest start step down to 0, so a batch whose
starts spread from 40 to 250 pays for 250 steps of all its rows while its samples need far
fewer; the rows of samples that have not started (or are done) idle. A stream keeps a fixed
number of *slots* busy instead: each sample enters a free slot at its own start step (``Flash``:
after its severity encoding; a bare solver: at the top of the grid), every iteration advances
every busy slot by one grid index (each at its own index, in one batched step), and a sample
leaves when it has stepped index 0: it is decoded and handed back at once while the next sample
takes its slot. The idle share that remains is measured by :class:`SlotStats` (slot use).

A sample's result depends only on its own measurement, operator and generator, never on its
slot neighbours: the same per-sample generators give the same images as the fixed-batch path
(to float rounding; exactly in float64 up to ~1e-14), in a different order.

Start-step buckets (``window``) read a window of samples, encode them all, and feed them to the
slots by start step, largest first; :func:`bucket_batches` cuts encoded samples into fixed
batches of similar start steps for code that runs fixed batches.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields, replace
from itertools import islice
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from .errors import InvalidInput, WrongType
from .operators import Operator, join_operators
from .result import Reconstruction
from .runner import StartPoint, StepCallback, advance, check_callback, observers_for, package
from .severity.range import warn_out_of_range
from .state import StepState

if TYPE_CHECKING:
    from .flash import Flash
    from .solver import Solver

#: One sample of a stream: ``(y, operator, generator)``, ``y`` ``(1, C, h, w)`` or ``(C, h, w)``.
Sample = tuple[torch.Tensor, Operator, torch.Generator]


@dataclass(frozen=True)
class StreamResult:
    """One finished sample of a stream.

    Attributes:
        index: the sample's position in the input iterable (0-based).
        reconstruction: its batch-1 :class:`Reconstruction` (``images`` ``(1, 3, H, W)`` in [0, 1]).
    """

    index: int
    reconstruction: Reconstruction


@dataclass
class SlotStats:
    """Slot-use bookkeeping: how much of each batched denoiser call did work.

    ``slot use = slot_steps / (slots × denoiser_batches)`` = Σ per-sample NFE over the slots the
    batched calls paid for; 1.0 means no slot ever idled. A hardware-independent figure: on an
    accelerator where a call costs the same for any number of busy rows, it is the share of the
    compute that went into samples. A stream keeps one (:attr:`Stream.stats`); for a fixed-batch
    run pass one as the ``callback`` of ``reconstruct`` with ``slots`` = the batch size.

    Attributes:
        slots: rows each batched call could hold (``>= 1``).
        denoiser_batches: batched denoiser calls made (one per step for a contract-abiding solver).
        slot_steps: Σ per-sample NFE, i.e. busy rows summed over those calls.
    """

    slots: int
    denoiser_batches: int = 0
    slot_steps: int = 0

    def __call__(self, state: StepState, output: torch.Tensor) -> None:
        """Book one step (a :data:`~flash_wrap.runner.StepCallback`)."""
        self.denoiser_batches += state.denoiser_calls
        self.slot_steps += state.denoiser_calls * int(state.z.shape[0])

    @property
    def slot_use(self) -> float:
        """``slot_steps / (slots × denoiser_batches)`` in [0, 1]; NaN before the first call."""
        return self.slot_steps / (self.slots * self.denoiser_batches) if self.denoiser_batches else float("nan")


def start_order(starts: Sequence[int] | torch.Tensor) -> list[int]:
    """Positions of ``starts`` sorted by start step, largest first (ties keep their order)."""
    values = [int(s) for s in (starts.tolist() if isinstance(starts, torch.Tensor) else starts)]
    return sorted(range(len(values)), key=lambda i: -values[i])


def bucket_batches(starts: Sequence[int] | torch.Tensor, batch_size: int) -> list[list[int]]:
    """Cut encoded samples into fixed batches of similar start steps (start-step buckets).

    A fixed batch costs its largest start in steps of all its rows, so batching samples of
    similar starts leaves fewer rows idle. Run each returned batch as one ``reconstruct`` call.

    Args:
        starts: ``(N,)`` start steps of the samples (e.g. ``Flash.start_point(...).start``).
        batch_size: rows per batch, ``>= 1``; the last batch may be shorter.
    Returns:
        Lists of positions into ``starts``, each at most ``batch_size`` long, by descending start.
    """
    _check_count(batch_size, "batch_size")
    order = start_order(starts)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def stream(
    solver: Solver,
    samples: Iterable[Sample],
    *,
    slots: int = 16,
    flash: Flash | None = None,
    window: int | None = None,
    progress: bool | None = None,
    callback: StepCallback | None = None,
) -> Stream:
    """Reconstruct ``samples`` by continuous batching over ``slots`` slots (see the module docstring).

    Args:
        solver: the solver every sample runs (``flash.solver`` when ``flash`` is given).
        samples: an iterable of ``(y, operator, generator)``, read lazily: ``y`` ``(1, C, h, w)``
            (or ``(C, h, w)``) in [0, 1] image units, ``operator`` with batch size 1, and one
            ``torch.Generator`` per sample (its results depend on it alone). All samples share
            one measurement size, one task and one ``noise_std``.
        slots: samples stepped together, ``>= 1``.
        flash: run each sample through ``flash``'s adaptive start (``None``: the bare solver, every
            sample from its own pure noise at the top of the grid).
        window: start-step buckets: read ``window`` samples, encode them all, and feed them to the
            slots by start step, largest first (``None``: in input order as they come).
        progress: tqdm bar of finished samples (``None``: only on a terminal).
        callback: ``callback(state, output)`` after every batched step, before the process-wide
            observers; ``state.rows`` holds the busy samples' input positions and ``state.index``
            their own grid indices.
    A bare solver streams through this function; ``Flash`` also as ``flash.stream(samples, ...)``.

    Returns:
        A :class:`Stream`: iterate it for :class:`StreamResult` in completion order. At most
        ``slots`` samples (plus ``window``) are held; a sample with start step 0 is decoded
        without any step.
    Raises:
        InvalidInput, WrongType: now for ``slots``, ``window``, ``callback``, ``flash``; while
            iterating, before a sample is encoded, for that sample (naming its index).
    """
    _check_count(slots, "slots")
    if window is not None:
        _check_count(window, "window")
    check_callback(callback)
    if flash is not None and getattr(flash, "solver", None) is not solver:
        raise InvalidInput("stream: flash must wrap the solver the stream runs (flash.solver is solver); "
                           "call flash.stream(samples) instead")
    if flash is not None and getattr(flash, "nfe_budget", None) is not None and flash.snr_scale is None:
        raise InvalidInput("stream: an NFE budget is calibrated on a set of encoded samples, and a stream encodes one "
                           "sample at a time; calibrate λ first (flash_wrap.budget.calibrate_budget on encoded "
                           "samples) and stream with Flash(solver, snr_scale=λ)")
    try:
        items = iter(samples)
    except TypeError:
        raise WrongType(f"samples must be an iterable of (y, operator, generator), got {type(samples).__name__}") from None
    return Stream(solver, flash, items, slots, window, progress, observers_for(callback))


@dataclass
class _Slot:
    """A sample in the stream: its inputs, where it stands and what it has cost."""

    index: int
    operator: Operator
    generator: torch.Generator
    point: StartPoint
    z: torch.Tensor  # (1, C, h, w) at grid level `left`
    left: int  # steps still to run: the next one is at grid index left − 1
    nfe: int = 0
    decodes: int = 0


@dataclass
class _Batch:
    """The joined inputs of the busy slots, rebuilt when a sample enters or leaves."""

    y: torch.Tensor
    operator: Operator
    generators: list[torch.Generator]
    rows: torch.Tensor
    params: dict[str, Any]


class Stream:
    """An iterator of :class:`StreamResult` in completion order (built by :func:`stream`, which
    checks the arguments; the samples are read as it is iterated).

    Attributes:
        stats: :class:`SlotStats` of the batched steps so far (``slots`` = the stream's slots).
    """

    def __init__(
        self,
        solver: Solver,
        flash: Flash | None,
        items: Iterator[Any],
        slots: int,
        window: int | None,
        progress: bool | None,
        observers: list[StepCallback],
    ) -> None:
        self.solver, self.flash, self.slots, self.window = solver, flash, slots, window
        self.stats = SlotStats(slots)
        self._observers = observers
        self._first: tuple[int, tuple[int, ...], str | None, float] | None = None
        self._held: dict[int, int] = {}  # id(generator) -> sample index, for samples read and not yet handed back
        self._flagged = [0, 0]  # samples out of their encoder's range, samples read: one warning at the end
        self._results = self._run(items, progress)

    def __iter__(self) -> Iterator[StreamResult]:
        return self

    def __next__(self) -> StreamResult:
        return next(self._results)

    # -- reading samples -------------------------------------------------------------------------
    def _feed(self, items: Iterator[Any]) -> Iterator[_Slot]:
        """The samples in the order they enter slots: as read, or by window sorted by start."""
        numbered = enumerate(items)
        if self.window is None:
            for i, item in numbered:
                yield self._read(i, item)
            return
        while chunk := [self._read(i, item) for i, item in islice(numbered, self.window)]:
            yield from (chunk[j] for j in start_order([slot.left for slot in chunk]))

    def _read(self, i: int, item: Any) -> _Slot:
        """Check sample ``i`` against the stream's rules and its first sample, then find its start."""
        if not isinstance(item, (tuple, list)) or len(item) != 3:
            raise WrongType(f"stream sample {i}: expected a (y, operator, generator) tuple, got {type(item).__name__}")
        y, operator, generator = item
        if isinstance(generator, (list, tuple)):
            raise WrongType(f"stream sample {i}: its generator is a {type(generator).__name__}; a stream takes one "
                            "torch.Generator per sample, in that sample's tuple (e.g. torch.Generator().manual_seed(seed))")
        if not isinstance(generator, torch.Generator):
            raise WrongType(f"stream sample {i}: expected a torch.Generator of its own, got {type(generator).__name__} "
                            "(a sample's result must depend on its own seed)")
        if id(generator) in self._held:
            raise InvalidInput(f"stream sample {i} uses the generator object of sample {self._held[id(generator)]}, "
                               "which is still in the stream: each sample needs its own generator")
        if not isinstance(operator, Operator):
            raise WrongType(f"stream sample {i}: operator must be a flash_wrap.operators.Operator, "
                            f"got {type(operator).__name__}")
        if operator.batch_size != 1:
            raise InvalidInput(f"stream sample {i}: its operator has batch size {operator.batch_size}; a stream sample "
                               "is one image with its own operator (operator.select([j]) gives row j alone)")
        if isinstance(y, torch.Tensor) and y.dim() == 3:
            y = y.unsqueeze(0)
        if isinstance(y, torch.Tensor) and y.dim() == 4 and y.shape[0] != 1:
            raise InvalidInput(f"stream sample {i}: y holds {y.shape[0]} measurements, a stream sample one "
                               "((1, C, h, w) or (C, h, w)); pass a batch's rows as separate samples")
        self._check_like_first(i, y, operator)
        if self.flash is not None:
            point = self.flash.start_point(y, operator, [generator], positions=[i])
            self._flagged[1] += 1
            if point.out_of_range is not None and bool(point.out_of_range.any()):
                self._flagged[0] += 1
        else:
            point = self.solver.start_point(y, operator, [generator])
        self._held[id(generator)] = i
        return _Slot(i, operator, generator, point, point.z, int(point.start[0]))

    def _check_like_first(self, i: int, y: Any, operator: Operator) -> None:
        """Every sample is stepped in one batch with the others: one size, task and noise level."""
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else ()
        if self._first is None:
            self._first = (i, shape, operator.task, operator.noise_std)
            return
        first, first_shape, task, noise_std = self._first
        if shape != first_shape:
            raise InvalidInput(f"stream sample {i}: y has shape {shape} but sample {first}'s is {first_shape}; the "
                               "samples of a stream are stepped as one batch, so they need one measurement size "
                               "(stream each size separately)")
        if operator.task != task:
            raise InvalidInput(f"stream sample {i}: its operator belongs to task {operator.task!r} but sample {first}'s "
                               f"to {task!r}; stream each task separately")
        if operator.noise_std != noise_std:
            raise InvalidInput(f"stream sample {i}: its operator has noise_std {operator.noise_std:g} but sample "
                               f"{first}'s {noise_std:g}; stream each noise level separately")

    # -- the loop --------------------------------------------------------------------------------
    def _run(self, items: Iterator[Any], progress: bool | None) -> Iterator[StreamResult]:
        feed = self._feed(items)
        busy: list[_Slot] = []
        batch: _Batch | None = None
        bar = tqdm(desc=f"{self.solver.name} stream", unit="sample", disable=None if progress is None else not progress,
                   leave=False)
        try:
            while True:
                while len(busy) < self.slots and (slot := next(feed, None)) is not None:
                    if slot.left == 0:
                        yield from self._finish([slot], bar)
                    else:
                        busy.append(slot)
                        batch = None
                if not busy:
                    self._warn_out_of_range()
                    return
                if batch is None:
                    batch = _join(busy)
                self._advance(busy, batch)
                if any(slot.left == 0 for slot in busy):
                    done = [slot for slot in busy if slot.left == 0]
                    busy = [slot for slot in busy if slot.left > 0]
                    batch = None
                    yield from self._finish(done, bar)
        finally:
            bar.close()

    def _warn_out_of_range(self) -> None:
        """One warning line for the whole stream's samples out of their encoder's range."""
        flagged, read = self._flagged
        if flagged and self._first is not None:
            task = str(self._first[2])
            warn_out_of_range(flagged, read, self.solver.model.severity_metadata.get(task, {}),
                              f"{task!r} severity encoder", stacklevel=4)

    def _advance(self, busy: list[_Slot], batch: _Batch) -> None:
        """One batched step: every busy slot from its grid index ``left − 1`` one level down."""
        solver, sampler = self.solver, self.solver.sampler
        ks = [slot.left - 1 for slot in busy]
        index = torch.tensor(ks, dtype=torch.long, device=busy[0].z.device)
        state = StepState(
            z=torch.cat([slot.z for slot in busy]), index=index, t=sampler.timesteps[index], rows=batch.rows,
            y=batch.y, operator=batch.operator, model=solver.model, sampler=sampler, params=batch.params,
            generator=batch.generators,
        )
        output = advance(solver, state, max(ks), self._observers)
        self.stats(state, output)
        for i, slot in enumerate(busy):
            slot.z = output[i : i + 1]
            slot.left -= 1
            slot.nfe += state.denoiser_calls
            slot.decodes += state.decoder_calls[i]

    def _finish(self, done: list[_Slot], bar: Any) -> Iterator[StreamResult]:
        """Decode the finished samples in one call and hand each back as a batch-1 result."""
        points = [slot.point for slot in done]
        device = done[0].z.device

        def joined(name: str) -> torch.Tensor | None:
            values = [getattr(point, name) for point in points]
            return None if values[0] is None else torch.cat(values)

        result = package(
            self.solver, torch.cat([slot.z for slot in done]), torch.tensor([slot.nfe for slot in done], device=device),
            torch.cat([point.start for point in points]), torch.tensor([slot.decodes for slot in done], device=device),
            sigma_hat=joined("sigma_hat"), z_hat=joined("z_hat"),
        )
        result.snr_scale, result.out_of_range = points[0].snr_scale, joined("out_of_range")
        for row, slot in enumerate(done):
            del self._held[id(slot.generator)]
            bar.update(1)
            yield StreamResult(slot.index, _row(result, row))


def _join(busy: list[_Slot]) -> _Batch:
    return _Batch(
        y=torch.cat([slot.point.y for slot in busy]),
        operator=join_operators([slot.operator for slot in busy]),
        generators=[slot.generator for slot in busy],
        rows=torch.tensor([slot.index for slot in busy], dtype=torch.long, device=busy[0].z.device),
        params=busy[0].point.params,
    )


def _row(result: Reconstruction, i: int) -> Reconstruction:
    """Row ``i`` of a batched result as a batch-1 one (every per-sample tensor field sliced)."""
    rows = {f.name: getattr(result, f.name)[i : i + 1] for f in fields(result)
            if isinstance(getattr(result, f.name), torch.Tensor)}
    return replace(result, **rows)


def _check_count(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise WrongType(f"{name} must be a whole number >= 1, got {type(value).__name__} {value!r}")
    if value < 1:
        raise InvalidInput(f"{name} must be >= 1, got {value}")
