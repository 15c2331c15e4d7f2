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
# # U2 · Under the hood: the training machinery
#
# [Chapter 05](05_training.ipynb) wrote the training loop and showed that `vitlib.train.train`
# computes the same losses: the library is that loop plus bookkeeping. This appendix is about the
# bookkeeping, none of which you need to follow the core chapters: the YAML configs and the
# command line, how the default recipe differs from the original project's, a schedule that fits
# itself into a time budget, bf16 mixed precision and how `vitlib` decides whether it pays on your
# CPU, random moves of the training digits, extra heads for texture and colour, and resuming an
# interrupted run bit for bit.
#
# **Learning objectives.** By the end of this appendix you can
#
# - read and override a run config, in Python and on the command line, and say why a misspelt
#   key is an error;
# - explain how `time_budget_min` lays the cosine over the epochs that fit, and why a re-plan
#   *anchors* the schedule instead of restarting it;
# - say what bf16 autocast changes, what AMX and AVX512-BF16 have to do with its speed, and how
#   `bf16: auto` measures it;
# - train with extra heads, $L = L_\text{digit} + \lambda_t L_\text{tex} + \lambda_c L_\text{col}$,
#   and resume an interrupted run exactly where it stopped.
#
# **Time.** Reading: about 30 minutes, plus the exercises. Running: under a minute on a laptop CPU
# in quick mode (`VITLIB_QUICK=1`), most of it the timing of three precisions and a short
# multi-task run; full mode times longer, measures the `bf16: auto` decision and trains the
# multi-task model on more images, a few minutes.

# %% [markdown]
# ## Setup

# %%
import math
import shutil
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from vitlib import budget
from vitlib.checkpoint import load_checkpoint
from vitlib.config import TrainParams, load_config
from vitlib.data import DigitAugment
from vitlib.hub import CHECKPOINT_DIR, load_pretrained
from vitlib.model import ViT, ViTConfig, set_fused_attention
from vitlib.paths import is_quick
from vitlib.runtime import BF16_MIN_GAIN, Precision, cpu_flags, cpu_model, num_threads, pick
from vitlib.train import Objective, make_dataset, train
from vitlib.viz import read_metrics_csv

QUICK = is_quick()
START = time.perf_counter()
OUT = Path(tempfile.mkdtemp(prefix="vitbooku2-"))       # this appendix's runs; removed at the end
print(f"quick mode: {QUICK}; torch {torch.__version__}; {torch.get_num_threads()} threads")

# %% [markdown]
# ## Configs: YAML files and the command line
#
# A run is described by a YAML file with the original project's three sections
# (`dataset_params`, `model_params`, `train_params`) and its key names, plus `vitlib`'s own keys,
# marked `(vitlib)` in `configs/default.yaml`. `load_config` reads a file into dataclasses; its
# second argument overrides values, as `--set section.key=value` does on the command line. Here
# are the training keys of the two configs the book uses:

# %%
default_cfg = load_config("configs/default.yaml")
quick_cfg = load_config("configs/quick.yaml")
tp = default_cfg.train
for key in ("batch_size", "epochs", "time_budget_min", "optimizer", "lr", "weight_decay", "scheduler",
            "warmup_epochs", "min_lr", "grad_clip", "bf16", "compile", "num_threads"):
    print(f"{key:>16}: {getattr(tp, key)!r:<14} (quick.yaml: {getattr(quick_cfg.train, key)!r})")

# %% [markdown]
# Every section is parsed strictly: a key the dataclass does not know is an error that names the
# key and lists the allowed ones. A typo such as `learning_rate` for `lr` would otherwise train
# silently with the default and look like a bad result.

# %%
try:
    load_config("configs/quick.yaml", {"train_params": {"learning_rate": 0.01}})
    raise AssertionError("a misspelt key was accepted")
except ValueError as e:
    assert "learning_rate" in str(e)
    print(f"✓ ValueError: {str(e)[:150]} ...")

