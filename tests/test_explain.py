"""Explanation methods (vitlib.explain) and their scorer against digit masks (vitlib.interpret)."""
import math

import pytest
import torch
import torch.nn as nn

from vitlib import explain, interpret
from vitlib.model import ViT, ViTConfig


# ---------------------------------------------------------------------------------- the scorer

def square_digits(B=5, size=16, seed=0):
    """bool (B, 1, size, size) masks: a random axis-aligned rectangle per image, not patch-aligned."""
    g = torch.Generator().manual_seed(seed)
    masks = torch.zeros(B, 1, size, size, dtype=torch.bool)
    for b in range(B):
        y, x = torch.randint(0, size - 6, (2,), generator=g).tolist()
        h, w = torch.randint(3, 7, (2,), generator=g).tolist()
        masks[b, 0, y:y + h, x:x + w] = True
    return masks


def test_patch_digit_fraction_counts_pixels():
    masks = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    masks[0, 0, :2, :2] = True     # the top-left 2x2 patch, all digit
    masks[0, 0, 0, 3] = True       # one of the four pixels of the top-right patch
    frac = interpret.patch_digit_fraction(masks, (2, 2))
    torch.testing.assert_close(frac, torch.tensor([[[1.0, 0.25], [0.0, 0.0]]], dtype=frac.dtype))
    # (B, H, W) masks give the same
    torch.testing.assert_close(interpret.patch_digit_fraction(masks[:, 0], (2, 2)), frac)


def test_a_map_equal_to_the_digit_fraction_points_at_the_digit():
    masks = square_digits()
    maps = interpret.patch_digit_fraction(masks, (4, 4)).float()
    assert interpret.pointing_game(maps, masks).all()
    mass = interpret.mass_on_digit(maps, masks)
    assert (mass > 1).all()
    # and never more than all the mass on the digit: 1 / (the digit's share of the image)
    share = masks.flatten(1).float().mean(1)
    assert (mass <= 1 / share + 1e-5).all()


def test_a_uniform_map_scores_chance_exactly():
    masks = square_digits(B=7, seed=1)
    for value in (1.0, 0.37, 1e-8):
        mass = interpret.mass_on_digit(torch.full((7, 4, 4), value), masks)
        assert (mass == 1.0).all(), mass


def test_a_map_on_the_background_scores_zero():
    masks = square_digits(seed=2)
    on_bg = (interpret.patch_digit_fraction(masks, (4, 4)) == 0).float()
    maps = on_bg * torch.rand(on_bg.shape, generator=torch.Generator().manual_seed(0)) + on_bg
    maps = maps - 5 * (1 - on_bg)  # the digit patches negative: clamped to 0, and never the top
    assert not interpret.pointing_game(maps, masks).any()
    assert (interpret.mass_on_digit(maps, masks) == 0).all()


def test_hand_computed_two_by_two():
    # a 4x4 image, 2x2 patches of 2x2 px: digit = the whole top-left patch + 1 px of the top-right
    # patch, 5 of 16 pixels; patch fractions [[1, 1/4], [0, 0]].
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[:2, :2] = True
    mask[1, 2] = True
    masks = mask.expand(2, 1, 4, 4)
    maps = torch.tensor([[[1.0, 3.0], [0.0, 4.0]],       # top = bottom-right: off the digit
                         [[2.0, 2.0], [-1.0, 0.0]]])     # a tie: the first (top-left) wins
    assert interpret.pointing_game(maps, masks).tolist() == [False, True]
    # image 0: on the digit 1*1 + 3*1/4 = 1.75 of 8 = 0.21875; / (5/16) = 0.7
    # image 1: -1 clamps to 0; 2*1 + 2*1/4 = 2.5 of 4 = 0.625; / (5/16) = 2.0
    torch.testing.assert_close(interpret.mass_on_digit(maps, masks), torch.tensor([0.7, 2.0]))


def test_a_map_with_no_mass_gives_nan():
    masks = square_digits(B=2)
    mass = interpret.mass_on_digit(torch.stack([-torch.ones(4, 4), torch.ones(4, 4)]), masks)
    assert math.isnan(mass[0]) and mass[1] == 1.0


@pytest.mark.parametrize("maps, masks, words", [
    (torch.ones(2, 3, 3), torch.zeros(2, 1, 16, 16, dtype=torch.bool), "3x3 patch grid does not divide"),
    (torch.ones(2, 16), torch.zeros(2, 1, 16, 16, dtype=torch.bool), "(B, gh, gw)"),
    (torch.ones(3, 4, 4), torch.zeros(2, 1, 16, 16, dtype=torch.bool), "different numbers of images"),
    (torch.ones(2, 4, 4), torch.zeros(2, 3, 16, 16, dtype=torch.bool), "(B, 1, H, W) or (B, H, W)"),
])
def test_shapes_that_do_not_fit_are_named(maps, masks, words):
    for fn in (interpret.pointing_game, interpret.mass_on_digit):
        with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
            fn(maps, masks)


