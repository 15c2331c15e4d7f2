"""The original project's on-disk dataset format: write it (`prepare`) and read it back.

    python -m vitlib.imdb prepare --out DIR [--image-size 32] [--textures procedural|FOLDER] [--limit N]

    DIR/train/images/{0..9}/*.png     the raw 28x28 MNIST digits
    DIR/test/images/{0..9}/*.png
    DIR/textures/{class}/*.png        the texture instances the entries use
    DIR/imdb.json                     {"train_data": [entry, ...], "test_data": [...],
                                       "texture_classes_index": {texture_name: class index}}
    entry = {digit_image, digit_name, texture_image, texture_name, color_r, color_g, color_b}
    (paths relative to DIR). We add a "vitlib" key with the settings used; readers ignore it.
Textures are written as the bank holds them (procedural: ~1.25x the image size; folder textures:
scaled by image_size/224), so read a folder back at the image size it was prepared for.

The test split written here is exactly ColoredMNIST('test')'s: same digits, colours and texture
instances, so ImdbColoredMNIST(DIR, 'test')[i] equals ColoredMNIST('test')[i]. The train split
fixes one colour and texture per digit (as the original's imdb did); crops stay random.
"""
from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from vitlib.data import ColoredMNIST, DigitsOnTextures, check_threshold, fixed_draws, load_mnist
from vitlib.paths import atomic_write_text
from vitlib.textures import TextureBank, load_images

TOP_KEYS = ("train_data", "test_data", "texture_classes_index")
ENTRY_KEYS = ("digit_image", "digit_name", "texture_image", "texture_name", "color_r", "color_g", "color_b")


def prepare(out: str | Path, image_size: int = 32, textures="procedural", limit: int | None = None,
            seed: int = 0, root: str | Path | None = None, n_texture_instances: int | None = None) -> Path:
    """Write DIR in the original's format; `limit` keeps the first N images of each split."""
    out = Path(out)
    test = ColoredMNIST("test", image_size, textures, seed=seed, root=root, n_texture_instances=n_texture_instances)
    bank = test.bank
    train_digits, train_labels, _ = load_mnist("train", root)    # the original had no val split
    splits = {
        "train": (train_digits, train_labels, fixed_draws(len(train_labels), bank, seed * 3)),
        "test": (test.digits, test.labels, test.fixed),
    }
    n_of = {s: len(v[1]) if limit is None else min(limit, len(v[1])) for s, v in splits.items()}
    used = sorted({int(i) for s, (_, _, (_, inst, _)) in splits.items() for i in inst[: n_of[s]]})
    first = bank.starts.tolist()
    tex_path = {i: f"textures/{bank.names[int(bank.labels[i])]}/{i - first[int(bank.labels[i])]:04d}.png"
                for i in used}
    total = sum(n_of.values()) + len(used)
    imdb = {"texture_classes_index": {n: c for c, n in enumerate(bank.names)},
            "vitlib": {"image_size": image_size, "seed": seed, "textures": str(textures) if isinstance(
                textures, (str, Path)) else "TextureBank", "limit": limit}}
    made: set[Path] = set()
    with tqdm(total=total, desc=f"writing {out}", unit="file") as bar:
        for i in used:
            _write(out / tex_path[i], bank.instance(i).permute(1, 2, 0).numpy()[..., ::-1], made)
            bar.update()
        for split, (digits, labels, (cls, inst, color)) in splits.items():
            entries = []
            for j in range(n_of[split]):
                label = int(labels[j])
                rel = f"{split}/images/{label}/{j:05d}.png"
                _write(out / rel, digits[j].numpy(), made)
                r, g, b = (float(c) for c in color[j])
                entries.append({"digit_image": rel, "digit_name": str(label),
                                "texture_image": tex_path[int(inst[j])],
                                "texture_name": bank.names[int(cls[j])],
                                "color_r": r, "color_g": g, "color_b": b})
                bar.update()
            imdb[f"{split}_data"] = entries
    atomic_write_text(out / "imdb.json", json.dumps(imdb))
    return out


def _write(path: Path, img: np.ndarray, made: set) -> None:
    if path.parent not in made:
        path.parent.mkdir(parents=True, exist_ok=True)
        made.add(path.parent)
    if not cv2.imwrite(str(path), np.ascontiguousarray(img)):
        raise OSError(f"could not write {path}. Fix: check that the folder is writable and has space")


