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
# [Chapter 2](02_patch_embedding.ipynb) turned an image into $N+1$ tokens of width $D$: $N$
# patches and the class token (CLS), each knowing only its own patch. Self-attention lets tokens
# exchange information: every token takes a weighted average of what all tokens offer. It is the
# heart of the Transformer {cite:p}`vaswani2017attention`, and the ViT {cite:p}`dosovitskiy2021vit`
# uses it unchanged.
#
# **Learning objectives.** After this chapter you can
#
# - compute $\mathrm{softmax}(QK^\top/\sqrt{d})\,V$ by hand for three tokens, then in four lines
#   of PyTorch, and say why the scores are divided by $\sqrt{d}$;
# - build multi-head attention and check it against `vitlib.model.Attention`;
# - read the class token's attention maps of a trained ViT, and say what they do and do not show;
# - say what attention costs as the patch size shrinks, and what fused kernels save.
#
# **Time.** Reading: about 40 minutes, plus the exercises. Running: about 15 seconds on a laptop
# CPU in quick mode (`VITLIB_QUICK=1`); full mode uses more samples for the $\sqrt{d}$ experiment
# and more test images for the attention statistics, and takes a little longer.
#
# ![The ViT architecture, with the book model's shapes](../book/assets/vit_architecture.svg)
#
# This chapter builds the **Multi-head attention** box inside each **Transformer block × L** of
# the figure; [chapter 4](04_vit.ipynb) builds the rest of the block around it.

# %%
import math
import time
from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import vitlib.paths
from vitlib.data import ColoredMNIST
from vitlib.hub import load_pretrained
from vitlib.model import Attention, ViT, ViTConfig, flops_breakdown
from vitlib.viz import to_numpy_image

QUICK = vitlib.paths.is_quick()
torch.manual_seed(0)
START = time.perf_counter()
print(f"quick mode: {QUICK}; torch {torch.__version__}")

# %% [markdown]
# ## Attention as a soft dictionary lookup
#
# A Python `dict` returns the value of the one key that matches a query exactly. Attention does
# this softly: it compares a query with *every* key, turns the match scores into weights that sum
# to one, and returns the weighted average of all the values. In self-attention, token $i$ emits a
# **query** $q_i$ (what am I looking for?), a **key** $k_i$ (what do I contain?) and a **value**
# $v_i$ (what do I pass on?), all linear maps of the token. With the $N+1$ tokens as the rows of
# $X \in \mathbb{R}^{(N+1) \times D}$, they are $Q = X W_Q$, $K = X W_K$ and $V = X W_V$ with
# $W_Q, W_K, W_V \in \mathbb{R}^{D \times d}$, and
#
# $$
# \mathrm{Attention}(Q, K, V)
# = \underbrace{\mathrm{softmax}\!\left(\frac{Q K^\top}{\sqrt{d}}\right)}_{A \,\in\, \mathbb{R}^{(N+1) \times (N+1)}} V,
# \qquad
# A_{ij} = \frac{\exp(q_i \cdot k_j / \sqrt{d})}{\sum_{j'} \exp(q_i \cdot k_{j'} / \sqrt{d})}.
# $$
#
# Row $i$ of $A$ is a probability distribution over the tokens, and output $i$ is
# $\sum_j A_{ij} v_j$, an average of the values weighted by how well $q_i$ matches each $k_j$.
#
# ## Three tokens, by hand
#
# Three tokens with head size $d = 2$, one row each. The scores $QK^\top$ hold $q_i \cdot k_j$
# (e.g. $q_1 \cdot k_1 = 1 \cdot 2 + 0 \cdot 0 = 2$); scaling divides them by $\sqrt{2} \approx 1.414$:
#
# $$
# Q = \begin{pmatrix} 1 & 0 \\ 0 & 2 \\ 1 & 1 \end{pmatrix},\;
# K = \begin{pmatrix} 2 & 0 \\ 0 & 1 \\ 1 & 1 \end{pmatrix},\;
# V = \begin{pmatrix} 1 & 0 \\ 0 & 1 \\ 1 & 1 \end{pmatrix},
# $$
# $$
# QK^\top = \begin{pmatrix} 2 & 0 & 1 \\ 0 & 2 & 2 \\ 2 & 1 & 2 \end{pmatrix},\;
# \frac{QK^\top}{\sqrt{2}} = \begin{pmatrix} 1.414 & 0 & 0.707 \\ 0 & 1.414 & 1.414 \\
# 1.414 & 0.707 & 1.414 \end{pmatrix}.
# $$
#
# **Softmax, row by row.** Row 1: $e^{1.414} = 4.113$, $e^{0} = 1$ and $e^{0.707} = 2.028$ sum to
# $7.141$, so the weights are $4.113/7.141 = 0.576$, $1/7.141 = 0.140$ and $2.028/7.141 = 0.284$.
# **Output.** Row 1 is $0.576\,v_1 + 0.140\,v_2 + 0.284\,v_3 = (0.860, 0.424)$. All rows:
#
# $$
# A = \begin{pmatrix} 0.576 & 0.140 & 0.284 \\ 0.108 & 0.446 & 0.446 \\ 0.401 & 0.198 & 0.401
# \end{pmatrix}, \qquad
# AV = \begin{pmatrix} 0.860 & 0.424 \\ 0.554 & 0.892 \\ 0.802 & 0.599 \end{pmatrix}.
# $$
#
# Token 1's query $(1, 0)$ points the same way as key 1, so most of its output comes from $v_1$;
# token 2's query $(0, 2)$ matches keys 2 and 3 equally well, so they get equal weights. In PyTorch:

