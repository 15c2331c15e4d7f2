"""Train a ViT on coloured MNIST: `python -m vitlib.train --config configs/default.yaml [--resume]`.

The original's tools/train.py, done right:
  * AdamW with linear warm-up then per-step cosine decay (the original's Adam +
    ReduceLROnPlateau is `optimizer: adam, scheduler: plateau`);
  * the best checkpoint is chosen on a held-out validation split, not on training loss;
  * bf16 autocast where the hardware has it, label smoothing, gradient clipping;
  * an optional wall-clock budget: the schedule is re-planned to the epochs that fit (budget.py);
  * optional texture-classification and colour-regression heads (multi-task loss);
  * checkpoints hold everything needed to resume bit for bit; metrics.csv and curves.png record
    each epoch;
  * `torchrun --nproc_per_node=N -m vitlib.train ...` trains with DistributedDataParallel.

Everything lands in <out>/<task_name>/ where <out> is --out, else $VITLIB_OUT, else the cwd.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from vitlib.budget import RECENT_EPOCHS, TimeBudget, cosine_progress
from vitlib.checkpoint import (CheckpointError, restore_training, save_checkpoint, training_state,
                               unwrap, vit_config_to_dict)
from vitlib.config import Config, TrainParams, load_config, parse_config, parse_overrides
# bf16_supported and resolve_bf16 are re-exported: chapter 05 and the tests import them from here.
from vitlib.runtime import Dist, bf16_supported, compile_or_eager, resolve_bf16, seed_everything  # noqa: F401

CSV_FIELDS = ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "val_texture_acc",
              "val_color_mae", "images_per_s", "seconds"]


# ---------------------------------------------------------------------------- data

class Limited(torch.utils.data.Dataset):
    """The first `n` samples of a ColoredMNIST (quick runs); keeps the batched fast path."""

    def __init__(self, ds, n: int):
        self.ds, self.n = ds, min(int(n), len(ds))
        self.labels = ds.labels[: self.n]

    def __len__(self) -> int:
        return self.n

    def get_batch(self, indices, generator=None, **kwargs):
        return self.ds.get_batch(indices, generator=generator, **kwargs)

    def __getitem__(self, i: int):
        if not -self.n <= i < self.n:
            raise IndexError(f"index {i} out of range for {self.n} samples")
        return self.ds[i % self.n]

    def __getattr__(self, name):  # texture_names, num_textures, source, split, ...
        if name in ("ds", "n"):
            raise AttributeError(name)
        return getattr(self.ds, name)


def make_dataset(cfg: Config, split: str):
    """ColoredMNIST for one split, sized for the model and cut to the config's *_limit."""
    from vitlib.data import ColoredMNIST, DigitAugment
    d = cfg.dataset
    ds = ColoredMNIST(split=split, image_size=cfg.model.image_size, textures=d.textures,
                      threshold=d.threshold, seed=d.seed, val_size=d.val_size, root=d.root_dir,
                      n_texture_instances=d.n_texture_instances,
                      augment=DigitAugment(d.aug_shift, d.aug_rotate, d.aug_scale, d.aug_elastic))
    if cfg.model.num_textures and cfg.model.num_textures != ds.num_textures:
        raise ValueError(f"model_params.num_textures = {cfg.model.num_textures} but the dataset has "
                         f"{ds.num_textures} texture classes; set num_textures: {ds.num_textures}")
    limit = getattr(d, f"{split}_limit")
    return Limited(ds, limit) if limit else ds


# ---------------------------------------------------------------------------- loss, optimiser

