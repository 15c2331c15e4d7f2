"""Looking inside a trained ViT: attention rollout and the analyses of the ViT paper's Fig. 7.

All functions take plain tensors (or a model) and return tensors, so the notebooks can plot
them however they like; vitlib.viz draws the standard figures.

`attentions` is what `ViT.forward(x, return_attention=True)` returns: a list with one
(B, heads, N, N) tensor per layer, rows summing to 1, token 0 the CLS token when the model
has one (N = 1 + gh*gw), else N = gh*gw.
"""
from __future__ import annotations

import torch

from vitlib.checkpoint import unwrap


def _stack(attentions) -> torch.Tensor:
    """(L, B, H, N, N) float32 on CPU from a list of per-layer tensors (or a stacked tensor)."""
    a = torch.stack(list(attentions)) if not torch.is_tensor(attentions) else attentions
    if a.dim() != 5 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"attentions must be (layers, B, heads, N, N) or a list of (B, heads, N, N); "
                         f"got shape {tuple(a.shape)}")
    return a.detach().float().cpu()


def _fuse(a: torch.Tensor, head_fusion: str) -> torch.Tensor:
    if head_fusion == "mean":
        return a.mean(dim=1)
    if head_fusion == "max":
        return a.amax(dim=1)
    if head_fusion == "min":
        return a.amin(dim=1)
    raise ValueError(f"head_fusion must be 'mean', 'max' or 'min', got {head_fusion!r}")


def attention_rollout(attentions, variant: str = "abnar", discard_ratio: float = 0.0,
                      head_fusion: str | None = None,
                      grid: tuple[int, int] | None = None, pool: str = "cls") -> torch.Tensor:
    """Attention rollout: how much each input token flows into each output token.

    variant='original' is the original project's inference.py, step for step: per head, add the
      identity (the residual connection) and renormalise rows; then fuse heads with `max`; then
      multiply the layers together. Because the max is taken after renormalising, rows of the
      fused matrix need not sum to 1 -- harmless for the picture, which is scaled by its max.
    variant='abnar' is Abnar & Zuidema (2020) as in the widely used jacobgil implementation:
      fuse heads (mean by default), optionally zero the weakest `discard_ratio` of each row
      (never the attention to the CLS token), then A = 0.5*A + 0.5*I, rows renormalised,
      multiplied through the layers. Every row of the result sums to 1.

    Returns the (B, N, N) rollout, or with grid=(gh, gw) the map of the image patches that the
    output reads, (B, gh, gw): the CLS row, or for pool='mean' the mean of the patch rows.
    """
    a = _stack(attentions)
    L, B, H, N, _ = a.shape
    eye = torch.eye(N)
    result = eye.expand(B, N, N).clone()
    if variant == "original":
        fusion = head_fusion or "max"
        for layer in a:
            layer = layer + eye
            layer = layer / layer.sum(dim=-1, keepdim=True)
            result = _fuse(layer, fusion) @ result
    elif variant == "abnar":
        fusion = head_fusion or "mean"
        if not 0.0 <= discard_ratio < 1.0:
            raise ValueError(f"discard_ratio must be in [0, 1), got {discard_ratio}")
        for layer in a:
            fused = _fuse(layer, fusion)
            if discard_ratio > 0:
                fused = _discard(fused, discard_ratio)
            fused = 0.5 * fused + 0.5 * eye
            fused = fused / fused.sum(dim=-1, keepdim=True)
            result = fused @ result
    else:
        raise ValueError(f"variant must be 'original' or 'abnar', got {variant!r}")
    return result if grid is None else rollout_map(result, grid, pool)


def _discard(fused: torch.Tensor, ratio: float) -> torch.Tensor:
    """Zero the `ratio` lowest weights of every row, keeping column 0 (attention to CLS)."""
    B, N, _ = fused.shape
    k = int(N * ratio)
    if k == 0:
        return fused
    scores = fused.clone()
    scores[..., 0] = float("inf")  # never among the lowest
    idx = scores.topk(k, dim=-1, largest=False).indices
    return fused.scatter(-1, idx, 0.0)