# %%
Q = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
K = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
V = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
S = Q @ K.T                                                  # (3, 3) scores
S_scaled = S / math.sqrt(Q.shape[-1])                        # divide by sqrt(d), d = 2
A = S_scaled.softmax(dim=-1)                                 # softmax along each row
O = A @ V                                                    # (3, 2) outputs
by_hand = [("Q K^T", S, [[2.0, 0, 1], [0, 2, 2], [2, 1, 2]]),              # the numbers above
           ("Q K^T / sqrt(2)", S_scaled, [[1.414, 0, 0.707], [0, 1.414, 1.414], [1.414, 0.707, 1.414]]),
           ("exp of row 1, and their sum", torch.cat([S_scaled[0].exp(), S_scaled[0].exp().sum()[None]]),
            [4.113, 1, 2.028, 7.141]),
           ("A = softmax of each row", A, [[0.576, 0.140, 0.284], [0.108, 0.446, 0.446], [0.401, 0.198, 0.401]]),
           ("A V", O, [[0.860, 0.424], [0.554, 0.892], [0.802, 0.599]])]
for name, t, hand in by_hand:
    print(f"{name}:\n{np.array2string(t.numpy(), precision=3, suppress_small=True)}")
    torch.testing.assert_close(t, torch.tensor(hand), rtol=0, atol=1e-3)      # to 3 decimals
torch.testing.assert_close(O, F.scaled_dot_product_attention(Q, K, V))
print("✓ every step matches the hand computation; the output matches F.scaled_dot_product_attention")

# %% [markdown]
# ## Scaled dot-product attention in four lines
#
# The same four steps as a function, for any leading batch dimensions (so it will run all heads
# of all images at once). The boolean `mask` (True = may attend) is for exercise 2.

# %%
def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
              mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T / sqrt(d)) v for q, k, v of shape (..., N+1, d). Returns (output, weights)."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])   # (..., N+1, N+1)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))        # forbidden pairs get weight 0
    weights = scores.softmax(dim=-1)                             # each row sums to 1
    return weights @ v, weights                                  # (..., N+1, d), (..., N+1, N+1)


# %% [markdown]
# Self-check on the worked example and on random tensors of the book's shapes. Nothing in the
# formula depends on where a token sits, so permuting the tokens only permutes the output: that
# is why chapter 2 added position embeddings.

# %%
for got, want in zip(attention(Q, K, V), (O, A)):                # the worked example again
    torch.testing.assert_close(got, want)
