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
# # 06 · Interpretation: what has the trained ViT learned?
#
# A test accuracy tells us *that* a model works, not *how*. In this chapter we open a trained ViT:
# where its class token reads from (attention rollout), how far each head looks, what the position
# embeddings learned about the 2-D layout, and what each layer's tokens know. Our data gives us
# something no ImageNet tutorial has: the **exact digit mask** of every test image. So we do not
# only look at explanations, we *score* them against the truth.
#
# **Learning objectives.** After this chapter you can
#
# - derive attention rollout, $R = \tilde A_L \cdots \tilde A_1$, and tell the original
#   project's variant (max over heads) from Abnar & Zuidema's (mean over heads);
# - measure whether a learned position table knows the 2-D grid, and compare it with a fixed
#   2-D sin-cos table;
# - score six explanation methods against ground-truth digit masks with two metrics;
# - fit linear probes to every layer and say where the digit becomes decodable.
#
# **Which model.** Chapters 02–05 use the book's default model: 16 patches of $8 \times 8$ pixels,
# cheap enough to train in half an hour on a laptop. Its maps have only $4 \times 4$ cells, too
# coarse to see much. Here we load its sibling, the **fine model** (`configs/fine.yaml`,
# `ViTConfig.fine()`): the same network on $P = 4$, so $N = 64$ patches on an $8 \times 8$ grid.
# It costs about four times as many FLOPs per image, so it ships pretrained; nothing is trained here.
#
# **Time.** Reading: about 45 minutes. Running: about a minute in quick mode (`VITLIB_QUICK=1`:
# 2,000 test images for the accuracy, 100 for the scores); a few minutes in full mode (all
# 10,000 test images, 1,000 for the scores).

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch.testing import assert_close

import vitlib.paths
from vitlib import explain, interpret, probe, viz
from vitlib.config import parse_config
from vitlib.hub import load_pretrained
from vitlib.model import ViTConfig, flops_per_image
from vitlib.train import evaluate, make_dataset

QUICK = vitlib.paths.is_quick()
torch.manual_seed(0)
START = time.perf_counter()
print(f"quick mode: {QUICK}; torch {torch.__version__}")

# %% [markdown]
# ## The fine model, evaluated from scratch
#
# `load_pretrained` returns the model and the record of its training run: its config, its
# per-epoch history and the metrics measured when it was exported. We rebuild the test set from
# that config (it is deterministic: image $i$ is the same image every time) and measure the
# accuracy again ourselves.

# %%
model, info = load_pretrained("fine")
cfg = model.config
GRID, PATCH, L, h, N = cfg.grid_size, cfg.patch_size, cfg.n_layers, cfg.n_heads, cfg.num_patches
test_ds = make_dataset(parse_config(info["config"]), "test")
ratio = flops_per_image(cfg) / flops_per_image(ViTConfig())
print(f"fine model: {model.num_parameters():,} parameters, P = {PATCH}, N = {N} patches on a "
      f"{GRID[0]}x{GRID[1]} grid, {ratio:.1f}x the default model's FLOPs per image")

n_eval = 2000 if QUICK else len(test_ds)
eval_idx = torch.randperm(len(test_ds), generator=torch.Generator().manual_seed(0))[:n_eval].sort().values
res = evaluate(model, [test_ds.get_batch(eval_idx[i:i + 500]) for i in range(0, n_eval, 500)],
               torch.device("cpu"), return_predictions=True)
se = (res["acc"] * (1 - res["acc"]) / n_eval) ** 0.5
print(f"test accuracy {res['acc']:.2%} ± {se:.2%} on {n_eval:,} test images ({test_ds.source})")
print(f"recorded at export: {info['metrics']['test']['test_acc']:.2%} on {info['metrics']['test']['n_test']:,}, "
      f"after {info['epoch']} epochs")

