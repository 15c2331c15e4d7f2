# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: -all
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · Training
#
# [Chapter 4](04_vit.ipynb) finished the model; this chapter teaches it to read digits. You write
# the training loop yourself: the loss, the backward pass, gradient clipping, an AdamW step and a
# learning-rate schedule. The loop first memorises one batch, then trains the small quick model,
# and an assert shows that `vitlib.train.train` computes the very same losses: the library is this
# loop plus bookkeeping. Last, we evaluate the book's default model, which ships with `vitlib`
# already trained. How the library fits a run into a time budget, trains in bf16, reads its YAML
# configs and resumes an interrupted run is in the appendix {doc}`u2_training_machinery`.
#
# **Learning objectives.** After this chapter you can
#
# - write the loss, the AdamW update, gradient clipping and the warm-up + cosine schedule
#   $\eta_t$ as formulas, and put them together into a training loop;
# - check a loop before trusting it: overfit one batch, then compare it with a reference;
# - say how this recipe differs from the original project's (Adam, a plateau schedule, the
#   checkpoint chosen on *training* loss) and why we keep the best *validation* accuracy;
# - evaluate a model: accuracy with an error bar, overall and per background texture.
#
# **Time.** Reading: about 40 minutes, plus the exercises. Running: under a minute on a laptop CPU
# in quick mode (`VITLIB_QUICK=1`); full mode trains twice as long and tests on every test image.

# %% [markdown]
# ## Setup
#
# `configs/quick.yaml` holds the small model we train and its recipe; `load_config` reads it.

# %%
import itertools
import math
import shutil
import tempfile
import time
import unittest.mock
from dataclasses import replace
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch.testing import assert_close

import vitlib.train
from vitlib import budget
from vitlib.config import load_config, parse_config
from vitlib.data import BatchLoader
from vitlib.hub import CHECKPOINT_DIR, load_pretrained
from vitlib.model import ViT
from vitlib.paths import is_quick
from vitlib.runtime import num_threads, seed_everything
from vitlib.train import evaluate, make_dataset, make_optimizer, train
from vitlib.viz import plot_curves, read_metrics_csv

QUICK = is_quick()
START = time.perf_counter()
OUT = Path(tempfile.mkdtemp(prefix="vitbook05-"))
cpu = torch.device("cpu")
quick_cfg = load_config("configs/quick.yaml")
tp, m = quick_cfg.train, quick_cfg.model
print(f"quick mode: {QUICK}; quick model: {m.image_size} px images, P = {m.patch_size}, "
      f"D = {m.emb_dim}, L = {m.n_layers}, h = {m.n_heads}")
print({k: getattr(tp, k) for k in ("batch_size", "lr", "min_lr", "warmup_epochs", "weight_decay", "grad_clip")})

# %% [markdown]
# ## One training step, piece by piece
#
# ### The loss: cross-entropy
#
# For each image the model outputs $n_\text{cls} = 10$ logits $z$; softmax turns them into
# probabilities $p_k = e^{z_k} / \sum_j e^{z_j}$. The **cross-entropy** with the true digit $y$ is
#
# $$
# \ell(z, y) = -\log p_y = -z_y + \log \sum_{j=1}^{n_\text{cls}} e^{z_j},
# $$
#
# averaged over the $B$ images of a batch. It is small only when the model puts most of its
# probability on the right digit. An untrained model spreads its probability about evenly, so its
# loss starts near $\ln n_\text{cls}$. (Label smoothing, `label_smoothing`, is exercise 2.)

# %%
logits, y = torch.randn(8, 10), torch.randint(10, (8,))                     # (B, n_cls), (B,)
by_hand = (-logits[torch.arange(8), y] + logits.logsumexp(-1)).mean()
assert_close(by_hand, F.cross_entropy(logits, y))
print(f"✓ cross-entropy by hand == F.cross_entropy; ln 10 = {math.log(10):.3f}")

