"""Randomness through explicit generators only: one ``torch.Generator`` or one per sample.

Public for solver plugins: draw every extra random number a step needs with :func:`randn` from
``state.generator`` (or :func:`take` of it for a subset of rows), never with a bare
``torch.randn``, so that a sample's result depends on its own generator only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import torch
from diffusers.utils.torch_utils import randn_tensor

from .errors import InvalidInput

#: ``None``, one generator for the whole batch, or a list with one generator per sample.
GeneratorArg = Union[torch.Generator, Sequence[torch.Generator], None]


def randn(
    shape: Sequence[int],
    generator: GeneratorArg,
    *,
    device: torch.device | str,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Standard normal noise of ``shape``; with a list, row ``i`` comes from ``generator[i]`` alone.

    A per-sample list makes each row independent of the others in the batch, which is what keeps
    a sample's reconstruction identical whether it runs alone or batched.
    """
    gen = generator if generator is None or isinstance(generator, torch.Generator) else list(generator)
    if isinstance(gen, list) and len(gen) != shape[0]:
        raise InvalidInput(f"got {len(gen)} generators for a batch of {shape[0]}")
    return randn_tensor(tuple(shape), generator=gen, device=torch.device(device), dtype=dtype)


def take(generator: GeneratorArg, index: Sequence[int] | slice) -> GeneratorArg:
    """The generators of the selected rows (a single generator is shared and returned as is)."""
    if isinstance(generator, (list, tuple)):
        rows = list(generator)
        return rows[index] if isinstance(index, slice) else [rows[i] for i in index]
    return generator


def generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """One CPU ``torch.Generator`` per seed: the per-sample form every entry point accepts."""
    return [torch.Generator().manual_seed(int(seed)) for seed in seeds]
