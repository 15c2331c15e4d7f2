"""Checkpoints: atomic writes, validated loads, matching a checkpoint to a config, RNG states.

A training checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so that
`torch.load(weights_only=True)` can read it without running arbitrary pickled code:

    model, optimizer, scheduler      state dicts
    epoch, global_step               epochs finished, optimiser steps taken
    rng                              torch / cuda / numpy / python RNG states
    best_metric, best_epoch          best validation digit accuracy so far
    history                          one dict per epoch (the rows of metrics.csv)
    clock                            seconds used, epochs planned and the cosine's anchor (time_budget_min)
    config, vit_config               the YAML dict as loaded, and the model's ViTConfig as a dict

The pretrained models that ship with vitlib, and "load the checkpoint, else train", are in
vitlib.hub, one layer above vitlib.train.
"""
from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from vitlib.config import Config
from vitlib.model import ViT, ViTConfig
from vitlib.paths import atomic_write



class CheckpointError(ValueError):
    """A checkpoint that cannot be used: corrupt, truncated, or made for another model."""


# ---------------------------------------------------------------------------- atomic I/O

def save_checkpoint(obj: dict, path: str | Path) -> Path:
    """torch.save `obj` to `path` atomically: a crash mid-write never leaves a half file."""
    with atomic_write(path) as f:
        torch.save(obj, f)
    return Path(path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a vitlib checkpoint with weights_only=True, turning torch's errors into plain ones."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found. Train one with "
                                f"`python -m vitlib.train --config configs/<name>.yaml`.")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # zipfile, pickle, EOF and RuntimeError all mean the same to a reader
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "Weights only load failed" in str(e):
            raise CheckpointError(f"{path} holds Python objects beyond tensors and plain data, so it "
                                  f"is not a vitlib checkpoint (or was written by untrusted code). "
                                  f"Delete it and retrain.") from None
        raise CheckpointError(f"{path} is truncated or corrupt ({type(e).__name__}: {reason}). "
                              f"Delete the file and retrain (python -m vitlib.train --config ...), "
                              f"or resume from last.pt if that one is intact.") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "vit_config" not in ckpt:
        raise CheckpointError(f"{path} is not a vitlib checkpoint (no 'model'/'vit_config' entries). "
                              f"Delete it and retrain.")
    return ckpt


# ---------------------------------------------------------------------------- model configs

def _plain(v: Any) -> Any:
    """Tuples -> lists, recursively, so stored configs compare and serialise the same way."""
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def vit_config_to_dict(cfg: ViTConfig) -> dict:
    return _plain(dataclasses.asdict(cfg))


def config_mismatches(stored: dict, cfg: ViTConfig, weights_only: bool = True) -> list[str]:
    """'field: checkpoint value vs config value' for every field that differs.

    Architecture fields always count; training-only ones (dropout) too unless weights_only, so a
    checkpoint trained with dropout loads into an otherwise identical eval-time config; runtime
    fields (init std, attention path) never do. ViTConfig marks each field's kind.
    """
    kinds = ("arch",) if weights_only else ("arch", "train")
    current = vit_config_to_dict(cfg)
    # A field added after a checkpoint was written (conv_stem, arch) has the default that reproduces
    # the model as it was, so a missing key means that default.
    defaults = vit_config_to_dict(ViTConfig())
    out = []
    for key in ViTConfig.fields_of_kind(*kinds):
        a, b = _plain(stored.get(key, defaults[key])), current.get(key, "<missing>")
        if a != b:
            out.append(f"{key}: checkpoint {a!r} vs config {b!r}")
    return out