# %% [markdown]
# Everything the notebooks do is also a command. The long runs are shown here, not run:
#
# ```bash
# # train the default model; outputs in runs/default/ (best.pt, last.pt, metrics.csv, curves.png)
# python -m vitlib.train --config configs/default.yaml
# # interrupted? continue from runs/default/last.pt
# python -m vitlib.train --config configs/default.yaml --resume
# # change any config value without editing the file
# python -m vitlib.train --config configs/quick.yaml --set model_params.num_textures=13 --set model_params.predict_color=true
# # the original's recipe, for comparison
# python -m vitlib.train --config configs/default.yaml --set train_params.optimizer=adam --set train_params.scheduler=plateau
# # test metrics, confusion matrix and attention figures in runs/default/output/
# python -m vitlib.inference --config configs/default.yaml
# # several processes (DistributedDataParallel)
# torchrun --nproc_per_node=2 -m vitlib.train --config configs/default.yaml
# # ship your run as vitlib/checkpoints/default.pt (or vitlib.hub.export_pretrained("runs/default"))
# python -m vitlib.hub export runs/default
# ```
#
# `--out DIR` (or `$VITLIB_OUT`) moves `runs/` elsewhere. `compile: true` runs the training step
# through `torch.compile`, falling back to eager mode if the compiler fails; it changes speed,
# not results.
#
# ## Against the original project's recipe
#
# The original project's `tools/train.py` trains with plain Adam at a fixed $\eta = 10^{-3}$,
# halves the learning rate with `ReduceLROnPlateau(factor=0.5, patience=2)` whenever the
# **training** loss has not improved for two epochs, and saves a checkpoint whenever the
# **training** loss reaches a new low. It has no validation split.
#
# | | original | `vitlib` (`configs/default.yaml`) |
# |---|---|---|
# | optimiser | Adam, no weight decay | AdamW, $\lambda = 0.05$ on weight matrices |
# | learning rate | $10^{-3}$, halved on a training-loss plateau | warm-up to $10^{-3}$, cosine to $10^{-5}$, every step |
# | gradient clipping | none | global norm 1.0 |
# | precision | fp32 | bf16 autocast where it is faster (`bf16: auto`) |
# | digit augmentation | none | random shift, rotation and zoom of training digits |
# | checkpoint kept | lowest training loss | highest **validation** accuracy |
# | resume | reloads the weights only | weights, optimiser, schedule, random states, epoch |
#
# `optimizer: adam` and `scheduler: plateau` bring the original's choices back (`vitlib` steps the
# plateau scheduler on the validation loss). Chapter 05 wrote the optimiser, the schedule and the
# clipping and explained the checkpoint rule; the sections below explain the rest of the table.
# First, one more check of chapter 05's loop: its clipping, $g \leftarrow g \cdot \min(1, c/\|g\|)$
# over all parameters together, by hand against `torch.nn.utils.clip_grad_norm_` on the
# gradients of a real batch, with a small $c$ so that this gradient really is clipped:

# %%
model = ViT(quick_cfg.model)
batch = make_dataset(quick_cfg, "val").get_batch(torch.arange(64))
F.cross_entropy(model(batch["image"]), batch["number_cls"]).backward()
grads = [p.grad.clone() for p in model.parameters()]
norm = torch.sqrt(sum((g**2).sum() for g in grads))                 # the global norm ||g||
c = 0.1
clipped = [g * min(1.0, c / (norm.item() + 1e-6)) for g in grads]  # torch adds 1e-6 too
assert_close(torch.nn.utils.clip_grad_norm_(model.parameters(), c), norm)   # returns ||g|| before
for p, g in zip(model.parameters(), clipped):
    assert_close(p.grad, g)
print(f"✓ gradient norm {norm:.3f} clipped to {c} by hand == clip_grad_norm_")

# %% [markdown]
# ## Fitting the schedule to a time budget
#
# The cosine needs its length $T$ before training starts, but "as many epochs as fit in 30
# minutes" depends on the machine: a laptop, a shared server and a GPU differ several times over,
# and a shared machine's speed changes from one run to the next. So `configs/default.yaml` sets
# `time_budget_min` beside `epochs`. The run times its first epoch, the warm-up, which comes
# before the cosine starts, then sets
#
# $$
# E = 1 + \Big\lfloor \frac{\text{budget} - \text{elapsed}}{1.02 \cdot \text{seconds per epoch}} \Big\rfloor,
# \qquad \text{at most } \texttt{epochs},
# $$
#
# and lays the cosine over $E$ epochs (`vitlib.budget.plan_epochs`; the 2 % is slack for a machine
# that slows down). The first epoch's speed is measured from its 50th step on (or its second
# quarter, if shorter), so that the compiler's start-up is not taken for every later epoch's speed. Here is what that gives on
# three steady machines, with the learning rate plotted against the clock rather than the step:

# %%
steps_per_epoch = len(make_dataset(default_cfg, "train")) // tp.batch_size
n_train = steps_per_epoch * tp.batch_size
warmup = round(tp.warmup_epochs * steps_per_epoch)


def lr_at(t: int, T: int) -> float:
    """Chapter 05's schedule for configs/default.yaml: warm-up, then a cosine ending at step T."""
    if t < warmup:
        return tp.lr * (t + 1) / warmup
    return tp.min_lr + (tp.lr - tp.min_lr) / 2 * (1 + math.cos(math.pi * (t - warmup) / (T - warmup)))


fig, ax = plt.subplots(figsize=(7.5, 3.6), layout="constrained")
for images_per_s in (1_200, 1_800, 2_400):
    epoch_s = n_train / images_per_s + 1.5                # the steps, then validation and saving
    first_s = epoch_s + 30                                # epoch 1 also pays for start-up and compiling
    E = budget.plan_epochs(tp.time_budget_min * 60, first_s, epoch_s, done=1, max_epochs=tp.epochs)
    t = np.arange(E * steps_per_epoch)
    ep = t / steps_per_epoch                              # epochs done at step t
    minutes = np.where(ep < 1, ep * first_s, first_s + (ep - 1) * epoch_s) / 60
    total_min = (first_s + (E - 1) * epoch_s) / 60
    ax.plot(minutes, [lr_at(s, E * steps_per_epoch) for s in t],
            label=f"{images_per_s:,} img/s: {E} epochs, {total_min:.1f} min")
