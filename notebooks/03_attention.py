# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: -all
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
# # 03 · Attention
#
# [Chapter 2](02_patch_embedding.ipynb) turned an image into a sequence of $N+1$ tokens of width
# $D$. So far each token knows only its own patch. Self-attention is the layer that lets tokens
# exchange information: every token looks at every other token and takes a weighted average of
# what it finds. It is the heart of the Transformer {cite:p}`vaswani2017attention`, and the ViT
# {cite:p}`dosovitskiy2021vit` uses it unchanged.
#
# **Learning objectives.** After this chapter you can
#
# - write scaled dot-product attention, $\mathrm{softmax}(QK^\top/\sqrt{d})\,V$, in four lines and
#   explain each factor, including why the scores are divided by $\sqrt{d}$;
# - build multi-head attention (one fused $Q, K, V$ projection, split into heads, attend,
#   concatenate, project) and check it against `F.scaled_dot_product_attention`,
#   `nn.MultiheadAttention` and `vitlib.model.Attention`;
# - read an attention matrix and the class token's attention map of a ViT;
# - compute what attention costs in FLOPs and memory as the patch size shrinks, and why fused
#   kernels help with memory but not with FLOPs.
#
# **Time.** Reading: about 40 minutes. Running: about 20 seconds on a laptop CPU in quick mode
# (`VITLIB_QUICK=1`) and under a minute in full mode, which uses more samples for the
# experiments and times longer sequences.

# %% [markdown]
# ## Setup
#
# *Reading this in JupyterLab?* `jupyterlab-myst` renders this chapter's MyST markup there, maths
# included, but not its citations: it does not read the book's bibliography, so a reference such as
# {cite:p}`dosovitskiy2021vit` shows there as its key, marked "Citation Not Found". The built
# book resolves them.

# %%
import math
import time
from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import vitlib.paths
from vitlib.data import ColoredMNIST
from vitlib.model import Attention, ViT, ViTConfig, flops_breakdown
from vitlib.runtime import num_threads
from vitlib.viz import to_numpy_image

QUICK = vitlib.paths.is_quick()
torch.manual_seed(0)
START = time.perf_counter()
print(f"quick mode: {QUICK}; torch {torch.__version__}")

# %% [markdown]
# ## Attention as a soft dictionary lookup
#
# A Python `dict` answers a query by finding the one key that matches exactly and returning its
# value. Attention does the same thing softly: it compares a query with *every* key, turns the
# match scores into weights that sum to one, and returns the weighted average of all the values.
#
# In self-attention the queries, keys and values are all computed from the same tokens. Token $i$
# emits
#
# - a **query** $q_i$: what am I looking for? (for a patch on a digit's stroke: "other stroke
#   pieces near me");
# - a **key** $k_i$: what do I contain, as seen by others?
# - a **value** $v_i$: what do I pass on to whoever attends to me?
#
# All three are linear maps of the token. Stacking the $N$ tokens as the rows of
# $X \in \mathbb{R}^{N \times D}$,
#
# $$
# Q = X W_Q, \quad K = X W_K, \quad V = X W_V, \qquad W_Q, W_K, W_V \in \mathbb{R}^{D \times d},
# $$
#
# $$
# \mathrm{Attention}(Q, K, V)
# = \underbrace{\mathrm{softmax}\!\left(\frac{Q K^\top}{\sqrt{d}}\right)}_{A \,\in\, \mathbb{R}^{N \times N}} V,
# \qquad
# A_{ij} = \frac{\exp(q_i \cdot k_j / \sqrt{d})}{\sum_{j'} \exp(q_i \cdot k_{j'} / \sqrt{d})}.
# $$
#
# Row $i$ of $A$ is a probability distribution over the tokens (non-negative, sums to 1), and
# output $i$ is $\sum_j A_{ij} v_j$, an average of the values weighted by how well $q_i$ matches
# each $k_j$. Nothing in the formula depends on where a token sits in the sequence: that is why
# chapter 2 added position embeddings.

# %% [markdown]
# ## Scaled dot-product attention from scratch
#
# Four lines. The function works on any leading batch dimensions, so the same code will later
# run all heads of all images at once. The optional boolean `mask` (True = may attend) is for
# the causal variant at the end of the chapter; the ViT never uses it.

