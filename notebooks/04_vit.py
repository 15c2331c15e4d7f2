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
# # 04 · The full ViT
#
# [Chapter 2](02_patch_embedding.ipynb) turned an image into $N + 1$ tokens of width $D$, and
# [chapter 3](03_attention.ipynb) built the attention that lets them talk to each other. This
# chapter stacks them into the complete Vision Transformer of {cite:t}`dosovitskiy2021vit`. In the
# figure, chapter 2 built the boxes from **Image** to **CLS token + position embedding** and
# chapter 3 the **Multi-head attention**; this chapter builds everything else.
#
# ![The ViT architecture, with the book model's shapes](../book/assets/vit_architecture.svg)
#
# **Learning objectives.** After this chapter you can
#
# - write the ViT's equations and build a pre-norm transformer block from scratch;
# - explain what "pre-norm" means and what it does to the residual stream and its gradients;
# - follow a batch through every box of the figure, from $(B, C, H, W)$ to $(B, n_\text{cls})$;
# - count the parameters of each part by hand and say which part holds most of them.
#
# **Time.** Reading: about 35 minutes, plus the exercises. Running: about 10 seconds on a laptop
# CPU in quick mode (`VITLIB_QUICK=1`), a little longer in full mode (a pre-norm experiment twice
# as deep). Nothing is trained here: [chapter 5](05_training.ipynb) writes the training loop.

# %% [markdown]
# ## Setup
#
# *Reading this in JupyterLab?* `jupyterlab-myst` renders the MyST markup there, maths included,
# but not the citations: {cite:p}`dosovitskiy2021vit` shows as its key, marked "Citation Not
# Found". The built book resolves them.

# %%
import time
from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.testing import assert_close

import vitlib.paths
from vitlib.data import ColoredMNIST
from vitlib.model import Attention, Block, ViT, ViTConfig

QUICK = vitlib.paths.is_quick()
START = time.perf_counter()
print(f"quick mode: {QUICK}; torch {torch.__version__}")

# %% [markdown]
# Eight test images at the book's 32 px, the default configuration, and an untrained model built
# from it: we only look at shapes and counts, so random weights are all we need.

# %%
test32 = ColoredMNIST("test", image_size=32)
x = test32.get_batch(torch.arange(8))["image"]       # (B, C, H, W) = (8, 3, 32, 32), in [-1, 1]
cfg = ViTConfig.default()
torch.manual_seed(0)
vit = ViT(cfg).eval()
B, N, D = x.shape[0], cfg.num_patches, cfg.emb_dim    # N patches, so N + 1 tokens with the CLS
print(f"images {tuple(x.shape)}; P = {cfg.patch_size}, N = {N}, K = {cfg.patch_size ** 2 * 3}, D = {D}, "
      f"h = {cfg.n_heads}, d = {cfg.attn_head_dim}, L = {cfg.n_layers}, D_ff = {cfg.mlp_dim}")