def rollout_map(result: torch.Tensor, grid: tuple[int, int], pool: str = "cls") -> torch.Tensor:
    """(B, N, N) rollout -> (B, gh, gw): how much the pooled output token reads from each patch."""
    gh, gw = grid
    B, N, _ = result.shape
    if N == gh * gw + 1:     # CLS token at index 0
        row = result[:, 0, 1:] if pool == "cls" else result[:, 1:, 1:].mean(dim=1)
    elif N == gh * gw:       # no CLS token: the output averages every token's row
        row = result.mean(dim=1)
    else:
        raise ValueError(f"{N} tokens do not fit a {gh}x{gw} patch grid (expected {gh * gw} or "
                         f"{gh * gw + 1} with a CLS token)")
    return row.reshape(B, gh, gw)


# ---------------------------------------------------------------------------- Fig. 7 centre

def pos_embed_table(model: torch.nn.Module) -> torch.Tensor:
    """The position embeddings of the patch tokens (learned or fixed; the CLS row dropped), (gh*gw, D)."""
    model = unwrap(model)
    gh, gw = model.config.grid_size
    pe = None
    # a learned table is a parameter, a fixed sin-cos one a buffer
    for name, p in [*model.named_parameters(), *model.named_buffers()]:
        if name.split(".")[-1] in ("pos_embed", "pos_embedding", "position_embedding"):
            pe = p
            break
    if pe is None:
        raise ValueError("model has no parameter called pos_embed; cannot plot position similarity")
    pe = pe.detach().float().cpu().reshape(-1, pe.shape[-1])
    if pe.shape[0] == gh * gw + 1:
        pe = pe[1:]          # drop the CLS position
    if pe.shape[0] != gh * gw:
        raise ValueError(f"pos_embed has {pe.shape[0]} positions, the grid {gh}x{gw} needs {gh * gw}")
    return pe


def pos_embed_similarity(model: torch.nn.Module) -> torch.Tensor:
    """Cosine similarity of every patch's position embedding with every other -> (gh*gw, gh, gw).

    Entry [i] is the heatmap for patch i (row-major): ViT paper Fig. 7 (centre) draws one per
    patch. The original hard-coded a 14x14 grid; the grid here comes from the model's config.
    """
    gh, gw = unwrap(model).config.grid_size
    pe = torch.nn.functional.normalize(pos_embed_table(model), dim=-1)
    return (pe @ pe.T).reshape(gh * gw, gh, gw)


def _ranks(x: torch.Tensor) -> torch.Tensor:
    """Average ranks (ties share the mean of their ranks), 0-based, as Spearman's rho needs."""
    x = x.double()
    order = torch.argsort(x, stable=True)
    ranks = torch.empty_like(x)
    ranks[order] = torch.arange(len(x), dtype=x.dtype)
    _, inverse, counts = torch.unique(x, return_inverse=True, return_counts=True)
    sums = torch.zeros(len(counts), dtype=x.dtype).index_add_(0, inverse, ranks)
    return (sums / counts)[inverse]


def spearman(x: torch.Tensor, y: torch.Tensor) -> float:
    """Spearman's rank correlation of two 1-D tensors: Pearson's r of their ranks."""
    rx, ry = _ranks(x.flatten()), _ranks(y.flatten())
    rx, ry = rx - rx.mean(), ry - ry.mean()
    return float((rx @ ry) / (rx.norm() * ry.norm()))


def pos_embed_spearman(model_or_table: torch.nn.Module | torch.Tensor,
                       grid: tuple[int, int] | None = None) -> float:
    """Spearman's rho between the cosine similarity of two patches' position embeddings and the
    distance between the patches on the grid, over all pairs. -1: similarity falls with distance
    perfectly (a table that knows the 2-D layout); 0: no relation (a random table).
    Takes a model, or a (gh*gw, D) table and its grid."""
    if isinstance(model_or_table, torch.Tensor):
        pe = model_or_table.detach().float().reshape(-1, model_or_table.shape[-1])
        if grid is None or pe.shape[0] != grid[0] * grid[1]:
            raise ValueError(f"a ({'gh*gw'}, D) table needs its grid; got {tuple(pe.shape)} and grid {grid}")
    else:
        pe, grid = pos_embed_table(model_or_table), unwrap(model_or_table).config.grid_size
    pe = torch.nn.functional.normalize(pe, dim=-1)
    i, j = torch.triu_indices(len(pe), len(pe), offset=1)
    return spearman((pe @ pe.T)[i, j], patch_distances(grid)[i, j])


