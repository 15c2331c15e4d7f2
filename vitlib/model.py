"""The Vision Transformer (Dosovitskiy et al. 2020, "An Image is Worth 16x16 Words") in one file.

Read top to bottom: ViTConfig -> patchify/PatchEmbedding -> Attention -> MLP -> Block -> ViT,
then the helpers the notebooks use (porting torchvision weights, resizing the position
embedding, parameter and FLOP counts). Shapes in comments use the book's notation:
    B batch, C channels, H x W image size, P patch size (P x P pixels),
    N = HW/P^2 patches, so N+1 tokens with the CLS token, K = P*P*C values in one flattened patch,
    D width of the residual stream (emb_dim), h heads (n_heads), d = D/h head size (head_dim),
    L layers (n_layers), D_ff MLP hidden width (mlp_dim), n_cls classes (num_classes),
    n_tex texture classes (num_textures).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal, Mapping, Union, overload

import torch
import torch.nn as nn
import torch.nn.functional as F

Size = int | tuple[int, int]


def _pair(v: Size) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


# What ViT.forward returns: the digit logits (B, n_cls) of a plain classifier, or, when the
# config adds heads, {"number": (B, n_cls), "texture": (B, n_tex), "color": (B, 3)}.
Output = Union[torch.Tensor, dict[str, torch.Tensor]]


def as_heads(out: Output) -> dict[str, torch.Tensor]:
    """Any ViT output as a dict of heads: {"number": logits} for a plain classifier."""
    return out if isinstance(out, dict) else {"number": out}


# Every ViTConfig field is one of three kinds, which decides what must match when a checkpoint
# is loaded into a model built from a config:
#   "arch"     the weights' shapes and what forward() computes: always must match;
#   "train"    regularisation active only in training (dropout): must match to resume a run;
#   "runtime"  how weights start or which kernel runs (init std, attention path): never compared.
def _f(default: Any, kind: str = "arch") -> Any:
    return field(default=default, metadata={"kind": kind})


@dataclass
class ViTConfig:
    """The model's one set of defaults: the book's CPU default model (configs/default.yaml).
    Presets are named changes to it: `original()` (the original project's 224 px model), `tiny()`."""
    image_size: Size = _f(32)          # input height/width; an int means square
    patch_size: Size = _f(8)           # patch height/width; must divide image_size (the paper: 16 on 224)
    in_channels: int = _f(3)           # RGB
    num_classes: int = _f(10)          # digits 0-9 (the 'number' head)
    emb_dim: int = _f(128)             # D, width of the residual stream
    n_layers: int = _f(6)              # transformer blocks
    n_heads: int = _f(4)               # attention heads
    head_dim: int | None = _f(None)    # d; None -> emb_dim // n_heads. The original used 8 x 64 on D=128
    mlp_dim: int = _f(256)             # hidden width of each block's MLP
    patch_dropout: float = _f(0.0, "train")  # dropout on tokens after adding the position embedding
    attn_dropout: float = _f(0.0, "train")   # dropout on attention weights (the original read but ignored it)
    mlp_dropout: float = _f(0.0, "train")    # dropout in the MLP and on each residual branch's output
    qkv_bias: bool = _f(True)          # the original's qkv Linear had bias=False
    pool: str = _f("cls")              # 'cls' token or 'mean' of patch tokens feeds the heads
    patch_norm: bool = _f(True)        # LayerNorm -> Linear -> LayerNorm patch embedding (the original's)
    num_textures: int = _f(0)          # >0 adds a background-texture classification head
    predict_color: bool = _f(False)    # adds a 3-output digit-colour regression head
    norm_eps: float = _f(1e-6)         # LayerNorm eps (torchvision/timm value; the original used 1e-5)
    pos_embed: str = _f("learned")     # 'learned' table (the paper's) or fixed 2-D 'sincos' (Beyer et al. 2022)
    conv_stem: bool = _f(False)        # patches from a stack of stride-2 3x3 convs (Xiao et al. 2021)
                                       # instead of one linear map per patch; P must be a power of 2
    arch: str = _f("vit")              # 'vit', or 'cnn': vitlib.cnn.ResNet, chapter 07's baseline, which
                                       # reads only the sizes, the heads and emb_dim (its last width)
    pos_init_std: float = _f(1.0, "runtime")  # learned position-embedding std at init. Patch tokens have unit
                                       # scale: timm's 0.02 hides position at first and the model idles
                                       # at chance for an epoch; 1.0 learns faster
    fused_attn: bool = _f(True, "runtime")    # F.scaled_dot_product_attention; False -> readable manual path

    @classmethod
    def fields_of_kind(cls, *kinds: str) -> list[str]:
        """The names of the fields of these kinds ("arch", "train", "runtime")."""
        return [f.name for f in fields(cls) if f.metadata["kind"] in kinds]

    def __post_init__(self) -> None:
        # YAML and JSON give lists; keep (h, w) sizes as tuples so configs compare equal.
        for name in ("image_size", "patch_size"):
            v = getattr(self, name)
            if not isinstance(v, int):
                if len(v) != 2:
                    raise ValueError(f"{name} must be an int or (height, width), got {v!r}")
                setattr(self, name, (int(v[0]), int(v[1])))
        (H, W), (ph, pw) = _pair(self.image_size), _pair(self.patch_size)
        for name in ("in_channels", "num_classes", "emb_dim", "n_layers", "n_heads", "mlp_dim"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if min(H, W, ph, pw) < 1 or H % ph or W % pw:
            raise ValueError(
                f"image_size {H}x{W} is not divisible by patch_size {ph}x{pw} "
                f"(remainders {H % max(ph, 1)}, {W % max(pw, 1)}): pick a patch size that divides the "
                f"image (e.g. 4 or 8 for 32 px, 16 for 224 px) or resize the images")
        if self.head_dim is None and self.emb_dim % self.n_heads:
            raise ValueError(
                f"emb_dim {self.emb_dim} is not divisible by n_heads {self.n_heads}: choose n_heads "
                f"dividing emb_dim, or set head_dim explicitly (the original used head_dim=64)")
        if self.head_dim is not None and self.head_dim < 1:
            raise ValueError(f"head_dim must be a positive integer or None, got {self.head_dim}")
        if self.pos_embed not in ("learned", "sincos"):
            raise ValueError(f"unknown pos_embed {self.pos_embed!r}: use 'learned' or 'sincos'")
        if self.pos_embed == "sincos" and self.emb_dim % 4:
            raise ValueError(f"pos_embed 'sincos' needs emb_dim divisible by 4 (sin and cos of rows "
                             f"and columns), got {self.emb_dim}")
        if self.arch not in ("vit", "cnn"):
            raise ValueError(f"unknown arch {self.arch!r}: use 'vit' or 'cnn' (vitlib.cnn.ResNet)")
        if self.conv_stem and (ph != pw or ph < 2 or ph & (ph - 1)):
            raise ValueError(f"conv_stem halves the image once per 3x3 conv, so the patch must be square "
                             f"and a power of 2 (2, 4, 8, 16); got {ph}x{pw}. Fix: patch_size 4 or 8")
        if self.pool not in ("cls", "mean"):
            raise ValueError(f"unknown pool {self.pool!r}: use 'cls' or 'mean'")
        for name in ("patch_dropout", "attn_dropout", "mlp_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.pos_init_std < 0:
            raise ValueError(f"pos_init_std must be >= 0, got {self.pos_init_std}")
        if self.num_textures < 0:
            raise ValueError(f"num_textures must be >= 0 (0 turns the head off), got {self.num_textures}")

    # derived sizes ------------------------------------------------------------------------
    @property
    def image_hw(self) -> tuple[int, int]:
        return _pair(self.image_size)  # (H, W) whether image_size is an int or a pair

    @property
    def grid_size(self) -> tuple[int, int]:
        (H, W), (ph, pw) = self.image_hw, _pair(self.patch_size)
        return H // ph, W // pw

    @property
    def num_patches(self) -> int:
        gh, gw = self.grid_size
        return gh * gw

    @property
    def attn_head_dim(self) -> int:
        return self.head_dim if self.head_dim is not None else self.emb_dim // self.n_heads

    # presets ------------------------------------------------------------------------------
    @classmethod
    def original(cls) -> "ViTConfig":
        """Exactly the original implementation's model: 2,099,338 parameters."""
        return cls(image_size=224, patch_size=16, emb_dim=128, n_layers=6, n_heads=8, head_dim=64,
                   mlp_dim=256, qkv_bias=False, patch_norm=True, pool="cls", norm_eps=1e-5, pos_init_std=0.02)

    @classmethod
    def default(cls) -> "ViTConfig":
        """The CPU default (= ViTConfig()): 32 px cut into 16 patches of 8x8, ~2,000 training img/s
        in bf16 on two cores; 4x4 patches cost 3.5x more per image and learned no faster per epoch."""
        return cls()

    @classmethod
    def fine(cls) -> "ViTConfig":
        """The fine-grid model chapter 06 looks into (configs/fine.yaml): 4x4 patches, an 8x8 grid of
        64 patches, so attention maps and the position table have a visible 2-D layout; a small
        position-embedding start (0.1) so that what the table learns is not drowned by its start."""
        return cls(patch_size=4, pos_init_std=0.1)

    @classmethod
    def tiny(cls) -> "ViTConfig":
        """A seconds-to-train model for tests and quick mode."""
        return cls(image_size=16, patch_size=4, emb_dim=32, n_layers=2, n_heads=2, mlp_dim=64)

    # (de)serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ViTConfig":
        """The one way back from a dict (a checkpoint's vit_config, JSON): strict, naming any
        unknown key; lists (JSON has no tuples) become (h, w) pairs."""
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown ViTConfig field(s) {unknown}; valid: {[f.name for f in fields(cls)]}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


# --------------------------------------------------------------------------------------------
def patchify(x: torch.Tensor, patch_size: Size) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, K), K = P*P*C: row-major patches, each flattened as (ph, pw, c).

    Two free views (reshape, permute) and one unavoidable copy in the final reshape. The
    (ph, pw, c) order is the original's `rearrange(x, 'b c (nh ph) (nw pw) -> b (nh nw) (ph pw c)')`;
    a Conv2d weight (D, C, ph, pw) becomes the equivalent Linear weight with
    `w.permute(0, 2, 3, 1).reshape(D, -1)`.
    """
    B, C, H, W = x.shape
    ph, pw = _pair(patch_size)
    gh, gw = H // ph, W // pw
    x = x.reshape(B, C, gh, ph, gw, pw)             # (B, C, gh, ph, gw, pw)   view
    x = x.permute(0, 2, 4, 3, 5, 1)                 # (B, gh, gw, ph, pw, C)   view
    return x.reshape(B, gh * gw, ph * pw * C)       # (B, N, K)                one copy


def conv_weight_to_linear(w: torch.Tensor) -> torch.Tensor:
    """Conv2d patch weight (D, C, ph, pw) -> Linear weight (D, ph*pw*C) in patchify's order."""
    return w.permute(0, 2, 3, 1).reshape(w.shape[0], -1)


class ConvStem(nn.Module):
    """Xiao et al. 2021, "Early convolutions help transformers see better": log2(P) stride-2 3x3
    convs (BatchNorm, ReLU), widening towards D, then a 1x1 conv to D; one token per P x P patch."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        P, D, layers, c = _pair(cfg.patch_size)[0], cfg.emb_dim, [], cfg.in_channels
        n = P.bit_length() - 1                      # stride-2 convs: 2 for P=4, 3 for P=8
        for i in range(n):
            w = max(D >> (n - i), 8)                # D/2^n ... D/2 channels
            layers += [nn.Conv2d(c, w, 3, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
            c = w
        self.convs = nn.Sequential(*layers, nn.Conv2d(c, D, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x).flatten(2).transpose(1, 2)  # (B, D, gh, gw) -> (B, N, D), row-major


class PatchEmbedding(nn.Module):
    """Cut the image into patches and project each one to D numbers (a 'visual word')."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.patch_size = _pair(cfg.patch_size)
        K = self.patch_size[0] * self.patch_size[1] * cfg.in_channels
        if cfg.conv_stem:  # convolutions see across patch borders; a Linear sees one patch
            self.stem = ConvStem(cfg)
        else:
            # The original's pre/post LayerNorms speed up convergence; plain ViT is Linear only.
            self.stem, self.proj = None, nn.Linear(K, cfg.emb_dim)
            self.norm_in = nn.LayerNorm(K, eps=cfg.norm_eps) if cfg.patch_norm else nn.Identity()
        self.norm_out = nn.LayerNorm(cfg.emb_dim, eps=cfg.norm_eps) if cfg.patch_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stem is not None:
            return self.norm_out(self.stem(x))      # (B, N, D)
        x = patchify(x, self.patch_size)            # (B, N, K)
        return self.norm_out(self.proj(self.norm_in(x)))  # (B, N, D)


class Attention(nn.Module):
    """Multi-head self-attention: every token looks at every token, h times in parallel."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.n_heads, self.head_dim = cfg.n_heads, cfg.attn_head_dim
        inner = self.n_heads * self.head_dim        # 512 in the original (8 x 64), not D
        self.qkv = nn.Linear(cfg.emb_dim, 3 * inner, bias=cfg.qkv_bias)  # q, k, v in one matmul
        self.proj = nn.Linear(inner, cfg.emb_dim)
        self.attn_drop = nn.Dropout(cfg.attn_dropout)
        self.proj_drop = nn.Dropout(cfg.mlp_dropout)
        # Which path forward() takes: the config's value at first; training runs set it from the
        # precision probe with set_fused_attention() (vitlib.runtime), since which path is faster
        # depends on the CPU and dtype (fused bf16 backward is several times slower on some CPUs).
        self.fused = cfg.fused_attn

    def forward(self, x: torch.Tensor, return_weights: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, N, _ = x.shape                           # this N counts all tokens: N+1 in the ViT
        h, d = self.n_heads, self.head_dim
        qkv = self.qkv(x).reshape(B, N, 3, h, d)    # (B, N+1, 3, h, d); same split as the original
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, h, N+1, d), views
        if self.fused and not return_weights:
            # One kernel (flash attention on CPU and GPU): never materialises (B, h, N+1, N+1).
            p = self.attn_drop.p if self.training else 0.0
            out, weights = F.scaled_dot_product_attention(q, k, v, dropout_p=p), None
        else:
            # The readable path: softmax(Q K^T / sqrt(d)) V. Scaling q ((N+1) x d) rather than the
            # scores ((N+1) x (N+1)) is the same maths on 3x fewer numbers at N+1=197, d=64.
            scores = (q * d ** -0.5) @ k.transpose(-2, -1)  # (B, h, N+1, N+1)
            weights = scores.softmax(dim=-1)        # each row sums to 1
            out = self.attn_drop(weights) @ v       # (B, h, N+1, d)
        out = out.transpose(1, 2).reshape(B, N, h * d)  # (B, N+1, h*d), heads side by side
        return self.proj_drop(self.proj(out)), weights  # (B, N+1, D)


def set_fused_attention(model: nn.Module, fused: bool) -> int:
    """Point every Attention module in `model` (also inside DDP or torch.compile wrappers) at the
    fused kernel (True) or the manual path (False); returns how many it set. The config is left
    as it is, so a checkpoint keeps the user's fused_attn and a model loaded from it starts there."""
    modules = [m for m in model.modules() if isinstance(m, Attention)]
    for m in modules:
        m.fused = bool(fused)
    return len(modules)


class MLP(nn.Module):
    """Position-wise feed-forward: the same two-layer network applied to every token."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.emb_dim, cfg.mlp_dim)
        self.act = nn.GELU()                        # exact (erf) GELU, as the original and torchvision
        self.fc2 = nn.Linear(cfg.mlp_dim, cfg.emb_dim)
        self.drop = nn.Dropout(cfg.mlp_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))  # (B, N+1, D_ff) -> (B, N+1, D)


class Block(nn.Module):
    """Pre-norm transformer block: x + Attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.emb_dim, eps=cfg.norm_eps)
        self.attn = Attention(cfg)
        self.norm2 = nn.LayerNorm(cfg.emb_dim, eps=cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, return_weights: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        a, weights = self.attn(self.norm1(x), return_weights)
        x = x + a                                   # (B, N+1, D) residual stream
        x = x + self.mlp(self.norm2(x))
        return x, weights


class ViT(nn.Module):
    """Patches + CLS token + position embedding -> n_layers Blocks -> LayerNorm -> heads."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.config = cfg = config
        D = cfg.emb_dim
        self.patch_embed = PatchEmbedding(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))                    # (1, 1, D)
        if cfg.pos_embed == "sincos":  # fixed: a buffer, saved with the weights but never trained
            self.register_buffer("pos_embed", sincos_pos_embed(cfg.grid_size, D))  # (1, N+1, D)
        else:
            self.pos_embed = nn.Parameter(torch.zeros(1, cfg.num_patches + 1, D))  # (1, N+1, D)
        self.pos_drop = nn.Dropout(cfg.patch_dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = nn.LayerNorm(D, eps=cfg.norm_eps)
        self.head = nn.Linear(D, cfg.num_classes)
        self.texture_head = nn.Linear(D, cfg.num_textures) if cfg.num_textures else None
        self.color_head = nn.Linear(D, 3) if cfg.predict_color else None
        self.apply(self._init_weights)
        s = cfg.pos_init_std  # 0 gives the original's all-zero start
        if cfg.pos_embed == "learned":
            nn.init.trunc_normal_(self.pos_embed, std=s) if s > 0 else nn.init.zeros_(self.pos_embed)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        # timm's ViT init: small truncated-normal weights, zero biases, identity LayerNorms.
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def _check_input(self, x: torch.Tensor) -> None:
        # Fail here with the numbers, not deep inside a reshape.
        cfg = self.config
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            hint = " (one image? use x.unsqueeze(0))" if isinstance(x, torch.Tensor) and x.dim() == 3 else ""
            raise ValueError(f"ViT expects images of shape (B, C, H, W), got {shape}{hint}")
        if x.shape[1] != cfg.in_channels:
            raise ValueError(f"ViT expects {cfg.in_channels} channels, got {x.shape[1]} "
                             f"(input shape {tuple(x.shape)})")
        if tuple(x.shape[2:]) != cfg.image_hw:
            H, W = cfg.image_hw
            raise ValueError(f"ViT was built for {H}x{W} images, got {x.shape[2]}x{x.shape[3]}: resize "
                             f"the input, or call interpolate_pos_embed(model, new_size) first")

    @overload
    def forward(self, x: torch.Tensor, return_attention: Literal[False] = False) -> Output: ...

    @overload
    def forward(self, x: torch.Tensor, return_attention: Literal[True]) -> tuple[Output, list[torch.Tensor]]: ...

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        """The digit logits (B, n_cls), or a dict {'number', 'texture', 'color'} when extra
        heads are on (see Output; `as_heads` reads either). With return_attention=True:
        (that output, the attention weights of every layer, L x (B, h, N+1, N+1))."""
        self._check_input(x)
        B = x.shape[0]
        x = self.patch_embed(x)                                   # (B, N, D)
        x = torch.cat([self.cls_token.expand(B, -1, -1), x], 1)   # (B, N+1, D), CLS first
        x = self.pos_drop(x + self.pos_embed)
        attentions = []
        for block in self.blocks:
            x, w = block(x, return_attention)
            attentions.append(w)
        if self.config.pool == "cls":
            z = self.norm(x[:, 0])          # (B, D); LayerNorm is per token, so norming only CLS suffices
        else:
            z = self.norm(x[:, 1:]).mean(1)  # (B, D), average of the patch tokens
        heads = {"number": self.head(z)}    # (B, n_cls)
        if self.texture_head is not None:
            heads["texture"] = self.texture_head(z)  # (B, n_tex)
        if self.color_head is not None:
            heads["color"] = self.color_head(z)      # (B, 3)
        out = heads["number"] if len(heads) == 1 else heads  # a plain tensor, like any classifier
        return (out, attentions) if return_attention else out

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def param_breakdown(self) -> dict[str, int]:
        """Parameters per part, in forward order; the values sum to num_parameters()."""
        n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        out = {"patch_embed": n(self.patch_embed),
               "cls_token+pos_embed": self.cls_token.numel() + self.pos_embed.numel()}
        for i, b in enumerate(self.blocks):
            out[f"block{i}.attn"] = n(b.attn)
            out[f"block{i}.mlp"] = n(b.mlp)
            out[f"block{i}.norms"] = n(b.norm1) + n(b.norm2)
        out["final_norm"] = n(self.norm)
        out["heads"] = sum(n(h) for h in (self.head, self.texture_head, self.color_head) if h is not None)
        return out

    @classmethod
    def from_torchvision(cls, tv: nn.Module) -> "ViT":
        """A vitlib ViT with the weights of a torchvision.models.VisionTransformer (same logits)."""
        if not (hasattr(tv, "conv_proj") and hasattr(tv, "encoder") and hasattr(tv, "heads")):
            raise ValueError(f"expected a torchvision.models.VisionTransformer, got {type(tv).__name__}")
        if not isinstance(tv.conv_proj, nn.Conv2d) or list(dict(tv.heads.named_children())) != ["head"]:
            raise ValueError("only torchvision ViTs with the plain conv patch stem and a single "
                             "Linear head (no conv_stem_configs, no representation_size) can be ported")
        layers = list(tv.encoder.layers)
        cfg = ViTConfig(image_size=tv.image_size, patch_size=tv.patch_size,
                        in_channels=tv.conv_proj.in_channels, num_classes=tv.heads.head.out_features,
                        emb_dim=tv.hidden_dim, n_layers=len(layers), n_heads=layers[0].num_heads,
                        mlp_dim=tv.mlp_dim, qkv_bias=True, patch_norm=False, pool="cls",
                        norm_eps=tv.encoder.ln.eps, patch_dropout=tv.dropout,
                        attn_dropout=tv.attention_dropout, mlp_dropout=tv.dropout)
        model = cls(cfg)
        sd = {"patch_embed.proj.weight": conv_weight_to_linear(tv.conv_proj.weight),
              "patch_embed.proj.bias": tv.conv_proj.bias,
              "cls_token": tv.class_token, "pos_embed": tv.encoder.pos_embedding,
              "norm.weight": tv.encoder.ln.weight, "norm.bias": tv.encoder.ln.bias,
              "head.weight": tv.heads.head.weight, "head.bias": tv.heads.head.bias}
        for i, layer in enumerate(layers):
            sa, p = layer.self_attention, f"blocks.{i}."
            sd.update({p + "norm1.weight": layer.ln_1.weight, p + "norm1.bias": layer.ln_1.bias,
                       p + "attn.qkv.weight": sa.in_proj_weight, p + "attn.qkv.bias": sa.in_proj_bias,
                       p + "attn.proj.weight": sa.out_proj.weight, p + "attn.proj.bias": sa.out_proj.bias,
                       p + "norm2.weight": layer.ln_2.weight, p + "norm2.bias": layer.ln_2.bias,
                       p + "mlp.fc1.weight": layer.mlp[0].weight, p + "mlp.fc1.bias": layer.mlp[0].bias,
                       p + "mlp.fc2.weight": layer.mlp[3].weight, p + "mlp.fc2.bias": layer.mlp[3].bias})
        model.load_state_dict({k: v.detach().clone() for k, v in sd.items()}, strict=True)
        return model.to(tv.conv_proj.weight.device)


def sincos_pos_embed(grid: tuple[int, int], D: int, temperature: float = 10000.0) -> torch.Tensor:
    """The fixed 2-D sin-cos position table of Beyer et al. 2022 (big_vision's posemb_sincos_2d),
    with an all-zero row for the CLS token in front -> (1, 1 + gh*gw, D).

    A quarter of the D numbers are sin(x w_k), a quarter cos(x w_k), then the same of the row y, with
    frequencies w_k = temperature^(-k/(D/4-1)): near patches get similar vectors by construction.
    """
    gh, gw = grid
    y, x = torch.meshgrid(torch.arange(gh, dtype=torch.float64), torch.arange(gw, dtype=torch.float64),
                          indexing="ij")
    omega = 1.0 / temperature ** (torch.arange(D // 4, dtype=torch.float64) / max(1, D // 4 - 1))
    x = x.flatten()[:, None] * omega[None]                              # (N, D/4)
    y = y.flatten()[:, None] * omega[None]
    table = torch.cat([x.sin(), x.cos(), y.sin(), y.cos()], dim=1)      # (N, D)
    return torch.cat([torch.zeros(1, D, dtype=torch.float64), table])[None].float()


def interpolate_pos_embed(model: ViT, new_image_size: Size) -> ViT:
    """Resize the learned position grid (bicubic; the CLS entry is kept) for a new image size.

    Fine-tuning at a higher resolution, as in the paper's section 3.2. Call this before
    building the optimizer: pos_embed becomes a new Parameter.
    """
    cfg = model.config
    new_cfg = replace(cfg, image_size=new_image_size)  # validates divisibility
    (gh, gw), (nh, nw), D = cfg.grid_size, new_cfg.grid_size, cfg.emb_dim
    model.config = new_cfg
    if cfg.pos_embed == "sincos":  # a fixed table is simply computed for the new grid
        model.pos_embed = sincos_pos_embed((nh, nw), D).to(model.pos_embed.device)
        return model
    pos = model.pos_embed.detach()
    cls_pos, grid = pos[:, :1], pos[:, 1:].reshape(1, gh, gw, D).permute(0, 3, 1, 2)  # (1, D, gh, gw)
    grid = F.interpolate(grid.float(), size=(nh, nw), mode="bicubic", align_corners=False)
    grid = grid.to(pos.dtype).permute(0, 2, 3, 1).reshape(1, nh * nw, D)
    model.pos_embed = nn.Parameter(torch.cat([cls_pos, grid], 1))  # (1, 1 + nh*nw, D)
    return model


def flops_breakdown(cfg: ViTConfig) -> dict[str, int]:
    """Forward matmul FLOPs (2 x multiply-adds) for one image, per part; excludes norms/softmax."""
    N, D, M = cfg.num_patches + 1, cfg.emb_dim, cfg.mlp_dim  # here N counts all N+1 tokens
    A = cfg.n_heads * cfg.attn_head_dim
    ph, pw = _pair(cfg.patch_size)
    L = cfg.n_layers
    heads = cfg.num_classes + cfg.num_textures + (3 if cfg.predict_color else 0)
    return {"patch_embed": 2 * cfg.num_patches * ph * pw * cfg.in_channels * D,
            "attn_qkv": L * 2 * N * D * 3 * A,
            "attn_scores": L * 2 * N * N * A,          # Q K^T
            "attn_values": L * 2 * N * N * A,          # weights @ V
            "attn_proj": L * 2 * N * A * D,
            "mlp": L * 2 * N * D * M * 2,
            "heads": 2 * D * heads}


def flops_per_image(cfg: ViTConfig) -> int:
    """Forward FLOPs per image; a training step (forward + backward) costs about 3x this."""
    return sum(flops_breakdown(cfg).values())
