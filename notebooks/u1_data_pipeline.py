# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: -all
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # U1 · Under the hood: the data pipeline
#
# [Chapter 01](01_dataset.ipynb) built one sample by hand and checked it against `vitlib`. This
# appendix is about the machinery around that recipe, none of which you need to follow the
# core chapters: an interactive panel that composes samples, the same data at the original
# project's 224 pixels, your own photographs as textures, why training reads whole batches at
# once (and how much faster that is), and the original project's on-disk dataset format.
#
# **Learning objectives.** By the end of this appendix you can
#
# - compose a sample from a digit, a texture and a colour of your choice, interactively;
# - explain why a procedural texture instance looks the same at 32 and at 224 pixels, and how
#   many instances a texture bank holds in each mode;
# - composite a sample at 224 pixels, say what changes in the digit's outline, and see what
#   different patch sizes do to a 224-px image;
# - plug in a folder of your own texture photographs;
# - check that the batched `get_batch`/`BatchLoader` give the same samples as `ds[i]`, and measure
#   their speed against a per-sample `DataLoader`;
# - write the original project's dataset folder (`python -m vitlib.imdb prepare`), read its
#   `imdb.json`, and read it back as a dataset.
#
# **Time.** In quick mode (`VITLIB_QUICK=1`, what CI and the book use) this notebook runs in well
# under a minute on a laptop CPU: the speed test times 512 samples and the export writes 20
# images per split. Full mode times 8,192 samples and exports 500 images per split, so it takes
# longer; the last cell prints how long.

# %% [markdown]
# ## Setup
#
# The same helpers and the same test split as chapter 01.

# %%
import itertools
import json
import os
import tempfile
import time
from pathlib import Path

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from IPython.display import display

import vitlib.imdb
from vitlib import paths
from vitlib.data import BatchLoader, ColoredMNIST, composite, digit_masks
from vitlib.imdb import ImdbColoredMNIST
from vitlib.runtime import num_threads
from vitlib.textures import default_instances, folder_bank, procedural_bank

torch.manual_seed(0)
QUICK = paths.is_quick()
IMAGE_SIZE = 32
START = time.perf_counter()
print(f"vitlib {vitlib.__version__}, torch {torch.__version__}, quick mode: {QUICK}")


