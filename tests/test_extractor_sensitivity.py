"""The shipped extractor's FID is a useful distance (issue 13 §1): on real images it never saw (ISIC 2017, not part
of HAM10000), FID against degraded copies of other real images grows monotonically with the strength of blur,
noise, JPEG compression and a colour cast, and it separates a (briefly) trained generator from an untrained one.
The full-size figures are in benchmarks/RESULTS.md (benchmarks/extractor_sensitivity.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import SHARED_DATA, needs_shared
from dermsynth.data.dataset import LesionDataset
from dermsynth.data.prepare import load_dataset
from dermsynth.metrics.distort import STRENGTHS, distort
from dermsynth.metrics.features import SHIPPED_EXTRACTOR, load_shipped_extractor
from dermsynth.metrics.registry import ImageSet, MetricOptions, RealSet, TrainingMetrics, compute_metrics
from dermsynth.metrics.swd import disjoint_halves
from dermsynth.sample import load_generator, sample_images
from dermsynth.train import TrainConfig, train

N = 150  # images per half


@pytest.fixture(scope="module")
def isic(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DERMSYNTH_CACHE", str(tmp_path_factory.mktemp("cache")))  # never the user's cache
        ds = load_dataset(SHARED_DATA / "isic2017_256", size=64, progress=False)
    a, b = disjoint_halves(len(ds), N, seed=0)
    return np.asarray(ds.images[a]), np.asarray(ds.images[b])


def test_distortions_are_what_they_say():
    img = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), np.uint8)
    for kind, strengths in STRENGTHS.items():
        assert np.array_equal(distort(img, kind, 0), img), kind
        changes = [np.abs(distort(img, kind, s, seed=1).astype(int) - img).mean() for s in strengths[1:]]
        assert all(x < y for x, y in zip(changes, changes[1:])), (kind, changes)  # stronger = more change
    shifted = distort(np.full((1, 4, 4, 3), 100, np.uint8), "colour", 16)
    assert shifted[0, 0, 0].tolist() == [116, 100, 84]


@needs_shared
def test_fid_grows_monotonically_with_every_distortion(isic):
    """Against the same images (paired) FID grows strictly with every strength from 0; against other real images
    (disjoint halves) it also grows strictly once the distortion exceeds the real-vs-real floor -- milder
    ones (noise of std <= 8 uint8 units) are hidden in the sampling noise of FID at N = 150."""
    ref, other = isic
    ext = load_shipped_extractor()
    opts = MetricOptions(extractor=ext, device=torch.device("cpu"))
    paired_set, halves_set = RealSet(other), RealSet(ref)
    for kind, strengths in STRENGTHS.items():
        degraded = [distort(other, kind, s, seed=1) for s in strengths]
        paired = [compute_metrics(["fid"], paired_set, d, opts)["fid"]["fid"] for d in degraded]
        halves = [compute_metrics(["fid"], halves_set, d, opts)["fid"]["fid"] for d in degraded]
        assert abs(paired[0]) < 1e-6 and all(x < y for x, y in zip(paired, paired[1:])), (kind, paired)
        floor = halves[0]
        beyond = [h for p, h in zip(paired[1:], halves[1:]) if p > floor]
        assert len(beyond) >= 2 and floor < beyond[0], (kind, paired, halves)
        assert all(x < y for x, y in zip(beyond, beyond[1:])), (kind, paired, halves)
        assert halves[-1] > 3 * floor, (kind, halves)  # the strongest is far outside the real-vs-real floor


def _half_size(images: np.ndarray) -> np.ndarray:
    """64 -> 32 px by 2x2 averaging."""
    n, s = len(images), images.shape[1] // 2
    return images.reshape(n, s, 2, s, 2, 3).mean(axis=(2, 4)).round().astype(np.uint8)


@needs_shared
def test_fid_separates_a_trained_from_an_untrained_generator(isic, tmp_path):
    ref, other = isic
    small = _half_size(other)
    data = LesionDataset(images=small, labels=np.full(len(small), -1), class_names=[],
                         ids=[str(i) for i in range(len(small))])
    cfg = TrainConfig(model="dcgan", size=32, width=16, z_dim=32, steps=400, batch_size=32, ema_beta=0.0,
                      log_every=50, sample_every=1000, checkpoint_every=1000, device="cpu", out=str(tmp_path / "gan"))
    trained = load_generator(train(cfg, dataset=data, progress=False).checkpoint)
    untrained = load_generator(trained.checkpoint)
    torch.manual_seed(0)
    for m in untrained.generator.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    # through TrainingMetrics, as the trainer will use it: the real set at 32 px (the generator's size)
    real32 = _half_size(ref)
    metrics = TrainingMetrics(["fid"], real32, n_images=N, extractor="shipped", device="cpu", seed=1)
    assert metrics.info["extractor_version"] == SHIPPED_EXTRACTOR
    fid_trained = metrics(lambda n, seed: sample_images(trained, n, seed)[0])["fid"]
    fid_untrained = metrics(lambda n, seed: sample_images(untrained, n, seed)[0])["fid"]
    floor = compute_metrics(["fid"], RealSet(real32), ImageSet(small),
                            MetricOptions(extractor=metrics.extractor))["fid"]["fid"]
    assert floor < fid_trained < fid_untrained / 2, (floor, fid_trained, fid_untrained)