# %%
def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
              mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T / sqrt(d)) v for q, k, v of shape (..., N, d). Returns (output, weights)."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])   # (..., N, N)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))        # forbidden pairs get weight 0
    weights = scores.softmax(dim=-1)                             # each row sums to 1
    return weights @ v, weights                                  # (..., N, d), (..., N, N)


# %% [markdown]
# Self-check: shapes, rows that are probability distributions, and agreement with PyTorch's own
# `F.scaled_dot_product_attention` (which computes the same formula in one fused kernel).

# %%
B, N, d = 2, 65, 32
q, k, v = torch.randn(3, B, N, d).unbind(0)
out, weights = attention(q, k, v)
assert out.shape == (B, N, d) and weights.shape == (B, N, N)
assert (weights >= 0).all()
torch.testing.assert_close(weights.sum(-1), torch.ones(B, N))
torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), rtol=1e-5, atol=1e-5)
print(f"output {tuple(out.shape)}, weights {tuple(weights.shape)}")
print("✓ attention() == F.scaled_dot_product_attention, and every row of weights sums to 1")

# %% [markdown]
# And the property from chapter 2, now proved on the bare formula: permuting the tokens permutes
# the output in the same way and changes nothing else.

# %%
perm = torch.randperm(N)
out_perm, _ = attention(q[:, perm], k[:, perm], v[:, perm])
torch.testing.assert_close(out_perm, out[:, perm], rtol=1e-5, atol=1e-5)
print("✓ attention is permutation-equivariant: it has no notion of order by itself")

# %% [markdown]
# ### Why divide by $\sqrt{d}$?
#
# Suppose the entries of $q$ and $k$ are independent with mean 0 and variance 1 (roughly what
# a well-initialised network produces). Then the dot product
#
# $$
# q \cdot k = \sum_{t=1}^{d} q_t k_t
# $$
#
# is a sum of $d$ independent terms, each with mean 0 and variance
# $\mathbb{E}[q_t^2]\,\mathbb{E}[k_t^2] = 1$, so
# $\mathrm{Var}(q \cdot k) = d$: the typical score grows like $\sqrt{d}$. Dividing by $\sqrt{d}$
# brings the variance back to 1, whatever the head size.
#
# Why does the size of the scores matter? Softmax is sensitive to differences between its
# inputs. When they differ by tens, one weight takes almost all of the mass (the softmax
# *saturates* into a one-hot vector). Its gradient then vanishes: with $a = \mathrm{softmax}(s)$,
#
# $$
# \frac{\partial a_i}{\partial s_j} = a_i(\delta_{ij} - a_j),
# $$
#
# which is zero when $a$ is one-hot, so the query and key projections stop learning. The
# experiment below measures all three effects for head sizes $d$ from 2 to 1024, with $N = 65$
# keys per query (a 32 px image cut into $4 \times 4$ patches, plus the class token).

# %%
def softmax_stats(d: int, n_queries: int, n_keys: int = 65, scale: bool = True) -> tuple[float, float, float]:
    """(variance of the scores, mean largest weight, mean Frobenius norm of the softmax Jacobian)."""
    g = torch.Generator().manual_seed(d)
    q = torch.randn(n_queries, 1, d, generator=g)
    k = torch.randn(n_queries, n_keys, d, generator=g)
    s = (q * k).sum(-1) / (math.sqrt(d) if scale else 1.0)      # (n_queries, n_keys)
    a = s.softmax(-1)
    jac = torch.diag_embed(a) - a[:, :, None] * a[:, None, :]    # da_i / ds_j for each query
    return s.var().item(), a.max(-1).values.mean().item(), jac.norm(dim=(-2, -1)).mean().item()


dims = [2 ** p for p in range(1, 11)]
n_queries = 256 if QUICK else 2048
raw = np.array([softmax_stats(d, n_queries, scale=False) for d in dims])
scaled = np.array([softmax_stats(d, n_queries, scale=True) for d in dims])
for d, r, s in zip(dims[::3], raw[::3], scaled[::3]):
    print(f"d = {d:>4}: score variance {r[0]:8.1f} raw vs {s[0]:.2f} scaled; "
          f"largest weight {r[1]:.2f} vs {s[1]:.2f}")
assert 0.5 * dims[-1] < raw[-1, 0] < 2 * dims[-1]        # Var(q.k) ~ d
assert np.all((scaled[:, 0] > 0.7) & (scaled[:, 0] < 1.3))  # ~1 after scaling
assert raw[-1, 1] > 0.8 and scaled[-1, 1] < 0.3            # saturated vs not
print("✓ Var(q·k) grows like d; dividing by sqrt(d) keeps it near 1 and the softmax soft")

