"""YAML run configs: the original project's three sections, with defaults and strict keys.

A config file has the original's sections (`dataset_params`, `model_params`, `train_params`)
plus an optional `inference_params`. `model_params` keeps the original's key names
(n_heads, emb_dim, image_height, ...) and is parsed by `vit_config_from_params` below.
Every other section is a dataclass below, so a misspelt key fails loudly, naming the key,
instead of silently training with a default.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from vitlib.model import ViTConfig
from vitlib.paths import output_root

SECTIONS = ("dataset_params", "model_params", "train_params", "inference_params")


@dataclass
class DatasetParams:
    root_dir: str | None = None        # MNIST folder (torchvision layout); None -> $VITLIB_MNIST or data/mnist
    textures: str = "procedural"       # 'procedural' or a folder laid out as {class}/*.png
    threshold: int = 50                # digit mask threshold, as in the original
    seed: int = 0                      # fixes the val/test colours and textures
    val_size: int | None = None        # images held out from MNIST train (None: 5,000, or 10% offline)
    n_texture_instances: int | None = None
    train_limit: int | None = None     # use only N training images (a fixed random subset)
    epoch_samples: int | None = None   # training samples per epoch: the (limited) training set is
                                       # repeated or cut to this many, so a run's length in steps is
                                       # the same on full MNIST and on the 3,600-image offline fallback
    val_limit: int | None = None
    test_limit: int | None = None
    aug_shift: float = 0.0             # train-time digit moves: max shift in pixels,
    aug_rotate: float = 0.0            # max rotation in degrees,
    aug_scale: float = 0.0             # max relative zoom (0 everywhere: the original, no moves)
    aug_elastic: float = 0.0           # std in pixels of a smooth random warp of the digit (0: off)
    color_label_corr: float = 0.0      # share of train/val images painted in their digit's own colour
                                       # (0.95: the colour shortcut of chapter 07); test stays random


@dataclass
class TrainParams:
    task_name: str = "runs/default"    # output folder, relative to the output root (cwd by default)
    batch_size: int = 128
    epochs: int = 10                   # with time_budget_min: the most epochs to train
    time_budget_min: float | None = None  # wall-clock minutes for the whole run; the schedule is laid
                                          # over the epochs that fit (re-planned every epoch)
    lr: float = 1e-3
    seed: int = 1111
    ckpt_name: str = "best.pt"         # best-on-validation checkpoint; last.pt is written beside it
    optimizer: str = "adamw"           # adamw | adam (the original)
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    scheduler: str = "cosine"          # cosine (per-step, after linear warm-up) | plateau (the original) | none
    warmup_epochs: float = 1.0
    min_lr: float = 1e-5               # cosine floor
    plateau_factor: float = 0.5        # the original's ReduceLROnPlateau(factor=0.5, patience=2)
    plateau_patience: int = 2
    label_smoothing: float = 0.0
    grad_clip: float | None = 1.0      # max global grad norm; None/0 disables
    bf16: str | bool = "auto"          # auto | true | false: bfloat16 autocast; auto times fp32 and
                                       # bf16 on this machine and keeps the faster (vitlib.runtime)
    texture_loss_weight: float = 1.0   # only used when model_params has num_textures > 0
    color_loss_weight: float = 1.0     # only used when model_params has predict_color: true
    color_loss: str = "mse"            # mse | l1
    eval_batch_size: int = 512
    num_threads: int | None = None     # torch threads per process; None: all cores / world size
    device: str = "auto"               # auto | cpu | cuda
    compile: bool = False              # torch.compile the training step's model (eager if it fails)
    save_rank_weights: bool = False    # DDP check: every rank writes rank{r}.pt at the end
    init_from: str | None = None       # start from these weights (a checkpoint .pt, e.g. vitlib/
                                       # checkpoints/fine.pt) instead of a random init: fine-tuning.
                                       # Optimiser, schedule and epochs start fresh; --resume wins


@dataclass
class InferenceParams:
    num_images: int = 10               # attention-rollout overlays to draw (the original drew 10)
    discard_ratio: float = 0.0         # Abnar rollout: drop this fraction of the weakest attention
    batch_size: int = 512


@dataclass
class Config:
    """A parsed run config. `raw` is the YAML dict as loaded (stored in every checkpoint)."""
    dataset: DatasetParams
    model: ViTConfig
    train: TrainParams
    inference: InferenceParams
    raw: dict = field(default_factory=dict)
    path: str | None = None

    def run_dir(self, out: str | Path | None = None) -> Path:
        """Where this run writes: <out, else $VITLIB_OUT, else the cwd>/<task_name>, like the
        original's task_name folder."""
        return output_root(out) / self.train.task_name


