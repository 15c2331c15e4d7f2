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
# We now have both ingredients: [chapter 2](02_patch_embedding.ipynb) turned an image into a
# sequence of tokens, and [chapter 3](03_attention.ipynb) built the attention that lets those
# tokens talk to each other. This chapter stacks them into the complete Vision Transformer of
# {cite:t}`dosovitskiy2021vit`: transformer blocks with LayerNorm, residual connections and an
# MLP, a final LayerNorm, and a classification head on the class token. Then we take the model
# apart again: where its parameters and its FLOPs go, how the original project's model compares
# with the book's CPU default, and how to load the weights of torchvision's ViT into ours so that
# both give the same logits.
#
# **Learning objectives.** After this chapter you can
#
# - write the ViT's equations, $z'_\ell = \mathrm{MSA}(\mathrm{LN}(z_{\ell-1})) + z_{\ell-1}$,
#   $z_\ell = \mathrm{MLP}(\mathrm{LN}(z'_\ell)) + z'_\ell$, $y = \mathrm{LN}(z_L^0)$, and build a
#   pre-norm transformer block from scratch;
# - explain what "pre-norm" means and what it does to the residual stream and its gradients;
# - follow the shape of a batch through every stage of the model;
# - count the parameters and FLOPs of each part by hand, and say which part dominates;
# - port weights between two implementations (torchvision's and ours) and prove the port is
#   exact;
# - use `return_attention=True`, the extra texture and colour heads, and
#   `interpolate_pos_embed`.
#
# **Time.** Reading: about 45 minutes. Running: about 30 seconds on a laptop CPU in quick mode
# (`VITLIB_QUICK=1`). In full mode the pre-norm experiment goes twice as deep
# and the torchvision port uses the paper's ViT-B/16 (86 million parameters, 224 px) instead of
# a small 32 px model; about a minute or two. Nothing is trained here; training is [chapter 5](05_training.ipynb).

# %% [markdown]
# ## Setup
#
# *Reading this in JupyterLab?* `jupyterlab-myst` renders this chapter's MyST markup there, maths
# included, but not its citations: it does not read the book's bibliography, so a reference such as
# {cite:p}`dosovitskiy2021vit` shows there as its key, marked "Citation Not Found". The built
# book resolves them.

# %%
import copy
import time
from dataclasses import replace

import ipywidgets
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from IPython.display import display
from torch.testing import assert_close
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models import VisionTransformer

import vitlib.paths
from vitlib.data import ColoredMNIST
from vitlib.model import (Block, ViT, ViTConfig, conv_weight_to_linear, flops_breakdown,
                          flops_per_image, interpolate_pos_embed, patchify)

QUICK = vitlib.paths.is_quick()
torch.manual_seed(0)
START = time.perf_counter()
print(f"quick mode: {QUICK}; torch {torch.__version__}")

# %% [markdown]
# A batch of eight test images at the book's 32 px (the test split is deterministic, so you see
# the same images every time), and the book's default model configuration:

# %%
test32 = ColoredMNIST("test", image_size=32)
batch = test32.get_batch(torch.arange(8))
x = batch["image"]                                   # (B, 3, 32, 32) in [-1, 1]
cfg = ViTConfig.default()
print(f"images {tuple(x.shape)}, digits {batch['number_cls'].tolist()}")
print(cfg)

# %% [markdown]
# ## Recap: tokens and attention
#
# **Chapter 2.** An image $x \in \mathbb{R}^{C \times H \times W}$ is cut into $N = HW/P^2$
# patches, each flattened to $P^2 C$ numbers and projected to width $D$ by one shared matrix $E$
# (the original project wraps the projection in two LayerNorms). A learned class token
# $x_\text{class}$ goes in front and a learned position embedding $E_\text{pos}$ is added:
#
# $$
# z_0 = [\,x_\text{class};\; x_p^1 E;\; x_p^2 E;\; \dots;\; x_p^N E\,] + E_\text{pos},
# \qquad z_0 \in \mathbb{R}^{(N+1) \times D}.
# $$
#
# **Chapter 3.** Multi-head self-attention lets every token take a weighted average of all
# tokens, $h$ times in parallel with different projections, and mixes the heads with $W_O$:
#
# $$
# \mathrm{MSA}(u) = [\mathrm{head}_1, \dots, \mathrm{head}_h]\, W_O, \qquad
# \mathrm{head}_i = \mathrm{softmax}\!\Big(\frac{Q_i K_i^\top}{\sqrt{d}}\Big) V_i, \quad
# Q_i = u W_Q^{(i)},\ K_i = u W_K^{(i)},\ V_i = u W_V^{(i)}.
# $$
#
# Both take and give sequences of width $D$. A quick check with `vitlib`'s pieces:

# %%
torch.manual_seed(0)
vit = ViT(cfg).eval()                               # untrained; we only look at shapes and counts
B, N, D = x.shape[0], cfg.num_patches + 1, cfg.emb_dim
with torch.no_grad():
    tokens = vit.patch_embed(x)
    attn_out, attn_w = vit.blocks[0].attn(tokens, return_weights=True)
assert tokens.shape == (B, N - 1, D)
assert attn_out.shape == tokens.shape and attn_w.shape == (B, cfg.n_heads, N - 1, N - 1)
print(f"patch embedding: {tuple(x.shape)} -> {tuple(tokens.shape)}")
print(f"attention: {tuple(tokens.shape)} -> {tuple(attn_out.shape)}, weights {tuple(attn_w.shape)}")
print("✓ both map sequences of width D to sequences of width D")

