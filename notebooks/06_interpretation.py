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
# [Chapter 5](05_training.ipynb) trained a ViT that reads coloured digits on textured
# backgrounds. A test accuracy tells us *that* it works, not *how*. In this last chapter we open
# the trained model and look at what it computes: where its class token looks (attention
# rollout, in two variants), what each head of each layer attends to, what the position
# embeddings learned about the 2D layout of the patches, how far each head looks (the ViT
# paper's Fig. 7), what the first layer's filters look like, and which test images fool it.
#
# **Learning objectives.** After this chapter you can
#
# - derive attention rollout, $R = \tilde A_L \cdots \tilde A_1$ with
#   $\tilde A_\ell = \frac{1}{2}(\bar A_\ell + I)$, explain why the identity is there, and tell
#   the original project's variant (max over heads) from Abnar & Zuidema's (mean over heads,
#   optional discarding of weak attention);
# - draw rollout maps and per-head attention maps on top of the input image, and say what they
#   can and cannot tell you;
# - reproduce the three panels of the ViT paper's Fig. 7 for our model: patch-embedding filters,
#   position-embedding similarity and mean attention distance, and interpret each;
# - find the test images the model gets wrong and inspect what it looked at;
# - explore any image, layer and head interactively.
#
# **Time.** Reading: about 40 minutes. Running: under a minute on a laptop CPU in quick mode
# (`VITLIB_QUICK=1`) when the pretrained model ships with `vitlib` (it does: nothing is trained
# here). Without it the notebook first trains `configs/quick.yaml` in quick mode (about a minute)
# or `configs/default.yaml` in full mode (about half an hour). In full mode the statistics use
# more test images: the whole test set for the mistakes, 1,000 images for attention distances.

# %% [markdown]
# ## Setup
#
# *Reading this in JupyterLab?* `jupyterlab-myst` renders this chapter's MyST markup there, maths
# included, but not its citations: it does not read the book's bibliography, so a reference such as
# {cite:p}`dosovitskiy2021vit` shows there as its key, marked "Citation Not Found". The built
# book resolves them.

# %%
import time
from functools import lru_cache
from pathlib import Path

import ipywidgets
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from IPython.display import display
from torch.testing import assert_close

import vitlib.paths
from vitlib import interpret, viz
from vitlib.config import parse_config
from vitlib.hub import available_pretrained, load_or_train
from vitlib.model import ViT, as_heads
from vitlib.paths import REPO_ROOT
from vitlib.train import evaluate, make_dataset

QUICK = vitlib.paths.is_quick()
torch.manual_seed(0)
START = time.perf_counter()
print(f"quick mode: {QUICK}; torch {torch.__version__}")

# %% [markdown]
# ## A trained model
#
# Interpretation needs a model that has learned something. `vitlib` ships one: the book's default
# model (`configs/default.yaml`: 32 px images, $8 \times 8$ patches, so a $4 \times 4$ grid of
# 16 patches plus the class token; 6 layers of 4 heads), trained for under half an hour on a CPU.
# Inference on a handful of images takes milliseconds, so we use it whenever it is there, quick
# mode included. Only if it is missing do we train one ourselves: the tiny quick-mode model in
# quick mode, the default model otherwise. *Load the checkpoint, else train.*

# %%
# load_or_train picks, in order: the shipped model (when it is the config's model), the config's
# own finished run, else a fresh training run.
config_file = "default.yaml" if not QUICK or "default" in available_pretrained() else "quick.yaml"
model, info = load_or_train(REPO_ROOT / "configs" / config_file)
source = (f"the pretrained checkpoint vitlib/checkpoints/{Path(info['path']).name}"
          if info["source"] == "pretrained" else f"a model trained with configs/{config_file} ({info['source']})")
model.eval()
cfg = model.config
GRID, PATCH = cfg.grid_size, cfg.patch_size          # (gh, gw) patches, pixels per patch side
L, H, N = cfg.n_layers, cfg.n_heads, cfg.num_patches + 1
val_acc = info.get("best_metric")
print(f"using {source}: {model.num_parameters():,} parameters, {cfg.image_size} px images, "
      f"{GRID[0]}x{GRID[1]} patches of {PATCH} px, {L} layers x {H} heads"
      + (f"; validation accuracy {val_acc:.2%}" if val_acc is not None else ""))
test_metrics = (info.get("metrics") or {}).get("test") or {}
if "test_acc" in test_metrics:
    print(f"test accuracy {test_metrics['test_acc']:.2%} on {test_metrics.get('n_test', 0):,} images")

# %% [markdown]
# The test images come from the same recipe the model was trained and evaluated with (its config
# is stored in the checkpoint). The test split is deterministic, so image $i$ is the same image
# every time you run this.

# %%
run_config = parse_config(info["config"])
test_ds = make_dataset(run_config, "test")
print(f"{len(test_ds):,} test images from {test_ds.source}")


def as_logits(out):
    """The digit logits, also for models with extra texture/colour heads (vitlib.model.as_heads)."""
    return as_heads(out)["number"]


@torch.no_grad()
def run(images: torch.Tensor):
    """Digit logits (B, 10) and attention weights, a list of L tensors (B, H, N, N)."""
    out, attentions = model(images, return_attention=True)
    return as_logits(out), attentions


