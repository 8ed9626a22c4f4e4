"""Tests for the Fréchet distance and KID (dermsynth.metrics.frechet)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from dermsynth.errors import DermsynthError
from dermsynth.metrics.frechet import (
    KIDResult,
    feature_statistics,
    fid_from_features,
    frechet_distance,
    kid,
    polynomial_mmd2,
    trace_sqrt_product,
)


def random_spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def eig_frechet(mu1, s1, mu2, s2) -> float:
    """Independent path: Tr((S1 S2)^1/2) = Tr((sqrt(S1) S2 sqrt(S1))^1/2), via symmetric eigendecompositions."""
    w, v = scipy.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = scipy.linalg.eigvalsh(root1 @ s2 @ root1)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sum(np.sqrt(np.clip(inner, 0, None))))


def numpy_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2, cubic polynomial kernel, written directly (as in Binkowski et al.'s reference)."""
    d = x.shape[1]
    kxx, kyy, kxy = ((x @ x.T) / d + 1) ** 3, ((y @ y.T) / d + 1) ** 3, ((x @ y.T) / d + 1) ** 3
    m, n = len(x), len(y)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2 * kxy.sum() / (m * n))


# ---------------------------------------------------------------------------------------
# Fréchet distance
# ---------------------------------------------------------------------------------------


def test_frechet_diagonal_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    s1, s2 = rng.uniform(0.1, 3, 8), rng.uniform(0.1, 3, 8)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_frechet_equal_covariances_is_mean_distance():
    rng = np.random.default_rng(1)
    s = random_spd(rng, 10)
    mu1, mu2 = rng.normal(size=10), rng.normal(size=10)
    assert frechet_distance(mu1, s, mu2, s) == pytest.approx(np.sum((mu1 - mu2) ** 2), rel=1e-7, abs=1e-8)


@pytest.mark.parametrize("d", [1, 5, 32])
def test_frechet_matches_eigen_path_and_is_symmetric(d):
    rng = np.random.default_rng(d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d) * 0.5
    s1, s2 = random_spd(rng, d), random_spd(rng, d) * 2
    fd = frechet_distance(mu1, s1, mu2, s2)
    assert fd == pytest.approx(eig_frechet(mu1, s1, mu2, s2), rel=1e-7, abs=1e-8)
    assert fd == pytest.approx(frechet_distance(mu2, s2, mu1, s1), rel=1e-8, abs=1e-8)
    assert fd > 0


def sqrtm_frechet(mu1, s1, mu2, s2) -> float:
    """pytorch-fid's path: the general matrix square root of S1 @ S2 (real part)."""
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


@pytest.mark.parametrize("n", [500, 40])  # full-rank and rank-deficient (N < D) covariances
def test_frechet_matches_scipy_sqrtm(n):
    rng = np.random.default_rng(n)
    a = rng.normal(size=(n, 64)) @ rng.normal(size=(64, 64)) * 0.3
    b = rng.normal(size=(n, 64)) @ rng.normal(size=(64, 64)) * 0.3 + 0.2
    (ma, sa), (mb, sb) = feature_statistics(a), feature_statistics(b)
    fd = frechet_distance(ma, sa, mb, sb)
    assert fd == pytest.approx(sqrtm_frechet(ma, sa, mb, sb), rel=1e-6)
    assert trace_sqrt_product(sa, sb) == pytest.approx(np.trace(scipy.linalg.sqrtm(sa @ sb).real), rel=1e-6)
    # from features: the N x N factor path when N <= D, the Cholesky path otherwise; either order of the sets
    assert fid_from_features(a, b) == pytest.approx(fd, rel=1e-6)
    assert fid_from_features(b, a) == pytest.approx(fd, rel=1e-6)


def test_frechet_zero_for_identical_stats_and_singular_covariance():
    rng = np.random.default_rng(2)
    f = rng.normal(size=(5, 12))  # 5 samples in 12-D: a rank-4 covariance
    mu, s = feature_statistics(f)
    assert np.linalg.matrix_rank(s) < 12
    assert abs(frechet_distance(mu, s, mu, s)) < 1e-6
    assert abs(fid_from_features(f, f)) < 1e-6