# %% [markdown]
# ## The transformer block
#
# This section builds the **Transformer block × L** box of the figure: its two **LayerNorm**
# boxes, the **MLP** box and the two **+** boxes around chapter 3's **Multi-head attention**.
#
# ### The equations
#
# A block lets every token gather information from the others (attention), then processes each
# token on its own (an MLP). Each is wrapped the same way: LayerNorm, the layer, then add the
# result back to the input. With $z_0 \in \mathbb{R}^{(N+1) \times D}$ and $\ell = 1, \dots, L$:
#
# $$
# \begin{aligned}
# z'_\ell &= \mathrm{MSA}(\mathrm{LN}(z_{\ell-1})) + z_{\ell-1}, \\
# z_\ell &= \mathrm{MLP}(\mathrm{LN}(z'_\ell)) + z'_\ell, \\
# y &= \mathrm{LN}(z_L^0),
# \end{aligned}
# $$
#
# where $\mathrm{MSA}$ is chapter 3's multi-head self-attention with $h$ heads of size $d$,
# $\mathrm{MLP}(u) = \mathrm{GELU}(u W_1 + b_1) W_2 + b_2$ with $W_1 \in \mathbb{R}^{D \times
# D_\text{ff}}$ and $W_2 \in \mathbb{R}^{D_\text{ff} \times D}$, and $z_L^0$ is the class token
# (position 0) after the last block. The head is one linear layer on $y$.
#
# **LayerNorm** normalises each token on its own over its $D$ numbers, then scales and shifts
# with two learned vectors $\gamma, \beta \in \mathbb{R}^D$:
#
# $$
# \mathrm{LN}(u) = \gamma \odot \frac{u - \mu(u)}{\sqrt{\sigma^2(u) + \epsilon}} + \beta,
# \qquad \mu(u) = \frac{1}{D}\sum_{j=1}^D u_j, \quad \sigma^2(u) = \frac{1}{D}\sum_{j=1}^D (u_j - \mu(u))^2 .
# $$
#
# **The residual stream.** Read the equations as a running sum: every sub-layer *adds* to $z$
# (the **+** boxes) and nothing replaces it; attention and MLP only write increments.

# %% [markdown]
# ```{exercise} LayerNorm by hand
# :label: ex-04-1
#
# Write `layer_norm(u, gamma, beta, eps)` from the formula above, for a tensor `u` of shape
# $(\dots, D)$, and check it against `F.layer_norm` with random $\gamma$ and $\beta$. Then check
# that with $\gamma = 1, \beta = 0$ every token comes out with mean 0 and standard deviation 1.
# Which variance does LayerNorm use, the one that divides by $D$ or by $D - 1$?
# ```
#
# ```{solution-start} ex-04-1
# :class: dropdown
# ```
#
# It divides by $D$ (`unbiased=False`); with $D - 1$ the check below fails.

# %%
def layer_norm(u: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    mu = u.mean(-1, keepdim=True)                          # (..., 1): one mean per token
    var = u.var(-1, unbiased=False, keepdim=True)          # divide by D, not D - 1
    return gamma * (u - mu) / torch.sqrt(var + eps) + beta


u = 3 * torch.randn(2, N + 1, D) + 1                        # (B, N+1, D), not normalised
gamma, beta = torch.randn(D), torch.randn(D)
assert_close(layer_norm(u, gamma, beta), F.layer_norm(u, (D,), gamma, beta, eps=1e-6))
plain = layer_norm(u, torch.ones(D), torch.zeros(D))
assert_close(plain.mean(-1), torch.zeros(2, N + 1), atol=1e-5, rtol=0)
assert_close(plain.std(-1, unbiased=False), torch.ones(2, N + 1), atol=1e-4, rtol=0)
print("✓ layer_norm == F.layer_norm; every token has mean 0 and standard deviation 1")

# %% [markdown]
# ```{solution-end}
# ```

# %% [markdown]
# ### A block from scratch
#
# Two small modules on top of chapter 3's attention, taken from `vitlib` (chapter 3 checked its
# own against it; it returns its output and, on request, its weights). The names match
# `vitlib.model.Block`'s, so its state dict loads into ours. Dropout is left out: the book's
# default and quick configurations set every dropout rate to 0 (`configs/seed.yaml`, the original
# project's recipe, sets 0.1, which `vitlib`'s block applies while training).

# %%
class FeedForward(nn.Module):
    """MLP(u) = GELU(u W1 + b1) W2 + b2, applied to every token independently."""

    def __init__(self, c: ViTConfig):
        super().__init__()
        self.fc1 = nn.Linear(c.emb_dim, c.mlp_dim)         # D -> D_ff
        self.fc2 = nn.Linear(c.mlp_dim, c.emb_dim)         # D_ff -> D

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(u)))               # (B, N+1, D)


