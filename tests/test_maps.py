"""Semantic and instance maps (dermsynth.data.maps): coding, boundaries, superpixels, checks, edits, map folders."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import SHARED_DATA, needs_shared
from dermsynth.data.dataset import ATTRIBUTES, LesionDataset
from dermsynth.data.maps import (SEMANTIC_CHANNELS, SUPERPIXEL_AREA, LesionMap, boundary_fraction, slic_segments, add_attribute, disc, flip_map, instance_edges,
                                 maps_dataset, maps_of, masked_subset, parse_edit, read_maps, remove_attribute,
                                 rotate_map, scale_map, semantic_channels, semantic_codes, superpixels,
                                 unpack_semantic, write_maps)
from dermsynth.data.phantom import generate_phantom
from dermsynth.data.prepare import load_dataset, prepare
from dermsynth.data.readers import DataWarning
from dermsynth.errors import DataError
from dermsynth.data.batch import batch_from_dataset
from dermsynth.train.minibatches import Minibatches


@pytest.fixture(scope="module")
def phantom():
    data = generate_phantom(n=24, size=32, seed=3)
    data.instance_maps = superpixels(data.images, n_segments=200)  # small superpixels: tests of SLIC itself
    return data


def test_semantic_channels_are_the_lesion_and_its_attributes_multi_hot(phantom):
    channels = unpack_semantic(torch.from_numpy(semantic_codes(phantom))).numpy()
    assert channels.shape == (24, len(SEMANTIC_CHANNELS), 32, 32) and SEMANTIC_CHANNELS[0] == "lesion"
    lesion = phantom.lesion_masks.astype(bool)
    np.testing.assert_array_equal(channels[:, 0], lesion)
    for k, name in enumerate(ATTRIBUTES, start=1):
        expected = phantom.attribute_masks[:, phantom.attribute_names.index(name)].astype(bool) & lesion
        np.testing.assert_array_equal(channels[:, k], expected, err_msg=name)
    assert channels[:, 1:].sum() > 0  # the phantom draws attributes: the test is not vacuous
    overlap = (channels[:, 1:].sum(1) > 1).sum()
    assert overlap >= 0  # overlaps are representable (multi-hot), nothing is dropped by a priority


def test_the_batch_fields_come_from_the_sampler_with_the_right_shapes(phantom):
    sampler = Minibatches(phantom, 8, 0, torch.device("cpu"), needs=("images", "semantic", "instance"))
    batch = sampler.next()
    assert batch.semantic.shape == (8, 6, 32, 32) and batch.instance.shape == (8, 1, 32, 32)
    assert set(batch.instance.unique().tolist()) <= {0.0, 1.0} and batch.instance.mean() > 0.05


def test_instance_edges_match_a_pixel_loop():
    ids = torch.randint(0, 4, (2, 9, 7), generator=torch.Generator().manual_seed(0))
    edges = instance_edges(ids)[:, 0].numpy()
    ref = np.zeros((2, 9, 7))
    for b in range(2):
        for y in range(9):
            for x in range(7):
                for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
                    yy, xx = y + dy, x + dx
                    if 0 <= yy < 9 and 0 <= xx < 7 and ids[b, yy, xx] != ids[b, y, x]:
                        ref[b, y, x] = 1
    np.testing.assert_array_equal(edges, ref)


def test_superpixels_are_slic_ids_that_follow_the_image(phantom):
    ids = phantom.instance_maps
    assert ids.dtype == np.int32 and ids.shape == (24, 32, 32) and ids.min() == 0
    counts = [len(np.unique(i)) for i in ids]
    assert 20 < np.median(counts) < 400
    # superpixels follow colour: the lesion border cuts few of them (each mostly lesion or mostly skin)
    purity = []
    for i in range(len(ids)):
        les = phantom.lesion_masks[i].astype(bool)
        for s in np.unique(ids[i]):
            frac = les[ids[i] == s].mean()
            purity.append(max(frac, 1 - frac))
    assert np.mean(purity) > 0.9


def test_prepare_caches_superpixels_once_and_they_load_back(tmp_path):
    src = tmp_path / "src" / "a"
    src.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(src / f"img{i}.png")
        Image.fromarray(np.full((20, 24), 255, np.uint8)).save(src / f"img{i}_segmentation.png")
    (tmp_path / "src" / "b").mkdir()
    Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(tmp_path / "src" / "b" / "x.png")
    Image.fromarray(np.full((20, 24), 255, np.uint8)).save(tmp_path / "src" / "b" / "x_segmentation.png")
    plain = prepare(tmp_path / "src", 16, out=tmp_path / "cache", progress=False)
    assert plain.instance_maps is None
    data = prepare(tmp_path / "src", 16, out=tmp_path / "cache", progress=False, superpixels=True)
    assert data.instance_maps is not None and data.instance_maps.shape == (4, 16, 16)
    np.testing.assert_array_equal(data.instance_maps, superpixels(np.asarray(data.images)))
    again = LesionDataset.load(tmp_path / "cache")
    np.testing.assert_array_equal(again.instance_maps, data.instance_maps)
    np.testing.assert_array_equal(again.subset([1, 2]).instance_maps, data.instance_maps[[1, 2]])
    meta = json.loads((tmp_path / "cache" / "meta.json").read_text())["superpixels"]
    assert meta["n_segments"] == slic_segments(16) and meta["superpixel_area"] == SUPERPIXEL_AREA
    assert meta["boundary_fraction"] == pytest.approx(boundary_fraction(data.instance_maps), abs=1e-4)


def test_superpixel_count_scales_with_the_image_area():
    assert [slic_segments(s) for s in (32, 64, 128, 256)] == [1, 5, 21, 84]  # 784 px each, at least one
    assert slic_segments(64, area=16) == 256
    with pytest.raises(DataError, match="superpixel-area"):
        slic_segments(64, area=0)
    counts = {}
    for size in (64, 128):
        images = generate_phantom(n=4, size=size, seed=1).images
        counts[size] = np.mean([len(np.unique(i)) for i in superpixels(images)])
    # SLIC's grid rounds the target count, but the superpixels keep about one size at both resolutions
    assert 2 <= counts[64] <= 12 and 10 <= counts[128] <= 40 and counts[128] > 2 * counts[64]


def test_boundary_fraction_is_the_share_of_pix2pixhd_edge_pixels():
    halves = np.zeros((4, 4), np.int32)
    halves[:, 2:] = 1
    assert boundary_fraction(halves) == 0.5  # columns 1 and 2 touch the other half
    assert boundary_fraction(np.zeros((2, 5, 5), np.int32)) == 0.0
    checker = (np.indices((6, 6)).sum(0) % 2).astype(np.int32)
    assert boundary_fraction(checker) == 1.0


def test_prepare_warns_about_edge_only_instance_maps_and_recomputes_on_new_settings(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(src / f"img{i}.png")
    with pytest.warns(DataWarning, match="superpixel boundary"):
        tiny = prepare(src, 16, out=tmp_path / "cache", progress=False, superpixels=True, superpixel_area=2)
    meta = json.loads((tmp_path / "cache" / "meta.json").read_text())["superpixels"]
    assert meta["boundary_fraction"] > 0.5 and meta["n_segments"] == 128
    coarse = prepare(src, 16, out=tmp_path / "cache", progress=False, superpixels=True, superpixel_area=128)
    assert json.loads((tmp_path / "cache" / "meta.json").read_text())["superpixels"]["n_segments"] == 2
    assert len(np.unique(coarse.instance_maps[0])) < len(np.unique(tiny.instance_maps[0]))


def _partly_masked(n=6):
    data = generate_phantom(n=n, size=16)
    data.lesion_masks[[1, 4]] = 0
    return data


def test_images_without_a_lesion_mask_are_an_error_naming_the_option_or_skipped_with_a_count():
    data = _partly_masked()
    with pytest.raises(DataError, match=r"2 of 6 images have no lesion mask .*--skip-unmasked"):
        semantic_codes(data)
    with pytest.raises(DataError, match="--skip-unmasked"):
        masked_subset(data, skip_unmasked=False)
    with pytest.warns(UserWarning, match="skipped 2 of 6"):
        kept = masked_subset(data, skip_unmasked=True)
    assert kept.ids == [data.ids[i] for i in (0, 2, 3, 5)]
    assert semantic_codes(kept).shape == (4, 16, 16)
    no_masks = LesionDataset(images=data.images, labels=data.labels, class_names=data.class_names, ids=data.ids)
    with pytest.raises(DataError, match="none of the 6 images has a lesion mask"):
        masked_subset(no_masks, skip_unmasked=True)


def test_images_without_attribute_masks_get_the_lesion_channel_only():
    data = generate_phantom(n=4, size=16)
    lesion_only = LesionDataset(images=data.images, labels=data.labels, class_names=data.class_names, ids=data.ids,
                                lesion_masks=data.lesion_masks)
    assert semantic_channels(lesion_only) == 1 and semantic_channels(data) == 6
    np.testing.assert_array_equal(semantic_codes(lesion_only), data.lesion_masks)
    # the registry's channel count (models do not import the data layer) agrees
    from dermsynth.models import MODELS
    from dermsynth.train.config import TrainConfig
    cfg = TrainConfig(model="pix2pixhd", size=16, g_downsample=1).resolve()
    for d in (lesion_only, data):
        assert MODELS["pix2pixhd"].extra_options(cfg, d)["semantic_nc"] == semantic_channels(d)


def _square_map():
    codes = np.zeros((16, 16), np.uint8)
    codes[4:12, 2:10] = 1
    codes[5:8, 3:6] |= 2 | 32
    return LesionMap(codes, np.arange(256, dtype=np.int32).reshape(16, 16), "m0", "nevus")


def test_map_edits_flip_rotate_scale_add_remove():
    m = _square_map()
    np.testing.assert_array_equal(flip_map(flip_map(m)).codes, m.codes)
    np.testing.assert_array_equal(flip_map(m).codes, m.codes[:, ::-1])
    np.testing.assert_array_equal(flip_map(m, horizontal=False).instance, m.instance[::-1])
    np.testing.assert_array_equal(rotate_map(m, 90).codes, np.rot90(m.codes))  # counter-clockwise on screen
    np.testing.assert_array_equal(rotate_map(m, 90).instance, np.rot90(m.instance))
    np.testing.assert_array_equal(rotate_map(m, 360).codes, m.codes)
    np.testing.assert_array_equal(scale_map(m, 1.0).codes, m.codes)
    assert (scale_map(m, 0.5).codes & 1).sum() == pytest.approx((m.codes & 1).sum() / 4, rel=0.3)
    assert (scale_map(m, 0.5).instance == 256).sum() > 0  # the frame outside the old map: one new superpixel
    region = disc(16, 0.5, 0.5, 0.5)
    added = add_attribute(m, "streaks", region)
    assert ((added.codes & 8) > 0).sum() == ((m.codes & 1) & region).sum()  # only inside the lesion
    assert not ((added.codes & 8) > 0)[m.codes == 0].any()
    removed = remove_attribute(m, "globules")
    assert not (removed.codes & 32).any() and (removed.codes & 2).sum() == (m.codes & 2).sum()
    np.testing.assert_array_equal(parse_edit("add:streaks:0.5,0.5,0.5")(m).codes, added.codes)
    np.testing.assert_array_equal(parse_edit("rotate:90")(m).codes, rotate_map(m, 90).codes)
    with pytest.raises(DataError, match="--edit 'twist:3'"):
        parse_edit("twist:3")
    with pytest.raises(DataError, match="unknown attribute"):
        parse_edit("remove:freckles")


def test_maps_folder_round_trip_and_bad_maps_are_one_clear_error(tmp_path):
    m = _square_map()
    write_maps([m, replace(flip_map(m), map_id="m1")], tmp_path / "ok")
    back = read_maps(tmp_path / "ok", 16)
    np.testing.assert_array_equal(back[0].codes, m.codes)
    np.testing.assert_array_equal(back[0].instance, m.instance)
    assert back[0].class_name == "nevus"
    ds = maps_dataset(back)
    np.testing.assert_array_equal(semantic_codes(ds)[0], m.codes)
    np.testing.assert_array_equal(batch_from_dataset(ds, [0], ["semantic"]).semantic[0].numpy(),
                                  unpack_semantic(torch.from_numpy(m.codes[None]))[0].numpy())

    with pytest.raises(DataError, match=r"map is 16x16 but the model makes 32x32"):
        read_maps(tmp_path / "ok", 32)
    other = tmp_path / "aspect"
    other.mkdir()
    Image.fromarray(np.ones((16, 12), np.uint8)).save(other / "a_semantic.png")
    with pytest.raises(DataError, match=r"a_semantic.png: map is 12x16"):
        read_maps(other, 16)
    bad = tmp_path / "range"
    bad.mkdir()
    Image.fromarray(np.full((16, 16), 64, np.uint8)).save(bad / "a_semantic.png")
    with pytest.raises(DataError, match="label value 64 out of range"):
        read_maps(bad, 16)
    Image.fromarray(np.full((16, 16), 2, np.uint8)).save(bad / "a_semantic.png")  # an attribute outside a lesion
    with pytest.raises(DataError, match="label value 2 out of range"):
        read_maps(bad, 16)
    orphan = tmp_path / "orphan"
    orphan.mkdir()
    Image.fromarray(np.zeros((16, 16), np.uint16)).save(orphan / "a_instance.png")
    with pytest.raises(DataError, match="an instance map without a semantic map"):
        read_maps(orphan, 16)


def test_maps_of_a_dataset_carry_id_class_and_superpixels(phantom):
    maps = maps_of(phantom, [2, 5])
    assert [m.map_id for m in maps] == [phantom.ids[2], phantom.ids[5]]
    assert maps[1].class_name == phantom.class_names[phantom.labels[5]]
    np.testing.assert_array_equal(maps[0].instance, phantom.instance_maps[2])


@needs_shared
def test_attribute_path_on_the_six_real_isic2018_task2_samples():
    data = load_dataset(SHARED_DATA / "isic2018_task2_sample", size=32, progress=False)
    assert len(data) == 6 and data.attribute_masks is not None and semantic_channels(data) == 6
    channels = unpack_semantic(torch.from_numpy(semantic_codes(data))).numpy()
    pn = ATTRIBUTES.index("pigment_network") + 1
    assert channels[:, pn].sum() > 0  # pigment network annotated on these samples
    assert not (channels[:, pn].astype(bool) & ~channels[:, 0].astype(bool)).any()  # inside the lesion only
    np.testing.assert_array_equal(channels[:, 0], data.lesion_masks)
    others = [k for k in range(1, 6) if k != pn]
    assert channels[:, others].sum() == 0  # only pigment-network masks are in the sample


def _isic_superpixel_png(ids: np.ndarray, path) -> None:
    """Write ids as ISIC 2018 Task 2 does: R = id & 255, G = (id >> 8) & 255, B = id >> 16."""
    rgb = np.stack([ids & 255, (ids >> 8) & 255, ids >> 16], axis=-1).astype(np.uint8)
    Image.fromarray(rgb).save(path)


def test_prepare_reads_isics_own_superpixel_files_instead_of_slic(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    rows, cols = np.indices((30, 42))
    expected = []
    for i in range(3):
        # 42x30: the centre square is columns 6..35; ids constant on 3x3 blocks there, over 2^8 and 2^16
        ids = ((rows // 3) + (((cols - 6) // 3) << 8) + ((i + 1) << 16)).astype(np.int32)
        Image.fromarray(rng.integers(0, 255, (30, 42, 3), dtype=np.uint8)).save(src / f"ISIC_{i}.jpg")
        _isic_superpixel_png(ids, src / f"ISIC_{i}_superpixels.png")
        expected.append(ids[:, 6:36][::3, ::3])
    data = prepare(src, 10, out=tmp_path / "cache", progress=False)
    assert len(data) == 3  # the superpixel files are not images
    np.testing.assert_array_equal(data.instance_maps, np.stack(expected))
    meta = json.loads((tmp_path / "cache" / "meta.json").read_text())
    assert meta["has_instance_maps"] and meta["superpixels"]["method"] == "isic-superpixels-files"
    assert meta["superpixels"]["boundary_fraction"] == pytest.approx(boundary_fraction(np.stack(expected)), abs=1e-4)
    # asking for superpixels keeps ISIC's (no SLIC over them)
    again = prepare(src, 10, out=tmp_path / "cache", progress=False, superpixels=True)
    np.testing.assert_array_equal(again.instance_maps, np.stack(expected))
    # a source where only some images have the file: SLIC, with a warning
    (src / "ISIC_2_superpixels.png").unlink()
    with pytest.warns(DataWarning, match="only 2 of 3 images have an <id>_superpixels.png"):
        slic = prepare(src, 10, out=tmp_path / "cache2", progress=False, superpixels=True)
    assert json.loads((tmp_path / "cache2" / "meta.json").read_text())["superpixels"]["method"] == \
        "skimage.segmentation.slic"
    np.testing.assert_array_equal(slic.instance_maps, superpixels(np.asarray(slic.images)))