def read_imdb(root: str | Path) -> dict:
    """imdb.json, checked: clear errors for a missing folder or file and for missing keys."""
    root = Path(root)
    fix = f"Fix: create it with `python -m vitlib.imdb prepare --out {root}`"
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {root} does not exist. {fix}")
    path = root / "imdb.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing, so {root} is not a prepared dataset. {fix}")
    try:
        imdb = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}). {fix} (again)") from None
    if not isinstance(imdb, dict):
        raise ValueError(f"{path} must hold a JSON object with keys {list(TOP_KEYS)}. {fix}")
    missing = [k for k in TOP_KEYS if k not in imdb]
    if missing:
        raise ValueError(f"{path} is missing the keys {missing} (expected {list(TOP_KEYS)}). {fix}")
    for split in ("train_data", "test_data"):
        for j, e in enumerate(imdb[split]):
            gone = [k for k in ENTRY_KEYS if not isinstance(e, dict) or k not in e]
            if gone:
                raise ValueError(f"{path}: {split}[{j}] is missing the keys {gone} "
                                 f"(every entry needs {list(ENTRY_KEYS)}). {fix}")
    return imdb


class ImdbColoredMNIST(DigitsOnTextures):
    """A prepared folder read back as a ColoredMNIST: same sample dicts, same get_batch/BatchLoader.

    test: centre crop + resize of each entry's texture; train: a random crop (textures must be at
    least image_size on each side). Colours and textures are the ones written in imdb.json.
    """

    def __init__(self, root: str | Path, split: str = "test", image_size: int = 32, threshold: float = 50):
        if split not in ("train", "test"):
            raise ValueError(f"unknown split {split!r}: an imdb folder has 'train' and 'test'")
        check_threshold(threshold)
        root = Path(root)
        imdb = read_imdb(root)
        index = imdb["texture_classes_index"]
        names = [n for n, _ in sorted(index.items(), key=lambda kv: kv[1])]
        if sorted(index.values()) != list(range(len(names))):
            raise ValueError(f"{root / 'imdb.json'}: texture_classes_index must map names to 0..{len(names) - 1}")
        entries = imdb[f"{split}_data"]
        if not entries:
            raise ValueError(f"{root / 'imdb.json'} has no {split}_data entries. Fix: re-run prepare without --limit 0")
        unknown = sorted({e["texture_name"] for e in entries} - set(index))
        if unknown:
            raise ValueError(f"{root / 'imdb.json'}: texture names {unknown} are not in texture_classes_index")

        # textures: one bank instance per distinct file, grouped by class; unreadable ones are skipped
        tex = sorted({(index[e["texture_name"]], e["texture_image"]) for e in entries})
        images, kept = load_images([root / p for _, p in tex])
        if not images:
            raise ValueError(f"none of the {len(tex)} texture images listed in {root / 'imdb.json'} is readable. "
                             f"Fix: re-run `python -m vitlib.imdb prepare --out {root}`")
        tex = [tex[k] for k in kept]
        bank = TextureBank(images, [c for c, _ in tex], names, image_size,
                           files=[str(root / p) for _, p in tex], check_crop=split == "train", allow_empty=True)
        slot = {p: i for i, (_, p) in enumerate(tex)}
        dropped = [e for e in entries if e["texture_image"] not in slot]
        if dropped:
            warnings.warn(f"{len(dropped)} {split} entries use unreadable textures and are left out")
        entries = [e for e in entries if e["texture_image"] in slot]

        digits = np.empty((len(entries), 28, 28), np.uint8)
        for j, e in enumerate(tqdm(entries, desc=f"reading {root.name}/{split}", leave=False,
                                   disable=len(entries) < 5000)):
            im = cv2.imread(str(root / e["digit_image"]), cv2.IMREAD_GRAYSCALE)
            if im is None or im.shape != (28, 28):
                raise ValueError(f"digit image {root / e['digit_image']} is missing, unreadable or not 28x28. "
                                 f"Fix: re-run `python -m vitlib.imdb prepare --out {root}`")
            digits[j] = im
        try:
            labels = torch.tensor([int(e["digit_name"]) for e in entries])
            color = torch.tensor([[e["color_r"], e["color_g"], e["color_b"]] for e in entries], dtype=torch.float32)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{root / 'imdb.json'}: digit_name must be 0-9 and colours numbers ({err})") from None
        cls = torch.tensor([index[e["texture_name"]] for e in entries])
        inst = torch.tensor([slot[e["texture_image"]] for e in entries])
        super().__init__(split, image_size, threshold, torch.from_numpy(digits), labels, bank,
                         (cls, inst, color), f"imdb ({root})")


def main(argv: list[str] | None = None) -> int:
    """python -m vitlib.imdb prepare --out DIR: write the original's folder format."""
    ap = argparse.ArgumentParser(prog="python -m vitlib.imdb", description=main.__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="write the original's on-disk format (images, textures, imdb.json)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--image-size", type=int, default=32, help="image size the textures are made for")
    p.add_argument("--textures", default="procedural", help="'procedural' or a {class}/*.png folder")
    p.add_argument("--limit", type=int, default=None, help="write only the first N images of each split")
    p.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    out = prepare(args.out, image_size=args.image_size, textures=args.textures, limit=args.limit, seed=args.seed)
    print(f"wrote {out / 'imdb.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