# %% [markdown]
# ## Attention rollout
#
# The attention weights $A_\ell^i$ of head $i$ in layer $\ell$ say how much each token reads from
# every other token *in that layer*. To follow information from the input patches to the class
# token we chain the layers {cite:p}`abnar2020attentionflow`: fuse the heads into one matrix
# $\bar A_\ell$, account for the residual connection, which passes every token on unchanged next to
# the attention's output, by giving both paths equal weight, and multiply:
#
# $$
# \tilde A_\ell = \tfrac{1}{2}\left(\bar A_\ell + I\right), \qquad R = \tilde A_L \, \tilde A_{L-1} \cdots \tilde A_1 .
# $$
#
# Every $\tilde A_\ell$ is row-stochastic, so row $i$ of $R$ is a distribution over the input tokens;
# the map we draw is row 0 (the class token) without its first entry, on the patch grid. Two
# variants differ in how they fuse the heads:
#
# - **Abnar & Zuidema**: the mean, $\bar A_\ell = \frac{1}{h} \sum_i A_\ell^i$.
# - **The original project**: per head $(A_\ell^i + I)/2$, then the element-wise **maximum** over
#   heads. One strongly attending head can dominate, and rows no longer sum to 1.
#
# By hand, for one image (`attentions` is a list of $L$ tensors of shape $(h, N+1, N+1)$):

# %%
def rollout_by_hand(attentions: list[torch.Tensor], fusion: str = "mean") -> torch.Tensor:
    """R = Ã_L ... Ã_1 for one image -> (N+1, N+1)."""
    eye = R = torch.eye(attentions[0].shape[-1])
    for a in attentions:
        if fusion == "mean":                                   # Abnar & Zuidema
            a_tilde = 0.5 * a.mean(0) + 0.5 * eye
            a_tilde = a_tilde / a_tilde.sum(-1, keepdim=True)
        else:                                                  # the original: per head, then max
            a_tilde = ((a + eye) / 2).amax(0)
        R = a_tilde @ R                                        # later layers multiply on the left
    return R


sample = torch.randperm(len(test_ds), generator=torch.Generator().manual_seed(1))[:8]
batch = test_ds.get_batch(sample)
x, y = batch["image"], batch["number_cls"]
with torch.no_grad():
    logits, attentions = model(x, return_attention=True)
pred = logits.argmax(-1)
for fusion, variant in (("mean", "abnar"), ("max", "original")):
    mine = rollout_by_hand([a[0] for a in attentions], fusion)
    assert_close(mine, interpret.attention_rollout(attentions, variant)[0], rtol=1e-5, atol=1e-6)
maps = {"rollout, mean (Abnar)": interpret.attention_rollout(attentions, "abnar", grid=GRID),
        "rollout, max (original)": interpret.attention_rollout(attentions, "original", grid=GRID)}
print(f"✓ both rollouts by hand == vitlib.interpret.attention_rollout; maps {tuple(maps['rollout, mean (Abnar)'].shape)}")

# %% [markdown]
# The original project draws a map by multiplying the image with it, so that what the class token
# ignores goes dark; we show that look for both variants, and a heat map of the mean variant.

# %%
n_show = 5
fig, axes = plt.subplots(n_show, 4, figsize=(8.4, 2.1 * n_show))
for i in range(n_show):
    axes[i, 0].imshow(viz.to_numpy_image(x[i]))
    axes[i, 0].set_title(f"digit {int(y[i])}, predicted {int(pred[i])}", fontsize=8)
    for ax, (name, m) in zip(axes[i, 1:3], maps.items()):
        ax.imshow(viz.overlay(x[i], m[i], mode="multiply"))
        ax.set_title(name, fontsize=8)
    axes[i, 3].imshow(viz.overlay(x[i], maps["rollout, mean (Abnar)"][i], mode="heatmap"))
    axes[i, 3].set_title("mean, heat map", fontsize=8)
for ax in axes.flat:
    ax.set(xticks=[], yticks=[])
fig.suptitle("Attention rollout of the fine model (8x8 patch grid)")
fig.tight_layout()
plt.show()

# %% [markdown]
# Rollout leaves out the MLPs and the values $V$, and gives the residual path a fixed weight: it
# shows where information *can* flow. Whether that is where the decision comes from is a question
# we can test, later in this chapter, against the digit masks.
#
# ## How far does each head look?
#
# The ViT paper's Fig. 7 (right) averages, for each head, the distance between a query patch and
# the patches it attends to, weighted by the attention. Uniform attention gives the mean distance
# between two random patches (`analytic_mean_distance`), the dashed line.

