"""vitlib.model: the ViT is correct (equal to torchvision's), and its errors are readable."""
import json

import pytest
import torch
import torch.nn as nn
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from vitlib.config import vit_config_from_params
from vitlib.runtime import num_threads
from vitlib.model import (MLP, Attention, Block, PatchEmbedding, ViT, ViTConfig, conv_weight_to_linear,
                          flops_breakdown, flops_per_image, interpolate_pos_embed, patchify,
                          set_fused_attention)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These models are tiny and the 2 cores are shared: 1 thread, restored afterwards."""
    with num_threads(1):
        yield


# The original implementation's config/default.yaml model_params (dropouts zeroed, bg_classes dropped).
ORIGINAL_PARAMS = dict(n_heads=8, head_dim=64, emb_dim=128, ff_dim=256, n_layers=6, image_height=224,
                       image_width=224, patch_height=16, patch_width=16, im_channels=3, num_classes=10,
                       patch_emb_drop=0.0, attn_drop=0.0, ff_drop=0.0)


def _randomise(module: nn.Module, seed: int = 0) -> None:
    """Every parameter random (torchvision zero-initialises its head and class token)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
            if name.endswith("weight") and p.dim() == 1:  # LayerNorm gains around 1
                p.add_(1.0)


# ------------------------------------------------------------------------- config and presets
def test_original_preset_has_the_originals_parameter_count():
    model = ViT(ViTConfig.original())
    assert model.num_parameters() == 2_099_338
    breakdown = model.param_breakdown()
    assert sum(breakdown.values()) == 2_099_338
    assert breakdown["block0.attn"] == 128 * 3 * 512 + 512 * 128 + 128  # no qkv bias, 8 x 64 heads
    assert breakdown["cls_token+pos_embed"] == 128 + 197 * 128


def test_one_set_of_defaults():
    assert ViTConfig() == ViTConfig.default()
    # a model_params section in vitlib's names gets exactly the dataclass's defaults for the rest
    assert vit_config_from_params({}) == ViTConfig()
    assert vit_config_from_params({"mlp_dim": 64, "image_size": 16}) == ViTConfig(mlp_dim=64, image_size=16)
    # the original preset is a named change to them
    assert ViTConfig.original() == ViTConfig(image_size=224, patch_size=16, n_heads=8, head_dim=64,
                                             qkv_bias=False, norm_eps=1e-5, pos_init_std=0.02)


def test_original_yaml_keys_give_the_original_model():
    # written in the original's key names, what it leaves out takes the original's values
    assert vit_config_from_params(ORIGINAL_PARAMS) == ViTConfig.original()
    # the original YAML also carries bg_classes, which its model never used
    assert vit_config_from_params({**ORIGINAL_PARAMS, "bg_classes": 44}) == ViTConfig.original()
    # our own names mix in, and attn_drop is honoured (the original ignored it)
    cfg = vit_config_from_params({**ORIGINAL_PARAMS, "attn_drop": 0.1, "qkv_bias": True, "pool": "mean",
                                  "num_textures": 5, "predict_color": True, "image_width": 112})
    assert (cfg.attn_dropout, cfg.qkv_bias, cfg.pool, cfg.num_textures, cfg.predict_color) == (
        0.1, True, "mean", 5, True)
    assert cfg.image_size == (224, 112) and cfg.grid_size == (14, 7)


def test_model_params_unknown_key_names_it_and_lists_valid_keys():
    with pytest.raises(ValueError, match=r"unknown model_params key\(s\) \['emb_size'\].*ff_dim"):
        vit_config_from_params({**ORIGINAL_PARAMS, "emb_size": 64})
    with pytest.raises(ValueError, match="both"):
        vit_config_from_params({**ORIGINAL_PARAMS, "mlp_dim": 64})


def test_from_dict_is_strict_and_fields_know_their_kind():
    with pytest.raises(ValueError, match=r"unknown ViTConfig field\(s\) \['emb_size'\]"):
        ViTConfig.from_dict({**ViTConfig().to_dict(), "emb_size": 3})
    assert set(ViTConfig.fields_of_kind("train")) == {"patch_dropout", "attn_dropout", "mlp_dropout"}
    assert set(ViTConfig.fields_of_kind("runtime")) == {"pos_init_std", "fused_attn"}
    assert "emb_dim" in ViTConfig.fields_of_kind("arch") and len(ViTConfig.fields_of_kind(
        "arch", "train", "runtime")) == len(ViTConfig().to_dict())


def test_config_dict_round_trip_keeps_tuples():
    cfg = ViTConfig(image_size=(32, 48), patch_size=(4, 8), num_textures=3, predict_color=True)
    assert ViTConfig.from_dict(cfg.to_dict()) == cfg
    back = ViTConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))  # JSON turns tuples into lists
    assert back == cfg and back.image_size == (32, 48) and back.num_patches == 8 * 6


