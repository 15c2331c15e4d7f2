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
# # 02 · Patch embedding
#
# A transformer reads a *sequence of vectors*; an image is a *grid of pixels*. This chapter builds
# the bridge, the first layers of the Vision Transformer {cite:p}`dosovitskiy2021vit`: cut the
# image into square patches, flatten each, project it to a vector of size $D$, put a learned class
# token in front and add a position embedding. The paper's title, *An Image is Worth 16x16 Words*,
# is this chapter in one line: every $16 \times 16$ patch becomes one "word" (a *token*).
#
# ![The ViT architecture, with the book model's shapes](../book/assets/vit_architecture.svg)
#
# This chapter builds the three boxes below "Image" in the figure: **Patchify**, **Patch
# embedding**, and **CLS token + position embedding**. Chapters 3 and 4 build the rest.
#
# **Learning objectives.** After this chapter you can
#
# - cut images into $N$ flattened patches of $K = P^2 C$ numbers with `reshape`, `permute`,
#   `reshape`, and say why the `permute` is needed;
# - explain why the patch projection is a convolution with kernel size = stride = $P$, and what
#   the original project's *patch norm* (LayerNorm, Linear, LayerNorm) does;
# - add the class token and position embeddings, checking every shape up to $(B, N+1, D)$, and
#   predict how many tokens a patch size gives and why that decides what attention costs.
#
# **Time.** Reading: about 30 minutes. Running: well under a minute on a laptop CPU (the last
# cell prints how long); nothing is trained, and quick mode (`VITLIB_QUICK=1`) only uses fewer
# images for statistics. Everything built inline here also exists, tested, in `vitlib.model`, and
# each piece is checked against it. (In JupyterLab, citations show as "Citation Not Found": only
# the built book reads the bibliography.)

# %%
import time
from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import vitlib.paths
from vitlib.data import ColoredMNIST
from vitlib.model import (PatchEmbedding, ViT, ViTConfig, conv_weight_to_linear, flops_breakdown, patchify,
                          sincos_pos_embed)
from vitlib.viz import to_numpy_image

QUICK = vitlib.paths.is_quick()
torch.manual_seed(0)
START = time.perf_counter()
N_STATS = 64 if QUICK else 1000  # images used for the token statistics below
print(f"quick mode: {QUICK}; torch {torch.__version__}")

# %% [markdown]
# ## From pixels to tokens
#
# Why not make every pixel a token? Self-attention (chapter 3) compares every token with every
# other, so its cost grows with the *square* of the sequence length: a $224 \times 224$ image has
# $50{,}176$ pixels, and $50{,}176^2 \approx 2.5 \times 10^9$ comparisons per head and per layer
# is far too many. Cutting the image into $P \times P$ patches shortens the sequence by $P^2$: an
# image $x \in \mathbb{R}^{C \times H \times W}$ becomes $N = \frac{H}{P} \cdot \frac{W}{P}$
# flattened patches $x_p^1, \dots, x_p^N \in \mathbb{R}^{K}$, $K = P^2 C$, in row-major order
# (left to right, then top to bottom). With $P = 16$ a $224 \times 224$ image gives $196$ tokens;
# the book's $32 \times 32$ images ([chapter 1](01_dataset.ipynb)) with $P = 8$ give $N = 16$
# patches of $K = 192$ numbers. (The original project's 224 px images, cut into patches of several
# sizes, are in {doc}`u1_data_pipeline`.)

# %%
IDX = 1                                    # a test image with good contrast (a '2' with full MNIST)
test32 = ColoredMNIST("test", image_size=32)
s32 = test32[IDX]
image32 = s32["image"]                     # (3, 32, 32) in [-1, 1]
print(f"digit {int(s32['number_cls'])} on {test32.texture_names[int(s32['texture_cls'])]!r}, "
      f"{tuple(image32.shape)}")