B, N, d = 2, 16, 32
q, k, v = torch.randn(3, B, N + 1, d).unbind(0)
out, weights = attention(q, k, v)
assert out.shape == (B, N + 1, d) and weights.shape == (B, N + 1, N + 1) and (weights >= 0).all()
torch.testing.assert_close(weights.sum(-1), torch.ones(B, N + 1))
torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), rtol=1e-5, atol=1e-5)
perm = torch.randperm(N + 1)
torch.testing.assert_close(attention(q[:, perm], k[:, perm], v[:, perm])[0], out[:, perm], rtol=1e-5, atol=1e-5)
print(f"output {tuple(out.shape)}, weights {tuple(weights.shape)}\n✓ attention() == the worked example "
      "and F.scaled_dot_product_attention; rows sum to 1; permuting the tokens permutes the output")

# %% [markdown]
# ### Why divide by $\sqrt{d}$?
#
# If the entries of $q$ and $k$ are independent with mean 0 and variance 1 (roughly what a
# well-initialised network produces), $q \cdot k = \sum_{s=1}^{d} q_s k_s$ is a sum of $d$ terms
# of variance $\mathbb{E}[q_s^2]\,\mathbb{E}[k_s^2] = 1$, so $\mathrm{Var}(q \cdot k) = d$.
# Dividing by $\sqrt{d}$ brings it back to 1, whatever the head size. Why does that matter? When
# softmax inputs differ by tens, one weight takes almost all the mass (the softmax *saturates*)
# and its gradient, $\partial a_i / \partial s_j = a_i(\delta_{ij} - a_j)$ for
# $a = \mathrm{softmax}(s)$, is zero for a one-hot $a$: the query and key projections stop learning. The
# experiment below measures all three effects for head sizes $d$ from 2 to 1024, with $N+1 = 65$
# keys per query (chapter 6's fine model: $N = 64$ patches of $4 \times 4$ pixels, plus CLS).

# %%
def softmax_stats(d: int, n_queries: int, n_keys: int = 65, scale: bool = True) -> tuple[float, float, float]:
    """(variance of the scores, mean largest weight, mean Frobenius norm of the softmax Jacobian)."""
    g = torch.Generator().manual_seed(d)
    q, k = torch.randn(n_queries, 1, d, generator=g), torch.randn(n_queries, n_keys, d, generator=g)
    s = (q * k).sum(-1) / (math.sqrt(d) if scale else 1.0)      # (n_queries, n_keys)
    a = s.softmax(-1)
    jac = torch.diag_embed(a) - a[:, :, None] * a[:, None, :]    # da_i / ds_j for each query
    return s.var().item(), a.max(-1).values.mean().item(), jac.norm(dim=(-2, -1)).mean().item()


dims = [2 ** p for p in range(1, 11)]
n_queries = 256 if QUICK else 2048
raw = np.array([softmax_stats(d, n_queries, scale=False) for d in dims])
scaled = np.array([softmax_stats(d, n_queries, scale=True) for d in dims])
print("   d   Var(score) raw / scaled   largest weight raw / scaled   ‖∂a/∂s‖ raw / scaled")
for i in [dims.index(d) for d in (2, 16, 32, 64, 128, 1024)]:
    print(f"{dims[i]:>4}   {raw[i, 0]:10.1f} / {scaled[i, 0]:.2f}   {raw[i, 1]:16.2f} / {scaled[i, 1]:.2f}"
          f"   {raw[i, 2]:14.3f} / {scaled[i, 2]:.3f}")
assert 0.5 * dims[-1] < raw[-1, 0] < 2 * dims[-1] and np.all(abs(scaled[:, 0] - 1) < 0.3)  # Var ~ d vs ~1
assert raw[-1, 1] > 0.8 and scaled[-1, 1] < 0.3               # saturated vs not
i128 = dims.index(128)                                         # the gradient curves cross once, 64 -> 128
assert np.all(raw[:i128, 2] > scaled[:i128, 2]) and np.all(raw[i128:, 2] < scaled[i128:, 2])
assert raw[-1, 2] < 0.5 * scaled[-1, 2] and np.ptp(scaled[:, 2]) < 0.1 * scaled[:, 2].mean()  # flat in d

