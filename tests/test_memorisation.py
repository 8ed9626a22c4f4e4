"""Tests for the memorisation audit (dermsynth.metrics.memorisation): SSIM, nearest neighbours, flagging."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from skimage.metrics import structural_similarity

from dermsynth.data.phantom import generate_phantom
from dermsynth.errors import DermsynthError
from dermsynth.metrics.memorisation import (
    AuditResult,
    memorisation_audit,
    nearest_neighbours,
    plot_nearest_neighbours,
    ssim,
)

SIZE = 32


def sk_ssim(a: np.ndarray, b: np.ndarray) -> float:
    return structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                 data_range=255, channel_axis=-1)


def nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).permute(0, 3, 1, 2)


def brute_mse(query: np.ndarray, reference: np.ndarray) -> np.ndarray:
    q, r = query.reshape(len(query), -1).astype(np.float64), reference.reshape(len(reference), -1).astype(np.float64)
    return cdist(q, r, "sqeuclidean") / q.shape[1]


@pytest.fixture(scope="module")
def sets():
    """Training images, a held-out calibration set, a held-out test set, and generated images with plants."""
    train = generate_phantom(240, SIZE, seed=1).images
    calib = generate_phantom(100, SIZE, seed=2).images
    test = generate_phantom(60, SIZE, seed=3).images
    gen = generate_phantom(40, SIZE, seed=4).images.copy()
    rng = np.random.default_rng(0)
    noisy = lambda img, amp: np.clip(img.astype(np.int16) + rng.integers(-amp, amp + 1, img.shape), 0, 255)  # noqa: E731
    plants = {3: 5, 10: 17, 20: 30, 30: 60}  # generated index -> training index copied
    gen[3], gen[10] = train[5], train[17]  # exact copies
    gen[20], gen[30] = noisy(train[30], 2), noisy(train[60], 6)  # near copies
    shifted = {25: 50}
    gen[25] = np.roll(train[50], 1, axis=1)  # a 1-px horizontal shift
    return train, calib, test, gen, plants, shifted


# ---------------------------------------------------------------------------------------
# SSIM
# ---------------------------------------------------------------------------------------


def test_ssim_matches_skimage_random_and_phantom():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (3, 24, 30, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (3, 24, 30, 3), dtype=np.uint8)
    ph = generate_phantom(6, 64, seed=7).images
    near = np.clip(ph[:3].astype(np.int16) + rng.integers(-4, 5, ph[:3].shape), 0, 255).astype(np.uint8)
    for x, y in [(a, b), (ph[:3], ph[3:]), (ph[:3], near), (a, a)]:
        got = ssim(nchw(x), nchw(y)).numpy()
        ref = np.array([sk_ssim(x[i], y[i]) for i in range(len(x))])
        np.testing.assert_allclose(got, ref, atol=1e-5)
    with pytest.raises(DermsynthError):
        ssim(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))


# ---------------------------------------------------------------------------------------
# Nearest neighbours
# ---------------------------------------------------------------------------------------


def test_mse_neighbours_match_brute_force(sets):
    train, calib = sets[0], sets[1]
    idx, score = nearest_neighbours(calib[:30], train, "mse", k=4, device="cpu", chunk=7)
    full = brute_mse(calib[:30], train)
    np.testing.assert_array_equal(idx, np.argsort(full, axis=1, kind="stable")[:, :4])
    np.testing.assert_allclose(score, np.sort(full, axis=1)[:, :4], rtol=1e-12)


def test_ssim_neighbours_match_skimage_brute_force(sets):
    train, calib = sets[0][:25], sets[1][:5]
    ref = np.array([[sk_ssim(q, t) for t in train] for q in calib])
    idx, score = nearest_neighbours(calib, train, "ssim", k=3, device="cpu", ssim_candidates=None)
    np.testing.assert_array_equal(idx, np.argsort(-ref, axis=1, kind="stable")[:, :3])
    np.testing.assert_allclose(score, -np.sort(-ref, axis=1)[:, :3], atol=1e-5)
    idx10, _ = nearest_neighbours(calib, train, "ssim", k=1, device="cpu", ssim_candidates=10)  # MSE pre-selection
    assert (ref[np.arange(5), idx10[:, 0]] >= np.sort(ref, axis=1)[:, -3]).all()  # still among the top 3


def test_feature_neighbours_match_cdist():
    rng = np.random.default_rng(1)
    qf, rf = rng.normal(size=(20, 16)), rng.normal(size=(50, 16))
    idx, dist = nearest_neighbours(None, None, "feature", k=2, query_features=qf, reference_features=rf, device="cpu")
    full = cdist(qf, rf)
    np.testing.assert_array_equal(idx, np.argsort(full, axis=1)[:, :2])
    np.testing.assert_allclose(dist, np.sort(full, axis=1)[:, :2], rtol=1e-4)


def test_max_shift_finds_shifted_copy(sets):
    train, gen, shifted = sets[0], sets[3], sets[5]
    (g, t), = shifted.items()
    plain, _ = nearest_neighbours(gen[g : g + 1], train, "mse", k=1, device="cpu")
    assert plain[0, 0] != t  # pixel MSE is blind to a 1-px shift ...
    idx, score = nearest_neighbours(gen[g : g + 1], train, "mse", k=1, device="cpu", max_shift=1)
    assert idx[0, 0] == t and score[0, 0] == 0.0  # ... the shift-tolerant comparison is not
    idx, score = nearest_neighbours(gen[g : g + 1], train, "ssim", k=1, device="cpu", max_shift=1, ssim_candidates=10)
    assert idx[0, 0] == t and score[0, 0] == pytest.approx(1.0)


def test_nearest_neighbours_bad_input(sets):
    train = sets[0]
    with pytest.raises(DermsynthError):
        nearest_neighbours(train[:2], train, "l1", device="cpu")
    with pytest.raises(DermsynthError):
        nearest_neighbours(train[:2], train[:2], "mse", k=3, device="cpu")
    with pytest.raises(DermsynthError):
        nearest_neighbours(train[:2], generate_phantom(2, 16, seed=0).images, "mse", device="cpu")
    with pytest.raises(DermsynthError):
        nearest_neighbours(train[:2].astype(np.float32), train, "mse", device="cpu")
    with pytest.raises(DermsynthError):
        nearest_neighbours(train[:2], train, "feature", device="cpu")
    with pytest.raises(DermsynthError):
        nearest_neighbours(train[:2], train, "ssim", max_shift=11, device="cpu")


# ---------------------------------------------------------------------------------------
# The audit
# ---------------------------------------------------------------------------------------


def test_audit_flags_planted_copies_mse(sets):
    train, calib, test, gen, plants, _ = sets
    res = memorisation_audit(gen, train, calib, metric="mse", k=3, device="cpu")
    assert isinstance(res, AuditResult) and res.indices.shape == (len(gen), 3)
    t = res.table
    assert t.loc[list(plants), "flagged"].all()
    assert (t.loc[list(plants), "nn_train"].to_numpy() == list(plants.values())).all()
    assert t.loc[[3, 10], "exact_duplicate"].all() and (t.loc[[3, 10], "score"] == 0).all()
    assert not t.drop(index=[3, 10])["exact_duplicate"].any()
    assert set(res.most_similar(len(plants))) == set(plants)  # the planted copies are the closest of all
    assert t["flagged"].sum() <= len(plants) + 1
    s = res.as_dict()
    assert s["n_exact_duplicates"] == 2 and s["n_heldout"] == len(calib) and s["percentile"] == 1.0
    assert s["heldout_fraction_below_threshold"] <= 0.01
    assert s["median_generated_distance"] > 20 * t.loc[list(plants), "distance"].max()
    # genuinely new images (a second held-out set) against the calibrated threshold: none flagged
    fresh = memorisation_audit(test, train, threshold=res.threshold, metric="mse", device="cpu")
    assert fresh.table["flagged"].sum() == 0 and fresh.summary["percentile"] is None
    assert fresh.table["distance"].min() > 1.3 * res.threshold


def test_audit_ssim_and_shift_tolerance(sets):
    train, calib, _, gen, plants, shifted = sets
    res = memorisation_audit(gen, train, calib[:40], metric="ssim", k=2, device="cpu", ssim_candidates=8, max_shift=1)
    closest = set(plants) | set(shifted)
    assert set(res.most_similar(len(closest))) == closest
    assert res.table.loc[list(closest), "flagged"].all()
    assert (res.table["distance"] == 1 - res.table["score"]).all()


def test_audit_with_features_and_explicit_threshold(sets):
    train, calib, _, gen, plants, _ = sets
    rng = np.random.default_rng(2)
    proj = rng.normal(size=(SIZE * SIZE * 3, 24)) / 100  # a stand-in "feature extractor"
    feats = lambda x: x.reshape(len(x), -1).astype(np.float64) @ proj  # noqa: E731
    res = memorisation_audit(gen, train, calib, metric="feature", generated_features=feats(gen),
                             train_features=feats(train), heldout_features=feats(calib), device="cpu")
    assert res.table.loc[list(plants), "flagged"].all()
    strict = memorisation_audit(gen, train, metric="feature", threshold=0.0, generated_features=feats(gen),
                                train_features=feats(train), device="cpu")
    assert set(np.flatnonzero(strict.table["flagged"])) == {3, 10}  # only the byte-identical copies
    with pytest.raises(DermsynthError):
        memorisation_audit(gen, train, device="cpu")  # neither held-out images nor a threshold


def test_plot_nearest_neighbours_writes_file(sets, tmp_path):
    train, calib, _, gen, _, _ = sets
    res = memorisation_audit(gen, train, calib[:30], k=3, device="cpu")
    out = plot_nearest_neighbours(gen, train, res.indices, tmp_path / "nn" / "nn.png", n=5, scores=res.scores,
                                  rows=res.most_similar(5), metric=res.metric)
    assert out.is_file() and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    with pytest.raises(DermsynthError):
        plot_nearest_neighbours(gen, train, res.indices[:3], tmp_path / "bad.png")
