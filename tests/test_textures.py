"""Texture classes, the TextureBank cache, and folder textures (the original's data/textures)."""
import math
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vitlib import textures as T


def structure_features(imgs: torch.Tensor) -> torch.Tensor:
    """Colour-blind features of uint8 (N,3,S,S) textures: how the pattern looks, not its colours.
    Radial and (sorted, so rotation-blind) angular power spectrum, a contrast-normalised grey
    histogram, and gradient statistics."""
    g = imgs.float().mean(1)
    g = g - g.mean((1, 2), keepdim=True)
    sd = g.std((1, 2), keepdim=True)
    flat = (sd[:, 0, 0] < 1).float()[:, None]
    g = g / (sd + 1e-3)
    S = g.shape[-1]
    p = torch.fft.fftshift(torch.fft.fft2(g).abs() ** 2, dim=(-2, -1))
    f = torch.fft.fftshift(torch.fft.fftfreq(S)) * S
    fy, fx = torch.meshgrid(f, f, indexing="ij")
    r, a = torch.hypot(fx, fy), torch.atan2(fy, fx) % math.pi
    rb, ab = (r / (S / 2) * 6).long().clamp(0, 5), (a / math.pi * 8).long().clamp(0, 7)
    pw = p * (r > 0.5)
    radial = torch.stack([(pw * (rb == i)).sum((1, 2)) for i in range(6)], 1)
    ang = torch.stack([(pw * (ab == i)).sum((1, 2)) for i in range(8)], 1)
    radial = radial / (radial.sum(1, keepdim=True) + 1e-6)
    ang = (ang / (ang.sum(1, keepdim=True) + 1e-6)).sort(1, descending=True).values
    lo, hi = g.amin((1, 2), keepdim=True), g.amax((1, 2), keepdim=True)
    q = ((g - lo) / (hi - lo + 1e-6) * 6).long().clamp(0, 5)
    hist = torch.stack([(q == i).float().mean((1, 2)) for i in range(6)], 1)
    gx, gy = g[:, :, 1:] - g[:, :, :-1], g[:, 1:] - g[:, :-1]
    grad = torch.stack([gx.abs().mean((1, 2)), gy.abs().mean((1, 2)), (gx.abs() > 1).float().mean((1, 2))], 1)
    return torch.cat([radial, ang, hist, grad, flat], 1)


def test_procedural_bank_shape():
    bank = T.procedural_bank(32, n_instances=8, seed=0, cache=False)
    assert bank.num_classes >= 12 and len(set(bank.names)) == bank.num_classes
    side = T.bank_side(32)
    assert side % 8 == 0 and side >= 1.25 * 32
    assert bank.grid.shape == (bank.num_classes, 8, 3, side, side) and bank.grid.dtype == torch.uint8
    assert T.bank_side(224) % 8 == 0 and T.bank_side(224) >= 280


def test_procedural_is_deterministic_per_seed():
    a = T.procedural_bank(32, n_instances=4, seed=3, cache=False)
    b = T.procedural_bank(32, n_instances=4, seed=3, cache=False)
    c = T.procedural_bank(32, n_instances=4, seed=4, cache=False)
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.images, c.images)
    # instance i does not depend on how many instances are asked for
    d = T.procedural_bank(32, n_instances=6, seed=3, cache=False)
    assert torch.equal(d.grid[:, :4], a.grid)


def test_instances_differ_within_a_class():
    bank = T.procedural_bank(32, n_instances=6, seed=0, cache=False)
    for c, name in enumerate(bank.names):
        g = bank.grid[c].float()
        assert (g[0] - g[1]).abs().mean() > 5, f"{name}: instances should be fresh draws"


