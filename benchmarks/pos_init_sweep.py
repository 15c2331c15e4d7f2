"""Which position-embedding start lets the fine model both learn fast and learn the grid?

    python benchmarks/pos_init_sweep.py --std 0.02 0.2 1.0 --steps 600

Short runs of configs/fine.yaml (one thread each), printing validation accuracy and the Spearman
correlation between pairwise cosine similarity of the learned position embeddings and grid
distance (negative: near patches have similar embeddings).
"""
from __future__ import annotations

import argparse
import json
import tempfile

from vitlib.config import load_config
from vitlib.interpret import pos_embed_spearman
from vitlib.train import train


def run(std: float, steps: int, pos_wd: float | None, epochs: int) -> dict:
    per_epoch = steps // epochs * 128
    over = {"model_params": {"pos_init_std": std},
            "dataset_params": {"epoch_samples": per_epoch, "val_limit": 2000},
            "train_params": {"epochs": epochs, "time_budget_min": None, "num_threads": 1,
                             "task_name": f"sweep_std{std}"}}
    if pos_wd is not None:
        over["train_params"]["pos_weight_decay"] = pos_wd
    cfg = load_config("configs/fine.yaml", over)
    with tempfile.TemporaryDirectory() as out:
        res = train(cfg, out_dir=out, progress=False)
    h = res["history"]
    return {"std": std, "pos_wd": pos_wd, "steps": steps,
            "val_acc": [round(r["val_acc"], 4) for r in h],
            "spearman": round(pos_embed_spearman(res["model"]), 3)}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--std", type=float, nargs="+", default=[0.02, 0.2, 1.0])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--pos-wd", type=float, default=None)
    a = ap.parse_args()
    for s in a.std:
        print(json.dumps(run(s, a.steps, a.pos_wd, a.epochs)), flush=True)
