"""Checkpoints: atomic writes, validated loads, and the pretrained model that ships with vitlib.

A training checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so that
`torch.load(weights_only=True)` can read it without running arbitrary pickled code:

    model, optimizer, scheduler      state dicts
    epoch, global_step               epochs finished, optimiser steps taken
    rng                              torch / cuda / numpy / python / data-loader RNG states
    best_metric, best_epoch          best validation digit accuracy so far
    history                          one dict per epoch (the rows of metrics.csv)
    clock                            seconds used, epochs planned and the cosine's anchor (time_budget_min)
    config, vit_config               the YAML dict as loaded, and the model's ViTConfig as a dict

The shipped model lives in vitlib/checkpoints/{name}.pt (weights + configs + metrics only).
Notebooks call `load_pretrained()` or `load_or_train(config_path)`.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
PRETRAINED_FORMAT = "vitlib-pretrained-1"
# Fields that change how a model runs but not which weights it has: loading may ignore them.
_RUNTIME_FIELDS = ("fused_attn", "pos_init_std")  # change neither the weights nor their shapes


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: corrupt, truncated, or made for another model."""


# ---------------------------------------------------------------------------- atomic I/O

def save_checkpoint(obj: dict, path: str | Path) -> Path:
    """torch.save `obj` to `path` atomically: a crash mid-write never leaves a half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temp file sits in the same folder so os.replace is a rename, atomic on POSIX and Windows.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; a checkpoint is as readable as any file
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable; not possible on every OS, so best effort
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return path


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


def vit_config_to_dict(cfg) -> dict:
    return _plain(dataclasses.asdict(cfg))


def vit_config_from_dict(d: dict):
    from vitlib.model import ViTConfig
    names = {f.name for f in dataclasses.fields(ViTConfig)}
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names}
    return ViTConfig(**kwargs)


def config_mismatches(stored: dict, cfg, weights_only: bool = True) -> list[str]:
    """'field: checkpoint value vs config value' for every field that differs.

    weights_only=True ignores fields that do not change the weights (dropout rates, fused_attn),
    so a checkpoint trained with dropout loads into an otherwise identical eval-time config.
    """
    current = vit_config_to_dict(cfg)
    out = []
    for key in sorted(set(stored) | set(current)):
        if key in _RUNTIME_FIELDS or (weights_only and "drop" in key):
            continue
        a, b = _plain(stored.get(key, "<missing>")), current.get(key, "<missing>")
        if a != b:
            out.append(f"{key}: checkpoint {a!r} vs config {b!r}")
    return out


def check_config(ckpt: dict, cfg, path: str | Path = "checkpoint", weights_only: bool = True) -> None:
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


def model_from_checkpoint(ckpt: dict, cfg=None, path: str | Path = "checkpoint",
                          map_location: str | torch.device = "cpu"):
    """Build the ViT a checkpoint describes (checking it against `cfg` when given) and load it."""
    from vitlib.model import ViT
    if cfg is not None:
        check_config(ckpt, cfg, path)
    else:
        cfg = vit_config_from_dict(ckpt["vit_config"])
    model = ViT(cfg)
    state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{path} does not fit vitlib's ViT ({str(e).splitlines()[0]}). "
                              f"It was probably written by another vitlib version; retrain it.") from None
    return model.to(map_location).eval()


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

def training_state(cfg, model, optimizer, scheduler, epoch: int, global_step: int, best: float,
                   best_epoch: int, history: list[dict], clock: dict | None = None) -> dict:
    """Everything `--resume` needs, as plain data (see the module docstring). `clock` holds a
    time-budgeted run's elapsed seconds, planned epochs and cosine anchor."""
    return {"model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "epoch": epoch, "global_step": global_step,
            # the loader's order and draws are a function of (seed, epoch, rank): its state is the epoch
            "rng": {**rng_state(), "loader": {"epoch": epoch, "seed": cfg.train.seed}},
            "best_metric": best, "best_epoch": best_epoch, "history": history, "clock": clock or {},
            "config": cfg.raw, "vit_config": vit_config_to_dict(cfg.model)}


def restore_training(path: Path, cfg, model, optimizer, scheduler, say=print):
    """Load a training_state into model/optimiser/scheduler and the RNGs.

    Returns (epoch, global_step, best_metric, best_epoch, history, clock). The model config must match
    exactly (dropout included); changed train_params are allowed but reported.
    """
    # Load to the CPU: RNG states must be CPU tensors, and load_state_dict moves the rest.
    ckpt = load_checkpoint(path, map_location="cpu")
    check_config(ckpt, cfg.model, path, weights_only=False)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    set_rng_state(ckpt["rng"])
    say(f"resuming {path} after epoch {ckpt['epoch']} (best val acc {ckpt['best_metric']:.2%})")
    old, new = (ckpt.get("config") or {}).get("train_params") or {}, cfg.raw.get("train_params") or {}
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if changed:
        say(f"note: train_params changed since the checkpoint ({', '.join(changed)}); "
            f"the resumed run follows the new values")
    return (ckpt["epoch"], ckpt["global_step"], ckpt["best_metric"], ckpt["best_epoch"], ckpt["history"],
            ckpt.get("clock") or {})


# ---------------------------------------------------------------------------- pretrained

def available_pretrained() -> list[str]:
    return sorted(p.stem for p in CHECKPOINT_DIR.glob("*.pt"))


def pretrained_path(name: str = "default") -> Path:
    return CHECKPOINT_DIR / f"{name}.pt"