# ---------------------------------------------------------------------------------- the methods

def tiny_vit(seed=0, **kw):
    torch.manual_seed(seed)
    return ViT(ViTConfig(**{**ViTConfig.tiny().to_dict(), **kw}))


def images(B=2, size=16, seed=1):
    return torch.rand(B, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_every_method_gives_one_map_per_image_and_leaves_the_model_as_it_was():
    model = tiny_vit()
    model.train()
    maps = explain.explain_batch(model, images(B=3))
    assert list(maps) == list(explain.METHODS)
    for name, m in maps.items():
        assert m.shape == (3, 4, 4), name
        assert torch.isfinite(m).all(), name
    assert model.training and all(b.attn.fused for b in model.blocks)


def test_attention_maps_read_the_model_attention():
    model = tiny_vit().eval()
    x = images()
    with torch.no_grad():
        att = model(x, return_attention=True)[1]
    torch.testing.assert_close(explain.cls_attention(model, x),
                               att[-1][:, :, 0, 1:].mean(1).reshape(2, 4, 4))
    torch.testing.assert_close(explain.rollout(model, x, variant="original", head_fusion="max"),
                               interpret.attention_rollout(att, "original", grid=(4, 4)))


def test_gradient_rollout_of_one_layer_by_hand():
    """One block: only the CLS row of A reaches the logit, so R = I + Ā and the map is Ā[0, 1:].
    The gradient of the logit with respect to A[h, 0, j] is, by the chain rule, g_h . V_h[j], where
    g is the gradient with respect to the attention's (pre-projection) output at the CLS token."""
    model = tiny_vit(n_layers=1).eval()
    x = images()
    target = torch.tensor([3, 7])
    blk, (B, h, d) = model.blocks[0], (2, model.config.n_heads, model.config.attn_head_dim)
    with torch.no_grad():
        tokens = torch.cat([model.cls_token.expand(B, -1, -1), model.patch_embed(x)], 1) + model.pos_embed
        N = tokens.shape[1]
        v = blk.attn.qkv(blk.norm1(tokens)).reshape(B, N, 3, h, d)[:, :, 2].transpose(1, 2)  # (B, h, N, d)
        A = model(x, return_attention=True)[1][0]                                          # (B, h, N, N)
    o = (A[:, :, 0, :, None] * v).sum(2).reshape(B, h * d).requires_grad_()                # CLS output
    x1 = tokens[:, 0] + blk.attn.proj(o)
    logits = model.head(model.norm(x1 + blk.mlp(blk.norm2(x1))))
    g = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), o)[0].reshape(B, h, 1, d)
    grad_A0 = (g * v).sum(-1)                                                               # (B, h, N)
    expected = (grad_A0 * A[:, :, 0]).clamp_min(0).mean(1)[:, 1:].reshape(B, 4, 4)
    torch.testing.assert_close(explain.grad_rollout(model, x, target=target), expected)


def test_gradient_rollout_works_on_a_frozen_model():
    model = tiny_vit().eval().requires_grad_(False)
    m = explain.grad_rollout(model, images())
    assert m.shape == (2, 4, 4) and (m >= 0).all() and m.sum() > 0


def bent_vit(patch_norm):
    """A tiny ViT with weights large enough that its logits bend along the path from the baseline."""
    model = tiny_vit(seed=3, patch_norm=patch_norm).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.3)
    return model


def logit_change(model, x, baseline, target):
    with torch.no_grad():
        return (model(x) - model(baseline.expand_as(x))).gather(1, target[:, None])[:, 0]


def test_integrated_gradients_are_complete():
    """Signed attributions sum to f(x) - f(baseline 0) (the plain ViT stem: Linear on the patch)."""
    model = bent_vit(patch_norm=False)
    x, target = images(B=2, seed=4), torch.tensor([1, 5])
    signed = explain.integrated_gradients(model, x, target=target, n_steps=64, absolute=False, baseline=0.0)
    diff = logit_change(model, x, torch.zeros_like(x), target)
    assert diff.abs().min() > 0.1                   # a real change to explain
    torch.testing.assert_close(signed.sum((1, 2)), diff, atol=1e-3 * diff.abs().max(), rtol=0)
    assert (explain.integrated_gradients(model, x, target=target, n_steps=8) >= 0).all()


