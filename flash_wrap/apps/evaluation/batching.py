"""How ``flash-wrap eval`` batches Flash over one unit of images (``--batching``).

- ``stream`` (the default): continuous batching over ``slots`` slots (:meth:`Flash.stream
  <flash_wrap.flash.Flash.stream>`); each image enters a free slot at its own start step and
  leaves at step 0, so the batched denoiser calls stay full across the unit.
- ``buckets``: every image of the unit is encoded first, then fixed batches of ``slots`` images of
  similar start steps run (:func:`~flash_wrap.scheduling.bucket_batches`).
- ``fixed``: fixed batches of ``slots`` images in file order, each from its largest start step down.

Every image's randomness is its own generator, so the three give the same per-image results (to
float rounding); the result comes back in the unit's order whatever the order of completion.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace
from typing import Any

import torch

from ...flash import Flash
from ...operators import Operator
from ...result import Reconstruction
from ...scheduling import bucket_batches
from .config import Batching

#: one fixed-batch call: ``(y, operator, generators) -> Reconstruction``
BatchRun = Callable[[torch.Tensor, Operator, list[torch.Generator]], Reconstruction]


def join_rows(parts: list[Reconstruction]) -> Reconstruction:
    """Reconstructions of consecutive rows as one (every per-sample tensor field concatenated)."""
    if len(parts) == 1:
        return parts[0]
    joined: dict[str, Any] = {f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in fields(parts[0])
              if isinstance(getattr(parts[0], f.name), torch.Tensor)}
    return replace(parts[0], **joined)


def in_batches(run: BatchRun, y: torch.Tensor, operator: Operator, gens: list[torch.Generator],
               size: int, order: list[list[int]] | None = None) -> Reconstruction:
    """``run`` over batches of at most ``size`` rows (``order``: the batches' row lists, default
    consecutive rows), joined back in row order."""
    n = y.shape[0]
    order = order or [list(range(i, min(i + size, n))) for i in range(0, n, size)]
    joined = join_rows([run(y[rows], operator.select(rows), [gens[r] for r in rows]) for rows in order])
    rows = [r for batch in order for r in batch]
    back = torch.argsort(torch.tensor(rows))
    return _take(joined, back)


def run_flash(flash: Flash, y: torch.Tensor, operator: Operator, gens: list[torch.Generator], *,
              batching: Batching, slots: int) -> Reconstruction:
    """``flash`` on the unit's ``y`` ``(N, C, h, w)`` (one generator per row) by ``batching`` with
    ``slots`` rows per batched call; the result's rows are ``y``'s."""

    def fixed(y_: torch.Tensor, op: Operator, g: list[torch.Generator]) -> Reconstruction:
        return flash.reconstruct(y_, op, generator=g, progress=False)

    if batching == "fixed":
        return in_batches(fixed, y, operator, gens, slots)
    if batching == "buckets":
        # the start steps come from generator copies, so each image's own stream is untouched for its run
        starts = flash.start_point(y, operator, [_copy(g) for g in gens]).start
        return in_batches(fixed, y, operator, gens, slots, bucket_batches(starts, slots))
    n = y.shape[0]
    results: list[Reconstruction | None] = [None] * n
    for done in flash.stream(((y[i : i + 1], operator.select([i]), gens[i]) for i in range(n)), slots=slots,
                             progress=False):
        results[done.index] = done.reconstruction
    return join_rows([r for r in results if r is not None])


def _copy(generator: torch.Generator) -> torch.Generator:
    copy = torch.Generator(device=generator.device)
    copy.set_state(generator.get_state())
    return copy


def _take(result: Reconstruction, index: torch.Tensor) -> Reconstruction:
    rows = {f.name: getattr(result, f.name)[index.to(getattr(result, f.name).device)] for f in fields(result)
            if isinstance(getattr(result, f.name), torch.Tensor)}
    return replace(result, **rows)
