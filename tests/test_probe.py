"""Linear probes (vitlib.probe) on toys whose answers are known, and the layer features of a ViT.

    .venv/bin/python -m pytest tests/test_probe.py -q
"""
import math

import pytest
import torch

from vitlib import probe
from vitlib.model import ViT, ViTConfig


def labelled_features(n, D, n_classes, noise, seed=0):
    """Features that are a linear function of the label: onehot(y) @ M + noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(n_classes, (n,), generator=g)
    M = torch.randn(n_classes, D, generator=g)
    X = torch.nn.functional.one_hot(y, n_classes).float() @ M + noise * torch.randn(n, D, generator=g)
    return X, y


def test_a_linear_function_of_the_label_is_read_off():
    X, y = labelled_features(1000, 32, 10, noise=0.1)
    p = probe.fit_linear_classifier(X[:700], y[:700], 10)
    assert probe.probe_accuracy(p, X[700:], y[700:]) >= 0.99
    assert p.weight.shape == (32, 10) and p.bias.shape == (10,)


def test_pure_noise_features_score_near_chance():
    # Features independent of the labels: held-out predictions are independent of the truth, so
    # accuracy is Binomial(n_test, 1/10) / n_test, std sqrt(0.1 * 0.9 / 2000) = 0.0067. A tolerance
    # of 0.03 is 4.5 std; with the fixed seeds the test is deterministic, the bound says it is fair.
    g = torch.Generator().manual_seed(1)
    n_train, n_test, D = 1000, 2000, 16
    X = torch.randn(n_train + n_test, D, generator=g)
    y = torch.randint(10, (n_train + n_test,), generator=g)
    p = probe.fit_linear_classifier(X[:n_train], y[:n_train], 10)
    train_acc = probe.probe_accuracy(p, X[:n_train], y[:n_train])
    test_acc = probe.probe_accuracy(p, X[n_train:], y[n_train:])
    assert abs(test_acc - 0.1) < 4.5 * math.sqrt(0.1 * 0.9 / n_test)
    assert train_acc > test_acc + 0.03  # it does fit the noise it saw: held-out scoring matters


def test_the_classifier_checks_its_labels():
    with pytest.raises(ValueError, match="labels in"):
        probe.fit_linear_classifier(torch.randn(10, 3), torch.full((10,), 5), n_classes=3)


def test_ridge_recovers_a_linear_map_and_not_noise():
    g = torch.Generator().manual_seed(2)
    X = torch.randn(500, 10, generator=g) * 3 + 1          # unstandardised on purpose
    W = torch.randn(10, 3, generator=g)
    Y = X @ W + 0.5 + 1e-3 * torch.randn(500, 3, generator=g)
    fit = probe.fit_ridge(X[:350], Y[:350], l2=1e-3)
    assert probe.r2_score(Y[350:], fit(X[350:])) > 0.99
    Y_noise = torch.rand(500, 3, generator=g)
    fit = probe.fit_ridge(X[:350], Y_noise[:350], l2=1e-3)
    assert probe.r2_score(Y_noise[350:], fit(X[350:])) <= 0.05


def test_r2_known_values():
    Y = torch.tensor([[0.0, 1.0], [1.0, 3.0], [2.0, 5.0]])
    assert probe.r2_score(Y, Y) == pytest.approx(1.0)
    assert probe.r2_score(Y, Y.mean(0).expand_as(Y)) == pytest.approx(0.0)
    # column 1: SSE = 3 * 1 = 3, SST = 2; column 2: perfect -> mean(1 - 3/2, 1) = 0.25
    assert probe.r2_score(Y, Y + torch.tensor([1.0, 0.0])) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="constant"):
        probe.r2_score(torch.ones(4, 3), torch.zeros(4, 3))


# --------------------------------------------------------------------------------------------
def tiny_vit(**kw):
    torch.manual_seed(0)
    model = ViT(ViTConfig(**{**ViTConfig.tiny().to_dict(), **kw}))
    torch.nn.init.normal_(model.cls_token)  # a CLS token that differs from zero in every channel
    return model


def test_layer_features_are_the_residual_stream():
    model = tiny_vit().eval()
    cfg, B = model.config, 4
    x = torch.randn(B, 3, *cfg.image_hw)
    feats = probe.layer_features(model, x)
    L, D = cfg.n_layers, cfg.emb_dim
    assert set(feats) == {"cls", "mean"}
    assert all(f.shape == (L + 1, B, D) for f in feats.values())
    # depth 0 by hand: patch embedding, CLS in front, position added
    with torch.no_grad():
        tokens = torch.cat([model.cls_token.expand(B, -1, -1), model.patch_embed(x)], 1) + model.pos_embed
    torch.testing.assert_close(feats["cls"][0], tokens[:, 0])
    torch.testing.assert_close(feats["mean"][0], tokens[:, 1:].mean(1))
    # the last depth is what the final LayerNorm reads for the CLS token (pool='cls')
    seen = []
    h = model.norm.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    with torch.no_grad():
        model(x)
    h.remove()
    torch.testing.assert_close(feats["cls"][-1], seen[0])
    # and the depths differ: each block changes the stream
    assert not torch.allclose(feats["cls"][1], feats["cls"][0])


def test_layer_features_run_in_eval_mode_and_restore_the_mode():
    model = tiny_vit(patch_dropout=0.5, mlp_dropout=0.5).train()
    x = torch.randn(3, 3, *model.config.image_hw)
    a, b = probe.layer_features(model, x), probe.layer_features(model, x)
    torch.testing.assert_close(a["cls"], b["cls"])  # no dropout noise
    assert model.training
    assert all(len(blk._forward_hooks) == 0 and len(blk._forward_pre_hooks) == 0 for blk in model.blocks)


class FakeDigits:
    """A stand-in for ColoredMNIST: image i is constant i / 100, its labels are functions of i."""
    def __init__(self, n, size):
        self.n, self.size = n, size

    def __len__(self):
        return self.n

    def get_batch(self, idx, generator=None):
        idx = torch.as_tensor(idx)
        image = (idx.float() / 100)[:, None, None, None].expand(-1, 3, self.size, self.size)
        return {"image": image, "number_cls": idx % 10, "texture_cls": idx % 3,
                "color": torch.stack([idx / 100, idx / 200, idx / 300], 1).float()}


def test_collect_features_is_a_seeded_sample_in_any_batch_size():
    model = tiny_vit().eval()
    ds = FakeDigits(50, model.config.image_hw[0])
    a = probe.collect_features(model, ds, 20, batch_size=7, seed=3, progress=False)
    b = probe.collect_features(model, ds, 20, batch_size=256, seed=3, progress=False)
    L, D = model.config.n_layers, model.config.emb_dim
    assert a["cls"].shape == a["mean"].shape == (L + 1, 20, D)
    assert len(set(a["indices"].tolist())) == 20          # no image twice
    assert torch.equal(a["number_cls"], a["indices"] % 10) and a["color"].shape == (20, 3)
    torch.testing.assert_close(a["cls"], b["cls"])
    one = probe.layer_features(model, ds.get_batch(a["indices"][:1])["image"])
    torch.testing.assert_close(a["mean"][:, :1], one["mean"])
    with pytest.raises(ValueError, match="dataset of 50"):
        probe.collect_features(model, ds, 51, progress=False)


def synthetic_features(n=600, D=12, seed=0):
    """Depth 0 knows nothing; depth 1's CLS holds digit and colour, its mean token the texture."""
    g = torch.Generator().manual_seed(seed)
    digit, texture = torch.randint(10, (n,), generator=g), torch.randint(4, (n,), generator=g)
    color = torch.rand(n, 3, generator=g)
    noise = lambda: torch.randn(n, D, generator=g)
    onehot = torch.nn.functional.one_hot
    cls1 = torch.cat([onehot(digit, 10).float() * 3, color], 1) @ torch.randn(13, D, generator=g)
    mean1 = onehot(texture, 4).float() @ torch.randn(4, D, generator=g) * 3
    return {"cls": torch.stack([noise(), cls1 + 0.05 * noise()]),
            "mean": torch.stack([noise(), mean1 + 0.05 * noise()]),
            "number_cls": digit, "texture_cls": texture, "color": color}


