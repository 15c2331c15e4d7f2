"""Train a ViT on coloured MNIST: `python -m vitlib.train --config configs/default.yaml [--resume]`.

The original's tools/train.py, done right:
  * AdamW with linear warm-up then per-step cosine decay (the original's Adam +
    ReduceLROnPlateau is `optimizer: adam, scheduler: plateau`);
  * the best checkpoint is chosen on a held-out validation split, not on training loss;
  * bf16 autocast where it is measured to be faster, label smoothing, gradient clipping;
  * an optional wall-clock budget: the schedule is re-planned to the epochs that fit (budget.py);
  * optional texture-classification and colour-regression heads (multi-task loss);
  * checkpoints hold everything needed to resume bit for bit; metrics.csv and curves.png record
    each epoch;
  * `torchrun --nproc_per_node=N -m vitlib.train ...` trains with DistributedDataParallel.

Everything lands in <out>/<task_name>/ where <out> is --out, else $VITLIB_OUT, else the cwd.
"""
from __future__ import annotations

import csv
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from vitlib.budget import Plan, TimeBudget, lr_at, replan
from vitlib.checkpoint import (check_config, load_checkpoint, load_weights, restore_training, save_checkpoint, training_state,
                               vit_config_to_dict)
from vitlib.config import Config, TrainParams, load_config, parse_config, run_arg_parser, run_cli
from vitlib.data import BatchLoader, ColoredMNIST, DigitAugment
from vitlib.cnn import build_model
from vitlib.model import Output, ViT, as_heads, set_fused_attention
from vitlib.paths import atomic_write
from vitlib.runtime import Dist, compile_or_eager, num_threads, resolve_precision, seed_everything
from vitlib.viz import plot_curves

CSV_FIELDS = ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "val_texture_acc",
              "val_color_mae", "images_per_s", "seconds"]


# ---------------------------------------------------------------------------- data

class Limited(torch.utils.data.Dataset):
    """`n` samples of a ColoredMNIST, keeping the batched fast path: a fixed random subset of n
    when the dataset has at least n (train_limit; random, not the first n, because the offline
    fallback is sorted by digit), or the dataset repeated until there are n (epoch_samples, cycle).
    Repeats are not copies: a training sample gets a fresh colour, texture and crop at each draw."""

    def __init__(self, ds, n: int, cycle: bool = False):
        self.ds, self.n = ds, int(n) if cycle else min(int(n), len(ds))
        if cycle or self.n == len(ds):
            self.index = torch.arange(len(ds))
        else:  # the same subset in every run (seed 0), in the dataset's order
            perm = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))
            self.index = perm[:self.n].sort().values
        self.labels = ds.labels[self._source(torch.arange(self.n))]
        self.distinct = min(self.n, getattr(ds, "distinct", len(ds)))  # different images in it

    def _source(self, idx: torch.Tensor) -> torch.Tensor:
        return self.index[idx % self.n % len(self.index)]   # indices into the wrapped dataset

    def __len__(self) -> int:
        return self.n

    def get_batch(self, indices, generator=None, **kwargs):
        idx = torch.as_tensor(indices)
        if len(idx) and (idx.min() < -self.n or idx.max() >= self.n):
            raise IndexError(f"index out of range for {self.n} samples")
        return self.ds.get_batch(self._source(idx), generator=generator, **kwargs)

    def __getitem__(self, i: int):
        if not -self.n <= i < self.n:
            raise IndexError(f"index {i} out of range for {self.n} samples")
        return self.ds[int(self._source(torch.tensor(i)))]

    def __getattr__(self, name):  # texture_names, num_textures, source, split, ...
        if name in ("ds", "n", "distinct"):
            raise AttributeError(name)
        return getattr(self.ds, name)