# %%
fig, axes = plt.subplots(1, 3, figsize=(14, 3.9))
panels = [(0, "variance of the scores", "Var(score)"), (1, "mean of each row's largest weight",
          "max_j A_ij"), (2, "size of the softmax gradient", "‖∂a/∂s‖ (Frobenius)")]
for ax, (col, title, ylabel) in zip(axes, panels):
    ax.plot(dims, raw[:, col], "o-", label="q·k (unscaled)")
    ax.plot(dims, scaled[:, col], "s-", label="q·k / √d (scaled)")
    ax.set(xscale="log", yscale="linear" if col == 1 else "log", title=title, xlabel="head size d",
           ylabel=ylabel)
    ax.grid(True, alpha=0.3)
axes[0].plot(dims, dims, "k--", lw=1, label="d")
axes[1].axhline(1 / 65, color="k", ls=":", lw=1, label="uniform, 1/65")
for ax in axes:
    ax.legend(fontsize=8)
fig.suptitle("Without the 1/√d the scores grow with d, the softmax saturates, and for large d its gradient shrinks")
fig.tight_layout()
plt.show()

# %% [markdown]
# Read the panels from left to right. The unscaled score variance follows the dashed line
# $\mathrm{Var} = d$; the scaled one stays at 1. With unscaled scores the largest weight in a row
# climbs towards 1 (one key takes everything) as $d$ grows; the scaled softmax keeps the same
# moderate shape for every $d$. The gradient panel is subtler. A more peaked softmax that is not
# yet saturated has a *larger* gradient, so for every $d$ up to 64 the unscaled gradient is the
# larger of the two. Only once the unscaled softmax saturates does its gradient
# fall: below the scaled one from $d = 128$ on, and to less than half of it at $d = 1024$
# (see the printed table). The case for $1/\sqrt{d}$ is the flat line: the scaled softmax, and its
# gradient, behave the same for every head size.
#
# ## Multi-head attention
#
# This section builds the **Multi-head attention** box of the figure. One attention gives each
# token one way of looking at the others; multi-head attention runs $h$ of them side by side, each
# with its own projections of size $d$, and mixes their results:
#
# $$
# \mathrm{head}_i = \mathrm{Attention}\big(X W_Q^{(i)},\, X W_K^{(i)},\, X W_V^{(i)}\big),
# \qquad
# \mathrm{MHA}(X) = [\mathrm{head}_1, \dots, \mathrm{head}_h]\, W_O,
# \quad W_O \in \mathbb{R}^{hd \times D}.
# $$
#
# Usually $d = D/h$ (the book's default: $D = 128$, $h = 4$, $d = 32$), so $h$ heads cost the
# same as one big head. In code, all $3h$ projections are one `nn.Linear(D, 3*h*d)`, whose output
# we reshape into (q/k/v, head, dimension); `attention` then runs on $(B, h, N+1, d)$ tensors.

# %%
class MultiHeadAttention(nn.Module):
    """Multi-head self-attention; the parameter names match vitlib.model.Attention."""

    def __init__(self, D: int, h: int, d: int, qkv_bias: bool = True):
        super().__init__()
        self.h, self.d = h, d
        self.qkv = nn.Linear(D, 3 * h * d, bias=qkv_bias)  # W_Q, W_K, W_V of all heads
        self.proj = nn.Linear(h * d, D)                      # W_O

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, n_tok, _ = x.shape                                   # n_tok = N+1
        qkv = self.qkv(x).reshape(B, n_tok, 3, self.h, self.d)  # (B, N+1, 3, h, d)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)                    # each (B, h, N+1, d)
        out, weights = attention(q, k, v)                       # (B, h, N+1, d), (B, h, N+1, N+1)
        out = out.transpose(1, 2).reshape(B, n_tok, self.h * self.d)  # concatenate the heads
        return self.proj(out), weights                          # (B, N+1, D)