class Objective:
    """Digit cross-entropy (+ texture cross-entropy, + colour MSE/L1), weighted by the config."""

    def __init__(self, tp: TrainParams, label_smoothing: float | None = None):
        self.tp = tp
        self.smoothing = tp.label_smoothing if label_smoothing is None else label_smoothing

    def __call__(self, out, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        logits = out["number"] if isinstance(out, dict) else out
        loss = F.cross_entropy(logits.float(), batch["number_cls"], label_smoothing=self.smoothing)
        if isinstance(out, dict) and "texture" in out:
            loss = loss + self.tp.texture_loss_weight * F.cross_entropy(
                out["texture"].float(), batch["texture_cls"], label_smoothing=self.smoothing)
        if isinstance(out, dict) and "color" in out:
            err = F.mse_loss if self.tp.color_loss == "mse" else F.l1_loss
            loss = loss + self.tp.color_loss_weight * err(out["color"].float(), batch["color"])
        return loss, logits


def make_optimizer(model: torch.nn.Module, tp: TrainParams, device: torch.device):
    # No weight decay on biases, norms, the CLS token and position embeddings (as in timm/nanoGPT).
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


def schedule_span(tp: TrainParams, steps_per_epoch: int) -> tuple[int, int]:
    """(warm-up steps, total steps) of the schedule as tp.epochs now stands."""
    total = max(1, tp.epochs * steps_per_epoch)
    return min(int(round(tp.warmup_epochs * steps_per_epoch)), total - 1), total


def make_scheduler(optimizer, tp: TrainParams, steps_per_epoch: int, anchor: dict | None = None):
    """cosine / none: LambdaLR stepped every optimiser step, after a linear warm-up;
    plateau: the original's ReduceLROnPlateau, stepped on validation loss each epoch (no warm-up).
    `anchor` ({"step", "progress"}) is where a time budget last re-planned the cosine; the training
    loop updates it in place, and the schedule reads it, like tp.epochs, at every step."""
    if tp.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=tp.plateau_factor, patience=tp.plateau_patience)
    floor = min(tp.min_lr / tp.lr, 1.0)

    def factor(step: int) -> float:
        warmup, total = schedule_span(tp, steps_per_epoch)
        if step < warmup:
            return (step + 1) / warmup
        if tp.scheduler == "none":
            return 1.0
        progress = cosine_progress(step, warmup, total, anchor)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


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
            out = model(batch["image"])
        loss, logits = objective(out, batch)
        b = len(logits)
        pred = logits.argmax(-1)
        s["loss"] += loss.item() * b
        s["correct"] += (pred == batch["number_cls"]).sum().item()
        s["n"] += b
        if isinstance(out, dict) and "texture" in out:
            has_tex = True
            s["tex"] += (out["texture"].argmax(-1) == batch["texture_cls"]).sum().item()
        if isinstance(out, dict) and "color" in out:
            has_col = True
            s["col"] += (out["color"].float() - batch["color"]).abs().mean(-1).sum().item()
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
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for row in history:
            w.writerow({k: ("" if row.get(k) is None else row[k]) for k in CSV_FIELDS})
    os.replace(tmp, path)


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


# ---------------------------------------------------------------------------- training

def train(config: Config | str | Path | dict, resume: bool = False, out_dir: str | Path | None = None,
          stop_after_epochs: int | None = None, progress: bool = True) -> dict:
    """Train (or resume) a run and return {'model', 'run_dir', 'history', 'best_metric', ...}.

    stop_after_epochs: stop after this many epochs *of this call* as if interrupted (the resume
    test uses it); the learning-rate schedule still spans train_params.epochs.
    """
    cfg = (config if isinstance(config, Config) else
           parse_config(config) if isinstance(config, dict) else load_config(config))
    tp = cfg.train
    dist = Dist(tp.device)
    threads = torch.get_num_threads()
    try:
        return _train(cfg, dist, resume, out_dir, stop_after_epochs, progress)
    finally:
        torch.set_num_threads(threads)  # a notebook or test session keeps its own setting
        dist.close()


