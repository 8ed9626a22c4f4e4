"""Image decoding (images.py) and the prepared memmap cache (prepare.py), on fixtures and on ../shared/data."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dermsynth.data import images as images_mod
from dermsynth.data import decode as decode_mod, prepare as prepare_mod
from dermsynth.data.dataset import ATTRIBUTES, LesionDataset
from dermsynth.data.images import (
    center_crop_square,
    fit_mask_to_image,
    load_image,
    load_mask,
    preprocess_image,
    resize,
    resize_mask,
)
from dermsynth.data.prepare import build_dataset, load_dataset, prepare
from dermsynth.data.readers import DataWarning, read_source
from dermsynth.errors import DataError

from conftest import SHARED_DATA as SHARED, needs_shared, write_mask as _mask

LFS_POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:4d7a2146\nsize 51234\n"


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    """Never write to the user's ~/.cache from tests."""
    monkeypatch.setenv("DERMSYNTH_CACHE", str(tmp_path / "cache"))


def _rgb(path: Path, size=(40, 30), seed=0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    arr = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, quality=95)
    return path


def _ham(root: Path, n=6, mask_scale=3) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    dx = ["nv", "mel", "bkl"]
    rows = [(f"HAM_{k // 2}", f"ISIC_{k:07d}", dx[k % 3]) for k in range(n)]
    pd.DataFrame(rows, columns=["lesion_id", "image_id", "dx"]).to_csv(root / "HAM10000_metadata.csv", index=False)
    for k, (_, image_id, _) in enumerate(rows):
        _rgb(root / "images" / f"{image_id}.jpg", (40, 30), seed=k)
        _mask(root / "masks" / f"{image_id}_segmentation.png", (40 * mask_scale, 30 * mask_scale))
    return root


# --- images.py -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P", "CMYK", "I;16", "1"])
def test_load_image_modes(tmp_path, mode):
    im = Image.new("RGB", (7, 5), (10, 200, 30)).convert(mode)
    path = tmp_path / ("x.tif" if mode in ("CMYK", "I;16") else "x.png")
    im.save(path)
    arr = load_image(path)
    assert arr.shape == (5, 7, 3) and arr.dtype == np.uint8


def test_load_mask_variants(tmp_path):
    for mode in ("L", "1"):
        m = load_mask(_mask(tmp_path / f"m_{mode}.png", mode=mode))
        assert m.dtype == np.uint8 and set(np.unique(m)) == {0, 1} and m.sum() == 20 * 15
    arr = np.zeros((4, 4), np.uint8)
    arr[1:3, 1:3] = 1  # masks saved as {0, 1}
    Image.fromarray(arr).save(tmp_path / "m01.png")
    assert load_mask(tmp_path / "m01.png").sum() == 4