# %%
n_dist = 128 if QUICK else 1000
dist = torch.zeros(L, h)
for start in range(0, n_dist, 250):
    idx = torch.arange(start, min(start + 250, n_dist))
    with torch.no_grad():
        _, att = model(test_ds.get_batch(idx)["image"], return_attention=True)
    dist += interpret.mean_attention_distance(att, GRID, PATCH) * len(idx) / n_dist
uniform = interpret.analytic_mean_distance(GRID, PATCH)
flat = [torch.full((1, h, N + 1, N + 1), 1.0 / (N + 1)) for _ in range(L)]
assert_close(interpret.mean_attention_distance(flat, GRID, PATCH), torch.full((L, h), uniform))
fig = viz.plot_attention_distance(dist, title=f"Mean attention distance ({n_dist} test images)")
fig.axes[0].axhline(uniform, color="gray", ls="--", lw=1, label="uniform attention")
fig.axes[0].legend(fontsize=7, ncol=3, loc="upper left")
plt.show()
local = [(layer + 1, head + 1) for layer in range(L) for head in range(h) if dist[layer, head] < 0.6 * uniform]
print(f"uniform attention: {uniform:.1f} px; heads below 60% of it (layer, head): {local}")
print(f"first-layer heads: {', '.join(f'{d:.1f}' for d in dist[0].tolist())} px; "
      f"last layer: {', '.join(f'{d:.1f}' for d in dist[-1].tolist())} px")

# %% [markdown]
# ## What the position embeddings learned
#
# The model adds a learned vector $E_\text{pos}[p] \in \mathbb{R}^D$ to patch $p$. Nothing tells it
# that patch 9 sits below patch 1: the table is 64 free vectors, started at random with a small
# standard deviation (0.1). Does training arrange them by position? The cosine similarity
#
# $$
# s(p, q) = \frac{E_\text{pos}[p] \cdot E_\text{pos}[q]}{\lVert E_\text{pos}[p] \rVert \, \lVert E_\text{pos}[q] \rVert}
# $$
#
# should then fall with the distance between $p$ and $q$ on the grid. One number says how well:
# **Spearman's rank correlation** $\rho$ between $s(p, q)$ and the grid distance, over all
# $\binom{64}{2} = 2016$ pairs ($-1$: similarity falls perfectly with distance; 0: no relation).
#
# The alternative needs no learning: a fixed **2-D sin-cos table** {cite:p}`beyer2022plainvit`,
# where a quarter of the $D$ numbers are $\sin(x \omega_k)$, a quarter $\cos(x \omega_k)$ and the
# rest the same for the row $y$. A sibling of the fine model, `fine_sincos`, was trained with it
# under the same recipe and time budget.

# %%
sincos_model, sincos_info = load_pretrained("fine_sincos")
tables = {"learned": interpret.pos_embed_table(model), "2-D sin-cos (fixed)": interpret.pos_embed_table(sincos_model)}
rho = {k: interpret.pos_embed_spearman(t, GRID) for k, t in tables.items()}
acc = {"learned": info["metrics"]["test"]["test_acc"], "2-D sin-cos (fixed)": sincos_info["metrics"]["test"]["test_acc"]}
start = {"learned": torch.randn(N, cfg.emb_dim, generator=torch.Generator().manual_seed(0)) * 0.1}
inner = lambda t: t.reshape(*GRID, -1)[1:-1, 1:-1].reshape(-1, t.shape[-1])  # noqa: E731  (the 6x6 interior)
rho_in = {k: interpret.pos_embed_spearman(inner(t), (GRID[0] - 2, GRID[1] - 2)) for k, t in tables.items()}
for k in tables:
    print(f"{k:>20}: Spearman rho = {rho[k]:+.3f} (inner 6x6 patches: {rho_in[k]:+.3f}), test accuracy {acc[k]:.2%}")
