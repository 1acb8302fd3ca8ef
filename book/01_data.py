# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Data: synthetic rosettes and the real CVPPP A1 folder
#
# **What you will learn**
#
# * what an instance-segmentation label is: an *unordered set* of masks, stored as a label map;
# * how `ris_lite` draws CVPPP-like plants offline, deterministically from a seed, and how
#   close their statistics come to the 128 labelled A1 images;
# * how rotation and flipping are applied to an image and all of its masks at once;
# * how to batch images whose numbers of instances differ;
# * how to point `ris_lite` at the real CVPPP A1 folder, and write predictions for the scorer.

# %%
# Colab: install ris_lite from the repository (non-editable). Locally this does nothing.
import subprocess
import sys

REPO = "https://github.com/ris-lite/ris_lite"  # the one URL; must equal _config.yml repository.url
if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"git+{REPO}@main"], check=True)

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

import ris_lite
from ris_lite.viz import glue, label_rgb, overlay

torch.manual_seed(0)
print("ris_lite", ris_lite.__version__)

# %% [markdown]
# (data-instance-label-set)=
# ## An instance label is a set
#
# A semantic label answers "which class is this pixel?". An instance label answers "which
# *object* is this pixel?", and the object ids are arbitrary: swapping the ids of two
# leaves changes nothing about the plant. We write the annotation of one image as a set of
# binary masks
#
# $$
# \boldsymbol{Y} = \{\boldsymbol{Y}_1, \dots, \boldsymbol{Y}_n\}, \qquad \boldsymbol{Y}_t \in \{0,1\}^{h\times w},
# $$ (data-set)
#
# where $n$ changes from image to image. On disk (and in CVPPP) the same set is stored as one
# integer *label map*: 0 for background and $1..n$ for the leaves. `labels_to_masks` and
# `masks_to_labels` convert between the two.

# %%
image, labels = ris_lite.make_rosette(seed=0)
masks = ris_lite.labels_to_masks(labels)
print("image", tuple(image.shape), image.dtype, "| labels", tuple(labels.shape), labels.dtype)
print("leaves:", int(labels.max()), "| masks", tuple(masks.shape), masks.dtype)
assert torch.equal(ris_lite.masks_to_labels(masks), labels)

# %% [markdown]
# (data-procedural-rosette)=
# ## A procedural rosette
#
# No data set can be downloaded here, so the benchmark is generated. The generator builds a
# plant the way a rosette grows:
#
# * leaf $k$ points at angle $k \cdot 137.5°$ (the golden angle, phyllotaxis) plus a little noise;
# * older leaves are longer; **younger leaves are drawn on top**, so occlusion is real, and
#   a leaf can be cut into pieces by a younger one;
# * each leaf is a petiole (stalk) ending in an ovate blade, with its own aspect ratio,
#   curl, colour, rim shading and midrib; thin dark lines mark where a leaf lies on another;
# * the background is a dark pot of soil on a reddish tray, with yellow-green moss blobs on
#   the soil (what fools colour thresholds in the real A1), then blur and noise.
#
# Everything comes from `numpy.random.default_rng(seed)`, whose stream is the same on every
# machine, so seed 200000 is the same test plant everywhere. The splits are fixed seed ranges:

# %%
for name, (lo, hi) in ris_lite.SPLITS.items():
    print(f"{name:5s}: seeds {lo}..{hi - 1} ({hi - lo} plants)")

# %%
fig, axes = plt.subplots(2, 4, figsize=(10, 5.6))
for k in range(4):
    img, lab = ris_lite.make_rosette(seed=ris_lite.SPLITS["test"][0] + k)
    axes[0, k].imshow(img.permute(1, 2, 0))
    axes[0, k].set_title(f"seed {ris_lite.SPLITS['test'][0] + k}: {int(lab.max())} leaves", fontsize=9)
    axes[1, k].imshow(overlay(img, lab))
for ax in axes.flat:
    ax.set_axis_off()
fig.suptitle("Test-split rosettes (top) and their instance labels (ris_lite.viz.overlay)")
fig.tight_layout()
plt.show()

