"""Matplotlib helpers for the figures the book and `python -m vitlib.inference` draw.

Each function returns the Figure (notebooks display it) and, given `path`, also saves it and
closes it (scripts). Images are vitlib's (3, H, W) tensors in [-1, 1], RGB.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def _plt():
    import matplotlib.pyplot as plt  # deferred: scripts pick the Agg backend before this runs
    return plt


def _finish(fig, path: str | Path | None):
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110, bbox_inches="tight")
        _plt().close(fig)
    return fig


def to_numpy_image(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [-1, 1] -> (H, W, 3) float in [0, 1] for imshow."""
    return ((image.detach().float().cpu().permute(1, 2, 0) + 1) / 2).clamp(0, 1).numpy()


def read_metrics_csv(path: str | Path) -> list[dict]:
    """metrics.csv -> list of dicts with numbers as floats (empty cells as None)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k: (float(v) if v not in ("", None) else None) for k, v in r.items()} for r in rows]


def plot_curves(history: Sequence[dict] | str | Path, path: str | Path | None = None,
                title: str | None = None):
    """Loss and accuracy per epoch, train vs validation (rows of metrics.csv, or its path)."""
    plt = _plt()
    if isinstance(history, (str, Path)):
        history = read_metrics_csv(history)
    ep = [r["epoch"] for r in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key, name in ((ax1, "loss", "Loss"), (ax2, "acc", "Digit accuracy")):
        for split, style in (("train", "-o"), ("val", "-s")):
            ys = [r.get(f"{split}_{key}") for r in history]
            if any(y is not None for y in ys):
                ax.plot(ep, [np.nan if y is None else y for y in ys], style, ms=3,
                        label="train" if split == "train" else "validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(name.lower())
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _finish(fig, path)


def confusion_matrix(targets: torch.Tensor, preds: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(num_classes, num_classes) counts; row = true class, column = prediction."""
    idx = targets.long() * num_classes + preds.long()
    return torch.bincount(idx, minlength=num_classes**2).reshape(num_classes, num_classes)


def plot_confusion(cm: torch.Tensor | np.ndarray, class_names: Sequence[str] | None = None,
                   path: str | Path | None = None, title: str = "Confusion matrix (test)"):
    """Row-normalised confusion matrix with the raw counts written in each cell."""
    plt = _plt()
    cm = np.asarray(cm, dtype=np.float64)
    k = cm.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    frac = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(0.55 * k + 2.2, 0.55 * k + 1.6))
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            if cm[i, j]:
                ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=7,
                        color="white" if frac[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), names)
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of the true class")
    fig.tight_layout()
    return _finish(fig, path)