def to_rgb(image: torch.Tensor) -> np.ndarray:
    """float (3,H,W) in [-1,1] -> (H,W,3) in [0,1] for imshow."""
    return ((image.clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()


def uint8_rgb(texture: torch.Tensor) -> np.ndarray:
    """uint8 (3,H,W) -> (H,W,3) for imshow."""
    return texture.permute(1, 2, 0).numpy()


test = ColoredMNIST("test", IMAGE_SIZE)
train = ColoredMNIST("train", IMAGE_SIZE)
bank = test.bank
print(test)

# %% [markdown]
# ## Try it: compose your own sample
#
# Chapter 01's recipe as a toy: the panel below composes one image from a digit, a texture class
# and a colour of your choice, using `composite` and the 32-px bank. Move the sliders in a running
# notebook; on a static page you see the result for the initial values.

# %%
digit_of = {d: torch.nonzero(test.labels == d).flatten() for d in range(10)}


def compose(digit: int = 3, texture: str = "bricks", red: float = 1.0, green: float = 0.8,
            blue: float = 0.1, example: int = 0, instance: int = 0) -> None:
    """Draw the example-th test image of `digit` in colour (red, green, blue) on `texture`."""
    d = test.digits[digit_of[digit][example % len(digit_of[digit])]]
    c = bank.names.index(texture)
    inst = bank.starts[c] + instance % int(bank.counts[c])
    bg = bank.centre_crops(inst[None])[0].float() / 255
    img = composite(d, torch.tensor([red, green, blue]), bg, IMAGE_SIZE)
    fig, axes = plt.subplots(1, 2, figsize=(6, 3.2), layout="constrained")
    axes[0].imshow(d, cmap="gray")
    axes[0].set_title(f"MNIST test digit {digit}")
    axes[1].imshow(to_rgb(img))
    axes[1].set_title(f"{texture} #{instance}, rgb ({red:.2f}, {green:.2f}, {blue:.2f})")
    for ax in axes:
        ax.set_xlabel("x (pixels)")
        ax.set_ylabel("y (pixels)")
    fig.suptitle("A sample composed from your choices")
    plt.show()


panel = widgets.interactive(
    compose,
    digit=widgets.IntSlider(3, 0, 9, description="digit"),
    texture=widgets.Dropdown(options=bank.names, value="bricks", description="texture"),
    red=widgets.FloatSlider(1.0, min=0, max=1, step=0.05, description="red"),
    green=widgets.FloatSlider(0.8, min=0, max=1, step=0.05, description="green"),
    blue=widgets.FloatSlider(0.1, min=0, max=1, step=0.05, description="blue"),
    example=widgets.IntSlider(0, 0, 20, description="example"),
    instance=widgets.IntSlider(0, 0, int(bank.counts.min()) - 1, description="instance"),
)
display(panel)

# %% [markdown]
# The same function called directly, so that the figure exists even without a running kernel:

# %%
compose(digit=7, texture="marble", red=0.1, green=0.9, blue=0.9, example=2, instance=1)

# %% [markdown]
# ## Textures at the original project's 224 pixels
#
# How many instances does a bank draw per class? `vitlib.textures.default_instances` decides:
# many for small images, where drawing them is cheap, fewer for large ones, and fewer still for
# large ones in quick mode, so that CI and the book build stay fast. Quick mode never changes the
# 32-px banks the book trains on.

# %%
for size in (32, 64, 224):
    print(f"{size:4d} px images: {default_instances(size):4d} instances per class (quick mode: {QUICK})")
assert default_instances(32) == default_instances(64) == bank.grid.shape[1]
print(f"✓ the {IMAGE_SIZE}-px bank holds {bank.grid.shape[1]} instances per class in either mode")

# %% [markdown]
# Pattern sizes are measured in *image widths*, not pixels, and instance $k$ of a class is drawn
# from the same random numbers whatever the resolution. So instance #0 at 224 px is the same
# texture as instance #0 at 32 px, only sharper. Two instances per class are enough to show it,
# so we ask for two and skip the default.

# %%
bank224 = procedural_bank(224, n_instances=2)
fig, axes = plt.subplots(2, 4, figsize=(8, 4.4), layout="constrained")
for j, name in enumerate(["bricks", "wood", "dots", "marble"]):
    c = bank.names.index(name)
    for row, (b, size) in enumerate([(bank, 32), (bank224, 224)]):
        img = b.grid[c, 0]
        axes[row, j].imshow(uint8_rgb(img))
        axes[row, j].set_title(f"{name} #0, {size} px image", fontsize=9)
        axes[row, j].set_xlabel(f"{img.shape[-1]} px wide")
        axes[row, j].set_xticks([]), axes[row, j].set_yticks([])
fig.suptitle("The same instance at 32 px (top) and 224 px (bottom)")
plt.show()

# %% [markdown]
# The compositing recipe of chapter 01 works at any size, and `composite` takes batches as well
# as single images. Here is chapter 01's test sample 11 at both sizes, on instance #0 of its
# texture class. Bilinear resizing from 28 to 224 pixels gives the digit smooth outlines before
# the threshold cuts them; at 32 pixels the outline is blocky.

# %%
TEST_INDEX = 11
tex_cls, _, colors = test.fixed
digit, color, c = test.digits[TEST_INDEX], colors[TEST_INDEX], tex_cls[TEST_INDEX].item()
images = {}
for size, b in ((32, bank), (224, bank224)):
    background = b.centre_crops(b.starts[c:c + 1])[0].float() / 255      # (3, size, size) in [0, 1]
    images[size] = composite(digit, color, background, size)             # (3, size, size) in [-1, 1]
assert images[224].shape == (3, 224, 224)
fig, axes = plt.subplots(1, 2, figsize=(8, 4.2), layout="constrained")
for ax, (size, img) in zip(axes, images.items()):
    ax.imshow(to_rgb(img))
    ax.set_title(f"{size} px" + (" (what the book trains on)" if size == 32 else " (the original's size)"))
    ax.set_xlabel("x (pixels)")
    ax.set_ylabel("y (pixels)")
fig.suptitle(f"Test sample {TEST_INDEX} composited at two sizes on '{bank.names[c]}' #0")
plt.show()

# %% [markdown]
# The original project cut its 224 px images into $16 \times 16$ patches, $N = 196$ of them;
# chapter 02 uses $P = 8$ on 32 px. Here is chapter 02's test image 1 at 224 px, cut four ways.
# Small patches see fine detail but make long sequences; large patches make short sequences, and
# each token has to describe a big piece of the digit.

# %%
test224 = ColoredMNIST("test", 224, n_texture_instances=2)      # 2 instances per class: quick to make
image224 = test224[1]["image"]                                   # (3, 224, 224) in [-1, 1]
fig, axes = plt.subplots(1, 4, figsize=(14, 3.9), layout="constrained")
for ax, p in zip(axes, (8, 16, 32, 56)):
    ax.imshow(to_rgb(image224), extent=(0, 224, 224, 0))
    ax.set(xticks=range(0, 225, 56), yticks=range(0, 225, 56), xlabel="x (pixels)", ylabel="y (pixels)")
    for edge in range(p, 224, p):                                # the patch grid
        ax.axvline(edge, color="white", lw=0.6)
        ax.axhline(edge, color="white", lw=0.6)
    n = (224 // p) ** 2
    ax.set_title(f"P = {p}: {224 // p}×{224 // p} = {n:,} patches\n"
                 f"{(n + 1) ** 2:,} attention entries per head", fontsize=9)
fig.suptitle("One 224 px test image, four patch sizes")
plt.show()

# %% [markdown]
# ## Your own textures
#
# The original project read photographs laid out as `data/textures/{class}/*.png`, one folder per
# class, for example the Amsterdam Library of Textures {cite:p}`burghouts2009alot` (download it
# from its authors, under their terms). `vitlib` reads the same layout: put the folder at
# `data/textures` (inside `vitlib.paths.data_dir()`, which the `VITLIB_DATA` variable can move),
# or point the `VITLIB_TEXTURES` variable at a folder elsewhere, and pass it to
# `ColoredMNIST(textures=...)`. Each photo is scaled by $\text{image size}/224$, so that a crop
# covers the same part of the texture as the original's 224-px crops did. The cell below uses the
# folder if it exists, and otherwise says how to add one. (`folder_bank` reads every image in the
# folder; for a large collection like the full ALOT that takes a while.)

# %%
texture_dir = Path(os.environ.get("VITLIB_TEXTURES", paths.data_dir() / "textures"))
folder = None
if not texture_dir.is_dir():
    print(f"No folder textures at {texture_dir}: the book uses the {bank.num_classes} procedural classes.\n"
          f"To add photos, create {texture_dir}/<class name>/*.png (one folder per class, images at\n"
          "least 224 px on each side), or set VITLIB_TEXTURES to such a folder, then re-run this cell.")
else:
    try:
        folder = folder_bank(texture_dir, IMAGE_SIZE)
        print(f"Folder textures from {texture_dir}: {folder}")
        print("classes:", ", ".join(folder.names[:20]), "..." if folder.num_classes > 20 else "")
    except (ValueError, FileNotFoundError) as err:   # vitlib's messages say what to fix
        print(f"Could not use the textures in {texture_dir}:\n{err}")

# %% [markdown]
# When there is a folder, here are up to six of its classes: one photo (already scaled for
# $32$-px images) and three test samples composited on that class.

# %%
if folder is not None:
    photo_ds = ColoredMNIST("test", IMAGE_SIZE, textures=folder)
    batch = photo_ds.get_batch(torch.arange(min(len(photo_ds), 2000)))
    shown = list(range(min(6, folder.num_classes)))
    fig, axes = plt.subplots(len(shown), 4, figsize=(7, 1.9 * len(shown)), squeeze=False,
                             layout="constrained")
    for row, c in enumerate(shown):
        photo = folder.instance(int(folder.starts[c]))
        axes[row, 0].imshow(uint8_rgb(photo))
        axes[row, 0].set_title(f"{folder.names[c]} photo ({photo.shape[-1]} px)", fontsize=8)
        for j, i in enumerate(torch.nonzero(batch["texture_cls"] == c).flatten()[:3].tolist()):
            axes[row, j + 1].imshow(to_rgb(batch["image"][i]))
            label = batch["number_cls"][i].item()
            axes[row, j + 1].set_title(f"digit {label} on {folder.names[c]}", fontsize=8)
        for ax in axes[row]:
            ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(f"Folder textures from {texture_dir.name}/ and test samples on them")
    plt.show()
else:
    print("(no folder textures: nothing to show here)")

# %% [markdown]
# ## The batched path: same samples, much faster
#
# `ds[i]` is the standard PyTorch `Dataset` interface: one sample at a time. A `DataLoader`
# calls it once per sample and stacks the results, thousands of tiny operations per epoch.
# `vitlib` does the same work on whole batches with tensor operations: `ds.get_batch(indices)`
# returns a dictionary of batched tensors, and `BatchLoader` iterates over such batches
# (shuffling, and sharding across GPUs, {doc}`u2_training_machinery`). Inside, `ds[i]` is just `get_batch` on a
# batch of one, so for `val` and `test`, where nothing is random, the two paths give identical
# results. For `train` a batch is random, but reproducible with a seeded `torch.Generator`
# (`BatchLoader` derives one from its seed, the epoch and the GPU rank):

# %%
idx = torch.arange(64)
fast = test.get_batch(idx)
slow = {k: torch.stack([test[i][k] for i in idx.tolist()]) for k in fast}
for k in fast:
    torch.testing.assert_close(fast[k], slow[k], rtol=0, atol=0)
assert fast["image"].shape == (64, 3, IMAGE_SIZE, IMAGE_SIZE)
first = next(iter(BatchLoader(test, batch_size=64, shuffle=False)))
for k in fast:
    assert torch.equal(first[k], fast[k])
print("✓ get_batch, BatchLoader and stacked test[i] are identical on the test split")
a = train.get_batch(idx, generator=torch.Generator().manual_seed(1))
b = train.get_batch(idx, generator=torch.Generator().manual_seed(1))
assert all(torch.equal(a[k], b[k]) for k in a)
print("✓ the same generator seed gives the same training batch")

# %% [markdown]
# How much faster is it? We time three ways of producing the same number of training samples: a
# Python loop over `ds[i]`, PyTorch's `DataLoader` (the same loop, then a stack), and
# `BatchLoader`. We time on one CPU thread, so that the comparison is fair (the per-sample paths
# cannot use more) and steady on a busy machine, and keep the best of two runs. The numbers
# depend on your machine.

# %%
n_time = 512 if QUICK else 8192                   # a multiple of the batch size, 256
subset = torch.utils.data.Subset(train, range(n_time))


def best_time(fn, repeats: int = 2) -> float:
    """Best wall-clock time of `repeats` calls, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


with num_threads(1):  # one thread, put back afterwards: a fair race on any machine
    timings = {
        "loop over ds[i]": best_time(lambda: [train[i] for i in range(n_time)]),
        "DataLoader (per sample)": best_time(lambda: list(torch.utils.data.DataLoader(subset, batch_size=256))),
        "BatchLoader (get_batch)": best_time(
            lambda: list(itertools.islice(BatchLoader(train, batch_size=256, shuffle=True), n_time // 256))),
    }
for name, seconds in timings.items():
    print(f"{name:25s} {seconds * 1000:8.1f} ms for {n_time:,} samples  ({n_time / seconds:9,.0f} samples/s)")

# %%
fig, ax = plt.subplots(figsize=(7, 3), layout="constrained")
names = list(timings)
ax.barh(names, [n_time / timings[n] for n in names], color=["C1", "C1", "C0"])
ax.set_title(f"Producing {n_time:,} training samples of {IMAGE_SIZE} px")
ax.set_xlabel("samples per second (higher is better)")
ax.set_ylabel("method")
plt.show()
speedup = timings["loop over ds[i]"] / timings["BatchLoader (get_batch)"]
print(f"get_batch is {speedup:.0f}x faster than the loop over ds[i]")

# %% [markdown]
# ## The original project's on-disk format
#
# The original project first wrote its dataset to disk and trained from there. `vitlib` does
# everything in memory, but can write (and read back) the same format, so that you can inspect
# the data with other tools or feed it to the original code:
#
# ```bash
# python -m vitlib.imdb prepare --out DIR [--image-size 32] [--textures procedural|FOLDER] [--limit N]
# ```
#
# writes
#
# ```text
# DIR/train/images/{0..9}/*.png     the raw 28x28 MNIST digits
# DIR/test/images/{0..9}/*.png
# DIR/textures/{class}/*.png        the texture instances the entries use
# DIR/imdb.json
# ```
#
# where `imdb.json` holds `train_data` and `test_data` (lists of entries) and
# `texture_classes_index` (texture name to class index), plus a `vitlib` key that records the
# settings used and that readers ignore. Each entry names one sample:
#
# | key | meaning |
# |---|---|
# | `digit_image` | path of the 28×28 digit PNG, relative to `DIR` |
# | `digit_name` | the digit, as a string (`"7"`) |
# | `texture_image` | path of the texture PNG, relative to `DIR` |
# | `texture_name` | its texture class |
# | `color_r`, `color_g`, `color_b` | the colour, each in $[0, 1]$ |
#
# Colour and texture are fixed per entry on disk; training still crops at random.
# `vitlib.imdb.ImdbColoredMNIST(DIR, split)` reads a folder back as a dataset with the same
# samples and the same `get_batch`. We write a small export (the first images of each split)
# into a temporary folder, through the same entry point as the command line. The folder stays
# until the end of the notebook, for the exercises.

# %%
n_export = 20 if QUICK else 500
export_dir = tempfile.TemporaryDirectory()
export = Path(export_dir.name)
vitlib.imdb.main(["prepare", "--out", str(export), "--limit", str(n_export), "--image-size", str(IMAGE_SIZE)])
imdb = json.loads((export / "imdb.json").read_text())
print("top-level keys:", list(imdb))
print(f"{len(imdb['train_data'])} train and {len(imdb['test_data'])} test entries, "
      f"{sum(1 for _ in (export / 'textures').rglob('*.png'))} texture files")
print("first test entry:", json.dumps(imdb["test_data"][0], indent=2))

# %% [markdown]
# Read back, the test split is sample for sample the one `ColoredMNIST('test')` makes in memory:

# %%
on_disk = ImdbColoredMNIST(export, "test", image_size=IMAGE_SIZE)
for i in range(len(on_disk)):
    torch.testing.assert_close(on_disk[i]["image"], test[i]["image"])
    assert on_disk[i]["number_cls"] == test[i]["number_cls"]
    assert on_disk.texture_names[on_disk[i]["texture_cls"]] == test.texture_names[test[i]["texture_cls"]]
print(f"✓ the {len(on_disk)} test samples read back from disk equal ColoredMNIST('test')")

# %% [markdown]
# ## Summary
#
# - Procedural textures are drawn in image widths from fixed random numbers, so instance $k$ is
#   the same picture at every resolution. Quick mode shrinks only the banks of large images; the
#   32-px banks the book trains on are the same in both modes.
# - `composite` works at any size; at 224 px the digit's outline is smooth, at 32 px blocky. The
#   original project cut 224-px images into $16 \times 16$ patches: 196 tokens.
# - A folder `data/textures/{class}/*.png` (or `VITLIB_TEXTURES`) replaces the procedural classes
#   with photographs, scaled by image size / 224.
# - `get_batch`/`BatchLoader` build whole batches with tensor operations, give the same samples
#   as `ds[i]` on the fixed splits, and on one thread are many times faster than a per-sample
#   `DataLoader` (the timing cell prints by how much on your machine). Training uses them.
# - `python -m vitlib.imdb prepare --out DIR` writes the original project's folder format with its
#   `imdb.json`, and `ImdbColoredMNIST(DIR, split)` reads it back; the test split round-trips
#   exactly.
#
# ## Exercises
#
# ```{exercise} Batch size and speed
# :label: ex-u1-1
#
# Time `train.get_batch` for 256 samples in batches of 1, 16 and 256 (on one thread). How does
# the time per sample change with the batch size, and why?
# ```
#
# ```{solution-start} ex-u1-1
# :class: dropdown
# ```

# %%
def time_per_sample(batch_size: int, n: int = 256) -> float:
    """Best-of-two seconds per sample for n training samples in batches of batch_size."""
    batches = torch.arange(n).split(batch_size)
    return best_time(lambda: [train.get_batch(b) for b in batches]) / n


with num_threads(1):
    per_sample = {bs: time_per_sample(bs) for bs in (1, 16, 256)}
for bs, s in per_sample.items():
    print(f"batch size {bs:3d}: {s * 1e6:7.1f} µs per sample")
assert per_sample[256] < per_sample[1]
print("✓ bigger batches cost less per sample: the fixed cost of each call is shared")

# %% [markdown]
# Every call has a fixed cost (Python, argument checks, allocating tensors, launching a few
# dozen tensor operations) and a cost per sample. With batches of one, the fixed cost is paid for
# every sample; with 256, it is shared. Beyond a few hundred samples the per-sample cost
# dominates and the gain levels off.
#
# ```{solution-end}
# ```

# %% [markdown]
# ```{exercise} Fixed draws on disk, random crops in training
# :label: ex-u1-2
#
# Read the *train* split of the export back with `ImdbColoredMNIST(export, "train")` and read
# sample 0 twice. Which labels are the same, and is the image? Compare with the in-memory
# `ColoredMNIST('train')`.
# ```
#
# ```{solution-start} ex-u1-2
# :class: dropdown
# ```

# %%
disk_train = ImdbColoredMNIST(export, "train", image_size=IMAGE_SIZE)
read1, read2 = disk_train[0], disk_train[0]
for key in ("number_cls", "texture_cls", "color"):
    assert torch.equal(read1[key], read2[key])               # fixed by the entry in imdb.json
same_image = torch.equal(read1["image"], read2["image"])
windows = (disk_train.bank.images.shape[-1] - IMAGE_SIZE + 1) ** 2
print(f"{windows} possible crop windows per texture; digit, texture class and colour repeat; the image is {'the same' if same_image else 'different'}")
mem_a, mem_b = train[0], train[0]
assert not torch.equal(mem_a["color"], mem_b["color"])       # in memory everything is re-drawn
print("✓ on disk: fixed colour and texture, random crop; in memory: colour and texture re-drawn too")

# %% [markdown]
# On disk each entry fixes its colour and texture instance (as the original project's `imdb.json`
# did); only the $32$-px window cut from the $40$-px texture is random, so the image usually
# differs between reads (the same window comes up again with a chance of one in the number the cell
# prints). In memory, `ColoredMNIST('train')`
# also re-draws the colour and the texture at every access: more augmentation.
#
# ```{solution-end}
# ```

# %% [markdown]
# ```{exercise} How blocky is 32 px?
# :label: ex-u1-3
#
# Compute the digit mask of test sample 11 at 224 px with `vitlib.data.digit_masks`, shrink it to
# 32 px by averaging $7 \times 7$ blocks, and compare it with the 32-px mask. What fraction of the
# 32-px pixels agree, and where are the others?
# ```
#
# ```{solution-start} ex-u1-3
# :class: dropdown
# ```

# %%
m224 = digit_masks(digit[None], 224, test.threshold).float()        # (1, 1, 224, 224)
m32 = digit_masks(digit[None], 32, test.threshold).float()          # (1, 1, 32, 32)
coverage = F.avg_pool2d(m224, 7)                                    # fraction of each 7x7 block
agree = ((coverage > 0.5).float() == m32).float().mean().item()
print(f"{agree:.1%} of the 32-px pixels agree with the majority of their 7x7 block at 224 px")
edge = (coverage > 0) & (coverage < 1)
print(f"{edge.float().mean().item():.1%} of the 32-px pixels are partly digit at 224 px")
assert agree > 0.9
fig, axes = plt.subplots(1, 2, figsize=(7, 3.6), layout="constrained")
for ax, img, title in [(axes[0], coverage[0, 0], "224-px mask, mean of 7×7 blocks"),
                       (axes[1], m32[0, 0], "32-px mask")]:
    ax.imshow(img, cmap="gray", vmin=0, vmax=1)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("x (pixels at 32 px)")
    ax.set_ylabel("y (pixels at 32 px)")
fig.suptitle("The digit's outline: a fraction at 224 px, all or nothing at 32 px")
plt.show()

# %% [markdown]
# Almost all pixels agree; the others lie on the outline, where a $7 \times 7$ block is partly
# digit at 224 px but the 32-px mask must say yes or no. That is the blocky edge of the figure
# above.
#
# ```{solution-end}
# ```

# %% [markdown]
# ## Comprehension questions
#
# **1. Why does quick mode shrink the 224-px banks but not the 32-px ones?**
#
# ```{admonition} Answer
# :class: dropdown
# A 224-px instance has $(224/32)^2 = 49$ times as many pixels as a 32-px one, so large banks are
# what makes a first run slow. The 32-px banks are cheap, and they are what the book trains on:
# keeping them the same in both modes means that quick mode and full mode draw their backgrounds
# from the same textures.
# ```
#
# **2. Why are pattern sizes measured in image widths rather than pixels?**
#
# ```{admonition} Answer
# :class: dropdown
# So that a texture covers the same part of the image at every resolution: a brick is the same
# fraction of the image at 32 and at 224 px. Together with drawing instance $k$ from the same
# random numbers, it makes the 32-px data a faithful small copy of the 224-px data.
# ```
#
# **3. Why is a folder photo scaled by image size / 224?**
#
# ```{admonition} Answer
# :class: dropdown
# The original project cut 224-px crops from the photos. Scaling by image size / 224 makes a
# 32-px crop cover the same part of the photo as a 224-px crop did, so the texture looks alike,
# only at lower resolution.
# ```
#
# **4. Why do we time on one thread?**
#
# ```{admonition} Answer
# :class: dropdown
# The per-sample paths do tiny operations that cannot use more threads, while `get_batch` could.
# One thread compares the methods, not the number of cores, and a busy machine disturbs one thread
# less than many.
# ```
#
# **5. What does `BatchLoader` do that `get_batch` alone does not?**
#
# ```{admonition} Answer
# :class: dropdown
# It decides the order: it shuffles the indices with a seed that depends on the epoch, cuts them
# into batches, splits them across GPUs without overlap, and gives every batch a generator derived
# from the seed, the epoch and the rank, so that an epoch can be reproduced.
# ```
#
# **6. Why can the test split round-trip through disk exactly, but not the training split?**
#
# ```{admonition} Answer
# :class: dropdown
# A test sample is fixed by the seed: digit, colour, texture instance and centre crop. The file
# stores all of them. A training sample is re-drawn at every access; on disk one colour and texture
# per digit is fixed (as in the original project), and the crop stays random.
# ```
#
# **Next:** back to [chapter 02](02_patch_embedding.ipynb), which cuts these images into
# patches.

# %%
export_dir.cleanup()
print(f"notebook ran in {time.perf_counter() - START:.1f} s (quick mode: {QUICK})")