# %% [markdown]
# ### The benchmark's resolution, and why
#
# Geometry is defined on the A1 canvas (530 × 500 pixels) and scaled. The benchmark renders
# at **106 × 100** pixels, A1 divided by five, which is the grid the authors' ConvLSTM ran
# on, and with `zoom=1.8`: it shows the central part of the frame (the pot), where the plant
# is. Two reasons:
#
# 1. *Time.* The whole training run must fit in about an hour on a 2-core CPU. A training
#    step costs in proportion to the pixels, and the full A1 frame at the same detail has
#    $530 \cdot 500 / (106 \cdot 100) = 25$ times as many; the
#    {doc}`training chapter <06_training>` prints the measured speed at this size.
# 2. *Detail.* Zooming on the pot keeps a median leaf at about
#    {glue:text}`leaf_median_zoom:.0f` pixels ({glue:text}`leaf_cells_zoom:.0f` cells of the
#    53 × 50 ConvLSTM grid, stride 2), instead of {glue:text}`leaf_median_nozoom:.0f` pixels
#    at the same resolution without zoom (measured below on the first twelve training
#    plants), where the youngest leaves would shrink to one or two cells.
#
# `make_rosette(seed, size=(530, 500), zoom=1.0)` draws the same plant as a full A1 frame.

# %%
fig, axes = plt.subplots(1, 3, figsize=(10, 3.8))
full, full_lab = ris_lite.make_rosette(3, size=(530, 500), zoom=1.0)
small, small_lab = ris_lite.make_rosette(3)
axes[0].imshow(full.permute(1, 2, 0))
axes[0].set_title("zoom=1, 530 x 500 (A1 frame)", fontsize=9)
axes[1].imshow(label_rgb(full_lab))
axes[1].set_title(f"{int(full_lab.max())} leaves", fontsize=9)
axes[2].imshow(small.permute(1, 2, 0))
axes[2].set_title("benchmark: zoom=1.8, 106 x 100", fontsize=9)
for ax in axes:
    ax.set_axis_off()
fig.tight_layout()
plt.show()


def median_leaf_area(**options) -> float:
    """Median leaf area in pixels over the first twelve training plants."""
    areas = [ris_lite.labels_to_masks(ris_lite.make_rosette(s, **options)[1]).sum((1, 2)) for s in range(12)]
    return float(torch.cat(areas).float().median())


leaf_zoom, leaf_nozoom = median_leaf_area(), median_leaf_area(zoom=1.0)
print(f"median leaf: {leaf_zoom:.0f} px at the benchmark's zoom 1.8 ({leaf_zoom / 4:.0f} cells of the stride-2 grid), "
      f"{leaf_nozoom:.0f} px without zoom")
glue("leaf_median_zoom", leaf_zoom)
glue("leaf_cells_zoom", leaf_zoom / 4)
glue("leaf_median_nozoom", leaf_nozoom)

# %% [markdown]
# (data-close-a1)=
# ## How close to A1?
#
# `ris_lite.A1_STATS` holds statistics measured on the 128 labelled A1 images. We measure the
# same on generated plants, on the full A1 frame (`zoom=1`, 530 × 500) so that pixel areas are
# comparable. The aspect ratio of a leaf is the ratio of the standard deviations of its
# pixel coordinates along its two principal axes; a leaf is *split* when its pixels form more
# than one 8-connected piece.

# %%
from scipy import ndimage


def plant_statistics(seeds, **options):
    counts, radii, areas, aspects, split, colours = [], [], [], [], 0, []
    for s in seeds:
        img, lab = ris_lite.make_rosette(s, **options)
        lab = lab.numpy()
        counts.append(lab.max())
        radii.append(np.sqrt((lab > 0).sum() / np.pi))
        colours.append(img.numpy()[:, lab > 0].mean(1) * 255)
        for i in range(1, lab.max() + 1):
            ys, xs = np.nonzero(lab == i)
            areas.append(len(ys))
            ev = np.linalg.eigvalsh(np.cov(np.stack([ys, xs]).astype(float)))
            aspects.append(np.sqrt(ev[1] / max(ev[0], 1e-9)))
            split += ndimage.label(lab == i, structure=np.ones((3, 3)))[1] > 1
    return dict(counts=np.array(counts), radii=np.array(radii), areas=np.array(areas),
                aspects=np.array(aspects), split=split / len(areas), colour=np.mean(colours, 0))