def test_probe_layers_finds_where_the_knowledge_is():
    rows = probe.probe_layers(synthetic_features())
    assert [(r["depth"], r["token"]) for r in rows] == [(0, "cls"), (0, "mean"), (1, "cls"), (1, "mean")]
    at = {(r["depth"], r["token"]): r for r in rows}
    assert at[1, "cls"]["digit_acc"] >= 0.99 and at[1, "cls"]["color_r2"] > 0.95
    assert at[1, "mean"]["texture_acc"] >= 0.99
    for r in rows:
        assert 0.05 < r["digit_chance"] < 0.2 and 0.15 < r["texture_chance"] < 0.4
        assert r["color_r2_chance"] == 0.0
    # nothing to read at depth 0: near chance. 180 held-out rows: binomial std 0.022 (digit) and
    # 0.032 (texture), so 0.12 is over 3.5 std of either
    for key in ("digit_acc", "texture_acc"):
        chance = rows[0][key.replace("acc", "chance")]
        assert abs(at[0, "cls"][key] - chance) < 0.12
    assert at[0, "cls"]["color_r2"] < 0.05


def test_plot_probes_draws_three_labelled_panels(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    from vitlib.viz import plot_probes
    rows = probe.probe_layers(synthetic_features(n=300))
    fig = plot_probes(rows, path=tmp_path / "probes.png")
    assert (tmp_path / "probes.png").stat().st_size > 0
    axes = fig.axes
    assert len(axes) == 3 and all(ax.get_title() and ax.get_xlabel() and ax.get_ylabel() for ax in axes)
    assert len(axes[0].get_lines()) == 3  # CLS, mean, chance