# %%
fig, axes = plt.subplots(1, 3, figsize=(14, 3.9))
panels = [(0, "variance of the scores", "Var(score)", True),
          (1, "mean of each row's largest weight", "max_j A_ij", False),
          (2, "size of the softmax gradient", "‖∂a/∂s‖ (Frobenius)", True)]
for ax, (col, title, ylabel, logy) in zip(axes, panels):
    ax.plot(dims, raw[:, col], "o-", label="q·k (unscaled)")
    ax.plot(dims, scaled[:, col], "s-", label="q·k / √d (scaled)")
    ax.set_xscale("log", base=2)
    if logy:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel("head dimension d")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
axes[0].plot(dims, dims, "k--", lw=1, label="d")
axes[1].axhline(1 / 65, color="k", ls=":", lw=1, label="uniform, 1/65")
axes[0].legend(fontsize=8)
axes[1].legend(fontsize=8)
fig.suptitle("Without the 1/√d the scores grow with d, the softmax saturates and its gradient vanishes")
fig.tight_layout()
plt.show()

# %% [markdown]
# Read the three panels from left to right. The unscaled score variance follows the dashed line
# $\mathrm{Var} = d$ exactly; the scaled one stays at 1. With unscaled scores, the largest weight
# in a row climbs towards 1 (one key takes everything) as $d$ grows, while the scaled softmax
# keeps the same moderate shape for every $d$. The gradient panel shows the consequence: for
# tiny $d$ the unscaled scores are still small and the gradient is fine; around the usual head
# size, $d = 64$, it is still comparable to the scaled one; from $d \approx 128$ it falls below it,
# and it keeps shrinking as $d$ grows, to about a third of the scaled gradient at $d = 1024$. The
# scaled version gives the same healthy gradient for every head size.
#
# ## Multi-head attention
#
# One attention layer computes one weighting per query: each token can only look at the rest of
# the image in one way. Multi-head attention runs $h$ attentions side by side, each with its own
# small projections of size $d$, and mixes their results:
#
# $$
# \mathrm{head}_i = \mathrm{Attention}\big(X W_Q^{(i)},\, X W_K^{(i)},\, X W_V^{(i)}\big),
# \qquad
# \mathrm{MHA}(X) = [\mathrm{head}_1, \dots, \mathrm{head}_h]\, W_O,
# \quad W_O \in \mathbb{R}^{hd \times D}.
# $$
#
# One head can follow the digit's stroke while another looks at neighbouring patches or at the
# texture. Usually $hd = D$ (the book's default: $D = 128$, $h = 4$, $d = 32$), so multi-head
# attention costs the same as one big head. The original project used $h = 8$ heads of $d = 64$
# on $D = 128$, an inner width of 512; `ViTConfig(head_dim=...)` allows that.
#
# In code, all $3h$ projections are one `nn.Linear(D, 3*h*d)`: a single matrix multiplication
# whose output we reshape into (which of q/k/v, which head, which dimension). Then the four-line
# `attention` runs on tensors of shape $(B, h, N, d)$, every head of every image at once.

# %%
class MultiHeadAttention(nn.Module):
    """Multi-head self-attention; the parameter names match vitlib.model.Attention."""

    def __init__(self, D: int, n_heads: int, head_dim: int, qkv_bias: bool = True):
        super().__init__()
        self.h, self.d = n_heads, head_dim
        self.qkv = nn.Linear(D, 3 * n_heads * head_dim, bias=qkv_bias)  # W_Q, W_K, W_V of all heads
        self.proj = nn.Linear(n_heads * head_dim, D)                       # W_O

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, N, _ = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.h, self.d)     # (B, N, 3, h, d)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)                   # each (B, h, N, d)
        out, weights = attention(q, k, v)                      # (B, h, N, d), (B, h, N, N)
        out = out.transpose(1, 2).reshape(B, N, self.h * self.d)  # concatenate the heads
        return self.proj(out), weights                         # (B, N, D)


# %% [markdown]
# The shapes, step by step, for the book's default model. From here on $N$ counts *all* tokens,
# the class token included: $N = 16 + 1 = 17$ for a 32 px image cut into $8 \times 8$ patches.