full_stats = plant_statistics(range(12), size=(530, 500), zoom=1.0)
a1 = ris_lite.A1_STATS
rows = [
    ("leaves per plant, mean / sd", f"{a1['leaves_mean']} / {a1['leaves_sd']}",
     f"{full_stats['counts'].mean():.1f} / {full_stats['counts'].std():.1f}"),
    ("leaf area p10/p50/p90, px", f"{a1['leaf_area_p10']:.0f}/{a1['leaf_area_median']:.0f}/{a1['leaf_area_p90']:.0f}",
     "/".join(f"{v:.0f}" for v in np.percentile(full_stats["areas"], [10, 50, 90]))),
    ("plant radius p10/p50/p90, px", f"{a1['plant_radius_p10']:.0f}/{a1['plant_radius_median']:.0f}/{a1['plant_radius_p90']:.0f}",
     "/".join(f"{v:.0f}" for v in np.percentile(full_stats["radii"], [10, 50, 90]))),
    ("leaf aspect ratio, median", f"{a1['leaf_aspect_median']}", f"{np.median(full_stats['aspects']):.2f}"),
    ("leaves split by occlusion", f"{a1['split_leaf_fraction']:.0%}", f"{full_stats['split']:.0%}"),
    ("mean leaf colour, RGB", ",".join(map(str, a1["leaf_rgb"])),
     ",".join(str(int(round(v))) for v in full_stats["colour"])),
]
# narrow enough (< 72 characters) for the book's column
print(f"{'statistic':29s} {'CVPPP A1':>16s} {'ours (12 plants)':>17s}")
for name, ref, ours in rows:
    print(f"{name:29s} {ref:>16s} {ours:>17s}")
ours_p10, ours_p90 = np.percentile(full_stats["areas"], [10, 90])
glue("p10_ours", ours_p10)
glue("p10_a1", a1["leaf_area_p10"])
glue("p90_ours", ours_p90)
glue("p90_a1", a1["leaf_area_p90"])
glue("split_ours", 100 * full_stats["split"])
glue("split_a1", 100 * a1["split_leaf_fraction"])

# %% [markdown]
# Leaf counts, plant radii, the median leaf and its aspect ratio land close to A1; the rest
# does not, and is worth knowing:
#
# * our *smallest* leaves are too large: the 10th percentile of leaf area is
#   {glue:text}`p10_ours:.0f` pixels against A1's {glue:text}`p10_a1:.0f`, and at the other
#   end our largest leaves are a little small ({glue:text}`p90_ours:.0f` against
#   {glue:text}`p90_a1:.0f` at the 90th percentile): A1's tiny youngest leaves are missing;
# * our leaves are *split* by occlusion more often than A1's ({glue:text}`split_ours:.0f` %
#   against {glue:text}`split_a1:.0f` %: petioles of young leaves cross old blades);
# * our colour is a little darker.
#
# All three are exercises below.
#
# The leaf-count histogram of each split, at the benchmark setting (`n_leaves=(11, 20)`, the
# default), against A1's mean and range:

# %%
fig, axes = plt.subplots(1, 3, figsize=(10, 3), sharey=True)
for ax, split in zip(axes, ["train", "val", "test"]):
    lo, _ = ris_lite.SPLITS[split]
    counts = np.array([int(ris_lite.make_rosette(lo + i)[1].max()) for i in range(64)])
    ax.hist(counts, bins=np.arange(10.5, 21.5), color="tab:green", alpha=0.8, density=True)
    ax.axvline(a1["leaves_mean"], color="k", ls="--", label=f"A1 mean {a1['leaves_mean']}")
    ax.set_title(f"{split}: mean {counts.mean():.1f}, sd {counts.std():.1f}", fontsize=10)
    ax.set_xlabel("leaves per plant")
    print(f"{split}: min {counts.min()}, max {counts.max()}, mean {counts.mean():.2f}")
axes[0].legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# Easier plants for a curriculum are one argument away: `n_leaves=(2, 5)` and
# `count_sampling="uniform"`.

# %%
fig, axes = plt.subplots(1, 4, figsize=(10, 2.8))
for ax, (lo, hi) in zip(axes, [(2, 3), (4, 6), (7, 10), (11, 20)]):
    img, lab = ris_lite.make_rosette(7, n_leaves=(lo, hi), count_sampling="uniform")
    ax.imshow(overlay(img, lab))
    ax.set_title(f"n_leaves=({lo}, {hi}): {int(lab.max())}", fontsize=9)
    ax.set_axis_off()
