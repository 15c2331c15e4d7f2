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
# A transformer reads a *sequence of vectors*. An image is a *grid of pixels*. This chapter
# builds the bridge between the two, the first layer of the Vision Transformer
# {cite:p}`dosovitskiy2021vit`: cut the image into square patches, flatten each patch, project it
# to a vector of size $D$, put a learned class token in front and add a learned position
# embedding. The title of the ViT paper, *An Image is Worth 16x16 Words*, is this chapter in one
# line: every $16 \times 16$ patch becomes one "word" (a *token*).
#
# **Learning objectives.** After this chapter you can
#
# - cut a batch of images into a sequence of flattened patches with one `reshape`, one `permute`
#   and one more `reshape`, and say why the `permute` is needed;
# - explain why the patch projection is the same operation as a convolution whose kernel size and
#   stride both equal the patch size, and convert the weights of one into the other;
# - describe the original implementation's *patch norm* variant (LayerNorm, Linear, LayerNorm)
#   and what it does to the tokens;
# - add the class token and position embeddings, and check every shape on the way to the
#   $(B, N+1, D)$ tensor the transformer blocks consume;
# - predict how many tokens a patch size gives, and why that number decides what attention costs.
#
# **Time.** Reading: about 30 minutes. Running: about 15 seconds on a laptop CPU in quick mode
# (`VITLIB_QUICK=1`) and under a minute in full mode; this chapter trains nothing, so quick mode
# only shrinks the number of images used for statistics.

# %% [markdown]
# ## Setup
#
# Everything the chapter builds inline also exists, tested, in `vitlib.model`; each inline piece
# is checked against it.
#
# *Reading this in JupyterLab?* `jupyterlab-myst` renders this chapter's MyST markup there, maths
# included, but not its citations: it does not read the book's bibliography, so a reference such as
# {cite:p}`dosovitskiy2021vit` shows there as its key, marked "Citation Not Found". The built
# book resolves them.

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
from vitlib.model import PatchEmbedding, ViT, ViTConfig, conv_weight_to_linear, flops_breakdown, patchify
from vitlib.viz import to_numpy_image

QUICK = vitlib.paths.is_quick()
torch.manual_seed(0)
START = time.perf_counter()
N_STATS = 64 if QUICK else 1000  # images used for the token statistics below
print(f"quick mode: {QUICK}; torch {torch.__version__}")

# %% [markdown]
# ## From pixels to tokens
#
# Why not make every pixel a token? Because self-attention (chapter 3) compares every token with
# every other token, so its cost grows with the *square* of the sequence length. A $224 \times 224$
# image has $50{,}176$ pixels, and $50{,}176^2 \approx 2.5 \times 10^9$ comparisons per head and
# per layer is far too many. Cutting the image into $P \times P$ patches shortens the sequence by
# a factor $P^2$: with $P = 16$ a $224 \times 224$ image becomes $14 \times 14 = 196$ tokens.
#
# Formally, an image $x \in \mathbb{R}^{C \times H \times W}$ becomes a sequence of
#
# $$
# N = \frac{H}{P} \cdot \frac{W}{P}
# $$
#
# flattened patches $x_p^1, \dots, x_p^N$, each a vector of $P^2 C$ numbers,
# $x_p^i \in \mathbb{R}^{P^2 C}$, read in row-major order (left to right, then top to bottom, like
# text).
#
# Our images come from [chapter 1](01_dataset.ipynb): an MNIST digit painted one colour on a
# texture. We take one test image at the book's size, $32 \times 32$, and the same sample at the
# original project's $224 \times 224$ (test samples are deterministic, so index `IDX` has the same
# digit, colour and texture class at both sizes).

# %%
IDX = 1                                    # good contrast at both sizes (a '2' with full MNIST)
test32 = ColoredMNIST("test", image_size=32)
test224 = ColoredMNIST("test", image_size=224, n_texture_instances=2)  # 2 per class: quick to make
s32, s224 = test32[IDX], test224[IDX]
image32, image224 = s32["image"], s224["image"]  # (3, H, W) in [-1, 1]
texture = test32.texture_names[int(s32["texture_cls"])]
print(f"digit {int(s32['number_cls'])} on '{texture}', colour {s32['color'].numpy().round(2)}")
print("image32:", tuple(image32.shape), " image224:", tuple(image224.shape))
assert image32.shape == (3, 32, 32) and image224.shape == (3, 224, 224)
print("✓ one test sample at 32 px and at 224 px")

