"""Healthy / lesion patch sets (Furger et al. 2020, 3.1): exact classification, margins, groups, caches, real
HAM10000."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import SHARED_DATA, needs_shared
from dermsynth.data.dataset import LesionDataset
from dermsynth.data.images import fit_mask_to_image, load_image, load_mask
from dermsynth.data.patches import PatchRule, classify_patches, cut_patches, parse_fraction_range, patch_domains
from dermsynth.data.phantom import generate_phantom
from dermsynth.data.prepare import load_dataset, prepare
from dermsynth.data.readers import DataWarning, read_source
from dermsynth.errors import DataError


def _square_lesion():
    """A 64x64 skin image with a 16x16 lesion at rows/cols 8..23 (inclusive)."""
    image = np.full((64, 64, 3), 180, np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    mask[8:24, 8:24] = 1
    return image, mask


def test_classification_on_a_hand_made_mask():
    image, mask = _square_lesion()
    got = classify_patches(image, mask, PatchRule(size=16, lesion_fraction=(0.1, 0.8), margin=0))
    # the four patches around the lesion hold 64 of 256 lesion pixels each (25 %)
    assert got["lesion"] == [(0, 0), (0, 16), (16, 0), (16, 16)]
    # every other patch of the 4x4 grid has no lesion pixel at all
    assert len(got["healthy"]) == 12 and not set(got["healthy"]) & set(got["lesion"])
    # at 25 % the patches fall outside a 30-80 % range
    assert classify_patches(image, mask, PatchRule(size=16, lesion_fraction=(0.3, 0.8)))["lesion"] == []


def test_margin_keeps_healthy_patches_off_the_lesion():
    image, mask = _square_lesion()
    # patch (0, 32) spans cols 32..47; the lesion ends at col 23: 8 px of margin clear it, 9 px do not
    assert (0, 32) in classify_patches(image, mask, PatchRule(size=16, margin=8))["healthy"]
    assert (0, 32) not in classify_patches(image, mask, PatchRule(size=16, margin=9))["healthy"]
    # and the margin never changes which patches are lesion patches
    assert classify_patches(image, mask, PatchRule(size=16, margin=9))["lesion"] == \
        classify_patches(image, mask, PatchRule(size=16, margin=0))["lesion"]


def test_background_patches_are_dropped():
    image, mask = _square_lesion()
    image[48:, 48:] = 5  # the dermoscope's black corner
    healthy = classify_patches(image, mask, PatchRule(size=16))["healthy"]
    assert (48, 48) not in healthy and (48, 32) in healthy
    assert (48, 48) in classify_patches(image, mask, PatchRule(size=16, max_dark=1.0))["healthy"]


def test_phantom_patches_are_ordinary_caches_with_masks_and_groups(tmp_path):
    src = generate_phantom(n=12, size=96, seed=3)
    src.save(tmp_path / "src")
    rule = PatchRule(size=32, margin=3)
    summary = cut_patches(tmp_path / "src", tmp_path / "p", rule, progress=False)
    healthy = load_dataset(tmp_path / "p" / "healthy", size=32)
    lesion = load_dataset(tmp_path / "p" / "lesion", size=32)
    assert summary.counts == {"healthy": len(healthy), "lesion": len(lesion)} and len(healthy) and len(lesion)
    fractions = lesion.lesion_masks.reshape(len(lesion), -1).mean(axis=1)
    assert fractions.min() >= 0.1 and fractions.max() <= 0.8
    assert healthy.lesion_masks.max() == 0
    row = {image_id: i for i, image_id in enumerate(src.ids)}
    for data in (healthy, lesion):
        for k, patch_id in enumerate(data.ids):  # each patch is an exact crop of its source image and mask
            image_id, where = patch_id.split("@")
            y, x = (int(v) for v in where[1:].split("x"))
            i = row[image_id]
            assert data.groups[k] == src.groups[i] and data.labels[k] == src.labels[i]
            assert np.array_equal(data.images[k], src.images[i][y:y + 32, x:x + 32])
            assert np.array_equal(data.lesion_masks[k], src.lesion_masks[i][y:y + 32, x:x + 32])
            if data is healthy:  # nothing of the lesion within the margin
                assert src.lesion_masks[i][max(y - 3, 0):y + 35, max(x - 3, 0):x + 35].max() == 0


def test_max_per_image_and_bad_options(tmp_path):
    generate_phantom(n=6, size=96, seed=1).save(tmp_path / "src")
    summary = cut_patches(tmp_path / "src", tmp_path / "p", PatchRule(size=16, margin=1), max_per_image=1,
                          progress=False)
    assert summary.counts["healthy"] <= 6 and summary.counts["lesion"] <= 6
    with pytest.raises(DataError, match="lesion-fraction"):
        parse_fraction_range("a lot")
    assert parse_fraction_range("10:80") == (0.1, 0.8)
    with pytest.raises(DataError, match="lesion-fraction"):
        PatchRule(lesion_fraction=(0.8, 0.1))
    with pytest.raises(DataError, match="no healthy and no lesion patches.*nothing was written"):
        cut_patches(tmp_path / "src", tmp_path / "big", PatchRule(size=128), progress=False)
    assert not (tmp_path / "big" / "healthy").exists() and not (tmp_path / "big" / "lesion").exists()


def test_a_source_without_masks_is_one_clear_error(tmp_path, noise_dataset):
    noise_dataset.save(tmp_path / "noise")
    with pytest.raises(DataError, match="no lesion masks"):
        cut_patches(tmp_path / "noise", tmp_path / "p", PatchRule(size=8), progress=False)


def _lesion_photos(root, empty_mask_ids=()):
    """Three 64x64 skin photos with a 16x16 lesion (``_square_lesion``) and their masks as files; the masks of
    ``empty_mask_ids`` are all zero, though the lesion is in the photo."""
    from PIL import Image

    root.mkdir(parents=True)
    image, mask = _square_lesion()
    image[mask > 0] = (90, 50, 30)
    for i in range(3):
        Image.fromarray(image).save(root / f"img{i}.png")
        Image.fromarray((0 if f"img{i}" in empty_mask_ids else 255) * mask).save(root / f"img{i}_segmentation.png")
    return root


@pytest.mark.parametrize("from_cache", [False, True])
def test_an_all_zero_mask_is_skipped_not_healthy(tmp_path, from_cache):
    src = _lesion_photos(tmp_path / "src", empty_mask_ids={"img1"})
    if from_cache:  # a prepared cache stores an all-zero mask for an image without one
        (src / "img1_segmentation.png").unlink()
        with pytest.warns(DataWarning, match="no lesion mask"):
            prepare(src, 64, out=tmp_path / "cache", progress=False)
        src = tmp_path / "cache"
    rule = PatchRule(size=16, margin=0)
    with pytest.warns(DataWarning, match=r"1 image\(s\) with an all-zero lesion mask are skipped \(first: img1\)"):
        summary = cut_patches(src, tmp_path / "p", rule, progress=False)
    assert summary.skipped_empty_masks == 1 and summary.images == 2
    healthy = LesionDataset.load(tmp_path / "p" / "healthy")
    assert not any(i.startswith("img1@") for i in healthy.ids)
    assert json.loads((tmp_path / "p" / "healthy" / "meta.json").read_text())["patches"]["skipped_empty_masks"] == 1
    assert len(healthy) == 2 * 12  # the 12 lesion-free patches of each image with a real mask


def test_patch_folder_expands_into_the_two_domains(tmp_path):
    generate_phantom(n=8, size=96).save(tmp_path / "src")
    cut_patches(tmp_path / "src", tmp_path / "p", PatchRule(size=32, margin=1), progress=False)
    p = str(tmp_path / "p")
    assert patch_domains(p, None, "healthy") == (f"{p}/healthy", f"{p}/lesion")
    assert patch_domains(p, None, "lesion") == (f"{p}/lesion", f"{p}/healthy")
    assert patch_domains(p, "other", "lesion") == (p, "other")  # an explicit --data-b wins
    assert patch_domains(f"{p}/healthy", None, "healthy") == (f"{p}/healthy", None)


def test_cli_patches_on_phantom(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "dermsynth.cli", "patches", "phantom:10", "--size", "32",
                           "--read-size", "96", "--margin", "2", "--out", str(tmp_path / "p"), "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "healthy and" in proc.stdout and "96x96" in proc.stdout
    assert LesionDataset.is_cache(tmp_path / "p" / "healthy") and LesionDataset.is_cache(tmp_path / "p" / "lesion")


@needs_shared
def test_real_ham10000_patches_at_native_resolution(tmp_path):
    index = read_source(SHARED_DATA / "ham10000").select(slice(0, 12))
    summary = cut_patches(index, tmp_path / "p", PatchRule(size=32, margin=4), progress=False)
    assert summary.read.startswith("native")
    lesion = LesionDataset.load(tmp_path / "p" / "lesion")
    healthy = LesionDataset.load(tmp_path / "p" / "healthy")
    assert len(lesion) > 0 and len(healthy) > 0
    records = {r.image_id: r for r in index.records}
    # groups are HAM10000's lesion ids, and a patch is a crop of the 200x150 JPEG with its 600x450 mask fitted
    for data in (healthy, lesion):
        k = len(data) // 2
        image_id, where = data.ids[k].split("@")
        y, x = (int(v) for v in where[1:].split("x"))
        rec = records[image_id]
        assert data.groups[k] == rec.group and rec.group != rec.image_id
        image = load_image(rec.image)
        assert image.shape == (150, 200, 3)
        mask = fit_mask_to_image(load_mask(rec.lesion_mask), image.shape)
        assert np.array_equal(data.images[k], image[y:y + 32, x:x + 32])
        assert np.array_equal(data.lesion_masks[k], mask[y:y + 32, x:x + 32])