def test_feature_statistics_and_fid_from_features():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(400, 6)), rng.normal(size=(300, 6)) + 1.0
    mu, s = feature_statistics(torch.from_numpy(a).float())
    np.testing.assert_allclose(mu, a.mean(0), atol=1e-6)
    np.testing.assert_allclose(s, np.cov(a, rowvar=False), atol=1e-5)
    ma, sa = a.mean(0), np.cov(a, rowvar=False)
    mb, sb = b.mean(0), np.cov(b, rowvar=False)
    assert fid_from_features(a, b) == pytest.approx(eig_frechet(ma, sa, mb, sb), rel=1e-7)


def test_frechet_bad_input():
    with pytest.raises(DermsynthError):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(DermsynthError):
        frechet_distance(np.zeros(2), np.array([[1.0, np.nan], [0, 1]]), np.zeros(2), np.eye(2))
    with pytest.raises(DermsynthError):
        frechet_distance(np.zeros(2), -np.eye(2), np.zeros(2), np.eye(2))  # sqrt of a negative-definite product
    with pytest.raises(DermsynthError):
        feature_statistics(np.zeros((1, 4)))
    with pytest.raises(DermsynthError):
        fid_from_features(np.zeros((5, 3)), np.zeros((5, 4)))


# ---------------------------------------------------------------------------------------
# KID
# ---------------------------------------------------------------------------------------


def test_polynomial_mmd2_matches_numpy_unequal_sizes():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(30, 7)), rng.normal(size=(20, 7)) + 0.3
    got = polynomial_mmd2(torch.from_numpy(x)[None], torch.from_numpy(y)[None])
    assert float(got[0]) == pytest.approx(numpy_mmd2(x, y), rel=1e-10)


def test_kid_single_full_subset_matches_numpy():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(120, 16)), rng.normal(size=(120, 16)) * 1.2 + 0.2
    res = kid(x, y, num_subsets=1, subset_size=1000, device="cpu")  # one subset = all rows, permuted
    assert isinstance(res, KIDResult) and res.subset_size == 120 and res.std == 0.0
    assert res.mean == pytest.approx(numpy_mmd2(x, y), rel=1e-10)
    assert set(res.as_dict()) == {"mean", "std", "num_subsets", "subset_size"}


def test_kid_subsets_match_numpy_on_the_same_draws():
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(90, 5)), rng.normal(size=(70, 5)) + 0.5
    res = kid(x, y, num_subsets=7, subset_size=40, seed=3, device="cpu")
    draw = np.random.default_rng(3)
    vals = []
    for _ in range(7):
        i, j = draw.choice(90, 40, replace=False), draw.choice(70, 40, replace=False)
        vals.append(numpy_mmd2(x[i], y[j]))
    assert res.mean == pytest.approx(np.mean(vals), rel=1e-10)
    assert res.std == pytest.approx(np.std(vals), rel=1e-8)


def test_kid_same_distribution_near_zero_and_shift_positive():
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=(600, 32)), rng.normal(size=(600, 32))
    same = kid(a, b, num_subsets=50, subset_size=200, device="cpu")
    assert abs(same.mean) < 3 * same.std + 1e-6
    shifted = kid(a, b + 0.5, num_subsets=50, subset_size=200, device="cpu")
    assert shifted.mean > 10 * same.std and shifted.mean > 5 * shifted.std
    bigger = kid(a, b + 1.0, num_subsets=50, subset_size=200, device="cpu")
    assert bigger.mean > shifted.mean


def test_kid_clips_subset_size_and_rejects_bad_input():
    rng = np.random.default_rng(8)
    res = kid(rng.normal(size=(50, 4)), rng.normal(size=(30, 4)), num_subsets=3, subset_size=1000, device="cpu")
    assert res.subset_size == 30
    with pytest.raises(DermsynthError):
        kid(np.zeros((10, 4)), np.zeros((10, 5)), device="cpu")
    with pytest.raises(DermsynthError):
        kid(np.zeros((1, 4)), np.zeros((10, 4)), device="cpu")
    with pytest.raises(DermsynthError):
        kid(np.zeros((10, 4)), np.zeros((10, 4)), num_subsets=0, device="cpu")
