"""Chapter 07's pieces: the CNN baseline, the conv stem, the colour shortcut, fine-tuning, subsets."""
from __future__ import annotations

import pytest
import torch

from vitlib.cnn import ResNet, build_model
from vitlib.config import load_config
from vitlib.data import CLASS_COLORS, ColoredMNIST, shortcut_colors
from vitlib.model import ViT, ViTConfig
from vitlib.train import Limited, make_dataset, train


def test_cnn_is_within_a_fifth_of_the_vit_in_parameters():
    vit, cnn = ViT(ViTConfig()), build_model(ViTConfig(arch="cnn"))
    assert isinstance(cnn, ResNet)
    ratio = cnn.num_parameters() / vit.num_parameters()
    assert 0.8 <= ratio <= 1.2, ratio


def test_cnn_heads_and_shapes():
    cfg = ViTConfig(arch="cnn", num_textures=5, predict_color=True)
    out = build_model(cfg)(torch.randn(3, 3, 32, 32))
    assert out["number"].shape == (3, 10) and out["texture"].shape == (3, 5) and out["color"].shape == (3, 3)
    with pytest.raises(ValueError, match="emb_dim"):
        ResNet(ViTConfig(arch="cnn", emb_dim=130, n_heads=2))
    with pytest.raises(ValueError, match="expects images"):
        build_model(ViTConfig(arch="cnn"))(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match="unknown arch"):
        ViTConfig(arch="mlp")


def test_cnn_trains_with_the_same_loop(micro_config, tmp_path):
    """`arch: cnn` in a config is all it takes: the same train(), checkpoints and metrics."""
    path = micro_config(model={"arch": "cnn"}, train_params={"epochs": 3})
    out = train(path, out_dir=tmp_path, progress=False)
    assert isinstance(out["model"], ResNet)
    assert out["best_path"].is_file()
    losses = [r["train_loss"] for r in out["history"]]
    assert losses[-1] < losses[0]