# %% [markdown]
# ## The transformer block
#
# ### The equations
#
# A ViT block does two things to every token: it lets the token gather information from the
# others (attention), then it processes each token on its own (an MLP, the same two-layer network
# for every token). Each of the two is wrapped the same way: LayerNorm first, then the layer,
# then add the result back to the input. With $\ell = 1, \dots, L$ the paper writes
#
# $$
# \begin{aligned}
# z'_\ell &= \mathrm{MSA}(\mathrm{LN}(z_{\ell-1})) + z_{\ell-1}, \\
# z_\ell &= \mathrm{MLP}(\mathrm{LN}(z'_\ell)) + z'_\ell, \\
# y &= \mathrm{LN}(z_L^0),
# \end{aligned}
# $$
#
# where $\mathrm{MLP}(u) = \mathrm{GELU}(u W_1 + b_1) W_2 + b_2$ with a hidden width $M$
# (`mlp_dim`), and $z_L^0$ is the class token (position 0) after the last block. The head is one
# linear layer on $y$.
#
# **LayerNorm** normalises each token on its own: subtract the mean of its $D$ numbers, divide by
# their standard deviation, then scale and shift with two learned vectors $\gamma, \beta \in
# \mathbb{R}^D$:
#
# $$
# \mathrm{LN}(u) = \gamma \odot \frac{u - \mu(u)}{\sqrt{\sigma^2(u) + \epsilon}} + \beta .
# $$
#
# **The residual stream.** Read the equations as a running sum: $z_0$ is the input, and every
# sub-layer *adds* something to it. Nothing in the stack ever replaces $z$; attention and MLP only
# write increments into it. This view (the "residual stream") makes the next section easy.

# %% [markdown]
# ### A block from scratch
#
# Three small modules. The attention is chapter 3's, written compactly; the parameter names are
# chosen to match `vitlib.model.Block` (`norm1`, `attn.qkv`, `attn.proj`, `norm2`, `mlp.fc1`,
# `mlp.fc2`), so its state dict loads into ours unchanged. Dropout is left out: the book's
# configurations train without it (only `configs/seed.yaml`, the original's recipe, sets 0.1).

# %%
class SelfAttention(nn.Module):
    """MSA: one fused Q, K, V projection, h heads of width d, output projection W_O."""

    def __init__(self, c: ViTConfig):
        super().__init__()
        self.h, self.d = c.n_heads, c.attn_head_dim
        self.qkv = nn.Linear(c.emb_dim, 3 * self.h * self.d, bias=c.qkv_bias)
        self.proj = nn.Linear(self.h * self.d, c.emb_dim)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        B, N, _ = u.shape
        q, k, v = self.qkv(u).reshape(B, N, 3, self.h, self.d).permute(2, 0, 3, 1, 4)  # (B, h, N, d)
        weights = (q @ k.transpose(-2, -1) / self.d ** 0.5).softmax(dim=-1)           # (B, h, N, N)
        out = (weights @ v).transpose(1, 2).reshape(B, N, self.h * self.d)            # heads side by side
        return self.proj(out)


class FeedForward(nn.Module):
    """MLP(u) = GELU(u W1 + b1) W2 + b2, applied to every token independently."""

    def __init__(self, c: ViTConfig):
        super().__init__()
        self.fc1 = nn.Linear(c.emb_dim, c.mlp_dim)
        self.fc2 = nn.Linear(c.mlp_dim, c.emb_dim)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(u)))


class PreNormBlock(nn.Module):
    """z' = MSA(LN(z)) + z;  z_out = MLP(LN(z')) + z'."""

    def __init__(self, c: ViTConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(c.emb_dim, eps=c.norm_eps)
        self.attn = SelfAttention(c)
        self.norm2 = nn.LayerNorm(c.emb_dim, eps=c.norm_eps)
        self.mlp = FeedForward(c)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = z + self.attn(self.norm1(z))
        return z + self.mlp(self.norm2(z))


# %% [markdown]
# The self-check: give `vitlib`'s `Block` random weights (also in the LayerNorms, which start at
# $\gamma = 1, \beta = 0$ and would hide a swapped pair), load them into ours, and compare. We try
# the book's default ($4$ heads of $32$ with a $Q, K, V$ bias) and the original project's $8$
# heads of $64$ on $D = 128$ without a bias. `vitlib` uses the fused attention kernel here, so this
# also checks our readable attention against it.

# %%
for name, c in [("default", cfg), ("original", ViTConfig.original())]:
    torch.manual_seed(0)
    ref = Block(c).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.1 * torch.randn_like(p))
    mine = PreNormBlock(c).eval()
    mine.load_state_dict(ref.state_dict())             # strict: every name and shape must match
    z = torch.randn(2, c.num_patches + 1, c.emb_dim)
    with torch.no_grad():
        out_ref, _ = ref(z)                            # vitlib's Block also returns attention weights
        out_mine = mine(z)
    assert out_mine.shape == z.shape
    assert_close(out_mine, out_ref, rtol=1e-5, atol=1e-5)
    print(f"✓ {name}: PreNormBlock == vitlib.model.Block, {tuple(z.shape)} -> {tuple(out_mine.shape)}")

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
# ("pre-norm"). The difference is where the LayerNorm sits relative to the residual stream:
#
# - **Pre-norm:** the stream is never normalised inside the stack. Its derivative is
#   $\partial z_L / \partial z_\ell = I + (\text{branch terms})$: there is a clean identity path
#   from the loss back to every layer, whatever the branches do. The price is that the stream's
#   size grows as the blocks add to it, hence the final $y = \mathrm{LN}(z_L^0)$.
# - **Post-norm:** the stream is renormalised twice in every block, so the gradient reaching an
#   early layer has passed through $2(L - \ell)$ LayerNorms, and each divides by the standard
#   deviation of (stream + branch). When the branches are large, that shrinks the gradient
#   layer after layer. Post-norm transformers are known to need a learning-rate warm-up to
#   train reliably (Xiong et al., 2020, "On Layer Normalization in the Transformer Architecture").
#
# A small experiment measures both effects at initialisation. We stack `DEPTH` blocks, run random
# tokens through them with each wiring (the *same* weights; only the position of the LayerNorms
# differs), and record the size of the stream after every block and the gradient of a random
# linear loss with respect to it. We do it with two initialisations: the ViT's (weights with
# standard deviation 0.02, so every branch starts close to zero) and Xavier's (what the original
# Transformer used, where a branch's output is as large as its input).

