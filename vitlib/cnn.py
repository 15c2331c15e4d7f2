"""A small ResNet: the convolutional baseline chapter 07 races against the ViT.

It reads the same ViTConfig (`arch: cnn` selects it), so it trains with the same `vitlib.train`,
config files and checkpoints. Only image size, channels, classes, the extra heads and `emb_dim`
(the last stage's width) matter to it. Shapes: B batch, C channels, H x W image, D = emb_dim.

    stem     3x3 conv, C -> D/4                          (B, D/4, H, W)
    stage 1  two basic blocks, the first with stride 2  (B, D/4, H/2, W/2)
    stage 2  two basic blocks, D/2 wide                 (B, D/2, H/4, W/4)
    stage 3  two basic blocks, D wide                   (B, D,   H/8, W/8)
    global average pool -> heads                        (B, D) -> (B, n_cls)

With D = 128: 697,706 parameters, 15% fewer than the default ViT's 824,074.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from vitlib.model import Output, ViT, ViTConfig


class BasicBlock(nn.Module):
    """He et al. 2016: x + F(x), F = conv-BN-ReLU-conv-BN; a 1x1 conv matches the shapes when
    the block halves the resolution or changes the width."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))       # (B, c_out, H', W')
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    """Stem, three stages of two basic blocks (D/4, D/2, D wide), global average pool, heads."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.config = cfg = config
        D = cfg.emb_dim
        if D % 4:
            raise ValueError(f"the CNN's stage widths are emb_dim/4, /2 and /1; emb_dim={D} is not "
                             f"divisible by 4. Fix: e.g. emb_dim 128")
        widths = (D // 4, D // 2, D)
        self.stem = nn.Sequential(nn.Conv2d(cfg.in_channels, widths[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU())
        blocks, c = [], widths[0]
        for w in widths:
            blocks += [BasicBlock(c, w, stride=2), BasicBlock(w, w, stride=1)]
            c = w
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(D, cfg.num_classes)
        self.texture_head = nn.Linear(D, cfg.num_textures) if cfg.num_textures else None
        self.color_head = nn.Linear(D, 3) if cfg.predict_color else None
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled features (B, D) that feed the heads."""
        if x.dim() != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"the CNN expects images (B, {self.config.in_channels}, H, W), got {tuple(x.shape)}")
        x = self.blocks(self.stem(x))               # (B, D, H/8, W/8)
        return x.mean(dim=(2, 3))                   # (B, D)

    def forward(self, x: torch.Tensor) -> Output:
        z = self.features(x)
        heads = {"number": self.head(z)}            # (B, n_cls)
        if self.texture_head is not None:
            heads["texture"] = self.texture_head(z)
        if self.color_head is not None:
            heads["color"] = self.color_head(z)
        return heads["number"] if len(heads) == 1 else heads

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def build_model(config: ViTConfig) -> nn.Module:
    """The model a config asks for: the ViT (`arch: vit`, the default) or this ResNet (`arch: cnn`)."""
    return ResNet(config) if config.arch == "cnn" else ViT(config)
