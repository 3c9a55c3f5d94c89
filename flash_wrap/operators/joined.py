"""Joining one-sample operators into one batch operator (what a slot scheduler steps together).

A stream (:mod:`flash_wrap.scheduling`) holds each sample with its own batch-1 operator and steps
the busy ones as one batch, so it needs one operator whose row ``i`` is sample ``i``'s:
:func:`join_operators`. Operators that can hold the parts' parameters in one object say so in
:meth:`Operator.join_rows` (the built-in ones do); any other join is a :class:`JoinedOperator`,
which applies each row's own operator to its own row.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .._checks import check_batch
from ..errors import InvalidInput, WrongType
from ._filters import RowIndex
from .base import Operator


def join_operators(parts: Sequence[Operator]) -> Operator:
    """One operator whose row ``i`` applies ``parts[i]``: batch size ``len(parts)``.

    Args:
        parts: one-sample operators (``batch_size == 1`` each) of one task with one ``noise_std``.
    Returns:
        ``parts[0]``'s own class holding every row where it offers a fast path
        (:meth:`Operator.join_rows`), otherwise a :class:`JoinedOperator`.
    Raises:
        InvalidInput: no parts, a part with more than one row, mixed tasks or mixed ``noise_std``.
    """
    parts = list(parts)
    if not parts:
        raise InvalidInput("join_operators needs at least one operator, got none")
    first = parts[0]
    for i, part in enumerate(parts):
        if not isinstance(part, Operator):
            raise WrongType(f"join_operators: part {i} is a {type(part).__name__}, not a flash_wrap Operator")
        if part.batch_size != 1:
            raise InvalidInput(f"join_operators: part {i} ({type(part).__name__}) has {part.batch_size} rows; join "
                               "one-sample operators (operator.select([j]) gives row j alone)")
        if part.task != first.task:
            raise InvalidInput(f"join_operators: part {i} belongs to task {part.task!r} but part 0 to {first.task!r}; "
                               "one batch runs one task (its severity encoder and hyper-parameters)")
        if part.noise_std != first.noise_std:
            raise InvalidInput(f"join_operators: part {i} has noise_std {part.noise_std:g} but part 0 has "
                               f"{first.noise_std:g}; one batch has one measurement noise level")
    if len(parts) == 1:
        return first
    if all(type(part) is type(first) for part in parts):
        fast = type(first).join_rows(parts)
        if fast is not None:
            return fast
    return JoinedOperator(parts)


class JoinedOperator(Operator):
    """Row ``i`` is ``parts[i]`` applied to row ``i``: the generic join of one-sample operators.

    Linear when every part is, and then :meth:`adjoint` is the default exact transpose of
    :meth:`forward` (each row's own transpose). Measurements of all rows must share one shape.

    Args:
        parts: one-sample operators of one task and one ``noise_std`` (see :func:`join_operators`,
            which checks that and is the usual way to build one).
    """

    def __init__(self, parts: Sequence[Operator]) -> None:
        super().__init__(parts[0].noise_std)
        self.parts = list(parts)
        # per instance: the joined rows' task and linearity are their parts' (class-level elsewhere)
        self.task = parts[0].task  # type: ignore[misc]
        self.linear = all(part.linear for part in parts)  # type: ignore[misc]

    @property
    def batch_size(self) -> int:
        return len(self.parts)

    @property
    def severity(self) -> torch.Tensor:
        """Each part's severity, ``(batch_size,)``."""
        return torch.cat([part.severity.reshape(1) for part in self.parts])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` → each row through its own part, concatenated."""
        check_batch(self.batch_size, x.shape[0], "JoinedOperator rows")
        rows = [part(x[i : i + 1]) for i, part in enumerate(self.parts)]
        return _same_shape_cat(rows, "forward")

    def to_image(self, y: torch.Tensor) -> torch.Tensor:
        return _same_shape_cat([part.to_image(y[i : i + 1]) for i, part in enumerate(self.parts)], "to_image")

    def measurement_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        return self.parts[0].measurement_shape(image_shape)

    def image_shape(self, measurement_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        return self.parts[0].image_shape(measurement_shape)

    def select(self, index: RowIndex) -> Operator:  # type: ignore[override]  # a join of parts may collapse to their own class
        positions = range(self.batch_size)[index] if isinstance(index, slice) else torch.as_tensor(index).reshape(-1).tolist()
        return join_operators([self.parts[i] for i in positions])

    def __repr__(self) -> str:
        kinds = sorted({type(part).__name__ for part in self.parts})
        return f"JoinedOperator(batch_size={self.batch_size}, parts={kinds}, noise_std={self.noise_std:g})"


def _same_shape_cat(rows: list[torch.Tensor], what: str) -> torch.Tensor:
    shapes = {tuple(row.shape[1:]) for row in rows}
    if len(shapes) > 1:
        raise InvalidInput(f"JoinedOperator.{what}: the rows give outputs of different shapes {sorted(shapes)}; "
                           "joined samples must share one image and measurement size")
    return torch.cat(rows)