ax.axvline(tp.time_budget_min, color="gray", ls=":", label=f"budget ({tp.time_budget_min:g} min)")
ax.set(title=f"One config, three machines: time_budget_min = {tp.time_budget_min:g}, epochs <= {tp.epochs}",
       xlabel="wall-clock minutes", ylabel="learning rate $\\eta_t$")
ax.legend(fontsize=8)
plt.show()
print(f"{n_train:,} training images per epoch here, {steps_per_epoch} steps of {tp.batch_size}")

# %% [markdown]
# A machine fast enough stops at the cap of `epochs`, a little early; slower ones train fewer
# epochs, and each still ends its cosine at `min_lr` just inside the budget. (On the small
# offline fallback an epoch is short, and all three machines reach the cap.) The shipped model
# trained this way; its metrics record its epochs and the time they took:

# %%
shipped = read_metrics_csv(CHECKPOINT_DIR / "default_metrics.csv")
print(f"shipped model: {len(shipped)} epochs in {sum(r['seconds'] for r in shipped) / 60:.1f} minutes "
      f"(budget {tp.time_budget_min:g}); last learning rate {shipped[-1]['lr']:.1e}, min_lr {tp.min_lr:.0e}")

# %% [markdown]
# Real machines do not keep one speed: other programs start and stop, and a laptop slows down as
# it warms up. So the run re-plans after *every* epoch, from the median of its last three epoch
# times. A new length $T'$ cannot simply replace $T$ in the cosine: its progress
# $(t - T_w)/(T - T_w)$ would step back when $T$ grows, and the learning rate would jump up.
# Instead the re-plan at step $t_0$, where the progress is $p_0$, *anchors* the schedule there and
# draws the rest of the progress as a straight line to 1 at the new end:
#
# $$
# p_t = p_0 + (1 - p_0)\,\frac{t - t_0}{T' - t_0}, \qquad
# \eta_t = \eta_{\min} + \tfrac{1}{2}(\eta_{\max} - \eta_{\min})\,(1 + \cos \pi p_t).
# $$
#
# Here it is for a run planned at 50 epochs that finds after epoch 20 that 60 fit. We draw it
# from the formula, then check `vitlib` against it, re-planned the way the training loop does it:
# `budget.replan` returns a new `Plan` anchored at $t_0$, and `budget.lr_at` reads it. The
# checkpoint stores the plan, so a `--resume` carries on from the same point.

# %%
E1, E2, t0 = 50, 60, 20 * steps_per_epoch
T1, T2 = E1 * steps_per_epoch, E2 * steps_per_epoch
p0 = (t0 - warmup) / (T1 - warmup)                        # progress of the first plan at the re-plan
t = np.arange(T2)


def lr_of(p: float) -> float:
    return tp.min_lr + (tp.lr - tp.min_lr) / 2 * (1 + math.cos(math.pi * p))


anchored = [lr_at(s, T1) if s < t0 else lr_of(p0 + (1 - p0) * (s - t0) / (T2 - t0)) for s in t]
naive = [lr_at(s, T1 if s < t0 else T2) for s in t]
first = budget.Plan(epochs=E1)
second = budget.replan(first, E2, t0, tp, steps_per_epoch)  # what the loop does after epoch 20
assert (second.anchor_step, second.epochs) == (t0, E2) and math.isclose(second.anchor_progress, p0)
lrs_vitlib = [budget.lr_at(s, tp, first if s < t0 else second, steps_per_epoch) for s in t]
np.testing.assert_allclose(anchored, lrs_vitlib, rtol=1e-12)
print("✓ the anchored schedule by hand == vitlib's budget.replan + budget.lr_at at every step")

fig, ax = plt.subplots(figsize=(7.5, 3.4), layout="constrained")
ep = t / steps_per_epoch
ax.plot(ep[:T1], [lr_at(s, T1) for s in t[:T1]], color="gray", ls=":", label=f"first plan: {E1} epochs")
ax.plot(ep, naive, color="tab:red", alpha=0.7, label=f"new length put into the formula: a jump at epoch {t0 // steps_per_epoch}")
ax.plot(ep, anchored, color="tab:blue", label=f"anchored at the re-plan (vitlib): {E2} epochs")
ax.set(title="Re-planning mid-run: the learning rate carries on from where it is",
       xlabel="epoch", ylabel="learning rate $\\eta_t$")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# The anchored curve bends at the re-plan but never jumps, and still reaches `min_lr` on the last
