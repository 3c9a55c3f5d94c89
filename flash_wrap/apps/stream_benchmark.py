"""``flash-wrap benchmark --images N``: the slot scheduler against fixed batches on a mixed-severity set.

``N`` Gaussian-blur measurements with levels spread evenly over the task's range and shuffled (the
images of ``--data``, default the shipped faces, repeated with a different level and seed each) are
reconstructed four ways with ``slots`` rows per batched denoiser call:

- ``bare``: the bare solver in fixed batches of ``slots`` (every sample runs the whole grid), on
  the first ``bare_images`` samples only if asked (its cost per image does not depend on severity);
- ``flash_fixed``: ``Flash(solver)`` in fixed batches of ``slots`` in input order (each batch runs
  from its largest start step down to 0, its rows idle until their own start);
- ``flash_buckets``: every sample encoded first, then fixed batches of similar start steps
  (:func:`~flash_wrap.scheduling.bucket_batches`); the encoding is part of the measured time;
- ``flash_stream``: continuous batching (:meth:`Flash.stream <flash_wrap.flash.Flash.stream>`), fed
  by windows of ``window`` samples sorted by start step (``None``: in input order).

Each mode reports images per second, mean NFE, peak memory (:class:`~.benchmark.PeakMemory`) and
**slot use** = Σ per-sample NFE / (slots × batched denoiser calls) (:class:`~flash_wrap.scheduling.SlotStats`):
the share of the batched calls' rows that did work, a hardware-independent figure. On an
accelerator where a call costs about the same for any number of busy rows, the time of a Flash
mode is proportional to its batched calls, i.e. to Σ NFE / (slots × slot use).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import InvalidInput
from ..flash import Flash
from ..images import list_images, load_image
from ..operators import Operator
from ..registry import get_task
from ..rng import generators
from ..scheduling import SlotStats, bucket_batches
from ..solver import Solver
from .peak_memory import PeakMemory

#: the modes, in the order they run and print
MODES = ("bare", "flash_fixed", "flash_buckets", "flash_stream")
#: images used when no ``--data`` folder is given
FACES = Path(__file__).resolve().parent.parent / "assets" / "faces"


@dataclass(frozen=True)
class MixedSet:
    """``images`` measurements of mixed severity: ``y`` ``(N, C, h, w)``, ``operator`` of batch ``N``,
    ``levels`` ``(N,)`` in the task's range, ``seeds`` one per sample (its solver noise)."""

    y: torch.Tensor
    operator: Operator
    levels: torch.Tensor
    seeds: list[int]


def mixed_set(task_name: str, image_size: int, device: torch.device, images: int, seed: int,
              data: str | Path | None = None) -> MixedSet:
    """The benchmark's set: the images of ``data`` (default: the shipped faces) cycled to ``images``
    samples, levels ``linspace`` over the task's range in an order shuffled by ``seed``."""
    task = get_task(task_name)
    files = list_images(FACES if data is None else data)
    if not files:
        raise InvalidInput(f"--data {data}: no images (png/jpg/jpeg/bmp/webp) in it; give a folder of images")
    g = torch.Generator().manual_seed(seed)
    lo, hi = task.eval_range
    levels = torch.linspace(lo, hi, images)[torch.randperm(images, generator=g)]
    x = torch.stack([load_image(files[i % len(files)], image_size) for i in range(images)]).to(device)
    operator = task.operator(levels, image_size, seed=torch.arange(images) + seed)
    y = operator.measure(x, generator=g)
    return MixedSet(y, operator, levels, [seed + 1 + i for i in range(images)])


