"""The pretrained models that ship with vitlib, and "load the checkpoint, else train".

    python -m vitlib.hub export RUN_DIR [--name default]   ship a run as vitlib/checkpoints/NAME.pt

A shipped model is vitlib/checkpoints/{name}.pt (weights, both configs, per-epoch history and test
metrics; no optimiser) with {name}_metrics.csv and {name}_metrics.json beside it. This module sits
above vitlib.train (load_or_train may train), so nothing below it imports it.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

from vitlib.checkpoint import (CheckpointError, config_mismatches, load_checkpoint,
                               model_from_checkpoint, save_checkpoint)
from vitlib.config import Config, load_config
from vitlib.model import ViT, ViTConfig
from vitlib.paths import REPO_ROOT, atomic_write_text
from vitlib.train import train, write_metrics_csv

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
PRETRAINED_FORMAT = "vitlib-pretrained-1"


def available_pretrained() -> list[str]:
    return sorted(p.stem for p in CHECKPOINT_DIR.glob("*.pt"))


def pretrained_path(name: str = "default") -> Path:
    return CHECKPOINT_DIR / f"{name}.pt"


def load_pretrained(name: str = "default", map_location: str | torch.device = "cpu") -> tuple[ViT, dict]:
    """The shipped model `vitlib/checkpoints/{name}.pt` -> (ViT in eval mode, info dict).

    info: config (YAML dict), vit_config, metrics ({'val': ..., 'test': ...}), history (per-epoch
    rows), epoch, path.
    """
    path = pretrained_path(name)
    if not path.is_file():
        have = ", ".join(available_pretrained()) or "none"
        raise FileNotFoundError(f"no pretrained checkpoint {path} (available: {have}). Train one with "
                                f"`python -m vitlib.train --config configs/default.yaml`, then "
                                f"`python -m vitlib.hub export runs/default --name {name}` "
                                f"(or vitlib.hub.export_pretrained).")
    ckpt = load_checkpoint(path, map_location="cpu")
    model = model_from_checkpoint(ckpt, path=path, map_location=map_location)
    info = {k: ckpt.get(k) for k in ("config", "vit_config", "metrics", "history", "epoch",
                                     "best_metric")}
    info["path"] = str(path)
    return model, info


def shipped_for(model_cfg: ViTConfig, name: str = "default") -> Path | None:
    """The shipped checkpoint `name` if it holds this very model (same architecture), else None.
    The one rule every "else the shipped model" fallback uses."""
    path = pretrained_path(name)
    if path.is_file() and not config_mismatches(load_checkpoint(path)["vit_config"], model_cfg):
        return path
    return None


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
        write_metrics_csv(history, dest / f"{name}_metrics.csv")
    atomic_write_text(dest / f"{name}_metrics.json", json.dumps(
        {**metrics, "epochs": ckpt.get("epoch"), "config": ckpt["config"]}, indent=2) + "\n")
    return out


def find_model(cfg: Config, run_dir: Path, ckpt: str | Path | None = None,
               device: torch.device | str = "cpu") -> tuple[ViT, str]:
    """The model to evaluate for a run and where it came from: `ckpt` if given, else the run's own
    best checkpoint, else the shipped model when it is this config's model (checked either way)."""
    path = Path(ckpt) if ckpt is not None else run_dir / cfg.train.ckpt_name
    if path.is_file():
        return model_from_checkpoint(load_checkpoint(path), cfg.model, path, device), str(path)
    shipped = shipped_for(cfg.model) if ckpt is None else None
    if shipped is not None:
        print(f"no {path}; using the shipped pretrained model {shipped}")
        return model_from_checkpoint(load_checkpoint(shipped), cfg.model, shipped, device), str(shipped)
    raise FileNotFoundError(f"no checkpoint at {path}. Train first: python -m vitlib.train --config "
                            f"{cfg.path or '<config>'}" + (" (with the same --out)" if ckpt is None else ""))


def load_or_train(config_path: str | Path, name: str = "default", out_dir: str | Path | None = None,
                  overrides: dict | None = None, retrain: bool = False) -> tuple[ViT, dict]:
    """Load the checkpoint, else train (for notebooks) -> (ViT in eval mode, info dict).

    In order: the shipped `vitlib/checkpoints/{name}.pt` if it is the config file's model (so the
    book shows the model its prose describes); else this config's own run
    (<out_dir>/<task_name>/best.pt) if it exists and matches; else train with the config and load
    the best checkpoint. info['source'] says which. `out_dir` defaults to the repository root, so
    runs land in runs/<task> whatever the cwd.
    """
    cfg = load_config(config_path, overrides)
    if not retrain and shipped_for(cfg.model, name) is not None:
        model, info = load_pretrained(name)
        return model, {**info, "source": "pretrained"}
    out_dir = out_dir if out_dir is not None else REPO_ROOT
    best = cfg.run_dir(out_dir) / cfg.train.ckpt_name
    source = "run"
    if retrain or not best.is_file() or config_mismatches(load_checkpoint(best)["vit_config"], cfg.model):
        train(cfg, out_dir=out_dir)
        source = "trained"
    ckpt = load_checkpoint(best)
    model = model_from_checkpoint(ckpt, cfg.model, path=best)
    info = {k: ckpt.get(k) for k in ("config", "vit_config", "history", "epoch", "best_metric")}
    return model, {**info, "metrics": None, "path": str(best), "source": source}


def main(argv: list[str] | None = None) -> int:
    """python -m vitlib.hub export RUN_DIR [--name default]: ship a run as the pretrained model."""
    ap = argparse.ArgumentParser(prog="python -m vitlib.hub", description=main.__doc__)
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
