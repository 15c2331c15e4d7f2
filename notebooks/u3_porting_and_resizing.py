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
# # U3 · Under the hood: porting weights and resizing position embeddings
#
# [Chapter 4](04_vit.ipynb) built the ViT and checked it against `vitlib`'s. This appendix shows
# what else `vitlib`'s model can do, and proves each feature with a check: loading the weights of
# torchvision's ViT so that both give the same logits, reading the attention weights, the extra
# texture and colour heads, running a model on a new image size, and counting FLOPs, with the
# book's 32 px model next to the original project's 224 px one.
#
# **Learning objectives.** After this appendix you can
#
# - port weights between two implementations of the same architecture (torchvision's ViT and
#   `vitlib`'s), name the one real conversion, and prove the port exact;
# - use `return_attention=True` and the extra texture and colour heads;
# - adapt a model to a new image size with `interpolate_pos_embed`, and say why only the
#   position embedding needs it;
# - count FLOPs per part by hand, check the count with PyTorch's FLOP counter, and explain why
#   the original project's model costs so much more than the book's.
#
# **Time.** Reading: about 25 minutes, plus the exercises. Running: a few seconds on a laptop CPU
# in quick mode (`VITLIB_QUICK=1`), where the port uses a small 32 px torchvision model; full mode
# ports the paper's ViT-B/16 (224 px, 86 million parameters) instead and takes longer.

# %% [markdown]
# ## Setup

# %%
import copy
import time
from dataclasses import replace

import ipywidgets
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from IPython.display import display
from torch.testing import assert_close
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models import VisionTransformer

import vitlib.paths
from vitlib.data import ColoredMNIST
from vitlib.model import (ViT, ViTConfig, conv_weight_to_linear, flops_breakdown, flops_per_image,
                          interpolate_pos_embed, patchify)

QUICK = vitlib.paths.is_quick()
START = time.perf_counter()
test32 = ColoredMNIST("test", image_size=32)
x = test32.get_batch(torch.arange(8))["image"]       # (B, C, H, W) = (8, 3, 32, 32), in [-1, 1]
cfg = ViTConfig.default()
torch.manual_seed(0)
vit = ViT(cfg).eval()                                 # untrained: we look at shapes, counts, equalities
B, N, D = x.shape[0], cfg.num_patches, cfg.emb_dim    # N patches, N + 1 tokens
print(f"quick mode: {QUICK}; images {tuple(x.shape)}, N = {N}, D = {D}")

# %% [markdown]
# ## Porting weights from torchvision
#
# torchvision ships its own ViT, `torchvision.models.VisionTransformer`, the implementation behind
# its pretrained `vit_b_16` and friends. It is the same architecture as `vitlib`'s plain ViT (no
# patch LayerNorms, a $Q, K, V$ bias, $hd = D$), with other names and two other layouts.
# `ViT.from_torchvision(tv)` builds a `vitlib` ViT with the same configuration and copies every
# tensor across:
#
# | torchvision | vitlib | how |
# |---|---|---|
# | `conv_proj`: `Conv2d(C, D, kernel=P, stride=P)`, weight $(D, C, P, P)$ | `patch_embed.proj`: `Linear(K, D)` | `weight.permute(0, 2, 3, 1).reshape(D, -1)` |
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
    by_conv = tv.conv_proj(x_tv).flatten(2).transpose(1, 2)                 # (B, N, D)
    by_linear = patchify(x_tv, P) @ conv_weight_to_linear(tv.conv_proj.weight).T + tv.conv_proj.bias
assert_close(by_linear, by_conv, rtol=1e-5, atol=1e-5)
print(f"✓ conv_proj on the image == linear layer on patchify(image), {tuple(by_conv.shape)}")

