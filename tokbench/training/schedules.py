"""Step-indexed hyper-parameter schedules (learning rate, weight decay, EMA momentum, ...).

A schedule is a pure function of the global step: it keeps no state, so resuming a run
only needs the step counter, and a schedule can be evaluated ahead of time for plots.
"""

from __future__ import annotations

import math

__all__ = ["CosineSchedule"]


class CosineSchedule:
    """DINOv2's ``CosineScheduler`` as a pure function: freeze, linear warm-up, cosine decay.

    For ``step`` in

    * ``[0, freeze_steps)``: ``0.0`` (e.g. a frozen last layer);
    * the next ``warmup_steps`` steps: ``start_warmup_value`` to ``base`` inclusive, evenly
      spaced like ``numpy.linspace`` (so the last warm-up step already gives ``base``; a single
      warm-up step gives ``start_warmup_value``), exactly as DINOv2 builds its array;
    * the remaining ``n = total_steps - freeze_steps - warmup_steps`` steps:
      ``final + 0.5 * (base - final) * (1 + cos(pi * i / n))`` for ``i = 0 .. n-1``;
    * ``step >= total_steps``: ``final``.

    The values equal DINOv2's precomputed array (``dinov2/utils/utils.py``) step for step.
    """

    def __init__(
        self,
        base: float,
        final: float,
        total_steps: int,
        warmup_steps: int = 0,
        start_warmup_value: float = 0.0,
        freeze_steps: int = 0,
    ):
        counts = (("total_steps", total_steps), ("warmup_steps", warmup_steps), ("freeze_steps", freeze_steps))
        for name, value in counts:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"CosineSchedule: {name} must be a non-negative int, got {value!r}")
        if warmup_steps + freeze_steps > total_steps:
            raise ValueError(
                f"CosineSchedule: freeze_steps ({freeze_steps}) + warmup_steps ({warmup_steps}) exceed "
                f"total_steps ({total_steps}); lengthen the run or shorten the warm-up"
            )
        self.base = float(base)
        self.final = float(final)
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self.start_warmup_value = float(start_warmup_value)
        self.freeze_steps = freeze_steps

    def __call__(self, step: int) -> float:
        if step < 0:
            raise ValueError(f"CosineSchedule: step must be >= 0, got {step}")
        if step >= self.total_steps:
            return self.final
        if step < self.freeze_steps:
            return 0.0
        i = step - self.freeze_steps
        if i < self.warmup_steps:
            if self.warmup_steps == 1:
                return self.start_warmup_value
            return self.start_warmup_value + (self.base - self.start_warmup_value) * i / (self.warmup_steps - 1)
        i -= self.warmup_steps
        n = self.total_steps - self.freeze_steps - self.warmup_steps
        return self.final + 0.5 * (self.base - self.final) * (1.0 + math.cos(math.pi * i / n))

    def __repr__(self) -> str:
        return (
            f"CosineSchedule(base={self.base}, final={self.final}, total_steps={self.total_steps}, "
            f"warmup_steps={self.warmup_steps}, start_warmup_value={self.start_warmup_value}, "
            f"freeze_steps={self.freeze_steps})"
        )