# %% [markdown]
# The shapes for the book's default model ($N = 16$ patches of $8 \times 8$ pixels), and a check
# against `vitlib.model.Attention` (same parameter names): both its readable path and its fused
# one (`F.scaled_dot_product_attention`, which never builds the $(N+1) \times (N+1)$ matrix).

# %%
cfg = ViTConfig.default()
D, h, d, N = cfg.emb_dim, cfg.n_heads, cfg.attn_head_dim, cfg.num_patches
ref_manual = Attention(replace(cfg, fused_attn=False)).eval()
ref_fused = Attention(replace(cfg, fused_attn=True)).eval()
ref_fused.load_state_dict(ref_manual.state_dict())
mha = MultiHeadAttention(D, h, d).eval()
mha.load_state_dict(ref_manual.state_dict())
x = torch.randn(2, N + 1, D)                                     # (B, N+1, D) tokens
with torch.no_grad():
    qkv = mha.qkv(x)                                             # (B, N+1, 3hd)
    (y, w), (y_manual, w_manual), (y_fused, w_fused) = mha(x), ref_manual(x, return_weights=True), ref_fused(x)
assert qkv.shape == (2, N + 1, 3 * h * d) and w.shape == (2, h, N + 1, N + 1) and y.shape == x.shape
print(f"x {tuple(x.shape)} -> qkv {tuple(qkv.shape)} -> weights {tuple(w.shape)} -> output {tuple(y.shape)}")
for mine, ref in [(y, y_manual), (w, w_manual), (y, y_fused)]:
    torch.testing.assert_close(mine, ref, rtol=1e-5, atol=1e-5)
assert w_fused is None                                           # the fused path has no weights
print("✓ (B, N+1, D) in, (B, N+1, D) out; == vitlib Attention, manual and fused paths")

# %% [markdown]
# ## Attention in a trained ViT
#
# `vitlib` ships a trained copy of the book's default model (chapter 5 shows how it was trained). We build the
# test images it was trained for (32 px, its config's textures) and ask for its attention:
# `return_attention=True` returns one $(B, h, N+1, N+1)$ tensor per layer. First a check that
# layer 0's is what our `MultiHeadAttention` computes from block 0's input after its LayerNorm.

# %%
model, info = load_pretrained("default")
data_cfg, metrics = info["config"]["dataset_params"], info["metrics"]["test"]
test = ColoredMNIST("test", image_size=model.config.image_size, textures=data_cfg["textures"],
                    threshold=data_cfg["threshold"], seed=data_cfg["seed"])
print(f"{test}\nshipped model: {metrics['test_acc']:.2%} on the {metrics['n_test']:,} images of its own test run")
show = [int((test.labels == c).nonzero()[0]) for c in (2, 5, 7)]   # the first 2, 5 and 7
images = test.get_batch(torch.tensor(show))["image"]              # (3, C, H, W)
caught = {}
hook = model.blocks[0].register_forward_pre_hook(lambda module, args: caught.update(z0=args[0]))
with torch.no_grad():
    logits, attentions = model(images, return_attention=True)
    hook.remove()
    mha.load_state_dict(model.blocks[0].attn.state_dict())
    _, w0 = mha(model.blocks[0].norm1(caught["z0"]))
assert len(attentions) == cfg.n_layers and attentions[0].shape == (3, h, N + 1, N + 1)
torch.testing.assert_close(w0, attentions[0], rtol=1e-5, atol=1e-5)
print(f"predicted {logits.argmax(-1).tolist()} for digits {test.labels[show].tolist()}\n"
      "✓ the trained model's layer-0 weights == our MultiHeadAttention on LayerNorm(z0)")

# %% [markdown]
# The classifier reads only the class token's output, so row 0 of $A$ is the interesting row.
# Without its first entry (CLS looking at itself) it has one weight per patch, laid out here on
# the $4 \times 4$ patch grid for the last layer, every head.