# planned epoch. When the machine slows down the same rule shortens the schedule, and if not one
# more epoch fits, the run stops at that epoch boundary with its learning rate a little above
# `min_lr`. Exercise 1 gives a run a budget of seconds.
#
# ## Mixed precision: bf16 against fp32
#
# **bfloat16** keeps float32's 8 exponent bits (the same range, about $10^{\pm 38}$) but only 7
# of its 23 mantissa bits: about 3 significant decimal digits. Under
# `torch.autocast("cpu", dtype=torch.bfloat16)`, every linear layer and matrix product casts its
# inputs to bf16 and returns bf16, so the activations that flow between them are bf16 too; losses
# are computed in float32 (on autocast's list of float32 operations, and `vitlib` casts the logits
# to float32 before the loss). The weights, their gradients and the optimiser's state stay
# float32: this is "mixed precision". Because bf16 has float32's range, it needs none of the loss
# scaling that float16 training does. A look at the data types:

# %%
lin, layer_norm = torch.nn.Linear(8, 8), torch.nn.LayerNorm(8)
with torch.autocast("cpu", dtype=torch.bfloat16):
    h = lin(torch.randn(4, 8))
    hn = layer_norm(h)
    loss = F.cross_entropy(hn, torch.zeros(4, dtype=torch.long))
loss.backward()
print(f"linear output {h.dtype}, LayerNorm output {hn.dtype}, loss {loss.dtype}, "
      f"weight {lin.weight.dtype}, its gradient {lin.weight.grad.dtype}")
assert h.dtype == torch.bfloat16 and loss.dtype == lin.weight.grad.dtype == torch.float32

# %% [markdown]
# It only pays off where the processor multiplies bf16 faster than fp32, and by how much depends
# on the CPU and on the model, not on the maker's name. Some CPUs have instructions built for it:
# **AMX** (Advanced Matrix Extensions, on recent Intel Xeons) multiplies whole tiles of bf16
# numbers per instruction and accumulates in fp32, and **AVX512-BF16** (recent AMD EPYC and Ryzen
# processors, and some Intel ones) computes bf16 dot products in its vector registers. Without
# either, bf16 numbers are converted to fp32 to be multiplied and autocast only adds work. Even
# with them, small matrices gain less than large ones, while the casts in and out of bf16 cost
# the same everywhere.
#
# The attention layer adds a second choice. `F.scaled_dot_product_attention`, the *fused* path of
# chapter 3, computes attention in one kernel; the *manual* path writes out the two matrix
# products and the softmax. In fp32 the fused kernel is usually the faster. In bf16 training its
# backward pass can be several times slower than the manual path on one CPU and not on another.
#
# So `vitlib` does not guess from the CPU's name or flags: it measures. The measurement below is
# the one `bf16: auto` makes: a few training steps (forward, loss, backward, AdamW) of
# `ViTConfig.default()` at batch 128 in three modes, fp32, bf16 with the fused attention and bf16
# with the manual one, taken in turn so that load from other programs hits all of them alike,
# and the median per mode. **Your numbers will differ**: they depend on the CPU, the number of
# cores and what else is running. Quick mode times a single thread: on a shared machine, such as
# a CI runner, a second thread often waits for a core that another program holds, which can make
# a step several times slower and says nothing about bf16. Full mode uses all of PyTorch's
# threads, as training does. (For tiny models like quick mode's the casts cost more than they
# save, which is why `configs/quick.yaml` sets `bf16: false`.)

# %%
cpu = torch.device("cpu")
print(f"CPU: {cpu_model()}; instruction sets that matter for bf16: {', '.join(cpu_flags()) or 'none'}; "
      f"PyTorch's CPU kernels: {torch.backends.cpu.get_cpu_capability()}")

torch.manual_seed(0)
bench = ViT(ViTConfig.default())
bench_opt = torch.optim.AdamW(bench.parameters(), lr=1e-4)
xb, yb = torch.randn(128, 3, 32, 32), torch.randint(10, (128,))   # speed does not depend on pixels
MODES = {"fp32": Precision(bf16=False, fused_attn=True),
         "bf16 fused": Precision(bf16=True, fused_attn=True),
         "bf16 manual": Precision(bf16=True, fused_attn=False)}


def timed_step(mode: Precision) -> float:
    set_fused_attention(bench, mode.fused_attn)     # every Attention module of the model
    t0 = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode.bf16):
        logits = bench(xb)
    loss = F.cross_entropy(logits.float(), yb)
    bench_opt.zero_grad(set_to_none=True)
    loss.backward()
    bench_opt.step()
    return time.perf_counter() - t0


rounds = 3 if QUICK else 10
bench_threads = 1 if QUICK else torch.get_num_threads()
times = {name: [] for name in MODES}
try:
    with num_threads(bench_threads):                            # quick mode: one thread, put back after
        timed_step(MODES["fp32"])                               # warm-up: first calls are slow
        try:
            timed_step(MODES["bf16 fused"]), timed_step(MODES["bf16 manual"])
        except RuntimeError as e:                               # some builds refuse CPU bf16
            print(f"bf16 autocast does not run here ({str(e).splitlines()[0]}); timing fp32 only")
            times = {"fp32": []}
        for _ in range(rounds):
            for name in times:
                times[name].append(timed_step(MODES[name]))