# %% [markdown]
# ## Patchify with reshape and permute
#
# This section builds the **Patchify** box of the figure. A tensor is a flat block of memory plus
# a shape. To cut a $(B, C, H, W)$ batch into patches we
#
# 1. **split** each spatial axis into (which patch, where in the patch), $H = g_h P$ and
#    $W = g_w P$: shape $(B, C, g_h, P, g_w, P)$;
# 2. **reorder** the axes, grid axes first and one patch's axes last: $(B, g_h, g_w, P, P, C)$;
# 3. **merge** the grid axes into the sequence axis and the patch axes into the feature axis:
#    $(B, N, K)$ with $N = g_h g_w$.
#
# Steps 1 and 2 move no data: `reshape` of a contiguous tensor and `permute` only change the
# shape and strides. Step 3 has to copy, because the values of one patch are not next to each
# other in memory. The order inside a patch, (row, column, channel), is the original project's
# `einops` pattern `b c (nh ph) (nw pw) -> b (nh nw) (ph pw c)`.

# %%
def my_patchify(x: torch.Tensor, P: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, K) with K = P*P*C, patches in row-major order."""
    B, C, H, W = x.shape
    assert H % P == 0 and W % P == 0, f"patch size {P} must divide the image size {H}x{W}"
    gh, gw = H // P, W // P
    x = x.reshape(B, C, gh, P, gw, P)        # 1. split:   (B, C, gh, P, gw, P)
    x = x.permute(0, 2, 4, 3, 5, 1)          # 2. reorder: (B, gh, gw, P, P, C)
    return x.reshape(B, gh * gw, P * P * C)  # 3. merge:   (B, N, K), one copy


# self-check: the shape, one patch against its pixels, and vitlib.model.patchify
x32 = image32[None]                      # a batch of one: (1, 3, 32, 32)
P = 8
patches = my_patchify(x32, P)
assert patches.shape == (1, (32 // P) ** 2, P * P * 3), patches.shape
# patch 5 sits in grid row 1, column 1: pixels [8:16, 8:16], flattened as (row, column, channel)
by_hand = x32[0, :, 8:16, 8:16].permute(1, 2, 0).reshape(-1)
torch.testing.assert_close(patches[0, 5], by_hand)
for p in (1, 2, 4, 8, 16, 32):
    torch.testing.assert_close(my_patchify(x32, p), patchify(x32, p))
print(f"patches {tuple(patches.shape)} = (B, N, K) for P = {P}; ✓ my_patchify matches the pixels and patchify")

# %% [markdown]
# Why is step 2 necessary? A plain `x.reshape(B, N, K)` also gives the right *shape*, but it chops
# the flat memory (all of the red channel, then green, then blue, row after row) into consecutive
# chunks: the first "patch" is the top rows of the red channel. Shapes cannot catch this bug; a
# picture, or a comparison with the pixels, does. The figure draws each row of $K$ numbers
# reshaped back to $P \times P \times C$: with the permute, token 0 is the top-left patch.

# %%
def strip(seq: torch.Tensor, P: int) -> np.ndarray:
    """A (N, K) sequence drawn as its N patches side by side, each followed by a white column."""
    tiles = F.pad(((seq.reshape(-1, P, P, 3) + 1) / 2).clamp(0, 1), (0, 0, 0, 1), value=1)  # (N, P, P+1, 3)
    return tiles.permute(1, 0, 2, 3).reshape(P, -1, 3).numpy()                              # (P, N(P+1), 3)


def draw_grid(ax, x: torch.Tensor, P: int, numbers: bool = True) -> None:
    """The image with its patch grid (and token numbers) drawn on top."""
    H, W = x.shape[-2:]
    ax.imshow(to_numpy_image(x), extent=(0, W, H, 0))
    ax.set(xticks=range(0, W + 1, P), yticks=range(0, H + 1, P))  # ticks and grid lines on patch edges
    ax.grid(color="white", lw=0.8)
    for k in range((H // P) * (W // P) if numbers else 0):
        r, c = divmod(k, W // P)
        ax.text(c * P + P / 2, r * P + P / 2, str(k), ha="center", va="center", fontsize=7,
                color="white", bbox=dict(facecolor="black", alpha=0.4, pad=0.5, lw=0))
    ax.set(xlabel="x (pixels)", ylabel="y (pixels)")


naive = x32.reshape(1, 16, 192)                         # right shape (1, N, K), wrong content
assert naive.shape == my_patchify(x32, P).shape and not torch.allclose(naive, my_patchify(x32, P))
fig = plt.figure(figsize=(12, 3.6), layout="constrained")
ax_img, ax_seqs = fig.subfigures(1, 2, width_ratios=[1, 3.4])
draw_grid(ax_img.subplots(), image32, P)
ax_img.suptitle(f"32×32 px, P = {P}: a 4×4 grid", fontsize=10)
names = ("reshape → permute → reshape (correct)", "reshape only (wrong: chunks of memory)")
for ax, seq, name in zip(ax_seqs.subplots(2, 1), (my_patchify(x32, P), naive), names):
    ax.imshow(strip(seq[0], P))
    ax.set_title(name, fontsize=10)
    ax.set_xticks([k * (P + 1) + P / 2 for k in range(16)], [str(k) for k in range(16)], fontsize=7)
    ax.set(yticks=[], xlabel="token index i in the sequence")
fig.suptitle("Patchify: the image becomes a sequence of N = 16 tokens of K = 192 numbers each")
plt.show()
print("✓ same shape, different tokens: only the permuted version keeps each patch together")

# %% [markdown]
# ## The linear projection is a strided convolution
#
# This section builds the **Patch embedding** box. A flattened patch has $K = P^2 C$ numbers
# (192 for $P = 8$, 768 for $P = 16$). The transformer wants vectors of its own width $D$, so
# every patch goes through the same learned linear map
#
# $$
# z_i = W x_p^i + b, \qquad x_p^i \in \mathbb{R}^{K},\; W \in \mathbb{R}^{D \times K},\; b \in \mathbb{R}^{D}.
# $$
#
# (The paper writes $x_p^i E$ with $E = W^\top$.) All $N$ patches share $W$ and $b$: $D (K + 1)$
# parameters whatever the image size. Now look at a convolution with $D$ output channels, kernel
# size $P$ and stride $P$. Its output at grid position $(r, c)$, channel $j$, is
#
# $$
# y_{j, r, c} = b_j + \sum_{k=1}^{C} \sum_{u=0}^{P-1} \sum_{v=0}^{P-1}
# \kappa_{j, k, u, v}\, x_{k,\, rP + u,\, cP + v},
# $$
#
# with the kernel $\kappa \in \mathbb{R}^{D \times C \times P \times P}$. Because the stride equals
# the kernel size, the windows tile the image exactly, one window per patch, and the triple sum is
# a dot product of $\kappa_j$ with the pixels of patch $(r, c)$: row $j$ of $W$ times $x_p^i$, once
# the kernel is flattened in the patch's (row, column, channel) order: the kernel is stored as
# $(D, C, P, P)$, so `W = kernel.permute(0, 2, 3, 1).reshape(D, -1)`. This is why torchvision and
# timm implement the patch embedding as one `Conv2d`, and why `ViT.from_torchvision` can load
# their weights into our `Linear`.

# %%
cfg = ViTConfig.default()                     # the book's model: 32 px, P = 8, D = 128
P, D, C = cfg.patch_size, cfg.emb_dim, cfg.in_channels
K = P * P * C
conv = nn.Conv2d(C, D, kernel_size=P, stride=P)
linear = nn.Linear(K, D)
with torch.no_grad():
    linear.weight.copy_(conv.weight.permute(0, 2, 3, 1).reshape(D, -1))  # (D, C, P, P) -> (D, K)
    linear.bias.copy_(conv.bias)
torch.testing.assert_close(linear.weight, conv_weight_to_linear(conv.weight))
xb = test32.get_batch(torch.arange(8))["image"]          # (8, 3, 32, 32)
with torch.no_grad():
    y = conv(xb)                                          # (B, D, gh, gw): a feature map
    z_conv = y.flatten(2).transpose(1, 2)                 # (B, N, D): grid flattened, channels last
    z_lin = linear(my_patchify(xb, P))                    # (B, N, D)
assert y.shape == (8, D, *cfg.grid_size), y.shape
torch.testing.assert_close(z_lin, z_conv, rtol=1e-5, atol=1e-5)
n_params = sum(p.numel() for p in linear.parameters())
assert n_params == D * (K + 1)
print(f"conv weight {tuple(conv.weight.shape)} -> linear weight {tuple(linear.weight.shape)}; "
      f"tokens {tuple(z_lin.shape)}; {n_params:,} parameters = D·(K + 1)")
print("✓ Linear(patchify(x)) == Conv2d(kernel=stride=P)(x), token for token")

# %% [markdown]
# ### The original project's patch norm: LayerNorm → Linear → LayerNorm
#
# The paper's patch embedding is the linear map above. The original project wraps it in two
# layer normalisations, one on the raw patch and one on the token,
#
# $$
# z_i = \mathrm{LN}_D\!\left(W\, \mathrm{LN}_{K}(x_p^i) + b\right), \qquad
# \mathrm{LN}(u) = \gamma \odot \frac{u - \mu(u)}{\sqrt{\sigma^2(u) + \epsilon}} + \beta,
# $$
#
# with $\mu(u)$, $\sigma^2(u)$ the mean and variance of the entries of $u$. The first LayerNorm
# removes each patch's brightness and contrast and keeps its pattern (including which colour
# dominates); the second gives every token the same scale: at initialisation
# ($\gamma = 1, \beta = 0$) mean 0 and length $\sqrt{D}$. The same stem was later studied as
# [Dual PatchNorm](https://arxiv.org/abs/2302.01327), which found that it improves well-tuned ViTs.
# `ViTConfig(patch_norm=...)` switches it (on in the book's default). We write it out with
# `F.layer_norm` and check it against `vitlib`, then compare token lengths $\lVert z_i \rVert$:
# without the norm a token's length depends on what its patch shows (the digit's edge, a flat
# background), so later layers see tokens on very different scales; with it, every token has
# length $\sqrt{D}$ and the content lives only in the *direction*.

# %%
pe_plain = PatchEmbedding(replace(cfg, patch_norm=False))
pe_norm = PatchEmbedding(cfg)                   # cfg.patch_norm is True
pe_norm.proj.load_state_dict(pe_plain.proj.state_dict())  # same W and b in both
extra = sum(p.numel() for p in pe_norm.parameters()) - sum(p.numel() for p in pe_plain.parameters())
assert extra == 2 * K + 2 * D                  # a (gamma, beta) pair for each LayerNorm
W_lin, b_lin, eps = pe_plain.proj.weight, pe_plain.proj.bias, cfg.norm_eps
with torch.no_grad():
    t_plain, t_norm = pe_plain(xb), pe_norm(xb)                 # (B, N, D) each
    u = F.layer_norm(my_patchify(xb, P), (K,), eps=eps)         # LN over each patch's K values
    mine = F.layer_norm(u @ W_lin.T + b_lin, (D,), eps=eps)     # Linear, then LN over D
torch.testing.assert_close(mine, t_norm)
torch.testing.assert_close(my_patchify(xb, P) @ W_lin.T + b_lin, t_plain)
print(f"patch norm adds 2·{K} + 2·{D} = {extra} parameters; largest |token mean| "
      f"{t_norm.mean(-1).abs().max():.1e}, mean length / √D = {(t_norm.norm(dim=-1) / D ** 0.5).mean():.4f}")
print("✓ LN -> Linear -> LN matches vitlib.model.PatchEmbedding(patch_norm=True)")

N_STATS = min(N_STATS, len(test32))       # the offline MNIST subset has 1,000 test images
stats = test32.get_batch(torch.arange(N_STATS))["image"]
with torch.no_grad():
    len_plain = pe_plain(stats).norm(dim=-1)     # (N_STATS, N)
    len_norm = pe_norm(stats).norm(dim=-1)
fig, ax = plt.subplots(figsize=(7, 3.5), layout="constrained")
bins = np.linspace(0, float(max(len_plain.max(), len_norm.max())) * 1.05, 60)
ax.hist(len_plain.flatten().numpy(), bins=bins, alpha=0.7, label="plain Linear")
ax.hist(len_norm.flatten().numpy(), bins=bins, alpha=0.7, label="LN → Linear → LN")
ax.axvline(D ** 0.5, color="k", ls="--", lw=1, label=f"√D = {D ** 0.5:.1f}")
ax.set(yscale="log", xlabel="token length ‖z_i‖", ylabel="count (log scale)",
       title=f"Token lengths over {N_STATS} images × {cfg.num_patches} patches (untrained weights)")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## The class token and the position embeddings
#
# This section builds the **CLS token + position embedding** box. Two more pieces turn the $N$
# patch tokens into the transformer's input:
#
# $$
# z_0 = [\,x_{\text{cls}};\; z_1;\; z_2;\; \dots;\; z_N\,] + E_{\text{pos}},
# \qquad x_{\text{cls}} \in \mathbb{R}^{D},\; E_{\text{pos}} \in \mathbb{R}^{(N+1) \times D}.
# $$
#
# **The class token** $x_{\text{cls}}$ is a learned vector, the same for every image, put in front
# of the patches (BERT's `[CLS]` idea). It belongs to no patch; through attention it gathers
# information from all patches, and the classifier reads its final vector.
#
# **The position embedding** $E_{\text{pos}}$ has one $D$-vector per position, added to the tokens.
# Attention by itself does not know where a token came from: permute the input tokens and the
# output is permuted the same way, no more (checked below), so without $E_{\text{pos}}$ the model
# sees a *bag of patches*. The paper learns a plain table with no notion of rows and columns and
# reports that 2-D-aware variants did not help (its Appendix D.4). A fixed alternative needs no
# learning: the 2-D sin-cos table of {cite:t}`beyer2022plainvit` gives near patches similar vectors by
# construction; `vitlib` offers it as `ViTConfig(pos_embed="sincos")`, built by
# `vitlib.model.sincos_pos_embed` ({ref}`ex-02-3`). [Chapter 6](06_interpretation.ipynb) measures
# whether a learned table discovers the 2-D grid on its own: it compares a fine-grid model's
# learned table with the sin-cos table by the Spearman correlation between the similarity of two
# positions and their distance on the grid.
#
# **How big should a learned $E_{\text{pos}}$ start?** timm and torchvision use standard deviation
# 0.02, a whisper next to patch-norm tokens with entries of size about 1 (length $\sqrt{D}$, printed
# above): position starts out nearly invisible. `ViTConfig.default()` sets `pos_init_std=1.0`, the
# tokens' scale (`benchmarks/RESULTS.md` records training runs with both starts).
#
# The three steps with shape checks, on the parts of a randomly initialised `vitlib` ViT; a forward
# pre-hook catches what `vit.blocks[0]` receives in a normal forward pass (no dropout in `eval()`).

# %%
torch.manual_seed(0)
vit = ViT(cfg).eval()
B, N = 4, cfg.num_patches
x = test32.get_batch(torch.arange(B))["image"]                  # (B, 3, 32, 32)
with torch.no_grad():
    patch_tokens = vit.patch_embed(x)                           # (B, N, D)
    cls = vit.cls_token.expand(B, -1, -1)                       # (B, 1, D), a view: no copy
    tokens = torch.cat([cls, patch_tokens], dim=1)              # (B, N+1, D), CLS first
    z0 = tokens + vit.pos_embed                                 # (1, N+1, D) broadcasts over B
assert patch_tokens.shape == (B, N, D) and cls.shape == (B, 1, D) and cls.stride(0) == 0  # one shared CLS
assert tokens.shape == z0.shape == (B, N + 1, D) and vit.pos_embed.shape == (1, N + 1, D)
caught = {}
hook = vit.blocks[0].register_forward_pre_hook(lambda module, args: caught.update(z0=args[0]))
with torch.no_grad():
    logits = vit(x)
hook.remove()
torch.testing.assert_close(caught["z0"], z0)
print(f"patch tokens {tuple(patch_tokens.shape)} -> + CLS {tuple(tokens.shape)} -> + E_pos {tuple(z0.shape)}")
print("✓ our z0 is exactly the input of vitlib's first transformer block")

# %% [markdown]
# Now the claim about order. Shuffle the patch tokens (CLS stays first) and run one block. Without
# position embeddings the output is the original shuffled the same way, and the CLS output (what
# the classifier reads) does not change. With them, each patch meets a different position vector
# and the output is no longer a shuffled copy. ({ref}`ex-02-1` draws one.)

# %%
torch.manual_seed(1)
perm = torch.cat([torch.tensor([0]), 1 + torch.randperm(N)])   # CLS stays at 0
block = vit.blocks[0]
with torch.no_grad():
    out, _ = block(tokens)
    out_shuffled, _ = block(tokens[:, perm])
    torch.testing.assert_close(out_shuffled, out[:, perm], rtol=1e-5, atol=1e-5)  # equivariant
    torch.testing.assert_close(out_shuffled[:, 0], out[:, 0], rtol=1e-5, atol=1e-5)  # CLS: same
    with_pos, _ = block(tokens + vit.pos_embed)
    with_pos_shuffled, _ = block(tokens[:, perm] + vit.pos_embed)  # positions no longer match
gap = (with_pos_shuffled - with_pos[:, perm]).abs().max().item()
assert gap > 1e-3, gap
print(f"with E_pos, output differs from a shuffled copy by up to {gap:.3f}")
print("✓ without E_pos a block is blind to patch order; with E_pos it is not")

# %% [markdown]
# ## How many tokens? Patch size against cost
#
# Halving $P$ quadruples $N = HW/P^2$. Every layer computes one $(N+1) \times (N+1)$ attention
# matrix per head, so that part of the cost grows as $N^2 \propto 1/P^4$, while the projections and
# the MLP grow only as $N \propto 1/P^2$. `vitlib.model.flops_breakdown` counts the forward FLOPs
# of each part (a multiply-add counts as two FLOPs). The table lists, for both image sizes, the
# tokens, $K$, the entries of one attention matrix, the FLOPs per image, and the share of them spent
# on the attention matrix itself ($QK^\top$ and the weighted sum of values).

# %%
def attention_share(cfg: ViTConfig) -> float:
    f = flops_breakdown(cfg)                                  # forward FLOPs per image, by part
    return (f["attn_scores"] + f["attn_values"]) / sum(f.values())


print(f"{'model':>21} {'P':>3} {'N+1':>6} {'K':>6} {'(N+1)²':>11} {'GFLOPs':>8} {'attention share':>16}")
for name, base, sizes in [("book default (32 px)", ViTConfig.default(), (1, 2, 4, 8, 16)),
                          ("original (224 px)", ViTConfig.original(), (4, 8, 14, 16, 28, 32))]:
    for p in sizes:
        c = replace(base, patch_size=p)
        n1 = c.num_patches + 1
        print(f"{name:>21} {p:>3} {n1:>6,} {p * p * 3:>6,} {n1 ** 2:>11,} "
              f"{sum(flops_breakdown(c).values()) / 1e9:>8.3f} {attention_share(c):>16.1%}")
assert replace(ViTConfig.original(), patch_size=16).num_patches == 196     # the paper's ViT
assert attention_share(replace(ViTConfig.default(), patch_size=2)) > attention_share(ViTConfig.default())

# %% [markdown]
# ## Summary
#
# - **Patchify**: reshape → permute → reshape turns an image into $N = HW/P^2$ patches of
#   $K = P^2 C$ numbers; without the permute the shape is right and the tokens are wrong.
# - **Patch embedding**: $z_i = W x_p^i + b$ is a convolution with kernel size = stride = $P$; the
#   patch norm (LN → Linear → LN) drops each patch's brightness and contrast.
# - **CLS token + position embedding**: $z_0 \in \mathbb{R}^{B \times (N+1) \times D}$. Without
#   position embeddings a transformer block is blind to the order of patches.
# - Halving $P$ quadruples $N$ and the attention matrix grows sixteenfold; [chapter 3](03_attention.ipynb)
#   builds attention.
#
# ## Exercises
#
# ```{exercise} A bag of patches
# :label: ex-02-1
#
# Write `unpatchify(seq, P, H, W)`, the inverse of `my_patchify`, and check the round trip on the
# 32 px image. Then shuffle its 16 patches and put them back into an image: without position
# embeddings, a transformer cannot tell the two pictures apart. *Hint:* undo the three steps in
# reverse order; the inverse of `permute(0, 2, 4, 3, 5, 1)` is `permute(0, 5, 1, 3, 2, 4)`.
# ```
#
# ```{solution-start} ex-02-1
# :class: dropdown
# ```

# %%
def unpatchify(seq: torch.Tensor, P: int, H: int, W: int) -> torch.Tensor:
    """(B, N, K) -> (B, C, H, W): my_patchify backwards (merge <- reorder <- split)."""
    B, N, K = seq.shape
    x = seq.reshape(B, H // P, W // P, P, P, K // (P * P))    # (B, gh, gw, P, P, C)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(B, -1, H, W)   # (B, C, gh, P, gw, P) -> (B, C, H, W)


torch.testing.assert_close(unpatchify(my_patchify(x32, P), P, 32, 32), x32)   # round trip
torch.manual_seed(2)
shuffled = unpatchify(my_patchify(x32, P)[:, torch.randperm(16)], P, 32, 32)
fig, axes = plt.subplots(1, 2, figsize=(6, 3.2), layout="constrained")
for ax, img, name in [(axes[0], x32[0], "original"), (axes[1], shuffled[0], "patches shuffled")]:
    draw_grid(ax, img, P, numbers=False)
    ax.set_title(name)
fig.suptitle("Without position embeddings, a transformer sees these as the same input")
plt.show()

# %% [markdown]
# The shuffled picture is the digit cut apart; only $E_{\text{pos}}$ says where each piece belongs.
#
# ```{solution-end}
# ```
#
# ```{exercise} Where does the brightness go?
# :label: ex-02-2
#
# Feed `pe_norm` a batch of images, the same images plus 0.5, and the images times 2. Which
# tokens change, and why? *Hint:* $\mathrm{LN}(u + a) = \mathrm{LN}(u)$ and
# $\mathrm{LN}(s u) = \mathrm{LN}(u)$ for scalars $a$ and $s > 0$ (up to $\epsilon$).
# ```
#
# ```{solution-start} ex-02-2
# :class: dropdown
# ```

# %%
with torch.no_grad():
    base, brighter, stronger = pe_norm(xb), pe_norm(xb + 0.5), pe_norm(2 * xb)
    plain_gap = (pe_plain(xb + 0.5) - pe_plain(xb)).abs().max().item()
print(f"largest change: +0.5 {(brighter - base).abs().max():.1e}, ×2 {(stronger - base).abs().max():.1e}; "
      f"without patch norm, +0.5 moves a token entry by up to {plain_gap:.2f}")
torch.testing.assert_close(brighter, base, rtol=0, atol=1e-4)
torch.testing.assert_close(stronger, base, rtol=0, atol=1e-4)

# %% [markdown]
# None, beyond rounding: the first LayerNorm subtracts each patch's mean and divides by its
# spread, so a shift or a positive scale of the whole patch is gone before the projection sees it.
# Without the patch norm, the shift alone moves the tokens by the amount printed.
#
# ```{solution-end}
# ```
#
# ```{exercise} Position tables that know (or do not know) the grid
# :label: ex-02-3
#
# Build the original Transformer's 1-D sinusoidal table for the $N$ positions,
# $E[t, 2j] = \sin(t / 10000^{2j/D})$, $E[t, 2j+1] = \cos(t / 10000^{2j/D})$, and draw each
# patch's cosine similarity to patch 5 (row 1, column 1), for it and for vitlib's 2-D table
# `sincos_pos_embed(cfg.grid_size, D)`. Which knows that patch 1, just above 5, is near?
# ```
#
# ```{solution-start} ex-02-3
# :class: dropdown
# ```

# %%
t = torch.arange(N, dtype=torch.float64)[:, None]                        # (N, 1) positions
angle = t / 10000 ** (2 * torch.arange(D // 2, dtype=torch.float64) / D)   # (N, D/2)
tables = {"1-D sinusoidal": torch.stack([angle.sin(), angle.cos()], -1).reshape(N, D),  # sin, cos interleaved
          "2-D sin-cos": sincos_pos_embed(cfg.grid_size, D)[0, 1:].double()}          # CLS row dropped
sims = {k: F.normalize(e, dim=-1) @ F.normalize(e, dim=-1)[5] for k, e in tables.items()}  # (N,)
gh, gw = cfg.grid_size
rows, cols = torch.arange(N) // gw, torch.arange(N) % gw
order = ((rows - 1.0) ** 2 + (cols - 1.0) ** 2).argsort(stable=True)   # by grid distance to patch 5
assert (sims["2-D sin-cos"][order].diff() <= 1e-6).all()               # falls with distance
assert sims["1-D sinusoidal"][3] > sims["1-D sinusoidal"][1]           # far patch 3 beats patch 1
fig, axes = plt.subplots(1, 2, figsize=(8, 3.6), layout="constrained")
for ax, (name, s) in zip(axes, sims.items()):
    fig.colorbar(ax.imshow(s.reshape(gh, gw).numpy()), ax=ax, label="cosine similarity to patch 5")
    ax.set(title=name, xlabel="patch column", ylabel="patch row", xticks=range(gw), yticks=range(gh))
fig.suptitle("Similarity of each position to patch 5 (row 1, column 1)")
plt.show()

# %% [markdown]
# The 2-D table's similarity falls with grid distance in every direction. The 1-D table only
# knows reading order: patch 1, just above patch 5, looks less like it than patch 3, at the far
# end of the row above. A learned table starts with no structure; chapter 6 measures what it learns.
#
# ```{solution-end}
# ```
#
# ## Comprehension questions
#
# **1. What goes wrong if you skip the `permute` in patchify? And for $4 \times 8$ patches
# (`patch_size=(4, 8)`), what are $N$ and $K$ on a 32 px image?**
#
# ```{admonition} Answer
# :class: dropdown
# Without the permute the shape is still $(B, N, K)$, but each "patch" is a chunk of memory (part
# of a few rows of one channel), and no shape check catches it. With $4 \times 8$ patches the grid
# is $8 \times 4$: $N = 32$, $K = 4 \cdot 8 \cdot 3 = 96$ (split $H$ by 4 and $W$ by 8).
# ```
#
# **2. Why is a `Linear` on flattened patches the same as a `Conv2d` with kernel = stride = $P$?**
#
# ```{admonition} Answer
# :class: dropdown
# With stride = kernel the windows are exactly the patches, and each output channel is a dot
# product of its kernel with one window: a row of $W$ times $x_p^i$. With a smaller stride the
# windows overlap (kernel 8, stride 4, padding 2: 64 tokens on 32 px), and a pixel belongs to
# several patches, which `my_patchify` cannot produce but `F.unfold` can.
# ```
#
# **3. What does the patch norm remove from a patch, and what does it keep?**
#
# ```{admonition} Answer
# :class: dropdown
# It removes the patch's mean and contrast ({ref}`ex-02-2`) and keeps the pattern, including which
# channel is brighter; the second LayerNorm gives every token the same length.
# ```
#
# **4. How many tokens does a 224 px image give with $P = 16$, and with $P = 8$? How much larger
# is the attention matrix?**
#
# ```{admonition} Answer
# :class: dropdown
# $197$ and $785$ tokens (with CLS): the attention matrix grows from $197^2$ to $785^2$ entries,
# about $2^4 = 16$ times, per head and per layer (the table above prints both).
# ```
#
# **5. A model trained on 32 px images with $P = 8$ gets a 64 px image. What breaks?**
#
# ```{admonition} Answer
# :class: dropdown
# Patchify and the projection work at any size ($N = 64$ tokens instead of 16), but a learned
# position table has $16 + 1$ rows, so $z_0$ cannot be formed until the table is resized
# (`vitlib.model.interpolate_pos_embed`). A sin-cos table is simply computed for the new grid.
# ```

# %%
print(f"notebook ran in {time.perf_counter() - START:.1f} s (quick mode: {QUICK})")