def _build(cls, section: str, values: dict | None, where: str):
    values = dict(values or {})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) in {section}: {', '.join(unknown)}. "
                         f"Allowed keys: {', '.join(sorted(names))}.")
    if "betas" in values:
        values["betas"] = tuple(values["betas"])
    return cls(**values)


def _validate(cfg: Config, where: str) -> None:
    t = cfg.train
    choices = {"optimizer": ("adamw", "adam"), "scheduler": ("cosine", "plateau", "none"),
               "color_loss": ("mse", "l1"), "device": ("auto", "cpu", "cuda")}
    for key, allowed in choices.items():
        if getattr(t, key) not in allowed:
            raise ValueError(f"{where}: train_params.{key} = {getattr(t, key)!r}; "
                             f"choose one of {', '.join(allowed)}.")
    if str(t.bf16).lower() not in ("auto", "true", "false"):
        raise ValueError(f"{where}: train_params.bf16 = {t.bf16!r}; choose auto, true or false "
                         f"(auto: time both on this machine and keep the faster).")
    for key in ("batch_size", "epochs", "eval_batch_size"):
        if int(getattr(t, key)) < 1:
            raise ValueError(f"{where}: train_params.{key} must be >= 1, got {getattr(t, key)}.")
    for key in ("train_limit", "val_limit", "test_limit", "epoch_samples"):
        v = getattr(cfg.dataset, key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"{where}: dataset_params.{key} = {v!r}; give a whole number >= 1, or null.")
    if t.lr <= 0:
        raise ValueError(f"{where}: train_params.lr must be > 0, got {t.lr}.")
    if t.time_budget_min is not None and (isinstance(t.time_budget_min, bool) or
                                          not isinstance(t.time_budget_min, (int, float)) or
                                          not t.time_budget_min > 0):
        raise ValueError(f"{where}: train_params.time_budget_min = {t.time_budget_min!r}; give the "
                         f"minutes the run may take (e.g. 30), or null for no budget.")
    if not 0.0 <= cfg.inference.discard_ratio < 1.0:
        raise ValueError(f"{where}: inference_params.discard_ratio must be in [0, 1).")


# ---------------------------------------------------------------------------- model_params

# The original project's `model_params` names for ViTConfig fields (vitlib's own names work too).
ORIGINAL_KEYS = {"ff_dim": "mlp_dim", "im_channels": "in_channels", "patch_emb_drop": "patch_dropout",
                 "attn_drop": "attn_dropout", "ff_drop": "mlp_dropout"}
SIZE_KEYS = {"image_size": ("image_height", "image_width"), "patch_size": ("patch_height", "patch_width")}
IGNORED_KEYS = ("bg_classes",)  # in the original YAML, unused by its model (no texture head)


def vit_config_from_params(params: dict[str, Any]) -> ViTConfig:
    """A `model_params` section, in the original's key names or ours, -> ViTConfig.

    Keys left out take the values of the model the section is written for. In vitlib's names
    (mlp_dim, image_size, ...) that is ViTConfig(), the book's model, as in Python. In the original
    project's names (ff_dim, image_height, ...) it is ViTConfig.original(): its YAML left qkv_bias,
    norm_eps and the rest to its code, so an original YAML keeps giving the original's model.
    Unlike the original, `attn_drop` is used; `bg_classes` is accepted and ignored, as the original
    model did.
    """
    ours = {f.name for f in dataclasses.fields(ViTConfig)}
    sizes = {k for pair in SIZE_KEYS.values() for k in pair}
    known = ours | set(ORIGINAL_KEYS) | sizes | set(IGNORED_KEYS)
    unknown = sorted(k for k in params if k not in known)
    if unknown:
        raise ValueError(f"unknown model_params key(s) {unknown}; valid keys are {sorted(known)}")
    twice = sorted(k for k, f in ORIGINAL_KEYS.items() if k in params and f in params)
    if twice:
        raise ValueError(f"model_params gives both {twice} and their vitlib names "
                         f"{[ORIGINAL_KEYS[k] for k in twice]}: keep one of each")
    kw = {ORIGINAL_KEYS.get(k, k): v for k, v in params.items() if k not in sizes and k not in IGNORED_KEYS}
    for name, (hk, wk) in SIZE_KEYS.items():
        if hk in params or wk in params:
            if name in params:
                raise ValueError(f"give either {name} or {hk}/{wk}, not both")
            h, w = params.get(hk, params.get(wk)), params.get(wk, params.get(hk))
            kw[name] = int(h) if h == w else (int(h), int(w))
    original = any(k in params for k in (*ORIGINAL_KEYS, *sizes, *IGNORED_KEYS))
    base = ViTConfig.original() if original else ViTConfig()
    return dataclasses.replace(base, **kw)