finally:
    set_fused_attention(bench, True)
speed = {name: 128 / float(np.median(t)) for name, t in times.items()}
for name, s in speed.items():
    print(f"{name:11s}: {128 / s * 1000:6.0f} ms per step, {s:6.0f} images/s")

# %% [markdown]
# As a bar chart, with each bf16 bar's speed-up over fp32 written on it, and the choice that
# `bf16: auto` makes from these figures (`vitlib.runtime.pick`): the fastest bf16 mode, but only
# if it beats fp32 by a clear margin, since bf16 rounds every activation and a small gain is
# within what a few seconds of timing can tell apart.

# %%
fig, ax = plt.subplots(figsize=(5.5, 3.4), layout="constrained")
colors = {"fp32": "tab:gray", "bf16 fused": "tab:olive", "bf16 manual": "tab:green"}
ax.bar(list(speed), list(speed.values()), color=[colors[n] for n in speed])
for i, (name, s) in enumerate(speed.items()):
    if name != "fp32":
        ax.text(i, s, f"×{s / speed['fp32']:.2f}", ha="center", va="bottom")
ax.set_ylim(0, 1.15 * max(speed.values()))
ax.set(title=f"Training throughput, ViTConfig.default(), batch 128\n"
             f"{bench_threads} CPU thread{'s' if bench_threads > 1 else ''}",
       xlabel="precision and attention path", ylabel="images per second (median)")
plt.show()
choice = pick({MODES[name]: s for name, s in speed.items()}, MODES["fp32"])
print(f"bf16: auto keeps fp32 unless bf16 is at least {BF16_MIN_GAIN - 1:.0%} faster; "
      f"from these figures it would train in {choice}")

# %% [markdown]
# A training run with `bf16: auto` makes this choice for its own model and batch size before its
# first step, in eager mode, and prints it as one line that starts with `precision auto:`,
# followed by each mode's images per second. It keeps the decision in a small JSON file,
# `~/.cache/vitlib/precision.json` (the environment variable `VITLIB_CACHE_DIR` moves it), keyed
# by the CPU model and its instruction sets, the PyTorch version, the number of threads and the
# model's shape with its batch size, so the next run of the same model starts at once with the
# same line read from the file. Delete the file to measure again. `bf16: true` or `bf16: false`
# is obeyed without measuring anything; the attention path then follows `model_params.fused_attn`
# (`true` unless you set it). On a CUDA GPU, `auto` means bf16 wherever the GPU supports it.
#
# In full mode, here is that decision for the model we just timed, measured into a temporary
# folder so that your own cache is left alone, then asked for a second time, which reads it back
# from the file. (A measurement taken while other programs keep every core busy is not kept: the
# line then says so, and the next run measures again.)

# %%
if QUICK:
    print("quick mode: no measurement here (configs/quick.yaml sets bf16: false, so its runs skip it)")
else:
    from vitlib.runtime import resolve_precision
    probe_cache = OUT / "precision.json"
    for _ in range(2):  # the first call measures, the second reads the decision from the file
        auto_choice = resolve_precision("auto", bench, 128, cpu, cache=probe_cache)
    print(f"bf16 {auto_choice.bf16}, fused attention {auto_choice.fused_attn}")

# %% [markdown]
# Speed is no use if the numbers go wrong. A self-check on the shipped model's weights: bf16
# logits differ from fp32 ones only by bf16's rounding (a few parts in a thousand of the logits'
# size), and the predicted class agrees for (almost) every test image.

# %%
if any(name.startswith("bf16") for name in speed):
    shipped_model, _ = load_pretrained("default")
    x_real = make_dataset(default_cfg, "test").get_batch(torch.arange(256))["image"]
    with torch.no_grad():
        ref = shipped_model(x_real)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low_p = shipped_model(x_real).float()
    rel = ((low_p - ref).abs().max() / ref.abs().max()).item()
    agree = (low_p.argmax(-1) == ref.argmax(-1)).float().mean().item()
    assert rel < 0.05 and agree > 0.95, (rel, agree)
    print(f"✓ bf16 vs fp32 logits of the shipped model: largest difference {rel:.2%} of the largest "
          f"logit; same prediction for {agree:.1%} of {len(x_real)} test images")