print(f"{'a random start':>20}: Spearman rho = {interpret.pos_embed_spearman(start['learned'], GRID):+.3f}")

# %%
d = interpret.patch_distances(GRID)
iu = torch.triu_indices(N, N, 1)
probes_at = [0, 27, 63]                                         # a corner, near the centre, a corner
fig, axes = plt.subplots(2, len(probes_at) + 1, figsize=(11, 5.4))
for row, (name, t) in enumerate(tables.items()):
    t = F.normalize(t, dim=-1)
    sim = t @ t.T                                               # (N, N)
    for ax, p in zip(axes[row], probes_at):
        im = ax.imshow(sim[p].reshape(GRID), vmin=-1, vmax=1, cmap="viridis")
        ax.set_title(f"{name}: patch {p}", fontsize=8)
        ax.set_xlabel("patch column")
        ax.set_ylabel("patch row")
    ax = axes[row, -1]
    ax.scatter(d[iu[0], iu[1]], sim[iu[0], iu[1]], s=3, alpha=0.2)
    ax.set_title(f"rho = {rho[name]:+.2f}, test acc {acc[name]:.2%}", fontsize=8)
    ax.set_xlabel("grid distance (patches)")
    ax.set_ylabel("cosine similarity")
fig.colorbar(im, ax=axes[:, :-1].ravel().tolist(), shrink=0.7, label="cosine similarity")
fig.suptitle("Position embeddings: learned (top) against the fixed 2-D sin-cos table (bottom)")
plt.show()

# %% [markdown]
# The full picture in the style of the ViT paper's Fig. 7 (centre), for the learned table: one
# small panel per patch, showing its similarity with every other patch.

# %%
fig = viz.plot_pos_similarity(interpret.pos_embed_similarity(model), title="Learned position embedding similarity")
plt.show()

# %% [markdown]
# The sin-cos table knows the grid by construction; the learned one only in part. Its corner patch
# is about as similar to the far corners as to its neighbours: the outer ring of patches is one
# cluster. That 4-pixel ring is texture in nearly every image (MNIST's empty margin survives the
# resize to 32 px), so the model never needed to tell its positions apart. Inside it, where strokes
# fall, the table has the layout: compare the inner $6 \times 6$ patches' $\rho$ with the start's.
#
# ## Explanations, scored against the truth
#
# An explanation method turns one image into a score per patch: "this is where the evidence is".
# We compare six (`vitlib.explain`):
#
# - **CLS attention** of the last layer (mean over heads), and the two **rollouts** above;
# - **gradient rollout** {cite:p}`chefer2021generic`: each layer's attention weighted by the gradient
#   of the predicted logit, $\bar A_\ell = \mathbb{E}_i[(\nabla A_\ell^i \odot A_\ell^i)^+]$, then
#   $R \leftarrow R + \bar A_\ell R$ from $R = I$;
# - **occlusion**: the drop of the predicted logit when a patch is greyed out;
# - **integrated gradients** {cite:p}`sundararajan2017ig`: the gradient averaged along the straight
#   path from a baseline $x'$ to the image, times $x - x'$. The baseline is a blurred copy of the
#   image: with the patch LayerNorm, a constant baseline would make the path flat.
#
# Occlusion and integrated gradients come from captum, PyTorch's attribution library. Two scores,
# with the digit mask $M$ (1 on digit pixels):
#
# - the **pointing game**: is the top-scored patch on the digit (does it hold a digit pixel)?
# - the **mass on the digit**: the share of the map's (non-negative) mass on digit pixels, divided
#   by the digit's share of the image; 1 is chance, and the best possible is $1/\text{share}$.
#
# A self-check of the scorer: a map that *is* the digit's share of each patch must point at the
# digit, and a uniform map must score exactly 1.

# %%
masks = test_ds.masks(sample)                                   # (B, 1, H, W) bool
truth = interpret.patch_digit_fraction(masks, GRID)             # (B, gh, gw)
assert interpret.pointing_game(truth, masks).all()
uniform_mass = interpret.mass_on_digit(torch.ones_like(truth), masks)
assert_close(uniform_mass, torch.ones_like(uniform_mass))
best = 1 / masks.float().mean((1, 2, 3))
print(f"✓ scorer: the digit itself points at the digit; a uniform map scores 1.0. "
      f"The digit covers {masks.float().mean():.1%} of these images, so the best mass is ~{best.mean():.1f}")