def make_dataset(cfg: Config, split: str):
    """ColoredMNIST for one split, sized for the model and cut to the config's *_limit."""
    d = cfg.dataset
    ds = ColoredMNIST(split=split, image_size=cfg.model.image_size, textures=d.textures,
                      threshold=d.threshold, seed=d.seed, val_size=d.val_size, root=d.root_dir,
                      n_texture_instances=d.n_texture_instances,
                      augment=DigitAugment(d.aug_shift, d.aug_rotate, d.aug_scale, d.aug_elastic),
                      # the shortcut is in the data a model learns from; test measures what it costs
                      color_label_corr=0.0 if split == "test" else d.color_label_corr)
    if cfg.model.num_textures and cfg.model.num_textures != ds.num_textures:
        raise ValueError(f"model_params.num_textures = {cfg.model.num_textures} but the dataset has "
                         f"{ds.num_textures} texture classes; set num_textures: {ds.num_textures}")
    limit = getattr(d, f"{split}_limit")
    ds = Limited(ds, limit) if limit else ds
    if split == "train" and d.epoch_samples:  # sized in samples seen, so the same on any data source
        ds = Limited(ds, d.epoch_samples, cycle=True)
    return ds


# ---------------------------------------------------------------------------- loss, optimiser

class Objective:
    """Digit cross-entropy (+ texture cross-entropy, + colour MSE/L1), weighted by the config."""

    def __init__(self, tp: TrainParams, label_smoothing: float | None = None):
        self.tp = tp
        self.smoothing = tp.label_smoothing if label_smoothing is None else label_smoothing

    def __call__(self, out: Output, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(the weighted loss, the digit logits) of a ViT output on a batch."""
        heads = as_heads(out)
        logits = heads["number"]
        loss = F.cross_entropy(logits.float(), batch["number_cls"], label_smoothing=self.smoothing)
        if "texture" in heads:
            loss = loss + self.tp.texture_loss_weight * F.cross_entropy(
                heads["texture"].float(), batch["texture_cls"], label_smoothing=self.smoothing)
        if "color" in heads:
            err = F.mse_loss if self.tp.color_loss == "mse" else F.l1_loss
            loss = loss + self.tp.color_loss_weight * err(heads["color"].float(), batch["color"])
        return loss, logits


def make_optimizer(model: torch.nn.Module, tp: TrainParams) -> torch.optim.Optimizer:
    """AdamW (or the original's plain Adam) at tp.lr; the schedule sets each step's rate (lr_at).
    No weight decay on biases, norms, the CLS token and position embeddings (as timm does; nanoGPT
    decays every tensor with two or more dimensions, its embeddings included)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 and "pos_embed" not in name and "cls_token" not in name else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": tp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    cls = torch.optim.AdamW if tp.optimizer == "adamw" else torch.optim.Adam
    if tp.optimizer == "adam":  # the original: plain Adam, no decay
        groups = [{"params": decay + no_decay, "weight_decay": 0.0}]
    try:  # one fused kernel for the whole update (CPU and CUDA in recent torch)
        return cls(groups, lr=tp.lr, betas=tp.betas, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return cls(groups, lr=tp.lr, betas=tp.betas, foreach=True)


# ---------------------------------------------------------------------------- evaluation

@torch.no_grad()
def evaluate(model: torch.nn.Module, loader, device: torch.device, bf16: bool = False,
             objective: Objective | None = None, dist: Dist | None = None,
             return_predictions: bool = False, desc: str | None = None) -> dict:
    """Loss, digit accuracy, texture accuracy and colour MAE (None when a head is absent).

    With `dist`, every rank evaluates its shard and the sums are reduced, so all ranks agree.
    Colour MAE is in RGB units of [0, 1], averaged over the three channels.
    """
    model.eval()
    objective = objective or Objective(TrainParams(), label_smoothing=0.0)
    s = dict(loss=0.0, correct=0.0, n=0.0, tex=0.0, col=0.0)
    has_tex = has_col = False
    preds, targets = [], []
    for batch in tqdm(loader, desc=desc, leave=False, disable=desc is None):
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            heads = as_heads(model(batch["image"]))
        loss, logits = objective(heads, batch)
        b = len(logits)
        pred = logits.argmax(-1)
        s["loss"] += loss.item() * b
        s["correct"] += (pred == batch["number_cls"]).sum().item()
        s["n"] += b
        if "texture" in heads:
            has_tex = True
            s["tex"] += (heads["texture"].argmax(-1) == batch["texture_cls"]).sum().item()
        if "color" in heads:
            has_col = True
            s["col"] += (heads["color"].float() - batch["color"]).abs().mean(-1).sum().item()
        if return_predictions:
            preds.append(pred.cpu())
            targets.append(batch["number_cls"].cpu())
    if dist is not None:
        s = dict(zip(s, dist.sum(list(s.values()))))
    n = max(s["n"], 1.0)
    res = {"loss": s["loss"] / n, "acc": s["correct"] / n, "n": int(s["n"]),
           "texture_acc": s["tex"] / n if has_tex else None,
           "color_mae": s["col"] / n if has_col else None}
    if return_predictions:
        res["preds"], res["targets"] = torch.cat(preds), torch.cat(targets)
    return res


# ---------------------------------------------------------------------------- records

def write_metrics_csv(history: list[dict], path: Path) -> None:
    with atomic_write(path, "w") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for row in history:
            w.writerow({k: ("" if row.get(k) is None else row[k]) for k in CSV_FIELDS})


def _bar_interval() -> float:
    """Redraw bars often on a terminal or in Jupyter, rarely in a log file (CI)."""
    interactive = sys.stderr.isatty() or "notebook" in tqdm.__module__  # tqdm.auto picked a widget
    return 0.1 if interactive else 10.0


def _fmt(row: dict, epochs: int, best: bool) -> str:
    extra = ""
    if row.get("val_texture_acc") is not None:
        extra += f" tex {row['val_texture_acc']:.1%}"
    if row.get("val_color_mae") is not None:
        extra += f" colour MAE {row['val_color_mae']:.3f}"
    return (f"epoch {row['epoch']}/{epochs} | lr {row['lr']:.2e} | train loss {row['train_loss']:.4f} "
            f"acc {row['train_acc']:.2%} | val loss {row['val_loss']:.4f} acc {row['val_acc']:.2%}{extra} | "
            f"{row['images_per_s']:,.0f} img/s | {row['seconds']:.1f} s" + (" | best, saved" if best else ""))


# ---------------------------------------------------------------------------- a run

@dataclass
class TrainState:
    """Everything one training run holds from epoch to epoch."""
    cfg: Config
    dist: Dist
    model: ViT                  # the plain model: evaluation and checkpoints use it
    net: torch.nn.Module        # what the steps run: the model, or its DDP / compiled wrapper
    optimizer: torch.optim.Optimizer
    plateau: Any                # ReduceLROnPlateau for `scheduler: plateau`, else None (lr_at rules)
    objective: Objective
    train_loader: BatchLoader
    val_loader: BatchLoader
    bf16: bool
    run_dir: Path
    budget: TimeBudget
    plan: Plan                  # the epochs the schedule spans now (re-planned by a time budget)
    epoch: int = 0              # epochs finished
    step: int = 0               # optimiser steps taken
    best: float = -1.0          # best validation digit accuracy so far, and its epoch
    best_epoch: int = 0
    history: list[dict] = field(default_factory=list)
    stopped_by_budget: bool = False
    stop_note: str = ""

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train_loader)

    def lr(self) -> float:
        """The learning rate of the next optimiser step."""
        if self.plateau is not None:
            return self.optimizer.param_groups[0]["lr"]
        return lr_at(self.step, self.cfg.train, self.plan, self.steps_per_epoch)

    def say(self, *args) -> None:
        if self.dist.main:
            tqdm.write(" ".join(str(a) for a in args))


def build_run(cfg: Config, dist: Dist, resume: bool, out_dir) -> TrainState:
    """Model, precision, data, optimiser and clock for a run, resumed from last.pt if asked."""
    tp, device = cfg.train, dist.device
    run_dir = cfg.run_dir(out_dir)
    if dist.main:
        run_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(tp.seed)   # same initial weights on every rank (DDP also broadcasts rank 0's)
    model = build_model(cfg.model).to(device)
    if tp.init_from:
        _init_from(model, tp.init_from)
    # fp32 or bf16 autocast, and the attention path: as set, or with `bf16: auto` on a CPU the
    # fastest measured on this model (once per machine and shape; one line says what and why).
    precision = resolve_precision(tp.bf16, model, tp.batch_size, device, dist=dist)
    set_fused_attention(model, precision.fused_attn)  # before torch.compile traces the model
    on_gpu = device if device.type == "cuda" else None  # composite batches there: only uint8 crosses
    train_loader = BatchLoader(make_dataset(cfg, "train"), tp.batch_size, shuffle=True, seed=tp.seed,
                               drop_last=True, rank=dist.rank, world_size=dist.world, device=on_gpu)
    val_loader = BatchLoader(make_dataset(cfg, "val"), tp.eval_batch_size, shuffle=False, rank=dist.rank,
                             world_size=dist.world, device=on_gpu)
    if len(train_loader) == 0:
        raise ValueError(f"{len(train_loader.ds)} training images are fewer than one batch of {tp.batch_size} "
                         f"per process; lower train_params.batch_size or raise dataset_params.train_limit")
    optimizer = make_optimizer(model, tp)
    plateau = (torch.optim.lr_scheduler.ReduceLROnPlateau(  # the original's, on validation loss
        optimizer, mode="min", factor=tp.plateau_factor, patience=tp.plateau_patience)
        if tp.scheduler == "plateau" else None)
    st = TrainState(cfg, dist, model, model, optimizer, plateau, Objective(tp), train_loader, val_loader,
                    precision.bf16, run_dir, TimeBudget(tp.time_budget_min), Plan(tp.epochs))
    _resume_or_start(st, resume)
    if dist.enabled:
        st.net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if tp.compile:
        st.net = compile_or_eager(st.net, model, tp, device, st.bf16, st.say)
    if st.epoch == 0:
        ds = train_loader.ds
        distinct = getattr(ds, "distinct", len(ds))
        seen = f" ({len(ds):,} samples per epoch)" if distinct != len(ds) else ""
        st.say(f"{model.num_parameters():,} parameters | {distinct:,} train{seen} / {len(val_loader.ds):,} val "
               f"images ({getattr(ds, 'source', '?')}) | {dist.world} x {device.type}"
               f"{' bf16' if st.bf16 else ' fp32'} | {st.steps_per_epoch} steps/epoch | {run_dir}")
    return st


def _init_from(model: ViT, path: str) -> None:
    """Fine-tuning: load a checkpoint's weights into the fresh model (its config must match)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"train_params.init_from = {path!r}: no such checkpoint. Fix: give a .pt "
                                f"file, e.g. vitlib/checkpoints/fine.pt or runs/fine/best.pt, or null")
    ckpt = load_checkpoint(path)
    check_config(ckpt, model.config, path)
    load_weights(model, ckpt, path)


def _resume_or_start(st: TrainState, resume: bool) -> None:
    last_path, tp = st.run_dir / "last.pt", st.cfg.train
    if resume and last_path.is_file():
        got = restore_training(last_path, st.cfg, st.model, st.optimizer, st.plateau, st.say)
        st.epoch, st.step, st.best, st.best_epoch, st.history = (
            got["epoch"], got["global_step"], got["best_metric"], got["best_epoch"], got["history"])
        if tp.time_budget_min is not None:  # go on with the resumed run's plan and the time it used
            st.budget = TimeBudget(tp.time_budget_min, spent_s=got["clock"].get("elapsed_s", 0.0))
            st.plan = Plan.from_clock(got["clock"], tp.epochs)
    elif resume:
        st.say(f"--resume: no {last_path} yet, starting from scratch")
    elif last_path.is_file():
        st.say(f"note: {st.run_dir} already holds a run; starting afresh and overwriting it "
               f"(use --resume to continue it)")


def train_step(st: TrainState, batch: dict, params: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """forward -> loss -> backward -> (clip) -> update, at this step's learning rate."""
    tp = st.cfg.train
    if st.plateau is None:
        lr = st.lr()
        for group in st.optimizer.param_groups:
            group["lr"] = lr
    with torch.autocast(st.dist.device.type, dtype=torch.bfloat16, enabled=st.bf16):
        out = st.net(batch["image"])
    loss, logits = st.objective(out, batch)
    st.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if tp.grad_clip:
        torch.nn.utils.clip_grad_norm_(params, tp.grad_clip, foreach=True)
    st.optimizer.step()
    st.step += 1
    return loss.detach(), logits.detach()


def train_one_epoch(st: TrainState, progress: bool = True) -> dict:
    """One pass over the training data. Returns its loss, accuracy and timings (`t_skip`: when
    the steps timed for the budget began, after torch.compile's first steps)."""
    tp, dist, device = st.cfg.train, st.dist, st.dist.device
    # Per-epoch seeds: dropout and data draws depend only on (seed, epoch, rank), so a resumed run,
    # or one on another number of processes' rank r, replays exactly.
    torch.manual_seed(tp.seed * 1_000_003 + st.epoch * 1009 + dist.rank)
    st.train_loader.set_epoch(st.epoch)
    st.net.train()
    params = [p for p in st.model.parameters() if p.requires_grad]
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen, skip = 0, min(st.steps_per_epoch // 4, 50)
    t0 = t_skip = time.perf_counter()
    bar = tqdm(st.train_loader, desc=f"epoch {st.epoch + 1}/{st.plan.epochs}", leave=False,
               disable=not (progress and dist.main), dynamic_ncols=True, mininterval=_bar_interval())
    for i, batch in enumerate(bar):
        if i == skip:
            t_skip = time.perf_counter()
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        loss, logits = train_step(st, batch, params)
        loss_sum += loss.double() * len(logits)
        correct += (logits.argmax(-1) == batch["number_cls"]).sum()
        seen += len(logits)
        if i % 20 == 0 or i == st.steps_per_epoch - 1:  # .item() syncs the GPU: not every step
            bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}", acc=f"{correct.item() / seen:.2%}",
                            lr=f"{st.lr():.1e}", refresh=False)
    t_loop = time.perf_counter()
    l_sum, c_sum, n_sum, t_sum = dist.sum([loss_sum.item(), float(correct.item()), float(seen), t_loop - t0])
    return {"train_loss": l_sum / n_sum, "train_acc": c_sum / n_sum, "images_per_s": n_sum / (t_sum / dist.world),
            "t0": t0, "t_skip": t_skip, "t_loop": t_loop, "skip": skip}


def after_epoch(st: TrainState, timing: dict, book_s: float) -> None:
    """The time budget's turn: time this epoch, re-plan the epochs that fit (rank 0's plan on every
    rank), anchor the cosine there, and note when nothing more fits."""
    if st.cfg.train.time_budget_min is None:
        return
    cap, first = st.cfg.train.epochs, not st.budget.epoch_secs
    train_s = timing["t_loop"] - timing["t0"]
    if first:  # this process's first epoch: time the steps after torch.compile's start
        n = st.steps_per_epoch
        train_s = (timing["t_loop"] - timing["t_skip"]) * n / max(1, n - timing["skip"])
    # the steps + validation + the last epoch's checkpoint/plot time (0 on the first)
    plan, epoch_s = st.budget.after_epoch(train_s + time.perf_counter() - timing["t_loop"] + book_s,
                                          st.epoch, cap)
    plan = int(st.dist.sum([plan if st.dist.main else 0.0])[0])
    if first:  # later plans show in each epoch's "k/E" and in the last line
        st.say(f"time budget {st.cfg.train.time_budget_min:g} min: epoch {st.epoch} took ~{epoch_s:.1f} s "
               f"once compiled; training {plan} of at most {cap} epochs, the cosine schedule laid over them")
    elif plan != st.plan.epochs:
        st.budget.replans += 1
    if plan == st.epoch < st.plan.epochs:  # nothing more fits before the budget runs out
        st.stopped_by_budget = True
        st.stop_note = (f"time budget {st.cfg.train.time_budget_min:g} min reached: stopping after epoch "
                        f"{st.epoch} of {st.plan.epochs} (the learning rate had not reached min_lr)")
    st.plan = replan(st.plan, plan, st.step, st.cfg.train, st.steps_per_epoch)


def save(st: TrainState, improved: bool) -> float:
    """last.pt (and the best checkpoint when it improved), metrics.csv and curves.png, on rank 0;
    returns the seconds it took (the budget counts them)."""
    if not st.dist.main:
        return 0.0
    t0 = time.perf_counter()
    clock = {"elapsed_s": st.budget.elapsed_s, **st.plan.to_clock()}
    state = training_state(st.cfg, st.model, st.optimizer, st.plateau, st.epoch, st.step, st.best,
                           st.best_epoch, st.history, clock)
    save_checkpoint(state, st.run_dir / "last.pt")
    if improved:
        save_checkpoint(state, st.run_dir / st.cfg.train.ckpt_name)
    write_metrics_csv(st.history, st.run_dir / "metrics.csv")
    plot_curves(st.history, st.run_dir / "curves.png", title=st.cfg.train.task_name)
    return time.perf_counter() - t0


def run_epoch(st: TrainState, progress: bool, book_s: float) -> float:
    """Train, validate, re-plan, save and report one epoch; returns the seconds saving took."""
    timing = train_one_epoch(st, progress)
    val = evaluate(st.model, st.val_loader, st.dist.device, st.bf16, st.objective, st.dist)
    lr = st.lr()  # the rate the schedule has reached at the epoch's end
    if st.plateau is not None:
        st.plateau.step(val["loss"])
    st.epoch += 1
    row = {"epoch": st.epoch, "lr": lr, "train_loss": timing["train_loss"], "train_acc": timing["train_acc"],
           "val_loss": val["loss"], "val_acc": val["acc"], "val_texture_acc": val["texture_acc"],
           "val_color_mae": val["color_mae"], "images_per_s": timing["images_per_s"],
           "seconds": time.perf_counter() - timing["t0"]}
    st.history.append(row)
    improved = val["acc"] > st.best
    if improved:
        st.best, st.best_epoch = val["acc"], st.epoch
    after_epoch(st, timing, book_s)  # before saving, so that the checkpoint holds the new plan
    book_s = save(st, improved)
    st.say(_fmt(row, st.plan.epochs, improved))
    if st.stop_note:
        st.say(st.stop_note)
    st.dist.barrier()
    return book_s


def train(config: Config | str | Path | dict, resume: bool = False, out_dir: str | Path | None = None,
          stop_after_epochs: int | None = None, progress: bool = True) -> dict:
    """Train (or resume) a run and return {'model', 'run_dir', 'history', 'best_metric', ...}.

    stop_after_epochs: stop after this many epochs *of this call* as if interrupted (the resume
    test uses it); the learning-rate schedule still spans train_params.epochs.
    """
    cfg = (config if isinstance(config, Config) else
           parse_config(config) if isinstance(config, dict) else load_config(config))
    dist = Dist(cfg.train.device)
    threads = cfg.train.num_threads or (max(1, (os.cpu_count() or 1) // dist.world) if dist.enabled else None)
    try:
        with num_threads(threads):  # a notebook or test session keeps its own setting afterwards
            st = build_run(cfg, dist, resume, out_dir)
            stop_at = st.epoch + stop_after_epochs if stop_after_epochs is not None else None
            book_s = 0.0
            while st.epoch < st.plan.epochs and (stop_at is None or st.epoch < stop_at):
                book_s = run_epoch(st, progress, book_s)
            return _finish(st)
    finally:
        dist.close()


def _finish(st: TrainState) -> dict:
    tp = st.cfg.train
    if tp.save_rank_weights:  # the DDP test compares these: every rank must hold the same weights
        save_checkpoint({"model": st.model.state_dict(), "vit_config": vit_config_to_dict(st.cfg.model)},
                        st.run_dir / f"rank{st.dist.rank}.pt")
    if st.epoch == st.plan.epochs and st.history:
        n = st.budget.replans
        st.say(f"done: best val acc {st.best:.2%} at epoch {st.best_epoch}; checkpoints in {st.run_dir}"
               + (f" (the time budget changed its plan {n} time{'s' * (n > 1)})" if n else ""))
    return {"model": st.model, "run_dir": st.run_dir, "history": st.history, "best_metric": st.best,
            "best_epoch": st.best_epoch, "best_path": st.run_dir / tp.ckpt_name,
            "last_path": st.run_dir / "last.pt", "bf16": st.bf16, "epochs": st.plan.epochs,
            "stopped_by_budget": st.stopped_by_budget}


# ---------------------------------------------------------------------------- CLI

def main(argv: list[str] | None = None) -> int:
    ap = run_arg_parser("python -m vitlib.train", __doc__.split("\n")[0])
    ap.add_argument("--resume", action="store_true", help="continue from <task_name>/last.pt")
    return run_cli(ap, lambda cfg, args: train(cfg, resume=args.resume, out_dir=args.out), argv)


if __name__ == "__main__":
    sys.exit(main())
