"""Sampling: PNGs + manifest, class selection, truncation by resampling, latent walks."""

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from dermsynth.errors import DermsynthError
from dermsynth.sample import latent_walk, slerp, truncated_normal, write_samples
from dermsynth.train import TrainConfig, train

from conftest import labelled_noise


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    ds = labelled_noise()
    root = tmp_path_factory.mktemp("ckpt")
    out = {}
    for conditional in (True, False):
        cfg = TrainConfig(out=str(root / f"c{int(conditional)}"), size=16, width=8, z_dim=16, batch_size=16,
                          steps=3, conditional=conditional, ema_beta=0.5)
        out[conditional] = train(cfg, dataset=ds, progress=False).checkpoint
    return out


def test_write_samples_writes_pngs_and_manifest(tmp_path, checkpoints):
    manifest = write_samples(checkpoints[True], n=10, out=tmp_path, class_name="mel", truncation=0.5, seed=3,
                             progress=False)
    with open(manifest) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 10
    assert set(rows[0]) == {"file", "class", "seed", "truncation", "psi", "checkpoint"}
    assert {r["psi"] for r in rows} == {""}  # no w-space truncation asked for
    assert {r["class"] for r in rows} == {"MEL"}
    assert {r["truncation"] for r in rows} == {"0.5"} and {r["seed"] for r in rows} == {"3"}
    for r in rows:
        img = Image.open(tmp_path / r["file"])
        assert img.size == (16, 16) and img.mode == "RGB"


def test_sampling_is_reproducible_by_seed(tmp_path, checkpoints):
    a = write_samples(checkpoints[False], n=3, out=tmp_path / "a", seed=1, progress=False).parent
    b = write_samples(checkpoints[False], n=3, out=tmp_path / "b", seed=1, progress=False).parent
    c = write_samples(checkpoints[False], n=3, out=tmp_path / "c", seed=2, progress=False).parent
    first = lambda d: np.asarray(Image.open(d / "sample_1_000000.png"))  # noqa: E731
    assert np.array_equal(first(a), first(b))
    assert not np.array_equal(first(a), np.asarray(Image.open(c / "sample_2_000000.png")))


def test_unconditional_mix_of_classes_and_errors(tmp_path, checkpoints):
    manifest = write_samples(checkpoints[True], n=30, out=tmp_path / "mix", progress=False)
    with open(manifest) as f:
        assert len({r["class"] for r in csv.DictReader(f)}) == 3
    with pytest.raises(DermsynthError, match="unknown class"):
        write_samples(checkpoints[True], n=2, out=tmp_path / "x", class_name="DF", progress=False)
    with pytest.raises(DermsynthError, match="unconditional"):
        write_samples(checkpoints[False], n=2, out=tmp_path / "y", class_name="MEL", progress=False)
    with pytest.raises(DermsynthError, match="not found"):
        write_samples(tmp_path / "missing.pt", n=2, out=tmp_path / "z", progress=False)


def test_truncation_redraws_instead_of_clamping():
    g = torch.Generator().manual_seed(0)
    z = truncated_normal(2000, 64, 0.5, g)
    assert z.abs().max() <= 0.5
    # Redrawing keeps the normal's shape inside the interval: no pile-up at the bounds (clamping would put
    # ~62% of the mass at exactly +-0.5), and the density falls towards the edges.
    assert (z.abs() > 0.499).float().mean() < 0.01
    inner, outer = (z.abs() < 0.1).float().mean(), ((z.abs() > 0.4) & (z.abs() <= 0.5)).float().mean()
    assert inner > outer
    untruncated = truncated_normal(10, 4, None, torch.Generator().manual_seed(0))
    assert torch.equal(untruncated, torch.randn(10, 4, generator=torch.Generator().manual_seed(0)))
    with pytest.raises(DermsynthError):
        truncated_normal(2, 2, 0.0, g)


def test_latent_walk_grid(tmp_path, checkpoints):
    path = latent_walk(checkpoints[True], tmp_path / "walk.png", rows=3, steps=5, class_name="NV")
    img = Image.open(path)
    assert img.width > img.height  # 5 columns x 3 rows
    a, b = torch.randn(8), torch.randn(8)
    path_points = slerp(a, b, torch.tensor([0.0, 1.0]))
    assert torch.allclose(path_points[0], a, atol=1e-5) and torch.allclose(path_points[1], b, atol=1e-5)


def test_tiny_truncation_is_quick_and_exact():
    import time

    from scipy import stats

    start = time.perf_counter()
    z = truncated_normal(512, 128, 1e-6, torch.Generator().manual_seed(0))
    assert time.perf_counter() - start < 5 and z.abs().max() <= 1e-6 and z.unique().numel() > 60000
    assert stats.kstest(z.double().flatten().numpy(), stats.truncnorm(-1e-6, 1e-6).cdf).pvalue > 1e-3


def test_truncation_draws_unchanged_at_sweep_thresholds():
    def reference(n, dim, t, g):  # the rejection loop of 622980a
        z = torch.randn(n, dim, generator=g)
        outside = z.abs() > t
        while outside.any():
            z[outside] = torch.randn(int(outside.sum()), generator=g)
            outside = z.abs() > t
        return z

    for t in (0.01, 0.05, 0.5, 100.0):
        assert torch.equal(truncated_normal(64, 128, t, torch.Generator().manual_seed(3)),
                           reference(64, 128, t, torch.Generator().manual_seed(3)))
