"""Tests of the procedural phantom data (dermsynth.data.phantom)."""

from __future__ import annotations

import numpy as np
import pytest

from dermsynth.data.dataset import ATTRIBUTES, LesionDataset
from dermsynth.data.phantom import PHANTOM_CLASSES, generate_phantom, render_phantom
from dermsynth.errors import DataError

NEVUS, MELANOMA, KERATOSIS, BCC = (PHANTOM_CLASSES.index(c) for c in ("nevus", "melanoma", "keratosis", "bcc"))
A = {name: i for i, name in enumerate(ATTRIBUTES)}


@pytest.fixture(scope="module")
def ds() -> LesionDataset:
    return generate_phantom(n=240, size=64, seed=0)


def _lesion_stats(d: LesionDataset) -> tuple[np.ndarray, np.ndarray]:
    """Per image: mean RGB inside the lesion mask, and the lesion area fraction."""
    masks = d.lesion_masks.astype(bool)
    colour = np.stack([img[m].mean(axis=0) for img, m in zip(d.images, masks)])
    return colour, masks.mean(axis=(1, 2))


def _arrays_equal(a: LesionDataset, b: LesionDataset) -> bool:
    return (np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
            and np.array_equal(a.lesion_masks, b.lesion_masks)
            and np.array_equal(a.attribute_masks, b.attribute_masks) and a.ids == b.ids)


# --- determinism --------------------------------------------------------------------------------
def test_repeat_is_byte_identical():
    a = generate_phantom(n=12, size=32, seed=5)
    b = generate_phantom(n=12, size=32, seed=5)
    assert _arrays_equal(a, b)
    assert a.images.tobytes() == b.images.tobytes()


def test_prefix_property():
    short = generate_phantom(n=10, size=32, seed=3, class_probs=[1, 2, 3, 4])
    long = generate_phantom(n=25, size=32, seed=3, class_probs=[1, 2, 3, 4])
    assert _arrays_equal(short, long.subset(np.arange(10)))


def test_seeds_differ():
    a = generate_phantom(n=6, size=32, seed=0)
    b = generate_phantom(n=6, size=32, seed=1)
    assert not np.array_equal(a.images, b.images)
    assert a.ids[0] == "phantom_0_000000" and b.ids[5] == "phantom_1_000005"


def test_render_phantom_is_the_per_image_generator():
    """Image i is render_phantom(class, default_rng([seed, i]) after the label draw, ...)."""
    d = generate_phantom(n=4, size=32, seed=7, classes=["melanoma"], hairs=0.5)
    assert d.class_names == ["melanoma"] and (d.labels == 0).all()
    for i in range(4):
        rng = np.random.default_rng([7, i])
        rng.random()  # the label draw
        img, lesion, attrs = render_phantom(MELANOMA, rng, 32, 0.5)
        assert np.array_equal(img, d.images[i])
        assert np.array_equal(lesion, d.lesion_masks[i])
        assert np.array_equal(attrs, d.attribute_masks[i])


def test_hairs_change_only_hair_pixels():
    clean = generate_phantom(n=16, size=64, seed=2, hairs=0.0)
    hairy = generate_phantom(n=16, size=64, seed=2, hairs=1.0)
    assert np.array_equal(clean.labels, hairy.labels)
    assert np.array_equal(clean.lesion_masks, hairy.lesion_masks)
    assert np.array_equal(clean.attribute_masks, hairy.attribute_masks)
    diff = hairy.images.astype(int) - clean.images.astype(int)
    changed = np.abs(diff).max(axis=-1) > 0
    assert changed.any(axis=(1, 2)).all()  # every image got hairs
    assert changed.mean() < 0.25  # thin lines, not a wash over the picture
    assert diff[changed].mean() < -10  # hairs are dark


# --- shapes, dtypes, masks ----------------------------------------------------------------------
def test_shapes_and_dtypes(ds):
    n = len(ds)
    assert isinstance(ds, LesionDataset)
    assert ds.images.shape == (n, 64, 64, 3) and ds.images.dtype == np.uint8
    assert ds.labels.shape == (n,) and ds.labels.dtype == np.int64
    assert ds.lesion_masks.shape == (n, 64, 64) and ds.lesion_masks.dtype == np.uint8
    assert ds.attribute_masks.shape == (n, len(ATTRIBUTES), 64, 64) and ds.attribute_masks.dtype == np.uint8
    assert ds.class_names == list(PHANTOM_CLASSES)
    assert ds.attribute_names == list(ATTRIBUTES)
    assert ds.source == "phantom"
    assert ds.groups == ds.ids and len(set(ds.ids)) == n
    assert ds.ids[17] == "phantom_0_000017"
    assert set(np.unique(ds.labels)) <= set(range(len(PHANTOM_CLASSES)))