# %%
explained = explain.explain_batch(model, x[:4])
fig, axes = plt.subplots(4, len(explained) + 1, figsize=(1.75 * (len(explained) + 1), 7.6))
for i in range(4):
    axes[i, 0].imshow(viz.to_numpy_image(x[i]))
    axes[i, 0].set_ylabel(f"digit {int(y[i])}", fontsize=8)
    for ax, (name, m) in zip(axes[i, 1:], explained.items()):
        ax.imshow(viz.overlay(x[i], m[i].clamp_min(0), mode="heatmap"))
        if i == 0:
            ax.set_title(name, fontsize=7)
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle("Six explanations of the predicted digit")
fig.tight_layout()
plt.show()

# %% [markdown]
# Now the scores on a random sample of test images, with a random map as the chance row:

# %%
methods = {**explain.METHODS, "random map (chance)": lambda m, imgs: torch.rand(len(imgs), *GRID)}
n_score = 60 if QUICK else 1000
rows = explain.score_methods(model, test_ds, n=n_score, methods=methods, progress=not QUICK)
print(f"{'method':<28} {'pointing game':>16} {'mass on digit':>16} {'s/100 img':>10}   ({n_score} images)")
for r in rows:
    print(f"{r['method']:<28} {r['pointing']:>9.3f} ± {r['pointing_se']:.3f} {r['mass']:>9.2f} ± {r['mass_se']:.2f}"
          f" {100 * r['seconds'] / n_score:>10.2f}")
score = {r["method"]: r for r in rows}
assert abs(score["random map (chance)"]["mass"] - 1) < 4 * score["random map (chance)"]["mass_se"] + 0.05

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
names = [r["method"] for r in rows]
for ax, key, label in ((axes[0], "pointing", "pointing game (share of images)"),
                       (axes[1], "mass", "mass on the digit (1 = chance)")):
    ax.barh(names, [r[key] for r in rows], xerr=[r[key + "_se"] for r in rows], color="tab:blue")
    ax.set_xlabel(label)
    ax.set_title(f"{label.split(' (')[0].capitalize()} ({n_score} test images)")
    ax.invert_yaxis()
axes[1].axvline(1.0, color="gray", ls="--", lw=1)
axes[1].set_yticklabels([])
fig.tight_layout()
plt.show()
ranked = sorted((r for r in rows if "random" not in r["method"]), key=lambda r: -r["mass"])
print("by mass on the digit: " + " > ".join(f"{r['method']} ({r['mass']:.2f})" for r in ranked))

# %% [markdown]
# Read the table with the caveat that the two metrics reward maps that sit *on the digit*, and a
# model could also use the background next to the strokes (where a 4 and a 9 differ, for example
# the gap at the top). The method at the bottom of the ranking is not necessarily wrong about the
# model; it is less aligned with the digit.
#
# ## What each layer knows: linear probes
#
# Every test image carries three labels: its digit, its texture class and its digit colour. A
# **linear probe** fits a linear model on one layer's tokens, on 70% of a sample, and scores it
# on the other 30%: accuracy for digit and texture, $R^2$ for the colour. We probe the class token
# and the mean patch token at depth 0 (entering block 1) and after each of the $L$ blocks.

# %%
feats = probe.collect_features(model, test_ds, n=1000 if QUICK else 3000, progress=not QUICK)
probe_rows = probe.probe_layers(feats)
fig = viz.plot_probes(probe_rows, title="What each layer of the fine model knows (linear probes)")
plt.show()
by = {(r["depth"], r["token"]): r for r in probe_rows}
first = next((dd for dd in range(L + 1) if by[dd, "cls"]["digit_acc"] >= 0.9), None)
tex = [by[dd, "mean"]["texture_acc"] for dd in range(L + 1)]
print(f"digit: CLS probe {by[0, 'cls']['digit_acc']:.2f} at depth 0 (chance {by[0, 'cls']['digit_chance']:.2f}), "
      f"first >= 0.90 at depth {first}, {by[L, 'cls']['digit_acc']:.2f} at depth {L}")