def upsample_map(mask: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """(gh, gw) patch map -> (H, W) in [0, 1], bilinear, scaled by its max (as the original)."""
    m = mask.detach().float().cpu()[None, None]
    m = F.interpolate(m, size=size, mode="bilinear", align_corners=False)[0, 0]
    return (m / m.max().clamp_min(1e-12)).clamp(0, 1).numpy()


def overlay(image: torch.Tensor, mask: torch.Tensor, mode: str = "multiply",
            alpha: float = 0.5) -> np.ndarray:
    """Image (3, H, W) in [-1, 1] with a patch map on top -> (H, W, 3) in [0, 1].

    mode='multiply' is the original's picture (image * mask: unattended regions go black);
    mode='heatmap' blends a jet colour map over the image.
    """
    img = to_numpy_image(image)
    m = upsample_map(mask, img.shape[:2])
    if mode == "multiply":
        return img * m[..., None]
    if mode == "heatmap":
        heat = _plt().get_cmap("jet")(m)[..., :3]
        return (1 - alpha) * img + alpha * heat
    raise ValueError(f"overlay mode must be 'multiply' or 'heatmap', got {mode!r}")


def plot_rollout(image: torch.Tensor, maps: dict[str, torch.Tensor], title: str | None = None,
                 path: str | Path | None = None, mode: str = "multiply"):
    """Input image, then one overlay per rollout map ({'original': (gh, gw), 'abnar': ...})."""
    plt = _plt()
    fig, axes = plt.subplots(1, 1 + len(maps), figsize=(2.6 * (1 + len(maps)), 2.9))
    axes[0].imshow(to_numpy_image(image))
    axes[0].set_title("input")
    for ax, (name, m) in zip(axes[1:], maps.items()):
        ax.imshow(overlay(image, m, mode=mode))
        ax.set_title(name, fontsize=9)
    for ax in axes:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _finish(fig, path)


def plot_pos_similarity(sim: torch.Tensor, path: str | Path | None = None,
                        title: str = "Position embedding similarity"):
    """ViT paper Fig. 7 (centre): for every patch position (row, column of the grid), a small
    heatmap of its position embedding's cosine similarity with every other position."""
    plt = _plt()
    P, gh, gw = sim.shape
    sim = sim.detach().float().cpu().numpy()
    fig, axes = plt.subplots(gh, gw, figsize=(min(0.55 * gw, 11) + 1.2, min(0.55 * gh, 11) + 0.6),
                             squeeze=False, gridspec_kw={"wspace": 0.08, "hspace": 0.08})
    im = None
    for i in range(P):
        ax = axes[i // gw, i % gw]
        im = ax.imshow(sim[i], vmin=-1, vmax=1, cmap="viridis")
        ax.set_xticks([])
        ax.set_yticks([])
        if i // gw == gh - 1:
            ax.set_xlabel(str(i % gw + 1), fontsize=7)
        if i % gw == 0:
            ax.set_ylabel(str(i // gw + 1), fontsize=7)
    fig.supxlabel("input patch column")
    fig.supylabel("input patch row")
    fig.suptitle(title)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.6, label="cosine similarity")
    return _finish(fig, path)


def plot_attention_distance(dist: torch.Tensor, path: str | Path | None = None,
                            title: str = "Mean attention distance"):
    """ViT paper Fig. 7 (right): one dot per head, x = layer (network depth), y = pixels."""
    plt = _plt()
    d = dist.detach().float().cpu().numpy()
    L, H = d.shape
    fig, ax = plt.subplots(figsize=(4.8, 3.6))
    for h in range(H):
        ax.scatter(np.arange(1, L + 1), d[:, h], s=14, label=f"head {h + 1}")
    ax.set_xlabel("network depth (layer)")
    ax.set_ylabel("mean attention distance (pixels)")
    ax.set_title(title)
    ax.set_xticks(range(1, L + 1))
    ax.grid(alpha=0.3)
    if H <= 8:
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return _finish(fig, path)


def plot_patch_filters(comps: torch.Tensor, path: str | Path | None = None,
                       title: str = "Principal components of the patch embedding filters"):
    """ViT paper Fig. 7 (left): each (C, ph, pw) component scaled to [0, 1] and shown as RGB."""
    plt = _plt()
    k = comps.shape[0]
    ncol = min(7, k)
    nrows = math.ceil(k / ncol)
    fig, axes = plt.subplots(nrows, ncol, figsize=(1.1 * ncol, 1.1 * nrows + 0.5), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < k:
            c = comps[i].detach().float().cpu()
            c = (c - c.min()) / (c.max() - c.min()).clamp_min(1e-12)
            ax.imshow(c.permute(1, 2, 0).numpy() if c.shape[0] == 3 else c[0].numpy(),
                      interpolation="nearest")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _finish(fig, path)


def plot_probes(rows: Sequence[dict], path: str | Path | None = None,
                title: str = "What each layer knows: linear probes"):
    """vitlib.probe.probe_layers' rows: digit accuracy, texture accuracy and colour R² of a linear
    probe against depth (0 = the tokens entering block 1), one line per token type, chance dashed."""
    plt = _plt()
    panels = (("digit_acc", "digit_chance", "Digit (held-out accuracy)", "accuracy"),
              ("texture_acc", "texture_chance", "Texture (held-out accuracy)", "accuracy"),
              ("color_r2", "color_r2_chance", "Digit colour (held-out R²)", "R²"))
    tokens = list(dict.fromkeys(r["token"] for r in rows))
    depths = sorted({r["depth"] for r in rows})
    names = {"cls": "CLS token", "mean": "mean patch token"}
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, (key, chance_key, name, ylabel) in zip(axes, panels):
        for tok, marker in zip(tokens, "os^v"):
            mine = sorted((r for r in rows if r["token"] == tok), key=lambda r: r["depth"])
            ax.plot([r["depth"] for r in mine], [r[key] for r in mine], f"-{marker}", ms=4,
                    label=names.get(tok, tok))
        ax.axhline(rows[0][chance_key], color="gray", ls="--", lw=1, label="chance")
        ax.set_xlabel("depth (blocks applied)")
        ax.set_ylabel(ylabel)
        ax.set_title(name)
        ax.set_xticks(depths)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return _finish(fig, path)