@pytest.mark.parametrize("size", [16, 48, 128])
def test_other_sizes(size):
    d = generate_phantom(n=3, size=size, seed=1)
    assert d.images.shape == (3, size, size, 3)
    assert d.lesion_masks.shape == (3, size, size)
    assert d.attribute_masks.shape == (3, len(ATTRIBUTES), size, size)
    assert d.lesion_masks.sum(axis=(1, 2)).min() > 0


def test_masks_binary_and_sensible(ds):
    assert set(np.unique(ds.lesion_masks)) <= {0, 1}
    assert set(np.unique(ds.attribute_masks)) <= {0, 1}
    area = ds.lesion_masks.mean(axis=(1, 2))
    assert area.min() > 0.02 and area.max() < 0.7  # never empty, never the whole picture
    # the lesion is darker than its surroundings inside the dermoscope field (not the black corners)
    yy, xx = np.mgrid[:64, :64]
    field = ((xx - 31.5) ** 2 + (yy - 31.5) ** 2) < 26 ** 2
    grey = ds.images.astype(float).mean(axis=-1)
    m = ds.lesion_masks.astype(bool)
    inside = np.array([g[mi].mean() for g, mi in zip(grey, m)])
    outside = np.array([g[~mi & field].mean() for g, mi in zip(grey, m)])
    pigmented = ds.labels != BCC  # the pink bcc stand-ins may be lighter than the skin
    assert np.mean(inside[pigmented] < outside[pigmented] - 5) > 0.95
    assert np.mean(np.abs(inside - outside) > 3) > 0.9


def test_attribute_masks_inside_lesion(ds):
    attrs = ds.attribute_masks.astype(bool)
    lesion = ds.lesion_masks.astype(bool)[:, None]
    assert attrs.sum() > 0
    assert (attrs & ~lesion).sum() <= 0.01 * attrs.sum()


def test_attributes_follow_classes(ds):
    present = ds.attribute_masks.reshape(len(ds), len(ATTRIBUTES), -1).max(axis=-1).astype(bool)

    def rate(cls: int, attr: str) -> float:
        return float(present[ds.labels == cls, A[attr]].mean())

    assert rate(NEVUS, "pigment_network") > 0.7
    assert rate(MELANOMA, "streaks") > 0.6 and rate(MELANOMA, "globules") > 0.5
    assert rate(KERATOSIS, "milia_like_cyst") > 0.7
    assert rate(BCC, "negative_network") > 0.5
    for cls in (NEVUS, KERATOSIS, BCC):
        assert rate(cls, "streaks") == 0
    for cls in (NEVUS, MELANOMA, BCC):
        assert rate(cls, "milia_like_cyst") == 0
    for cls in (NEVUS, MELANOMA, KERATOSIS):
        assert rate(cls, "negative_network") == 0
    assert rate(KERATOSIS, "pigment_network") == 0 and rate(BCC, "pigment_network") == 0


# --- class probabilities and class subsets ------------------------------------------------------
def test_single_class_probs():
    d = generate_phantom(n=30, size=32, seed=0, class_probs=[1, 0, 0, 0])
    assert (d.labels == 0).all()
    d = generate_phantom(n=30, size=32, seed=0, class_probs=[0, 0, 0, 2.5])
    assert (d.labels == 3).all()


def test_class_probs_proportions():
    d = generate_phantom(n=400, size=16, seed=11, class_probs=[0.5, 0.2, 0.2, 0.1], hairs=0.0)
    freq = np.bincount(d.labels, minlength=4) / len(d)
    assert np.allclose(freq, [0.5, 0.2, 0.2, 0.1], atol=0.07)


def test_default_probs_roughly_uniform(ds):
    counts = np.bincount(ds.labels, minlength=4)
    assert counts.min() > 0.6 * len(ds) / 4


def test_class_subset_and_order():
    d = generate_phantom(n=40, size=32, seed=0, classes=["Melanoma", "nevus"], class_probs=[1, 1])
    assert d.class_names == ["melanoma", "nevus"]
    assert set(np.unique(d.labels)) == {0, 1}
    _, area = _lesion_stats(d)
    assert area[d.labels == 0].mean() > area[d.labels == 1].mean()  # melanoma stand-ins are larger