# %% [markdown]
# Everything in this chapter starts from `model(x, return_attention=True)`, which returns the
# output together with every layer's attention weights ([chapter 4](04_vit.ipynb)). Asking for
# the weights switches `vitlib` from the fused attention kernel to the readable path; the logits
# must not change. Every row of every weight matrix is a probability distribution over the $N$
# tokens. We take eight test images, drawn at random once with a fixed seed.

# %%
sample = torch.randperm(len(test_ds), generator=torch.Generator().manual_seed(0))[:8]  # fixed picks
batch = test_ds.get_batch(sample)
x, y = batch["image"], batch["number_cls"]
logits, attentions = run(x)
with torch.no_grad():
    plain = as_logits(model(x))
assert_close(logits, plain, rtol=1e-4, atol=1e-4)
assert len(attentions) == L and all(a.shape == (len(x), H, N, N) for a in attentions)
assert_close(torch.stack(attentions).sum(-1), torch.ones(L, len(x), H, N))
pred = logits.argmax(-1)
print(f"digits {y.tolist()}\npredicted {pred.tolist()}")
print(f"✓ return_attention=True leaves the logits unchanged and adds {L} tensors of shape "
      f"{tuple(attentions[0].shape)} whose rows sum to 1")

# %% [markdown]
# ## Attention rollout
#
# ### From one layer to the whole network
#
# The attention weights $A_\ell^h \in \mathbb{R}^{N \times N}$ of head $h$ in layer $\ell$ say how
# much each token reads from every other token *in that layer*. Row 0 is the class token, whose
# final state becomes the prediction. It is tempting to read the last layer's row 0 as "where the
# model looks", but by then every token is already a mixture of all the tokens of the layers
# below. To follow information from the input patches to the output we have to chain the layers.
#
# Two simplifications make that possible {cite:p}`abnar2020attentionflow`. First, the heads of a
# layer are fused into one matrix, for example by averaging,
# $\bar A_\ell = \frac{1}{h} \sum_{i} A_\ell^{i}$. Second, the residual connection
# $z'_\ell = \mathrm{MSA}(\mathrm{LN}(z_{\ell-1})) + z_{\ell-1}$ passes every token on unchanged
# next to the attention's output. Giving both paths equal weight, a token's new state is half
# attention, half itself:
#
# $$
# \tilde A_\ell = \tfrac{1}{2}\left(\bar A_\ell + I\right), \qquad \text{rows renormalised to sum to 1}.
# $$
#
# Ignoring the MLPs (they act on each token separately and do not move information between
# tokens), the share of input token $j$ in output token $i$ is then the product through the
# layers, the **attention rollout**
#
# $$
# R = \tilde A_L \, \tilde A_{L-1} \cdots \tilde A_1 , \qquad
# R_{ij} = \sum_{k_1, \dots, k_{L-1}} (\tilde A_L)_{i k_{L-1}} \cdots (\tilde A_1)_{k_1 j}.
# $$
#
# Each $\tilde A_\ell$ is row-stochastic (non-negative, rows summing to 1), and so is a product of
# such matrices: row $i$ of $R$ is a distribution over the input tokens. The map we draw is row 0
# (the class token) without its first entry, reshaped to the $g_h \times g_w$ patch grid: how much
# of the class token's final state comes from each patch.
#
# ### Two variants
#
# - **The original project's** (its `tools/inference.py`, `variant="original"`): for every head,
#   add the identity and renormalise, $\hat A_\ell^h = (A_\ell^h + I) / 2$ (rows of $A + I$ sum to
#   2), then fuse the heads with an element-wise **maximum**, $\tilde A_\ell = \max_h
#   \hat A_\ell^h$, and multiply. The maximum lets one strongly attending head dominate, but the
#   rows of $\max_h$ no longer sum to 1 (they sum to at least 1), so $R$ is not a distribution;
#   for a picture that is scaled by its maximum this does no harm.
# - **Abnar & Zuidema's** (`variant="abnar"`): fuse the heads with the **mean**; optionally (an
#   addition of Jacob Gildenblat's widely used implementation) set the weakest fraction
#   `discard_ratio` of every row to zero, never the attention to the class token, which removes
#   the low-level "background" attention that every token pays everywhere; then
#   $\tilde A_\ell = \frac{1}{2}(\bar A_\ell + I)$, renormalise the rows, multiply. Without
#   discarding the renormalisation changes nothing; after discarding it is what keeps $R$
#   row-stochastic.
#
# ### Rollout by hand
#
# The Abnar variant for a single image, written out: `attentions` is a list of $L$ tensors of
# shape $(h, N, N)$.

