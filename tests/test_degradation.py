"""Reproducible per-image degradations (:mod:`flash_wrap.degradation`): an image's level, kernel
and noise depend on its name and the run seed only."""

from __future__ import annotations

import pytest
import torch

from flash_wrap import get_task
from flash_wrap.degradation import degrade, image_generators, image_seed
from flash_wrap.testing import smooth_images


@pytest.mark.parametrize("task_name", ["gaussian-blur", "motion-blur"])
def test_an_image_is_degraded_the_same_alone_or_in_a_batch(task_name):
    task = get_task(task_name)
    x = smooth_images(3, 32, seed=1)
    names = ["00001.png", "cat.png", "00002.png"]
    seeds, levels, _, y = degrade(task, names, x, task.eval_range, seed=5)
    alone_seeds, alone_levels, _, alone_y = degrade(task, names[1:2], x[1:2], task.eval_range, seed=5)
    assert alone_seeds == seeds[1:2] and torch.equal(alone_levels, levels[1:2])
    assert torch.equal(alone_y, y[1:2])
    lo, hi = task.eval_range
    assert bool(((levels >= lo) & (levels <= hi)).all()) and len(set(levels.tolist())) == 3


def test_the_run_seed_changes_every_draw():
    task = get_task("gaussian-blur")
    x = smooth_images(2, 32)
    _, levels_0, _, y_0 = degrade(task, ["a.png", "b.png"], x, task.eval_range, seed=0)
    _, levels_1, _, y_1 = degrade(task, ["a.png", "b.png"], x, task.eval_range, seed=1)
    assert not torch.equal(levels_0, levels_1) and not torch.equal(y_0, y_1)


def test_streams_of_one_seed_differ_and_repeat():
    seed = image_seed("00007.png", 0)
    first, second = (torch.rand(4, generator=g) for g in image_generators([seed, seed], 0))
    assert torch.equal(first, second)
    other = torch.rand(4, generator=image_generators([seed], 1)[0])
    assert not torch.equal(first, other)


def test_one_name_per_image_is_required():
    task = get_task("gaussian-blur")
    with pytest.raises(ValueError, match="one name per image"):
        degrade(task, ["a.png"], smooth_images(2, 32), task.eval_range, seed=0)
