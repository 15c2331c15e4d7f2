"""train_params.time_budget_min: the epochs that fit a wall-clock budget, re-planned after every epoch."""
import math

import pytest
import torch
import yaml

from vitlib import budget as B
from vitlib import config as C
from vitlib.checkpoint import load_checkpoint
from vitlib.train import main as train_main, train

from test_train import CONFIGS, micro


def test_plan_epochs_fits_the_budget():
    # 1 epoch done in 40 s of a 300 s budget, 25 s per epoch (+2 % margin): 10 more fit (10 x 25.5 = 255)
    assert B.plan_epochs(300, 40, 25, done=1, max_epochs=100) == 11
    assert B.plan_epochs(300, 40, 25, done=1, max_epochs=6) == 6        # `epochs` stays the cap
    assert B.plan_epochs(300, 290, 25, done=1, max_epochs=100) == 1     # nothing more fits
    assert B.plan_epochs(300, 400, 25, done=3, max_epochs=100) == 3     # over already: never below done
    for budget, elapsed, epoch_s in [(1800, 35, 26.0), (1800, 30, 24.4), (600, 12, 3.3)]:
        n = B.plan_epochs(budget, elapsed, epoch_s, done=1, max_epochs=10_000)
        assert elapsed + (n - 1) * epoch_s <= budget < elapsed + n * epoch_s * 1.02 + epoch_s


def test_time_budget_clock():
    clock = B.TimeBudget(None)
    assert clock.plan(10.0, done=1, max_epochs=66) == 66
    resumed = B.TimeBudget(1.0, spent_s=50.0)  # 10 s of a 60 s budget left after a --resume
    assert 50.0 <= resumed.elapsed_s < 55.0
    assert resumed.plan(4.0, done=3, max_epochs=66) in (4, 5)
    assert resumed.plan(11.0, done=3, max_epochs=66) == 3  # no further epoch fits


def test_cosine_progress_reanchors_without_a_jump():
    # Warm-up ends at step 10; the plain schedule runs to step 110.
    assert B.cosine_progress(10, 10, 110) == 0.0 and B.cosine_progress(60, 10, 110) == 0.5
    assert B.cosine_progress(5, 10, 110) == 0.0 and B.cosine_progress(500, 10, 110) == 1.0
    # Halfway, the plan grows to 210 steps: progress goes on from 0.5, more slowly, to 1 at 210.
    anchor = {"step": 60, "progress": B.cosine_progress(60, 10, 110)}
    assert B.cosine_progress(60, 10, 210, anchor) == 0.5
    assert B.cosine_progress(135, 10, 210, anchor) == 0.75 and B.cosine_progress(210, 10, 210, anchor) == 1.0
    # An anchor inside the warm-up starts the line at the warm-up's end.
    assert B.cosine_progress(10, 10, 110, {"step": 4, "progress": 0.0}) == 0.0


@pytest.mark.parametrize("value", [0, -5, "abc", True])
def test_bad_time_budget_is_named(value):
    raw = yaml.safe_load((CONFIGS / "quick.yaml").read_text())
    with pytest.raises(ValueError, match=r"train_params\.time_budget_min.*minutes"):
        C.parse_config(C.merge(raw, {"train_params": {"time_budget_min": value}}))


def test_cli_reports_a_bad_budget(tmp_path, capsys):
    assert train_main(["--config", str(micro(tmp_path)), "--set", "train_params.time_budget_min=-1"]) == 2
    assert "time_budget_min" in capsys.readouterr().err


