"""Reproducible degradations of named images, as ``flash-wrap eval`` and ``tune`` make them.

Every image gets its own seed from its file name and the run's seed (:func:`image_seed`); that
seed alone draws the image's severity level, its operator's random parameters (e.g. its motion-blur
kernel) and its measurement noise, each from its own stream (:func:`image_generators` at an
offset), so an image's degradation depends neither on the batch nor on the other images, their
order or the batch size (ALGORITHMS.md §7). Recomputing :func:`degrade` for the same names, images,
range and seed gives exactly what an ``eval --seed`` run measured.

    >>> task = get_task("gaussian-blur")
    >>> seeds, levels, operator, y = degrade(task, ["00000.png"], x, task.eval_range, seed=0)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

from .errors import InvalidInput
from .operators import Operator, Task

__all__ = ["LEVEL_STREAM", "NOISE_STREAM", "SEED_RULE", "degrade", "image_generators", "image_seed", "task_operator"]

#: stream offset (see :func:`image_generators`) of an image's severity level; the commands number
#: the solvers' streams after this one and :data:`NOISE_STREAM`
LEVEL_STREAM = 0
#: stream offset of an image's measurement noise
NOISE_STREAM = 1


#: The per-image seed rule of :func:`image_seed`, recorded in ``run.json``: a resume continues only a
#: run made with the same rule, so no run mixes seeds of two rules.
SEED_RULE = "sha256(seed NUL name), first 63 bits"


def image_seed(name: str, seed: int) -> int:
    """Per-image seed in [0, 2⁶³): the first 63 bits of SHA-256 over the run's ``seed`` and the file
    ``name`` (ALGORITHMS.md §7). Two names share a seed with probability 2⁻⁶³ (for a million names,
    any collision about 5·10⁻⁸), so images never share their level, noise or kernel by accident."""
    digest = hashlib.sha256(f"{int(seed)}\0{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def image_generators(seeds: Sequence[int], offset: int) -> list[torch.Generator]:
    """One CPU generator per image seed for the random stream ``offset`` (``*_STREAM``)."""
    return [torch.Generator().manual_seed((s + offset) % (2**63)) for s in seeds]


def task_operator(task: Task, names: list[str], levels: torch.Tensor, image_size: int, seed: int) -> Operator:
    """``task``'s operator at ``levels`` (``(B,)``) for the images ``names``, each with its own kernel seed."""
    seeds = torch.tensor([image_seed(n, seed) for n in names])
    return task.operator(levels, image_size, seed=seeds)


def degrade(task: Task, names: list[str], x: torch.Tensor, level_range: tuple[float, float],
            seed: int) -> tuple[list[int], torch.Tensor, Operator, torch.Tensor]:
    """The degradation ``eval`` applies to the clean images ``x`` (``(B, 3, H, W)`` in [0, 1])
    named ``names``: each image's level ``t`` uniform in ``level_range`` and its measurement noise
    come from its own file-name seed, so they do not depend on the batch or on the other images.

    Returns ``(seeds, levels, operator, y)``: the per-image seeds (for :func:`image_generators`
    at the ``*_STREAM`` offsets), ``(B,)`` levels, the operator and the measurements.
    """
    if x.ndim != 4 or x.shape[0] != len(names):
        raise InvalidInput(f"degrade needs one name per image of x (B, 3, H, W), got {len(names)} names for x of shape "
                         f"{tuple(x.shape)}")
    seeds = [image_seed(n, seed) for n in names]
    lo, hi = level_range
    levels = torch.tensor([lo + (hi - lo) * float(torch.rand(1, generator=g))
                           for g in image_generators(seeds, LEVEL_STREAM)])
    operator = task_operator(task, names, levels, x.shape[-1], seed)
    y = operator.measure(x, generator=image_generators(seeds, NOISE_STREAM))
    return seeds, levels, operator, y