@pytest.mark.parametrize("kwargs, message", [
    (dict(image_size=30, patch_size=4), r"image_size 30x30 is not divisible by patch_size 4x4"),
    (dict(image_size=(32, 30), patch_size=4), r"32x30 is not divisible"),
    (dict(emb_dim=100, n_heads=8), r"emb_dim 100 is not divisible by n_heads 8"),
    (dict(pool="max"), r"unknown pool 'max'"),
    (dict(mlp_dropout=1.5), r"mlp_dropout must be in \[0, 1\)"),
    (dict(n_layers=0), r"n_layers must be a positive integer"),
    (dict(num_textures=-1), r"num_textures must be >= 0"),
    (dict(pos_init_std=-0.1), r"pos_init_std must be >= 0"),
    (dict(patch_size=(4, 4, 4)), r"patch_size must be an int or \(height, width\)"),
])
def test_bad_config_raises_readable_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ViTConfig(**kwargs)


def test_head_dim_lets_attention_width_differ_from_emb_dim():
    cfg = ViTConfig(emb_dim=100, n_heads=8, head_dim=16)  # fine: 8 x 16 = 128 != 100
    assert ViT(cfg)(torch.randn(1, 3, 32, 32)).shape == (1, 10)


@pytest.mark.parametrize("shape, message", [
    ((2, 3, 16), r"expects images of shape \(B, C, H, W\), got \(2, 3, 16\)"),
    ((3, 16, 16), r"unsqueeze\(0\)"),
    ((2, 1, 16, 16), r"expects 3 channels, got 1"),
    ((2, 3, 32, 32), r"built for 16x16 images, got 32x32"),
])
def test_bad_input_raises_readable_error(shape, message):
    with pytest.raises(ValueError, match=message):
        ViT(ViTConfig.tiny())(torch.randn(shape))


# -------------------------------------------------------------------------------- patches
def test_patchify_matches_the_originals_rearrange():
    x = torch.randn(2, 3, 8, 12)
    got = patchify(x, (4, 3))  # grid 2 x 4, patches ordered row-major, each flattened (ph, pw, c)
    want = torch.stack([x[:, :, i * 4:(i + 1) * 4, j * 3:(j + 1) * 3].permute(0, 2, 3, 1).reshape(2, -1)
                        for i in range(2) for j in range(4)], 1)
    assert got.shape == (2, 8, 36) and torch.equal(got, want)
    assert torch.equal(patchify(x.contiguous(memory_format=torch.channels_last), (4, 3)), want)