# %%
DEPTH = 24 if QUICK else 48


def post_norm_forward(block: PreNormBlock, z: torch.Tensor) -> torch.Tensor:
    """The same modules, wired the original Transformer's way: LN after each residual add."""
    z = block.norm1(z + block.attn(z))
    return block.norm2(z + block.mlp(z))


def stream_and_gradients(wiring: str, init: str, depth: int = DEPTH) -> tuple[np.ndarray, np.ndarray]:
    """Mean token norm of z_0..z_L and the gradient norm of a random linear loss w.r.t. each z_l."""
    c = ViTConfig(image_size=32, patch_size=4, emb_dim=64, n_heads=4, mlp_dim=128)
    torch.manual_seed(0)
    blocks = [PreNormBlock(c) for _ in range(depth)]
    for m in (m for b in blocks for m in b.modules() if isinstance(m, nn.Linear)):
        if init == "ViT":
            nn.init.trunc_normal_(m.weight, std=0.02)
        else:
            nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    final_norm = nn.LayerNorm(c.emb_dim)
    z = torch.randn(4, 65, c.emb_dim, requires_grad=True)    # 4 images of 65 unit-variance tokens
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
colors = {"pre-norm": "tab:blue", "post-norm": "tab:orange"}
for (w, i), (norms, grads) in runs.items():
    style = dict(color=colors[w], ls="-" if i == "Xavier" else "--", label=f"{w}, {i} init")
    axes[0].plot(norms, **style)
    axes[1].plot(grads / grads[-1], **style)
axes[0].axhline(np.sqrt(64), color="gray", ls=":", lw=1)
axes[0].text(DEPTH * 0.55, np.sqrt(64) * 1.05, "√D = 8: the size of a LayerNorm's output",
             color="gray", fontsize=8)