print(f"texture (mean patch token): best {max(tex):.2f} at depth {int(np.argmax(tex))}, {tex[-1]:.2f} at depth {L} "
      f"(chance {by[0, 'mean']['texture_chance']:.2f})")
print("colour R² (CLS): " + ", ".join(f"{by[dd, 'cls']['color_r2']:.2f}" for dd in range(L + 1)))

# %% [markdown]
# The class token starts as the same vector for every image, so at depth 0 it knows nothing; the
# printed depth at which its probe first passes 0.90 is where the digit becomes linearly decodable
# from it. The printed texture figures say
# whether the background is thrown away or kept: the model was never asked about it, so whatever
# survives to the last layer is a by-product. A probe measures what is *decodable*, not what the
# model *uses*.
#
# ## Where it goes wrong
#
# The misclassified images of our evaluation, with the mean rollout of each:

# %%
wrong = eval_idx[(res["preds"] != res["targets"]).nonzero().flatten()]
bad = test_ds.get_batch(wrong[:8])
with torch.no_grad():
    bad_logits, bad_att = model(bad["image"], return_attention=True)
bad_maps = interpret.attention_rollout(bad_att, "abnar", grid=GRID)
fig, axes = plt.subplots(2, len(wrong[:8]), figsize=(1.8 * len(wrong[:8]) + 0.6, 4.4), squeeze=False)
for j in range(len(wrong[:8])):
    p = bad_logits[j].softmax(-1)
    axes[0, j].imshow(viz.to_numpy_image(bad["image"][j]))
    axes[0, j].set_title(f"true {int(bad['number_cls'][j])}, pred {int(p.argmax())}\np = {p.max():.2f}", fontsize=8)
    axes[1, j].imshow(viz.overlay(bad["image"][j], bad_maps[j], mode="heatmap"))
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
axes[0, 0].set_ylabel("input")
axes[1, 0].set_ylabel("rollout (mean)")
fig.suptitle(f"Misclassified test images ({len(wrong)} of {n_eval:,})")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Summary
#
# - `model(x, return_attention=True)` returns every layer's attention weights; **rollout** chains
#   them, $R = \tilde A_L \cdots \tilde A_1$ with $\tilde A_\ell = \frac{1}{2}(\bar A_\ell + I)$,
#   and the class token's row of $R$ is the map. The original project fuses heads by the maximum,
#   Abnar & Zuidema by the mean.
# - **Mean attention distance** separates local heads from global ones.
# - A learned **position table** can be measured: Spearman's $\rho$ between similarity and grid
#   distance. The fixed 2-D sin-cos table has the layout by construction; the printed $\rho$ and
#   accuracies compare the two.
# - With exact digit masks, explanation methods can be **scored**: the pointing game and the mass
#   on the digit, with standard errors, against a random map.
# - **Linear probes** show at which depth the digit, the texture and the colour are decodable.
#
# ## Exercises
#
# ```{exercise} Does a patch read its neighbours?
# :label: ex-06-1
#
# Rollout is not only for the class token. Take the full rollout $R$ of the first sample image
# (`interpret.attention_rollout(attentions, "abnar")[0]`) and, for every patch $p$, the share of
# row $1 + p$ that comes from the patches at grid distance at most 1 from $p$. Is it higher than
# for uniform attention?
# ```
#
# ```{solution-start} ex-06-1
# :class: dropdown
# ```

# %%
R = interpret.attention_rollout(attentions, "abnar")[0][1:, 1:]      # (N, N), patches only
near = (interpret.patch_distances(GRID) <= 1.5).float()              # the patch and its 8 neighbours
share = (R * near).sum(-1) / R.sum(-1)
uniform_share = near.sum(-1) / N
print(f"share of a patch's rollout from its neighbourhood: {share.mean():.2f} (uniform: {uniform_share.mean():.2f})")
assert share.mean() > uniform_share.mean()