# --- classes differ measurably ------------------------------------------------------------------
def test_classes_differ_in_colour_and_size(ds):
    colour, area = _lesion_stats(ds)
    lum = colour.mean(axis=1)

    def mean(values: np.ndarray, cls: int) -> float:
        return float(values[ds.labels == cls].mean())

    # melanoma: darkest and largest
    assert mean(lum, MELANOMA) < mean(lum, NEVUS) - 20
    assert mean(lum, MELANOMA) < min(mean(lum, KERATOSIS), mean(lum, BCC)) - 40
    assert mean(area, MELANOMA) > 1.5 * mean(area, NEVUS)
    # keratosis: lighter brown than the nevus
    assert mean(lum, KERATOSIS) > mean(lum, NEVUS) + 10
    # bcc: pinkish/greyish -- blue about as high as green, unlike the brown classes
    blue_minus_green = colour[:, 2] - colour[:, 1]
    assert mean(blue_minus_green, BCC) > max(mean(blue_minus_green, c) for c in (NEVUS, KERATOSIS)) + 15


def test_classes_separable_by_simple_features(ds):
    """A nearest-centroid rule on five lesion statistics already separates most images, so a small
    CNN certainly can; the classes still vary (not every image sits on its centroid)."""

    def features(d: LesionDataset) -> np.ndarray:
        colour, area = _lesion_stats(d)
        spread = np.stack([img[m.astype(bool)].astype(float).std() for img, m in zip(d.images, d.lesion_masks)])
        f = np.column_stack([colour, np.sqrt(area) * 255, spread])
        return f

    train, test = features(ds), generate_phantom(n=160, size=64, seed=1)
    f_test = features(test)
    mu, sd = train.mean(axis=0), train.std(axis=0)
    centroids = np.stack([((train - mu) / sd)[ds.labels == c].mean(axis=0) for c in range(4)])
    dist = ((((f_test - mu) / sd)[:, None, :] - centroids[None]) ** 2).sum(axis=-1)
    accuracy = float((dist.argmin(axis=1) == test.labels).mean())
    assert accuracy > 0.8
    # within-class variability: no class collapses to near-identical images
    for c in range(4):
        assert train[ds.labels == c].std(axis=0).min() > 0


# --- invalid arguments --------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, match", [
    (dict(n=0), "n must"),
    (dict(n=-3), "n must"),
    (dict(n=2.5), "n must"),
    (dict(size=8), "size"),
    (dict(size=15), "size"),
    (dict(seed=-1), "seed"),
    (dict(class_probs=[1, 1, 1]), "3 entries but there are 4 classes"),
    (dict(class_probs=[1, -1, 1, 1]), "non-negative"),
    (dict(class_probs=[0, 0, 0, 0]), "not all zero"),
    (dict(class_probs=[1, float("nan"), 1, 1]), "finite"),
    (dict(class_probs=["a", "b", "c", "d"]), "numbers"),
    (dict(classes=["nevus", "psoriasis"]), "unknown phantom class"),
    (dict(classes=["nevus", "nevus"]), "repeat"),
    (dict(classes=[]), "at least one"),
    (dict(classes=["nevus", "bcc"], class_probs=[1, 2, 3, 4]), "4 entries but there are 2"),
    (dict(hairs=1.5), "hairs"),
    (dict(hairs=-0.1), "hairs"),
])
def test_invalid_arguments(kwargs, match):
    args = dict(n=4, size=32)
    args.update(kwargs)
    with pytest.raises(DataError, match=match):
        generate_phantom(**args)


def test_render_phantom_validates():
    rng = np.random.default_rng(0)
    with pytest.raises(DataError, match="label"):
        render_phantom(len(PHANTOM_CLASSES), rng, 32, 0.0)
    with pytest.raises(DataError, match="label"):
        render_phantom(-1, rng, 32, 0.0)
    with pytest.raises(DataError, match="size"):
        render_phantom(0, rng, 10, 0.0)
    with pytest.raises(DataError, match="hairs"):
        render_phantom(0, rng, 32, 2.0)


def test_render_phantom_outputs():
    img, lesion, attrs = render_phantom(NEVUS, np.random.default_rng(1), 48, 0.0)
    assert img.shape == (48, 48, 3) and img.dtype == np.uint8
    assert lesion.shape == (48, 48) and lesion.dtype == np.uint8 and 0 < lesion.sum() < 48 * 48
    assert attrs.shape == (len(ATTRIBUTES), 48, 48) and attrs.dtype == np.uint8