axes[0].set_title("size of the residual stream")
axes[0].set_ylabel("mean token norm ‖z_ℓ‖")
axes[1].set_yscale("log")
axes[1].set_title("gradient reaching each layer, relative to the top of the stack")
axes[1].set_ylabel("‖∂loss/∂z_ℓ‖ / ‖∂loss/∂z_L‖")
for ax in axes:
    ax.set_xlabel("layer ℓ (0 = input tokens)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
fig.suptitle(f"Pre-norm against post-norm at initialisation, {DEPTH} blocks, D = 64")
fig.tight_layout()
plt.show()

# %% [markdown]
# What the two panels show:
#
# - With Xavier's initialisation the pre-norm stream grows steadily with depth (every block adds
#   a branch output of about the stream's own size), while post-norm pins it to $\sqrt{D} = 8$
#   after every block. The final LayerNorm of the ViT is there to undo that growth.
# - With the same initialisation, the pre-norm gradient never drops below what arrives at the top:
#   the identity path delivers it to every layer, and each branch adds a path of its own, so it
#   even grows towards the input. The post-norm gradient sags in the middle of the stack, by a
#   factor of four to five with 24 or 48 blocks and more than ten with 96 (try `DEPTH = 96`).
# - With the ViT's small initialisation both wirings are almost the identity at the start, and
#   the curves lie on top of each other. The difference appears once training makes the branches
#   large, which is exactly when post-norm needs warm-up and careful learning rates, and pre-norm
#   does not.
#
# So the ViT's recipe (pre-norm blocks, small initial weights, final LayerNorm) keeps a deep stack
# close to the identity at the start and keeps the gradient path open all through training.

# %% [markdown]
# ## Assembling the ViT, stage by stage
#
# Time to put everything together, d2l style: run the batch through each stage by hand and check
# the shape after every step. We use `vit`'s own patch embedding, class token, position embedding
# and head (built in chapter 2), but *our* `PreNormBlock`s for the blocks, loaded with `vit`'s
# weights. If our pieces are right, the result must equal `vit(x)`.
#
# **1. Tokens.** $4 \times 4 = 16$ patches of $8 \times 8 \times 3 = 192$ values, each projected to
# $D = 128$:

# %%
z = vit.patch_embed(x)
assert z.shape == (B, cfg.num_patches, D)
print(f"x {tuple(x.shape)} -> patch tokens {tuple(z.shape)}   (B, N-1, D)")

# %% [markdown]
# **2. Class token.** One learned vector, the same for every image, put in front. After the
# blocks, it is the token the head reads:

# %%
cls = vit.cls_token.expand(B, -1, -1)              # (1, 1, D) -> (B, 1, D), a view, no copy
z = torch.cat([cls, z], dim=1)
assert z.shape == (B, N, D)
print(f"+ class token -> {tuple(z.shape)}   (B, N, D), N = {N}")

# %% [markdown]
# **3. Position embedding.** One learned vector per position, broadcast over the batch:

# %%
assert vit.pos_embed.shape == (1, N, D)
z = z + vit.pos_embed
assert z.shape == (B, N, D)
print(f"+ position embedding {tuple(vit.pos_embed.shape)} -> z_0 {tuple(z.shape)}")

# %% [markdown]
# **4. The blocks.** Our blocks, with `vit`'s weights. Each keeps the shape:

# %%
my_blocks = nn.ModuleList(PreNormBlock(cfg) for _ in range(cfg.n_layers)).eval()
my_blocks.load_state_dict(vit.blocks.state_dict())
for layer, block in enumerate(my_blocks, start=1):
    z = block(z)
    assert z.shape == (B, N, D)
print(f"{cfg.n_layers} blocks -> z_L {tuple(z.shape)}")

# %% [markdown]
# **5. Final LayerNorm and head.** Take the class token, $z_L^0$, normalise it and classify.
# (`vitlib` does the same: LayerNorm works token by token, so normalising only the class token
# gives exactly what normalising all tokens and then taking the first would.)

# %%
y = vit.norm(z[:, 0])                              # (B, D)
logits = vit.head(y)                               # (B, num_classes)
assert y.shape == (B, D) and logits.shape == (B, cfg.num_classes)
print(f"class token {tuple(z[:, 0].shape)} -> y {tuple(y.shape)} -> logits {tuple(logits.shape)}")

with torch.no_grad():
    assert_close(logits, vit(x), rtol=1e-5, atol=1e-5)
print("✓ our stage-by-stage forward pass == vitlib's ViT")

# %% [markdown]
# An untrained head gives near-uniform probabilities, as it should before training:

# %%
probs = logits.detach().softmax(-1)
print(f"max probability over the batch: {probs.max():.3f} (uniform would be {1 / cfg.num_classes:.3f})")

# %% [markdown]
# ## Counting parameters and FLOPs
#
# ### Parameters per part
#
# With $K = P^2 C$ values per patch, $A = h d$ the attention's inner width, and $L$ blocks, every
# part's parameter count follows from its weight shapes (a LayerNorm has $2 \times$ its width: $\gamma$
# and $\beta$):
#
# | part | parameters |
# |---|---|
# | patch embedding | $KD + D$, plus $2K + 2D$ for the original's two patch LayerNorms |
# | class token + positions | $D + (N + 1) D$ |
# | attention (per block) | $3AD$ ($+ 3A$ with a $Q, K, V$ bias) $+ AD + D$ |
# | MLP (per block) | $DM + M + MD + D$ |
# | LayerNorms | $2 \cdot 2D$ per block, $+ 2D$ final |
# | head | $(D + 1) \cdot$ classes |
#
# Here it is as code, checked against `ViT.param_breakdown()`, which counts the actual tensors of
# a built model:

# %%
PARTS = ["patch embedding", "CLS + positions", "attention", "MLP", "LayerNorms", "head(s)"]


def params_by_formula(c: ViTConfig) -> dict[str, int]:
    ph, pw = (c.patch_size, c.patch_size) if isinstance(c.patch_size, int) else c.patch_size
    D, M, L = c.emb_dim, c.mlp_dim, c.n_layers
    K, A = ph * pw * c.in_channels, c.n_heads * c.attn_head_dim
    outputs = c.num_classes + c.num_textures + (3 if c.predict_color else 0)
    return {"patch embedding": K * D + D + (2 * K + 2 * D if c.patch_norm else 0),
            "CLS + positions": D + (c.num_patches + 1) * D,
            "attention": L * (3 * A * D + (3 * A if c.qkv_bias else 0) + A * D + D),
            "MLP": L * (D * M + M + M * D + D),
            "LayerNorms": L * 2 * 2 * D + 2 * D,
            "head(s)": (D + 1) * outputs}


def params_from_vitlib(model: ViT) -> dict[str, int]:
    """Group ViT.param_breakdown()'s per-block entries into PARTS."""
    groups = dict.fromkeys(PARTS, 0)
    for key, n in model.param_breakdown().items():
        part = ("patch embedding" if key == "patch_embed" else "CLS + positions" if key.startswith("cls")
                else "attention" if key.endswith(".attn") else "MLP" if key.endswith(".mlp")
                else "LayerNorms" if key.endswith("norms") or key == "final_norm" else "head(s)")
        groups[part] += n
    return groups


torch.manual_seed(0)
original_vit = ViT(ViTConfig.original())
for name, model in [("default", vit), ("original", original_vit)]:
    counted = params_from_vitlib(model)
    assert counted == params_by_formula(model.config)
    assert sum(counted.values()) == model.num_parameters()
    print(f"✓ {name}: formula == param_breakdown, total {model.num_parameters():,}")

# %% [markdown]
# ### FLOPs per part
#
# A matrix multiplication of $(n \times k)$ by $(k \times m)$ costs $nkm$ multiply-adds, or
# $2nkm$ FLOPs. Per image and per block, the linear layers act on $N$ tokens and the attention
# matrix is $N \times N$ per head:
#
# $$
# \underbrace{2N \cdot 3DA}_{Q,K,V} + \underbrace{2 \cdot 2N^2 A}_{QK^\top,\ \text{weights} \cdot V}
# + \underbrace{2NAD}_{W_O} + \underbrace{2 \cdot 2NDM}_{\text{MLP}} .
# $$
#
# `vitlib.model.flops_breakdown(cfg)` evaluates these formulas (LayerNorm, softmax and GELU are
# element-wise, a few FLOPs per number, and left out). To check the formulas independently we ask
# PyTorch's own counter, `torch.utils.flop_counter.FlopCounterMode`, which records every matrix
# multiplication actually executed, module by module. We run with `return_attention=True`
# because the counter does not see inside the fused attention kernel on CPU; the readable path
# does exactly the same multiplications as explicit matmuls.

# %%
FLOP_PARTS = ["patch embedding", "attention: Q,K,V and W_O", "attention: N×N matrix", "MLP", "head(s)"]


def flops_from_vitlib(c: ViTConfig) -> dict[str, int]:
    f = flops_breakdown(c)
    return {"patch embedding": f["patch_embed"],
            "attention: Q,K,V and W_O": f["attn_qkv"] + f["attn_proj"],
            "attention: N×N matrix": f["attn_scores"] + f["attn_values"],
            "MLP": f["mlp"], "head(s)": f["heads"]}


def flops_measured(model: ViT) -> dict[str, int]:
    """Matmul FLOPs of one image as executed, grouped by module name."""
    counter = FlopCounterMode(display=False)
    image = torch.randn(1, model.config.in_channels, *((model.config.image_size,) * 2))
    with torch.no_grad(), counter:
        model(image, return_attention=True)
    per_module = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    got = dict.fromkeys(FLOP_PARTS, 0)
    got["patch embedding"] = per_module["ViT.patch_embed"]
    got["head(s)"] = per_module["ViT.head"]
    for i in range(model.config.n_layers):
        qkv, proj = per_module[f"ViT.blocks.{i}.attn.qkv"], per_module[f"ViT.blocks.{i}.attn.proj"]
        got["attention: Q,K,V and W_O"] += qkv + proj
        got["attention: N×N matrix"] += per_module[f"ViT.blocks.{i}.attn"] - qkv - proj
        got["MLP"] += per_module[f"ViT.blocks.{i}.mlp"]
    assert sum(got.values()) == per_module["Global"]          # nothing was left uncounted
    return got


for name, model in [("default", vit), ("original", original_vit)]:
    assert flops_measured(model) == flops_from_vitlib(model.config)
    print(f"✓ {name}: FlopCounterMode == flops_breakdown, "
          f"{flops_per_image(model.config) / 1e6:,.1f} MFLOPs per image")

# %% [markdown]
# The table and the figure for both models, side by side:

# %%
configs = {"default (32 px, P=8)": cfg, "original (224 px, P=16)": ViTConfig.original()}
param_table = {label: params_by_formula(c) for label, c in configs.items()}
flop_table = {label: flops_from_vitlib(c) for label, c in configs.items()}
labels = list(configs)


def print_table(title: str, table: dict, parts: list[str], scale: float, fmt: str) -> None:
    print(f"{title:<26}" + "".join(f"{label:>31}" for label in labels))
    for part in parts:
        cells = [(table[lb][part], sum(table[lb].values())) for lb in labels]
        print(f"{part:<26}" + "".join(f"{v / scale:>24{fmt}} ({v / total:4.0%})" for v, total in cells))


print_table("parameters", param_table, PARTS, 1, ",.0f")
print()
print_table("forward MFLOPs per image", flop_table, FLOP_PARTS, 1e6, ",.1f")

# %%
fig, axes = plt.subplots(1, 2, figsize=(14, 4.6))
for ax, table, parts, what in [(axes[0], param_table, PARTS, "parameters"),
                               (axes[1], flop_table, FLOP_PARTS, "forward FLOPs per image")]:
    pos = np.arange(len(parts))
    for k, (label, color) in enumerate(zip(labels, ("tab:blue", "tab:orange"))):
        total = sum(table[label].values())
        shares = [100 * table[label][p] / total for p in parts]
        bars = ax.bar(pos + (k - 0.5) * 0.4, shares, width=0.4, color=color,
                      label=f"{label}: {total / 1e6:,.2f} M total")
        ax.bar_label(bars, fmt="%.0f%%", fontsize=7)
    ax.set_xticks(pos, [p.replace(": ", ":\n") for p in parts], fontsize=8)
    ax.set_xlabel("part of the model")
    ax.set_ylabel(f"share of all {what} (%)")
    ax.set_title(f"Where the {what} go")
    ax.set_ylim(0, 100)                           # room for the legend above the bars
    ax.legend(fontsize=8, loc="upper right")
fig.suptitle("Parameters and FLOPs per part: book default against the original model")
fig.tight_layout()
plt.show()

# %% [markdown]
# Three things to notice:
#
# - **The blocks are the model.** Patch embedding, class token, positions and head are a few
#   percent of the parameters; attention and MLP hold almost everything else.
# - **The original's attention is unusually large.** It used $8$ heads of $d = 64$ on $D = 128$,
#   an inner width $A = 512 = 4D$. Its $Q, K, V$ and $W_O$ matrices are four times larger than the
#   usual $A = D$ and hold about 75% of all parameters, four times the MLP's share. In the book's
#   default ($A = D$, $M = 2D$) attention and MLP are the same size; in ViT-Base ($M = 4D$) the MLP
#   is twice the attention.
# - **FLOPs are not parameters.** The $N \times N$ attention matrix has no parameters at all, yet
#   it costs $4N^2A$ FLOPs per block. With $N = 197$ tokens it is over a third of the original
#   model's compute; with $N = 17$ it is about 3 % of the default's.

# %% [markdown]
# ### Try it: your own configuration
#
# Change the sizes and watch the totals (with a running kernel; the static page shows the
# defaults):

# %%
def describe(emb_dim: int = 128, n_layers: int = 6, n_heads: int = 4, mlp_dim: int = 256,
             image_size: int = 32, patch_size: int = 4) -> None:
    try:
        c = replace(cfg, emb_dim=emb_dim, n_layers=n_layers, n_heads=n_heads, mlp_dim=mlp_dim,
                    image_size=image_size, patch_size=patch_size)
    except ValueError as err:                      # e.g. a patch size that does not divide the image
        print(f"not a valid configuration: {err}")
        return
    p, f = params_by_formula(c), flops_from_vitlib(c)
    print(f"N = {c.num_patches + 1} tokens, {sum(p.values()):,} parameters, "
          f"{sum(f.values()) / 1e6:,.1f} MFLOPs per image; "
          f"attention matrix {f['attention: N×N matrix'] / sum(f.values()):.0%} of the FLOPs")


describe()
display(ipywidgets.interactive(
    describe,
    emb_dim=ipywidgets.IntSlider(128, 32, 512, 32), n_layers=ipywidgets.IntSlider(6, 1, 24),
    n_heads=ipywidgets.Dropdown(options=[1, 2, 4, 8], value=4),
    mlp_dim=ipywidgets.IntSlider(256, 64, 2048, 64),
    image_size=ipywidgets.Dropdown(options=[16, 32, 64, 224], value=32),
    patch_size=ipywidgets.Dropdown(options=[2, 4, 8, 16], value=4)))

# %% [markdown]
# ## The original model next to the CPU default
#
# The original project trained `ViTConfig.original()`: 224 px images cut into $16 \times 16$ patches,
# 6 blocks of width 128 with 8 heads of 64, MLP width 256, no $Q, K, V$ bias, the patch
# LayerNorms, LayerNorm $\epsilon = 10^{-5}$. `vitlib` reproduces it exactly, down to the
# parameter count:

# %%
original_cfg = ViTConfig.original()
assert original_vit.num_parameters() == 2_099_338
with torch.no_grad():
    out = original_vit(F.interpolate(x[:2], size=224, mode="bilinear", align_corners=False))
assert out.shape == (2, 10)
print(f"✓ ViTConfig.original(): {original_vit.num_parameters():,} parameters, {original_cfg.num_patches + 1} tokens, "
      f"{tuple(out.shape)} logits from 224 px images")

# %% [markdown]
# The digits in our data are 28 px MNIST scans, so 224 px images mostly repeat each pixel. The
# book's default (`ViTConfig.default()`) works at 32 px with $8 \times 8$ patches: a coarser
# grid ($4 \times 4$ instead of $14 \times 14$ patches), the same width and depth, 4 heads of
# 32 instead of 8 of 64, and about 45 times less compute per image, which is what makes training
# on a laptop CPU a matter of minutes.

# %%
models = {"original\n224 px, P = 16": original_cfg, "book default\n32 px, P = 8": cfg}
stats = {label: dict(params=sum(params_by_formula(c).values()) / 1e6, tokens=c.num_patches + 1,
                     gflops=flops_per_image(c) / 1e9) for label, c in models.items()}
ratio = stats["original\n224 px, P = 16"]["gflops"] / stats["book default\n32 px, P = 8"]["gflops"]
for label, s in stats.items():
    print(f"{label.replace(chr(10), ', '):<36} {s['params']:.3f} M parameters, {s['tokens']:>3} tokens, "
          f"{s['gflops']:.3f} GFLOPs per image")
print(f"the original costs {ratio:.1f}x the default's FLOPs per image")

fig, axes = plt.subplots(1, 3, figsize=(13, 4))
for ax, (key, title, unit) in zip(axes, [("params", "parameters", "millions"),
                                         ("tokens", "sequence length N", "tokens (patches + CLS)"),
                                         ("gflops", "forward FLOPs per image", "GFLOPs")]):
    bars = ax.bar(list(stats), [s[key] for s in stats.values()], color=["tab:orange", "tab:blue"])
    ax.bar_label(bars, fmt="%.3g")
    ax.set_title(title)
    ax.set_ylabel(unit)
    ax.set_xlabel("model")
    ax.margins(y=0.15)                            # room for the bar labels
    ax.tick_params(axis="x", labelsize=8)
fig.suptitle("The original model against the book's CPU default")
fig.tight_layout()
plt.show()

# %% [markdown]
# A training step (forward and backward) costs about three times the forward FLOPs, so one epoch
# over 55,000 training images at the original's size is roughly
# $3 \times 55{,}000 \times 1.3 \times 10^{9} \approx 2 \times 10^{14}$ FLOPs, about 45 times
# the default's. [Chapter 5](05_training.ipynb) measures what that means in seconds.

# %% [markdown]
# ## Porting weights from torchvision
#
# torchvision ships its own ViT, `torchvision.models.VisionTransformer`, the implementation behind
# its pretrained `vit_b_16` and friends. It is the same architecture as our plain ViT (no patch
# LayerNorms, a $Q, K, V$ bias, $hd = D$), with different names and two different layouts.
# `ViT.from_torchvision(tv)` builds a `vitlib` ViT with the same configuration and copies every
# tensor across:
#
# | torchvision | vitlib | how |
# |---|---|---|
# | `conv_proj`: `Conv2d(C, D, kernel=P, stride=P)`, weight $(D, C, P, P)$ | `patch_embed.proj`: `Linear(P²C, D)` | `weight.permute(0, 2, 3, 1).reshape(D, -1)` |
# | `class_token` $(1, 1, D)$ | `cls_token` | copy |
# | `encoder.pos_embedding` $(1, N+1, D)$ | `pos_embed` | copy |
# | `encoder.layers.encoder_layer_i.ln_1`, `ln_2` | `blocks.i.norm1`, `norm2` | copy |
# | `self_attention.in_proj_weight` $(3D, D)$ and `in_proj_bias` | `blocks.i.attn.qkv` | copy: rows are $[W_Q; W_K; W_V]$, heads in order, as ours |
# | `self_attention.out_proj` | `blocks.i.attn.proj` | copy |
# | `mlp[0]`, `mlp[3]` (`mlp[1]` is GELU, `mlp[2]`, `mlp[4]` dropout) | `blocks.i.mlp.fc1`, `mlp.fc2` | copy |
# | `encoder.ln` | `norm` | copy, with its $\epsilon = 10^{-6}$ |
# | `heads.head` | `head` | copy |
#
# The only real conversion is the first row. Chapter 2 showed that a convolution with kernel size
# = stride = $P$ *is* a linear layer on the patches; the permute puts the weight's values in
# `patchify`'s (row, column, channel) order. Here is that identity on torchvision's layer:

# %%
if QUICK:   # a small model that runs in a second
    tv_kwargs = dict(image_size=32, patch_size=4, num_layers=2, num_heads=4, hidden_dim=64, mlp_dim=128)
else:       # the paper's ViT-B/16: 12 layers, 12 heads, D = 768, 86 million parameters
    tv_kwargs = dict(image_size=224, patch_size=16, num_layers=12, num_heads=12, hidden_dim=768, mlp_dim=3072)
torch.manual_seed(0)
tv = VisionTransformer(**tv_kwargs, num_classes=10).eval()   # random weights: nothing is downloaded
P, S = tv_kwargs["patch_size"], tv_kwargs["image_size"]
x_tv = F.interpolate(x[:4], size=S, mode="bilinear", align_corners=False) if S != 32 else x[:4]

with torch.no_grad():
    by_conv = tv.conv_proj(x_tv).flatten(2).transpose(1, 2)                 # (B, N-1, D)
    by_linear = patchify(x_tv, P) @ conv_weight_to_linear(tv.conv_proj.weight).T + tv.conv_proj.bias
assert_close(by_linear, by_conv, rtol=1e-5, atol=1e-5)
print(f"✓ conv_proj on the image == linear layer on patchify(image), {tuple(by_conv.shape)}")

# %% [markdown]
# torchvision initialises its head, class token and most biases to zero (its MLP biases are tiny,
# drawn from $\mathcal{N}(0, 10^{-6})$), and its LayerNorms to $\gamma = 1, \beta = 0$. A port that mixed up two zero tensors, or two LayerNorms, would still
# give identical logits, so before porting we add a little noise to *every* tensor. Then the port,
# and the comparison of the logits:

# %%
with torch.no_grad():
    for p in tv.parameters():
        p.add_(0.02 * torch.randn_like(p))
ported = ViT.from_torchvision(tv).eval()
print(ported.config)
assert ported.num_parameters() == sum(p.numel() for p in tv.parameters())

with torch.no_grad():
    logits_tv, logits_ours = tv(x_tv), ported(x_tv)
assert_close(logits_ours, logits_tv, rtol=0, atol=1e-5)
max_diff = (logits_ours - logits_tv).abs().max().item()
print(f"✓ identical logits: max |difference| = {max_diff:.1e} on logits of size up to "
      f"{logits_tv.abs().max():.2f} ({ported.num_parameters():,} parameters)")

# %% [markdown]
# The largest difference is within a few rounding steps of float32 ($2^{-23} \approx 1.2 \times
# 10^{-7}$, relative to the logit's size): the two models compute the same function and differ
# only in the order in which they add up floating-point numbers. Correct to the last decimal.
#
# One more check that the $Q, K, V$ layout and the head order really agree, not just the final
# sum: torchvision's attention module can return its weights head by head, and they must equal
# ours for the first layer.

# %%
layer0 = tv.encoder.layers[0]
with torch.no_grad():
    z0_tv = tv.conv_proj(x_tv).flatten(2).transpose(1, 2)            # (B, N-1, D) patch tokens
    z0_tv = torch.cat([tv.class_token.expand(len(x_tv), -1, -1), z0_tv], 1) + tv.encoder.pos_embedding
    u = layer0.ln_1(z0_tv)
    _, w_tv = layer0.self_attention(u, u, u, need_weights=True, average_attn_weights=False)
    _, attentions = ported(x_tv, return_attention=True)
assert_close(attentions[0], w_tv, rtol=1e-5, atol=1e-5)
print(f"✓ layer 0 attention weights match head by head, {tuple(w_tv.shape)}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
a, b = logits_tv.flatten().numpy(), logits_ours.flatten().numpy()
axes[0].plot([a.min(), a.max()], [a.min(), a.max()], color="gray", lw=1, label="y = x")
axes[0].scatter(a, b, s=14, label="one logit")
axes[0].set_title("ported vitlib ViT against torchvision")
axes[0].set_xlabel("torchvision logit")
axes[0].set_ylabel("vitlib logit")
axes[0].legend()
diff = np.abs(a - b)
axes[1].hist(np.log10(diff[diff > 0]), bins=15, color="tab:green")   # log scale: exact zeros apart
axes[1].axvline(np.log10(1e-5), color="tab:red", ls="--", label="tolerance 1e-5")
axes[1].set_title(f"how different are they? ({(diff == 0).sum()} of {diff.size} are exactly equal)")
axes[1].set_xlabel("log10 |vitlib - torchvision|")
axes[1].set_ylabel("number of logits")
axes[1].legend()
fig.suptitle(f"Weight port from torchvision ({S} px, P = {P}, {tv_kwargs['num_layers']} layers): same logits")
fig.tight_layout()
plt.show()

# %% [markdown]
# Because nothing is downloaded here, the weights are random. With internet access the same call
# ports pretrained weights: `ViT.from_torchvision(torchvision.models.vit_b_16(weights="DEFAULT"))`
# gives an ImageNet model in `vitlib`'s form, whose attention the tools of
# [chapter 6](06_interpretation.ipynb) can then read.

# %% [markdown]
# ## Looking inside: `return_attention=True`
#
# Passing `return_attention=True` makes the model also return a list with one $(B, h, N, N)$
# weight tensor per layer. The logits must not change: `vitlib` switches from the fused kernel to
# the readable path, which computes the same numbers up to rounding. Every row of every weight
# matrix is a probability distribution over the $N$ tokens.

# %%
with torch.no_grad():
    plain = vit(x)
    logits_a, attentions = vit(x, return_attention=True)
assert_close(logits_a, plain, rtol=1e-5, atol=1e-5)
assert len(attentions) == cfg.n_layers
assert all(a.shape == (B, cfg.n_heads, N, N) for a in attentions)
assert_close(attentions[-1].sum(-1), torch.ones(B, cfg.n_heads, N))
print(f"✓ same logits, plus {len(attentions)} attention tensors of shape {tuple(attentions[0].shape)}, "
      "rows summing to 1")

# %% [markdown]
# Chapter 3 looked at these matrices for an untrained model; [chapter 6](06_interpretation.ipynb)
# looks at them after training and combines the layers with attention rollout
# {cite:p}`abnar2020attentionflow`.
#
# ## Extra heads: texture and colour
#
# Our images carry three labels (chapter 1), so `vitlib` can add two more heads that read the same
# representation $y$: a texture classifier (`num_textures` outputs) and a colour regressor (3
# outputs, the digit's RGB colour). Each is one more linear layer. With either one on, the model
# returns a dict instead of a tensor:

# %%
multi_cfg = replace(cfg, num_textures=test32.num_textures, predict_color=True)
torch.manual_seed(0)
multi = ViT(multi_cfg).eval()
with torch.no_grad():
    out = multi(x)
assert set(out) == {"number", "texture", "color"}
assert out["number"].shape == (B, 10) and out["texture"].shape == (B, test32.num_textures)
assert out["color"].shape == (B, 3)
extra = multi.num_parameters() - vit.num_parameters()
assert extra == (D + 1) * (test32.num_textures + 3)
print({k: tuple(v.shape) for k, v in out.items()})
print(f"✓ three heads on one CLS token; {extra:,} extra parameters ({test32.num_textures} texture classes + 3)")

# %% [markdown]
# [Chapter 5](05_training.ipynb) trains with a weighted sum of the three losses (cross-entropy for
# digit and texture, mean squared error for colour).
#
# ## A new image size: `interpolate_pos_embed`
#
# Everything in the ViT is independent of the number of tokens *except* the position embedding,
# which has one learned vector per grid cell. To run a trained model on larger images (the paper
# fine-tunes at a higher resolution, its section 3.2), `interpolate_pos_embed` treats the
# position embeddings as a $D$-channel image of size $4 \times 4$ and resizes it bicubically to
# the new grid, keeping the class token's entry. The patch size stays the same, so there are more
# patches:

# %%
big = interpolate_pos_embed(copy.deepcopy(vit), 48)              # 48 px: a 6 x 6 grid
x48 = F.interpolate(x, size=48, mode="bilinear", align_corners=False)
with torch.no_grad():
    out48 = big(x48)
assert big.pos_embed.shape == (1, 6 * 6 + 1, D) and out48.shape == (B, 10)
assert_close(big.pos_embed[:, 0], vit.pos_embed[:, 0])           # the CLS entry is kept as it is
same = interpolate_pos_embed(copy.deepcopy(vit), 32)              # resizing to the same size
assert_close(same.pos_embed, vit.pos_embed)                       # changes nothing
print(f"✓ pos_embed {tuple(vit.pos_embed.shape)} -> {tuple(big.pos_embed.shape)}; "
      f"48 px images give logits {tuple(out48.shape)}")

# %% [markdown]
# ## Summary
#
# - A ViT is $z_0 = [x_\text{class}; x_p^1 E; \dots; x_p^N E] + E_\text{pos}$, then $L$ pre-norm
#   blocks $z'_\ell = \mathrm{MSA}(\mathrm{LN}(z_{\ell-1})) + z_{\ell-1}$,
#   $z_\ell = \mathrm{MLP}(\mathrm{LN}(z'_\ell)) + z'_\ell$, then $y = \mathrm{LN}(z_L^0)$ and a
#   linear head. Every block maps $(B, N, D)$ to $(B, N, D)$.
# - Pre-norm leaves the residual stream un-normalised inside the stack: an identity path carries
#   the gradient to every layer, at the cost of a growing stream that the final LayerNorm
#   corrects. Post-norm renormalises the stream in every block and can starve early layers of
#   gradient.
# - Almost all parameters sit in the blocks' attention and MLP. FLOPs follow a different
#   pattern: the $N \times N$ attention matrix has no parameters but costs $4N^2A$ FLOPs per block.
# - The original project's model (`ViTConfig.original()`) has 2,099,338 parameters, 197 tokens and
#   about 1.3 GFLOPs per image; the book's 32 px default has 0.8 million parameters, 17 tokens
#   and about 45 times fewer FLOPs.
# - torchvision's ViT and ours are the same function: its conv patch projection is our linear
#   layer after a permute, its fused `in_proj` is our `qkv`; `ViT.from_torchvision` ports the
#   weights with logits equal to float32 rounding.
# - `return_attention=True` adds per-layer attention weights without changing the output; extra
#   heads turn the output into a dict; `interpolate_pos_embed` adapts the model to a new image
#   size.
#
# ## Exercises
#
# 1. **Mean pooling.** Build `ViT(replace(cfg, pool="mean"))`. Does the parameter count change?
#    Which tokens does the head read now, and does the class token still influence the output?
#
#    **Hint:** look at the line of `ViT.forward` that computes `z` before the head, and remember
#    that every block's attention mixes all tokens, the class token included.
#
# 2. **Where does attention start to dominate?** Using `flops_breakdown`, find the number of
#    tokens $N$ at which the $N \times N$ attention matrix costs as much as all the linear layers
#    of a block, first for the book's default and then for the original model. Check your answer
#    by sweeping `image_size` at a fixed patch size.
#
#    **Hint:** per block the matrix costs $4N^2A$ and the linear layers $2N(4DA + 2DM)$; set them
#    equal and solve for $N = 2D + DM/A$.
#
# 3. **Break the port on purpose.** Copy `ViT.from_torchvision`'s patch-weight line into a
#    notebook cell and replace `conv_weight_to_linear(w)` with a plain `w.reshape(D, -1)`. Load
#    that weight into `ported.patch_embed.proj` and compare the logits with torchvision's again.
#    How large is the error, and why does the shape check not catch it?
#
#    **Hint:** a conv weight is stored as $(D, C, P, P)$, but `patchify` flattens each patch in
#    (row, column, channel) order; both reshapes give $(D, P^2C)$.
#
# 4. **Post-norm in training.** Make a post-norm copy of the default model, train it and the
#    pre-norm original for a few hundred steps with the same learning rate and no warm-up, and
#    compare the loss curves. Then add a warm-up and compare again.
#
#    **Hint:** subclass `ViT` and override `forward` to run
#    `z = b.norm1(z + b.attn(z)[0]); z = b.norm2(z + b.mlp(z))` for each block `b` in
#    `self.blocks` (`vitlib`'s attention returns `(output, weights)`), with no final LayerNorm;
#    to train it, a few lines do: `opt = torch.optim.AdamW(model.parameters(), lr=1e-3)`, then for
#    each batch `loss = F.cross_entropy(model(x), y); opt.zero_grad(); loss.backward(); opt.step()`.

# %%
print(f"notebook ran in {time.perf_counter() - START:.1f} s (quick mode: {QUICK})")
