"""The original's on-disk format: `python -m vitlib.imdb prepare` and ImdbColoredMNIST."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from vitlib import imdb as imdb_module
from vitlib.data import ColoredMNIST, load_mnist
from vitlib.imdb import ENTRY_KEYS, ImdbColoredMNIST, prepare

LIMIT = 40


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    out = tmp_path_factory.mktemp("imdb")
    imdb_module.main(["prepare", "--out", str(out), "--limit", str(LIMIT), "--image-size", "32"])
    return out


def test_prepare_layout(prepared):
    imdb = json.loads((prepared / "imdb.json").read_text())
    assert {"train_data", "test_data", "texture_classes_index"} <= set(imdb)
    assert len(imdb["train_data"]) == len(imdb["test_data"]) == LIMIT
    names = ColoredMNIST("test", 32).texture_names
    assert imdb["texture_classes_index"] == {n: i for i, n in enumerate(names)}
    for split in ("train", "test"):
        x, y, _ = load_mnist(split)
        for j, e in enumerate(imdb[f"{split}_data"]):
            assert set(e) == set(ENTRY_KEYS)
            assert not os.path.isabs(e["digit_image"]) and not os.path.isabs(e["texture_image"])
            assert e["digit_image"].startswith(f"{split}/images/{e['digit_name']}/")
            assert e["digit_name"] == str(int(y[j]))
            digit = cv2.imread(str(prepared / e["digit_image"]), cv2.IMREAD_UNCHANGED)
            assert digit.shape == (28, 28) and np.array_equal(digit, x[j].numpy()), "the raw digit"
            assert e["texture_image"].startswith(f"textures/{e['texture_name']}/")
            assert (prepared / e["texture_image"]).is_file()
            assert all(0 <= e[k] <= 1 for k in ("color_r", "color_g", "color_b"))
    written = {p.relative_to(prepared).as_posix() for p in (prepared / "textures").rglob("*.png")}
    used = {e["texture_image"] for s in ("train_data", "test_data") for e in imdb[s]}
    assert written == used, "exactly the texture instances the entries use"


def test_round_trip_test_split(prepared):
    disk = ImdbColoredMNIST(prepared, "test", image_size=32)
    mem = ColoredMNIST("test", image_size=32)
    assert len(disk) == LIMIT and disk.texture_names == mem.texture_names
    idx = torch.arange(LIMIT)
    a, b = disk.get_batch(idx), mem.get_batch(idx)
    assert torch.allclose(a["image"], b["image"], atol=2 / 255 * 2)
    for k in ("number_cls", "texture_cls", "color"):
        assert torch.equal(a[k], b[k]), k
    assert torch.equal(disk[3]["image"], a["image"][3])


def test_read_train_split(prepared):
    ds = ImdbColoredMNIST(prepared, "train", image_size=32)
    imdb = json.loads((prepared / "imdb.json").read_text())
    e = imdb["train_data"][5]
    s1, s2 = ds[5], ds[5]
    assert int(s1["number_cls"]) == int(e["digit_name"])
    assert s1["color"].tolist() == pytest.approx([e["color_r"], e["color_g"], e["color_b"]])
    assert int(s1["texture_cls"]) == imdb["texture_classes_index"][e["texture_name"]]
    assert torch.equal(s1["color"], s2["color"]), "colour is fixed per entry"
    imgs = ds.get_batch(torch.full((8,), 5))["image"]
    assert len({im.numpy().tobytes() for im in imgs}) > 1, "train crops are random"
    assert (imgs.min() >= -1) and (imgs.max() <= 1)


@pytest.mark.parametrize("module", ["vitlib.imdb", "vitlib.data"])  # vitlib.data: the old alias
def test_cli_module_entry_point(tmp_path, module):
    out = tmp_path / "cli"
    r = subprocess.run([sys.executable, "-m", module, "prepare", "--out", str(out), "--limit", "3"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    written = json.loads((out / "imdb.json").read_text())
    assert len(written["test_data"]) == 3 and "imdb.json" in r.stdout


def test_prepare_with_folder_textures(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (tmp_path / "tex" / name).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "tex" / name / "0.png"), rng.integers(0, 256, (256, 256), dtype=np.uint8))
    out = prepare(tmp_path / "out", image_size=32, textures=tmp_path / "tex", limit=6)
    disk = ImdbColoredMNIST(out, "test", 32)
    mem = ColoredMNIST("test", 32, textures=tmp_path / "tex")
    assert disk.texture_names == ["a", "b"]
    assert torch.allclose(disk.get_batch(torch.arange(6))["image"], mem.get_batch(torch.arange(6))["image"],
                          atol=4 / 255)


def _copy(prepared, tmp_path, edit=None):
    """A copy of the prepared folder's imdb.json (images shared by absolute path) after edit(imdb)."""
    imdb = json.loads((prepared / "imdb.json").read_text())
    for s in ("train_data", "test_data"):
        for e in imdb[s]:
            e["digit_image"] = str(prepared / e["digit_image"])
            e["texture_image"] = str(prepared / e["texture_image"])
    if edit:
        edit(imdb)
    (tmp_path / "imdb.json").write_text(json.dumps(imdb))
    return tmp_path