def load_pretrained(name: str = "default", map_location: str | torch.device = "cpu"):
    """The shipped model `vitlib/checkpoints/{name}.pt` -> (ViT in eval mode, info dict).

    info: config (YAML dict), vit_config, metrics ({'val': ..., 'test': ...}), history (per-epoch
    rows), epoch, path.
    """
    path = pretrained_path(name)
    if not path.is_file():
        have = ", ".join(available_pretrained()) or "none"
        raise FileNotFoundError(f"no pretrained checkpoint {path} (available: {have}). Train one with "
                                f"`python -m vitlib.train --config configs/default.yaml`, then "
                                f"`vitlib.checkpoint.export_pretrained('runs/default', '{name}')`.")
    ckpt = load_checkpoint(path, map_location="cpu")
    model = model_from_checkpoint(ckpt, path=path, map_location=map_location)
    info = {k: ckpt.get(k) for k in ("config", "vit_config", "metrics", "history", "epoch",
                                     "best_metric")}
    info["path"] = str(path)
    return model, info


def export_pretrained(run_dir: str | Path, name: str = "default", dest_dir: str | Path | None = None,
                      ckpt_name: str | None = None, max_mb: float = 10.0) -> Path:
    """Slim a training run's best checkpoint into `{dest_dir}/{name}.pt` (+ _metrics.csv/.json).

    Keeps the weights (fp32, or fp16 when fp32 would exceed `max_mb`), both configs, the per-epoch
    history and, when `python -m vitlib.inference` has run, the test metrics. Drops the optimiser.
    """
    run_dir, dest = Path(run_dir), Path(dest_dir) if dest_dir is not None else CHECKPOINT_DIR
    if ckpt_name is None:
        ckpt_name = "best.pt"
        if not (run_dir / ckpt_name).is_file() and (run_dir / "last.pt").is_file():
            ckpt_name = load_checkpoint(run_dir / "last.pt")["config"].get(
                "train_params", {}).get("ckpt_name", "best.pt")
    ckpt = load_checkpoint(run_dir / ckpt_name)
    state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    nbytes = sum(v.numel() * v.element_size() for v in state.values())
    if nbytes > max_mb * 2**20:  # halve the file; load_pretrained casts back to fp32
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    test_json = run_dir / "output" / "metrics.json"
    history = ckpt.get("history", [])
    best = max(history, key=lambda r: r.get("val_acc", 0.0)) if history else {}
    metrics = {"val": best, "test": json.loads(test_json.read_text()) if test_json.is_file() else None}
    slim = {"format": PRETRAINED_FORMAT, "model": state, "config": ckpt["config"],
            "vit_config": ckpt["vit_config"], "epoch": ckpt.get("epoch"),
            "best_metric": ckpt.get("best_metric"), "history": history, "metrics": metrics}
    out = save_checkpoint(slim, dest / f"{name}.pt")
    if (run_dir / "metrics.csv").is_file():
        shutil.copyfile(run_dir / "metrics.csv", dest / f"{name}_metrics.csv")
    elif history:
        with open(dest / f"{name}_metrics.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(history[0]))
            w.writeheader()
            w.writerows(history)
    (dest / f"{name}_metrics.json").write_text(json.dumps(
        {**metrics, "epochs": ckpt.get("epoch"), "config": ckpt["config"]}, indent=2) + "\n")
    return out


def load_or_train(config_path: str | Path, name: str = "default", out_dir: str | Path | None = None,
                  overrides: dict | None = None, retrain: bool = False):
    """Load the checkpoint, else train (for notebooks) -> (ViT in eval mode, info dict).

    In order: the shipped `vitlib/checkpoints/{name}.pt` if its model config matches the config
    file's; else this config's own run (<out_dir>/<task_name>/best.pt) if it exists and matches;
    else train with the config and load the best checkpoint. info['source'] says which.
    `out_dir` defaults to the repository root, so runs land in runs/<task> whatever the cwd.
    """
    from vitlib.config import load_config
    from vitlib.paths import REPO_ROOT
    cfg = load_config(config_path, overrides)
    if not retrain and pretrained_path(name).is_file():
        ckpt = load_checkpoint(pretrained_path(name))
        if not config_mismatches(ckpt["vit_config"], cfg.model):
            model, info = load_pretrained(name)
            return model, {**info, "source": "pretrained"}
    run_dir = cfg.run_dir(out_dir if out_dir is not None else REPO_ROOT)
    best = run_dir / cfg.train.ckpt_name
    if retrain or not best.is_file() or config_mismatches(load_checkpoint(best)["vit_config"], cfg.model):
        from vitlib.train import train
        train(cfg, out_dir=out_dir if out_dir is not None else REPO_ROOT)
        source = "trained"
    else:
        source = "run"
    ckpt = load_checkpoint(best)
    model = model_from_checkpoint(ckpt, cfg.model, path=best)
    info = {k: ckpt.get(k) for k in ("config", "vit_config", "history", "epoch", "best_metric")}
    return model, {**info, "metrics": None, "path": str(best), "source": source}


def main(argv: list[str] | None = None) -> int:
    """python -m vitlib.checkpoint export RUN_DIR [--name default]: ship a run as the pretrained model."""
    import argparse
    ap = argparse.ArgumentParser(prog="python -m vitlib.checkpoint", description=main.__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("export", help="slim RUN_DIR/best.pt into vitlib/checkpoints/NAME.pt")
    ex.add_argument("run_dir", help="a training run folder, e.g. runs/default")
    ex.add_argument("--name", default="default")
    ex.add_argument("--dest", default=None, help=f"folder (default {CHECKPOINT_DIR})")
    args = ap.parse_args(argv)
    try:
        out = export_pretrained(args.run_dir, args.name, args.dest)
    except (FileNotFoundError, CheckpointError) as e:
        print(f"error: {e}")
        return 2
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MB) and its _metrics.csv/.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
