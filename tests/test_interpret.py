"""Attention rollout (both variants), mean attention distance, position similarity, patch PCA."""
import math

import pytest
import torch

from vitlib import interpret
from vitlib.model import ViT, ViTConfig, patchify


def random_attention(L=3, B=2, H=4, N=17, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, N, N, generator=g).mul(2).softmax(-1) for _ in range(L)]


def original_reference(attentions):
    """The original project's tools/inference.py rollout, line for line."""
    attentions = [(torch.eye(att.size(-1)) + att) / (torch.eye(att.size(-1)) + att).sum(dim=-1).unsqueeze(-1)
                  for att in attentions]
    result = torch.max(attentions[0], dim=1)[0]
    for i in range(1, len(attentions)):
        result = torch.matmul(torch.max(attentions[i], dim=1)[0], result)
    return result


@pytest.mark.parametrize("variant", ["original", "abnar"])
def test_rollout_of_self_attention_is_identity(variant):
    L, B, H, N = 4, 2, 3, 10
    attn = [torch.eye(N).expand(B, H, N, N).clone() for _ in range(L)]
    out = interpret.attention_rollout(attn, variant)
    assert out.shape == (B, N, N)
    torch.testing.assert_close(out, torch.eye(N).expand(B, N, N))
    # the CLS token then reads nothing from the patches
    assert interpret.attention_rollout(attn, variant, grid=(3, 3)).abs().max() == 0


@pytest.mark.parametrize("variant", ["original", "abnar"])
def test_rollout_of_uniform_attention_is_analytic(variant):
    # (0.5 U + 0.5 I)^L = 0.5^L I + (1 - 0.5^L) U, since U @ U = U: every patch gets the same share.
    L, B, H, gh, gw = 3, 2, 4, 4, 4
    N = gh * gw + 1
    attn = [torch.full((B, H, N, N), 1.0 / N) for _ in range(L)]
    expected = 0.5**L * torch.eye(N) + (1 - 0.5**L) * torch.full((N, N), 1.0 / N)
    torch.testing.assert_close(interpret.attention_rollout(attn, variant), expected.expand(B, N, N))
    maps = interpret.attention_rollout(attn, variant, grid=(gh, gw))
    assert maps.shape == (B, gh, gw)
    torch.testing.assert_close(maps, torch.full((B, gh, gw), (1 - 0.5**L) / N))


def test_original_variant_matches_the_original_code():
    attn = random_attention()
    torch.testing.assert_close(interpret.attention_rollout(attn, "original"), original_reference(attn))


def test_abnar_rows_sum_to_one_and_mean_fusion():
    attn = random_attention(L=4, N=26)
    for ratio in (0.0, 0.5, 0.9):
        out = interpret.attention_rollout(attn, "abnar", discard_ratio=ratio)
        torch.testing.assert_close(out.sum(-1), torch.ones(2, 26))
        assert (out >= 0).all()
    # one layer, no discard: exactly 0.5 * mean_heads(A) + 0.5 * I (rows already sum to 1)
    one = interpret.attention_rollout(attn[:1], "abnar")
    torch.testing.assert_close(one, 0.5 * attn[0].mean(1) + 0.5 * torch.eye(26))


def test_original_rows_sum_to_one_when_heads_agree():
    a = random_attention(H=1, N=10)
    attn = [x.expand(2, 3, 10, 10) for x in a]  # three identical heads: max == each head
    out = interpret.attention_rollout(attn, "original")
    torch.testing.assert_close(out.sum(-1), torch.ones(2, 10))