fig.tight_layout()
plt.show()

# %% [markdown]
# (data-augmentation-geometry-image)=
# ## Augmentation: one geometry for the image and every mask
#
# The paper augments A1 by rotating each image by a random angle and flipping it with
# probability ½. `RotateFlip` does this with `ris_lite.data.augment.rotate`, twenty lines of
# `affine_grid` + `grid_sample`: the image is interpolated bilinearly, the masks use
# nearest-neighbour sampling so that a pixel is either in a leaf or not. Corners that come from outside the frame are filled with the
# image's border colour. A leaf rotated entirely out of the frame is **dropped** — an empty
# target would ask the model to find an object that is not there.

# %%
aug = ris_lite.RotateFlip(generator=torch.Generator().manual_seed(0))
img, lab = ris_lite.make_rosette(4)
msk = ris_lite.labels_to_masks(lab)
fig, axes = plt.subplots(1, 4, figsize=(10, 2.9))
axes[0].imshow(overlay(img, lab))
axes[0].set_title("original", fontsize=9)
for ax in axes[1:]:
    a_img, a_msk = aug(img, msk)
    ax.imshow(overlay(a_img, ris_lite.masks_to_labels(a_msk)))
    ax.set_title(f"{a_msk.shape[0]} masks", fontsize=9)
for ax in axes:
    ax.set_axis_off()
fig.tight_layout()
plt.show()

# %% [markdown]
# **Check.** Rotating the label map in one piece must give exactly the rotated masks, and on a
# square a quarter turn must equal `torch.rot90`:

# %%
from ris_lite.data.augment import rotate

rot_masks = rotate(msk, 33.0, "nearest")
rot_labels = rotate(lab[None], 33.0, "nearest")[0]
square = lab[:100, :100]
kept = rot_masks.flatten(1).any(1)
from_masks = ris_lite.masks_to_labels(rot_masks[kept])
from_labels = ris_lite.masks_to_labels(ris_lite.labels_to_masks(rot_labels))
differ = int((from_masks != from_labels).sum())
quarter = int((rotate(square[None], 90.0, "nearest")[0] != torch.rot90(square, 1)).sum())
print(f"rotated by 33 deg: {differ} of {from_masks.numel()} pixels differ between the two routes")
print(f"quarter turn vs torch.rot90: {quarter} of {square.numel()} pixels differ")
assert differ == 0 and quarter == 0

# %% [markdown]
# (data-batching-sets-different)=
# ## Batching sets of different sizes
#
# The paper trains on one image at a time. To use batches, `collate_instances` pads each
# image's set of masks with empty masks up to the largest set in the batch and returns the
# true counts; the loss ignores the padding.

# %%
ds = ris_lite.RosetteDataset("train", length=8, transform=ris_lite.RotateFlip())
loader = torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=ris_lite.collate_instances)
images, targets, counts = next(iter(loader))
print("images", tuple(images.shape), "| targets", tuple(targets.shape), targets.dtype, "| counts", counts.tolist())

# %% [markdown]
# (data-real-cvppp-a1)=
# ## The real CVPPP A1 data
#
# The CVPPP leaf segmentation data (A1: 128 labelled Arabidopsis images of 530 × 500 pixels)
# is distributed by the challenge organisers after registration; it cannot be downloaded
# from this book. Put the A1 folder anywhere, e.g. `data/CVPPP/A1/`, so that it holds:
#
# ```text
# plant001_rgb.png     RGBA photograph
# plant001_label.png   indexed (palette) PNG: pixel value = leaf id, 0 = background
# plant001_fg.png      optional foreground mask
# plant002_rgb.png ...
# ```
#
# Plant numbers may skip, and leaf ids may have gaps. `ris_lite.CVPPP(root)` reads the
# folder (RGBA → RGB) and gives the same items as `RosetteDataset`; `size=(106, 100)`
# resizes to the model's working size. A missing pair, an unreadable PNG or an image whose
# size differs from its label all raise an error that names the file. Here we write a tiny
# folder in the real formats and read it back:

# %%
import tempfile
from pathlib import Path

from PIL import Image