# %% [markdown]
# A port that mixed up two tensors holding the same numbers would still give identical logits.
# A fresh torchvision ViT has many such tensors: its class token, head and most biases start at
# zero and its LayerNorms at $\gamma = 1, \beta = 0$. Not every bias, though: its MLP biases are
# drawn from a normal distribution with standard deviation $10^{-6}$. The cell lists what it
# finds:

# %%
zero = [name for name, p in tv.named_parameters() if not p.any()]
mlp_bias_std = torch.cat([layer.mlp[0].bias for layer in tv.encoder.layers]).std().item()
ones = [name for name, p in tv.named_parameters() if name.endswith("weight") and (p == 1).all()]
print(f"{len(zero)} of {len(list(tv.parameters()))} tensors are all zero, for example {zero[:3]}")
print(f"{len(ones)} LayerNorm weights are all ones; the MLP biases have standard deviation {mlp_bias_std:.1e}")
assert "heads.head.weight" in zero and "class_token" in zero and 1e-7 < mlp_bias_std < 1e-5

# %% [markdown]
# So before porting we add a little noise to *every* tensor. Then the port, and the comparison of
# the logits:

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
# only in the order in which they add up floating-point numbers.
#
# One more check that the $Q, K, V$ layout and the head order really agree, not just the final
# sum: torchvision's attention module can return its weights head by head, and they must equal
# ours for the first layer (`return_attention=True` is explained below).

# %%
layer0 = tv.encoder.layers[0]
with torch.no_grad():
    z0_tv = tv.conv_proj(x_tv).flatten(2).transpose(1, 2)            # (B, N, D) patch tokens
    z0_tv = torch.cat([tv.class_token.expand(len(x_tv), -1, -1), z0_tv], 1) + tv.encoder.pos_embedding
    u = layer0.ln_1(z0_tv)                                           # (B, N+1, D)
    _, w_tv = layer0.self_attention(u, u, u, need_weights=True, average_attn_weights=False)
    _, attentions = ported(x_tv, return_attention=True)