def test_classes_are_visually_distinct():
    """A nearest-centroid classifier on colour-blind structure features tells the classes apart."""
    k = 40
    bank = T.procedural_bank(32, n_instances=k, seed=1, cache=False)
    X, y = structure_features(bank.images), bank.labels
    fit = (torch.arange(len(y)) % k) < k // 2
    mu, sd = X[fit].mean(0), X[fit].std(0) + 1e-6
    Z = (X - mu) / sd
    centroids = torch.stack([Z[fit & (y == c)].mean(0) for c in range(bank.num_classes)])
    pred = torch.cdist(Z[~fit], centroids).argmin(1)
    acc = (pred == y[~fit]).float().mean().item()
    assert acc > 0.85, f"held-out nearest-centroid accuracy {acc:.2f}; chance is {1 / bank.num_classes:.2f}"
    for c, name in enumerate(bank.names):
        recall = (pred[y[~fit] == c] == c).float().mean().item()
        assert recall >= 0.6, f"texture class {name!r} is confused with others (recall {recall:.2f})"


@pytest.mark.parametrize("name", T.PROCEDURAL_CLASSES)
def test_texture_features_scale_with_image_size(name):
    """The same draw at 32 px and at 224 px (shrunk to 32) looks alike; another draw does not."""
    same, other = [], []
    for i in range(3):
        a = T.render(name, T.bank_side(32), 32, np.random.default_rng([7, i])).astype(float)
        big = T.render(name, T.bank_side(224), 224, np.random.default_rng([7, i]))
        b = cv2.resize(big, a.shape[:2][::-1], interpolation=cv2.INTER_AREA).astype(float)
        c = T.render(name, T.bank_side(32), 32, np.random.default_rng([8, i])).astype(float)
        same.append(np.abs(a - b).mean())
        other.append(np.abs(a - c).mean())
    assert np.mean(same) < 0.4 * np.mean(other)


def test_bank_is_cached_in_memory_and_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("VITLIB_DATA", str(tmp_path))
    monkeypatch.setattr(T, "_MEMORY_CACHE", {})
    n0 = T.generation_count
    a = T.procedural_bank(32, n_instances=3, seed=5)
    assert T.generation_count == n0 + 1
    files = list((tmp_path / "cache").glob("*.pt"))
    assert len(files) == 1 and f"v{T.GENERATOR_VERSION}" in files[0].name
    assert T.procedural_bank(32, n_instances=3, seed=5) is a            # memory hit
    monkeypatch.setattr(T, "_MEMORY_CACHE", {})                          # a new process
    b = T.procedural_bank(32, n_instances=3, seed=5)
    assert T.generation_count == n0 + 1 and torch.equal(a.images, b.images)  # loaded, not regenerated
    T.procedural_bank(32, n_instances=3, seed=6)                         # other key: generates
    assert T.generation_count == n0 + 2
    # a truncated cache file is regenerated, not a crash
    files[0].write_bytes(files[0].read_bytes()[:100])
    monkeypatch.setattr(T, "_MEMORY_CACHE", {})
    c = T.procedural_bank(32, n_instances=3, seed=5)
    assert T.generation_count == n0 + 3 and torch.equal(a.images, c.images)


def test_random_crops_are_windows_of_the_instance():
    bank = T.procedural_bank(32, n_instances=2, seed=0, cache=False)
    inst = torch.tensor([0, 5, 5, 25])
    crops = bank.random_crops(inst, torch.Generator().manual_seed(0))
    assert crops.shape == (4, 3, 32, 32)
    side = bank.images.shape[-1]
    for crop, i in zip(crops, inst.tolist()):
        hits = [(y, x) for y in range(side - 31) for x in range(side - 31)
                if torch.equal(bank.images[i, :, y:y + 32, x:x + 32], crop)]
        assert hits, "a crop must be a window of its own instance"
    many = bank.random_crops(torch.zeros(20, dtype=torch.long))
    assert len({c.numpy().tobytes() for c in many}) > 5, "crops should vary"


def test_centre_resize_takes_the_largest_centred_square():
    img = torch.zeros(3, 60, 100, dtype=torch.uint8)
    img[:, :, 20:80] = 200                     # the centred 60x60 square
    out = T.centre_resize(img, 30)
    assert out.shape == (3, 30, 30) and (out == 200).all()


