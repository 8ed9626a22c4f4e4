"""Tests for precision / recall / density / coverage (dermsynth.metrics.prdc) and the shared k-NN helper."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from sklearn.neighbors import NearestNeighbors

from dermsynth.errors import DermsynthError
from dermsynth.metrics._pairwise import distance_blocks, knn
from dermsynth.metrics.prdc import PRDCResult, prdc


def brute_prdc(real: np.ndarray, fake: np.ndarray, k: int) -> dict:
    """Reference written from the papers' definitions: sklearn k-NN radii, a full distance matrix."""
    r_real = NearestNeighbors(n_neighbors=k + 1).fit(real).kneighbors(real)[0][:, k]
    r_fake = NearestNeighbors(n_neighbors=k + 1).fit(fake).kneighbors(fake)[0][:, k]
    d = cdist(real, fake)  # (N, M)
    in_real_balls = d <= r_real[:, None]
    return {
        "precision": in_real_balls.any(axis=0).mean(),
        "recall": (d <= r_fake[None, :]).any(axis=1).mean(),
        "density": in_real_balls.sum() / (k * fake.shape[0]),
        "coverage": (d.min(axis=1) <= r_real).mean(),
    }


@pytest.mark.parametrize("k,chunk", [(1, None), (3, 7), (5, 50)])
def test_prdc_matches_brute_force(k, chunk):
    rng = np.random.default_rng(k)
    real = rng.normal(size=(160, 8))
    fake = rng.normal(size=(130, 8)) * 1.3 + 0.4
    got = prdc(real, fake, k=k, device="cpu", chunk=chunk)
    ref = brute_prdc(real, fake, k)
    assert isinstance(got, PRDCResult)
    for name, value in ref.items():
        assert getattr(got, name) == pytest.approx(value, abs=1e-12), name
    assert got.as_dict()["n_fake"] == 130


def test_prdc_identical_sets():
    rng = np.random.default_rng(10)
    x = rng.normal(size=(300, 16)).astype(np.float32)
    res = prdc(x, torch.from_numpy(x.copy()), k=5, device="cpu")
    assert res.precision == 1.0 and res.recall == 1.0 and res.coverage == 1.0
    assert res.density == pytest.approx(6 / 5)  # each real ball holds its centre and its k=5 neighbours


def test_prdc_same_distribution_density_near_one():
    rng = np.random.default_rng(11)
    res = prdc(rng.normal(size=(1000, 4)), rng.normal(size=(1000, 4)), k=5, device="cpu")
    assert res.density == pytest.approx(1.0, abs=0.15)
    assert min(res.precision, res.recall, res.coverage) > 0.8


def test_prdc_far_apart_sets_are_zero():
    rng = np.random.default_rng(12)
    res = prdc(rng.normal(size=(200, 6)), rng.normal(size=(150, 6)) + 100.0, k=5, device="cpu")
    assert (res.precision, res.recall, res.density, res.coverage) == (0.0, 0.0, 0.0, 0.0)


def test_prdc_shows_mode_collapse():
    rng = np.random.default_rng(13)
    modes = rng.normal(size=(10, 8)) * 10.0
    real = modes[rng.integers(0, 10, 1000)] + rng.normal(size=(1000, 8))
    all_modes = modes[rng.integers(0, 10, 1000)] + rng.normal(size=(1000, 8))
    collapsed = modes[rng.integers(0, 2, 1000)] + rng.normal(size=(1000, 8))  # only 2 of the 10 modes
    healthy, res = prdc(real, all_modes, k=5, device="cpu"), prdc(real, collapsed, k=5, device="cpu")
    assert res.precision > 0.85 and healthy.precision > 0.85
    assert healthy.recall > 0.8 and healthy.coverage > 0.8
    assert res.recall < 0.3 and res.coverage < 0.3


def test_prdc_rejects_bad_input():
    with pytest.raises(DermsynthError):
        prdc(np.zeros((10, 3)), np.zeros((10, 4)), device="cpu")
    with pytest.raises(DermsynthError):
        prdc(np.zeros((5, 3)), np.zeros((10, 3)), k=5, device="cpu")
    with pytest.raises(DermsynthError):
        prdc(np.zeros(10), np.zeros(10), device="cpu")


def test_distance_blocks_and_knn_match_scipy():
    rng = np.random.default_rng(14)
    x, y = rng.normal(size=(37, 5)) + 50.0, rng.normal(size=(23, 5)) + 50.0  # large offset: tests the centring
    full = np.zeros((37, 23))
    for rows, cols, d in distance_blocks(torch.from_numpy(x), torch.from_numpy(y), row_chunk=8, col_chunk=6):
        assert d.shape[0] <= 8 and d.shape[1] <= 6
        full[rows, cols] = d.numpy()
    np.testing.assert_allclose(full, cdist(x, y), rtol=1e-4, atol=1e-4)
    dist, idx = knn(torch.from_numpy(x), torch.from_numpy(y), 4, row_chunk=5, col_chunk=3, dtype=torch.float64)
    ref = np.sort(cdist(x, y), axis=1)[:, :4]
    np.testing.assert_allclose(dist.numpy(), ref, rtol=1e-10)
    np.testing.assert_array_equal(idx.numpy(), np.argsort(cdist(x, y), axis=1)[:, :4])