def parse_config(raw: dict, where: str = "config") -> Config:
    """Turn a loaded YAML dict into a Config, failing on unknown sections or keys."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a mapping with sections {', '.join(SECTIONS)}.")
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ValueError(f"{where}: unknown section(s): {', '.join(unknown)}. "
                         f"Allowed sections: {', '.join(SECTIONS)}.")
    if "model_params" not in raw:
        raise ValueError(f"{where}: the model_params section is missing.")
    try:
        model = vit_config_from_params(dict(raw["model_params"] or {}))
    except (TypeError, ValueError, KeyError) as e:
        raise ValueError(f"{where}: bad model_params: {e}") from None
    cfg = Config(dataset=_build(DatasetParams, "dataset_params", raw.get("dataset_params"), where),
                 model=model,
                 train=_build(TrainParams, "train_params", raw.get("train_params"), where),
                 inference=_build(InferenceParams, "inference_params", raw.get("inference_params"), where),
                 raw=copy.deepcopy(raw), path=None)
    _validate(cfg, where)
    return cfg


def load_config(path: str | Path, overrides: dict | None = None) -> Config:
    """Read a YAML config. `overrides` is {section: {key: value}} merged on top (tests, notebooks).

    A relative path is looked up from the cwd, then from the repository root.
    """
    path = Path(path)
    if not path.is_file() and not path.is_absolute():
        from vitlib.paths import REPO_ROOT  # notebooks run from notebooks/: 'configs/x.yaml' still works
        if (REPO_ROOT / path).is_file():
            path = REPO_ROOT / path
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} not found; the shipped ones are in configs/ "
                                f"(quick.yaml, default.yaml, seed.yaml).")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML: {e}") from None
    raw = merge(raw, overrides or {})
    cfg = parse_config(raw, where=str(path))
    cfg.path = str(path)
    return cfg


def merge(raw: dict, overrides: dict) -> dict:
    """Copy of `raw` with {section: {key: value}} overrides applied."""
    out = copy.deepcopy(raw)
    for section, values in overrides.items():
        out.setdefault(section, {})
        out[section] = {**(out[section] or {}), **values}
    return out


def parse_overrides(items: list[str]) -> dict:
    """['train_params.epochs=3', ...] -> {'train_params': {'epochs': 3}} (values parsed as YAML)."""
    out: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot:
            raise ValueError(f"--set {item!r}: write section.key=value, e.g. train_params.epochs=3")
        out.setdefault(section, {})[name] = yaml.safe_load(value)
    return out


# ---------------------------------------------------------------------------- command lines

def run_arg_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The arguments every run command shares: --config, --out and --set."""
    ap = argparse.ArgumentParser(prog=prog, description=description)
    ap.add_argument("--config", dest="config_path", default="configs/default.yaml", help="YAML config")
    ap.add_argument("--out", default=None, help="folder holding <task_name>/ (default: $VITLIB_OUT or cwd)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override a config value, e.g. --set train_params.epochs=3 (repeatable)")
    return ap


def run_cli(ap: argparse.ArgumentParser, run: Callable[[Config, argparse.Namespace], Any],
            argv: list[str] | None = None) -> int:
    """Parse argv, load the config with its --set overrides and call run(cfg, args). A bad config,
    a missing file or an unusable checkpoint (a ValueError) is one 'error:' line and exit code 2."""
    args = ap.parse_args(argv)
    import matplotlib
    matplotlib.use("Agg")  # command lines only write PNGs; they never need a display
    try:
        run(load_config(args.config_path, parse_overrides(args.overrides)), args)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