# %% [markdown]
# ## Data augmentation: moving the digit
#
# Every training image gets a fresh colour, texture and crop each time it is drawn, so a model
# cannot memorise backgrounds. The digit's *shape* is the one thing that repeats: the same MNIST
# strokes, epoch after epoch. `configs/default.yaml` therefore also moves each training digit by
# a small random affine map before it is painted, one map per image,
#
# $$
# \begin{pmatrix} u \\ v \end{pmatrix} = \frac{1}{s}
# \begin{pmatrix} \cos\theta & -\sin\theta \\ \sin\theta & \cos\theta \end{pmatrix}
# \begin{pmatrix} x \\ y \end{pmatrix} + \delta,
# \qquad \theta \sim U(\pm 8^\circ),\; s \sim U(1 \pm 0.08),\; \delta \sim U(\pm 2\,\text{px})^2,
# $$
#
# where output pixel $(x, y)$ reads the digit mask at $(u, v)$ (this is what `F.affine_grid` and
# `F.grid_sample` compute). Validation and test digits are never moved. The keys are `aug_shift`,
# `aug_rotate` and `aug_scale` in `dataset_params`; all zero is the original's recipe. A fourth
# key, `aug_elastic`, adds Simard et al.'s (2003) *elastic distortion*, a smooth random warp
# added to $(u, v)$: Gaussian noise at a $5 \times 5$ grid of control points, interpolated in
# between so that a stroke bends rather than breaks. It is off in `configs/default.yaml`
# (`benchmarks/RESULTS.md` records the runs that tried it).

# %%
train_ds_default = make_dataset(default_cfg, "train")
aug = train_ds_default.augment                   # built from configs/default.yaml's dataset_params
assert aug == DigitAugment(shift=2, rotate=8, scale=0.08)
mask = train_ds_default.masks(torch.tensor([0]))                                  # (1, 1, H, W) bool
moves = aug(mask.expand(8, -1, -1, -1), torch.Generator().manual_seed(0))          # (8, 1, H, W)
assert moves.shape == (8, *mask.shape[1:]) and torch.equal(DigitAugment()(mask), mask)
fig, axes = plt.subplots(1, 9, figsize=(12, 1.9))
for ax, m, title in zip(axes, [mask[0], *moves], ["original", *[f"move {i + 1}" for i in range(8)]]):
    ax.imshow(m[0], cmap="gray")
    ax.set_title(title, fontsize=8)
    ax.set_xlabel("x (px)", fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])
axes[0].set_ylabel("y (px)", fontsize=7)
fig.suptitle(f"One training digit, eight random moves (shift ±{aug.shift:g} px, rotation ±{aug.rotate:g}°, "
             f"zoom ±{aug.scale:.0%})")
fig.tight_layout()
plt.show()
print(f"✓ {(moves != mask).flatten(1).any(1).sum().item()} of 8 moves change the mask; all-zero settings change nothing")

# %% [markdown]
# ## Multi-task training: digit, texture and colour
#
# Chapter 4 added two optional heads on the class token: a texture classifier and a colour
# regressor. Training them needs one loss per head; `vitlib` adds them with weights
# (`texture_loss_weight` $= \lambda_t$ and `color_loss_weight` $= \lambda_c$ in `train_params`):
#
# $$
# L = L_\text{digit} + \lambda_t L_\text{tex} + \lambda_c L_\text{col}, \qquad
# L_\text{col} = \frac{1}{3B}\sum_{b=1}^{B} \|\hat c_b - c_b\|^2 ,
# $$
#
# where $L_\text{digit}$ and $L_\text{tex}$ are cross-entropies and $\hat c_b, c_b \in [0,1]^3$
# are the predicted and true RGB colours of the digit (`color_loss: l1` uses the absolute error
# instead). The weights balance the tasks: the three losses have different scales, and a large
# one would dominate the shared gradient. Extra labels cost nothing here, and a model that must
# also name the texture and the colour is pushed to represent them explicitly. First the formula
# against `Objective`, with unequal weights so that a swapped weight would show:

# %%
n_tex = train_ds_default.num_textures
out = {"number": torch.randn(8, 10), "texture": torch.randn(8, n_tex), "color": torch.rand(8, 3)}
targets = {"number_cls": torch.randint(10, (8,)), "texture_cls": torch.randint(n_tex, (8,)),
           "color": torch.rand(8, 3)}
lam_t, lam_c = 0.5, 2.0
by_hand = (F.cross_entropy(out["number"], targets["number_cls"])
           + lam_t * F.cross_entropy(out["texture"], targets["texture_cls"])
           + lam_c * ((out["color"] - targets["color"]) ** 2).mean())
total_loss, _ = Objective(TrainParams(texture_loss_weight=lam_t, color_loss_weight=lam_c))(out, targets)
assert_close(total_loss, by_hand)
print(f"✓ L = L_digit + {lam_t} L_tex + {lam_c} L_col = {by_hand:.4f} == vitlib Objective")

