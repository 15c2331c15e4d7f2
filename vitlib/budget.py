"""The learning-rate schedule as a pure function of (step, plan), and the wall-clock budget
(`train_params.time_budget_min`) that re-plans it.

`lr_at(step, tp, plan, steps_per_epoch)` is the whole schedule: a linear warm-up, then a cosine to
min_lr (or a constant). The `Plan` says how many epochs the cosine spans and where it was last
re-planned; it is immutable data, stored in every checkpoint, so a resumed run's learning rate is
the uninterrupted run's, step for step.

A cosine schedule must know its length in advance, but "as many epochs as fit in 30 minutes"
depends on the machine (a shared 2-core machine ran anywhere from 1,400 to 2,300 images/s within
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

import math
import statistics
import time
from dataclasses import dataclass, replace

from vitlib.config import TrainParams

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
        self.epoch_secs: list[float] = []  # this process's epochs, as after_epoch measured them
        self.replans = 0                   # changes of plan after the first (the run's last line counts them)

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self._t0

    def after_epoch(self, epoch_s: float, done: int, max_epochs: int) -> tuple[int, float]:
        """Record an epoch's seconds; returns the epochs that now fit, planned from the median of
        the latest RECENT_EPOCHS epochs (one slow epoch does not cut the run short), and that median."""
        self.epoch_secs.append(epoch_s)
        typical = statistics.median(self.epoch_secs[-RECENT_EPOCHS:])
        return self.plan(typical, done, max_epochs), typical

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


@dataclass(frozen=True)
class Plan:
    """How many epochs the schedule spans now, and where a time budget last re-planned it: the
    cosine had reached `anchor_progress` (0 -> 1) at optimiser step `anchor_step`."""
    epochs: int
    anchor_step: int = 0
    anchor_progress: float = 0.0

    def to_clock(self) -> dict:
        """The checkpoint's form: {"planned_epochs", "anchor": {"step", "progress"}}."""
        return {"planned_epochs": self.epochs,
                "anchor": {"step": self.anchor_step, "progress": self.anchor_progress}}

    @classmethod
    def from_clock(cls, clock: dict, epochs: int) -> "Plan":
        """Read a checkpoint's clock back; `epochs` where it holds no plan (a run without a budget)."""
        anchor = clock.get("anchor") or {}
        return cls(min(epochs, clock.get("planned_epochs") or epochs),
                   int(anchor.get("step", 0)), float(anchor.get("progress", 0.0)))

    def progress(self, step: int, warmup: int, total: int) -> float:
        """How far along its cosine (0 -> 1) the schedule is at `step` (see cosine_progress)."""
        return cosine_progress(step, warmup, total, {"step": self.anchor_step, "progress": self.anchor_progress})


def schedule_span(tp: TrainParams, plan: Plan, steps_per_epoch: int) -> tuple[int, int]:
    """(warm-up steps, total steps) of the schedule under this plan."""
    total = max(1, plan.epochs * steps_per_epoch)
    return min(int(round(tp.warmup_epochs * steps_per_epoch)), total - 1), total


def lr_at(step: int, tp: TrainParams, plan: Plan, steps_per_epoch: int) -> float:
    """The learning rate of optimiser step `step` (0-based): linear warm-up to tp.lr, then a cosine
    down to tp.min_lr at the plan's last step (scheduler: cosine), or flat (scheduler: none)."""
    warmup, total = schedule_span(tp, plan, steps_per_epoch)
    if step < warmup:
        return tp.lr * (step + 1) / warmup
    if tp.scheduler == "none":
        return tp.lr
    floor = min(tp.min_lr / tp.lr, 1.0)
    return tp.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * plan.progress(step, warmup, total))))


def replan(plan: Plan, epochs: int, step: int, tp: TrainParams, steps_per_epoch: int) -> Plan:
    """The plan for `epochs` from `step` on, anchored where the current one has the cosine, so
    that the learning rate goes on without a jump."""
    if epochs == plan.epochs:
        return plan
    warmup, total = schedule_span(tp, plan, steps_per_epoch)
    return replace(plan, epochs=epochs, anchor_step=step, anchor_progress=plan.progress(step, warmup, total))