# %%
gh, gw = cfg.grid_size
cls_maps = attentions[-1][:, :, 0, 1:].reshape(3, h, gh, gw)      # (3, h, 4, 4)
fig, axes = plt.subplots(3, h + 1, figsize=(15, 9.5), layout="constrained")
for row, image in enumerate(images):
    axes[row, 0].imshow(to_numpy_image(image), extent=(0, 32, 32, 0))
    axes[row, 0].set(title=f"test image: digit {int(test.labels[show[row]])}", xlabel="x (pixels)",
                     ylabel="y (pixels)", xticks=range(0, 33, 8), yticks=range(0, 33, 8))
    axes[row, 0].grid(color="white", lw=0.5)                        # the patch grid
    for head in range(h):
        im = axes[row, head + 1].imshow(cls_maps[row, head].numpy(), cmap="magma", vmin=0, vmax=1)
        axes[row, head + 1].set(title=f"head {head}", xlabel="patch column", ylabel="patch row",
                                xticks=range(gw), yticks=range(gh))
fig.colorbar(im, ax=axes, fraction=0.02, label="attention weight from CLS")
fig.suptitle(f"Last layer (layer {cfg.n_layers - 1}): where the class token looks, per head")
plt.show()
assert (cls_maps.flatten(2).topk(2, dim=-1).values.sum(-1) > 0.5).all()  # as the text below says

# %% [markdown]
# How peaked are these maps over many images? One number is the **entropy** of the CLS row over
# the patches divided by $\log N$: 1 for a uniform map, 0 for one patch. We compare with an
# untrained ViT, and count how often each head's largest weight falls on its favourite patch.

# %%
def cls_entropy(attn: torch.Tensor) -> torch.Tensor:
    """(B, h, N+1, N+1) weights -> (B, h) entropy of the CLS row over the N patches / log N."""
    p = F.normalize(attn[:, :, 0, 1:], p=1, dim=-1)             # renormalise without CLS itself
    return -(p * p.clamp_min(1e-12).log()).sum(-1) / math.log(p.shape[-1])


n_eval = min(500 if QUICK else 2000, len(test))
batch = test.get_batch(torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[:n_eval])
torch.manual_seed(0)
untrained = ViT(model.config).eval()
with torch.no_grad():
    last = model(batch["image"], return_attention=True)[1][-1]     # (n_eval, h, N+1, N+1)
    last0 = untrained(batch["image"], return_attention=True)[1][-1]
ent, ent0 = cls_entropy(last).mean(0), cls_entropy(last0).mean(0)
top = last[:, :, 0, 1:].argmax(-1)                                  # (n_eval, h) patch index
for head in range(h):
    counts = torch.bincount(top[:, head], minlength=N)
    p = int(counts.argmax())
    print(f"head {head}: entropy {ent[head]:.2f} trained vs {ent0[head]:.2f} untrained; "
          f"largest weight on patch (row {p // gw}, col {p % gw}) in {counts.max() / n_eval:.0%} of images")
assert (ent < ent0).all() and ent0.min() > 0.99             # every head sharper than at the start
assert max(torch.bincount(top[:, i]).max() for i in range(h)) > 0.9 * n_eval   # see the text
print(f"✓ over {n_eval} test images, every trained head is more peaked than the untrained ones")