folder = Path(tempfile.mkdtemp())
for name, seed in [("plant001", 1), ("plant014", 2)]:
    img, lab = ris_lite.make_rosette(seed, size=(53, 50))
    rgba = np.concatenate([(img.permute(1, 2, 0).numpy() * 255).astype(np.uint8),
                           np.full((53, 50, 1), 255, np.uint8)], axis=2)
    Image.fromarray(rgba, "RGBA").save(folder / f"{name}_rgb.png")
    ris_lite.write_label_png(lab, folder / f"{name}_label.png")

real = ris_lite.CVPPP(folder)
img, msk = real[1]
print(real.names, "| item:", tuple(img.shape), tuple(msk.shape), msk.dtype)
print("label PNG mode:", Image.open(folder / "plant014_label.png").mode)

# %% [markdown]
# `write_label_png(labels, path, size=(530, 500))` writes a prediction the way the official
# scorer reads it: an indexed PNG at the original size, background 0, leaves numbered 1..N.
# The command `ris-lite predict --data cvppp:data/CVPPP/A1 --out predictions/` does this for
# a whole folder ({doc}`training chapter <06_training>`). The chapter {doc}`Your own data <10_your_data>` takes real folders
# end to end: any images with label images, the scale the model expects, scoring at the
# file's resolution, fine-tuning.
#
# ## Summary
#
# * An instance label is a *set* of masks: one `(H, W)` map with ids on disk, `(n, H, W)`
#   booleans in the model, with $n$ changing from image to image.
# * `make_rosette` draws an A1-like plant from one seed, the same on every machine; the named
#   splits are fixed seed ranges, and the generator's statistics are compared with A1's.
# * Augmentation moves the image and every mask with one geometry and drops instances that
#   leave the frame; batching pads the instance sets and keeps their counts.
# * `CVPPP` reads the real A1 layout and `write_label_png` writes what the scorer reads.
#
# ## Quick questions
#
# 1. Why is a split defined by a range of seeds rather than by a list of stored images?
# 2. Why must the image be rotated bilinearly but the masks by nearest neighbour?
# 3. What does `collate_instances` return besides the padded masks, and why is it needed?
#
# :::{dropdown} Answers
# 1. A seed range regenerates the same plants anywhere from a few integers; nothing has to be
#    downloaded or stored, and the test set cannot drift.
# 2. Interpolated masks would hold values between 0 and 1 at the edges (or, for label maps,
#    ids that do not exist); the image, on the other hand, should stay smooth.
# 3. The counts $n_i$: the loss must know which padded masks are real instances.
# :::
#
# ## Exercises
#
# 1. Our leaves are split by occlusion more often than A1's. Find which leaves are split
#    (plot them), and change the generator so the fraction drops near A1's (the table of
#    {numref}`section %s <data-close-a1>`) without changing the leaf-count statistics.
# 2. Plot the histogram of leaf *areas* of the generator against the A1 percentiles. What
#    would the generator need to draw A1's smallest leaves?
# 3. Add a fourth kind of clutter to `_background` (e.g. a plant label stick) and measure
#    whether the watershed baseline of the {doc}`evaluation chapter <08_evaluation>` suffers more than RIS.
# 4. Why must augmentation drop instances that leave the frame? What would the loss of
#    eq. {eq}`ris-loss` (the paper's eq. 5) do with an empty ground-truth mask?
#
# :::{dropdown} Hints
# 1. Chapter {doc}`Evaluation <08_evaluation>`'s failure kinds count split leaves; `rosette._merge_slivers` is where small
#    slivers are merged. 2. `labels_to_masks(labels).sum((1, 2))` gives the areas in working
#    pixels; multiply by the squared scale to compare with A1. 3. Draw it in `_background` with
#    the plant's own rng so the split stays reproducible. 4. Soft IoU of a prediction with an
#    empty mask is 0 however good the prediction is: a target that can never be met.
# :::
#
# ## What this chapter built in `ris_lite`
#
# `make_rosette`, `RosetteDataset`, `SPLITS`, `A1_STATS`, `labels_to_masks`,
# `masks_to_labels` (module `ris_lite.data.rosette`); `RotateFlip`, `collate_instances`
# (`ris_lite.data.augment`); `CVPPP`, `read_label_png`, `write_label_png` (`ris_lite.data.cvppp`);
# `viz.overlay`, `viz.label_rgb` (`ris_lite.viz`).
#
# Their docstrings, with tensor shapes, are in the [API reference](api).