def test_budgeted_run_lays_the_schedule_over_the_epochs_that_fit(tmp_path, capsys):
    # Epoch 1 of this micro run takes well under a second; 40 epochs never fit in 3 seconds.
    cfg = micro(tmp_path, train_params={"epochs": 40, "time_budget_min": 0.05, "warmup_epochs": 1})
    run = train(cfg, out_dir=tmp_path, progress=False)
    n = run["epochs"]
    assert 1 <= n < 40 and 1 <= len(run["history"]) <= n
    assert "time budget 0.05 min" in capsys.readouterr().out
    ckpt = load_checkpoint(run["last_path"])
    assert ckpt["clock"]["planned_epochs"] == n and ckpt["clock"]["elapsed_s"] > 0
    assert len(run["history"]) == n  # the plan always ends where the run stops
    # either it ran to its plan's end, where the cosine reaches its floor, or the budget stopped it
    # at an epoch boundary short of the floor: never both, never neither
    at_floor = math.isclose(run["history"][-1]["lr"], 1e-5, rel_tol=1e-6)
    assert at_floor != run["stopped_by_budget"], (run["stopped_by_budget"], run["history"][-1]["lr"])


def plan_by_epoch(plans):
    """A stand-in for the clock: after `done` epochs, the plan of the latest key <= done."""
    return lambda self, epoch_s, done, max_epochs: plans[max(k for k in plans if k <= done)]


def test_a_replan_keeps_the_learning_rate_continuous_and_resumes_bit_for_bit(tmp_path, monkeypatch, capsys):
    # The plan depends on the clock, so script it: 3 epochs after epoch 1, then the machine speeds
    # up and 5 fit. The cosine, halfway at the end of epoch 2, goes on from there to min_lr at
    # epoch 5; a run stopped after epoch 2 and resumed must end where the uninterrupted one ends.
    cfg = micro(tmp_path, train_params={"epochs": 10, "time_budget_min": 60, "warmup_epochs": 1})
    monkeypatch.setattr(B.TimeBudget, "plan", plan_by_epoch({1: 3, 2: 5}))
    full = train(cfg, out_dir=tmp_path / "a", progress=False)
    out = capsys.readouterr().out
    assert "training 3 of at most 10 epochs" in out and "the time budget changed its plan 1 time)" in out
    half = train(cfg, out_dir=tmp_path / "b", progress=False, stop_after_epochs=2)
    assert full["epochs"] == half["epochs"] == 5 and len(half["history"]) == 2
    stopped = load_checkpoint(half["last_path"])  # re-anchored at its last step, halfway along
    assert stopped["clock"]["anchor"] == {"step": stopped["global_step"], "progress": 0.5}
    lrs = [r["lr"] for r in full["history"]]  # the lr at each epoch's end
    assert all(a > b for a, b in zip(lrs[1:], lrs[2:])), lrs  # never back up after the re-plan
    assert math.isclose(lrs[-1], 1e-5, rel_tol=1e-6)
    resumed = train(cfg, out_dir=tmp_path / "b", resume=True, progress=False)
    assert resumed["epochs"] == 5 and [r["epoch"] for r in resumed["history"]] == [1, 2, 3, 4, 5]
    assert [r["lr"] for r in resumed["history"]] == lrs
    a, b = full["model"].state_dict(), resumed["model"].state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_a_slow_run_stops_at_an_epoch_boundary(tmp_path, monkeypatch, capsys):
    # 5 epochs are planned after epoch 1; after epoch 4 the machine has slowed and nothing more
    # fits, so the run stops there, its cosine short of min_lr.
    cfg = micro(tmp_path, train_params={"epochs": 10, "time_budget_min": 60, "warmup_epochs": 1})
    monkeypatch.setattr(B.TimeBudget, "plan", plan_by_epoch({1: 5, 4: 4}))
    run = train(cfg, out_dir=tmp_path, progress=False)
    assert run["epochs"] == 4 and len(run["history"]) == 4 and run["stopped_by_budget"]
    assert run["history"][-1]["lr"] > 1e-5  # stopped before the cosine's end
    assert "time budget 60 min reached: stopping after epoch 4 of 5" in capsys.readouterr().out


def test_an_unbudgeted_run_is_unchanged(tmp_path):
    run = train(micro(tmp_path), out_dir=tmp_path, progress=False)
    assert run["epochs"] == 2 and len(run["history"]) == 2
    assert load_checkpoint(run["last_path"])["clock"]["planned_epochs"] == 2
