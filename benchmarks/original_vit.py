"""A faithful re-implementation of the original project's ViT, used only as the speed baseline.

Same modules, same parameter layout (2,099,338 parameters at its default.yaml), same operations
in the same order: patch rearrange -> LayerNorm -> Linear -> LayerNorm, CLS concatenation,
position embedding, pre-norm blocks whose attention is computed by hand in fp32
(matmul, scale, softmax, matmul), final LayerNorm, CLS -> Linear. einops' `rearrange` calls are
written as the reshape/permute they perform, so einops is not needed.
"""
from __future__ import annotations

import torch
import torch.nn as nn


class PatchEmbedding(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        self.patch_height, self.patch_width = config["patch_height"], config["patch_width"]
        num_patches = (config["image_height"] // self.patch_height) * (config["image_width"] // self.patch_width)
        patch_dim = config["im_channels"] * self.patch_height * self.patch_width
        emb_dim = config["emb_dim"]
        self.patch_embed = nn.Sequential(nn.LayerNorm(patch_dim), nn.Linear(patch_dim, emb_dim),
                                         nn.LayerNorm(emb_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, emb_dim))
        self.cls_token = nn.Parameter(torch.randn(emb_dim))
        self.patch_emb_dropout = nn.Dropout(config["patch_emb_drop"])

    def forward(self, x):
        b, c, h, w = x.shape
        ph, pw = self.patch_height, self.patch_width
        # rearrange(x, 'b c (nh ph) (nw pw) -> b (nh nw) (ph pw c)')
        out = x.reshape(b, c, h // ph, ph, w // pw, pw).permute(0, 2, 4, 3, 5, 1)
        out = out.reshape(b, (h // ph) * (w // pw), ph * pw * c)
        out = self.patch_embed(out)
        cls_tokens = self.cls_token.reshape(1, 1, -1).repeat(b, 1, 1)  # repeat(cls, 'd -> b 1 d')
        out = torch.cat((cls_tokens, out), dim=1)
        out += self.pos_embed
        return self.patch_emb_dropout(out)


class Attention(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        self.n_heads, self.head_dim, self.emb_dim = config["n_heads"], config["head_dim"], config["emb_dim"]
        self.drop_prob = config["dropout"] if "dropout" in config else 0.0  # attn_drop was never read
        self.att_dim = self.n_heads * self.head_dim
        self.qkv_proj = nn.Linear(self.emb_dim, 3 * self.att_dim, bias=False)
        self.output_proj = nn.Sequential(nn.Linear(self.att_dim, self.emb_dim), nn.Dropout(self.drop_prob))
        self.attn_dropout = nn.Dropout(self.drop_prob)

    def forward(self, x):
        B, N = x.shape[:2]
        q, k, v = self.qkv_proj(x).split(self.att_dim, dim=-1)
        # rearrange(t, 'b n (n_h h_dim) -> b n_h n h_dim')
        q, k, v = (t.reshape(B, N, self.n_heads, self.head_dim).permute(0, 2, 1, 3) for t in (q, k, v))
        att = torch.matmul(q, k.transpose(-2, -1)) * (self.head_dim ** (-0.5))
        att = torch.nn.functional.softmax(att, dim=-1)
        att = self.attn_dropout(att)
        out = torch.matmul(att, v)
        out = out.permute(0, 2, 1, 3).reshape(B, N, self.att_dim)  # 'b n_h n h_dim -> b n (n_h h_dim)'
        return self.output_proj(out)


class TransformerLayer(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        emb_dim = config["emb_dim"]
        ff_hidden_dim = config["ff_dim"] if "ff_dim" in config else 4 * emb_dim
        ff_drop_prob = config["ff_drop"] if "ff_drop" in config else 0.0
        self.att_norm = nn.LayerNorm(emb_dim)
        self.attn_block = Attention(config)
        self.ff_norm = nn.LayerNorm(emb_dim)
        self.ff_block = nn.Sequential(nn.Linear(emb_dim, ff_hidden_dim), nn.GELU(), nn.Dropout(ff_drop_prob),
                                      nn.Linear(ff_hidden_dim, emb_dim), nn.Dropout(ff_drop_prob))

    def forward(self, x):
        out = x
        out = out + self.attn_block(self.att_norm(out))
        out = out + self.ff_block(self.ff_norm(out))
        return out


class OriginalViT(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        self.patch_embed_layer = PatchEmbedding(config)
        self.layers = nn.ModuleList([TransformerLayer(config) for _ in range(config["n_layers"])])
        self.norm = nn.LayerNorm(config["emb_dim"])
        self.fc_number = nn.Linear(config["emb_dim"], config["num_classes"])

    def forward(self, x):
        out = self.patch_embed_layer(x)
        for layer in self.layers:
            out = layer(out)
        out = self.norm(out)
        return self.fc_number(out[:, 0])


# config/default.yaml of the original (its dropouts of 0.1 set to 0 for a like-for-like speed test).
DEFAULT_MODEL_PARAMS = dict(n_heads=8, head_dim=64, emb_dim=128, ff_dim=256, n_layers=6, num_classes=10,
                            image_height=224, image_width=224, patch_height=16, patch_width=16,
                            im_channels=3, patch_emb_drop=0.0, attn_drop=0.0, ff_drop=0.0)