@pytest.mark.parametrize("image, patch", [((16, 16), (4, 4)), ((12, 20), (3, 5))])
def test_linear_on_patches_equals_strided_conv(image, patch):
    cfg = ViTConfig(image_size=image, patch_size=patch, emb_dim=8, n_heads=2, patch_norm=False)
    pe = PatchEmbedding(cfg)
    conv = nn.Conv2d(3, 8, kernel_size=patch, stride=patch)
    with torch.no_grad():
        pe.proj.weight.copy_(conv_weight_to_linear(conv.weight))
        pe.proj.bias.copy_(conv.bias)
    x = torch.randn(2, 3, *image)
    want = conv(x).flatten(2).transpose(1, 2)  # (B, N, D), row-major grid
    torch.testing.assert_close(pe(x), want, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------ attention
def test_attention_manual_sdpa_and_torch_multihead_agree():
    torch.manual_seed(0)
    D, heads = 32, 4
    mha = nn.MultiheadAttention(D, heads, batch_first=True)
    _randomise(mha)
    cfg = ViTConfig(emb_dim=D, n_heads=heads, qkv_bias=True)
    attn = Attention(cfg).eval()
    with torch.no_grad():
        attn.qkv.weight.copy_(mha.in_proj_weight)
        attn.qkv.bias.copy_(mha.in_proj_bias)
        attn.proj.weight.copy_(mha.out_proj.weight)
        attn.proj.bias.copy_(mha.out_proj.bias)
    x = torch.randn(3, 17, D)
    manual, w = attn(x, return_weights=True)
    fused, none = attn(x)
    ref, ref_w = mha(x, x, x, need_weights=True, average_attn_weights=False)
    assert none is None and w.shape == (3, heads, 17, 17)
    torch.testing.assert_close(w.sum(-1), torch.ones(3, heads, 17))
    torch.testing.assert_close(manual, fused, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(manual, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w, ref_w, atol=1e-5, rtol=1e-5)
    attn.fused = False  # the config flag forces the manual path even without weights
    torch.testing.assert_close(attn(x)[0], manual, atol=0, rtol=0)


def test_blocks_and_mlp_keep_shape():
    cfg = ViTConfig.tiny()
    x = torch.randn(2, 5, cfg.emb_dim)
    assert MLP(cfg)(x).shape == x.shape
    y, w = Block(cfg)(x, return_weights=True)
    assert y.shape == x.shape and w.shape == (2, cfg.n_heads, 5, 5)


# ------------------------------------------------------------------- equal to torchvision
@pytest.mark.parametrize("dims", [
    dict(image_size=32, patch_size=4, num_layers=2, num_heads=4, hidden_dim=32, mlp_dim=64, num_classes=10),
    dict(image_size=224, patch_size=16, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=7),
])
def test_port_from_torchvision_gives_the_same_logits(dims):
    tv = torchvision.models.VisionTransformer(**dims).eval()
    _randomise(tv, seed=1)
    ours = ViT.from_torchvision(tv).eval()
    cfg = ours.config
    assert (cfg.image_size, cfg.patch_size, cfg.emb_dim, cfg.n_layers, cfg.n_heads, cfg.mlp_dim) == (
        dims["image_size"], dims["patch_size"], dims["hidden_dim"], dims["num_layers"], dims["num_heads"],
        dims["mlp_dim"])
    assert (cfg.patch_norm, cfg.qkv_bias, cfg.norm_eps) == (False, True, 1e-6)
    assert ours.num_parameters() == sum(p.numel() for p in tv.parameters())
    x = torch.randn(3, 3, dims["image_size"], dims["image_size"])
    with torch.no_grad():
        want = tv(x)
        assert want.abs().max() > 0.1  # a real signal, not zeros
        torch.testing.assert_close(ours(x), want, atol=1e-5, rtol=1e-5)
        assert set_fused_attention(ours, False) == len(ours.blocks)  # every block's path, in one call
        torch.testing.assert_close(ours(x), want, atol=1e-5, rtol=1e-5)


def test_port_rejects_other_models():
    with pytest.raises(ValueError, match="torchvision.models.VisionTransformer"):
        ViT.from_torchvision(nn.Linear(2, 2))


# ---------------------------------------------------------------------------------- ViT
def test_return_attention_does_not_change_logits():
    torch.manual_seed(0)
    model = ViT(ViTConfig.tiny()).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        logits = model(x)
        logits2, attns = model(x, return_attention=True)
    torch.testing.assert_close(logits2, logits, atol=1e-5, rtol=1e-5)
    assert len(attns) == 2 and all(a.shape == (2, 2, 17, 17) for a in attns)


def test_gradients_reach_every_parameter_including_extra_heads():
    torch.manual_seed(0)
    model = ViT(ViTConfig(**{**ViTConfig.tiny().to_dict(), "num_textures": 5, "predict_color": True,
                             "patch_dropout": 0.1, "attn_dropout": 0.1, "mlp_dropout": 0.1}))
    out = model(torch.randn(4, 3, 16, 16))
    assert set(out) == {"number", "texture", "color"}
    assert (out["number"].shape, out["texture"].shape, out["color"].shape) == ((4, 10), (4, 5), (4, 3))
    (out["number"].sum() + out["texture"].sum() + out["color"].sum()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing


def test_mean_pooling_works_and_differs_from_cls():
    torch.manual_seed(0)
    cls_model = ViT(ViTConfig.tiny()).eval()
    mean_model = ViT(ViTConfig(**{**ViTConfig.tiny().to_dict(), "pool": "mean"})).eval()
    mean_model.load_state_dict(cls_model.state_dict())  # same parameters, only pooling differs
    x = torch.randn(2, 3, 16, 16)
    out = mean_model(x)
    assert out.shape == (2, 10) and not torch.allclose(out, cls_model(x))
    out.sum().backward()
    assert mean_model.pos_embed.grad is not None


def test_init_is_timm_like():
    torch.manual_seed(0)
    model = ViT(ViTConfig.original())
    w = model.blocks[0].mlp.fc1.weight
    assert abs(w.std().item() - 0.02) < 0.002 and w.abs().max() <= 2.0
    assert torch.all(model.blocks[0].mlp.fc1.bias == 0)
    assert torch.all(model.norm.weight == 1) and torch.all(model.norm.bias == 0)
    assert abs(model.pos_embed.std().item() - 0.02) < 0.003
    assert abs(model.cls_token.std().item() - 0.02) < 0.01
    # the CPU default starts positions at the scale of the (LayerNormed) patch tokens
    assert ViTConfig.default().pos_init_std == 1.0 and ViT(ViTConfig.default()).pos_embed.std() > 0.5
    assert torch.all(ViT(ViTConfig(pos_init_std=0.0)).pos_embed == 0)  # the original's zeros


def test_interpolate_pos_embed_identity_and_new_size():
    torch.manual_seed(0)
    model = ViT(ViTConfig.tiny()).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        before = model(x)
        interpolate_pos_embed(model, 16)
        torch.testing.assert_close(model(x), before, atol=1e-6, rtol=1e-6)
    cls_pos = model.pos_embed[:, :1].detach().clone()
    interpolate_pos_embed(model, (24, 32))
    assert model.config.image_size == (24, 32) and model.pos_embed.shape == (1, 1 + 6 * 8, 32)
    assert torch.equal(model.pos_embed[:, :1], cls_pos)
    out = model(torch.randn(2, 3, 24, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.sum().backward()
    assert model.pos_embed.grad is not None
    with pytest.raises(ValueError, match="not divisible"):
        interpolate_pos_embed(model, 30)


def test_flop_estimate_matches_torch_flop_counter():
    cfg = ViTConfig(**{**ViTConfig.tiny().to_dict(), "fused_attn": False, "head_dim": 8, "num_textures": 3})
    model = ViT(cfg)
    with FlopCounterMode(display=False) as counter:
        model(torch.randn(2, 3, 16, 16))
    assert counter.get_total_flops() == 2 * flops_per_image(cfg)
    assert flops_breakdown(ViTConfig.original())["attn_scores"] == 6 * 2 * 197 * 197 * 512
    assert 1.2e9 < flops_per_image(ViTConfig.original()) < 1.4e9  # ~4 GFLOP per training image


def test_bf16_autocast_forward_on_cpu_is_close_to_fp32():
    torch.manual_seed(0)
    model = ViT(ViTConfig.tiny()).eval()
    _randomise(model, seed=2)
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        ref = model(x)
        for fused in (True, False):
            set_fused_attention(model, fused)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model(x)
            assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
            err = (out.float() - ref).abs().max() / ref.abs().max()
            assert err < 0.05, f"bf16 relative error {err:.3f} (fused={fused})"


def test_bf16_autocast_training_step_on_cpu_matches_fp32_gradients():
    torch.manual_seed(0)
    model = ViT(ViTConfig.tiny())
    _randomise(model, seed=3)
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
    nn.functional.cross_entropy(model(x), y).backward()
    ref = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # takes the manual attention path on CPU
        loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    for n, p in model.named_parameters():
        assert p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all(), n
        cos = nn.functional.cosine_similarity(p.grad.flatten(), ref[n].flatten(), dim=0)
        assert cos > 0.98, f"{n}: bf16 gradient direction differs from fp32 (cosine {cos:.3f})"


def test_sincos_position_table_is_fixed_and_follows_the_grid():
    from vitlib.model import sincos_pos_embed
    cfg = ViTConfig(patch_size=4, pos_embed="sincos")
    model = ViT(cfg)
    # a buffer, not a parameter: saved with the weights, never trained
    assert "pos_embed" in model.state_dict()
    assert all("pos_embed" not in n for n, _ in model.named_parameters())
    assert model.num_parameters() == ViT(ViTConfig(patch_size=4)).num_parameters() - 65 * 128
    table = model.pos_embed[0]                                   # (N+1, D)
    assert table.shape == (65, 128) and torch.equal(table[0], torch.zeros(128))
    # big_vision's posemb_sincos_2d by hand for patch (row 1, column 2): sin/cos of x, then of y
    omega = 1.0 / 10000 ** (torch.arange(32, dtype=torch.float64) / 31)
    want = torch.cat([(2 * omega).sin(), (2 * omega).cos(), (1 * omega).sin(), (1 * omega).cos()]).float()
    torch.testing.assert_close(table[1 + 1 * 8 + 2], want)
    torch.testing.assert_close(sincos_pos_embed((8, 8), 128), model.pos_embed)
    # resizing recomputes the table for the new grid
    interpolate_pos_embed(model, 48)
    torch.testing.assert_close(model.pos_embed, sincos_pos_embed((12, 12), 128))
    assert model(torch.randn(1, 3, 48, 48)).shape == (1, 10)


def test_fine_preset_and_pos_embed_validation():
    cfg = ViTConfig.fine()
    assert cfg.grid_size == (8, 8) and cfg.num_patches == 64 and cfg.pos_init_std == 0.1
    with pytest.raises(ValueError, match="pos_embed"):
        ViTConfig(pos_embed="rope")
    with pytest.raises(ValueError, match="divisible by 4"):
        ViTConfig(emb_dim=30, n_heads=3, pos_embed="sincos")