# ---------------------------------------------------------------------------- Fig. 7 right

def patch_distances(grid: tuple[int, int], patch_size: int | tuple[int, int] = 1) -> torch.Tensor:
    """(P, P) Euclidean distance between patch centres, in pixels (P = gh*gw)."""
    gh, gw = grid
    ph, pw = (patch_size, patch_size) if isinstance(patch_size, int) else patch_size
    ys, xs = torch.meshgrid(torch.arange(gh) * ph, torch.arange(gw) * pw, indexing="ij")
    pos = torch.stack([ys.flatten(), xs.flatten()], -1).float()
    return torch.cdist(pos, pos)


def mean_attention_distance(attentions, grid: tuple[int, int],
                            patch_size: int | tuple[int, int] = 1) -> torch.Tensor:
    """Mean attention distance per layer and head -> (layers, heads), in pixels.

    For each query patch: the attention-weighted mean distance to the key patches, averaged over
    query patches and images (ViT paper Fig. 7 right: "attention distance", the analogue of a
    CNN's receptive field). The CLS token has no position, so its row and column are dropped
    and each patch row is renormalised over the patches. Pass the model's patch_size to get
    pixels (the default 1 gives distances in patches).
    """
    a = _stack(attentions)
    gh, gw = grid
    P = gh * gw
    N = a.shape[-1]
    if N == P + 1:
        a = a[..., 1:, 1:]
    elif N != P:
        raise ValueError(f"{N} tokens do not fit a {gh}x{gw} patch grid")
    a = a / a.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    d = patch_distances(grid, patch_size)
    per_query = (a * d).sum(dim=-1)              # (L, B, H, P)
    return per_query.mean(dim=(1, 3))            # (L, H)


# ---------------------------------------------------------------------------- Fig. 7 left

def patch_embedding_weight(model: torch.nn.Module) -> torch.Tensor:
    """The patch projection as (D, C, ph, pw) filters.

    With patch_norm (the original's LayerNorm on raw patches before the linear layer) the
    LayerNorm's scale is folded in (W * gamma); its per-patch centring and scaling is not linear
    and is ignored, as is its bias (which only shifts the output).
    """
    model = unwrap(model)
    cfg = model.config
    ph, pw = (cfg.patch_size, cfg.patch_size) if isinstance(cfg.patch_size, int) else tuple(cfg.patch_size)
    C = cfg.in_channels
    w = model.patch_embed.proj.weight.detach().float().cpu()       # (D, ph*pw*C)
    norm = model.patch_embed.norm_in
    if isinstance(norm, torch.nn.LayerNorm) and norm.weight is not None:
        w = w * norm.weight.detach().float().cpu()
    # vitlib's patchify flattens a patch as (ph, pw, c), the original's '(ph pw c)' order.
    return w.reshape(-1, ph, pw, C).permute(0, 3, 1, 2)


def patch_filter_pca(model: torch.nn.Module, k: int = 28,
                     return_variance: bool = False):
    """Top-k principal components of the patch-embedding filters -> (k, C, ph, pw).

    Each of the D output units of the patch projection is a filter over a C x ph x pw patch;
    PCA over those D filters gives the "RGB embedding filters" of ViT paper Fig. 7 (left).
    With return_variance=True also returns the explained-variance ratio of each component.
    """
    w = patch_embedding_weight(model)
    C, ph, pw = w.shape[1:]
    flat = w.reshape(w.shape[0], -1)
    flat = flat - flat.mean(dim=0, keepdim=True)
    k = min(k, *flat.shape)
    _, s, vh = torch.linalg.svd(flat, full_matrices=False)
    comps = vh[:k].reshape(k, C, ph, pw)
    if return_variance:
        var = s**2
        return comps, (var[:k] / var.sum().clamp_min(1e-12))
    return comps


def analytic_mean_distance(grid: tuple[int, int], patch_size: int | tuple[int, int] = 1) -> float:
    """Mean distance between two uniformly drawn patches (self pairs included), for reference."""
    return float(patch_distances(grid, patch_size).mean())


