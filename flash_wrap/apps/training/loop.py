"""The accelerate step loop shared by ``train-prior`` and ``train-severity``.

Both trainings are "for each step: a loss from the step's batch, backward, optimizer step, a
smoothed loss on the progress bar, and every ``checkpoint_every`` steps (and at the end) a
checkpoint". What differs (the loss, a learning-rate warm-up, EMA weights, validation, what a
checkpoint holds) comes in as callbacks, so the skeleton exists once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

#: ``loss_fn(step, batch) -> (loss, postfix)``: the scalar to minimise and extra progress-bar fields.
LossFn = Callable[[int, Any], tuple[torch.Tensor, dict[str, str]]]


@dataclass
class StepLoop:
    """How one training run steps: its optimizer, which steps remain, and when to checkpoint.

    Attributes:
        accelerator: the run's ``Accelerator`` (backward, process ranks, barriers).
        optimizer: stepped once per step after ``accelerator.backward``.
        first: the first step to run (``> 0`` on resume); total: the run's number of steps.
        checkpoint_every: checkpoint after every this many steps, and after the last one.
        desc: progress-bar label; smoothing: weight of the old value in the running loss.
        progress: tqdm bar (``None``: only on a terminal); shown on the main process only.
    """

    accelerator: Accelerator
    optimizer: torch.optim.Optimizer
    first: int
    total: int
    checkpoint_every: int
    desc: str
    smoothing: float = 0.98
    progress: bool | None = None

    def run(
        self,
        batches: Iterable[Any],
        loss_fn: LossFn,
        on_checkpoint: Callable[[int, float], None],
        *,
        before_step: Callable[[int], None] | None = None,
        after_step: Callable[[int], None] | None = None,
    ) -> float | None:
        """Run steps ``first..total−1`` over ``batches`` (one batch per step, in order).

        ``before_step(step)`` runs before the loss (e.g. a warm-up learning rate), ``after_step``
        after the optimizer step (e.g. EMA), ``on_checkpoint(done, running_loss)`` at every
        checkpoint step, followed by a barrier. Returns the final running loss (``None`` if no
        step ran).
        """
        accelerator, optimizer = self.accelerator, self.optimizer
        disable = not accelerator.is_main_process or (None if self.progress is None else not self.progress)
        bar = tqdm(total=self.total, initial=self.first, desc=self.desc, disable=disable)
        running = None
        for step, batch in enumerate(batches, start=self.first):
            if before_step is not None:
                before_step(step)
            loss, postfix = loss_fn(step, batch)
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            optimizer.step()
            if after_step is not None:
                after_step(step)
            value = float(loss.detach())
            running = value if running is None else self.smoothing * running + round(1 - self.smoothing, 12) * value
            bar.update(1)
            bar.set_postfix(loss=f"{running:.4f}", **postfix)
            done = step + 1
            if done % self.checkpoint_every == 0 or done == self.total:
                on_checkpoint(done, running)
                accelerator.wait_for_everyone()
        bar.close()
        return running