assert_close(attentions[0], w_tv, rtol=1e-5, atol=1e-5)
print(f"✓ layer 0 attention weights match head by head, {tuple(w_tv.shape)}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
a, b = logits_tv.flatten().numpy(), logits_ours.flatten().numpy()
axes[0].plot([a.min(), a.max()], [a.min(), a.max()], color="gray", lw=1, label="y = x")
axes[0].scatter(a, b, s=14, label="one logit")
axes[0].set(title="ported vitlib ViT against torchvision", xlabel="torchvision logit", ylabel="vitlib logit")
axes[0].legend()
diff = np.abs(a - b)
axes[1].hist(np.log10(diff[diff > 0]), bins=15, color="tab:green")   # log scale: exact zeros apart
axes[1].axvline(np.log10(1e-5), color="tab:red", ls="--", label="tolerance 1e-5")
axes[1].set(title=f"how different are they? ({(diff == 0).sum()} of {diff.size} are exactly equal)",
            xlabel="log10 |vitlib - torchvision|", ylabel="number of logits")
axes[1].legend()
fig.suptitle(f"Weight port from torchvision ({S} px, P = {P}, {tv_kwargs['num_layers']} layers): same logits")
fig.tight_layout()
plt.show()

# %% [markdown]
# Because nothing is downloaded here, the weights are random. With internet access the same call
# ports pretrained weights: `ViT.from_torchvision(torchvision.models.vit_b_16(weights="DEFAULT"))`
# gives an ImageNet model in `vitlib`'s form, whose attention the tools of
# [chapter 6](06_interpretation.ipynb) can then read.
#
# ```{exercise} Break the port on purpose
# :label: ex-u3-1
#
# Replace `conv_weight_to_linear(w)` by a plain `w.reshape(D, -1)` for the patch weight of
# `ported` (work on a copy) and compare its logits with torchvision's again. How large is the
# error, and why does no shape check catch it?
# ```
#
# ```{solution-start} ex-u3-1
# :class: dropdown
# ```
#
# A conv weight is stored as $(D, C, P, P)$, but `patchify` flattens each patch in (row, column,
# channel) order. Both reshapes give a $(D, K)$ matrix, so every shape fits; the plain one just
# pairs each weight with the wrong pixel, and the logits come out wrong by as much as the logits
# themselves are large.

# %%
broken = copy.deepcopy(ported)
w = tv.conv_proj.weight.detach()                                     # (D, C, P, P)
with torch.no_grad():
    broken.patch_embed.proj.weight.copy_(w.reshape(w.shape[0], -1))  # (D, K): (channel, row, column) order
    error = (broken(x_tv) - logits_tv).abs().max().item()
assert error > 100 * max_diff
print(f"plain reshape: max |difference| = {error:.2e} (the correct port: {max_diff:.1e})")

# %% [markdown]
# ```{solution-end}
# ```
#
# ```{exercise} The way back
# :label: ex-u3-2
#
# Write `linear_weight_to_conv(w, P, C)`, the inverse of `conv_weight_to_linear`: it turns a
# $(D, K)$ linear weight back into a $(D, C, P, P)$ convolution weight. Check that the round trip
# gives back `tv.conv_proj.weight` exactly, and that `F.conv2d` with your weight equals `ported`'s
# linear patch embedding.
# ```
#
# ```{solution-start} ex-u3-2
# :class: dropdown
# ```
#
# `conv_weight_to_linear` permutes $(D, C, P, P)$ to $(D, P, P, C)$ and flattens; the inverse
# unflattens to $(D, P, P, C)$ and permutes back.

# %%
def linear_weight_to_conv(w: torch.Tensor, P: int, C: int) -> torch.Tensor:
    return w.reshape(w.shape[0], P, P, C).permute(0, 3, 1, 2)         # (D, K) -> (D, C, P, P)


w_conv = tv.conv_proj.weight.detach()
assert torch.equal(linear_weight_to_conv(conv_weight_to_linear(w_conv), P, 3), w_conv)
lin = ported.patch_embed.proj
with torch.no_grad():
    by_conv = F.conv2d(x_tv, linear_weight_to_conv(lin.weight, P, 3), lin.bias, stride=P)
    assert_close(by_conv.flatten(2).transpose(1, 2), lin(patchify(x_tv, P)), rtol=1e-5, atol=1e-5)
print(f"✓ round trip exact; conv with the converted weight == linear on patches, {tuple(by_conv.shape)}")

# %% [markdown]
# ```{solution-end}
# ```

# %% [markdown]
# ## Looking inside: `return_attention=True`
#
# Passing `return_attention=True` makes the model also return a list with one
# $(B, h, N+1, N+1)$ weight tensor per layer. The logits must not change: `vitlib` switches from
# the fused kernel to the readable path, which computes the same numbers up to rounding. Every row
# of every weight matrix is a probability distribution over the $N + 1$ tokens.

# %%
with torch.no_grad():
    plain = vit(x)
    logits_a, attentions = vit(x, return_attention=True)
assert_close(logits_a, plain, rtol=1e-5, atol=1e-5)
assert len(attentions) == cfg.n_layers
assert all(a.shape == (B, cfg.n_heads, N + 1, N + 1) for a in attentions)
assert_close(attentions[-1].sum(-1), torch.ones(B, cfg.n_heads, N + 1))
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
# representation $y$: a texture classifier ($n_\text{tex}$ outputs) and a colour regressor (3
# outputs, the digit's RGB colour). Each is one more linear layer next to the **Classification
# head**. With either one on, the model returns a dict instead of a tensor:

# %%
n_tex = test32.num_textures
multi = ViT(replace(cfg, num_textures=n_tex, predict_color=True)).eval()
with torch.no_grad():
    out = multi(x)
assert set(out) == {"number", "texture", "color"}
assert out["number"].shape == (B, cfg.num_classes) and out["texture"].shape == (B, n_tex)
assert out["color"].shape == (B, 3)
extra = multi.num_parameters() - vit.num_parameters()
assert extra == (D + 1) * (n_tex + 3)
print({k: tuple(v.shape) for k, v in out.items()})
print(f"✓ three heads on one CLS token; {extra:,} extra parameters (n_tex = {n_tex} texture classes + 3)")

# %% [markdown]
# {doc}`u2_training_machinery` trains the extra heads; with them on, the loss is a
# weighted sum of the three (cross-entropy for digit and texture, mean squared error for colour).
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
assert big.pos_embed.shape == (1, 6 * 6 + 1, D) and out48.shape == (B, cfg.num_classes)
assert_close(big.pos_embed[:, 0], vit.pos_embed[:, 0])           # the CLS entry is kept as it is
same = interpolate_pos_embed(copy.deepcopy(vit), 32)              # resizing to the same size
assert_close(same.pos_embed, vit.pos_embed)                       # changes nothing
try:
    vit(x48)                                                      # the 32 px model refuses 48 px
    refused = False
except ValueError as err:
    refused = "interpolate_pos_embed" in str(err)                 # and its message names the fix
assert refused
print(f"✓ pos_embed {tuple(vit.pos_embed.shape)} -> {tuple(big.pos_embed.shape)}; "
      f"48 px images give logits {tuple(out48.shape)}")

# %% [markdown]
# `interpolate_pos_embed` replaces `pos_embed` with a new parameter, so call it before you build
# the optimizer. Without it, the model refuses a 48 px image with an error that names the fix.
#
# ## Counting FLOPs
#
# A matrix multiplication of $(n \times k)$ by $(k \times m)$ costs $nkm$ multiply-adds, or
# $2nkm$ FLOPs. Per image and per block, the linear layers act on $N + 1$ tokens and the
# attention matrix is $(N+1) \times (N+1)$ per head:
#
# $$
# \underbrace{2(N+1) \cdot 3D\,hd}_{Q,K,V} + \underbrace{2 \cdot 2(N+1)^2\,hd}_{QK^\top,\ \text{weights} \cdot V}
# + \underbrace{2(N+1)\,hd\,D}_{W_O} + \underbrace{2 \cdot 2(N+1)\,D D_\text{ff}}_{\text{MLP}} .
# $$
#
# `vitlib.model.flops_breakdown(cfg)` evaluates these formulas (LayerNorm, softmax and GELU are
# element-wise, a few FLOPs per number, and left out). To check them independently we ask
# PyTorch's own counter, `torch.utils.flop_counter.FlopCounterMode`, which records every matrix
# multiplication actually executed, module by module. We run with `return_attention=True`
# because the counter does not see inside the fused attention kernel on CPU; the readable path
# does exactly the same multiplications as explicit matmuls.

# %%
FLOP_PARTS = ["patch embedding", "attention: Q,K,V and W_O", "attention: (N+1)² matrix", "MLP", "head(s)"]


def flops_from_vitlib(c: ViTConfig) -> dict[str, int]:
    f = flops_breakdown(c)
    return {"patch embedding": f["patch_embed"],
            "attention: Q,K,V and W_O": f["attn_qkv"] + f["attn_proj"],
            "attention: (N+1)² matrix": f["attn_scores"] + f["attn_values"],
            "MLP": f["mlp"], "head(s)": f["heads"]}


def flops_measured(model: ViT) -> dict[str, int]:
    """Matmul FLOPs of one image as executed, grouped by module name."""
    counter = FlopCounterMode(display=False)
    image = torch.randn(1, model.config.in_channels, *model.config.image_hw)
    with torch.no_grad(), counter:
        model(image, return_attention=True)
    per_module = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    got = dict.fromkeys(FLOP_PARTS, 0)
    got["patch embedding"] = per_module["ViT.patch_embed"]
    got["head(s)"] = per_module["ViT.head"]
    for i in range(model.config.n_layers):
        qkv, proj = per_module[f"ViT.blocks.{i}.attn.qkv"], per_module[f"ViT.blocks.{i}.attn.proj"]
        got["attention: Q,K,V and W_O"] += qkv + proj
        got["attention: (N+1)² matrix"] += per_module[f"ViT.blocks.{i}.attn"] - qkv - proj
        got["MLP"] += per_module[f"ViT.blocks.{i}.mlp"]
    assert sum(got.values()) == per_module["Global"]          # nothing was left uncounted
    return got


torch.manual_seed(0)
original_cfg = ViTConfig.original()
original_vit = ViT(original_cfg).eval()
for name, model in [("default", vit), ("original", original_vit)]:
    assert flops_measured(model) == flops_from_vitlib(model.config)
    print(f"✓ {name}: FlopCounterMode == flops_breakdown, "
          f"{flops_per_image(model.config) / 1e6:,.1f} MFLOPs per image")

# %% [markdown]
# ## The original model next to the book's default
#
# The original project trained `ViTConfig.original()`: 224 px images cut into $16 \times 16$
# patches, $L = 6$ blocks of width $D = 128$ with $h = 8$ heads of $d = 64$, $D_\text{ff} = 256$,
# no $Q, K, V$ bias, the patch LayerNorms, LayerNorm $\epsilon = 10^{-5}$. `vitlib` reproduces
# it down to the parameter count:

# %%
assert original_vit.num_parameters() == 2_099_338
with torch.no_grad():
    out = original_vit(F.interpolate(x[:2], size=224, mode="bilinear", align_corners=False))
assert out.shape == (2, cfg.num_classes)
print(f"✓ ViTConfig.original(): {original_vit.num_parameters():,} parameters, "
      f"N + 1 = {original_cfg.num_patches + 1} tokens, {tuple(out.shape)} logits from 224 px images")

# %% [markdown]
# Parameters and FLOPs per part for both models, side by side:

# %%
PARTS = ["patch embedding", "CLS + positions", "attention", "MLP", "LayerNorms", "head(s)"]


def params_by_part(model: ViT) -> dict[str, int]:
    """Group ViT.param_breakdown()'s per-block entries into PARTS."""
    groups = dict.fromkeys(PARTS, 0)
    for key, n in model.param_breakdown().items():
        part = ("patch embedding" if key == "patch_embed" else "CLS + positions" if key.startswith("cls")
                else "attention" if key.endswith(".attn") else "MLP" if key.endswith(".mlp")
                else "LayerNorms" if key.endswith("norms") or key == "final_norm" else "head(s)")
        groups[part] += n
    return groups


labels = ["default (32 px, P=8)", "original (224 px, P=16)"]
param_table = dict(zip(labels, (params_by_part(vit), params_by_part(original_vit))))
flop_table = dict(zip(labels, (flops_from_vitlib(cfg), flops_from_vitlib(original_cfg))))


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
    ax.set(xlabel="part of the model", ylabel=f"share of all {what} (%)", title=f"Where the {what} go")
    ax.set_ylim(0, 100)                           # room for the legend above the bars
    ax.legend(fontsize=8, loc="upper right")
fig.suptitle("Parameters and FLOPs per part: book default against the original model")
fig.tight_layout()
plt.show()

# %% [markdown]
# Three things to notice:
#
# - **The blocks are the model**, in both: attention and MLP hold almost all parameters.
# - **The original's attention is unusually large.** Its $8$ heads of $d = 64$ on $D = 128$ give
#   an inner width $hd = 4D$, so its $Q, K, V$ and $W_O$ matrices are four times the usual
#   $hd = D$ and hold most of its parameters (the table's attention row).
# - **FLOPs are not parameters.** The $(N+1) \times (N+1)$ attention matrix has no parameters at
#   all, yet it costs $4(N+1)^2 hd$ FLOPs per block; the FLOPs table shows its share grow from
#   the default's 17 tokens to the original's 197.
#
# The totals, and the ratio of the two models' costs:

# %%
models = {"original\n224 px, P = 16": original_cfg, "book default\n32 px, P = 8": cfg}
stats = {label: dict(params=ViT(c).num_parameters() / 1e6, tokens=c.num_patches + 1,
                     gflops=flops_per_image(c) / 1e9) for label, c in models.items()}
ratio = flops_per_image(original_cfg) / flops_per_image(cfg)
param_ratio = original_vit.num_parameters() / vit.num_parameters()
for label, s in stats.items():
    print(f"{label.replace(chr(10), ', '):<36} {s['params']:.3f} M parameters, {s['tokens']:>3} tokens, "
          f"{s['gflops']:.3f} GFLOPs per image")
print(f"the original has {param_ratio:.1f}x the default's parameters and costs {ratio:.1f}x its FLOPs per image")
images = 50_000                                   # one epoch of a training set this size
for label, c in models.items():                   # forward + backward: about 3x the forward FLOPs
    print(f"{label.split(chr(10))[0]}: about {3 * images * flops_per_image(c):.1e} FLOPs per epoch "
          f"of {images:,} images")

fig, axes = plt.subplots(1, 3, figsize=(13, 4))
for ax, (key, title, unit) in zip(axes, [("params", "parameters", "millions"),
                                         ("tokens", "sequence length N + 1", "tokens (patches + CLS)"),
                                         ("gflops", "forward FLOPs per image", "GFLOPs")]):
    bars = ax.bar(list(stats), [s[key] for s in stats.values()], color=["tab:orange", "tab:blue"])
    ax.bar_label(bars, fmt="%.3g")
    ax.set(title=title, ylabel=unit, xlabel="model")
    ax.margins(y=0.15)                            # room for the bar labels
    ax.tick_params(axis="x", labelsize=8)
fig.suptitle("The original model against the book's CPU default")
fig.tight_layout()
plt.show()

# %% [markdown]
# The digits in our data are 28 px MNIST scans, so 224 px images mostly repeat each pixel. The
# book's default works at 32 px with $P = 8$: a $4 \times 4$ grid of patches instead of
# $14 \times 14$, the same width and depth, 4 heads of 32 instead of 8 of 64, and the printed
# ratio less compute per image, which is what makes training on a laptop CPU a matter of
# minutes. {doc}`u2_training_machinery` measures what that means in seconds.
#
# ### Try it: your own configuration
#
# Change the sizes and watch the totals (with a running kernel; the static page shows the
# defaults):

# %%
def describe(emb_dim: int = 128, n_layers: int = 6, n_heads: int = 4, mlp_dim: int = 256,
             image_size: int = 32, patch_size: int = 8) -> None:
    try:
        c = replace(cfg, emb_dim=emb_dim, n_layers=n_layers, n_heads=n_heads, mlp_dim=mlp_dim,
                    image_size=image_size, patch_size=patch_size)
    except ValueError as err:                      # e.g. a patch size that does not divide the image
        print(f"not a valid configuration: {err}")
        return
    f = flops_from_vitlib(c)
    with torch.device("meta"):                     # shapes only: counts parameters without memory
        n_params = ViT(c).num_parameters()
    print(f"N + 1 = {c.num_patches + 1} tokens, {n_params:,} parameters, "
          f"{sum(f.values()) / 1e6:,.1f} MFLOPs per image; "
          f"attention matrix {f['attention: (N+1)² matrix'] / sum(f.values()):.0%} of the FLOPs")


describe()
display(ipywidgets.interactive(
    describe,
    emb_dim=ipywidgets.IntSlider(128, 32, 512, 32), n_layers=ipywidgets.IntSlider(6, 1, 24),
    n_heads=ipywidgets.Dropdown(options=[1, 2, 4, 8], value=4),
    mlp_dim=ipywidgets.IntSlider(256, 64, 2048, 64),
    image_size=ipywidgets.Dropdown(options=[16, 32, 64, 224], value=32),
    patch_size=ipywidgets.Dropdown(options=[2, 4, 8, 16], value=8)))

# %% [markdown]
# ```{exercise} Where does the attention matrix start to dominate?
# :label: ex-u3-3
#
# Per block, the attention matrix costs $4(N+1)^2 hd$ FLOPs and the linear layers
# $2(N+1)(4D\,hd + 2D D_\text{ff})$. Find the number of tokens at which the two are equal, first
# for the book's default and then for the original model, and check your answer with
# `flops_breakdown` on configurations with that many tokens.
# ```
#
# ```{solution-start} ex-u3-3
# :class: dropdown
# ```
#
# Setting them equal gives $N + 1 = 2D + D D_\text{ff} / hd$. The original's wide attention
# ($hd = 4D$) reaches it with fewer tokens than the default. The check compares the two costs on
# a one-patch image (2 tokens: the linear layers win) and on the smallest square grid of
# $g \times g$ patches past the break-even point (the matrix wins).

# %%
def matrix_vs_linear(c: ViTConfig) -> tuple[int, int]:
    f = flops_breakdown(c)
    return f["attn_scores"] + f["attn_values"], f["attn_qkv"] + f["attn_proj"] + f["mlp"]


for name, c in [("default", cfg), ("original", original_cfg)]:
    hd = c.n_heads * c.attn_head_dim
    tokens = 2 * c.emb_dim + c.emb_dim * c.mlp_dim // hd             # N + 1 at break-even
    P_c = c.patch_size
    matrix, linear = matrix_vs_linear(replace(c, image_size=P_c, patch_size=P_c))   # 2 tokens
    assert matrix < linear                                           # short sequences: linear layers win
    g = int(np.ceil(np.sqrt(tokens)))                                # a g x g grid gives g² + 1 > tokens
    matrix, linear = matrix_vs_linear(replace(c, image_size=g * P_c, patch_size=P_c))
    assert matrix > linear                                           # longer: the matrix wins
    print(f"{name}: break-even at N + 1 = {tokens} tokens; with {g * g + 1} tokens the matrix costs "
          f"{matrix / linear:.2f}x the linear layers")

# %% [markdown]
# ```{solution-end}
# ```
#
# ```{exercise} ViT-B/16 by hand
# :label: ex-u3-4
#
# The paper's ViT-B/16 has $P = 16$ on 224 px images, $D = 768$, $L = 12$, $h = 12$,
# $D_\text{ff} = 3072$, a $Q, K, V$ bias, no patch LayerNorms and $n_\text{cls} = 1000$. Count its
# parameters by hand with chapter 4's table, then check your number against torchvision's
# `vit_b_16()` and a `vitlib` `ViT` of the same configuration, both built under
# `torch.device("meta")`, which creates the tensors' shapes but no storage.
# ```
#
# ```{solution-start} ex-u3-4
# :class: dropdown
# ```

# %%
D_b, L_b, D_ff_b, n_cls_b, N_b, K_b = 768, 12, 3072, 1000, (224 // 16) ** 2, 16 * 16 * 3
by_hand = (K_b * D_b + D_b                                     # patch embedding
           + D_b + (N_b + 1) * D_b                             # class token + positions
           + L_b * (3 * D_b * D_b + 3 * D_b + D_b * D_b + D_b)  # attention, hd = D
           + L_b * (2 * D_b * D_ff_b + D_ff_b + D_b)           # MLP
           + L_b * 4 * D_b + 2 * D_b                           # LayerNorms
           + (D_b + 1) * n_cls_b)                              # head
with torch.device("meta"):
    n_tv = sum(p.numel() for p in torchvision.models.vit_b_16().parameters())
    n_ours = ViT(ViTConfig(image_size=224, patch_size=16, emb_dim=D_b, n_layers=L_b, n_heads=12,
                           mlp_dim=D_ff_b, patch_norm=False, num_classes=n_cls_b)).num_parameters()
assert by_hand == n_tv == n_ours
print(f"✓ ViT-B/16: {by_hand:,} parameters by hand == torchvision's vit_b_16 == vitlib's ViT")

# %% [markdown]
# ```{solution-end}
# ```

# %% [markdown]
# ## Summary
#
# - torchvision's ViT and `vitlib`'s are the same function: its conv patch projection is our
#   linear layer after a permute, its fused `in_proj` is our `qkv`; `ViT.from_torchvision` ports
#   the weights with logits equal to float32 rounding and attention weights equal head by head.
#   Add noise before checking a port: tensors that start equal can hide a swap.
# - `return_attention=True` adds per-layer $(B, h, N+1, N+1)$ attention weights without changing
#   the output; the texture and colour heads are one linear layer each on the same $y$ and turn
#   the output into a dict.
# - Only the position embedding depends on the number of tokens; `interpolate_pos_embed` resizes
#   it as a $D$-channel image for a new image size and keeps the class token's entry.
# - FLOPs follow the tokens, not the parameters: the attention matrix has no parameters and
#   grows with $(N+1)^2$. The original project's 224 px model costs the printed ratio more FLOPs
#   per image than the book's 32 px default, with 197 tokens instead of 17.

# %% [markdown]
# ## Comprehension questions
#
# **1. Why is the patch weight the only tensor that needs more than a copy in the port?**
#
# ```{admonition} Answer
# :class: dropdown
# torchvision computes the patch embedding with a convolution whose weight is stored as
# $(D, C, P, P)$; `vitlib` uses a linear layer on `patchify`'s vectors in (row, column, channel)
# order. The values must be permuted into that order. Every other tensor has the same layout in
# both; only the names differ.
# ```
#
# **2. A port gives identical logits on a freshly built torchvision model. Why is that not yet a
# proof that it is right?**
#
# ```{admonition} Answer
# :class: dropdown
# A fresh model has many tensors with the same values: zero class token, head and biases,
# LayerNorms at $\gamma = 1, \beta = 0$. Swapping two of them changes nothing, and a zero head
# gives zero logits whatever came before it. Noise on every tensor makes each one distinct.
# ```
#
# **3. Why does `return_attention=True` switch `vitlib` to a slower path?**
#
# ```{admonition} Answer
# :class: dropdown
# The fused kernel (`F.scaled_dot_product_attention`) never materialises the attention weights,
# which is where its memory saving comes from. To return them, `vitlib` computes
# $\mathrm{softmax}(QK^\top/\sqrt{d})$ explicitly; the logits agree up to rounding.
# ```
#
# **4. Why does a larger image need `interpolate_pos_embed`, while the blocks work unchanged?**
#
# ```{admonition} Answer
# :class: dropdown
# The blocks act on any number of tokens: LayerNorm and the MLP token by token, attention on
# whatever sequence it gets. The position embedding has exactly one vector per grid cell, so a
# larger grid needs new vectors; interpolating the learned grid gives neighbouring cells
# similar vectors, as training had taught them.
# ```
#
# **5. The original model's FLOPs per image exceed the default's by a far larger factor than its
# parameters do (the totals cell prints both ratios). Why?**
#
# ```{admonition} Answer
# :class: dropdown
# FLOPs scale with the number of tokens, parameters do not. The original runs every linear layer
# on 197 tokens instead of 17, and its attention matrix grows with the square of the tokens.
# ```
#
# **6. Why count FLOPs with `return_attention=True`?**
#
# ```{admonition} Answer
# :class: dropdown
# PyTorch's FLOP counter on CPU does not see inside the fused attention kernel; the readable path
# does the same multiplications as explicit matmuls, which the counter records module by module.
# ```

# %%
print(f"notebook ran in {time.perf_counter() - START:.1f} s (quick mode: {QUICK})")