# %% [markdown]
# ## Patchify with reshape and permute
#
# A tensor is a flat block of memory plus a shape. To cut a $(B, C, H, W)$ batch into patches we
#
# 1. **split** each spatial axis into (which patch, where inside the patch):
#    $H = g_h \cdot P$ and $W = g_w \cdot P$, giving shape $(B, C, g_h, P, g_w, P)$;
# 2. **reorder** the axes so that the two grid axes come first and everything that belongs to one
#    patch comes last: $(B, g_h, g_w, P, P, C)$;
# 3. **merge** the grid axes into one sequence axis and the patch axes into one feature axis:
#    $(B, N, P^2 C)$.
#
# Steps 1 and 2 move no data: `reshape` of a contiguous tensor and `permute` only change the
# shape and strides. Step 3 has to copy, because the values of one patch are not next to each
# other in memory. The order inside a patch, (row, column, channel), is the original project's
# `einops` pattern `b c (nh ph) (nw pw) -> b (nh nw) (ph pw c)`.

# %%
def my_patchify(x: torch.Tensor, P: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, P*P*C), patches in row-major order."""
    B, C, H, W = x.shape
    assert H % P == 0 and W % P == 0, f"patch size {P} must divide the image size {H}x{W}"
    gh, gw = H // P, W // P
    x = x.reshape(B, C, gh, P, gw, P)        # 1. split:   (B, C, gh, P, gw, P)
    x = x.permute(0, 2, 4, 3, 5, 1)          # 2. reorder: (B, gh, gw, P, P, C)
    return x.reshape(B, gh * gw, P * P * C)  # 3. merge:   (B, N, P*P*C), one copy


# %% [markdown]
# A d2l-style self-check: the shape, a patch compared with the pixels it should hold, and the
# result compared with `vitlib.model.patchify` for several patch sizes at both image sizes.

# %%
x32 = image32[None]                      # a batch of one: (1, 3, 32, 32)
P = 8
patches = my_patchify(x32, P)
assert patches.shape == (1, (32 // P) ** 2, P * P * 3), patches.shape
# patch i = 5 sits in grid row 1, column 1: pixels [8:16, 8:16], flattened as (row, column, channel)
i, gw = 5, 32 // P
r, c = divmod(i, gw)
by_hand = x32[0, :, r * P:(r + 1) * P, c * P:(c + 1) * P].permute(1, 2, 0).reshape(-1)
torch.testing.assert_close(patches[0, i], by_hand)
for img in (x32, image224[None]):
    for p in (1, 2, 4, 8, 16, 32):
        if img.shape[-1] % p == 0:
            torch.testing.assert_close(my_patchify(img, p), patchify(img, p))
print(f"patches: {tuple(patches.shape)} = (B, N, P*P*C) for P = {P}")
print("✓ my_patchify matches the pixels and vitlib.model.patchify")

# %% [markdown]
# The figure shows the grid and the sequence the transformer will read. The sequence is drawn
# from the output of `my_patchify`, each row of $P^2 C$ numbers reshaped back to
# $P \times P \times C$, so it is also a visual check of the order: token 0 is the top-left patch,
# and at 224 px token 14 starts the second row of the grid.

# %%
def patch_images(x: torch.Tensor, P: int) -> np.ndarray:
    """One image (3, H, W) -> (N, P, P, 3) array of its patches in [0, 1], via my_patchify."""
    seq = my_patchify(x[None], P)[0]                       # (N, P*P*3)
    return ((seq.reshape(-1, P, P, 3) + 1) / 2).clamp(0, 1).numpy()


def strip(tiles: np.ndarray, gap: int = 1) -> np.ndarray:
    """Lay (n, P, P, 3) tiles side by side on a white background, `gap` pixels apart."""
    n, P = tiles.shape[:2]
    canvas = np.ones((P, n * (P + gap) - gap, 3))
    for k, tile in enumerate(tiles):
        canvas[:, k * (P + gap):k * (P + gap) + P] = tile
    return canvas


def draw_grid(ax, x: torch.Tensor, P: int, numbers: bool = True) -> None:
    """The image with its patch grid (and token numbers) drawn on top."""
    H, W = x.shape[-2:]
    ax.imshow(to_numpy_image(x), extent=(0, W, H, 0))
    for t in range(0, W + 1, P):
        ax.axvline(t, color="white", lw=0.8)
    for t in range(0, H + 1, P):
        ax.axhline(t, color="white", lw=0.8)
    if numbers:
        for k in range((H // P) * (W // P)):
            r, c = divmod(k, W // P)
            ax.text(c * P + P / 2, r * P + P / 2, str(k), ha="center", va="center", fontsize=6,
                    color="white", bbox=dict(facecolor="black", alpha=0.4, pad=0.5, lw=0))
    ax.set_xlabel("x (pixels)")
    ax.set_ylabel("y (pixels)")


fig, axes = plt.subplots(2, 2, figsize=(12, 5.6), gridspec_kw=dict(width_ratios=[1, 3.2]))
for row, (x, P, show) in enumerate([(image32, 8, 16), (image224, 16, 28)]):
    H = x.shape[-1]
    N = (H // P) ** 2
    draw_grid(axes[row, 0], x, P, numbers=N <= 16)
    axes[row, 0].set_title(f"{H}×{H} px, P = {P}: {H // P}×{H // P} grid")
    tiles = patch_images(x, P)[:show]
    axes[row, 1].imshow(strip(tiles, gap=max(1, P // 8)))
    step = P + max(1, P // 8)
    ticks = range(0, show, 1 if show <= 16 else 2)
    axes[row, 1].set_xticks([k * step + P / 2 for k in ticks], [str(k) for k in ticks], fontsize=7)
    axes[row, 1].set_yticks([])
    axes[row, 1].set_xlabel("token index i in the sequence")
    axes[row, 1].set_title(f"the sequence: {'all' if show == N else f'first {show} of'} {N} tokens, "
                           f"each a vector of P·P·C = {P * P * 3} numbers")
fig.suptitle("Patchify: an image becomes a sequence of patches (read left to right, top to bottom)")
fig.tight_layout()
plt.show()

# %% [markdown]
# Why is step 2 necessary? A plain `x.reshape(B, N, P*P*C)` also produces the right *shape*, but
# it chops the flat memory (all of the red channel, then green, then blue, row after row) into
# consecutive chunks. The first "patch" is then the top rows of the red channel, not the top-left
# square. Shapes cannot catch this bug; a picture, or a comparison with the pixels, does.

# %%
B, C, H, W = x32.shape
P = 8
naive = x32.reshape(B, (H // P) * (W // P), P * P * C)  # right shape, wrong content
assert naive.shape == my_patchify(x32, P).shape
assert not torch.allclose(naive, my_patchify(x32, P))

fig, axes = plt.subplots(2, 1, figsize=(10, 3.4))
for ax, seq, name in [(axes[0], my_patchify(x32, P), "reshape → permute → reshape (correct)"),
                      (axes[1], naive, "reshape only (wrong: patches are chunks of memory)")]:
    ax.imshow(strip(((seq[0].reshape(-1, P, P, C) + 1) / 2).clamp(0, 1).numpy()))
    ax.set_title(name, fontsize=10)
    ax.set_yticks([])
    ax.set_xticks([k * (P + 1) + P / 2 for k in range(16)], [str(k) for k in range(16)], fontsize=7)
    ax.set_xlabel("token index i")
fig.suptitle(f"The 16 tokens of the 32 px image (P = {P}), with and without the permute")
fig.tight_layout()
plt.show()
print("✓ same shape, different tokens: only the permuted version keeps each patch together")

# %% [markdown]
# ## The linear projection is a strided convolution
#
# A flattened patch has $P^2 C$ numbers (192 for $P = 8$, 768 for $P = 16$). The transformer wants
# vectors of its own width $D$, so every patch goes through the same learned linear map
#
# $$
# z_i = W x_p^i + b, \qquad x_p^i \in \mathbb{R}^{P^2 C},\; W \in \mathbb{R}^{D \times P^2 C},\;
# b \in \mathbb{R}^{D}.
# $$
#
# (The paper writes this as $x_p^i E$ with $E = W^\top$.) All $N$ patches share $W$ and $b$, so
# the layer has $D (P^2 C + 1)$ parameters whatever the image size.
#
# Now look at a convolution with $D$ output channels, kernel size $P$ and stride $P$. Its output
# at grid position $(r, c)$, channel $d$, is
#
# $$
# y_{d, r, c} = b_d + \sum_{k=1}^{C} \sum_{u=0}^{P-1} \sum_{v=0}^{P-1}
# K_{d, k, u, v}\, x_{k,\, rP + u,\, cP + v}.
# $$
#
# Because the stride equals the kernel size, the windows tile the image exactly: no overlap, no
# gaps, one window per patch. And the triple sum is a dot product between the kernel $K_d$ and the
# pixels of patch $(r, c)$: exactly row $d$ of $W$ times $x_p^i$, provided the kernel's numbers are
# flattened in the same (row, column, channel) order as the patch. The convolution stores its
# kernel as $(D, C, P, P)$, so we move the channel axis last and flatten:
# `W = K.permute(0, 2, 3, 1).reshape(D, -1)`. This is why torchvision's ViT and timm can
# implement the patch embedding as a single `Conv2d` (no explicit patchify copy), and why
# `vitlib.model.ViT.from_torchvision` can load their weights into our `Linear`.

# %%
cfg = ViTConfig.default()                     # the book's model: 32 px, P = 8, D = 128
P, D, C = cfg.patch_size, cfg.emb_dim, cfg.in_channels
conv = nn.Conv2d(C, D, kernel_size=P, stride=P)
linear = nn.Linear(P * P * C, D)
with torch.no_grad():
    linear.weight.copy_(conv.weight.permute(0, 2, 3, 1).reshape(D, -1))  # (D, C, P, P) -> (D, P*P*C)
    linear.bias.copy_(conv.bias)
torch.testing.assert_close(linear.weight, conv_weight_to_linear(conv.weight))
print("conv weight", tuple(conv.weight.shape), "-> linear weight", tuple(linear.weight.shape))

# %% [markdown]
# Run both on a batch of real images. The convolution returns a $(B, D, g_h, g_w)$ feature map;
# flattening the grid and moving the channels last gives the $(B, N, D)$ token layout.

# %%
xb = test32.get_batch(torch.arange(8))["image"]          # (8, 3, 32, 32)
with torch.no_grad():
    y = conv(xb)                                          # (B, D, gh, gw)
    z_conv = y.flatten(2).transpose(1, 2)                 # (B, N, D)
    z_lin = linear(my_patchify(xb, P))                    # (B, N, D)
assert y.shape == (8, D, *cfg.grid_size), y.shape
assert z_conv.shape == z_lin.shape == (8, cfg.num_patches, D)
torch.testing.assert_close(z_lin, z_conv, rtol=1e-5, atol=1e-5)
n_params = sum(p.numel() for p in linear.parameters())
assert n_params == D * (P * P * C + 1)
print(f"tokens {tuple(z_lin.shape)}; {n_params:,} parameters = D·(P²C + 1)")
print("✓ Linear(patchify(x)) == Conv2d(kernel=stride=P)(x), token for token")

# %% [markdown]
# ## The original's patch norm: LayerNorm → Linear → LayerNorm
#
# The paper's patch embedding is the plain linear map above. The original project this book
# follows wraps it in two layer normalisations, one on the raw patch and one on the token,
#
# $$
# z_i = \mathrm{LN}_D\!\left(W\, \mathrm{LN}_{P^2C}(x_p^i) + b\right), \qquad
# \mathrm{LN}(u) = \gamma \odot \frac{u - \mu(u)}{\sqrt{\sigma^2(u) + \epsilon}} + \beta,
# $$
#
# where $\mu(u)$ and $\sigma^2(u)$ are the mean and variance of the entries of the one vector $u$.
# The first LayerNorm removes each patch's overall brightness and contrast and keeps its pattern
# (including which colour dominates); the second gives every token the same scale: at
# initialisation ($\gamma = 1, \beta = 0$) every token has mean 0 and length $\sqrt{D}$.
# The same stem was later studied as
# [Dual PatchNorm](https://arxiv.org/abs/2302.01327), which found that it improves the accuracy
# of well-tuned ViTs. `ViTConfig(patch_norm=...)` switches it; the book's default
# and the original both use it.

# %%
pe_plain = PatchEmbedding(replace(cfg, patch_norm=False))
pe_norm = PatchEmbedding(cfg)                   # cfg.patch_norm is True
pe_norm.proj.load_state_dict(pe_plain.proj.state_dict())  # same W and b in both
print(pe_norm)
with torch.no_grad():
    t_plain, t_norm = pe_plain(xb), pe_norm(xb)
assert t_plain.shape == t_norm.shape == (8, cfg.num_patches, D)
extra = sum(p.numel() for p in pe_norm.parameters()) - sum(p.numel() for p in pe_plain.parameters())
K = P * P * C
assert extra == 2 * K + 2 * D                  # a (gamma, beta) pair for each LayerNorm
print(f"both give {tuple(t_norm.shape)}; patch norm adds 2·{K} + 2·{D} = {extra} parameters")

# %% [markdown]
# The same computation written out with `F.layer_norm`, checked against `vitlib`:

# %%
W_lin, b_lin, eps = pe_plain.proj.weight, pe_plain.proj.bias, cfg.norm_eps
with torch.no_grad():
    u = F.layer_norm(my_patchify(xb, P), (K,), eps=eps)         # LN over each patch's K values
    mine = F.layer_norm(u @ W_lin.T + b_lin, (D,), eps=eps)     # Linear, then LN over D
    torch.testing.assert_close(mine, t_norm)
    torch.testing.assert_close(my_patchify(xb, P) @ W_lin.T + b_lin, t_plain)
print(f"patch-norm tokens: largest |mean| {t_norm.mean(-1).abs().max():.1e}, "
      f"mean length / sqrt(D) = {(t_norm.norm(dim=-1) / D ** 0.5).mean():.4f}")
print("✓ LN -> Linear -> LN matches vitlib.model.PatchEmbedding(patch_norm=True)")

# %% [markdown]
# What the normalisation does to the tokens is easiest to see in their lengths $\lVert z_i \rVert$.
# Without it, a token's length depends on what its patch shows (a bright patch, the digit's edge,
# a dark background), so the later position embedding and attention see tokens on very different
# scales. With it, every token has length $\sqrt{D}$: the content lives only in the *direction*.

# %%
N_STATS = min(N_STATS, len(test32))       # the offline MNIST subset has 1,000 test images
stats = test32.get_batch(torch.arange(N_STATS))["image"]
with torch.no_grad():
    len_plain = pe_plain(stats).norm(dim=-1)     # (N_STATS, N)
    len_norm = pe_norm(stats).norm(dim=-1)

gh, gw = cfg.grid_size
fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
axes[0].imshow(to_numpy_image(image32))
axes[0].set_title(f"input (digit {int(s32['number_cls'])})")
axes[0].set_xlabel("x (pixels)")
axes[0].set_ylabel("y (pixels)")
im = axes[1].imshow(len_plain[IDX].reshape(gh, gw).numpy(), cmap="viridis")
fig.colorbar(im, ax=axes[1], fraction=0.046, label="‖z_i‖")
axes[1].set_title("token length per patch, plain Linear")
axes[1].set_xlabel("patch column")
axes[1].set_ylabel("patch row")
bins = np.linspace(0, float(max(len_plain.max(), len_norm.max())) * 1.05, 60)
axes[2].hist(len_plain.flatten().numpy(), bins=bins, alpha=0.7, label="plain Linear")
axes[2].hist(len_norm.flatten().numpy(), bins=bins, alpha=0.7, label="LN → Linear → LN")
axes[2].axvline(D ** 0.5, color="k", ls="--", lw=1, label=f"√D = {D ** 0.5:.1f}")
axes[2].set_yscale("log")
axes[2].set_title(f"token lengths over {N_STATS} images × {cfg.num_patches} patches")
axes[2].set_xlabel("‖z_i‖")
axes[2].set_ylabel("count (log scale)")
axes[2].legend(fontsize=8)
fig.suptitle("Patch norm gives every token the same length (random, untrained weights)")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The class token and the position embeddings
#
# Two more pieces turn the $N$ patch tokens into the transformer's input:
#
# $$
# z_0 = [\,x_{\text{cls}};\; x_p^1 E;\; x_p^2 E;\; \dots;\; x_p^N E\,] + E_{\text{pos}},
# \qquad E \in \mathbb{R}^{(P^2 C) \times D},\;
# E_{\text{pos}} \in \mathbb{R}^{(N+1) \times D}.
# $$
#
# **The class token** $x_{\text{cls}} \in \mathbb{R}^{D}$ is a learned vector, the same for every
# image, put in front of the patches (the idea is BERT's `[CLS]`). It belongs to no patch, so it
# has no content of its own; through the attention layers it gathers information from all patches,
# and after the last layer its vector is the one the classifier reads. (`ViTConfig(pool="mean")`
# averages the patch tokens instead; the paper found both work when tuned.)
#
# **The position embedding** $E_{\text{pos}}$ is a learned table with one $D$-vector per position,
# added (not concatenated) to the tokens. It is needed because attention by itself does not know
# where a token came from: permute the input tokens and the output is permuted the same way, no
# more (we check this below). Without $E_{\text{pos}}$ the model would see an image as a *bag of
# patches*. The paper uses plain learned 1-D embeddings; 2-D-aware variants did not help
# (its Appendix D.4), because the learned table discovers the 2-D grid on its own. Whether ours
# does is a question for [chapter 6](06_interpretation.ipynb).
#
# **How big should $E_{\text{pos}}$ start?** timm and torchvision draw it with standard deviation
# 0.02. But after the patch norm every patch token has entries of size about 1 (length
# $\sqrt{D}$), so a 0.02 table is a whisper next to the content, and on our data the model then
# learned much more slowly at first: about 15 % validation accuracy after one epoch
# (`benchmarks/RESULTS.md`). `ViTConfig.default()` sets `pos_init_std=1.0`, the scale of the
# tokens, and reached about 65 % after one epoch. (`pos_init_std=0` gives the original project's all-zero
# start.)
#
# Here are the three steps with a shape check after each, using the parts of a (randomly
# initialised) `vitlib` ViT: `patch_embed`, `cls_token` and `pos_embed`.

# %%
torch.manual_seed(0)
vit = ViT(cfg).eval()
B, N, D = 4, cfg.num_patches, cfg.emb_dim
x = test32.get_batch(torch.arange(B))["image"]                  # (B, 3, 32, 32)
with torch.no_grad():
    patch_tokens = vit.patch_embed(x)                           # (B, N, D)
    cls = vit.cls_token.expand(B, -1, -1)                       # (B, 1, D), a view: no copy
    tokens = torch.cat([cls, patch_tokens], dim=1)              # (B, N+1, D), CLS first
    z0 = tokens + vit.pos_embed                                 # (1, N+1, D) broadcasts over B
assert patch_tokens.shape == (B, N, D)
assert cls.shape == (B, 1, D) and cls.stride(0) == 0            # every image shares one vector
assert tokens.shape == z0.shape == (B, N + 1, D)
assert vit.pos_embed.shape == (1, N + 1, D)
print(f"patch tokens {tuple(patch_tokens.shape)} -> with CLS {tuple(tokens.shape)} "
      f"-> + E_pos {tuple(z0.shape)}")
print("✓ shapes: (B, N, D) -> (B, N+1, D)")

# %% [markdown]
# Is this what `vitlib.model.ViT` feeds its first block? A forward pre-hook catches the input of
# `vit.blocks[0]` during a normal forward pass (dropout is off in `eval()` mode).

# %%
caught = {}
hook = vit.blocks[0].register_forward_pre_hook(lambda module, args: caught.update(z0=args[0]))
with torch.no_grad():
    logits = vit(x)
hook.remove()
torch.testing.assert_close(caught["z0"], z0)
assert logits.shape == (B, cfg.num_classes)
print("✓ our z0 is exactly the input of vitlib's first transformer block")

# %% [markdown]
# Now the claim about order. Shuffle the patch tokens (keep the CLS token first) and run one
# transformer block. Without position embeddings the block's output is the original output,
# shuffled the same way: the block cannot tell the two inputs apart except by the order in which
# it returns the results, and the CLS token's output (what the classifier reads) does not change at
# all. With position embeddings the table stays in place while the patches move, so each patch
# is paired with a different position vector, and the output is no longer a shuffled copy. (The
# size of the difference depends on the scale of the table: with timm's std 0.02 it would be
# tiny, with our std 1.0 it is already large before any training.)

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
# To see what "a bag of patches" means, put shuffled patches back into an image. For the
# transformer without position embeddings, these two pictures are the same input.

# %%
def unpatchify(seq: torch.Tensor, P: int, H: int, W: int) -> torch.Tensor:
    """(B, N, P*P*C) -> (B, C, H, W): my_patchify backwards (merge <- reorder <- split)."""
    B, N, K = seq.shape
    C, gh, gw = K // (P * P), H // P, W // P
    x = seq.reshape(B, gh, gw, P, P, C).permute(0, 5, 1, 3, 2, 4)  # (B, C, gh, P, gw, P)
    return x.reshape(B, C, H, W)


P = 8
torch.testing.assert_close(unpatchify(my_patchify(x32, P), P, 32, 32), x32)   # round trip
torch.manual_seed(2)
shuffled = unpatchify(my_patchify(x32, P)[:, torch.randperm(16)], P, 32, 32)
fig, axes = plt.subplots(1, 2, figsize=(6, 3.2))
for ax, img, name in [(axes[0], x32[0], "original"), (axes[1], shuffled[0], "patches shuffled")]:
    draw_grid(ax, img, P, numbers=False)
    ax.set_title(name)
fig.suptitle("Without position embeddings, a transformer sees these as the same input")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## How many tokens? Patch size against sequence length
#
# The patch size is the ViT's most important knob. Halving $P$ quadruples $N = HW/P^2$. The
# table lists every patch size that divides the two image sizes we use: $N$ patches plus one CLS
# token, the numbers in one flattened patch, and the number of entries of one attention matrix,
# $(N+1)^2$, which chapter 3 computes for every head of every layer.

# %%
rows = []
for size in (32, 224):
    for p in [p for p in range(1, size + 1) if size % p == 0]:
        c = ViTConfig(image_size=size, patch_size=p)
        rows.append(dict(size=size, P=p, grid=c.grid_size, N=c.num_patches, K=p * p * 3))
assert next(r for r in rows if r["size"] == 224 and r["P"] == 16)["N"] == 196   # the paper's ViT
assert next(r for r in rows if r["size"] == 32 and r["P"] == 8)["N"] == 16      # this book's

print(f"{'image':>6} {'P':>4} {'grid':>9} {'tokens N+1':>11} {'P²C':>7} {'(N+1)²':>15}")
for r in rows:
    gh, gw = r["grid"]
    print(f"{r['size']:>6} {r['P']:>4} {f'{gh}×{gw}':>9} {r['N'] + 1:>11,} {r['K']:>7,} "
          f"{(r['N'] + 1) ** 2:>15,}")

# %%
fig, ax = plt.subplots(figsize=(8, 4.6))
for size, marker in ((32, "o"), (224, "s")):
    pts = [(r["P"], r["N"] + 1) for r in rows if r["size"] == size]
    ax.plot(*zip(*pts), marker=marker, label=f"{size}×{size} px image")
for (size, p, note) in [(32, 8, "this book\n32 px, P = 8"), (224, 16, "the paper / original\n224 px, P = 16"),
                        (224, 1, "pixels as tokens"), (32, 1, "pixels as tokens")]:
    n = (size // p) ** 2 + 1
    ax.annotate(f"{note}: {n:,} tokens", (p, n), xytext=(12, 8), textcoords="offset points",
                fontsize=8, arrowprops=dict(arrowstyle="->", lw=0.8))
ax.set_xscale("log")
ax.set_yscale("log")
ax.set_xticks([1, 2, 4, 7, 8, 14, 16, 28, 32, 56, 112, 224], ["1", "2", "4", "7", "8", "14", "16", "28",
                                                          "32", "56", "112", "224"], fontsize=8)
ax.minorticks_off()
ax.set_ylim(1, 5e5)
ax.set_xlabel("patch size P in pixels (log scale; every P that divides the image)")
ax.set_ylabel("sequence length N + 1 (log scale)")
ax.set_title("Tokens per image fall as 1/P²: halving P quadruples the sequence")
ax.grid(True, which="both", alpha=0.3)
ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# ### What it means for attention (a preview of chapter 3)
#
# Every layer computes one $(N+1) \times (N+1)$ attention matrix per head. Its cost grows as
# $N^2 \propto 1/P^4$, while everything else in the transformer (the projections and the MLP)
# grows only as $N \propto 1/P^2$. `vitlib.model.flops_breakdown` counts the forward FLOPs
# (two per multiply-add) of each part; the share spent on the attention matrix ($QK^\top$ and the weighted
# sum of values) climbs from a few per cent to almost everything as the patches shrink.

# %%
def attention_share(cfg: ViTConfig) -> float:
    f = flops_breakdown(cfg)
    return (f["attn_scores"] + f["attn_values"]) / sum(f.values())


print(f"{'model':>26} {'P':>3} {'tokens':>7} {'GFLOPs/image':>13} {'attention matrix share':>23}")
for name, base, sizes in [("book default (32 px)", ViTConfig.default(), (2, 4, 8, 16)),
                          ("original (224 px)", ViTConfig.original(), (4, 8, 16, 32))]:
    for p in sizes:
        c = replace(base, patch_size=p)
        print(f"{name:>26} {p:>3} {c.num_patches + 1:>7,} {sum(flops_breakdown(c).values()) / 1e9:>13.3f} "
              f"{attention_share(c):>22.1%}")
assert attention_share(replace(ViTConfig.default(), patch_size=2)) > attention_share(ViTConfig.default())

# %% [markdown]
# ### The same image, four patch sizes
#
# The same 224 px image cut four ways. Small patches see fine detail but make long sequences;
# large patches make short sequences, and each token has to describe a big piece of the digit.

# %%
fig, axes = plt.subplots(1, 4, figsize=(14, 3.9))
for ax, p in zip(axes, (8, 16, 32, 56)):
    draw_grid(ax, image224, p, numbers=False)
    n = (224 // p) ** 2
    ax.set_title(f"P = {p}: {224 // p}×{224 // p} = {n:,} patches\n"
                 f"{(n + 1) ** 2:,} attention entries per head", fontsize=9)
fig.suptitle("One 224 px image, four patch sizes")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Summary
#
# - An image $x \in \mathbb{R}^{C \times H \times W}$ becomes $N = HW/P^2$ flattened patches
#   $x_p^i \in \mathbb{R}^{P^2 C}$ with reshape → permute → reshape. The permute is what keeps the
#   pixels of one patch together; a bare reshape gives the right shape and the wrong tokens.
# - The patch projection $z_i = W x_p^i + b$ is a convolution with kernel size = stride = $P$,
#   because non-overlapping windows that tile the image are exactly the patches. Converting the
#   weights is one permute: $(D, C, P, P) \to (D, P, P, C) \to (D, P^2 C)$.
# - The original project's patch norm (LayerNorm → Linear → LayerNorm) keeps each patch's
#   pattern, drops its brightness and contrast, and gives every token length $\sqrt{D}$ at
#   initialisation.
# - A learned CLS token is put first and a learned position embedding is added:
#   $z_0 \in \mathbb{R}^{B \times (N+1) \times D}$. Without position embeddings a transformer
#   block is blind to the order of patches.
# - Halving the patch size quadruples the number of tokens and multiplies the attention matrix by
#   sixteen. [Chapter 3](03_attention.ipynb) builds attention and measures that cost.
#
# ## Exercises
#
# 1. **Rectangular patches.** `ViTConfig` accepts `patch_size=(ph, pw)`. Generalise `my_patchify`
#    to take `(ph, pw)` and check it against `vitlib.model.patchify(x, (4, 8))` on the 32 px
#    image. How many tokens do you get, and what is $K$?
#
#    **Hint:** split $H$ into $(H/p_h, p_h)$ and $W$ into $(W/p_w, p_w)$; the permute does not
#    change.
#
# 2. **Overlapping patches.** Some later ViTs cut patches with a stride smaller than the patch
#    size. Use `nn.Conv2d(3, D, kernel_size=8, stride=4, padding=2)` on a 32 px image: how many
#    tokens come out, and why can `my_patchify` no longer produce the same inputs? Reproduce the
#    convolution with `F.unfold` followed by a matrix multiplication, and `assert_close` the two.
#
#    **Hint:** `F.unfold(x, kernel_size=8, stride=4, padding=2)` returns
#    $(B, C \cdot 8 \cdot 8, L)$ with the values in (channel, row, column) order, so use
#    `conv.weight.reshape(D, -1)` here, not the permuted version.
#
# 3. **Where does the brightness go?** Feed `pe_norm` an image and the same image with 0.5 added
#    to every pixel. Which tokens change, and why? Then try multiplying the image by 2.
#
#    **Hint:** $\mathrm{LN}(u + a) = \mathrm{LN}(u)$ and $\mathrm{LN}(s u) = \mathrm{LN}(u)$ for
#    a scalar $a$ and $s > 0$ (up to $\epsilon$).
#
# 4. **Fixed position embeddings.** Replace `vit.pos_embed` with the 1-D sinusoidal table of
#    the original Transformer, $E_{\text{pos}}[t, 2j] = \sin(t / 10000^{2j/D})$ and
#    $E_{\text{pos}}[t, 2j+1] = \cos(t / 10000^{2j/D})$, and plot the cosine similarity of every
#    pair of positions as an $(N+1) \times (N+1)$ heatmap. Which positions look alike?
#
#    **Hint:** build the table with `torch.arange` and broadcasting; normalise the rows with
#    `F.normalize` and take `E @ E.T`.

# %%
print(f"notebook ran in {time.perf_counter() - START:.1f} s (quick mode: {QUICK})")