# %%
cfg = ViTConfig.default()
D, h, d = cfg.emb_dim, cfg.n_heads, cfg.attn_head_dim
N = cfg.num_patches + 1
torch.manual_seed(0)
mha = MultiHeadAttention(D, h, d).eval()
x = torch.randn(2, N, D)                                         # (B, N, D) tokens
qkv = mha.qkv(x)
assert qkv.shape == (2, N, 3 * h * d)
q, k, v = qkv.reshape(2, N, 3, h, d).permute(2, 0, 3, 1, 4)
assert q.shape == k.shape == v.shape == (2, h, N, d)
y, w = mha(x)
assert w.shape == (2, h, N, N) and y.shape == x.shape
print(f"x {tuple(x.shape)} -> qkv {tuple(qkv.shape)} -> q, k, v {tuple(q.shape)} "
      f"-> weights {tuple(w.shape)} -> output {tuple(y.shape)}")
print("✓ (B, N, D) in, (B, N, D) out; one (N, N) weight matrix per head")

# %% [markdown]
# ### Checking against three references
#
# **`vitlib.model.Attention`** has the same parameter names, so its state dict loads straight
# into ours. It has two code paths: the readable one above (`fused_attn=False`, also used
# whenever the weights are requested) and a fused one that calls
# `F.scaled_dot_product_attention` and never builds the $(N, N)$ matrix. Both must agree with
# ours, for the book's default and for the original's $8 \times 64$ heads without a $Q, K, V$ bias.