def run_modes(solver: Solver, data: MixedSet, slots: int, device: torch.device,
              starts: list[int] | None = None, *, window: int | None = None,
              bare_images: int | None = None) -> dict[str, dict]:
    """Run :data:`MODES` on ``data`` and return ``{mode: figures}`` (see the module docstring).

    ``starts``: imposed Flash start steps, one per sample (untrained encoders), else adaptive.
    ``window``: the streamed mode's start-step window. ``bare_images``: the bare mode runs on the
    first this many samples (default all); each mode's figures say how many images it ran."""
    n = data.y.shape[0]
    if bare_images is not None and not 1 <= bare_images <= n:
        raise InvalidInput(f"bare_images must lie in [1, {n}] (the set's size), got {bare_images}")

    def flash_for(rows: list[int] | None = None) -> Flash:
        if starts is None:
            return Flash(solver)
        return Flash(solver, fixed_start=starts if rows is None else [starts[r] for r in rows])

    def batches(order: list[int]) -> list[list[int]]:
        return [order[i : i + slots] for i in range(0, len(order), slots)]

    def fixed(run: Callable[[list[int]], Callable], rows_of: Callable[[], list[list[int]]]) -> tuple[list[int], SlotStats]:
        taken = rows_of()
        # a set smaller than the slots (e.g. --bare-images) runs in one batch of its own size
        stats, nfe = SlotStats(min(slots, max(len(rows) for rows in taken))), [0] * n
        for rows in taken:
            out = run(rows)(data.y[rows], data.operator.select(rows), generator=generators([data.seeds[r] for r in rows]),
                            progress=False, callback=stats)
            for r, k in zip(rows, out.nfe.tolist()):
                nfe[r] = int(k)
        return [nfe[r] for rows in taken for r in rows], stats

    def buckets() -> list[list[int]]:
        if starts is not None:
            return bucket_batches(starts, slots)
        found = []
        for rows in batches(list(range(n))):  # encoded a batch at a time: memory stays that of one batch
            found += flash_for().start_point(data.y[rows], data.operator.select(rows),
                                             generators([data.seeds[r] for r in rows])).start.tolist()
        return bucket_batches(found, slots)

    def streamed() -> tuple[list[int], SlotStats]:
        samples: Iterator = ((data.y[i : i + 1], data.operator.select([i]), torch.Generator().manual_seed(data.seeds[i]))
                             for i in range(n))
        stream = flash_for().stream(samples, slots=slots, window=window, progress=False)
        nfe = [0] * n
        for result in stream:
            nfe[result.index] = int(result.reconstruction.nfe[0])
        return nfe, stream.stats

    runs: dict[str, Callable[[], tuple[list[int], SlotStats]]] = {
        "bare": lambda: fixed(lambda rows: solver.reconstruct, lambda: batches(list(range(bare_images or n)))),
        "flash_fixed": lambda: fixed(lambda rows: flash_for(rows).reconstruct, lambda: batches(list(range(n)))),
        "flash_buckets": lambda: fixed(lambda rows: flash_for(rows).reconstruct, buckets),
        "flash_stream": streamed,
    }
    figures = {}
    for mode in MODES:
        with PeakMemory(device) as memory:
            begin = time.perf_counter()
            nfe, stats = runs[mode]()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - begin
        figures[mode] = {
            "images": len(nfe), "images_per_second": len(nfe) / seconds, "seconds": seconds,
            "nfe_mean": sum(nfe) / len(nfe),
            "peak_memory_mb": memory.peak / 2**20, "slot_use": stats.slot_use,
            "denoiser_batches": stats.denoiser_batches, "slot_steps": stats.slot_steps,
        }
    return figures


def markdown_modes(mixed: dict) -> str:
    """The four modes side by side as a Markdown table."""
    names = {"bare": "bare solver, fixed batches", "flash_fixed": "Flash, fixed batches",
             "flash_buckets": "Flash, start-step buckets",
             "flash_stream": f"Flash, streamed (continuous batching, window {mixed.get('window')})"}
    lines = [f"{mixed['images']} mixed-severity images ({mixed['task']} levels {mixed['levels'][0]:g}–"
             f"{mixed['levels'][1]:g}), {mixed['slots']} slots\n",
             "| mode | images | images/s | mean NFE | batched denoiser calls | slot use | peak MB |",
             "|---|---|---|---|---|---|---|"]
    for mode in MODES:
        f = mixed["modes"][mode]
        lines.append(f"| {names[mode]} | {f.get('images', mixed['images'])} | {f['images_per_second']:.3f} "
                     f"| {f['nfe_mean']:.1f} | {f['denoiser_batches']} "
                     f"| {f['slot_use']:.3f} | {f['peak_memory_mb']:.0f} |")
    return "\n".join(lines)