def test_the_patch_layernorm_flattens_the_path_from_a_constant_baseline():
    """With patch_norm, LN(c + a (x - c)) = LN(x) for any constant patch c and a >> 1e-3: the logit
    is flat along the path, so the attributions sum to ~0 however large f(x) - f(0) is. A baseline
    that varies within the patches restores completeness."""
    model = bent_vit(patch_norm=True)
    x, target = images(B=2, seed=4), torch.tensor([1, 5])
    for a in (0.01, 0.5):
        torch.testing.assert_close(logit_change(model, a * x, x, target), torch.zeros(2), atol=1e-4, rtol=0)
    diff = logit_change(model, x, torch.zeros_like(x), target)
    signed = explain.integrated_gradients(model, x, target=target, n_steps=64, absolute=False, baseline=0.0)
    assert diff.abs().min() > 0.05 and signed.sum((1, 2)).abs().max() < 1e-3
    noise = images(B=1, seed=9)[0] * 0.5                                    # (C, H, W)
    signed = explain.integrated_gradients(model, x, target=target, n_steps=64, absolute=False, baseline=noise)
    diff = logit_change(model, x, noise, target)
    torch.testing.assert_close(signed.sum((1, 2)), diff, atol=1e-3 * diff.abs().max(), rtol=0)
    # the default baseline, a blurred copy of each image, varies within the patches too
    signed = explain.integrated_gradients(model, x, target=target, n_steps=256, absolute=False)
    diff = logit_change(model, x, explain.blurred(x), target)
    assert diff.abs().min() > 0.01
    torch.testing.assert_close(signed.sum((1, 2)), diff, atol=2e-3 * diff.abs().max(), rtol=0)
    with pytest.raises(ValueError, match="blur"):
        explain.integrated_gradients(model, x, baseline="noise")


class OnePatch(nn.Module):
    """A model that sees only patch (row 1, column 2) of the tiny 4x4 grid: logit c = w_c * (energy
    of that patch), w_c = c + 1, so the prediction is always class 9."""

    def __init__(self):
        super().__init__()
        self.config = ViTConfig.tiny()
        self.w = nn.Parameter(torch.arange(1.0, 11.0))

    def forward(self, x):
        return self.w * x[:, :, 4:8, 8:12].pow(2).sum((1, 2, 3))[:, None]    # (B, 10)


def test_occlusion_finds_the_one_patch_the_model_reads():
    model, x = OnePatch(), images(B=3)
    energy = x[:, :, 4:8, 8:12].pow(2).sum((1, 2, 3))
    maps = explain.occlusion(model, x)
    assert (maps.flatten(1).argmax(1) == 4 + 2).all()
    expected = torch.zeros(3, 4, 4)
    expected[:, 1, 2] = 10 * energy                 # greying the patch removes the whole logit
    torch.testing.assert_close(maps, expected)
    # the target is honoured: class 0 has a tenth of the logit
    torch.testing.assert_close(explain.occlusion(model, x, target=0), expected / 10)


def test_integrated_gradients_of_a_square_is_the_square():
    # f = w * sum x^2 from 0: the path integral of 2 a x over a in [0, 1] times x is x^2, exactly
    model, x = OnePatch(), images(B=2)
    expected = torch.zeros(2, 4, 4)
    expected[:, 1, 2] = 10 * x[:, :, 4:8, 8:12].pow(2).sum((1, 2, 3))
    torch.testing.assert_close(explain.integrated_gradients(model, x, n_steps=4, baseline=0.0), expected)


class PatchDigits:
    """A stand-in for ColoredMNIST whose 'digit' is exactly the patch OnePatch reads."""

    def __init__(self, n=12):
        self.x = images(B=n, seed=5)
        self.mask = torch.zeros(n, 1, 16, 16, dtype=torch.bool)
        self.mask[:, :, 4:8, 8:12] = True

    def __len__(self):
        return len(self.x)

    def get_batch(self, idx):
        return {"image": self.x[idx]}

    def masks(self, idx):
        return self.mask[idx]


def test_score_methods_rows_on_a_known_answer():
    rows = explain.score_methods(OnePatch(), PatchDigits(), n=10, batch_size=4,
                                 methods=["occlusion", "integrated gradients"], progress=False)
    assert [r["method"] for r in rows] == ["occlusion", "integrated gradients"]
    for r in rows:
        assert set(r) == {"method", "pointing", "pointing_se", "mass", "mass_se", "n", "seconds"}
        assert r["n"] == 10 and r["pointing"] == 1.0 and r["pointing_se"] == 0.0
        # all mass on a digit that covers 1/16 of the image
        assert r["mass"] == pytest.approx(16.0) and r["mass_se"] == pytest.approx(0.0, abs=1e-6)


def test_unknown_method_is_named():
    with pytest.raises(ValueError, match="unknown method"):
        explain.explain_batch(tiny_vit(), images(), methods=["saliency"])