def test_missing_or_corrupt_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*prepare --out"):
        ImdbColoredMNIST(tmp_path / "nope", "test")
    with pytest.raises(FileNotFoundError, match="imdb.json is missing.*prepare --out"):
        ImdbColoredMNIST(tmp_path, "test")
    (tmp_path / "imdb.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        ImdbColoredMNIST(tmp_path, "test")


def test_missing_keys_are_named(prepared, tmp_path):
    _copy(prepared, tmp_path, lambda d: d.pop("texture_classes_index"))
    with pytest.raises(ValueError, match=r"missing the keys \['texture_classes_index'\]"):
        ImdbColoredMNIST(tmp_path, "test")
    _copy(prepared, tmp_path, lambda d: [d["test_data"][2].pop(k) for k in ("color_g", "texture_name")])
    with pytest.raises(ValueError, match=r"test_data\[2\] is missing the keys \['texture_name', 'color_g'\]"):
        ImdbColoredMNIST(tmp_path, "test")


def test_bad_split_and_threshold(prepared):
    with pytest.raises(ValueError, match="unknown split 'val'"):
        ImdbColoredMNIST(prepared, "val")
    with pytest.raises(ValueError, match="outside 0..255"):
        ImdbColoredMNIST(prepared, "test", threshold=300)


def test_unreadable_texture_is_skipped_with_a_warning(prepared, tmp_path):
    imdb = json.loads((prepared / "imdb.json").read_text())
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"garbage")
    victim = imdb["test_data"][0]["texture_image"]
    n_victim = sum(e["texture_image"] == victim for e in imdb["test_data"])

    def edit(d):
        for e in d["test_data"]:
            if e["texture_image"] == str(prepared / victim):
                e["texture_image"] = str(bad)
    _copy(prepared, tmp_path, edit)
    with pytest.warns(UserWarning) as caught:
        ds = ImdbColoredMNIST(tmp_path, "test")
    said = " | ".join(str(w.message) for w in caught)
    assert "broken.png" in said and f"{n_victim} test entries use unreadable textures" in said
    assert len(ds) == LIMIT - n_victim
    ds.get_batch(torch.arange(len(ds)))                      # no crash later, mid-epoch

    def all_bad(d):
        for e in d["test_data"]:
            e["texture_image"] = str(bad)
    _copy(prepared, tmp_path, all_bad)
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="none of the .* texture images"):
        ImdbColoredMNIST(tmp_path, "test")


def test_texture_smaller_than_the_crop(prepared):
    # prepared for 32 px (40 px textures): reading train at 64 px cannot crop 64 px out of them
    with pytest.raises(ValueError, match=r"is 40x40 px, smaller than the 64 px crop.*--image-size 64"):
        ImdbColoredMNIST(prepared, "train", image_size=64)
    assert ImdbColoredMNIST(prepared, "test", image_size=64)[0]["image"].shape == (3, 64, 64)


def test_missing_digit_image(prepared, tmp_path):
    _copy(prepared, tmp_path, lambda d: d["test_data"][1].update(digit_image=str(tmp_path / "gone.png")))
    with pytest.raises(ValueError, match=r"gone\.png is missing.*prepare"):
        ImdbColoredMNIST(tmp_path, "test")
