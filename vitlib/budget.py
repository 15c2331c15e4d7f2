"""A wall-clock budget for a training run: `train_params.time_budget_min`.

A cosine schedule must know its length in advance, but "as many epochs as fit in 30 minutes"
depends on the machine (this course's 2-core VM ran anywhere from 1,400 to 2,300 images/s within
one run). So the run measures its first epoch, then fixes the number of epochs that fit and
lays the schedule over them. The first epoch is the warm-up, before the cosine starts, so the
plan changes nothing that already happened. The plan is refined after epochs 2 and 3 from the
median epoch time, in case other work slowed the first; the cosine has barely moved there, so a
new length moves the learning rate very little (by 0.04 % when 56 epochs become 60). If a later
epoch runs slower than planned, the run stops at the last epoch boundary inside the budget (its
learning rate then ends a little above min_lr). The converse is not caught: a machine that
speeds up after epoch 3 finishes early (benchmarks/RESULTS.md, session 5, run 14).
"""
from __future__ import annotations

import time

REPLAN_EPOCHS = 3  # epochs whose timings set the plan (the first is the warm-up)


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

    def fits(self, epoch_s: float) -> bool:
        """Whether one more epoch of `epoch_s` seconds ends inside the budget."""
        return self.limit_s is None or self.elapsed_s + epoch_s <= self.limit_s