# %% [markdown]
# The untrained ViT attends almost uniformly (entropy near 1): its weights are small, so every
# score is close to 0. Training makes the class token's last-layer attention peaked: in the
# figure each head puts more than half of its weight on one or two patches. And at least one head
# looks at the same grid position in over 90 % of the images, whatever the digit. That is no
# lookup of those pixels: after five blocks of attention each token carries information from all
# tokens, so the last layer's map says which *tokens* CLS reads, not which *pixels*.
# [Chapter 6](06_interpretation.ipynb) follows the weights through all layers back to the image.
#
# ## What attention costs
#
# Per head and image, $Q K^\top$ takes $2(N+1)^2 d$ FLOPs, $A V$ as many, and training keeps $A$:
#
# $$
# \text{FLOPs}_{A} = L \cdot 4 (N+1)^2 h d, \qquad
# \text{memory}_{A} = L \cdot h (N+1)^2 \cdot 4\ \text{bytes (float32, per image)},
# $$
#
# for $L$ layers of $h$ heads; the projections and the MLP cost $O(N D^2)$. As $N = HW/P^2$,
# halving $P$ multiplies the attention matrix by about 16 and the rest by 4 (exercise 3): hence
# $16 \times 16$ patches at 224 px in the ViT, $8 \times 8$ at 32 px here. **Fused attention**
# (`F.scaled_dot_product_attention`, `vitlib`'s default) computes the same result block by block
# with a running softmax, never storing $A$: it removes the quadratic *memory*, not the *FLOPs*.
#
# ## Summary
#
# - $\mathrm{softmax}(QK^\top/\sqrt{d})\,V$ averages the values, weighted by how well each query
#   matches each key; each row of $A$ is a probability distribution; token order is ignored.
# - $1/\sqrt{d}$ keeps the score variance near 1, so the softmax and its gradient behave the same
#   for every head size; unscaled, the softmax saturates as $d$ grows.
# - Multi-head attention runs $h$ attentions of size $d$ side by side; ours matches `vitlib`'s.
# - A trained ViT's class token attends sharply where an untrained one attends uniformly; in the
#   last layer the map describes tokens that have already mixed, not pixels.
# - Attention costs $O((N+1)^2)$ compute and memory, $O(1/P^4)$ in the patch size; fused kernels
#   remove the memory, not the compute.
#
# Next, [chapter 4](04_vit.ipynb) wraps attention and an MLP into a transformer block, and stacks
# blocks into the ViT.
#
# ## Exercises
#
# ```{exercise} Temperature
# :label: ex-03-1
#
# Replace $1/\sqrt{d}$ by $1/d$ and by $1$, and measure the mean largest weight per row at
# $d = 1024$ with $N+1 = 65$ keys. Which choice makes the attention *too* uniform, and why?
# ```
#
# ```{solution-start} ex-03-1
# :class: dropdown
# ```

# %%
g = torch.Generator().manual_seed(0)
dots = (torch.randn(256, 1, 1024, generator=g) * torch.randn(256, 65, 1024, generator=g)).sum(-1)
top_w = {name: (dots * factor).softmax(-1).max(-1).values.mean().item()  # mean largest weight
         for name, factor in [("1/d", 1 / 1024), ("1/sqrt(d)", 1 / 32), ("1", 1.0)]}
print("mean largest weight per row:", {name: round(w, 3) for name, w in top_w.items()})
assert top_w["1/d"] < 1.5 / 65 and top_w["1"] > 0.9              # ~uniform vs ~one-hot

# %% [markdown]
# With $1/d$ the score variance is $d/d^2 = 1/d$: at $d = 1024$ the scores are nearly equal and
# the softmax is close to uniform (largest weight near $1/65$), so attention cannot select anything.
#
# ```{solution-end}
# ```
#
# ```{exercise} A causal mask
# :label: ex-03-2
#
# In *causal* attention (GPT), token $i$ may attend only to tokens $j \le i$. Build that mask for
# 10 tokens, check `attention(q, k, v, mask=...)` against `F.scaled_dot_product_attention(...,
# is_causal=True)`, and show that changing the last token leaves the first output unchanged. Why
# does the ViT use no mask?
# ```
#
# ```{solution-start} ex-03-2
# :class: dropdown
# ```

# %%
q, k, v = torch.randn(3, 2, h, 10, d).unbind(0)
causal = torch.ones(10, 10, dtype=torch.bool).tril()             # True on and below the diagonal
out_c, w_c = attention(q, k, v, mask=causal)
torch.testing.assert_close(out_c, F.scaled_dot_product_attention(q, k, v, is_causal=True), rtol=1e-5, atol=1e-5)
assert (w_c.triu(1) == 0).all()                                  # nothing from the future
k[..., -1, :], v[..., -1, :] = 5.0, 5.0                          # change the last token only
torch.testing.assert_close(attention(q, k, v, mask=causal)[0][..., 0, :], out_c[..., 0, :])
print("✓ masked attention == SDPA(is_causal=True); the first output ignores the last token")

