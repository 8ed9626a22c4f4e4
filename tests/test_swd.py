"""Tests for the Laplacian-pyramid SWD (dermsynth.metrics.swd).

The torch implementation is checked against an independent plain NumPy + scipy.ndimage
port of the reference (tkarras/progressive_growing_of_gans, metrics/sliced_wasserstein.py)
written below, then for the behaviour one expects of the metric on synthetic images.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.ndimage
import torch
from _synthetic import add_noise, blur, make_lesions

from dermsynth.errors import DermsynthError
from dermsynth.metrics.swd import (
    SWDResult,
    extract_descriptors,
    gaussian_pyramid_filter,
    laplacian_pyramid,
    normalize_descriptors,
    pyr_down,
    pyr_up,
    pyramid_resolutions,
    sliced_wasserstein_distance,
    swd,
    swd_lower_bound,
)

# ---------------------------------------------------------------------------------------
# NumPy reference (a port of the published algorithm; random draws passed in explicitly)
# ---------------------------------------------------------------------------------------

NP_GAUSS = np.float32([[1, 4, 6, 4, 1], [4, 16, 24, 16, 4], [6, 24, 36, 24, 6], [4, 16, 24, 16, 4], [1, 4, 6, 4, 1]]) / 256.0


def np_pyr_down(mb):
    return scipy.ndimage.convolve(mb, NP_GAUSS[np.newaxis, np.newaxis, :, :], mode="mirror")[:, :, ::2, ::2]


def np_pyr_up(mb):
    s = mb.shape
    res = np.zeros((s[0], s[1], s[2] * 2, s[3] * 2), mb.dtype)
    res[:, :, ::2, ::2] = mb
    return scipy.ndimage.convolve(res, NP_GAUSS[np.newaxis, np.newaxis, :, :] * 4.0, mode="mirror")


def np_laplacian_pyramid(mb, num_levels):
    pyramid = [np.float32(mb)]
    for _ in range(1, num_levels):
        pyramid.append(np_pyr_down(pyramid[-1]))
        pyramid[-2] -= np_pyr_up(pyramid[-1])
    return pyramid


def np_descriptors(mb, nhood_size, nhoods_per_image, xs, ys):
    """Reference ogrid / flat indexing; ``xs``/``ys``: the centres the reference would draw."""
    s = mb.shape
    n = nhoods_per_image * s[0]
    h = nhood_size // 2
    nhood, chan, x, y = np.ogrid[0:n, 0:3, -h : h + 1, -h : h + 1]
    img = nhood // nhoods_per_image
    x = x + np.asarray(xs).reshape(n, 1, 1, 1)
    y = y + np.asarray(ys).reshape(n, 1, 1, 1)
    idx = ((img * s[1] + chan) * s[2] + y) * s[3] + x
    return mb.flat[idx]


def np_finalize(desc):
    desc = np.concatenate(desc, axis=0) if isinstance(desc, list) else desc.copy()
    desc -= np.mean(desc, axis=(0, 2, 3), keepdims=True)
    desc /= np.std(desc, axis=(0, 2, 3), keepdims=True)
    return desc.reshape(desc.shape[0], -1)


def np_sliced_wasserstein(a, b, raw_dirs):
    """``raw_dirs``: list of (D, K) float64 Gaussian draws, normalised here as the reference."""
    results = []
    for dirs in raw_dirs:
        dirs = dirs / np.sqrt(np.sum(np.square(dirs), axis=0, keepdims=True))
        dirs = dirs.astype(np.float32)
        proj_a = np.sort(np.matmul(a, dirs), axis=0)
        proj_b = np.sort(np.matmul(b, dirs), axis=0)
        results.append(np.mean(np.abs(proj_a - proj_b)))
    return np.mean(results)


def np_swd_x1e3(real_nchw, fake_nchw, centres, raw_dirs, nhoods=128, nhood_size=7):
    """Full reference SWD. centres[set][level] = (xs, ys); raw_dirs[level] = list of (D, K)."""
    n_levels = len(raw_dirs)
    descs = []
    for s, mb in enumerate([real_nchw, fake_nchw]):
        pyr = np_laplacian_pyramid(mb, n_levels)
        descs.append([np_finalize(np_descriptors(lvl, nhood_size, nhoods, *centres[s][i])) for i, lvl in enumerate(pyr)])
    return [1e3 * np_sliced_wasserstein(descs[0][i], descs[1][i], raw_dirs[i]) for i in range(n_levels)]


def random_uint8(n, size, seed, layout="nchw"):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8)
    return x if layout == "nchw" else np.ascontiguousarray(x.transpose(0, 2, 3, 1))


# ---------------------------------------------------------------------------------------
# Stage-by-stage agreement with the NumPy reference
# ---------------------------------------------------------------------------------------


def test_filter_is_the_binomial_5x5():
    np.testing.assert_array_equal(gaussian_pyramid_filter.numpy(), NP_GAUSS)


@pytest.mark.parametrize("size", [64, 37])
def test_pyr_down_matches_scipy_mirror(size):
    x = np.float32(random_uint8(3, size, seed=1))
    got = pyr_down(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, np_pyr_down(x), rtol=1e-6, atol=1e-4)


def test_pyr_up_matches_scipy_mirror():
    x = np.float32(random_uint8(3, 16, seed=2))
    np.testing.assert_allclose(pyr_up(torch.from_numpy(x)).numpy(), np_pyr_up(x), rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("size", [16, 35])
def test_pyr_up_and_down_keep_constants_at_edges(size):
    """Wrong border handling (zero padding, edge repeat on zero-inserted data) breaks this."""
    x = torch.full((1, 3, size, size), 100.0)
    down = pyr_down(x)
    assert down.shape[-1] == (size + 1) // 2
    torch.testing.assert_close(down, torch.full_like(down, 100.0))
    up = pyr_up(down, (size, size))
    assert up.shape[-2:] == (size, size)
    torch.testing.assert_close(up, torch.full_like(up, 100.0))


@pytest.mark.parametrize(("size", "levels"), [(64, 3), (48, 2)])
def test_laplacian_pyramid_matches_reference(size, levels):
    x = random_uint8(4, size, seed=3)
    got = laplacian_pyramid(torch.from_numpy(x).float(), levels)
    want = np_laplacian_pyramid(x, levels)
    assert [g.shape for g in got] == [torch.Size(w.shape) for w in want]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w, rtol=1e-5, atol=2e-3)
    # the coarsest level is the Gaussian low-pass, not a band-pass: it keeps the mean
    assert abs(float(got[-1].mean()) - float(x.mean())) < 2.0


def test_pyramid_resolutions_follow_reference_rule():
    assert pyramid_resolutions(64) == [64, 32, 16]
    assert pyramid_resolutions(256) == [256, 128, 64, 32, 16]
    assert pyramid_resolutions(48) == [48, 24]
    assert pyramid_resolutions(16) == [16]
    with pytest.raises(DermsynthError):
        pyramid_resolutions(15)


def test_descriptors_match_reference_flat_indexing():
    x = np.float32(random_uint8(5, 32, seed=4))
    nh, k = 9, 7
    rng = np.random.default_rng(5)
    xs = rng.integers(3, 32 - 3, size=5 * nh)
    ys = rng.integers(3, 32 - 3, size=5 * nh)
    got = extract_descriptors(torch.from_numpy(x), nh, k, ys=torch.from_numpy(ys), xs=torch.from_numpy(xs))
    want = np_descriptors(x, k, nh, xs, ys)
    assert got.shape == (5 * nh, 3, k, k)
    np.testing.assert_array_equal(got.numpy(), want)
    # image i owns rows i*nh..; the reference layout is desc[n, c, dx, dy] (patch transposed)
    n, img = 2 * nh + 4, 2
    np.testing.assert_array_equal(got[n, 1].numpy(), x[img, 1, ys[n] - 3 : ys[n] + 4, xs[n] - 3 : xs[n] + 4].T)


def test_descriptors_reject_out_of_range_centres():
    x = torch.zeros(1, 3, 16, 16)
    with pytest.raises(DermsynthError):
        extract_descriptors(x, 1, 7, ys=torch.tensor([2]), xs=torch.tensor([8]))
    with pytest.raises(DermsynthError):
        extract_descriptors(x, 1, 7, ys=torch.tensor([8]), xs=torch.tensor([13]))


def test_random_centres_are_seeded_and_cover_the_valid_range():
    x = torch.arange(2 * 3 * 16 * 16, dtype=torch.float32).reshape(2, 3, 16, 16)
    a = extract_descriptors(x, 500, 7, seed=3)
    b = extract_descriptors(x, 500, 7, seed=3)
    c = extract_descriptors(x, 500, 7, seed=4)
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c)
    centres = a[:, 0, 3, 3]  # the centre pixel value encodes its position
    rows, cols = (centres % 256) // 16, centres % 16
    assert rows.min() == 3 and rows.max() == 12 and cols.min() == 3 and cols.max() == 12


def test_normalize_matches_reference_and_does_not_mutate():
    rng = np.random.default_rng(6)
    desc = (rng.normal(0, 1, (300, 3, 7, 7)) * [[[[5.0]], [[20.0]], [[0.5]]]] + 80).astype(np.float32)
    t = torch.from_numpy(desc.copy())
    got = normalize_descriptors(t)
    np.testing.assert_array_equal(t.numpy(), desc)
    assert got.shape == (300, 147)
    # channel 2 (mean 80, std 0.5) is hard for float32: numpy's own float32 mean is off by
    # ~2e-5 std here, so compare loosely with the port and tightly with a float64 version
    np.testing.assert_allclose(got.numpy(), np_finalize(desc), atol=1e-4)
    d64 = desc.astype(np.float64)
    exact = (d64 - d64.mean(axis=(0, 2, 3), keepdims=True)) / d64.std(axis=(0, 2, 3), keepdims=True)
    np.testing.assert_allclose(got.numpy(), exact.reshape(300, -1), atol=1e-5)


def test_sliced_wasserstein_matches_reference():
    rng = np.random.default_rng(7)
    a = rng.normal(0, 1, (500, 147)).astype(np.float32)
    b = (rng.normal(0.2, 1.3, (500, 147))).astype(np.float32)
    raw = [rng.standard_normal((147, 32)) for _ in range(3)]
    got = sliced_wasserstein_distance(torch.from_numpy(a), torch.from_numpy(b), directions=np.stack(raw))
    assert got == pytest.approx(np_sliced_wasserstein(a, b, raw), rel=1e-5)
    assert sliced_wasserstein_distance(torch.from_numpy(a), torch.from_numpy(a)) == 0.0
    with pytest.raises(DermsynthError):
        sliced_wasserstein_distance(torch.from_numpy(a), torch.from_numpy(b[:400]))


def test_full_swd_matches_reference_with_same_draws():
    """End to end: swd() vs the NumPy port fed the same draws in the documented RNG order."""
    n, size, nh = 24, 64, 128
    real = random_uint8(n, size, seed=8)
    fake = np.clip(real.astype(np.int16) + np.random.default_rng(9).integers(-40, 41, real.shape), 0, 255).astype(np.uint8)
    sizes = [64, 32, 16]
    g = torch.Generator().manual_seed(11)
    centres = [[], []]
    for s in range(2):
        for res in sizes:
            xs = torch.randint(3, res - 3, (n * nh,), generator=g).numpy()
            ys = torch.randint(3, res - 3, (n * nh,), generator=g).numpy()
            centres[s].append((xs, ys))
    raw_dirs = [[torch.randn((147, 128), generator=g, dtype=torch.float64).numpy() for _ in range(4)] for _ in sizes]
    want = np_swd_x1e3(real, fake, centres, raw_dirs)

    got = swd(torch.from_numpy(real), torch.from_numpy(fake), seed=11, batch_size=10, device="cpu")
    assert got.resolutions == sizes
    assert got.n_images == n
    np.testing.assert_allclose(got.per_level, want, rtol=1e-4)
    assert got.mean == pytest.approx(np.mean(want), rel=1e-4)


def test_layouts_batching_and_memmap_agree(tmp_path):
    real = random_uint8(20, 32, seed=12, layout="nhwc")
    fake = random_uint8(20, 32, seed=13, layout="nhwc")
    mm = np.lib.format.open_memmap(tmp_path / "fake.npy", mode="w+", dtype=np.uint8, shape=fake.shape)
    mm[:] = fake
    mm.flush()
    base = swd(real, fake, seed=1, batch_size=256, device="cpu")
    torch_nchw = swd(torch.from_numpy(real).permute(0, 3, 1, 2), torch.from_numpy(fake).permute(0, 3, 1, 2), seed=1, batch_size=3)
    from_memmap = swd(real, np.load(tmp_path / "fake.npy", mmap_mode="r"), seed=1, batch_size=7)
    for other in (torch_nchw, from_memmap):
        np.testing.assert_allclose(other.per_level, base.per_level, rtol=1e-5)
    assert swd(real, fake, seed=2).mean != pytest.approx(base.mean, rel=1e-6)


def test_result_dict_table_and_progress(capsys):
    res = swd(random_uint8(6, 32, 14, "nhwc"), random_uint8(6, 32, 15, "nhwc"), nhoods_per_image=16, device="cpu",
              batch_size=2, progress=True)
    assert "SWD" in capsys.readouterr().err  # the tqdm bar
    assert isinstance(res, SWDResult)
    d = json.loads(json.dumps(res.as_dict()))
    assert d["resolutions"] == [32, 16] and d["n_images"] == 6
    assert d["mean"] == pytest.approx(np.mean(d["per_level"]))
    table = res.table()
    assert "32x32" in table and "16x16" in table and f"{res.mean:.4f}" in table


def test_odd_size_runs():
    res = swd(random_uint8(4, 35, 16, "nhwc"), random_uint8(4, 35, 17, "nhwc"), nhoods_per_image=8, device="cpu")
    assert res.resolutions == [35, 18]
    assert all(np.isfinite(res.per_level))


# ---------------------------------------------------------------------------------------
# Behaviour on synthetic "lesion" images
# ---------------------------------------------------------------------------------------

N = 200


@pytest.fixture(scope="module")
def sets():
    real = make_lesions(2 * N, seed=1)
    ref = real[:N]
    same = make_lesions(N, seed=2)
    # smaller, redder blobs and coarser-grained texture: differs at every scale. (Only a
    # stronger texture of the same grain would barely register: each level is normalised.)
    other = make_lesions(N, seed=3, radius=(2.0, 5.0), n_blobs=6, texture=10.0, grain=2.0, tint=(150.0, 90.0, 90.0))
    kw = {"seed": 0, "device": "cpu"}
    return {
        "real": real,
        "ref": ref,
        "same": same,
        "kw": kw,
        "lb": swd_lower_bound(real, **kw),
        "swd_same": swd(ref, same, **kw),
        "swd_other": swd(ref, other, **kw),
    }


def test_same_distribution_is_near_lower_bound_and_far_below_other(sets):
    lb, same, other = sets["lb"].mean, sets["swd_same"].mean, sets["swd_other"].mean
    assert sets["lb"].n_images == N == sets["swd_same"].n_images
    # sampling noise: at n=200 the 16x16 level varies by about +-30 % between draws
    assert 0.6 * lb < same < 1.5 * lb, (lb, same)
    assert other > 3 * same and other > 3 * lb, (lb, same, other)
    for lvl_same, lvl_other in zip(sets["swd_same"].per_level, sets["swd_other"].per_level):
        assert lvl_other > 2 * lvl_same


@pytest.mark.parametrize(
    ("name", "degrade", "strengths"),
    # blur sigma 0.5 changes SWD by less than the sampling noise at n=200, so start at 0.75
    [("blur", blur, [0.75, 1.5, 3.0]), ("noise", add_noise, [4.0, 8.0, 16.0])],
)
def test_swd_grows_monotonically_with_degradation(sets, name, degrade, strengths):
    lb = sets["lb"].mean
    values = [sets["swd_same"].mean] + [swd(sets["ref"], degrade(sets["same"], s), **sets["kw"]).mean for s in strengths]
    steps = np.diff(values)
    # each step up in degradation raises SWD by more than a quarter of the sampling floor
    assert np.all(steps > 0.25 * lb), (name, values, lb)
    assert values[-1] > 2 * lb, (name, values, lb)


def test_blind_spot_global_colour_cast_is_invisible(sets):
    """Documented blind spot: per-set normalisation removes a uniform per-channel shift/gain.

    A +30 red cast (no clipping: the synthetic images stay <= 225) and a 0.8 green gain
    leave SWD at the sampling floor, though the colour statistics clearly differ -- so
    SWD must be reported together with colour statistics.
    """
    same = sets["same"]
    shifted = same.copy()
    shifted[..., 0] += 30
    gained = same.copy()
    gained[..., 1] = np.round(gained[..., 1] * 0.8).astype(np.uint8)
    assert shifted[..., 0].astype(float).mean() - sets["ref"][..., 0].astype(float).mean() > 25
    assert sets["ref"][..., 1].astype(float).mean() - gained[..., 1].astype(float).mean() > 20

    base, lb = sets["swd_same"].mean, sets["lb"].mean
    cast = swd(sets["ref"], shifted, **sets["kw"]).mean
    assert cast == pytest.approx(base, rel=1e-3)  # a constant shift cancels exactly
    gain = swd(sets["ref"], gained, **sets["kw"]).mean
    assert abs(gain - base) < 0.25 * lb and gain < 1.5 * lb, (base, gain, lb)


# ---------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------


def test_count_mismatch_is_an_error_unless_subsampled():
    a, b = random_uint8(10, 16, 20, "nhwc"), random_uint8(8, 16, 21, "nhwc")
    with pytest.raises(DermsynthError, match=r"equally many real and fake images \(got 10 real, 8 fake\).*n="):
        swd(a, b, device="cpu")
    assert swd(a, b, n=8, nhoods_per_image=8, device="cpu").n_images == 8
    with pytest.raises(DermsynthError, match="n=9"):
        swd(a, b, n=9, device="cpu")


@pytest.mark.parametrize(
    ("real", "fake", "match"),
    [
        (random_uint8(4, 32, 0, "nhwc"), random_uint8(4, 16, 1, "nhwc"), "same size"),
        (random_uint8(4, 8, 0, "nhwc"), random_uint8(4, 8, 1, "nhwc"), "at least 16"),
        (np.zeros((4, 32, 16, 3), np.uint8), np.zeros((4, 32, 16, 3), np.uint8), "square"),
        (random_uint8(4, 32, 0, "nhwc").astype(np.float32), random_uint8(4, 32, 1, "nhwc"), "uint8"),
        (random_uint8(4, 32, 0, "nchw"), random_uint8(4, 32, 1, "nchw"), r"\(N, H, W, 3\)"),
        (torch.zeros(4, 32, 32, 3, dtype=torch.uint8), torch.zeros(4, 32, 32, 3, dtype=torch.uint8), r"\(N, 3, H, W\)"),
        ([[0]], [[0]], "numpy array"),
    ],
)
def test_bad_inputs_are_clear_errors(real, fake, match):
    with pytest.raises(DermsynthError, match=match):
        swd(real, fake, device="cpu")


def test_lower_bound_needs_two_images():
    with pytest.raises(DermsynthError, match="disjoint halves"):
        swd_lower_bound(random_uint8(1, 16, 0, "nhwc"), device="cpu")
    with pytest.raises(DermsynthError, match="disjoint halves"):
        swd_lower_bound(random_uint8(10, 16, 0, "nhwc"), n=6, device="cpu")