# %%
for name, c in [("default", cfg), ("original", ViTConfig.original())]:
    torch.manual_seed(0)
    ref_manual = Attention(replace(c, fused_attn=False)).eval()
    ref_fused = Attention(replace(c, fused_attn=True)).eval()
    ref_fused.load_state_dict(ref_manual.state_dict())
    mine = MultiHeadAttention(c.emb_dim, c.n_heads, c.attn_head_dim, qkv_bias=c.qkv_bias).eval()
    mine.load_state_dict(ref_manual.state_dict())
    xs = torch.randn(2, c.num_patches + 1, c.emb_dim)
    with torch.no_grad():
        y_mine, w_mine = mine(xs)
        y_manual, w_manual = ref_manual(xs, return_weights=True)
        y_fused, w_fused = ref_fused(xs)
    torch.testing.assert_close(y_mine, y_manual, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(w_mine, w_manual, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y_mine, y_fused, rtol=1e-5, atol=1e-5)
    assert w_fused is None                                     # the fused path has no weights
    print(f"✓ {name}: h = {c.n_heads}, d = {c.attn_head_dim}, D = {c.emb_dim}, "
          f"N = {c.num_patches + 1}: matches vitlib Attention, manual and fused paths")

# %% [markdown]
# **`nn.MultiheadAttention`**, PyTorch's module, keeps the three projections in one
# `in_proj_weight` of shape $(3D, D)$, with the rows of $W_Q$, then $W_K$, then $W_V$, and each
# block split into heads in order: exactly the layout of our `qkv` layer. The output projection is
# `out_proj`. It only supports $hd = D$ and one `bias` switch for both projections, so it can
# express the book's default but not the original's $8 \times 64$ heads.

# %%
torch_mha = nn.MultiheadAttention(D, h, bias=True, batch_first=True).eval()
with torch.no_grad():
    torch_mha.in_proj_weight.copy_(mha.qkv.weight)
    torch_mha.in_proj_bias.copy_(mha.qkv.bias)
    torch_mha.out_proj.weight.copy_(mha.proj.weight)
    torch_mha.out_proj.bias.copy_(mha.proj.bias)
    y_torch, w_torch = torch_mha(x, x, x, need_weights=True, average_attn_weights=False)
    y_mine, w_mine = mha(x)
torch.testing.assert_close(y_mine, y_torch, rtol=1e-5, atol=1e-5)
torch.testing.assert_close(w_mine, w_torch, rtol=1e-5, atol=1e-5)
print("✓ MultiHeadAttention == nn.MultiheadAttention (outputs and per-head weights)")

# %% [markdown]
# ## Looking at an attention matrix
#
# Let us run a whole (still untrained) `vitlib` ViT on a real test image, ask it for its
# attention weights (`return_attention=True` gives one $(B, h, N, N)$ tensor per layer) and check
# that the first layer's weights are what our module computes from the same input.

# %%
IDX = 1                                        # the image of chapter 2 (a '2' with full MNIST)
test32 = ColoredMNIST("test", image_size=32)
sample = test32[IDX]
image = sample["image"]
torch.manual_seed(0)
vit = ViT(cfg).eval()
caught = {}
hook = vit.blocks[0].register_forward_pre_hook(lambda module, args: caught.update(z0=args[0]))
with torch.no_grad():
    logits, attentions = vit(image[None], return_attention=True)
hook.remove()
assert len(attentions) == cfg.n_layers and attentions[0].shape == (1, h, N, N)

mine = MultiHeadAttention(D, h, d).eval()
mine.load_state_dict(vit.blocks[0].attn.state_dict())
with torch.no_grad():
    _, w0 = mine(vit.blocks[0].norm1(caught["z0"]))   # block 0 attends over LayerNorm(z0)
torch.testing.assert_close(w0, attentions[0], rtol=1e-5, atol=1e-5)
print(f"{cfg.n_layers} layers of attention weights, each {tuple(attentions[0].shape)}")
print("✓ layer 0's weights == our MultiHeadAttention on LayerNorm(z0)")

# %% [markdown]
# Two views of one head. The heatmap is the whole $(N, N)$ matrix: row $i$ says where token $i$
# looks, column 0 is the CLS token, and columns $1 \dots 16$ are the patches in row-major order.
# The class token's row (row 0) is what the classifier's input is built from; without its
# first entry it has one weight per patch, so it can be reshaped to the $4 \times 4$ patch grid
# and laid over the image.
#
# Note the colour scales. The model is untrained and its weights are small (standard deviation
# 0.02), so every score $q_i \cdot k_j / \sqrt{d}$ is close to 0 and every row is almost uniform,
# $A_{ij} \approx 1/17 \approx 0.06$. The pattern you see is a ripple on top of that, driven by
# the patches' content. The vertical stripes say that, at this stage, the weights depend mostly on
# the *key*: some patches are a little more "visible" to every query than others. Training makes
# the weights larger and the attention sharp, as in [chapter 6](06_interpretation.ipynb).

# %%
def show_attention(layer: int = 0, head: int = 0) -> None:
    A = attentions[layer][0, head]                                  # (N, N)
    gh, gw = cfg.grid_size
    cls_map = A[0, 1:].reshape(gh, gw)                               # CLS row, patches only
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), gridspec_kw=dict(width_ratios=[1, 1.25, 1.2]))
    axes[0].imshow(to_numpy_image(image), extent=(0, 32, 32, 0))
    for t in range(0, 33, cfg.patch_size):
        axes[0].axvline(t, color="white", lw=0.5)
        axes[0].axhline(t, color="white", lw=0.5)
    axes[0].set_title(f"input: digit {int(sample['number_cls'])}, {gh}×{gw} patches")
    axes[0].set_xlabel("x (pixels)")
    axes[0].set_ylabel("y (pixels)")
    im = axes[1].imshow(A.numpy(), cmap="magma")
    fig.colorbar(im, ax=axes[1], fraction=0.046, label="attention weight A_ij")
    axes[1].set_title(f"layer {layer}, head {head}: all {N}×{N} weights")
    axes[1].set_xlabel("key token j (0 = CLS)")
    axes[1].set_ylabel("query token i (0 = CLS)")
    axes[2].imshow(to_numpy_image(image), extent=(0, 32, 32, 0))
    im = axes[2].imshow(cls_map.numpy(), cmap="jet", alpha=0.55, extent=(0, 32, 32, 0))
    fig.colorbar(im, ax=axes[2], fraction=0.046, label="weight from CLS")
    axes[2].set_title("CLS row on the patch grid")
    axes[2].set_xlabel("x (pixels)")
    axes[2].set_ylabel("y (pixels)")
    fig.suptitle(f"Attention of an untrained ViT (uniform would be 1/{N} = {1 / N:.4f})")
    fig.tight_layout()
    plt.show()


A0 = attentions[0][0, 0]
print(f"layer 0, head 0: weights between {A0.min():.4f} and {A0.max():.4f}; 1/N = {1 / N:.4f}")
show_attention(0, 0)

# %% [markdown]
# The same CLS map for every layer and head of the untrained model, on one colour scale. All of
# them are close to uniform; call `show_attention(layer, head)` to see any one of them in
# detail. After training ([chapter 6](06_interpretation.ipynb)) these maps differ from head to
# head and from layer to layer.