class PreNormBlock(nn.Module):
    """z' = MSA(LN(z)) + z;  z_out = MLP(LN(z')) + z'."""

    def __init__(self, c: ViTConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(c.emb_dim, eps=c.norm_eps)
        self.attn = Attention(c)                           # chapter 3's multi-head self-attention
        self.norm2 = nn.LayerNorm(c.emb_dim, eps=c.norm_eps)
        self.mlp = FeedForward(c)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = z + self.attn(self.norm1(z))[0]                # the first + box; [0] drops the weights
        return z + self.mlp(self.norm2(z))                 # the second + box


# %% [markdown]
# The self-check: give `vitlib`'s `Block` random weights (also in the LayerNorms, whose
# $\gamma = 1, \beta = 0$ start would hide a swapped pair), load them into ours, and compare.

# %%
torch.manual_seed(0)
ref = Block(cfg).eval()
with torch.no_grad():
    for p in ref.parameters():
        p.add_(0.1 * torch.randn_like(p))
mine = PreNormBlock(cfg).eval()
mine.load_state_dict(ref.state_dict())                 # strict: every name and shape must match
z = torch.randn(2, N + 1, D)                           # (B, N+1, D)
with torch.no_grad():
    out_ref, _ = ref(z)                                # vitlib's Block also returns attention weights
    assert_close(mine(z), out_ref, rtol=1e-5, atol=1e-5)
print(f"✓ PreNormBlock == vitlib.model.Block, {tuple(z.shape)} -> {tuple(out_ref.shape)}")

# %% [markdown]
# ### Why pre-norm?
#
# The original Transformer {cite:p}`vaswani2017attention` put the LayerNorm *after* the residual
# addition ("post-norm"):
#
# $$
# z'_\ell = \mathrm{LN}(z_{\ell-1} + \mathrm{MSA}(z_{\ell-1})), \qquad
# z_\ell = \mathrm{LN}(z'_\ell + \mathrm{MLP}(z'_\ell)).
# $$
#
# The ViT, like most transformers since, normalises the *input* of each branch instead
# ("pre-norm"):
#
# - **Pre-norm:** the stream is never normalised inside the stack, so
#   $\partial z_L / \partial z_\ell = I + (\text{branch terms})$: an identity path carries the
#   gradient from the loss to every layer. The price is a stream that grows as the blocks add to
#   it, hence the final $y = \mathrm{LN}(z_L^0)$.
# - **Post-norm:** the gradient reaching an early layer has passed through $2(L - \ell)$
#   LayerNorms, each dividing by the standard deviation of (stream + branch); large branches
#   shrink it layer after layer. Post-norm transformers need a learning-rate warm-up to train
#   reliably (Xiong et al., 2020, "On Layer Normalization in the Transformer Architecture").
#
# An experiment at initialisation: run random tokens through `DEPTH` blocks wired either way (the
# *same* weights), recording the stream's size after every block and the gradient of a random
# linear loss with respect to it, for the ViT's initialisation (standard deviation 0.02: every
# branch starts close to zero) and Xavier's (the original Transformer's: a branch's output is as
# large as its input).

# %%
DEPTH = 24 if QUICK else 48


def post_norm_forward(block: PreNormBlock, z: torch.Tensor) -> torch.Tensor:
    """The same modules, wired the original Transformer's way: LN after each residual add."""
    z = block.norm1(z + block.attn(z)[0])
    return block.norm2(z + block.mlp(z))


def stream_and_gradients(wiring: str, init: str, depth: int = DEPTH) -> tuple[np.ndarray, np.ndarray]:
    """Mean token norm of z_0..z_L and the gradient norm of a random linear loss w.r.t. each z_l."""
    c = ViTConfig(image_size=32, patch_size=4, emb_dim=64, n_heads=4, mlp_dim=128)   # N = 64, D = 64
    torch.manual_seed(0)
    blocks = [PreNormBlock(c) for _ in range(depth)]
    for m in (m for b in blocks for m in b.modules() if isinstance(m, nn.Linear)):
        nn.init.trunc_normal_(m.weight, std=0.02) if init == "ViT" else nn.init.xavier_uniform_(m.weight)
        nn.init.zeros_(m.bias)
    final_norm = nn.LayerNorm(c.emb_dim)
    z = torch.randn(4, c.num_patches + 1, c.emb_dim, requires_grad=True)   # 4 images of unit-variance tokens
    stream = [z]
    for b in blocks:
        z = b(z) if wiring == "pre-norm" else post_norm_forward(b, z)
        z.retain_grad()
        stream.append(z)
    out = final_norm(z) if wiring == "pre-norm" else z       # post-norm output is already normalised
    loss = (out * torch.randn_like(out)).sum()               # a stand-in for any loss
    loss.backward()
    norms = np.array([s.detach().norm(dim=-1).mean().item() for s in stream])
    grads = np.array([s.grad.norm().item() for s in stream])
    return norms, grads


runs = {(w, i): stream_and_gradients(w, i) for i in ("ViT", "Xavier") for w in ("pre-norm", "post-norm")}
for (w, i), (norms, grads) in runs.items():
    print(f"{w:>9}, {i:>6} init: stream norm {norms[0]:5.1f} -> {norms[-1]:5.1f}; "
          f"smallest gradient / gradient at the top = {grads.min() / grads[-1]:.2f}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 4.4))
for (w, i), (norms, grads) in runs.items():
    style = dict(color="tab:blue" if w == "pre-norm" else "tab:orange", ls="-" if i == "Xavier" else "--",
                 label=f"{w}, {i} init")
    axes[0].plot(norms, **style)
    axes[1].plot(grads / grads[-1], **style)
axes[0].axhline(8, color="gray", ls=":", lw=1)
axes[0].text(DEPTH * 0.55, 8.4, "√D = 8: the size of a LayerNorm's output", color="gray", fontsize=8)
axes[0].set(title="size of the residual stream", ylabel="mean token norm ‖z_ℓ‖")
axes[1].set(title="gradient reaching each layer, relative to the top of the stack", yscale="log",
            ylabel="‖∂loss/∂z_ℓ‖ / ‖∂loss/∂z_L‖")
for ax in axes:
    ax.set_xlabel("layer ℓ (0 = input tokens)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
fig.suptitle(f"Pre-norm against post-norm at initialisation, L = {DEPTH} blocks, D = 64")
fig.tight_layout()
plt.show()

# %% [markdown]
# What the two panels show:
#
# - With Xavier's initialisation the pre-norm stream grows steadily with depth (every block adds
#   about the stream's own size), while post-norm pins it to $\sqrt{D} = 8$. The ViT's final
#   LayerNorm undoes that growth.
# - With the same initialisation the pre-norm gradient never drops below what arrives at the top
#   (the printed ratio is 1.00): the identity path delivers it, and each branch adds a path of its
#   own. The post-norm gradient sags in the middle of the stack, by the printed ratio.
# - With the ViT's small initialisation both wirings start almost as the identity and the curves
#   lie on top of each other. The difference appears once training makes the branches large,
#   which is when post-norm needs warm-up and careful learning rates and pre-norm does not.

# %% [markdown]
# ## Assembling the ViT, stage by stage
#
# Now run the batch through each box of the figure by hand, checking the shape at every step,
# with `vit`'s patch embedding, class token, position embedding and head but *our* blocks loaded
# with `vit`'s weights. If our pieces are right, the result equals `vit(x)`.
#
# **Patch embedding**, then **CLS token + position embedding** (chapter 2): $N = 16$ patches of
# $K = P^2C = 192$ values, each projected to $D = 128$; the learned class token goes in front (the
# token the head reads at the end), and one learned vector per position is added:

# %%
z = vit.patch_embed(x)                             # (B, N, D)
assert z.shape == (B, N, D)
z = torch.cat([vit.cls_token.expand(B, -1, -1), z], dim=1) + vit.pos_embed   # z_0: (B, N+1, D)
assert z.shape == (B, N + 1, D)
print(f"x {tuple(x.shape)} -> patch tokens {(B, N, D)} -> z_0 {tuple(z.shape)}")

# %% [markdown]
# **Transformer block × L.** Our blocks, with `vit`'s weights. Each keeps the shape:

# %%
my_blocks = nn.ModuleList(PreNormBlock(cfg) for _ in range(cfg.n_layers)).eval()
my_blocks.load_state_dict(vit.blocks.state_dict())
for block in my_blocks:
    z = block(z)
    assert z.shape == (B, N + 1, D)
print(f"{cfg.n_layers} blocks -> z_L {tuple(z.shape)}")

# %% [markdown]
# **Final LayerNorm (CLS) and Classification head.** Normalise the class token $z_L^0$ and
# classify. `vitlib` applies its final LayerNorm to the class token alone, `self.norm(x[:, 0])`;
# since LayerNorm works token by token, that equals normalising all tokens and taking the first:

# %%
y = vit.norm(z[:, 0])                              # (B, D)
logits = vit.head(y)                               # (B, n_cls)
assert y.shape == (B, D) and logits.shape == (B, cfg.num_classes)
assert_close(vit.norm(z)[:, 0], y)                 # normalise all, take the first: the same y
print(f"class token {tuple(z[:, 0].shape)} -> y {tuple(y.shape)} -> logits {tuple(logits.shape)}")

with torch.no_grad():
    assert_close(logits, vit(x), rtol=1e-5, atol=1e-5)
print(f"✓ our stage-by-stage forward pass == vitlib's ViT; untrained, so the largest probability is "
      f"{logits.detach().softmax(-1).max():.3f} (uniform: {1 / cfg.num_classes:.3f})")

# %% [markdown]
# ```{exercise} Where is the order of the tokens?
# :label: ex-04-2
#
# Shuffle the $N + 1$ tokens of a random input $z$ with a permutation and run one of `my_blocks`
# on the shuffled tokens. How does the output relate to the block's output on $z$? What does that
# tell you about where a ViT learns which patch sits where?
# ```
#
# ```{solution-start} ex-04-2
# :class: dropdown
# ```
#
# The output is shuffled the same way: a block is *permutation-equivariant*. LayerNorm and MLP act
# token by token, and attention permutes with its input (chapter 3 checked it). So the blocks know
# nothing about positions; all of it comes from the position embedding added to $z_0$.

# %%
perm = torch.randperm(N + 1)
z_rand = torch.randn(2, N + 1, D)                               # (B, N+1, D)
with torch.no_grad():
    assert_close(my_blocks[0](z_rand[:, perm]), my_blocks[0](z_rand)[:, perm], rtol=1e-5, atol=1e-5)
print(f"✓ block(shuffled tokens) == shuffled block(tokens), for the permutation {perm[:6].tolist()}...")

# %% [markdown]
# ```{solution-end}
# ```

# %% [markdown]
# `vit(x, return_attention=True)` also returns every layer's $(B, h, N+1, N+1)$ attention weights.
#
# ```{exercise} Mean pooling
# :label: ex-04-3
#
# `ViT(replace(cfg, pool="mean"))` feeds the head the average of the $N$ normalised patch tokens
# instead of the class token. Does the parameter count change? Reproduce its logits with the
# stage-by-stage code above, and find out whether the class token still influences the output.
# ```
#
# ```{solution-start} ex-04-3
# :class: dropdown
# ```
#
# The count does not change: the class token is still there and takes part in every block's
# attention, so moving it moves the output (in a random direction: a shift by the same number in
# every coordinate would vanish in the first LayerNorm, which subtracts the token's mean).

# %%
torch.manual_seed(0)
mean_vit = ViT(replace(cfg, pool="mean")).eval()
assert mean_vit.num_parameters() == vit.num_parameters()
with torch.no_grad():
    z = torch.cat([mean_vit.cls_token.expand(B, -1, -1), mean_vit.patch_embed(x)], 1) + mean_vit.pos_embed
    for block in mean_vit.blocks:
        z, _ = block(z)                                              # (B, N+1, D)
    by_hand = mean_vit.head(mean_vit.norm(z[:, 1:]).mean(1))         # average of the N patch tokens
    assert_close(by_hand, mean_vit(x), rtol=1e-5, atol=1e-5)
    mean_vit.cls_token.add_(torch.randn(D))                          # move only the class token
    change = (mean_vit(x) - by_hand).abs().max().item()
assert change > 1e-4
print(f"✓ same parameter count, same logits by hand; moving the class token changes them by {change:.4f}")

# %% [markdown]
# ```{solution-end}
# ```

# %% [markdown]
# ## Counting parameters
#
# Every part's parameter count follows from its weight shapes. With $K = P^2C$ values per patch,
# $hd$ the attention's inner width ($= D$ in the book's default) and a LayerNorm holding
# $2 \times$ its width ($\gamma$ and $\beta$):
#
# | part | parameters |
# |---|---|
# | patch embedding | $KD + D$, plus $2K + 2D$ for the two patch LayerNorms of chapter 2 |
# | class token + positions | $D + (N + 1) D$ |
# | attention (per block) | $3hdD$ ($+ 3hd$ with a $Q, K, V$ bias) $+ hdD + D$ |
# | MLP (per block) | $D D_\text{ff} + D_\text{ff} + D_\text{ff} D + D$ |
# | LayerNorms | $2 \cdot 2D$ per block, $+ 2D$ for the final one |
# | head(s) | $(D + 1) \cdot n_\text{cls}$ |
#
# Here it is as code, checked against the tensors of the built model:

# %%
def params_by_formula(c: ViTConfig) -> dict[str, int]:
    ph, pw = (c.patch_size, c.patch_size) if isinstance(c.patch_size, int) else c.patch_size
    D, D_ff, L, N = c.emb_dim, c.mlp_dim, c.n_layers, c.num_patches
    K, hd = ph * pw * c.in_channels, c.n_heads * c.attn_head_dim
    outputs = c.num_classes + c.num_textures + (3 if c.predict_color else 0)
    return {"patch embedding": K * D + D + (2 * K + 2 * D if c.patch_norm else 0),
            "CLS + positions": D + (N + 1) * D,
            "attention": L * (3 * hd * D + (3 * hd if c.qkv_bias else 0) + hd * D + D),
            "MLP": L * (D * D_ff + D_ff + D_ff * D + D),
            "LayerNorms": L * 2 * 2 * D + 2 * D,
            "head(s)": (D + 1) * outputs}


def params_counted(model: ViT) -> dict[str, int]:
    """The same parts, counted on the tensors of a built model."""
    n = lambda modules: sum(p.numel() for m in modules if m is not None for p in m.parameters())  # noqa: E731
    blocks = model.blocks
    return {"patch embedding": n([model.patch_embed]),
            "CLS + positions": model.cls_token.numel() + model.pos_embed.numel(),
            "attention": n(b.attn for b in blocks), "MLP": n(b.mlp for b in blocks),
            "LayerNorms": n([*(b.norm1 for b in blocks), *(b.norm2 for b in blocks), model.norm]),
            "head(s)": n([model.head, model.texture_head, model.color_head])}


counted = params_counted(vit)
assert counted == params_by_formula(cfg) and sum(counted.values()) == vit.num_parameters()
print(f"✓ formula == the built model: {vit.num_parameters():,} parameters")
for part, n in counted.items():
    print(f"   {part:<16} {n:>9,}  {n / vit.num_parameters():4.0%}")

# %% [markdown]
# **The blocks are the model.** Attention and MLP hold almost all parameters, and in the book's
# default ($hd = D$, $D_\text{ff} = 2D$) they are almost the same size; patch embedding, class
# token, positions and head are a few percent. Only the position table depends on $N$.

# %% [markdown]
# ## Under the hood
#
# {doc}`u3_porting_and_resizing` goes on from here: it loads torchvision's ViT weights into
# `vitlib`'s with equal logits, reads attention weights with `return_attention=True`, adds the
# texture and colour heads, resizes the position embedding for a new image size, and compares
# the book's model with the original project's 224 px one in parameters and FLOPs.
#
# ## Summary
#
# - A ViT is $z_0 = [x_\text{class}; x_p^1 E; \dots; x_p^N E] + E_\text{pos}$, then $L$ pre-norm
#   blocks $z'_\ell = \mathrm{MSA}(\mathrm{LN}(z_{\ell-1})) + z_{\ell-1}$,
#   $z_\ell = \mathrm{MLP}(\mathrm{LN}(z'_\ell)) + z'_\ell$, each $(B, N+1, D) \to (B, N+1, D)$,
#   then $y = \mathrm{LN}(z_L^0)$ on the class token and a linear head.
# - LayerNorm and the MLP work token by token; attention is the only place where tokens exchange
#   information, and only the position embedding tells the blocks where a patch sits.
# - Pre-norm keeps an identity path for the gradient to every layer, at the cost of a growing
#   stream that the final LayerNorm corrects; post-norm can starve early layers of gradient.
# - Almost all parameters sit in the blocks' attention and MLP.

# %% [markdown]
# ## Comprehension questions
#
# **1. Why does a block add the attention's output to its input instead of replacing the input?**
#
# ```{admonition} Answer
# :class: dropdown
# The addition keeps an identity path through the stack: each block only writes an increment into
# the residual stream, so a token's own information survives, and the gradient reaches every layer
# through $\partial z_L / \partial z_\ell = I + \dots$ however deep the stack is.
# ```
#
# **2. Over which numbers does LayerNorm compute its mean and variance, and why does it therefore
# behave the same in training and evaluation?**
#
# ```{admonition} Answer
# :class: dropdown
# Over the $D$ numbers of one token. It never looks at other tokens or images, so unlike BatchNorm
# it keeps no running statistics, and an image's output does not depend on the batch it is in.
# ```
#
# **3. The MLP is applied to every token on its own. Where do the tokens exchange information?**
#
# ```{admonition} Answer
# :class: dropdown
# Only in the attention. LayerNorm, the MLP and the residual additions act token by token; the
# attention weights are the one place where a token's output depends on the other tokens.
# ```
#
# **4. Why does a pre-norm ViT need a final LayerNorm, while a post-norm stack does not?**
#
# ```{admonition} Answer
# :class: dropdown
# In pre-norm the residual stream is never normalised and grows as every block adds to it (the
# left panel); the final LayerNorm brings the class token back to a fixed scale for the head. In
# post-norm, every block already ends with a LayerNorm.
# ```
#
# **5. With the ViT's initialisation the pre-norm and post-norm curves lie on top of each other.
# Why, and does that mean the wiring does not matter?**
#
# ```{admonition} Answer
# :class: dropdown
# With weights of standard deviation 0.02 every branch starts close to zero, so both wirings start
# close to the identity. The difference appears once training makes the branches large: then
# post-norm divides the gradient at every LayerNorm, and pre-norm keeps its identity path.
# ```
#
# **6. On 48 px images instead of 32 px, with the same patch size, which parameters change in
# number?**
#
# ```{admonition} Answer
# :class: dropdown
# Only the position table, with one row per token: $N = HW/P^2$ grows with the image. The patch
# embedding, the blocks and the head do not depend on $N$ ({doc}`u3_porting_and_resizing` resizes
# a trained table for a new image size).
# ```

# %%
print(f"notebook ran in {time.perf_counter() - START:.1f} s (quick mode: {QUICK})")
