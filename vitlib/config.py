"""YAML run configs: the original project's three sections, with defaults and strict keys.

A config file has the original's sections (`dataset_params`, `model_params`, `train_params`)
plus an optional `inference_params`. `model_params` keeps the original's key names
(n_heads, emb_dim, image_height, ...) and is parsed by `ViTConfig.from_model_params`.
Every other section is a dataclass below, so a misspelt key fails loudly, naming the key,
instead of silently training with a default.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SECTIONS = ("dataset_params", "model_params", "train_params", "inference_params")


@dataclass
class DatasetParams:
    root_dir: str | None = None        # MNIST folder (torchvision layout); None -> $VITLIB_MNIST or data/mnist
    textures: str = "procedural"       # 'procedural' or a folder laid out as {class}/*.png
    threshold: int = 50                # digit mask threshold, as in the original
    seed: int = 0                      # fixes the val/test colours and textures
    val_size: int | None = None        # images held out from MNIST train (None: 5,000, or 10% offline)
    n_texture_instances: int | None = None
    train_limit: int | None = None     # use only the first N training images (quick runs)
    val_limit: int | None = None
    test_limit: int | None = None
    aug_shift: float = 0.0             # train-time digit moves: max shift in pixels,
    aug_rotate: float = 0.0            # max rotation in degrees,
    aug_scale: float = 0.0             # max relative zoom (0 everywhere: the original, no moves)
    aug_elastic: float = 0.0           # std in pixels of a smooth random warp of the digit (0: off)


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
    bf16: str | bool = "auto"          # auto | true | false: bfloat16 autocast
    texture_loss_weight: float = 1.0   # only used when model_params has num_textures > 0
    color_loss_weight: float = 1.0     # only used when model_params has predict_color: true
    color_loss: str = "mse"            # mse | l1
    eval_batch_size: int = 512
    num_threads: int | None = None     # torch threads per process; None: all cores / world size
    device: str = "auto"               # auto | cpu | cuda
    compile: bool = False              # torch.compile the training step's model (eager if it fails)
    save_rank_weights: bool = False    # DDP check: every rank writes rank{r}.pt at the end


@dataclass
class InferenceParams:
    num_images: int = 10               # attention-rollout overlays to draw (the original drew 10)
    discard_ratio: float = 0.0         # Abnar rollout: drop this fraction of the weakest attention
    batch_size: int = 512


@dataclass
class Config:
    """A parsed run config. `raw` is the YAML dict as loaded (stored in every checkpoint)."""
    dataset: DatasetParams
    model: Any                         # vitlib.model.ViTConfig
    train: TrainParams
    inference: InferenceParams
    raw: dict = field(default_factory=dict)
    path: str | None = None

    def run_dir(self, out: str | Path | None = None) -> Path:
        """Where this run writes: <out or cwd>/<task_name>, like the original's task_name folder."""
        return Path(out if out is not None else ".") / self.train.task_name


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
        raise ValueError(f"{where}: train_params.bf16 = {t.bf16!r}; choose auto, true or false.")
    for key in ("batch_size", "epochs", "eval_batch_size"):
        if int(getattr(t, key)) < 1:
            raise ValueError(f"{where}: train_params.{key} must be >= 1, got {getattr(t, key)}.")
    if t.lr <= 0:
        raise ValueError(f"{where}: train_params.lr must be > 0, got {t.lr}.")
    if t.time_budget_min is not None and (isinstance(t.time_budget_min, bool) or
                                          not isinstance(t.time_budget_min, (int, float)) or
                                          not t.time_budget_min > 0):
        raise ValueError(f"{where}: train_params.time_budget_min = {t.time_budget_min!r}; give the "
                         f"minutes the run may take (e.g. 30), or null for no budget.")
    if not 0.0 <= cfg.inference.discard_ratio < 1.0:
        raise ValueError(f"{where}: inference_params.discard_ratio must be in [0, 1).")


def parse_config(raw: dict, where: str = "config") -> Config:
    """Turn a loaded YAML dict into a Config, failing on unknown sections or keys."""
    from vitlib.model import ViTConfig  # deferred: config loading should stay cheap to import

    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a mapping with sections {', '.join(SECTIONS)}.")
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ValueError(f"{where}: unknown section(s): {', '.join(unknown)}. "
                         f"Allowed sections: {', '.join(SECTIONS)}.")
    if "model_params" not in raw:
        raise ValueError(f"{where}: the model_params section is missing.")
    try:
        model = ViTConfig.from_model_params(dict(raw["model_params"] or {}))
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