# %% [markdown]
# ## Resuming an interrupted run
#
# Training for hours on a laptop gets interrupted: the lid closes, the kernel dies. After every
# epoch `vitlib` writes `last.pt` with everything needed to continue exactly where it stopped:
# weights, AdamW's $m$ and $v$, the step, the schedule's plan, every random number generator's
# state, the epoch and the history. (The data order needs no state: `BatchLoader` derives it from
# the seed and the epoch.) We show it on a short multi-task run: `configs/quick.yaml` with two
# overrides in `model_params` (`num_textures`, `predict_color: true`), on fewer samples in quick
# mode. `stop_after_epochs=1` simulates an interruption after the first epoch; `resume=True`
# (the CLI's `--resume`) picks the run up again. Exercise 2 checks that the result is bit for bit
# that of an uninterrupted run.

# %%
mt_epochs = 2 if QUICK else 6
mt_overrides = {
    "model_params": {"num_textures": n_tex, "predict_color": True},
    "dataset_params": {"epoch_samples": 6400 if QUICK else None},
    "train_params": {"task_name": "runs/quick_multitask", "epochs": mt_epochs},
}
mt_cfg = load_config("configs/quick.yaml", mt_overrides)
first = train(mt_cfg, out_dir=OUT, stop_after_epochs=1, progress=False)   # "interrupted"
print("... interrupted after", len(first["history"]), "epoch(s); resuming:")
mt = train(mt_cfg, out_dir=OUT, resume=True, progress=False)               # python -m vitlib.train --resume
assert [r["epoch"] for r in mt["history"]] == list(range(1, mt_epochs + 1))
assert load_checkpoint(mt["last_path"])["epoch"] == mt_epochs
print(f"✓ resumed run finished all {mt_epochs} epochs; history has one row per epoch")

# %% [markdown]
# What the extra heads learned, against the simplest baselines: guessing a texture class is right
# $1/n_\text{tex}$ of the time, and always predicting the mid colour $(0.5, 0.5, 0.5)$ for
# uniformly random colours has a mean absolute error of $\mathbb{E}|u - 0.5| = 0.25$ per channel.