def _train(cfg: Config, dist: Dist, resume: bool, out_dir, stop_after_epochs, progress) -> dict:
    from vitlib.data import BatchLoader
    from vitlib.model import ViT
    budget = TimeBudget(cfg.train.time_budget_min)
    cap = cfg.train.epochs  # with a budget, the most epochs it may plan
    # A private copy of train_params: a time budget re-plans tp.epochs, which the schedule reads.
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train))
    tp, device = cfg.train, dist.device
    if tp.num_threads or dist.enabled:
        torch.set_num_threads(tp.num_threads or max(1, (os.cpu_count() or 1) // dist.world))
    if out_dir is None:
        out_dir = os.environ.get("VITLIB_OUT")
    run_dir = cfg.run_dir(out_dir)
    last_path, best_path = run_dir / "last.pt", run_dir / tp.ckpt_name
    if dist.main:
        run_dir.mkdir(parents=True, exist_ok=True)
    say = print if dist.main else (lambda *a, **k: None)

    seed_everything(tp.seed)   # same initial weights on every rank (DDP also broadcasts rank 0's)
    model = ViT(cfg.model).to(device)
    bf16 = resolve_bf16(tp.bf16, device)
    train_ds, val_ds = make_dataset(cfg, "train"), make_dataset(cfg, "val")
    # On a GPU the batches are composited there (only uint8 crops and digits cross the bus).
    on_gpu = device if device.type == "cuda" else None
    train_loader = BatchLoader(train_ds, tp.batch_size, shuffle=True, seed=tp.seed, drop_last=True,
                               rank=dist.rank, world_size=dist.world, device=on_gpu)
    val_loader = BatchLoader(val_ds, tp.eval_batch_size, shuffle=False, rank=dist.rank,
                             world_size=dist.world, device=on_gpu)
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise ValueError(f"{len(train_ds)} training images are fewer than one batch of {tp.batch_size} "
                         f"per process; lower train_params.batch_size or raise dataset_params.train_limit")
    optimizer = make_optimizer(model, tp, device)
    anchor = {"step": 0, "progress": 0.0}  # where a budget last re-planned the cosine
    scheduler = make_scheduler(optimizer, tp, steps_per_epoch, anchor)
    objective = Objective(tp)

    start_epoch, global_step, best, best_epoch, history, clock = 0, 0, -1.0, 0, [], {}
    if resume and last_path.is_file():
        start_epoch, global_step, best, best_epoch, history, clock = restore_training(
            last_path, cfg, model, optimizer, scheduler, say)
        if tp.time_budget_min is not None:  # go on from the resumed run's plan and time used
            budget = TimeBudget(tp.time_budget_min, spent_s=clock.get("elapsed_s", 0.0))
            tp.epochs = min(cap, clock.get("planned_epochs") or cap)
            anchor.update(clock.get("anchor") or {})
    elif resume:
        say(f"--resume: no {last_path} yet, starting from scratch")
    elif last_path.is_file():
        say(f"note: {run_dir} already holds a run; starting afresh and overwriting it "
            f"(use --resume to continue it)")

    net = model
    if dist.enabled:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if tp.compile:
        net = compile_or_eager(net, model, tp, device, bf16, say)
    params = [p for p in model.parameters() if p.requires_grad]
    if start_epoch == 0:
        say(f"{model.num_parameters():,} parameters | {len(train_ds):,} train / {len(val_ds):,} val images "
            f"({getattr(train_ds, 'source', '?')}) | {dist.world} x {device.type}"
            f"{' bf16' if bf16 else ' fp32'} | {steps_per_epoch} steps/epoch | {run_dir}")

    # A budget re-plans after every epoch from the latest epochs' times (vitlib.budget).
    epoch_secs, book_s, replans = [], 0.0, 0
    stop_at = start_epoch + stop_after_epochs if stop_after_epochs is not None else None
    epoch, out_of_time = start_epoch, False
    while epoch < (tp.epochs if stop_at is None else min(tp.epochs, stop_at)):
        # Per-epoch seeds: dropout and data draws depend only on (seed, epoch, rank), so a resumed
        # run, or one on another number of processes' rank r, replays exactly.
        torch.manual_seed(tp.seed * 1_000_003 + epoch * 1009 + dist.rank)
        train_loader.set_epoch(epoch)
        net.train()
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        seen = 0
        skip = min(steps_per_epoch // 4, 50)  # steps timed from here on exclude torch.compile's start
        t_skip = t0
        bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{tp.epochs}", leave=False,
                   disable=not (progress and dist.main), dynamic_ncols=True, mininterval=_bar_interval())
        for i, batch in enumerate(bar):
            if i == skip:
                t_skip = time.perf_counter()
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                out = net(batch["image"])
            loss, logits = objective(out, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if tp.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, tp.grad_clip, foreach=True)
            optimizer.step()
            if tp.scheduler != "plateau":
                scheduler.step()
            global_step += 1
            b = len(logits)
            loss_sum += loss.detach().double() * b
            correct += (logits.detach().argmax(-1) == batch["number_cls"]).sum()
            seen += b
            if i % 20 == 0 or i == steps_per_epoch - 1:  # .item() syncs the GPU: not every step
                bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}", acc=f"{correct.item() / seen:.2%}",
                                lr=f"{optimizer.param_groups[0]['lr']:.1e}", refresh=False)
        t_loop = time.perf_counter()
        train_s = t_loop - t0
        lr = optimizer.param_groups[0]["lr"]
        l_sum, c_sum, n_sum, t_sum = dist.sum([loss_sum.item(), float(correct.item()), float(seen), train_s])
        val = evaluate(model, val_loader, device, bf16, objective, dist)
        if tp.scheduler == "plateau":
            scheduler.step(val["loss"])
        row = {"epoch": epoch + 1, "lr": lr, "train_loss": l_sum / n_sum, "train_acc": c_sum / n_sum,
               "val_loss": val["loss"], "val_acc": val["acc"], "val_texture_acc": val["texture_acc"],
               "val_color_mae": val["color_mae"], "images_per_s": n_sum / (t_sum / dist.world),
               "seconds": time.perf_counter() - t0}
        history.append(row)
        improved = val["acc"] > best
        if improved:
            best, best_epoch = val["acc"], epoch + 1
        if tp.time_budget_min is not None:  # re-plan before the checkpoint stores the plan
            if epoch_secs:
                train_part = t_loop - t0
            else:  # this process's first epoch: time the steps after torch.compile's start
                train_part = (t_loop - t_skip) * steps_per_epoch / max(1, steps_per_epoch - skip)
            # the steps + validation + the last epoch's checkpoint/plot time (0 on the first)
            epoch_secs.append(train_part + time.perf_counter() - t_loop + book_s)
            epoch_s = statistics.median(epoch_secs[-RECENT_EPOCHS:])
            plan = budget.plan(epoch_s, epoch + 1, cap)
            plan = int(dist.sum([plan if dist.main else 0.0])[0])  # rank 0's plan on every rank
            if plan != tp.epochs:  # from here on the cosine runs on to min_lr at the new end
                warmup, total = schedule_span(tp, steps_per_epoch)
                anchor.update(step=global_step, progress=cosine_progress(global_step, warmup, total, anchor))
                if len(epoch_secs) > 1:  # the first plan is not a change of plan
                    replans += 1
            if len(epoch_secs) == 1:  # later plans show in each epoch's "k/E" and in the last line
                say(f"time budget {tp.time_budget_min:g} min: epoch {epoch + 1} took ~{epoch_s:.1f} s once "
                    f"compiled; training {plan} of at most {cap} epochs, the cosine schedule laid over them")
            if plan == epoch + 1 < tp.epochs:  # nothing more fits before the budget runs out
                out_of_time, cut_from = True, tp.epochs
            tp.epochs = plan
        if dist.main:
            t_book = time.perf_counter()
            clock = {"elapsed_s": budget.elapsed_s, "planned_epochs": tp.epochs, "anchor": dict(anchor)}
            state = training_state(cfg, model, optimizer, scheduler, epoch + 1, global_step, best,
                                   best_epoch, history, clock)
            save_checkpoint(state, last_path)
            if improved:
                save_checkpoint(state, best_path)
            write_metrics_csv(history, run_dir / "metrics.csv")
            from vitlib.viz import plot_curves
            plot_curves(history, run_dir / "curves.png", title=tp.task_name)
            book_s = time.perf_counter() - t_book
        if dist.main:
            tqdm.write(_fmt(row, tp.epochs, improved))
        dist.barrier()
        epoch += 1
        if out_of_time:
            say(f"time budget {tp.time_budget_min:g} min reached: stopping after epoch {epoch} of "
                f"{cut_from} (the learning rate had not reached min_lr)")

    if tp.save_rank_weights:  # the DDP test compares these: every rank must hold the same weights
        save_checkpoint({"model": unwrap(model).state_dict(), "vit_config": vit_config_to_dict(cfg.model)},
                        run_dir / f"rank{dist.rank}.pt")
    if epoch == tp.epochs and dist.main and history:  # (a budget stop sets tp.epochs to this epoch)
        say(f"done: best val acc {best:.2%} at epoch {best_epoch}; checkpoints in {run_dir}"
            + (f" (the time budget changed its plan {replans} time{'s' * (replans > 1)})" if replans else ""))
    return {"model": unwrap(model), "run_dir": run_dir, "history": history, "best_metric": best,
            "best_epoch": best_epoch, "best_path": best_path, "last_path": last_path, "bf16": bf16,
            "epochs": tp.epochs, "stopped_by_budget": out_of_time}


# ---------------------------------------------------------------------------- CLI

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vitlib.train", description=__doc__.split("\n")[0])
    ap.add_argument("--config", dest="config_path", default="configs/default.yaml", help="YAML config")
    ap.add_argument("--resume", action="store_true", help="continue from <task_name>/last.pt")
    ap.add_argument("--out", default=None, help="folder holding <task_name>/ (default: $VITLIB_OUT or cwd)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override a config value, e.g. --set train_params.epochs=3 (repeatable)")
    args = ap.parse_args(argv)
    import matplotlib
    matplotlib.use("Agg")  # the CLI only writes PNGs; never needs a display
    try:
        cfg = load_config(args.config_path, parse_overrides(args.overrides))
        train(cfg, resume=args.resume, out_dir=args.out)
    except (ValueError, FileNotFoundError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
