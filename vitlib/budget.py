"""A wall-clock budget for a training run: `train_params.time_budget_min`.

A cosine schedule must know its length in advance, but "as many epochs as fit in 30 minutes"
depends on the machine (this course's 2-core VM ran anywhere from 1,400 to 2,300 images/s within
one run). So the run measures its epochs as it goes and, after every epoch, re-plans how many
epochs fit from the median of the last three epoch times. The first plan comes after epoch 1,
the warm-up, before the cosine has started.

A new length must not make the learning rate jump. So a re-plan *anchors* the cosine where it
is: from the current step on, its progress (0 at the end of the warm-up, 1 at min_lr) runs in a
straight line from its present value to 1 at the new last step. A machine that speeds up gets
more epochs, one that slows down fewer, and either way the schedule reaches min_lr on the last
planned epoch. If nothing more fits, the run stops at that epoch boundary, its learning rate a
little above min_lr.
"""
from __future__ import annotations

import time

RECENT_EPOCHS = 3  # a plan uses the median time of this many latest epochs


def plan_epochs(budget_s: float, elapsed_s: float, epoch_s: float, done: int, max_epochs: int,
                margin: float = 0.02) -> int:
    """Total epochs to train: `done` already taken `elapsed_s`, each further one takes ~`epoch_s`
    (padded by `margin`), all within `budget_s`; never fewer than `done`, never more than `max_epochs`."""
    if epoch_s <= 0:
        return max_epochs
    more = int(max(0.0, budget_s - elapsed_s) // (epoch_s * (1 + margin)))
    return max(done, min(max_epochs, done + more))


class TimeBudget:
    """The clock of one run. `spent_s` is time used before a --resume, so the budget covers the
    whole run, not each process."""

    def __init__(self, minutes: float | None, spent_s: float = 0.0):
        self.limit_s = None if minutes is None else 60.0 * float(minutes)
        self._t0 = time.perf_counter() - spent_s

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self._t0

    def plan(self, epoch_s: float, done: int, max_epochs: int) -> int:
        """Epochs for the whole run, from the measured seconds per epoch (see plan_epochs)."""
        if self.limit_s is None:
            return max_epochs
        return plan_epochs(self.limit_s, self.elapsed_s, epoch_s, done, max_epochs)


def cosine_progress(step: int, start: int, total: int, anchor: dict | None = None) -> float:
    """How far along its cosine (0 -> 1) the schedule is at `step`: a straight line from the anchor
    ({"step", "progress"}: where the last re-plan left it) to (`total`, 1). The line begins no
    earlier than `start`, the end of the warm-up; without an anchor it is (step - start) / (total - start)."""
    s0 = max(anchor["step"], start) if anchor else start
    p0 = anchor["progress"] if anchor else 0.0
    return min(1.0, max(0.0, p0 + (1.0 - p0) * (step - s0) / max(1, total - s0)))