def _write(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)


@pytest.fixture
def texture_folder(tmp_path):
    """Two classes: grey 256 px PNGs, and RGB 300x240 PNGs plus one corrupt file."""
    rng = np.random.default_rng(0)
    root = tmp_path / "textures"
    for i in range(2):
        _write(root / "grey" / f"{i}.png", rng.integers(0, 256, (256, 256), dtype=np.uint8))
        _write(root / "rgb" / f"{i}.png", rng.integers(0, 256, (240, 300, 3), dtype=np.uint8))
    (root / "rgb" / "broken.png").write_bytes(b"not a png at all")
    return root


def test_folder_bank(texture_folder):
    with pytest.warns(UserWarning, match="broken.png"):
        bank = T.folder_bank(texture_folder, 32)
    assert bank.names == ["grey", "rgb"] and bank.labels.tolist() == [0, 0, 1, 1]
    # rescaled by 32/224 so a crop covers the same fraction of the texture as the original's 224 px
    assert bank.sizes.tolist() == [[37, 37], [37, 37], [34, 43], [34, 43]]
    grey = bank.instance(0)
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[0], grey[2]), "grey -> 3 equal channels"
    rgb = bank.instance(2)
    assert not torch.equal(rgb[0], rgb[2])
    # RGB order: OpenCV reads BGR, the bank holds RGB
    src = cv2.resize(cv2.imread(str(texture_folder / "rgb" / "0.png")), (43, 34), interpolation=cv2.INTER_AREA)
    assert torch.equal(rgb.permute(1, 2, 0), torch.from_numpy(src[..., ::-1].copy()))
    crops = bank.random_crops(torch.tensor([0, 1, 2, 3]))
    assert crops.shape == (4, 3, 32, 32)
    assert bank.centre_crops(torch.tensor([2])).shape == (1, 3, 32, 32)


def test_folder_texture_smaller_than_crop(tmp_path):
    _write(tmp_path / "t" / "small" / "tiny.png", np.zeros((150, 150), np.uint8))
    with pytest.raises(ValueError, match=r"tiny\.png is 21x21 px, smaller than the 32 px crop.*Fix"):
        T.folder_bank(tmp_path / "t", 32)


def test_folder_with_no_readable_textures(tmp_path):
    (tmp_path / "t" / "a").mkdir(parents=True)
    (tmp_path / "t" / "a" / "x.png").write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="x.png"), pytest.raises(ValueError, match="no readable texture"):
        T.folder_bank(tmp_path / "t", 32)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        T.folder_bank(tmp_path / "missing", 32)


def test_get_bank_checks_image_size():
    bank = T.procedural_bank(32, n_instances=2, cache=False)
    assert T.get_bank(bank, 32) is bank
    with pytest.raises(ValueError, match="built for 32 px"):
        T.get_bank(bank, 64)


def test_real_photo_textures():
    """The skimage brick/grass/gravel photos (512 px grey), found via $VITLIB_TEXTURES."""
    root = os.environ.get("VITLIB_TEXTURES")
    if not root:
        pytest.skip("VITLIB_TEXTURES is not set (point it at a {class}/*.png folder to run this test)")
    from vitlib.data import ColoredMNIST
    bank = T.folder_bank(root, 224)
    assert bank.num_classes >= 1 and (bank.sizes >= 224).all()
    img = bank.instance(0)
    if img.shape[-1] == 512:                    # native resolution is kept at 224 px
        assert bank.sizes[0].tolist() == [512, 512]
    small = T.folder_bank(root, 32)
    assert (small.sizes == torch.round(bank.sizes * 32 / 224)).all()
    ds = ColoredMNIST("test", image_size=32, textures=root)
    assert ds.texture_names == bank.names
    s = ds[0]
    assert s["image"].shape == (3, 32, 32) and 0 <= s["texture_cls"] < bank.num_classes
    train = ColoredMNIST("train", image_size=224, textures=bank)
    assert train[0]["image"].shape == (3, 224, 224)