def test_discard_zeroes_the_weakest_but_never_cls():
    fused = random_attention(L=1, H=1, N=20)[0][:, 0]       # (B, N, N)
    fused[:, :, 0] = 1e-6                                    # attention to CLS is the weakest...
    out = interpret._discard(fused, 0.5)
    assert (out[:, :, 0] == 1e-6).all()                      # ...and is kept anyway
    zeros = (out == 0).sum(-1)
    assert (zeros == 10).all()                               # int(20 * 0.5) per row
    kept = out != 0
    torch.testing.assert_close(out[kept], fused[kept])
    # every dropped value is no larger than every kept patch value in its row
    for b in range(2):
        for r in range(20):
            row, dropped = fused[b, r, 1:], out[b, r, 1:] == 0
            assert row[dropped].max() <= row[~dropped].min()
    attn = random_attention()
    assert not torch.allclose(interpret.attention_rollout(attn, "abnar", discard_ratio=0.9),
                              interpret.attention_rollout(attn, "abnar"))
    with pytest.raises(ValueError, match="discard_ratio"):
        interpret.attention_rollout(attn, "abnar", discard_ratio=1.0)


def test_rollout_input_errors_and_pooling():
    attn = random_attention(N=17)
    with pytest.raises(ValueError, match="variant"):
        interpret.attention_rollout(attn, "nope")
    with pytest.raises(ValueError, match="grid"):
        interpret.attention_rollout(attn, grid=(3, 3))
    with pytest.raises(ValueError, match="head_fusion"):
        interpret.attention_rollout(attn, head_fusion="median")
    r = interpret.attention_rollout(attn)
    torch.testing.assert_close(interpret.rollout_map(r, (4, 4), pool="mean"),
                               r[:, 1:, 1:].mean(1).reshape(2, 4, 4))
    torch.testing.assert_close(interpret.rollout_map(r, (4, 4)), r[:, 0, 1:].reshape(2, 4, 4))
    torch.testing.assert_close(interpret.attention_rollout(torch.stack(attn)), r)  # stacked input


def brute_mean_distance(gh, gw, ph, pw):
    d = [math.hypot((i1 - i2) * ph, (j1 - j2) * pw)
         for i1 in range(gh) for j1 in range(gw) for i2 in range(gh) for j2 in range(gw)]
    return sum(d) / len(d)


def test_mean_attention_distance():
    L, B, H, gh, gw, ph, pw = 2, 3, 4, 5, 6, 4, 2
    P = gh * gw
    self_attn = torch.eye(P + 1).expand(L, B, H, P + 1, P + 1)
    d = interpret.mean_attention_distance(self_attn, (gh, gw), (ph, pw))
    assert d.shape == (L, H) and d.abs().max() == 0
    uniform = torch.full((L, B, H, P + 1, P + 1), 1.0 / (P + 1))
    d = interpret.mean_attention_distance(list(uniform), (gh, gw), (ph, pw))
    torch.testing.assert_close(d, torch.full((L, H), brute_mean_distance(gh, gw, ph, pw)))
    assert math.isclose(interpret.analytic_mean_distance((gh, gw), (ph, pw)),
                        brute_mean_distance(gh, gw, ph, pw), rel_tol=1e-5)
    # every patch attends to the patch one row below (bottom row: to itself) -> known mean
    a = torch.zeros(1, 1, 1, P, P)
    for q in range(P):
        a[0, 0, 0, q, q + gw if q + gw < P else q] = 1
    d = interpret.mean_attention_distance(a, (gh, gw), 4)
    assert math.isclose(d.item(), 4 * (gh - 1) * gw / P, rel_tol=1e-6)


def tiny(**kw):
    return ViTConfig(**{**dict(image_size=12, patch_size=(4, 2), emb_dim=16, n_layers=1, n_heads=2,
                               mlp_dim=32), **kw})


def test_pos_embed_similarity():
    torch.manual_seed(0)
    model = ViT(tiny(emb_dim=24))
    gh, gw = model.config.grid_size
    sim = interpret.pos_embed_similarity(model)
    assert sim.shape == (gh * gw, gh, gw)
    flat = sim.reshape(gh * gw, gh * gw)
    torch.testing.assert_close(flat.diagonal(), torch.ones(gh * gw))
    torch.testing.assert_close(flat, flat.T)
    with torch.no_grad():  # orthogonal embeddings -> identity similarity; CLS position ignored
        model.pos_embed.zero_()
        model.pos_embed[0, 1:, : gh * gw] = torch.eye(gh * gw)
        model.pos_embed[0, 0] = 5.0
    torch.testing.assert_close(interpret.pos_embed_similarity(model).reshape(gh * gw, -1), torch.eye(gh * gw))