# %% [markdown]
# ### The optimiser: AdamW
#
# `loss.backward()` fills each parameter's `.grad` with $g_t = \partial \ell / \partial\theta$ at
# step $t = 0, 1, \dots$. Adam keeps running averages of the gradient ($m_t$) and of its square
# ($v_t$) and moves each parameter by about $\eta_t$ along its recent gradients, whatever their scale:
#
# $$
# m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \qquad
# \theta_{t+1} = \theta_t - \eta_t \Big( \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon} + \lambda\, \theta_t \Big),
# $$
#
# with $m_{-1} = v_{-1} = 0$; $\hat m_t = m_t / (1-\beta_1^{t+1})$ and $\hat v_t = v_t /
# (1-\beta_2^{t+1})$ undo the bias of averages that start at zero. The last term is **decoupled
# weight decay** (Loshchilov & Hutter, 2019), the "W" in AdamW: each weight shrinks by the factor
# $1 - \eta_t\lambda$ directly, not through the gradient, where the division by $\sqrt{\hat v_t}$
# would rescale it. `vitlib.train.make_optimizer` decays the weight matrices ($\lambda$ =
# `weight_decay`) but not the biases, LayerNorm parameters, class token and position embeddings,
# as timm does; nanoGPT decays every tensor with two or more dimensions, its token and position
# embeddings included. Exercise 1 writes the update by hand.

# %%
groups = make_optimizer(ViT(m), tp).param_groups
print("quick model, parameters per λ:", {g["weight_decay"]: sum(p.numel() for p in g["params"]) for g in groups})

# %% [markdown]
# ### Gradient clipping
#
# Now and then a batch gives a gradient far larger than usual, and one huge step can undo many
# good ones. Clipping by the **global norm** shrinks the whole gradient, all parameters together
# so that its direction is kept, whenever its length exceeds $c$ (`grad_clip`);
# `torch.nn.utils.clip_grad_norm_` does it between `backward()` and the optimiser step:
#
# $$
# \|g\| = \sqrt{\textstyle\sum_i \|g_i\|^2}, \qquad g \leftarrow g \cdot \min\Big(1, \frac{c}{\|g\|}\Big).
# $$
#
# ### The learning-rate schedule: linear warm-up, then cosine decay
#
# The learning rate is a pure function of the step $t = 0, 1, \dots, T-1$, where $T$ is the total
# number of steps. For the first $T_w$ steps (`warmup_epochs` worth) it rises linearly to its peak
# $\eta_\text{max}$ (`lr`), then follows half a cosine down to $\eta_\text{min}$ (`min_lr`):
#
# $$
# \eta_t =
# \begin{cases}
# \eta_\text{max}\,\dfrac{t+1}{T_w}, & t < T_w,\\[2ex]
# \eta_\text{min} + \dfrac{\eta_\text{max} - \eta_\text{min}}{2}
# \Big(1 + \cos\Big(\pi\,\dfrac{t - T_w}{T - T_w}\Big)\Big), & t \ge T_w.
# \end{cases}
# $$
#
# **Why warm up?** At first Adam's $\hat v_t$ averages only a few gradients, so its step sizes are
# unreliable, and a fresh network is where large steps do the most damage. **Why cosine?**
# Large steps early explore; small steps late let the weights settle into a minimum instead of
# bouncing around it. In code, against `vitlib.budget.lr_at`, which the library calls every step:

# %%
def lr_at(t: int, T: int, T_w: int, lr_max: float, lr_min: float) -> float:
    if t < T_w:
        return lr_max * (t + 1) / T_w
    return lr_min + (lr_max - lr_min) / 2 * (1 + math.cos(math.pi * (t - T_w) / (T - T_w)))


