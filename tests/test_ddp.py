"""Multi-process training: `torchrun --nproc_per_node=2 -m vitlib.train` with DDP over gloo.

Two CPU processes train a tiny model for a few steps; both must end with identical weights
(DDP averages gradients, so the replicas never drift), and only rank 0 writes the run files.
"""
import os
import subprocess
import sys

import torch

from vitlib.checkpoint import load_checkpoint


def test_two_process_ddp_ranks_agree(tmp_path, micro_config):
    cfg = micro_config(dataset={"train_limit": 512, "val_limit": 256},
                       train_params={"task_name": "ddp", "batch_size": 32, "lr": 0.001, "warmup_epochs": 1.0,
                                     "num_threads": None, "save_rank_weights": True},
                       name="ddp.yaml")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "vitlib.train", "--config", str(cfg), "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = tmp_path / "ddp"
    r0, r1 = (load_checkpoint(run / f"rank{r}.pt")["model"] for r in (0, 1))
    assert r0.keys() == r1.keys()
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k
    # rank 0 alone reports: one header + one row per epoch; 512 images / (2 ranks x 32) = 8 steps
    assert (run / "metrics.csv").read_text().count("\n") == 3
    last = load_checkpoint(run / "last.pt")
    assert last["global_step"] == 16 and last["epoch"] == 2
    for k in r0:  # and the weights in last.pt are the ranks' weights
        assert torch.equal(last["model"][k], r0[k]), k
    assert proc.stdout.count("parameters |") == 1  # no duplicated logs from rank 1