# %%
def abnar_rollout(attentions: list[torch.Tensor], discard_ratio: float = 0.0) -> torch.Tensor:
    """R = Ã_L ... Ã_1 with Ã = rows-renormalised (mean_heads(A) + I) / 2, for one image -> (N, N)."""
    n = attentions[0].shape[-1]
    eye = torch.eye(n)
    rollout = eye
    for a in attentions:
        a_bar = a.mean(dim=0)                                 # fuse the heads: (N, N)
        k = int(n * discard_ratio)
        if k > 0:                                             # drop each row's k weakest entries...
            scores = a_bar.clone()
            scores[:, 0] = float("inf")                       # ...but never the class token
            weakest = scores.argsort(dim=-1)[:, :k]
            a_bar = a_bar.scatter(-1, weakest, 0.0)
        a_tilde = 0.5 * a_bar + 0.5 * eye                     # the residual path
        a_tilde = a_tilde / a_tilde.sum(dim=-1, keepdim=True)
        rollout = a_tilde @ rollout                           # later layers multiply on the left
    return rollout


# %% [markdown]
# Self-check: our rollout equals `vitlib.interpret.attention_rollout` for the first of our images,
# with and without discarding; its rows sum to 1; and `rollout_map` is row 0 without the class
# token, reshaped to the patch grid.

# %%
one_image = [a[0] for a in attentions]                        # L x (H, N, N)
for ratio in (0.0, 0.9):
    mine = abnar_rollout(one_image, ratio)
    ref = interpret.attention_rollout(attentions, "abnar", discard_ratio=ratio)[0]
    assert mine.shape == (N, N)
    assert_close(mine, ref, rtol=1e-5, atol=1e-6)
    assert_close(mine.sum(-1), torch.ones(N))
    print(f"✓ discard_ratio={ratio}: inline rollout == vitlib's, every row sums to 1")

maps_abnar = interpret.attention_rollout(attentions, "abnar", grid=GRID)        # (B, gh, gw)
assert maps_abnar.shape == (len(x), *GRID)
assert_close(maps_abnar[0], abnar_rollout(one_image)[0, 1:].reshape(GRID))
rollout_orig = interpret.attention_rollout(attentions, "original")               # (B, N, N)
row_sums = rollout_orig.sum(-1)
assert (row_sums >= 1 - 1e-5).all()
print(f"✓ rollout_map = CLS row without CLS, shape {tuple(maps_abnar.shape)}")
print(f"✓ the original variant's rows sum to between {row_sums.min():.2f} and {row_sums.max():.2f} (>= 1: max over heads)")

# %% [markdown]
# ### Rollout maps of test images
#
# Now the pictures. The map of each image is upsampled to the image size (bilinear) and scaled so
# that its largest value is 1. We draw it two ways with `vitlib.viz.overlay`: the original's
# (`mode="multiply"`: the image times the map, so what the class token ignores goes dark) and as
# a heat map over the image (red: much, blue: little).

# %%
maps_orig = interpret.attention_rollout(attentions, "original", grid=GRID)
n_show = 6
columns = [("original (max heads)", maps_orig, "multiply"),
           ("Abnar (mean heads)", maps_abnar, "multiply"),
           ("Abnar, heat map", maps_abnar, "heatmap")]
fig, axes = plt.subplots(n_show, 1 + len(columns), figsize=(2.2 * (1 + len(columns)), 2.1 * n_show))
for i in range(n_show):
    axes[i, 0].imshow(viz.to_numpy_image(x[i]))
    axes[i, 0].set_title(f"input: {int(y[i])}, predicted {int(pred[i])}", fontsize=9)
    for ax, (name, maps, mode) in zip(axes[i, 1:], columns):
        ax.imshow(viz.overlay(x[i], maps[i], mode=mode))
        ax.set_title(name, fontsize=9)
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
for i in range(n_show):
    axes[i, 0].set_ylabel(f"test image {int(sample[i])}")
fig.suptitle("Attention rollout: where the class token's information comes from")
fig.tight_layout()
plt.show()

# %% [markdown]
# Things to look for. With the shipped model the maps are far from a clean silhouette: rollout
# keeps much of the flow spread over all 16 patches, and the heat maps (right column, where the
# contrast is stretched) show where the rest goes, mostly to patches on or next to the digit's
# strokes rather than to the texture elsewhere. The two variants mostly agree on *where*, while
# the max over heads gives sharper and sometimes noisier maps. On a $4 \times 4$ grid a patch is $8 \times 8$ pixels, so the maps are coarse:
# a digit is three or four patches tall, and the overlays smooth the 16 values bilinearly (as the
# original project did) for display only. Keep in mind what rollout leaves out: the MLPs, the
# values $V$ (a token may be attended to and contribute little), and the equal weight it gives the
# residual path. It shows where information *can* flow, not which pixels the decision depends on.
#
# A second caution: a map on the digit is not by itself proof that the model understood the
# digit. Attention compares the tokens' contents, and the digit's patches differ sharply in colour
# from the texture around them, so even a barely trained ViT, which still gets most digits wrong,
# can draw the digit's outline in its attention. A map is informative when it *changes* with what
# the model learned and predicts; exercise 2 compares with an untrained model.
#
# ### The effect of `discard_ratio`
#
# Every softmax row gives every token some weight, and summed over 17 tokens and 6 layers this
# floor of small weights blurs the rollout. Discarding the weakest fraction of each (head-averaged)
# row before the identity is added removes that floor. The figure shows the first two of these images
# with more and more discarded.