def test_conv_stem_gives_one_token_per_patch():
    for p in (4, 8):
        m = ViT(ViTConfig(patch_size=p, conv_stem=True))
        tokens = m.patch_embed(torch.randn(2, 3, 32, 32))
        assert tokens.shape == (2, (32 // p) ** 2, 128)
        assert not hasattr(m.patch_embed, "proj")   # no unused linear map beside the stem
    # a conv stem sees across the patch border: changing one pixel changes a neighbour's token
    m = ViT(ViTConfig(patch_size=8, conv_stem=True)).eval()
    x = torch.randn(1, 3, 32, 32)
    y = x.clone()
    y[0, :, 7, 7] += 5.0                               # last pixel of patch (0, 0)
    d = (m.patch_embed(x) - m.patch_embed(y)).abs().sum(-1)[0]  # (N,)
    assert d[1] > 0 or d[4] > 0                        # patch (0, 1) or (1, 0) moved too
    with pytest.raises(ValueError, match="power of 2"):
        ViTConfig(image_size=36, patch_size=6, conv_stem=True)


def test_shortcut_colours_follow_the_digit():
    labels = torch.arange(10).repeat(200)
    rand = torch.rand(len(labels), 3, generator=torch.Generator().manual_seed(0))
    same = shortcut_colors(labels, rand, 1.0, torch.Generator().manual_seed(1))
    assert (same - CLASS_COLORS[labels]).abs().max() <= 0.05 + 1e-6
    assert torch.equal(shortcut_colors(labels, rand, 0.0), rand)
    mixed = shortcut_colors(labels, rand, 0.95, torch.Generator().manual_seed(2))
    share = ((mixed - CLASS_COLORS[labels]).abs().max(-1).values <= 0.05 + 1e-6).float().mean().item()
    assert 0.93 < share < 0.97, share


def test_coloured_mnist_shortcut_parameter():
    ds = ColoredMNIST("train", color_label_corr=1.0)
    b = ds.get_batch(torch.arange(64), generator=torch.Generator().manual_seed(0))
    assert (b["color"] - CLASS_COLORS[b["number_cls"]]).abs().max() <= 0.05 + 1e-6
    val = ColoredMNIST("val", color_label_corr=0.95)
    assert torch.equal(val.get_batch(torch.arange(32))["image"], val.get_batch(torch.arange(32))["image"])
    for bad in (-0.1, 1.5, "high", True):
        with pytest.raises(ValueError, match=r"color_label_corr=.* must be a number in \[0, 1\]"):
            ColoredMNIST("test", color_label_corr=bad)


def test_make_dataset_keeps_the_test_colours_random(micro_config):
    cfg = load_config(micro_config(dataset={"color_label_corr": 1.0}))
    tr, te = make_dataset(cfg, "train"), make_dataset(cfg, "test")
    b = tr.get_batch(torch.arange(64), generator=torch.Generator().manual_seed(0))
    assert (b["color"] - CLASS_COLORS[b["number_cls"]]).abs().max() <= 0.05 + 1e-6
    t = te.get_batch(torch.arange(len(te)))
    off = (t["color"] - CLASS_COLORS[t["number_cls"]]).abs().max(-1).values > 0.05
    assert off.float().mean() > 0.9


def test_train_limit_is_a_fixed_random_subset():
    ds = ColoredMNIST("train")
    a, b = Limited(ds, 1000), Limited(ds, 1000)
    assert torch.equal(a.labels, b.labels)
    assert len(torch.unique(a.labels)) == 10           # every digit, even on data sorted by digit
    assert not torch.equal(a.index, torch.arange(1000))
    assert torch.equal(a.get_batch(torch.arange(5))["number_cls"], ds.labels[a.index[:5]])
    assert torch.equal(Limited(ds, len(ds)).index, torch.arange(len(ds)))


def test_init_from_starts_from_a_checkpoint(micro_config, tmp_path):
    first = train(micro_config(train_params={"epochs": 1}), out_dir=tmp_path / "a", progress=False)
    path = micro_config(train_params={"epochs": 1, "init_from": str(first["best_path"]), "lr": 1e-9,
                                      "warmup_epochs": 0}, name="ft.yaml")
    again = train(path, out_dir=tmp_path / "b", progress=False)
    for (k, v), w in zip(first["model"].state_dict().items(), again["model"].state_dict().values()):
        if v.is_floating_point():
            torch.testing.assert_close(v, w, atol=1e-6, rtol=0, msg=k)
    with pytest.raises(FileNotFoundError, match="init_from"):
        train(micro_config(train_params={"init_from": str(tmp_path / "none.pt")}, name="x.yaml"),
              out_dir=tmp_path / "c", progress=False)
    with pytest.raises(ValueError, match="different model config"):
        train(micro_config(model={"emb_dim": 48}, train_params={"init_from": str(first["best_path"])},
                           name="y.yaml"), out_dir=tmp_path / "d", progress=False)


def test_mean_se_and_summarise():
    from vitlib.compare import mean_se, summarise
    m, se = mean_se([0.5, 0.7])
    assert m == pytest.approx(0.6) and se == pytest.approx(0.1)   # sd 0.1414 / sqrt(2)
    assert mean_se([0.3])[1] != mean_se([0.3])[1]                 # nan: one value has no spread
    rows = [{"arch": "vit", "n_train": "1000", "test_acc": "0.5"}, {"arch": "vit", "n_train": "1000", "test_acc": "0.7"},
            {"arch": "cnn", "n_train": "1000", "test_acc": "0.9"}]
    out = {r["arch"]: r for r in summarise(rows)}
    assert out["vit"]["mean"] == pytest.approx(0.6) and out["vit"]["n"] == 2 and out["cnn"]["n"] == 1


def test_matched_config_makes_the_same_steps_at_any_size():
    from vitlib.compare import matched_config
    from vitlib.config import parse_config
    for n in (1000, 55000):
        cfg = parse_config(matched_config({"arch": "cnn"}, steps=300, seed=3, train_limit=n))
        assert cfg.model.arch == "cnn" and cfg.train.seed == 3 and cfg.train.epochs == 1
        assert cfg.dataset.epoch_samples == 300 * cfg.train.batch_size and cfg.dataset.train_limit == n


def test_colour_conflict_counts_answers_that_follow_colour():
    """A 'model' that answers with the nearest palette colour follows colour every time."""
    from vitlib.compare import colour_conflict

    class ColourOnly(torch.nn.Module):
        def forward(self, x):
            mean = ((x + 1) / 2).flatten(2)                      # (B, 3, HW) in [0, 1]
            # the digit is the pixels closest to a palette colour; score each class by its best pixel
            d = torch.cdist(mean.transpose(1, 2), CLASS_COLORS[None].expand(len(x), -1, -1))
            return -d.min(1).values                              # (B, 10)

    ds = ColoredMNIST("test")
    out = colour_conflict(ColourOnly(), ds, n=200)
    assert out["follows"] > 0.9 and out["acc"] < 0.1


def test_a_checkpoint_from_before_arch_and_conv_stem_still_matches_its_config():
    from vitlib.checkpoint import config_mismatches, vit_config_to_dict
    stored = vit_config_to_dict(ViTConfig.fine())
    del stored["arch"], stored["conv_stem"]               # written before the two fields existed
    assert config_mismatches(stored, ViTConfig.fine()) == []
    assert config_mismatches(stored, ViTConfig.fine().__class__(patch_size=4, arch="cnn")) == [
        "arch: checkpoint 'vit' vs config 'cnn'"]