def check_config(ckpt: dict, cfg: ViTConfig, path: str | Path = "checkpoint", weights_only: bool = True) -> None:
    """Raise CheckpointError naming every mismatched ViTConfig field."""
    diffs = config_mismatches(ckpt["vit_config"], cfg, weights_only=weights_only)
    if diffs:
        raise CheckpointError(f"{path} was trained with a different model config:\n  "
                              + "\n  ".join(diffs)
                              + "\nUse the config it was trained with, or train a new checkpoint.")


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside DistributedDataParallel / torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def model_from_checkpoint(ckpt: dict, cfg: ViTConfig | None = None, path: str | Path = "checkpoint",
                          map_location: str | torch.device = "cpu"):
    """Build the ViT a checkpoint describes (checking it against `cfg` when given) and load it."""
    if cfg is not None:
        check_config(ckpt, cfg, path)
    else:
        cfg = ViTConfig.from_dict(ckpt["vit_config"])
    model = ViT(cfg)
    load_weights(model, ckpt, path)
    return model.to(map_location).eval()


def load_weights(model: torch.nn.Module, ckpt: dict, path: str | Path = "checkpoint") -> None:
    """Load a checkpoint's weights (stored in any float dtype) into a model built for them."""
    state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{path} does not fit vitlib's ViT ({str(e).splitlines()[0]}). "
                              f"It was probably written by another vitlib version; retrain it.") from None


# ---------------------------------------------------------------------------- RNG states

def rng_state() -> dict:
    """All global RNG states as tensors / plain lists (weights_only-loadable)."""
    _, key, pos, has_gauss, cached = np.random.get_state()
    version, mt, gauss_next = random.getstate()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {"key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
            "python": {"version": version, "state": list(mt), "gauss_next": gauss_next}}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss_next"]))


# ---------------------------------------------------------------------------- training runs

def training_state(cfg: Config, model: torch.nn.Module, optimizer: torch.optim.Optimizer, plateau: Any,
                   epoch: int, global_step: int, best: float, best_epoch: int, history: list[dict],
                   clock: dict) -> dict:
    """Everything `--resume` needs, as plain data (see the module docstring). `clock` holds the
    seconds used and the schedule's plan (vitlib.budget.Plan.to_clock); `plateau` is the original's
    ReduceLROnPlateau, or None when the learning rate is a function of the step (lr_at)."""
    return {"model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
            # torch's name for the steps a schedule has taken; the rest of lr_at's input is the plan
            "scheduler": plateau.state_dict() if plateau is not None else {"last_epoch": global_step},
            "epoch": epoch, "global_step": global_step,
            # (the loader's order and draws are a function of (seed, epoch, rank): nothing to store)
            "rng": rng_state(),
            "best_metric": best, "best_epoch": best_epoch, "history": history, "clock": clock,
            "config": cfg.raw, "vit_config": vit_config_to_dict(cfg.model)}


def restore_training(path: Path, cfg: Config, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     plateau: Any, say: Callable[..., None] = print) -> dict:
    """Load a training_state into model, optimiser (and plateau scheduler) and the RNGs.

    Returns the checkpoint's epoch, global_step, best_metric, best_epoch, history and clock. The
    model config must match exactly (dropout included); changed train_params are allowed but reported.
    """
    # Load to the CPU: RNG states must be CPU tensors, and load_state_dict moves the rest.
    ckpt = load_checkpoint(path, map_location="cpu")
    check_config(ckpt, cfg.model, path, weights_only=False)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    if plateau is not None:
        plateau.load_state_dict(ckpt["scheduler"])
    set_rng_state(ckpt["rng"])
    say(f"resuming {path} after epoch {ckpt['epoch']} (best val acc {ckpt['best_metric']:.2%})")
    old, new = (ckpt.get("config") or {}).get("train_params") or {}, cfg.raw.get("train_params") or {}
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if changed:
        say(f"note: train_params changed since the checkpoint ({', '.join(changed)}); "
            f"the resumed run follows the new values")
    keys = ("epoch", "global_step", "best_metric", "best_epoch", "history")
    return {**{k: ckpt[k] for k in keys}, "clock": ckpt.get("clock") or {}}
