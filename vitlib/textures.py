"""Backgrounds for coloured MNIST: procedural texture classes, folder textures, and a TextureBank.

The original project pasted digits onto photos of the ALOT texture database. We cannot ship those,
so the default is 13 procedural texture classes drawn with numpy/OpenCV. Each class is a generator
with random parameters (frequency, angle, two colours, ...), so every instance is fresh. Pattern
sizes are measured in *image widths*, not pixels: a 32 px and a 224 px image show the same texture.

A TextureBank generates (or loads) every instance once, keeps them as one uint8 tensor, and cuts
backgrounds out of it with tensor indexing, so an epoch never regenerates anything:
  train: a random image_size crop of a random instance (the bank side is ~1.25x image_size);
  val/test: the largest centred square of the instance, resized to image_size (precomputed).
Procedural banks are cached on disk under data_dir()/'cache' and in memory.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from vitlib import paths

GENERATOR_VERSION = 1      # bump when a generator changes, so stale disk caches are not reused
ORIGINAL_CROP = 224        # the original random-cropped 224 px out of native-resolution textures
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
generation_count = 0       # how many procedural banks this process generated (tests check caching)
_MEMORY_CACHE: dict[tuple, "TextureBank"] = {}

# ----------------------------------------------------------------------------------------------
# procedural generators: (rng, u, v) -> pattern t in [0,1], u/v = pixel coordinates in image widths


def _rotate(u, v, angle):
    return u * math.cos(angle) + v * math.sin(angle), -u * math.sin(angle) + v * math.cos(angle)


def _soft_square(x, sharpness=4.0):
    """A square wave with slightly soft edges (less aliasing at 32 px than a hard one)."""
    return np.clip(np.sin(2 * math.pi * x) * sharpness, -1, 1) * 0.5 + 0.5


def _value_noise(rng, u, v, freq, octaves=4):
    """Fractal value noise: random grids of growing resolution, bicubic-upsampled and summed."""
    n, out, amp = u.shape[0], np.zeros(u.shape, np.float32), 1.0
    extent = float(u.max() - u.min()) + 1e-6
    for o in range(octaves):
        cells = max(2, int(round(freq * 2 ** o * extent))) + 1
        grid = rng.random((cells, cells), dtype=np.float32)
        out += amp * cv2.resize(grid, (n, n), interpolation=cv2.INTER_CUBIC)
        amp *= 0.5
    return (out - out.min()) / (out.max() - out.min() + 1e-6)


def _cells(rng, u, v, density):
    """Voronoi cells of random points (with a margin, so edge cells look like the others):
    (index of the nearest point, distance to it, number of points)."""
    lo, hi = float(u.min()) - 0.2, float(u.max()) + 0.2
    pts = rng.uniform(lo, hi, size=(max(4, int(density * (hi - lo) ** 2)), 2)).astype(np.float32)
    d2 = (u[..., None] - pts[:, 0]) ** 2 + (v[..., None] - pts[:, 1]) ** 2
    return d2.argmin(-1), np.sqrt(d2.min(-1)), len(pts)


def gen_noise(rng, u, v):
    return _value_noise(rng, u, v, rng.uniform(2, 4))


def gen_stripes(rng, u, v):
    x, _ = _rotate(u, v, rng.uniform(0, math.pi))
    return _soft_square(x * rng.uniform(2.5, 5) + rng.random())


def gen_checker(rng, u, v):
    x, y = _rotate(u, v, rng.uniform(0, math.pi / 2))
    f = rng.uniform(2, 3.5)
    return (np.sign(np.sin(2 * math.pi * f * x) * np.sin(2 * math.pi * f * y)) * 0.5 + 0.5)


def gen_dots(rng, u, v):
    x, y = _rotate(u, v, rng.uniform(0, math.pi / 3))
    p = 1 / rng.uniform(3, 5)                         # lattice period, image widths
    r = rng.uniform(0.25, 0.38) * p                   # dot radius
    # hexagonal lattice: two offset rectangular lattices, distance to the nearest point of either
    d = np.full(u.shape, np.inf, np.float32)
    for ox, oy in ((0, 0), (0.5, 0.5)):
        gx = (x / p - ox) - np.round(x / p - ox)
        gy = (y / (p * math.sqrt(3)) - oy) - np.round(y / (p * math.sqrt(3)) - oy)
        d = np.minimum(d, np.hypot(gx * p, gy * p * math.sqrt(3)))
    return np.clip((r - d) / (0.08 * p) + 0.5, 0, 1)


def gen_wood(rng, u, v):
    cx, cy = rng.uniform(-1.5, 2.5, size=2)           # ring centre, usually outside the image
    r = np.hypot(u - cx, v - cy) + 0.08 * _value_noise(rng, u, v, 2, octaves=2)
    return (0.5 + 0.5 * np.sin(2 * math.pi * rng.uniform(5, 8) * r)) ** 2


def gen_marble(rng, u, v):
    x, _ = _rotate(u, v, rng.uniform(0, math.pi))
    turb = _value_noise(rng, u, v, 2.5, octaves=5)
    return np.abs(np.sin(2 * math.pi * (rng.uniform(1, 2) * x + 1.5 * turb))) ** 0.4


def gen_cellular(rng, u, v):
    f = rng.uniform(3, 5)
    return np.clip(_cells(rng, u, v, f * f)[1] * f * 1.2, 0, 1)


def gen_mosaic(rng, u, v):
    idx, _, n = _cells(rng, u, v, rng.uniform(2.5, 4) ** 2)
    return rng.random(n).astype(np.float32)[idx]


def gen_waves(rng, u, v):
    x, y = _rotate(u, v, rng.uniform(0, math.pi))
    wobble = rng.uniform(1.5, 3) * np.sin(2 * math.pi * rng.uniform(1, 2) * x)
    return 0.5 + 0.5 * np.sin(2 * math.pi * rng.uniform(3, 5) * y + wobble)


def gen_zigzag(rng, u, v):
    x, y = _rotate(u, v, rng.choice([0, math.pi / 2]) + rng.uniform(-0.2, 0.2))
    g = rng.uniform(2, 3.5)
    tri = np.abs((x * g) % 1.0 - 0.5) * 2              # triangle wave in [0,1]
    return _soft_square(rng.uniform(3, 5) * (y + 0.35 * tri / g * 2))


def gen_bricks(rng, u, v):
    x, y = _rotate(u, v, rng.choice([0, math.pi / 2]))
    h = 1 / rng.uniform(4, 6.5)                       # row height, image widths
    w = h * rng.uniform(1.8, 2.6)                     # brick width
    row = np.floor(y / h)
    xs = x / w + 0.5 * (row % 2)
    mortar = 0.12 * h
    edge = np.minimum(np.minimum(y - row * h, (row + 1) * h - y),
                      np.minimum(xs - np.floor(xs), np.ceil(xs) - xs) * w)
    return np.clip((edge - mortar) / (0.05 * h) + 0.5, 0, 1)


def gen_plaid(rng, u, v):
    x, y = _rotate(u, v, rng.uniform(0, math.pi / 2))
    f, duty = rng.uniform(2.5, 4), rng.uniform(0.25, 0.45)
    band = lambda z: (((z * f) % 1.0) < duty).astype(np.float32)
    return 0.5 * band(x) + 0.5 * band(y + rng.random())  # three levels: a tartan, not a checker


def gen_solid(rng, u, v):
    return np.zeros(u.shape, np.float32)


GENERATORS: dict[str, Callable] = {
    "noise": gen_noise, "stripes": gen_stripes, "checker": gen_checker, "dots": gen_dots,
    "wood": gen_wood, "marble": gen_marble, "cellular": gen_cellular, "mosaic": gen_mosaic,
    "waves": gen_waves, "zigzag": gen_zigzag, "bricks": gen_bricks, "plaid": gen_plaid,
    "solid": gen_solid,
}
PROCEDURAL_CLASSES = list(GENERATORS)


def render(name: str, side: int, image_size: int, rng: np.random.Generator) -> np.ndarray:
    """One instance of texture class `name`: uint8 (side, side, 3), features scaled to image_size."""
    c = (np.arange(side, dtype=np.float32) + 0.5) / image_size  # pixel centres in image widths
    v, u = np.meshgrid(c, c, indexing="ij")
    c0 = rng.random(3)
    c1 = rng.random(3)
    while np.abs(c1 - c0).sum() < 0.6:                # keep the pattern visible: colours must differ
        c1 = rng.random(3)
    t = GENERATORS[name](rng, u, v).astype(np.float32)[..., None]
    img = c0 * (1 - t) + c1 * t
    return np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)


def bank_side(image_size: int) -> int:
    """Side of a procedural instance: 1.25x the image so random crops vary, up to a multiple of 8."""
    return int(math.ceil(round(1.25 * image_size) / 8) * 8)


def default_instances(image_size: int) -> int:
    """Instances per class: many at small sizes (cheap: ~0.5 s for all), fewer at 224 px (~3 s),
    and fewer still at large sizes in quick mode (CI, the book build)."""
    if image_size <= 64:
        return 128
    return 8 if paths.is_quick() else 32


# ----------------------------------------------------------------------------------------------
# the bank


class TextureBank:
    """Every texture instance, kept in memory as uint8 tensors, plus the crops cut out of them.

    images: uint8 (N, 3, H, W), all instances (zero-padded when folder images differ in size)
    sizes:  int64 (N, 2), each instance's real (h, w);  labels: int64 (N,), its class
    names:  class names; class c owns instances starts[c] .. starts[c] + counts[c] - 1
    files:  source file per instance (folder banks), for error messages and imdb export
    """

    def __init__(self, images: "list[np.ndarray] | torch.Tensor", labels: list[int], names: list[str],
                 image_size: int, files: list[str] | None = None, check_crop: bool = True,
                 allow_empty: bool = False):
        """images: uint8 RGB arrays (h, w, 3) of any sizes, or one uint8 tensor (N, 3, H, W).

        check_crop: fail now, not mid-epoch, when an instance is smaller than a training crop.
        allow_empty: classes may have no instances (imdb subsets, whose entries name their instance).
        """
        if len(images) == 0:
            raise ValueError("a TextureBank needs at least one texture image")
        self.names, self.image_size, self.files = list(names), int(image_size), files
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        if (self.labels[1:] < self.labels[:-1]).any():
            raise ValueError("TextureBank instances must be grouped by class (sorted labels)")
        if isinstance(images, torch.Tensor):
            self.images = images.to(torch.uint8).contiguous()
            self.sizes = torch.tensor(self.images.shape[2:]).repeat(len(images), 1)
        else:
            self.sizes = torch.tensor([im.shape[:2] for im in images], dtype=torch.long)
            H, W = self.sizes.max(0).values.tolist()
            self.images = torch.zeros(len(images), 3, H, W, dtype=torch.uint8)
            for i, im in enumerate(images):
                self.images[i, :, : im.shape[0], : im.shape[1]] = torch.from_numpy(im).permute(2, 0, 1)
        for i, (h, w) in enumerate(self.sizes.tolist()):
            if check_crop and min(h, w) < self.image_size:
                name = files[i] if files else f"instance {i}"
                raise ValueError(
                    f"texture {name} is {w}x{h} px, smaller than the {self.image_size} px crop. "
                    f"Fix: use textures at least {self.image_size} px on each side (folder textures are "
                    f"first scaled by image_size/{ORIGINAL_CROP}; for an imdb folder, re-run prepare "
                    f"with --image-size {self.image_size}), or remove that file.")
        self.counts = torch.bincount(self.labels, minlength=len(self.names))
        if not allow_empty and (self.counts == 0).any():
            empty = [n for n, c in zip(self.names, self.counts.tolist()) if c == 0]
            raise ValueError(f"texture classes with no instances: {empty}")
        self.starts = torch.cumsum(self.counts, 0) - self.counts
        self._centre: torch.Tensor | None = None

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def grid(self) -> torch.Tensor:
        """uint8 (num_classes, K, 3, H, W) view, when every class has K instances (procedural)."""
        if (self.counts != self.counts[0]).any():
            raise ValueError("classes have different instance counts; use .images and .labels")
        return self.images.view(self.num_classes, int(self.counts[0]), *self.images.shape[1:])

    def pick(self, classes: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Instance index for each class, given uniforms u in [0,1)."""
        k = (u * self.counts[classes]).long().clamp_max(self.counts[classes] - 1)
        return self.starts[classes] + k

    def random_crops(self, inst: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """uint8 (B, 3, s, s): a random image_size crop of each instance (the train background)."""
        s = self.image_size
        room = self.sizes[inst] - s + 1                                   # (B, 2) valid offsets
        off = (torch.rand(len(inst), 2, generator=generator) * room).long()
        out = torch.empty(len(inst), 3, s, s, dtype=torch.uint8)
        # a loop of slice copies beats advanced indexing here (1.4 vs 3.8 ms at 32 px, 5 vs 170 ms
        # at 224 px, batch 128): each copy is a contiguous memcpy per row
        for b, (i, (y, x)) in enumerate(zip(inst.tolist(), off.tolist())):
            out[b] = self.images[i, :, y:y + s, x:x + s]
        return out

    def centre_crops(self, inst: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, s, s): the largest centred square, resized to image_size (val/test)."""
        if self._centre is None:
            if (self.sizes == self.sizes[0]).all():      # one size (procedural): batched resizes
                self._centre = torch.cat([centre_resize(self.images[i:i + 256], self.image_size)
                                          for i in range(0, len(self.images), 256)])
            else:
                self._centre = torch.stack([centre_resize(self.instance(i), self.image_size)
                                            for i in range(len(self.images))])
        return self._centre[inst]

    def instance(self, i: int) -> torch.Tensor:
        """uint8 (3, h, w): instance i without padding."""
        h, w = self.sizes[i].tolist()
        return self.images[i, :, :h, :w]

    def __repr__(self) -> str:
        return (f"TextureBank({self.num_classes} classes, {len(self.images)} instances, "
                f"storage {tuple(self.images.shape[2:])}, image_size={self.image_size})")


def centre_resize(img: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (..., 3, h, w) -> uint8 (..., 3, size, size): largest centred square, antialiased resize.

    The original's centre crop (`im[h//2 - ...]`) comes out empty for square textures; we take
    the largest centred square instead, which is what it meant to do.
    """
    h, w = img.shape[-2:]
    m = min(h, w)
    y0, x0 = (h - m) // 2, (w - m) // 2
    sq = img[..., y0:y0 + m, x0:x0 + m].float().reshape(-1, 3, m, m)
    if m != size:
        sq = F.interpolate(sq, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return sq.round().clamp(0, 255).to(torch.uint8).reshape(*img.shape[:-2], size, size)


# ----------------------------------------------------------------------------------------------
# building banks


def procedural_bank(image_size: int = 32, n_instances: int | None = None, seed: int = 0,
                    cache: bool = True) -> TextureBank:
    """The default bank: n_instances of each procedural class, cached in memory and on disk."""
    k = n_instances or default_instances(image_size)
    side = bank_side(image_size)
    key = (GENERATOR_VERSION, image_size, side, k, seed)
    if cache and key in _MEMORY_CACHE:
        return _MEMORY_CACHE[key]
    path = paths.data_dir() / "cache" / f"textures_v{GENERATOR_VERSION}_{image_size}px_s{side}_k{k}_seed{seed}.pt"
    grid = None
    if cache and path.exists():
        try:
            grid = torch.load(path, weights_only=True)
            assert grid.shape == (len(PROCEDURAL_CLASSES), k, 3, side, side) and grid.dtype == torch.uint8
        except Exception:                      # a truncated or stale file: regenerate and overwrite
            grid = None
    if grid is None:
        grid = _generate(image_size, side, k, seed)
        if cache:
            _atomic_save(grid, path)
    labels = [c for c in range(len(PROCEDURAL_CLASSES)) for _ in range(k)]
    bank = TextureBank(grid.reshape(-1, 3, side, side), labels, PROCEDURAL_CLASSES, image_size)
    if cache:
        _MEMORY_CACHE[key] = bank
    return bank


def _generate(image_size: int, side: int, k: int, seed: int) -> torch.Tensor:
    global generation_count
    generation_count += 1
    grid = np.empty((len(PROCEDURAL_CLASSES), k, side, side, 3), np.uint8)
    jobs = [(c, i) for c in range(len(PROCEDURAL_CLASSES)) for i in range(k)]
    for c, i in tqdm(jobs, desc=f"generating textures ({image_size} px)", leave=False,
                     disable=len(jobs) * side * side < 5e6):
        # one RNG per (seed, class, instance): instance i is the same whatever k is
        rng = np.random.default_rng([seed, c, i])
        grid[c, i] = render(PROCEDURAL_CLASSES[c], side, image_size, rng)
    return torch.from_numpy(grid).permute(0, 1, 4, 2, 3).contiguous()


def _atomic_save(obj, path: Path) -> None:
    """Write then rename, so two processes (or an interrupted one) never leave half a file."""
    try:
        with paths.atomic_write(path) as f:
            torch.save(obj, f)
    except OSError as e:                      # a read-only data dir only costs regeneration
        warnings.warn(f"could not cache textures at {path} ({e}); they will be regenerated next time")


def read_texture(path: str | Path) -> np.ndarray | None:
    """uint8 (h, w, 3) RGB, or None when OpenCV cannot read the file. Grey becomes 3 channels."""
    im = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if im is None or im.size == 0:
        return None
    if im.dtype == np.uint16:
        im = (im >> 8).astype(np.uint8)
    if im.ndim == 2:
        im = im[..., None]
    im = im[..., :3][..., ::-1] if im.shape[2] >= 3 else im[..., :1]   # BGR(A) -> RGB; grey stays
    return np.ascontiguousarray(np.broadcast_to(im, (*im.shape[:2], 3)))


def load_images(files: list[Path], scale: float = 1.0) -> tuple[list[np.ndarray], list[int]]:
    """Read and rescale images; unreadable files are skipped with a warning. Returns (images, kept)."""
    images, kept = [], []
    for i, f in enumerate(tqdm(files, desc="loading textures", leave=False, disable=len(files) < 50)):
        im = read_texture(f)
        if im is None:
            warnings.warn(f"skipping unreadable texture image {f} (OpenCV cannot decode it); "
                          "delete or replace it to silence this warning")
            continue
        if scale != 1.0:
            h, w = im.shape[:2]
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            im = cv2.resize(im, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        images.append(im)
        kept.append(i)
    return images, kept


def folder_bank(root: str | Path, image_size: int) -> TextureBank:
    """Textures laid out as root/{class}/*.png (the original's data/textures), one instance per file.

    The original random-cropped 224 px out of native-resolution ALOT images. At other image sizes
    we rescale every texture by image_size/224, so a crop covers the same fraction of the texture
    (and small images stay cheap): at 32 px a 512 px texture is kept at 73 px.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"texture folder {root} does not exist. Fix: pass textures='procedural' "
                                "or a folder laid out as {class}/*.png")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    files, labels = [], []
    for c, name in enumerate(classes):
        fs = sorted(f for f in (root / name).iterdir() if f.suffix.lower() in IMAGE_EXTS)
        files += fs
        labels += [c] * len(fs)
    # train, val and test each ask for the bank: read a big folder (ALOT) once, unless it changed
    key = ("folder", image_size, tuple((str(f.resolve()), f.stat().st_mtime_ns) for f in files))
    if key not in _MEMORY_CACHE:
        _MEMORY_CACHE[key] = _read_folder(root, classes, files, labels, image_size)
    return _MEMORY_CACHE[key]


def _read_folder(root: Path, classes: list[str], files: list[Path], labels: list[int],
                 image_size: int) -> TextureBank:
    scale = image_size / ORIGINAL_CROP
    images, kept = load_images(files, scale)
    if not images:
        raise ValueError(f"no readable texture images in {root}: expected {{class}}/*.png "
                         f"(found {len(classes)} class folders, {len(files)} image files). "
                         "Fix: point textures= at the right folder, or use textures='procedural'")
    labels = [labels[i] for i in kept]
    files = [str(files[i]) for i in kept]
    used = sorted(set(labels))                # a class whose files were all unreadable disappears
    if len(used) < len(classes):
        gone = [classes[c] for c in range(len(classes)) if c not in used]
        warnings.warn(f"texture classes {gone} in {root} have no readable images and are left out")
    remap = {c: j for j, c in enumerate(used)}
    return TextureBank(images, [remap[c] for c in labels], [classes[c] for c in used], image_size, files)


def get_bank(textures: "str | Path | TextureBank" = "procedural", image_size: int = 32,
             seed: int = 0, n_instances: int | None = None) -> TextureBank:
    """Resolve ColoredMNIST's `textures` argument: 'procedural', a folder path, or a TextureBank."""
    if isinstance(textures, TextureBank):
        if textures.image_size != image_size:
            raise ValueError(f"this TextureBank was built for {textures.image_size} px images, not "
                             f"{image_size}. Fix: build it with image_size={image_size}")
        return textures
    if isinstance(textures, str) and textures == "procedural":
        return procedural_bank(image_size, n_instances, seed)
    return folder_bank(textures, image_size)