# %%
gh, gw = cfg.grid_size
cls_maps = torch.stack([a[0, :, 0, 1:] for a in attentions]).reshape(cfg.n_layers, h, gh, gw)
fig, axes = plt.subplots(h, cfg.n_layers, figsize=(1.9 * cfg.n_layers + 1, 1.9 * h + 0.6),
                         squeeze=False)
vmin, vmax = cls_maps.min().item(), cls_maps.max().item()
for layer in range(cfg.n_layers):
    for head in range(h):
        ax = axes[head, layer]
        im = ax.imshow(cls_maps[layer, head].numpy(), cmap="magma", vmin=vmin, vmax=vmax)
        ax.set_xticks([])
        ax.set_yticks([])
        if head == 0:
            ax.set_title(f"layer {layer}", fontsize=9)
        if layer == 0:
            ax.set_ylabel(f"head {head}", fontsize=9)
fig.colorbar(im, ax=axes, fraction=0.02, label="weight from CLS")
fig.suptitle(f"CLS attention to the {gh}×{gw} patches, every layer and head (untrained; 1/N = {1 / N:.4f})")
plt.show()

# %% [markdown]
# ## What attention costs: $N^2$
#
# Count the work of one head on one image. $Q K^\top$ multiplies an $(N, d)$ matrix by a
# $(d, N)$ matrix: $N^2 d$ multiply-adds, $2N^2 d$ FLOPs. $A V$ costs the same again. The
# attention matrix itself has $N^2$ entries, and training keeps it for the backward pass in
# every layer. For a model with $L$ layers and $h$ heads:
#
# $$
# \text{FLOPs}_{\text{attention matrix}} = L \cdot 4 N^2 h d, \qquad
# \text{memory}_{\text{attention matrix}} = L \cdot h N^2 \cdot 4\ \text{bytes (float32, per image)},
# $$
#
# while the projections and the MLP cost $O(N D^2)$: linear in $N$. Since $N \approx HW/P^2$,
# halving the patch size multiplies the attention matrix by $16$ and everything else by 4. The
# table uses `vitlib.model.flops_breakdown` for the book's default model at 32 px and for the
# original model at 224 px.

# %%
def attention_costs(c: ViTConfig, batch: int = 128) -> dict:
    f = flops_breakdown(c)
    n = c.num_patches + 1
    matrix = f["attn_scores"] + f["attn_values"]
    return dict(P=c.patch_size, tokens=n, matrix_gflops=matrix / 1e9,
                rest_gflops=(sum(f.values()) - matrix) / 1e9,
                mem_layer_mb=c.n_heads * n * n * 4 / 2 ** 20,                    # one layer, one image
                mem_train_gb=c.n_layers * c.n_heads * n * n * 4 * batch / 2 ** 30)  # saved for backward


costs = {}
for label, base in [("32 px, book default", ViTConfig.default()), ("224 px, original", ViTConfig.original())]:
    costs[label] = [attention_costs(replace(base, patch_size=p)) for p in (2, 4, 8, 16)]
    n0 = costs[label][0]["tokens"]
    assert flops_breakdown(replace(base, patch_size=2))["attn_scores"] == \
        base.n_layers * 2 * n0 * n0 * base.n_heads * base.attn_head_dim   # the formula above

print(f"{'model':>20} {'P':>3} {'tokens':>7} {'attn-matrix GFLOPs':>19} {'other GFLOPs':>13} "
      f"{'A per layer':>12} {'A, batch 128, all layers':>25}")
for label, rows in costs.items():
    for r in rows:
        print(f"{label:>20} {r['P']:>3} {r['tokens']:>7,} {r['matrix_gflops']:>19.3g} "
              f"{r['rest_gflops']:>13.3g} {r['mem_layer_mb']:>9.3g} MB {r['mem_train_gb']:>22.3g} GB")

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 4.4))
for (label, rows), color in zip(costs.items(), ("tab:blue", "tab:orange")):
    P = [r["P"] for r in rows]
    axes[0].plot(P, [r["matrix_gflops"] for r in rows], "o-", color=color, label=f"{label}: attention matrix")
    axes[0].plot(P, [r["rest_gflops"] for r in rows], "s--", color=color, label=f"{label}: everything else")
    axes[1].plot(P, [r["mem_train_gb"] for r in rows], "o-", color=color, label=label)
    for r in rows:
        axes[1].annotate(f"N={r['tokens']:,}", (r["P"], r["mem_train_gb"]), xytext=(5, 4),
                         textcoords="offset points", fontsize=7)