# %% [markdown]
# ```{solution-end}
# ```
#
# ```{exercise} A model that knows nothing
# :label: ex-06-2
#
# Score the explanations of an *untrained* fine model (`ViT(ViTConfig.fine())`) on 50 test images,
# for CLS attention and occlusion only. Which of the two methods still points at the digit, and why
# can an untrained model's attention do that at all?
# ```
#
# ```{solution-start} ex-06-2
# :class: dropdown
# ```

# %%
from vitlib.model import ViT

torch.manual_seed(0)
untrained = ViT(ViTConfig.fine()).eval()
rows_untrained = explain.score_methods(untrained, test_ds, n=50, progress=False,
                                       methods=["CLS attention (last layer)", "occlusion"])
for r in rows_untrained:
    print(f"untrained, {r['method']}: pointing {r['pointing']:.2f}, mass {r['mass']:.2f}")
# Attention compares token *contents*, and digit patches differ sharply from the texture, so even
# random weights can single them out; occlusion measures the effect on an output that means nothing.
assert all(np.isfinite(r["pointing"]) for r in rows_untrained)

# %% [markdown]
# ```{solution-end}
# ```
#
# ```{exercise} The sin-cos table by hand
# :label: ex-06-3
#
# Build the 2-D sin-cos table for the $8 \times 8$ grid and $D = 128$ yourself, from the formula
# above ($\omega_k = 10000^{-k/(D/4-1)}$, $k = 0, \dots, D/4 - 1$), and check it against the
# fine_sincos model's table.
# ```
#
# ```{solution-start} ex-06-3
# :class: dropdown
# ```

# %%
D4 = cfg.emb_dim // 4
omega = 1.0 / 10000 ** (torch.arange(D4, dtype=torch.float64) / (D4 - 1))
rows_, cols_ = torch.meshgrid(torch.arange(GRID[0]), torch.arange(GRID[1]), indexing="ij")
xo, yo = cols_.flatten()[:, None] * omega, rows_.flatten()[:, None] * omega
mine = torch.cat([xo.sin(), xo.cos(), yo.sin(), yo.cos()], dim=1).float()   # (N, D)
assert_close(mine, tables["2-D sin-cos (fixed)"])
print("✓ the hand-built table equals fine_sincos's position table")

# %% [markdown]
# ```{solution-end}
# ```
#
# ## Comprehension questions
#
# **1. Why does rollout add the identity to every layer's attention?**
#
# ```{admonition} Answer
# :class: dropdown
# The residual connection passes every token on unchanged next to the attention's output. Without
# the identity, rollout would pretend that all information goes through attention.
# ```
#
# **2. Why can the original variant's rollout rows sum to more than 1?**
#
# ```{admonition} Answer
# :class: dropdown
# It takes an element-wise maximum over heads after adding the identity; a maximum of
# distributions is not a distribution.
# ```
#
# **3. What does a Spearman $\rho$ near 0 say about a position table?**
#
# ```{admonition} Answer
# :class: dropdown
# That how similar two positions' vectors are says nothing about how far apart they are: the table
# tells positions apart, but not by their 2-D layout, like the random start.
# ```
#
# **4. Why score explanations on this dataset rather than on ImageNet?**
#
# ```{admonition} Answer
# :class: dropdown
# Here the evidence is known exactly: the digit's pixels, given by its mask. On natural images no
# such ground truth exists, so explanations can only be looked at, not measured.
# ```
#
# **5. A probe reads the texture well from a layer. Does the model use the texture?**
#
# ```{admonition} Answer
# :class: dropdown
# Not necessarily: a probe shows what is linearly decodable. Later layers may ignore that direction.
# ```
#
# **6. Why does the class token's probe sit at chance at depth 0?**
#
# ```{admonition} Answer
# :class: dropdown
# Entering block 1, the class token is the learned CLS vector plus its position embedding, the
# same for every image. It only reads the patches through attention.
# ```

# %%
print(f"notebook ran in {time.perf_counter() - START:.1f} s (quick mode: {QUICK})")