# %%
sweep = [0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
maps_by_ratio = {r: interpret.attention_rollout(attentions, "abnar", discard_ratio=r, grid=GRID) for r in sweep}
ratios = [0.0, 0.5, 0.8, 0.9, 0.95]
fig, axes = plt.subplots(2, 1 + len(ratios), figsize=(2.1 * (1 + len(ratios)), 5.0))
for row, i in enumerate([0, 1]):
    axes[row, 0].imshow(viz.to_numpy_image(x[i]))
    axes[row, 0].set_title(f"input: digit {int(y[i])}", fontsize=9)
    axes[row, 0].set_ylabel(f"test image {int(sample[i])}")
    for ax, ratio in zip(axes[row, 1:], ratios):
        ax.imshow(viz.overlay(x[i], maps_by_ratio[ratio][i], mode="heatmap"))
        ax.set_title(f"discard {ratio:g}", fontsize=9)
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle("Abnar rollout: discarding the weakest attention in every row")
fig.tight_layout()
plt.show()

# %% [markdown]
# How concentrated is a map? One number is its **entropy**, normalised by $\log$ of the number of
# patches: 1 for a map that spreads evenly over all patches, 0 for a map on a single patch.
# Averaged over our eight images:

# %%
def normalised_entropy(maps: torch.Tensor) -> torch.Tensor:
    """(B, gh, gw) non-negative maps -> (B,) entropy of each map / log(gh*gw), in [0, 1]."""
    p = maps.flatten(1) / maps.flatten(1).sum(-1, keepdim=True)
    return -(p * p.clamp_min(1e-12).log()).sum(-1) / np.log(p.shape[1])


entropy = [normalised_entropy(maps_by_ratio[r]).mean() for r in sweep]
fig, ax = plt.subplots(figsize=(5, 3.4))
ax.plot(sweep, entropy, "-o", ms=3)
ax.set_title("Sharper maps as weak attention is discarded")
ax.set_xlabel("discard_ratio")
ax.set_ylabel("normalised entropy of the rollout map")
ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()

# %% [markdown]
# A moderate ratio (0.8 to 0.9) usually gives the most readable picture. Push it too far and only a
# handful of the strongest links per row survive, and the map can collapse onto a few patches
# that say more about a single head's quirks than about the model.
#
# ## One image, every head
#
# Rollout fuses everything into one map. To see the parts, draw the raw class-token row
# $A_\ell^h[0, 1{:}]$ of every head in every layer for one image: rows are layers (input at the
# top), columns are heads. Each panel is scaled to its own maximum, so also printed is how much of
# the class token's attention goes to the patches at all: the rest, $A_\ell^h[0, 0]$, is the class
# token attending to itself.

# %%
img = 0
fig, axes = plt.subplots(L, H, figsize=(2.0 * H, 2.05 * L), squeeze=False)
for layer in range(L):
    for head in range(H):
        a = attentions[layer][img, head]                       # (N, N)
        ax = axes[layer, head]
        ax.imshow(viz.overlay(x[img], a[0, 1:].reshape(GRID), mode="heatmap"))
        ax.set_title(f"L{layer + 1} H{head + 1}: {1 - a[0, 0]:.0%} on patches", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        if head == 0:
            ax.set_ylabel(f"layer {layer + 1}")
        if layer == L - 1:
            ax.set_xlabel(f"head {head + 1}")
fig.suptitle(f"Class-token attention of every head (test image {int(sample[img])}: digit {int(y[img])}, predicted {int(pred[img])})")
fig.tight_layout()
plt.show()

# %% [markdown]
# In a trained ViT the heads specialise: in the first layers the class token often spreads its
# attention widely, since there is little to read yet; in the middle layers some heads lock onto
# the strokes of the digit, others onto the background; and in the last layers some heads
# attend mostly to the class token itself, or to a few "sink" patches, which typically means the
# head has little left to do. The explorer at the end of the chapter lets you flip through other
# images.
#
# ## What the position embeddings learned
#
# The model adds a learned vector $E_\text{pos}[p] \in \mathbb{R}^D$ to patch $p$. Nothing in the
# architecture tells it that patch 5 sits below patch 1 on a $4 \times 4$ grid: the embeddings
# are just 16 free vectors. The ViT paper's Fig. 7 (centre) shows that the model discovers the 2D
# layout anyway: the cosine similarity
#
# $$
# s(p, q) = \frac{E_\text{pos}[p] \cdot E_\text{pos}[q]}{\lVert E_\text{pos}[p] \rVert \, \lVert E_\text{pos}[q] \rVert}
# $$
#
# is high for nearby patches and for patches in the same row or column. `pos_embed_similarity`
# returns, for each patch $p$, the map $q \mapsto s(p, q)$ on the grid. A self-check against
# PyTorch's own cosine similarity, and the diagonal, $s(p, p) = 1$:

# %%
sim = interpret.pos_embed_similarity(model)                    # (P, gh, gw)
P = GRID[0] * GRID[1]
pos = model.pos_embed.detach()[0, 1:]                          # (P, D), class token dropped
inline = F.cosine_similarity(pos[:, None, :], pos[None, :, :], dim=-1)
assert sim.shape == (P, *GRID)
assert_close(sim.reshape(P, P), inline, rtol=1e-5, atol=1e-5)
assert_close(sim.reshape(P, P).diagonal(), torch.ones(P))
print(f"✓ similarity maps {tuple(sim.shape)} == F.cosine_similarity; the diagonal is 1")

# %%
fig = viz.plot_pos_similarity(sim, title="Position embedding similarity (ViT Fig. 7, centre)")
plt.show()

# %% [markdown]
# Each small panel belongs to one patch (its row and column in the grid are on the axes) and
# shows how similar every other patch's embedding is to it; the bright spot is the patch itself.
# Is similarity really a function of distance? Plot it against the distance between the patches
# on the grid:

# %%
dist_patches = interpret.patch_distances(GRID).flatten()       # in patches
s = sim.reshape(P, P).flatten()
off_diagonal = dist_patches > 0
levels = dist_patches[off_diagonal].unique()


def mean_by_distance(pair_values: torch.Tensor) -> list[float]:
    """Average of a (P*P,) per-pair quantity over the pairs at each grid distance in `levels`."""
    return [pair_values[off_diagonal][dist_patches[off_diagonal] == d].mean().item() for d in levels]


fig, ax = plt.subplots(figsize=(5.4, 3.6))
ax.scatter(dist_patches[off_diagonal], s[off_diagonal], s=5, alpha=0.25, label="one pair of patches")
ax.plot(levels, mean_by_distance(s), color="tab:red", label="mean at this distance")
ax.set_title("Position-embedding similarity against grid distance")
ax.set_xlabel("distance between the two patches on the grid (patches)")
ax.set_ylabel("cosine similarity")
ax.grid(alpha=0.3)
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# In the paper a falling curve shows that the embeddings encode distance: the model learned the
# neighbourhood structure of its $14 \times 14$ grid from the data alone, which is why hand-made
# 2D embeddings gave no gain over learned 1D ones. Our curve is much flatter, and the reason is
# the initialisation ([chapter 2](02_patch_embedding.ipynb)). The book's model starts its table
# with standard deviation 1, so the 16 vectors begin as random directions in $\mathbb{R}^{128}$:
# nearly orthogonal, hence already a perfectly good *name* for every position. Training only has
# to nudge them. Training is seeded, so we can rebuild the starting table exactly and split the
# learned embedding into start plus change, $E_\text{pos} = E_\text{pos}^{(0)} + \Delta$:

# %%
seed = run_config.train.seed
with torch.random.fork_rng():                   # leave this notebook's random state alone
    torch.manual_seed(seed)                      # what vitlib.train does before building the model
    start_table = ViT(cfg).pos_embed.detach()[0, 1:]                     # (P, D) at step 0
delta = pos - start_table                                                 # what training added
kept = F.cosine_similarity(pos, start_table, dim=-1).mean().item()
print(f"pos_init_std = {cfg.pos_init_std}: cos(E_pos, start) = {kept:.3f} on average; "
      f"|E_pos| = {pos.norm(dim=-1).mean():.2f}, |start| = {start_table.norm(dim=-1).mean():.2f}, "
      f"|change| = {delta.norm(dim=-1).mean():.2f}")
delta_sim = F.cosine_similarity(delta[:, None, :], delta[None, :, :], dim=-1).flatten()
fig, ax = plt.subplots(figsize=(5.4, 3.6))
for values, label in ((s, "learned table $E_{pos}$"), (delta_sim, "change during training $\\Delta$")):
    ax.plot(levels, mean_by_distance(values), marker="o", label=label)
ax.axhline(0, color="gray", lw=0.8)
ax.set_title("Mean cosine similarity of two positions, by grid distance")
ax.set_xlabel("distance between the two patches on the grid (patches)")
ax.set_ylabel("mean cosine similarity")
ax.grid(alpha=0.3)
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# If the first number is close to 1, the shipped table is still mostly its random start, and the
# similarity grid above mostly shows that start: random codes that tell positions apart without
# saying which are neighbours. What training *added*, $\Delta$, is where any learned geometry
# lives; for the shipped model its similarity is positive between neighbours and negative a
# couple of patches apart, a faint version of the paper's pattern. A start at timm's 0.02 leaves
# the table to training entirely, and exercise 5 asks you to compare: it learns more slowly at
# first (chapter 2) but should draw the paper's picture more clearly.
#
# ## How far does each head look?
#
# The ViT paper's Fig. 7 (right) measures the "receptive field" of each head. For query patch
# $i$ of an image, the attention-weighted average distance to the patches it reads,
#
# $$
# d_{\ell h} = \operatorname*{mean}_{\text{images},\, i} \; \sum_{j} a^{\ell h}_{ij}\, \lVert c_i - c_j \rVert ,
# $$
#
# where $c_i$ is the centre of patch $i$ in pixels and $a^{\ell h}_{ij}$ is head $h$'s attention
# from patch $i$ to patch $j$ in layer $\ell$, with the class token dropped and each row
# renormalised over the patches (the class token has no position). A head with small $d$ looks at
# its neighbourhood, like a small convolution; a head with large $d$ mixes information across the
# whole image. As a yardstick: attention spread evenly over all patches gives the mean distance
# between two random patches, `analytic_mean_distance`.

# %%
n_dist = 128 if QUICK else 1000                                 # the paper used 128 images
dist = torch.zeros(L, H)
for start in range(0, n_dist, 250):                             # chunks keep memory small
    idx = torch.arange(start, min(start + 250, n_dist))
    _, att = run(test_ds.get_batch(idx)["image"])
    dist += interpret.mean_attention_distance(att, GRID, PATCH) * len(idx) / n_dist
uniform = interpret.analytic_mean_distance(GRID, PATCH)
print(f"mean attention distance over {n_dist} test images, in pixels (uniform attention: {uniform:.1f}):")
for layer in range(L):
    print(f"  layer {layer + 1}: " + "  ".join(f"{d:5.1f}" for d in dist[layer].tolist()))

# %% [markdown]
# Two self-checks. Uniform attention must give exactly `analytic_mean_distance`; and the value of
# one head computed by hand from the formula must match.

# %%
flat = [torch.full((2, H, N, N), 1.0 / N) for _ in range(L)]
assert_close(interpret.mean_attention_distance(flat, GRID, PATCH), torch.full((L, H), uniform))
a = attentions[0][:, 0, 1:, 1:]                                # layer 1, head 1, patches only
a = a / a.sum(-1, keepdim=True)
by_hand = (a * interpret.patch_distances(GRID, PATCH)).sum(-1).mean()
assert_close(interpret.mean_attention_distance(attentions, GRID, PATCH)[0, 0], by_hand)
print(f"✓ uniform attention -> {uniform:.2f} px; layer 1 head 1 by hand = {by_hand:.2f} px, as vitlib")

# %%
fig = viz.plot_attention_distance(dist, title=f"Mean attention distance ({n_dist} test images)")
ax = fig.axes[0]
ax.axhline(uniform, color="gray", ls="--", lw=1, label="uniform attention")
ax.set_ylim(0, 1.35 * max(uniform, dist.max().item()))      # room for the legend
ax.legend(fontsize=7, ncol=3, loc="upper left")
plt.show()

# %% [markdown]
# Read the plot column by column. In the paper (224 px images, patches of 16 px) some heads in
# the lowest layers already attend across most of the image while others stay local, and the
# distance grows with depth until all heads are global: the model *can* look everywhere from the
# start, unlike a CNN whose receptive field grows slowly, but it also learns CNN-like local
# heads. Our images are only 32 px, and a patch centre is at most
# $\sqrt{2} \cdot 24 \approx 34$ px from another (centres of $8 \times 8$ patches), so the scale is small. A head far below the
# dashed line is local (it reads mostly its own patch and its neighbours); a head near it attends
# roughly everywhere; a head far *above* it prefers distant patches, for example the corners.
#
# ## What the first layer sees: patch-embedding filters
#
# The patch embedding multiplies every flattened $3 \times 8 \times 8$ patch by a matrix $E$ of
# $D$ rows: each row is a *filter*, a small colour image that the patch is compared with. The
# paper's Fig. 7 (left) shows the principal components of these $D$ filters, the directions in
# patch space that the embedding is most sensitive to. In the book's default model (and the
# original project) a LayerNorm comes before $E$ (`patch_norm=True`): `patch_filter_pca` folds
# its learned per-pixel scale into the filters and ignores its centring and scaling of each patch,
# which are not linear.

# %%
components, explained = interpret.patch_filter_pca(model, k=28, return_variance=True)
flat_components = components.flatten(1)
assert components.shape[1:] == (3, PATCH, PATCH)
assert_close(flat_components @ flat_components.T, torch.eye(len(components)), rtol=0, atol=1e-4)
print(f"patch_norm = {cfg.patch_norm}; filters: {cfg.emb_dim} x {tuple(components.shape[1:])}")
print(f"✓ {len(components)} orthonormal components of shape {tuple(components.shape[1:])}; "
      f"the first 5 explain {explained[:5].sum():.0%} of the filters' variance")

# %%
fig = viz.plot_patch_filters(components, title="Principal components of the patch-embedding filters (ViT Fig. 7, left)")
for i, ax in enumerate(fig.axes[:len(components)]):
    ax.set_title(f"PC {i + 1}: {explained[i]:.0%}", fontsize=7)
fig.tight_layout()
plt.show()

fig, ax = plt.subplots(figsize=(5, 3.2))
ax.bar(np.arange(1, len(explained) + 1), explained.numpy())
ax.set_title("How much of the filters each component explains")
ax.set_xlabel("principal component")
ax.set_ylabel("fraction of variance")
fig.tight_layout()
plt.show()

# %% [markdown]
# In the paper the components of the $16 \times 16$ filters look like the basis functions of a
# low-resolution image code: smooth blobs and stripes of increasing frequency, like the first
# filters of a CNN. Our $8 \times 8$ patches leave less room for frequencies, and the components
# also show what matters in our data: colour contrasts (the digit's colour against the texture)
# and simple strokes and edges.
#
# ## Where it goes wrong
#
# Now the model's mistakes. We classify the test set (in quick mode a random sample of 2,000
# images, to stay fast: not the first 2,000, because MNIST's test file is ordered by who wrote the
# digits, and its first part is easier than the rest), count the errors per class in a confusion
# matrix, and look at the misclassified images with their rollout maps.

# %%
n_eval = min(len(test_ds), 2000) if QUICK else len(test_ds)
eval_idx = torch.randperm(len(test_ds), generator=torch.Generator().manual_seed(0))[:n_eval].sort().values
res = evaluate(model, [test_ds.get_batch(eval_idx[i:i + 500]) for i in range(0, n_eval, 500)],
               torch.device("cpu"), return_predictions=True, desc=None if QUICK else "test")
assert res["n"] == n_eval and torch.equal(res["targets"], test_ds.labels[eval_idx])
wrong = eval_idx[(res["preds"] != res["targets"]).nonzero().flatten()]  # indices into the test set
print(f"test accuracy {res['acc']:.2%} on {n_eval:,} test images: {len(wrong)} mistakes")

# %%
cm = viz.confusion_matrix(res["targets"], res["preds"], cfg.num_classes)
fig = viz.plot_confusion(cm, title=f"Confusion matrix ({n_eval:,} test images, accuracy {res['acc']:.2%})")
plt.show()

# %% [markdown]
# The misclassified images with the probability the model gave its (wrong) answer, and below each
# the Abnar rollout with discard ratio 0.9:

# %%
n_wrong = min(8, len(wrong))
if n_wrong == 0:
    print("no mistakes among these test images: nothing to show")
else:
    bad = test_ds.get_batch(wrong[:n_wrong])
    bad_logits, bad_att = run(bad["image"])
    bad_prob = bad_logits.softmax(-1)
    bad_pred = bad_prob.argmax(-1)
    bad_maps = interpret.attention_rollout(bad_att, "abnar", discard_ratio=0.9, grid=GRID)
    fig, axes = plt.subplots(2, n_wrong, figsize=(1.9 * n_wrong + 0.6, 5.0), squeeze=False)
    for j in range(n_wrong):
        axes[0, j].imshow(viz.to_numpy_image(bad["image"][j]))
        axes[0, j].set_title(f"true {int(bad['number_cls'][j])}, pred {int(bad_pred[j])}\n"
                             f"p = {bad_prob[j, bad_pred[j]]:.2f} (#{int(wrong[j])})", fontsize=8)
        axes[1, j].imshow(viz.overlay(bad["image"][j], bad_maps[j], mode="heatmap"))
        axes[1, j].set_title("rollout", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_ylabel("input")
    axes[1, 0].set_ylabel("Abnar, discard 0.9")
    fig.suptitle("Misclassified test images and where the class token looked")
    fig.tight_layout()
    plt.show()

# %% [markdown]
# Typical failures of a good model are digits a human would also hesitate over (a 4 that is
# almost a 9, a 7 with a bar that looks like a 2), digits whose colour is close to the texture's,
# and digits cut by the crop. A confident wrong answer ($p$ near 1) on a clear digit is the more
# interesting case: check whether the rollout sits on the digit or wandered off into the texture.
#
# ## Explorer
#
# Pick a test image, a layer and a head. The left panel is the input, the middle one the class
# token's attention in that layer (one head, or the mean or maximum over heads), the right one the
# Abnar rollout *up to* that layer, $\tilde A_\ell \cdots \tilde A_1$: watch the map form layer by
# layer. (In the static book the sliders are inert; the figure below them is the first of our
# eight images, last layer, mean of the heads.)

# %%
@lru_cache(maxsize=64)
def image_and_attention(index: int):
    """One test image, its label, predicted digit and attention list (cached for the sliders)."""
    b = test_ds.get_batch(torch.tensor([index]))
    logits, att = run(b["image"])
    return b["image"][0], int(b["number_cls"][0]), int(logits.argmax()), att


def explore(index: int = 0, layer: int = L, head="mean"):
    image, label, predicted, att = image_and_attention(index)
    a = att[layer - 1][0]                                      # (H, N, N)
    a = a.mean(0) if head == "mean" else a.amax(0) if head == "max" else a[head]
    rolled = interpret.attention_rollout(att[:layer], "abnar", grid=GRID)[0]
    head_name = head if isinstance(head, str) else f"head {head + 1}"
    fig, axes = plt.subplots(1, 3, figsize=(8.4, 3.1))
    axes[0].imshow(viz.to_numpy_image(image))
    axes[0].set_title(f"test image {index}: digit {label}", fontsize=9)
    axes[1].imshow(viz.overlay(image, a[0, 1:].reshape(GRID), mode="heatmap"))
    axes[1].set_title(f"layer {layer}, {head_name}: CLS attention", fontsize=9)
    axes[2].imshow(viz.overlay(image, rolled, mode="heatmap"))
    axes[2].set_title(f"rollout of layers 1 to {layer}", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].set_xlabel(f"predicted {predicted}")
    fig.suptitle("Attention explorer")
    fig.tight_layout()
    plt.show()


head_options = [("mean of heads", "mean"), ("max of heads", "max")] + [(f"head {h + 1}", h) for h in range(H)]
display(ipywidgets.interactive(
    explore,
    index=ipywidgets.IntSlider(int(sample[0]), 0, len(test_ds) - 1, description="image"),
    layer=ipywidgets.IntSlider(L, 1, L, description="layer"),
    head=ipywidgets.Dropdown(options=head_options, value="mean", description="head")))

# %%
explore(int(sample[0]), L, "mean")

# %% [markdown]
# ## Summary
#
# - `model(x, return_attention=True)` returns every layer's attention weights without changing the
#   output; everything in this chapter is computed from them and from the weights themselves.
# - **Attention rollout** chains the layers: $\tilde A_\ell = \frac{1}{2}(\bar A_\ell + I)$ (the
#   identity stands for the residual connection), rows renormalised, $R = \tilde A_L \cdots
#   \tilde A_1$; the class token's row of $R$ on the patch grid is the map. Abnar & Zuidema fuse
#   heads by their mean (rows of $R$ sum to 1) and can discard weak attention to sharpen the map;
#   the original project fuses by the maximum (rows sum to more than 1, sharper but noisier maps).
#   Rollout ignores the MLPs and the values, so it shows where information can flow, not a proof
#   of what the decision rests on.
# - Per-head maps show specialisation: broad heads, heads on the digit, heads parked on the class
#   token.
# - The paper's learned **position embeddings** rediscover the 2D grid (Fig. 7, centre). Ours
#   barely do: started at standard deviation 1, the 16 vectors are already distinct names for the
#   positions, training only nudges them, and similarity against distance stays nearly flat.
# - **Mean attention distance** (Fig. 7, right) separates local heads from global ones; a ViT can
#   attend globally from the first layer, unlike a CNN.
# - The **patch-embedding filters'** principal components (Fig. 7, left) are the model's first,
#   CNN-like look at a patch: colour contrasts and simple edges.
# - The mistakes and their rollouts show where the model's reading of the digit breaks down.
#
# ## Exercises
#
# 1. **What does a patch read?** Rollout is not only for the class token. Pick the patch at the
#    centre of the grid and draw row $1 + p$ of the full rollout $R$ (the $(N, N)$ matrix returned
#    without `grid=`). Compare a patch on the digit with a patch in a corner of the background.
#
#    **Hint:** `R = interpret.attention_rollout(attentions, "abnar")[i]`; for grid row $r$ and
#    column $c$, $p = r \cdot g_w + c$; `R[1 + p, 1:].reshape(GRID)` is the map, and
#    `viz.overlay` draws it.
#
# 2. **Before training.** Build an *untrained* model with the same configuration
#    (`vitlib.model.ViT(cfg).eval()`, after `torch.manual_seed(0)`). Compute its mean attention
#    distance on the same images and plot it next to the trained one, then draw its rollout maps
#    for the six test images above. What does training change in the distances, and how different
#    are the maps? What does that say about reading rollout maps as explanations?
#
#    **Hint:** at initialisation the queries and keys are small (weights drawn with standard
#    deviation 0.02), so the scores $q \cdot k / \sqrt{d}$ are close to 0 and the softmax is
#    close to uniform. `viz.overlay` scales every map by its own maximum, so even tiny differences
#    fill the whole colour scale: compare the maps' ranges too, e.g. `maps.amax((1, 2)) /
#    maps.amin((1, 2))` for the trained and the untrained model.
#
# 3. **Does the rollout look at the digit?** For each of a few hundred test images, measure the
#    fraction of the Abnar rollout map that falls on the digit's pixels, and compare it with the
#    fraction of the image the digit covers (what a uniform map would give). Is the ratio higher
#    for correct predictions than for mistakes?
#
#    **Hint:** the digit's pixels are painted in one colour, `batch["color"]` (RGB in $[0, 1]$),
#    while the image is in $[-1, 1]$: pixels with `((image + 1) / 2 - color[:, None, None]).abs()
#    .amax(0) < 0.05` form a good mask. Average the mask over each $8 \times 8$ patch
#    (`F.avg_pool2d`) to bring it to the grid of the map.
#
# 4. **Other head fusions.** `attention_rollout` also accepts `head_fusion="min"` (and the
#    original variant `head_fusion="mean"`). Draw all combinations for the misclassified images.
#    Which fusion gives the maps you find most plausible, and is there a fusion that makes the
#    original variant identical to Abnar's?
#
#    **Hint:** for the original variant, per head $(A^h + I)/2$ is linear in $A^h$, so averaging the
#    heads afterwards equals averaging them first.
#
# 5. **A quieter start for the positions.** Train `configs/default.yaml` with
#    `--set model_params.pos_init_std=0.02 --set train_params.epochs=20` (about ten minutes) and
#    draw the similarity grid and the distance curve for that model. Is the 2D layout clearer?
#    What did the quieter start cost in accuracy after the same number of epochs?
#
#    **Hint:** `vitlib.checkpoint.load_checkpoint("runs/default/best.pt")` and
#    `vitlib.checkpoint.model_from_checkpoint` give you the model; `interpret.pos_embed_similarity`
#    and `viz.plot_pos_similarity` do the rest.

# %%
print(f"notebook ran in {time.perf_counter() - START:.1f} s (quick mode: {QUICK}; model: {source})")