axes[1].set_xlim(1.7, 24)
axes[0].set_xlim(1.7, 24)
axes[1].axhline(16, color="gray", ls=":", lw=1)
axes[1].text(2, 16 * 1.3, "16 GB: a laptop's RAM", fontsize=8, color="gray")
axes[1].axhline(80, color="gray", ls="--", lw=1)
axes[1].text(2, 80 * 1.3, "80 GB: a large data-centre GPU", fontsize=8, color="gray")
for ax in axes:
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks([2, 4, 8, 16], ["2", "4", "8", "16"])
    ax.set_xlabel("patch size P (pixels)")
    ax.grid(True, which="major", alpha=0.3)
axes[0].set_ylabel("forward GFLOPs per image")
axes[0].set_title("compute: attention matrix ∝ 1/P⁴, the rest ∝ 1/P²")
axes[0].legend(fontsize=7)
axes[1].set_ylabel("GB (float32)")
axes[1].set_title("memory of the attention matrices kept for backward\n(batch 128, all layers, all heads)")
axes[1].legend(fontsize=8, loc="lower left")
fig.suptitle("The cost of attention grows with the square of the number of tokens")
fig.tight_layout()
plt.show()

# %% [markdown]
# The 224 px model with $P = 2$ would need thousands of gigabytes just for its attention
# matrices. That is why the ViT uses $16 \times 16$ patches at 224 px (197 tokens), and why
# this book's CPU model uses $8 \times 8$ patches at 32 px: 17 tokens, so that a laptop trains it
# in minutes. (With $4 \times 4$ patches, 65 tokens, a training step costs about 3.5 times more
# and, in our runs, learned no faster per epoch.)
#
# **Fused attention.** `F.scaled_dot_product_attention` (what `vitlib` uses by default) picks a
# fused kernel (on CPU, a "flash attention" kernel) that computes the same result block by block,
# with a running softmax, and never stores the $(N, N)$ matrix. That removes the $N^2$
# *memory*, not the $N^2$ *FLOPs*. A small timing on this CPU, one image, the book's $h = 4$
# heads of $d = 32$, one thread so the numbers are stable on a shared machine:

# %%
def best_time(fn, repeats: int) -> float:
    fn()                                                       # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


lengths = [65, 257, 1025] if QUICK else [65, 197, 257, 785, 1025, 3137]
repeats = 3 if QUICK else 10
timings = []
with torch.no_grad(), num_threads(1):  # one thread, put back afterwards
    for n in lengths:
        q, k, v = torch.randn(3, 1, h, n, d).unbind(0)
        t_manual = best_time(lambda: attention(q, k, v), repeats)
        t_fused = best_time(lambda: F.scaled_dot_product_attention(q, k, v), repeats)
        timings.append((n, t_manual, t_fused))
        print(f"N = {n:>5}: manual {t_manual * 1e3:8.2f} ms, fused SDPA {t_fused * 1e3:8.2f} ms, "
              f"(N, N) matrix per head {n * n * 4 / 2 ** 20:7.2f} MB")

# %%
n_arr, t_man, t_fus = map(np.array, zip(*timings))
fig, ax = plt.subplots(figsize=(7, 4.2))
ax.plot(n_arr, t_man * 1e3, "o-", label="manual: softmax(QKᵀ/√d)V")
ax.plot(n_arr, t_fus * 1e3, "s-", label="F.scaled_dot_product_attention")
ref = t_man[-1] * 1e3 * (n_arr / n_arr[-1]) ** 2
ax.plot(n_arr, ref, "k:", lw=1, label="∝ N² (through the last point)")
ax.set_xscale("log")
ax.set_yscale("log")
ax.set_xlabel("sequence length N (tokens)")
ax.set_ylabel("time per call (ms, best of %d)" % repeats)
ax.set_title(f"Attention forward on CPU (1 thread, h = {h}, d = {d}, batch 1)")
ax.grid(True, which="both", alpha=0.3)
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# At the book's 17 tokens attention is cheap either way; the $N^2$ term only dominates for long
# sequences (small patches, big images). There the fused kernel also wins on time, although it
# does the same arithmetic: writing the $(N, N)$ matrix to memory and reading it back twice (for
# the softmax and for $AV$) costs more than the multiplications once the matrix no longer fits
# in the CPU's caches. Exact timings depend on your CPU and PyTorch build.
#
# ## Causal versus bidirectional attention
#
# Language models such as GPT use *causal* attention: token $i$ may only attend to tokens
# $j \le i$, because when generating text the future does not exist yet. This is a mask that sets
# the scores above the diagonal to $-\infty$ before the softmax. The ViT has no mask at all: every
# patch sees every patch (bidirectional attention, like BERT), since the whole image is available
# at once and there is no natural order of patches to respect. Our `attention` supports the mask,
# and agrees with PyTorch's `is_causal=True`:

# %%
B, n = 2, 10
q, k, v = torch.randn(3, B, h, n, d).unbind(0)
causal = torch.ones(n, n, dtype=torch.bool).tril()            # True on and below the diagonal
out_causal, w_causal = attention(q, k, v, mask=causal)
torch.testing.assert_close(out_causal, F.scaled_dot_product_attention(q, k, v, is_causal=True),
                           rtol=1e-5, atol=1e-5)
assert (w_causal.triu(1) == 0).all()                           # nothing from the future
print("✓ masked attention == SDPA(is_causal=True); the ViT uses the unmasked version")

# %% [markdown]
# ## Summary
#
# - Attention is a soft dictionary lookup: $\mathrm{softmax}(QK^\top/\sqrt{d})\,V$ averages the
#   values, weighted by how well each query matches each key. Each row of the $N \times N$ matrix
#   is a probability distribution. Attention alone ignores token order.
# - The $1/\sqrt{d}$ keeps the score variance near 1 for any head size. Without it the softmax
#   saturates as $d$ grows and its gradient vanishes.
# - Multi-head attention runs $h$ attentions of size $d$ in parallel from one fused $Q, K, V$
#   projection, concatenates them and projects back to $D$. Ours matches
#   `F.scaled_dot_product_attention`, `nn.MultiheadAttention` and both paths of
#   `vitlib.model.Attention` to $10^{-5}$.
# - An untrained ViT attends almost uniformly; the heatmap and the CLS map become meaningful
#   after training ([chapter 6](06_interpretation.ipynb)).
# - The attention matrix costs $O(N^2)$ compute and memory, i.e. $O(1/P^4)$ in the patch size.
#   Fused kernels remove the memory, not the compute. ViT keeps $N$ small with big patches.
#
# Next, [chapter 4](04_vit.ipynb) wraps attention and an MLP into a transformer block and stacks
# blocks into the full Vision Transformer.
#
# ## Exercises
#
# 1. **Temperature.** Replace the $1/\sqrt{d}$ in `attention` by $1/d$ and by $1$, and rerun the
#    saturation experiment. Which choice makes the attention *too* uniform for large $d$?
#
#    **Hint:** with $1/d$ the score variance is $d / d^2 = 1/d$; what does softmax do with
#    inputs that are all nearly equal?
#
# 2. **Attention in chunks.** Write `chunked_attention(q, k, v, chunk=16)` that processes the
#    queries 16 rows at a time and concatenates the results, and `assert_close` it with
#    `attention`. How large is the biggest temporary tensor now, compared with $N \times N$?
#
#    **Hint:** each row of the softmax depends only on its own query, so
#    `torch.cat([attention(q[..., i:i + chunk, :], k, v)[0] for i in range(0, N, chunk)], dim=-2)`
#    is exact.
#
# 3. **Attention dropout.** Add `nn.Dropout(p)` on the weights (before multiplying by $V$) to
#    `MultiHeadAttention`, and check it against `vitlib.model.Attention` built with
#    `attn_dropout=p, fused_attn=False` in training mode.
#
#    **Hint:** call `torch.manual_seed(0)` right before each forward pass so that both draw the
#    same dropout mask.
#
# 4. **How many heads?** With $D = 128$ fixed and $d = D/h$, count the parameters and
#    `flops_breakdown` FLOPs of `Attention` for $h = 1, 2, 4, 8, 16$. What changes, and what
#    does not?
#
#    **Hint:** the `qkv` and `proj` matrices have shapes $(3hd, D)$ and $(D, hd)$, and $hd = D$.

# %%
print(f"notebook ran in {time.perf_counter() - START:.1f} s (quick mode: {QUICK})")