short_cfg = load_config("configs/quick.yaml", {"train_params": {"epochs": 1 if QUICK else 2}})
steps_per_epoch = len(make_dataset(short_cfg, "train")) // tp.batch_size      # full batches only
T, T_w = short_cfg.train.epochs * steps_per_epoch, round(tp.warmup_epochs * steps_per_epoch)
lrs = [lr_at(t, T, T_w, tp.lr, tp.min_lr) for t in range(T)]
plan = budget.Plan(epochs=short_cfg.train.epochs)
np.testing.assert_allclose(lrs, [budget.lr_at(t, tp, plan, steps_per_epoch) for t in range(T)], rtol=1e-12)
print(f"✓ lr_at == vitlib.budget.lr_at at all T = {T} steps of the short run below (T_w = {T_w})")
fig, ax = plt.subplots(figsize=(6.5, 3.2), layout="constrained")
ax.plot(lrs)
ax.axvline(T_w, color="gray", ls=":", label=f"end of warm-up, $T_w$ = {T_w}")
ax.set(title=f"Warm-up + cosine over T = {T} steps", xlabel="step t", ylabel="learning rate $\\eta_t$")
ax.legend()
plt.show()

# %% [markdown]
# ## The training loop
#
# Each step sets the learning rate, runs the model forward, computes the loss, clears the old
# gradients (`backward` adds to them), backpropagates, clips and lets AdamW update the weights:

# %%
def train_loop(model, batches, optimizer, T: int, T_w: int, tp) -> list[float]:
    """T steps of forward -> loss -> backward -> clip -> AdamW; returns every step's loss."""
    model.train()
    losses = []
    for t, batch in zip(range(T), batches):
        for group in optimizer.param_groups:                  # this step's learning rate
            group["lr"] = lr_at(t, T, T_w, tp.lr, tp.min_lr)
        logits = model(batch["image"])                        # (B, n_cls)
        loss = F.cross_entropy(logits, batch["number_cls"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()                                       # fills p.grad for every parameter
        torch.nn.utils.clip_grad_norm_(model.parameters(), tp.grad_clip)
        optimizer.step()
        losses.append(loss.item())
    return losses

# %% [markdown]
# ### First check: overfit one batch
#
# A loop can run without an error and still be wrong: a step that never reaches the weights, a
# sign error, labels that do not belong to their images. The cheapest test for most of these:
# train on one fixed batch of 32 images and nothing else. The quick model has far more parameters
# than 32 labels, so a working loop memorises them: we ask for a loss below 0.05 within 200 steps.

# %%
def overfit_check(batch: dict) -> list[float]:
    torch.manual_seed(0)
    model = ViT(quick_cfg.model)
    with num_threads(tp.num_threads):            # one thread: a model this small gains nothing from more
        return train_loop(model, itertools.repeat(batch), make_optimizer(model, tp), T=200, T_w=20, tp=tp)


one_batch = make_dataset(quick_cfg, "train").get_batch(torch.arange(32), generator=torch.Generator().manual_seed(0))
overfit = overfit_check(one_batch)
hit = next((t for t, loss in enumerate(overfit) if loss < 0.05), None)
assert hit is not None, f"the loss never fell below 0.05 (lowest {min(overfit):.3f}): the loop is broken"
print(f"✓ one batch memorised: the loss fell from {overfit[0]:.3f} to below 0.05 at step {hit} "
      f"and ended at {overfit[-1]:.4f}")

# %% [markdown]
# ### A short run on the quick model
#
# Now real data: `BatchLoader` shuffles the training set into batches anew each epoch, and every
# draw of an image gets a fresh colour, texture and crop. `run_my_loop` builds the model, data and
# AdamW from a config and runs the loop: `configs/quick.yaml`, 1 epoch in quick mode, 2 in full.

# %%
def epochs_of(loader: BatchLoader, epochs: int):
    for epoch in range(epochs):
        loader.set_epoch(epoch)                  # a new shuffle, and new colours and textures
        yield from loader


def run_my_loop(cfg) -> tuple[ViT, list[float]]:
    tp = cfg.train
    seed_everything(tp.seed)                     # fixes the initial weights
    model = ViT(cfg.model)
    loader = BatchLoader(make_dataset(cfg, "train"), tp.batch_size, shuffle=True, seed=tp.seed,
                         drop_last=True)
    T, T_w = tp.epochs * len(loader), round(tp.warmup_epochs * len(loader))
    with num_threads(tp.num_threads):            # as many threads as train() uses (see below)
        losses = train_loop(model, epochs_of(loader, tp.epochs), make_optimizer(model, tp), T, T_w, tp)
    return model, losses


t0 = time.perf_counter()
my_model, my_losses = run_my_loop(short_cfg)
print(f"{len(my_losses):,} steps of {tp.batch_size} images in {time.perf_counter() - t0:.0f} s; "
      f"mean loss {np.mean(my_losses[:20]):.3f} over the first 20 steps, {np.mean(my_losses[-100:]):.3f} "
      f"over the last 100")
fig, ax = plt.subplots(figsize=(7, 3.2), layout="constrained")
ax.plot(my_losses, alpha=0.3, label="one step (one batch: noisy)")
ax.plot(np.arange(49, len(my_losses)), np.convolve(my_losses, np.ones(50) / 50, "valid"),
        label="mean of 50 steps")
ax.axhline(math.log(10), color="gray", ls=":", label="ln 10 (guessing)")
ax.set(title="The short run: training loss", xlabel="step t", ylabel="training loss")
ax.legend()
plt.show()

# %% [markdown]
# Did it learn? We measure the accuracy on the validation split, images the model never trained
# on. An accuracy $\hat p$ on $n$ images is an estimate; its **standard error**
# $\sqrt{\hat p(1-\hat p)/n}$ says how far it typically is from the accuracy on unlimited images.

# %%
val_loader = BatchLoader(make_dataset(quick_cfg, "val"), 500, shuffle=False)
val = evaluate(my_model, val_loader, cpu)
val_se = math.sqrt(val["acc"] * (1 - val["acc"]) / val["n"])
assert val["acc"] > 0.1 + 5 * val_se, val                # far above chance (10%)
print(f"✓ validation accuracy {val['acc']:.1%} ± {val_se:.1%} on {val['n']:,} images (chance: 10%)")

# %% [markdown]
# ### The library is this loop plus bookkeeping
#
# `vitlib.train.train(cfg)` wraps the same loop in bookkeeping: validation after every epoch,
# checkpoints, `metrics.csv`, a time budget, bf16, resuming. If that is all, it must give our
# loop's losses on the same config, as long as everything matches: the seed before the model is
# built, the data order (`BatchLoader`), the optimiser (`make_optimizer`), the schedule
# (`budget.lr_at`), the precision (`quick.yaml`: fp32, not compiled) and the thread count, which
# fixes the order of additions. (`train` also reseeds each epoch for dropout, 0 here.) We run both
# for 20 steps and listen in on `vitlib.train.train_step`, which takes one step, to record losses:

# %%
cfg20 = load_config("configs/quick.yaml", {"dataset_params": {"epoch_samples": 20 * tp.batch_size},  # 20 steps
                                           "train_params": {"epochs": 1, "task_name": "runs/loop_vs_lib"}})
assert cfg20.train.bf16 is False and cfg20.train.compile is False          # fp32, eager
mine, mine_losses = run_my_loop(cfg20)
lib_losses, library_step = [], vitlib.train.train_step


def recording_step(st, batch, params):
    loss, logits = library_step(st, batch, params)
    lib_losses.append(loss.item())
    return loss, logits


with unittest.mock.patch.object(vitlib.train, "train_step", recording_step):
    lib = train(cfg20, out_dir=OUT, progress=False)
assert len(lib_losses) == len(mine_losses) == 20
assert_close(torch.tensor(lib_losses), torch.tensor(mine_losses))
for (name, a), b in zip(mine.state_dict().items(), lib["model"].state_dict().values()):
    assert_close(a, b, msg=name)
print(f"✓ train() and our loop: the same loss at each of the 20 steps (bit for bit: "
      f"{lib_losses == mine_losses}) and the same final weights")

# %% [markdown]
# ## The full run: the shipped model
#
# The book's default model, `configs/default.yaml` (`ViTConfig.default()`), trains with this
# recipe plus what {doc}`u2_training_machinery` explains: a time budget, bf16 where it is faster,
# and random moves of the training digits. After every epoch `train` writes `last.pt`, everything
# a resumed run needs (weights, AdamW's $m$ and $v$, the step, the random states), and `best.pt`
# whenever the validation accuracy improved. `vitlib.hub.load_pretrained("default")` loads the
# shipped copy of such a `best.pt`, with its per-epoch metrics (`benchmarks/RESULTS.md` records
# how other recipes fared).

# %%
eval_model, eval_info = load_pretrained("default")
eval_cfg = parse_config(eval_info["config"], where="pretrained config")
history = read_metrics_csv(CHECKPOINT_DIR / "default_metrics.csv")
reported = eval_info["metrics"]["test"]
by_train_loss = min(history, key=lambda r: r["train_loss"])           # the original's rule
print(f"{eval_model.num_parameters():,} parameters; {len(history)} epochs in "
      f"{sum(r['seconds'] for r in history) / 60:.0f} minutes; best validation accuracy "
      f"{eval_info['best_metric']:.2%} at epoch {eval_info['epoch']} (lowest training loss: epoch "
      f"{by_train_loss['epoch']:.0f}); test accuracy {reported['test_acc']:.2%} on {reported['n_test']:,} images")
fig = plot_curves(history, title=f"The shipped model: configs/default.yaml, {len(history)} epochs")
plt.show()

# %% [markdown]
# Training numbers are averages over an epoch of changing weights, on moved digits; validation
# numbers use the weights at the epoch's end, on unmoved digits.
#
# **Against the original project's recipe.** The original used plain Adam and a plateau schedule,
# had no validation split and kept the checkpoint with the lowest *training* loss
# ({doc}`u2_training_machinery` compares the recipes). The training loss keeps falling as a model
# memorises and says nothing about new images; the validation split, held out of MNIST's training
# set, does. (With a cosine schedule the two rules often pick nearby epochs; they part ways once a
# model over-fits.) The test set is used once, at the end, so that no decision is tuned on it.
#
# ## Evaluating on the test set
#
# The test split is deterministic (chapter 1), so accuracies compare between runs. Quick mode
# evaluates a *random* sample of 2,000 test images: MNIST's test set is not shuffled, and its
# first 5,000 digits are cleaner than its last 5,000 {cite:p}`lecun2010mnistdb`, so "the first
# 2,000" would be a biased sample. Full mode uses them all. `evaluate` takes any list of batches.

# %%
test_ds = make_dataset(replace(eval_cfg, dataset=replace(eval_cfg.dataset, test_limit=None)), "test")
n_test = min(2000, len(test_ds)) if QUICK else len(test_ds)
idx = torch.randperm(len(test_ds), generator=torch.Generator().manual_seed(0))[:n_test].sort().values
batches = [test_ds.get_batch(idx[i:i + 500]) for i in range(0, n_test, 500)]
res = evaluate(eval_model, batches, cpu, return_predictions=True)
test_se = math.sqrt(res["acc"] * (1 - res["acc"]) / res["n"])
tolerance = 4 * test_se + 0.002                  # four standard errors, and a little rounding
assert abs(res["acc"] - reported["test_acc"]) <= tolerance, (res["acc"], reported)
print(f"✓ test digit accuracy {res['acc']:.2%} ± {test_se:.2%} on {res['n']:,} images, within {tolerance:.2%} "
      f"of the {reported['test_acc']:.2%} that training reported on {reported['n_test']:,}")

# %% [markdown]
# ### Accuracy per background texture
#
# Every test image also carries its texture class. Grouping the predictions by texture shows which
# backgrounds hide the digit best; each texture has only about $n/n_\text{tex}$ images, hence the
# error bars. (Chapter 6 looks at which digits get confused, and why.)

# %%
textures, n_tex = torch.cat([b["texture_cls"] for b in batches]), test_ds.num_textures
assert torch.equal(torch.cat([b["number_cls"] for b in batches]), res["targets"])  # same order
count = torch.bincount(textures, minlength=n_tex).double().clamp_min(1)
acc_tex = torch.bincount(textures, weights=(res["preds"] == res["targets"]).double(), minlength=n_tex) / count
err = torch.sqrt(acc_tex * (1 - acc_tex) / count)
assert_close((acc_tex * count).sum() / res["n"], torch.tensor(res["acc"], dtype=torch.float64))
order = acc_tex.argsort()
fig, ax = plt.subplots(figsize=(9, 3.8), layout="constrained")
ax.bar([test_ds.texture_names[k] for k in order], acc_tex[order].numpy(), yerr=err[order].numpy(), capsize=3)
ax.axhline(res["acc"], color="black", ls="--", lw=1, label=f"all textures ({res['acc']:.1%})")
ax.set_ylim(max(0.0, float(acc_tex.min() - 3 * err.max()) - 0.01), 1.0)   # zoom in on the bars
ax.set(title="Test accuracy per background texture, the shipped model", xlabel="texture", ylabel="test digit accuracy")
ax.tick_params(axis="x", rotation=45)
ax.legend(loc="lower right")
plt.show()

# %% [markdown]
# ## Summary
#
# - One step: forward, cross-entropy $-\log p_y$, `zero_grad`, `backward()`, clip to a global norm
#   $c$, AdamW $\theta \leftarrow \theta - \eta_t(\hat m/(\sqrt{\hat v}+\epsilon) + \lambda\theta)$.
# - The learning rate is a pure function of the step: linear warm-up over $T_w$ steps, then a
#   cosine from $\eta_\text{max}$ down to $\eta_\text{min}$ at step $T$.
# - Check a loop before trusting it: it must memorise one batch and agree with a reference.
#   `vitlib.train.train` is this loop plus bookkeeping ({doc}`u2_training_machinery`).
# - Keep the best *validation* accuracy; touch the test set once. Give every accuracy with its
#   standard error $\sqrt{p(1-p)/n}$, also per nuisance factor such as the background texture.
#
# ## Exercises
#
# ```{exercise} AdamW by hand
# :label: ex-05-1
#
# Write three AdamW steps by hand from the formulas above, for 5 parameters and three random
# gradients, and check them against `torch.optim.AdamW` (lr $10^{-2}$, `weight_decay` 0.05).
# ```
#
# ```{solution-start} ex-05-1
# :class: dropdown
# ```

# %%
def adamw_steps(theta, grads, lr=1e-2, betas=(0.9, 0.999), eps=1e-8, wd=0.05):
    m, v = torch.zeros_like(theta), torch.zeros_like(theta)
    for t, g in enumerate(grads):
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g**2
        m_hat, v_hat = m / (1 - betas[0] ** (t + 1)), v / (1 - betas[1] ** (t + 1))
        theta = theta - lr * (m_hat / (v_hat.sqrt() + eps) + wd * theta)
    return theta


theta0, grads = torch.randn(5), [torch.randn(5) for _ in range(3)]
p = torch.nn.Parameter(theta0.clone())
opt = torch.optim.AdamW([p], lr=1e-2, weight_decay=0.05)
for g in grads:
    p.grad = g.clone()
    opt.step()
assert_close(p.detach(), adamw_steps(theta0, grads))
print("✓ three AdamW steps by hand == torch.optim.AdamW")

# %% [markdown]
# ```{solution-end}
# ```
#
# ```{exercise} Label smoothing
# :label: ex-05-2
#
# Label smoothing replaces the one-hot target by $q_k = (1 - \varepsilon)[k = y] + \varepsilon /
# n_\text{cls}$ and the loss by $-\sum_k q_k \log p_k$. Write it, check it against
# `F.cross_entropy(..., label_smoothing=ε)`, and find the smallest loss any logits can reach with
# $\varepsilon = 0.1$. What probability does the best model give the true digit?
# ```
#
# ```{solution-start} ex-05-2
# :class: dropdown
# ```

# %%
def smoothed_ce(logits: torch.Tensor, y: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    q = torch.full_like(logits, eps / logits.shape[-1])
    q[torch.arange(len(y)), y] += 1 - eps                                   # (B, n_cls)
    return -(q * logits.log_softmax(-1)).sum(-1).mean(), q


for eps in (0.0, 0.1):
    assert_close(smoothed_ce(logits, y, eps)[0], F.cross_entropy(logits, y, label_smoothing=eps))
_, q = smoothed_ce(logits, y, 0.1)
best = q.log().requires_grad_()                  # p = q: the loss is the entropy of q
floor = smoothed_ce(best, y, 0.1)[0]
floor.backward()
assert best.grad.abs().max() < 1e-6              # a minimum: no small change of the logits helps
print(f"✓ smallest loss with ε = 0.1: {floor:.4f}, at p_y = {q[0, y[0]]:.2f}")

# %% [markdown]
# The loss no longer reaches 0: the best model gives the true digit $1 - \varepsilon +
# \varepsilon / n_\text{cls}$, with finite logits. Smoothing keeps a model from growing ever more
# confident, a mild regulariser.
#
# ```{solution-end}
# ```
#
# ```{exercise} What the overfitting check cannot see
# :label: ex-05-3
#
# Run the overfitting check twice more: once with random labels for the 32 images, once with a
# loop that forgets `optimizer.zero_grad`. Do they pass? What does that tell you about the check?
# ```
#
# ```{solution-start} ex-05-3
# :class: dropdown
# ```

# %%
shuffled = {**one_batch, "number_cls": torch.randint(10, (32,), generator=torch.Generator().manual_seed(1))}
random_labels = overfit_check(shuffled)
with unittest.mock.patch.object(torch.optim.AdamW, "zero_grad", lambda self, set_to_none=True: None):
    no_zero_grad = overfit_check(one_batch)             # every step now adds to the old gradients
assert min(random_labels) < 0.05 and min(no_zero_grad) < 0.05
print(f"lowest loss with random labels {min(random_labels):.3f}, without zero_grad {min(no_zero_grad):.3f}")

# %% [markdown]
# Both pass. The model memorises 32 random labels as easily as true ones: passing says the loop
# *can fit*, not that the model learns digits. On one fixed batch the summed-up gradients still
# point the right way, so a missing `zero_grad` slips through. Hence the second check against a
# reference.
#
# ```{solution-end}
# ```
#
# ## Comprehension questions
#
# **1. Why does the loss of an untrained model start near $\ln 10$?**
#
# ```{admonition} Answer
# :class: dropdown
# Small random weights give similar logits, so each digit gets about $1/10$: $-\log(1/10) = \ln 10$.
# ```
#
# **2. Why warm up the learning rate?**
#
# ```{admonition} Answer
# :class: dropdown
# Adam's $\hat v_t$ rests on a few gradients at first, so its step sizes are unreliable, and a
# fresh network is easily thrown off by large steps; the ramp keeps them small until then.
# ```
#
# **3. What does it buy to write the schedule as a pure function of the step?**
#
# ```{admonition} Answer
# :class: dropdown
# Any step's rate can be computed without replaying the run: a resumed run goes on at the right
# rate, a time budget can re-plan it, and two implementations can be compared step by step.
# ```
#
# **4. Why keep the best validation accuracy rather than the lowest training loss?**
#
# ```{admonition} Answer
# :class: dropdown
# The training loss keeps falling as a model memorises; validation accuracy is measured on images
# it never trained on, and is the number we care about.
# ```
#
# **5. Two models score 98.4% and 98.6% on 2,000 test images. Is the second better?**
#
# ```{admonition} Answer
# :class: dropdown
# Not shown: each has a standard error of $\sqrt{0.985 \cdot 0.015 / 2000} \approx 0.27$
# percentage points, as large as the difference. More test images, or several seeds, are needed.
# ```

# %%
shutil.rmtree(OUT, ignore_errors=True)           # the runs of this chapter lived in a temporary folder
print(f"notebook ran in {time.perf_counter() - START:.1f} s (quick mode: {QUICK})")