# %%
last = mt["history"][-1]
steps = mt_epochs * (len(make_dataset(mt_cfg, "train")) // mt_cfg.train.batch_size)
print(f"after {steps:,} steps: digit accuracy {last['val_acc']:.1%} (chance 10%), "
      f"texture accuracy {last['val_texture_acc']:.1%} (chance {1 / n_tex:.1%}), "
      f"colour MAE {last['val_color_mae']:.3f} (constant guess 0.250)")
assert last["val_texture_acc"] > 1 / n_tex and last["val_color_mae"] < 0.25
print("✓ both extra heads beat their trivial baselines")

# %% [markdown]
# In quick mode these are only first steps: the digit head has barely left chance and the texture
# and colour heads have only just moved away from their baselines. Like the digit, they need the
# model to separate the digit's pixels from the background, and every head waits for that. Full
# mode trains on all training images for more epochs and gets further.
#
# ## Summary
#
# - A run is a YAML config with the original's three sections; `load_config` parses it strictly
#   and takes overrides, as the CLI's `--set` does. `python -m vitlib.train` trains,
#   `--resume` continues, `python -m vitlib.hub export` ships a run.
# - `vitlib`'s recipe differs from the original's in the optimiser, the schedule, clipping,
#   precision, augmentation, the checkpoint rule (validation accuracy) and what a resume restores.
# - `time_budget_min` times the epochs as they go and, after each, re-lays the rest of the cosine
#   over the epochs that still fit, anchored where it is, so the learning rate never jumps and
#   reaches `min_lr` on time.
# - bf16 autocast speeds training up only where the hardware multiplies bf16 fast (AMX or
#   AVX512-BF16 on a CPU, recent GPUs), by an amount that depends on the model. `bf16: auto`
#   measures it on your CPU, with both attention paths, and keeps the fastest.
# - Training digits are moved by small random affine maps; validation and test digits never are.
# - Extra heads train with $L = L_\text{digit} + \lambda_t L_\text{tex} + \lambda_c L_\text{col}$;
#   `last.pt` holds everything a resumed run needs to continue exactly.
#
# ## Exercises
#
# ```{exercise} A budget of seconds
# :label: ex-u2-1
#
# Train `configs/quick.yaml` with short epochs (`epoch_samples: 640`), `epochs: 1000` and
# `time_budget_min: 0.05` (three seconds). How many epochs does it plan, how long does the call
# take, and where does the learning rate end?
# ```
#
# ```{solution-start} ex-u2-1
# :class: dropdown
# ```

# %%
budget_cfg = load_config("configs/quick.yaml", {
    "dataset_params": {"epoch_samples": 640},
    "train_params": {"epochs": 1000, "time_budget_min": 0.05, "task_name": "runs/budget"}})
t0 = time.perf_counter()
res = train(budget_cfg, out_dir=OUT, progress=False)
took = time.perf_counter() - t0
last_lr = res["history"][-1]["lr"]
assert res["epochs"] < 1000                                    # the budget, not the cap, set the length
assert res["stopped_by_budget"] or math.isclose(last_lr, budget_cfg.train.min_lr, rel_tol=1e-6)
print(f"planned {res['epochs']} epochs, trained {len(res['history'])}, in {took:.1f} s; "
      f"last learning rate {last_lr:.2e} (min_lr {budget_cfg.train.min_lr:.0e})")

# %% [markdown]
# The first epoch sets the plan; the later ones adjust it. The call takes a little longer than
# the budget: start-up and the final checkpoint are outside the epochs it times. The learning
# rate ends at `min_lr` unless the machine slowed down so much that the run had to stop early.
#
# ```{solution-end}
# ```
#
# ```{exercise} Resuming bit for bit
# :label: ex-u2-2
#
# Train a short run (`epoch_samples: 640`, `epochs: 2`) once without a break and once
# interrupted after its first epoch and resumed. Are the final weights equal, bit for bit?
# ```
#
# ```{solution-start} ex-u2-2
# :class: dropdown
# ```

# %%
def short_run(name: str) -> dict:
    return load_config("configs/quick.yaml", {"dataset_params": {"epoch_samples": 640},
                                              "train_params": {"epochs": 2, "task_name": f"runs/{name}"}})


whole = train(short_run("whole"), out_dir=OUT, progress=False)
train(short_run("broken"), out_dir=OUT, stop_after_epochs=1, progress=False)
resumed = train(short_run("broken"), out_dir=OUT, resume=True, progress=False)
same = [torch.equal(a, b) for a, b in zip(whole["model"].state_dict().values(),
                                          resumed["model"].state_dict().values())]
assert all(same)
print(f"✓ all {len(same)} weight tensors are equal, bit for bit")

# %% [markdown]
# They are equal because `last.pt` restores everything a step depends on: the weights, AdamW's
# moments, the step count the schedule reads, and the random generators; the data order is a
# function of the seed and the epoch.
#
# ```{solution-end}
# ```
#
# ```{exercise} bf16 rounding and range
# :label: ex-u2-3
#
# Round many numbers to bf16 and back: what is the largest relative error? Then cast 70,000 to
# float16 and to bf16. What does that say about loss scaling?
# ```
#
# ```{solution-start} ex-u2-3
# :class: dropdown
# ```

# %%
x = torch.rand(100_000, dtype=torch.float32) * 1000 + 1e-3
rel_err = ((x.bfloat16().float() - x) / x).abs().max().item()
assert rel_err <= 2**-8                          # 7 stored mantissa bits + round to nearest
big = torch.tensor(70_000.0)
assert torch.isinf(big.half()) and big.bfloat16().float().item() == 70_144.0
print(f"largest relative error {rel_err:.2e} ≤ 2^-8 = {2**-8:.2e}; 70,000 in float16: "
      f"{big.half().item()}, in bf16: {big.bfloat16().float().item():,.0f}")

# %% [markdown]
# bf16 keeps about three significant digits, enough for activations. Its range is float32's, so
# large values and tiny gradients survive; float16 overflows above 65,504 and flushes small
# gradients to zero, which is why float16 training needs loss scaling and bf16 does not.
#
# ```{solution-end}
# ```
#
# ## Comprehension questions
#
# **1. Why must a cosine schedule know its length in advance, and how does `time_budget_min` get
# around that?**
#
# ```{admonition} Answer
# :class: dropdown
# The cosine's progress is $(t - T_w)/(T - T_w)$, so $T$ fixes every rate. The budget measures the
# first epoch (the warm-up, before the cosine starts), plans $T$ from it and re-plans after every
# epoch.
# ```
#
# **2. Why anchor a re-plan instead of putting the new $T$ into the formula?**
#
# ```{admonition} Answer
# :class: dropdown
# A larger $T$ would lower the progress at once and make the learning rate jump up. Anchoring
# continues from the current progress, so the rate changes smoothly.
# ```
#
# **3. Why does bf16 need no loss scaling when float16 does?**
#
# ```{admonition} Answer
# :class: dropdown
# bf16 has float32's 8 exponent bits and range; float16 has 5, so small gradients underflow to
# zero unless the loss is scaled up first.
# ```
#
# **4. Why does `bf16: auto` measure instead of reading the CPU's flags?**
#
# ```{admonition} Answer
# :class: dropdown
# The speed-up depends on the instructions, the model's shapes, the thread count and the
# attention kernel; the flags do not say which path wins for a given model.
# ```
#
# **5. Why does `last.pt` hold the random generators' states?**
#
# ```{admonition} Answer
# :class: dropdown
# Dropout and other random draws after the restart must be the ones the uninterrupted run would
# have made; otherwise the resumed run diverges from it.
# ```
#
# **6. Why is a misspelt key in a config an error rather than a warning?**
#
# ```{admonition} Answer
# :class: dropdown
# An ignored key trains silently with the default value, and the result looks like a bad recipe
# rather than a typo. An error names the key at once.
# ```

# %%
shutil.rmtree(OUT, ignore_errors=True)           # this appendix's runs lived in a temporary folder
print(f"notebook ran in {time.perf_counter() - START:.1f} s (quick mode: {QUICK})")