__all__ = ["attention_rollout", "rollout_map", "pos_embed_table", "pos_embed_similarity",
           "pos_embed_spearman", "spearman", "mean_attention_distance",
           "patch_distances", "patch_filter_pca", "patch_embedding_weight", "analytic_mean_distance"]


# ---------------------------------------------------------------------------- explanations scored against the digit mask
# ColoredMNIST knows exactly which pixels are the digit, so an explanation map (vitlib.explain)
# can be scored, not only looked at: does its top patch touch the digit, and how much of its mass
# lies on the digit compared with a map that spreads its mass evenly?

def _masks_float(masks: torch.Tensor) -> torch.Tensor:
    """bool digit masks (B, 1, H, W) or (B, H, W) -> float64 (B, 1, H, W) on the CPU."""
    if not torch.is_tensor(masks) or masks.dim() not in (3, 4) or (masks.dim() == 4 and masks.shape[1] != 1):
        shape = tuple(masks.shape) if torch.is_tensor(masks) else type(masks).__name__
        raise ValueError(f"masks must be (B, 1, H, W) or (B, H, W), got {shape}; "
                         f"ds.masks(idx) gives (B, 1, H, W)")
    masks = masks if masks.dim() == 4 else masks[:, None]
    return masks.detach().cpu().to(torch.float64)


def patch_digit_fraction(masks: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """The share of each patch's pixels on the digit -> (B, gh, gw), in [0, 1].

    masks: bool (B, 1, H, W) or (B, H, W); grid (gh, gw) must divide H x W into P x P patches."""
    m = _masks_float(masks)
    gh, gw = grid
    H, W = m.shape[-2:]
    if gh < 1 or gw < 1 or H % gh or W % gw:
        raise ValueError(f"a {gh}x{gw} patch grid does not divide the {H}x{W} masks: use the model's "
                         f"config.grid_size with masks at its image size")
    return torch.nn.functional.avg_pool2d(m, (H // gh, W // gw))[:, 0]   # (B, gh, gw)


def _check_maps(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(B, gh, gw) patch fractions of the masks, after checking that maps and masks fit."""
    if not torch.is_tensor(maps) or maps.dim() != 3:
        shape = tuple(maps.shape) if torch.is_tensor(maps) else type(maps).__name__
        raise ValueError(f"maps must be (B, gh, gw), got {shape}; for one image use map[None]")
    if len(maps) != len(masks):
        raise ValueError(f"maps {tuple(maps.shape)} and masks {tuple(masks.shape)} hold different "
                         f"numbers of images; pass the masks of the explained images")
    return patch_digit_fraction(masks, tuple(maps.shape[-2:]))


def pointing_game(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(B,) bool: does the highest-scored patch of each map hold at least one digit pixel?

    The pointing game of Zhang et al. (2016), on patches. Ties go to the first patch in row-major
    order (torch.argmax), so a constant map points at the top-left patch."""
    frac = _check_maps(maps, masks).flatten(1)                     # (B, gh*gw)
    top = maps.detach().cpu().flatten(1).argmax(dim=1)             # (B,)
    return frac.gather(1, top[:, None])[:, 0] > 0


def mass_on_digit(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(B,) float: the share of each map's mass on digit pixels, divided by the digit's share of the
    image. 1.0 is chance (a uniform map), 1/share puts all mass on the digit, 0 none.

    Negative scores are clamped to 0; each patch's score is spread evenly over its P x P pixels, so
    a patch half on the digit puts half its score there. A map with no positive mass (all <= 0)
    has no share to give: nan for that image, as for an image with no digit pixel."""
    frac = _check_maps(maps, masks)                                # (B, gh, gw)
    m = maps.detach().cpu().to(torch.float64).clamp_min(0)
    total = m.sum(dim=(1, 2))
    on_digit = (m * frac).sum(dim=(1, 2)) / total                  # share of the mass on the digit
    chance = frac.mean(dim=(1, 2))                                 # the digit's share of the pixels
    out = on_digit / chance
    return out.masked_fill((total <= 0) | (chance <= 0), float("nan")).float()


__all__ += ["patch_digit_fraction", "pointing_game", "mass_on_digit"]