# %% [markdown]
# The whole image is there at once and patches have no natural reading order, so every patch
# may look at every patch (bidirectional attention, as in BERT).
#
# ```{solution-end}
# ```
#
# ```{exercise} The price of small patches
# :label: ex-03-3
#
# With `vitlib.model.flops_breakdown`, tabulate for $P = 2, 4, 8, 16$ the attention-matrix FLOPs
# (`attn_scores + attn_values`), the other FLOPs and the attention matrices' memory for a training
# batch of 128, for the book's model at 32 px and the original at 224 px; check the formula.
# ```
#
# ```{solution-start} ex-03-3
# :class: dropdown
# ```

# %%
print(f"{'model':>20} {'P':>3} {'N+1':>6} {'attn-matrix GFLOPs':>19} {'other GFLOPs':>13} {'A, batch 128':>15}")
for label, base in [("32 px, book default", cfg), ("224 px, original", ViTConfig.original())]:
    for P in (2, 4, 8, 16):
        c = replace(base, patch_size=P)
        f, n_tok = flops_breakdown(c), c.num_patches + 1
        matrix = f["attn_scores"] + f["attn_values"]
        assert matrix == c.n_layers * 4 * n_tok ** 2 * c.n_heads * c.attn_head_dim   # the formula
        mem_gb = c.n_layers * c.n_heads * n_tok ** 2 * 4 * 128 / 2 ** 30
        print(f"{label:>20} {P:>3} {n_tok:>6,} {matrix / 1e9:>19.3g} "
              f"{(sum(f.values()) - matrix) / 1e9:>13.3g} {mem_gb:>12.3g} GB")

# %% [markdown]
# From $P = 16$ to $P = 2$ at 224 px, $N+1$ goes from 197 to 12,545: the attention-matrix FLOPs
# grow about 4,000-fold, and the attention matrices alone would need thousands of gigabytes.
#
# ```{solution-end}
# ```
#
# ## Comprehension questions
#
# **1. What does row $i$ of $A$ tell you, and why does it sum to 1?**
#
# ```{admonition} Answer
# :class: dropdown
# How much each token contributes to token $i$'s output. It is a softmax over the keys, so the
# output is a weighted average of the values.
# ```
#
# **2. Shuffle the $N+1$ tokens before attention. What happens to the output?**
#
# ```{admonition} Answer
# :class: dropdown
# It is shuffled the same way and otherwise unchanged: attention has no notion of order, so the
# ViT learns where a patch is only through chapter 2's position embedding.
# ```
#
# **3. Why divide the scores by $\sqrt{d}$ rather than by $d$ or not at all?**
#
# ```{admonition} Answer
# :class: dropdown
# $\mathrm{Var}(q \cdot k) = d$, so $1/\sqrt{d}$ brings it to 1 for every $d$. Unscaled, the softmax
# saturates for large $d$; with $1/d$ the scores shrink to 0 and attention turns uniform (exercise 1).
# ```
#
# **4. A last-layer head puts its CLS weight on the same patch in nearly every image. Does the
# model ignore the rest of the image?**
#
# ```{admonition} Answer
# :class: dropdown
# No. Over the earlier blocks every token has mixed in information from all tokens, so that token
# carries more than its own patch. Chapter 6's rollout traces the weights back to pixels.
# ```
#
# **5. Halving $P$ multiplies the attention-matrix FLOPs by about what? Does a fused kernel help?**
#
# ```{admonition} Answer
# :class: dropdown
# $N = HW/P^2$ grows 4 times, so $(N+1)^2$ about 16 times. A fused kernel never stores the matrix
# (less memory) but does the same multiplications.
# ```

# %%
print(f"notebook ran in {time.perf_counter() - START:.1f} s (quick mode: {QUICK})")