def test_patch_filters_have_conv_layout_and_pca_is_orthonormal():
    torch.manual_seed(0)
    model = ViT(tiny(patch_norm=False)).eval()
    w = interpret.patch_embedding_weight(model)              # (D, C, ph, pw)
    assert w.shape == (16, 3, 4, 2)
    x = torch.randn(1, 3, 12, 12)
    # projecting the first patch equals correlating the filters with the top-left 4x2 window
    proj = model.patch_embed.proj(patchify(x, (4, 2)))[0, 0]
    conv = (w * x[0, :, :4, :2]).sum((1, 2, 3)) + model.patch_embed.proj.bias
    torch.testing.assert_close(proj, conv.detach(), rtol=1e-5, atol=1e-5)
    comps, var = interpret.patch_filter_pca(model, k=5, return_variance=True)
    assert comps.shape == (5, 3, 4, 2)
    flat = comps.reshape(5, -1)
    torch.testing.assert_close(flat @ flat.T, torch.eye(5), atol=1e-5, rtol=0)
    assert (var[:-1] >= var[1:]).all() and var.sum() <= 1 + 1e-6
    # with patch_norm the LayerNorm scale is folded into the filters
    m2 = ViT(tiny(patch_norm=True))
    with torch.no_grad():
        m2.patch_embed.norm_in.weight.fill_(2.0)
    torch.testing.assert_close(interpret.patch_embedding_weight(m2),
                               2 * m2.patch_embed.proj.weight.detach().reshape(16, 4, 2, 3).permute(0, 3, 1, 2))


def test_rollout_on_a_real_model():
    torch.manual_seed(0)
    model = ViT(tiny()).eval()
    with torch.no_grad():
        _, attn = model(torch.randn(2, 3, 12, 12), return_attention=True)
    for variant in ("original", "abnar"):
        m = interpret.attention_rollout(attn, variant, grid=model.config.grid_size)
        assert m.shape == (2, 3, 6) and torch.isfinite(m).all() and (m > 0).all()
    d = interpret.mean_attention_distance(attn, model.config.grid_size, model.config.patch_size)
    assert d.shape == (1, 2) and (d > 0).all()


def test_spearman_matches_scipy_with_ties():
    scipy_stats = pytest.importorskip("scipy.stats")
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 6, (200,), generator=g).float()      # many ties
    y = x + torch.randn(200, generator=g)
    assert interpret.spearman(x, y) == pytest.approx(scipy_stats.spearmanr(x, y).statistic, abs=1e-12)
    assert interpret.spearman(x, -x) == pytest.approx(-1.0)


def test_pos_embed_spearman_knows_a_grid_table_from_a_random_one():
    from vitlib.model import sincos_pos_embed
    grid = (8, 8)
    table = sincos_pos_embed(grid, 64)[0, 1:]                   # (64, D) without the CLS row
    # a fixed 2-D table: similarity falls with distance
    assert interpret.pos_embed_spearman(table, grid) < -0.8
    # a random table knows nothing of the layout
    rnd = torch.randn(64, 64, generator=torch.Generator().manual_seed(0))
    assert abs(interpret.pos_embed_spearman(rnd, grid)) < 0.1
    # a table whose rows are the patch coordinates themselves, seen through cosine, still tracks distance
    ys, xs = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    coords = torch.stack([torch.cos(ys / 8), torch.sin(ys / 8), torch.cos(xs / 8), torch.sin(xs / 8)], -1)
    assert interpret.pos_embed_spearman(coords.reshape(64, 4), grid) < -0.5
    with pytest.raises(ValueError, match="grid"):
        interpret.pos_embed_spearman(table)