def test_image_errors_name_the_file(tmp_path):
    cases = {}
    cases["missing"] = (tmp_path / "nope.jpg", "image file not found")
    (tmp_path / "lfs.jpg").write_text(LFS_POINTER)
    cases["lfs"] = (tmp_path / "lfs.jpg", "Git LFS pointer")
    (tmp_path / "empty.jpg").write_bytes(b"")
    cases["empty"] = (tmp_path / "empty.jpg", "empty image file")
    (tmp_path / "noise.jpg").write_bytes(np.random.default_rng(0).bytes(5000))
    cases["noise"] = (tmp_path / "noise.jpg", "corrupt or unreadable image")
    full = _rgb(tmp_path / "full.jpg", (64, 48)).read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(full[: len(full) // 2])
    cases["truncated jpeg"] = (tmp_path / "trunc.jpg", "corrupt or unreadable image.*truncated")
    png = tmp_path / "full.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(png)
    (tmp_path / "trunc.png").write_bytes(png.read_bytes()[:300])
    cases["truncated png"] = (tmp_path / "trunc.png", "corrupt or unreadable image")
    for name, (path, pattern) in cases.items():
        with pytest.raises(DataError, match=pattern) as e:
            load_image(path)
        msg = str(e.value)
        assert str(path) in msg and "\n" not in msg, name
    with pytest.raises(DataError, match="lfs.jpg: is a Git LFS pointer, not the real mask"):
        load_mask(tmp_path / "lfs.jpg")


def test_center_crop_and_preprocess_known_square():
    # 40 rows x 80 cols: blue side bands (cropped away), white centre 40x40 holding a red 20x20 square.
    img = np.zeros((40, 80, 3), np.uint8)
    img[:, :] = (0, 0, 255)
    img[:, 20:60] = 255
    img[10:30, 30:50] = (255, 0, 0)
    crop = center_crop_square(img)
    assert crop.shape == (40, 40, 3)
    assert (crop[10:30, 10:30] == (255, 0, 0)).all() and (crop[:10] == 255).all()
    assert (center_crop_square(img.transpose(1, 0, 2)) == crop.transpose(1, 0, 2)).all()  # portrait too
    small = preprocess_image(img, 20)
    assert small.shape == (20, 20, 3)
    centre = small[6:14, 6:14].astype(int)  # LANCZOS rings by a few levels next to the square's edges
    assert (centre[..., 0] > 250).all() and (centre[..., 1:] < 5).all()  # the centre stays red
    assert (small[:, [0, -1]] > 240).all() and (small[[0, -1]] > 240).all()  # white border: no blue band left
    assert (center_crop_square(np.zeros((5, 9))) == 0).all() and center_crop_square(np.zeros((5, 9))).shape == (5, 5)


def test_resize_is_antialiased_and_masks_stay_binary():
    checker = (np.indices((64, 64)).sum(axis=0) % 2 * 255).astype(np.uint8)
    img = np.repeat(checker[:, :, None], 3, axis=2)
    small = resize(img, 8)
    assert small.shape == (8, 8, 3) and abs(float(small.mean()) - 127.5) < 3 and small.std() < 3  # grey, no aliasing
    mask = (checker > 0).astype(np.uint8)
    assert set(np.unique(resize_mask(mask, 8))) <= {0, 1}
    assert resize(img, (16, 12)).shape == (12, 16, 3)


def test_fit_mask_to_image(tmp_path):
    mask = np.zeros((450, 600), np.uint8)
    mask[100:300, 200:400] = 1
    assert fit_mask_to_image(mask, (450, 600, 3), "m.png") is mask
    fitted = fit_mask_to_image(mask, (150, 200, 3), "m.png")
    assert fitted.shape == (150, 200) and set(np.unique(fitted)) == {0, 1} and fitted[50, 100] == 1
    assert fit_mask_to_image(np.ones((451, 600), np.uint8), (150, 200), "m.png").shape == (150, 200)  # within 1 %
    with pytest.raises(DataError, match=r"odd_mask\.png: mask is 600x600 but its image is 200x150"):
        fit_mask_to_image(np.zeros((600, 600), np.uint8), (150, 200, 3), tmp_path / "odd_mask.png")


# --- prepare.py ----------------------------------------------------------------------------------------------


def test_prepare_writes_loadable_memmap_cache(tmp_path):
    src = _ham(tmp_path / "ham")
    out = tmp_path / "prepared"
    ds = prepare(src, 16, out, progress=False)
    assert isinstance(ds, LesionDataset) and isinstance(ds.images, np.memmap)
    assert ds.images.shape == (6, 16, 16, 3) and ds.images.dtype == np.uint8
    assert ds.lesion_masks.shape == (6, 16, 16) and set(np.unique(ds.lesion_masks)) == {0, 1}
    assert ds.attribute_masks is None
    assert ds.class_names == ["bkl", "mel", "nv"]
    assert ds.ids == [f"ISIC_{k:07d}" for k in range(6)] and ds.groups[:2] == ["HAM_0", "HAM_0"]
    assert list(ds.labels) == [2, 1, 0, 2, 1, 0]
    # The image content is the centre crop of the decoded JPEG, resized.
    expect = preprocess_image(load_image(src / "images" / "ISIC_0000003.jpg"), 16)
    assert np.array_equal(ds.images[3], expect)
    # The mask (120x90 for a 40x30 image) was fitted, then cropped like the image: a centred box.
    assert ds.lesion_masks[0, 8, 8] == 1 and ds.lesion_masks[0, 0, 0] == 0
    # meta.json keeps every key LesionDataset.save writes (the two writers stay in step).
    ref = tmp_path / "ref"
    ds.subset([0, 1]).save(ref)
    save_keys = set(json.loads((ref / "meta.json").read_text()))
    meta = json.loads((out / "meta.json").read_text())
    assert save_keys <= set(meta)
    assert meta["skipped"]["count"] == 0 and meta["source_kind"] == "ham10000"
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temp files left
    again = LesionDataset.load(out, mmap=False)
    assert np.array_equal(again.images, ds.images) and again.size == 16


def test_prepare_reuses_cache(tmp_path, monkeypatch):
    src = _ham(tmp_path / "ham")
    first = prepare(src, 16, progress=False)  # default location under $DERMSYNTH_CACHE
    (folder,) = (tmp_path / "cache").iterdir()
    assert folder.name.startswith("ham-16-") and len(folder.name) == len("ham-16-") + 8
    stamp = (folder / "images.npy").stat().st_mtime_ns

    def no_decoding(path):
        raise AssertionError(f"decoded {path} again")

    monkeypatch.setattr(decode_mod, "load_image", no_decoding)  # the decoder (data.decode) is never reached
    second = prepare(src, 16, progress=False)
    assert (folder / "images.npy").stat().st_mtime_ns == stamp
    assert np.array_equal(first.images, second.images) and isinstance(second.images, np.memmap)
    assert load_dataset(src, 16, progress=False).ids == first.ids  # load_dataset goes through the same cache
    monkeypatch.undo()
    monkeypatch.setenv("DERMSYNTH_CACHE", str(tmp_path / "cache"))
    # Another size is another cache; a changed image file invalidates the old one.
    assert prepare(src, 8, progress=False).size == 8
    _rgb(src / "images" / "ISIC_0000000.jpg", (40, 30), seed=99)
    os.utime(src / "images" / "ISIC_0000000.jpg", ns=(time.time_ns(), time.time_ns() + 10**9))
    third = prepare(src, 16, progress=False)
    assert (folder / "images.npy").stat().st_mtime_ns != stamp  # rebuilt in place (same key, new fingerprint)
    assert not np.array_equal(third.images[0], first.images[0]) and np.array_equal(third.images[1], first.images[1])
    assert len(list((tmp_path / "cache").iterdir())) == 2  # the 16 px and 8 px caches


def test_prepare_corrupt_image(tmp_path):
    src = _ham(tmp_path / "ham")
    bad = src / "images" / "ISIC_0000002.jpg"
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(DataError, match=r"ISIC_0000002\.jpg: corrupt or unreadable image"):
        prepare(src, 16, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()  # temp arrays cleaned up, and the folder this run made
    with pytest.warns(DataWarning, match="skipped 1 unreadable"):
        ds = prepare(src, 16, tmp_path / "out", skip_corrupt=True, progress=False)
    assert len(ds) == 5 and "ISIC_0000002" not in ds.ids
    assert list(ds.labels) == [2, 1, 2, 1, 0] and ds.lesion_masks.shape == (5, 16, 16)
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["skipped"]["count"] == 1 and meta["skipped"]["files"] == [str(bad.resolve())]
    assert meta["count"] == 5


def test_prepare_lfs_pointer(tmp_path):
    src = _ham(tmp_path / "ham")
    (src / "images" / "ISIC_0000001.jpg").write_text(LFS_POINTER)
    with pytest.raises(DataError, match=r"ISIC_0000001\.jpg: is a Git LFS pointer"):
        prepare(src, 16, progress=False)


def test_prepare_mask_aspect_mismatch(tmp_path):
    src = _ham(tmp_path / "ham")
    _mask(src / "masks" / "ISIC_0000004_segmentation.png", (90, 90))
    with pytest.raises(DataError, match=r"ISIC_0000004_segmentation\.png: mask is 90x90 but its image is 40x30"):
        prepare(src, 16, progress=False)


def test_partial_masks_and_attribute_stacking(tmp_path):
    root = tmp_path / "t2"
    for i in range(3):
        _rgb(root / "images" / f"ISIC_{i}.jpg", (40, 30), seed=i)
    _mask(root / "images" / "ISIC_0_segmentation.png")
    _mask(root / "images" / "ISIC_1_segmentation.png")
    _mask(root / "images" / "ISIC_0_attribute_streaks.png")
    _mask(root / "images" / "ISIC_2_attribute_globules.png")
    with pytest.warns(DataWarning, match="1 image.*no lesion mask"):
        ds = prepare(root, 12, progress=False)
    assert ds.lesion_masks.shape == (3, 12, 12) and ds.lesion_masks[2].sum() == 0 and ds.lesion_masks[0].sum() > 0
    assert ds.attribute_masks.shape == (3, len(ATTRIBUTES), 12, 12)
    s, g = ATTRIBUTES.index("streaks"), ATTRIBUTES.index("globules")
    per = ds.attribute_masks.sum(axis=(2, 3))
    assert per[0, s] > 0 and per[2, g] > 0 and per.sum() == per[0, s] + per[2, g]
    assert ds.attribute_names == list(ATTRIBUTES)


def test_prepare_source_index_subset_and_threads(tmp_path):
    src = _ham(tmp_path / "ham", n=9)
    ix = read_source(src).select(slice(0, 4))
    one = prepare(ix, 16, progress=False, workers=1)
    two = build_dataset(read_source(src), 16, progress=False, workers=3)
    assert len(one) == 4 and len(two) == 9
    assert np.array_equal(one.images, two.images[:4]) and np.array_equal(one.lesion_masks, two.lesion_masks[:4])
    assert prepare(read_source(src), 16, progress=False).ids != one.ids  # a subset gets its own default cache


def test_load_dataset_specs(tmp_path):
    src = _ham(tmp_path / "ham")
    out = tmp_path / "c16"
    prepare(src, 16, out, progress=False)
    assert load_dataset(out, 16).size == 16 and load_dataset(out, None).size == 16
    with pytest.raises(DataError, match=r"c16: cache was prepared at 16px but 32px was requested"):
        load_dataset(out, 32)
    npz = tmp_path / "dermamnist.npz"
    rng = np.random.default_rng(0)
    np.savez(npz, train_images=rng.integers(0, 255, (6, 28, 28, 3), dtype=np.uint8), train_labels=np.arange(6)[:, None],
             test_images=rng.integers(0, 255, (2, 28, 28), dtype=np.uint8), test_labels=np.array([[6], [0]]))
    ds = load_dataset(npz, 28)
    assert len(ds) == 8 and ds.size == 28 and not isinstance(ds.images, np.memmap)
    assert ds.class_names[6] == "vasc" and ds.ids[-1] == "test_000001"
    assert np.array_equal(ds.images[0], np.load(npz)["train_images"][0])  # same size: pixels untouched
    assert np.array_equal(ds.images[6][..., 0], ds.images[6][..., 2])  # grey -> RGB
    assert load_dataset(npz, 16, split="test").images.shape == (2, 16, 16, 3)
    assert not (tmp_path / "cache").exists()  # npz is not cached
    with pytest.raises(DataError, match="c16: is a prepared dataset cache, not a source"):
        read_source(out)
    with pytest.raises(DataError, match="phantom:N"):
        load_dataset("phantom:many", 16)
    with pytest.raises(DataError, match="no such file or folder"):
        load_dataset(tmp_path / "missing", 16)


def test_load_dataset_phantom():
    pytest.importorskip("dermsynth.data.phantom")
    ds = load_dataset("phantom:8", 16)
    assert len(ds) == 8 and ds.size == 16
    assert len(load_dataset(None, 16)) == prepare_mod.DEFAULT_PHANTOM_N


# --- the real data -------------------------------------------------------------------------------------------


@needs_shared
def test_real_ham10000_masks_subset(tmp_path):
    ix = read_source(SHARED / "ham10000").select(slice(0, 50))
    ds = prepare(ix, 32, tmp_path / "ham50", progress=False)
    assert ds.images.shape == (50, 32, 32, 3) and ds.lesion_masks.shape == (50, 32, 32)
    assert set(np.unique(ds.lesion_masks)) == {0, 1}
    assert (ds.lesion_masks.reshape(50, -1).sum(axis=1) > 0).all()  # every mask matched and non-empty
    assert len(set(ds.groups)) < 50  # several images per lesion


@needs_shared
def test_real_ph2_task2_originals(tmp_path):
    ph2 = prepare(read_source(SHARED / "ph2").select(range(0, 200, 20)), 32, tmp_path / "ph2", progress=False)
    assert ph2.images.shape == (10, 32, 32, 3) and (ph2.lesion_masks.reshape(10, -1).sum(axis=1) > 0).all()
    t2 = prepare(SHARED / "isic2018_task2_sample", 32, tmp_path / "t2", progress=False)
    assert t2.attribute_masks.shape == (6, 5, 32, 32)
    k = ATTRIBUTES.index("pigment_network")
    assert t2.attribute_masks[:, k].sum() > 0 and t2.attribute_masks.sum() == t2.attribute_masks[:, k].sum()
    orig_ix = read_source(SHARED / "isic_originals")
    big = max(orig_ix.records, key=lambda r: r.image.stat().st_size)
    ds = prepare(orig_ix.select([orig_ix.records.index(big), 0, 1]), 64, tmp_path / "orig", progress=False)
    assert ds.images.shape == (3, 64, 64, 3)
    full = load_image(big.image)
    assert min(full.shape[:2]) > 500 and full.shape[0] != full.shape[1]  # a megapixel, non-square original
    assert np.array_equal(ds.images[0], preprocess_image(full, 64))


@needs_shared
@pytest.mark.slow
def test_real_ham10000_full_prepare(tmp_path):
    ds = prepare(SHARED / "ham10000", 32, progress=False)
    assert len(ds) == 10_015 and ds.class_counts()["nv"] == 6705 and len(set(ds.groups)) == 7_470
    assert ds.lesion_masks.shape == (10_015, 32, 32) and isinstance(ds.images, np.memmap)
    # Reuse without decoding: the second call only reads the index and the cache.
    t = time.perf_counter()
    assert prepare(SHARED / "ham10000", 32, progress=False).ids == ds.ids
    assert time.perf_counter() - t < 5


def test_images_module_has_no_truncated_override():
    from PIL import ImageFile

    assert not ImageFile.LOAD_TRUNCATED_IMAGES
    assert "LOAD_TRUNCATED_IMAGES" not in Path(images_mod.__file__).read_text().replace(
        "``ImageFile.LOAD_TRUNCATED_IMAGES = False``", ""
    )
