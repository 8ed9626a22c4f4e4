"""Tests for the metric registry (dermsynth.metrics.registry): every metric equals the function it wraps (each of
those is tested against its reference elsewhere), real-set features are extracted once and cached in memory and
on disk under the right key, and TrainingMetrics scores a sampling function on tiny data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dermsynth import cli
from dermsynth.data.dataset import LesionDataset
from dermsynth.errors import DermsynthError
from dermsynth.metrics.colour import colour_histogram_divergence
from dermsynth.metrics.features import EXTRACTOR_CHOICES, EXTRACTORS, FeatureExtractor
from dermsynth.metrics.frechet import fid_from_features, kid
from dermsynth.metrics.prdc import prdc
from dermsynth.metrics.registry import (METRICS, ImageSet, MetricOptions, RealSet, TrainingMetrics, compute_metrics,
                                        get_metric, metric_names, register_metric)
from dermsynth.metrics.swd import swd, swd_lower_bound
from dermsynth.truncation import SWEEP_METRICS


class _Counting(torch.nn.Module):
    """Features = per-channel mean and std of the image (6-d); counts the images it has seen."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += len(x)
        return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)


def _extractor(version: str = "stats-v1") -> FeatureExtractor:
    return FeatureExtractor("stats", 6, _Counting(), "channel mean and std", version=version)


def _images(n: int, seed: int, size: int = 16, offset: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(120 + offset, 40, (n, size, size, 3)), 0, 255).astype(np.uint8)


def test_registry_lists_every_metric_with_its_needs():
    assert list(METRICS) == ["swd", "fid", "kid", "prdc", "colour_jsd"]
    assert get_metric("swd").needs == {"images"} and get_metric("fid").needs == {"features"}
    assert metric_names(better="lower") == ["swd", "fid", "kid", "colour_jsd"]
    assert metric_names(better="higher") == ["prdc"]
    with pytest.raises(DermsynthError, match="unknown metric 'is'; choose from swd, fid"):
        get_metric("is")
    with pytest.raises(DermsynthError, match="needs must be"):
        register_metric("bad", needs=["pixels"])
    # the CLI lists the registries' names as choices without importing them
    assert tuple(cli.SWEEP_METRICS) == SWEEP_METRICS
    assert set(cli.EXTRACTOR_CHOICES) == set(EXTRACTOR_CHOICES) == {"auto", "none", *EXTRACTORS}


def test_each_metric_equals_the_function_it_wraps():
    real, fake = _images(40, 0), _images(30, 1, offset=30)
    ext = _extractor()
    opts = MetricOptions(extractor=ext, device=torch.device("cpu"), seed=3)
    got = compute_metrics(metric_names(), real, fake, opts)
    fr, ff = ext(real), ext(fake)
    assert got["fid"]["fid"] == pytest.approx(fid_from_features(fr, ff, "cpu"), rel=1e-12)
    ref_kid = kid(fr, ff, seed=3, device="cpu")
    assert got["kid"]["kid"] == pytest.approx(ref_kid.mean, rel=1e-12) and got["kid"]["kid_std"] == ref_kid.std
    ref_prdc = prdc(fr, ff, k=5, device="cpu")
    assert [got["prdc"][k] for k in ("precision", "recall", "density", "coverage")] == [
        ref_prdc.precision, ref_prdc.recall, ref_prdc.density, ref_prdc.coverage]
    assert got["colour_jsd"]["colour_jsd"] == pytest.approx(colour_histogram_divergence(real, fake).mean)
    # SWD with its lower bound: both at one n, at most half the real set
    n = 20
    assert got["swd"]["n_images"] == n
    assert got["swd"]["swd"] == pytest.approx(swd(real, fake, n=n, seed=3, device="cpu").mean)
    assert got["swd"]["swd_lower_bound"] == pytest.approx(swd_lower_bound(real, n=n, seed=3, device="cpu").mean)
    assert got["swd"]["swd"] > got["swd"]["swd_lower_bound"]  # shifted images are farther than real halves
    rows = get_metric("swd").render(got["swd"])
    assert rows[-1] == ["mean", got["swd"]["swd_lower_bound"], got["swd"]["swd"]] and len(rows) == 2  # 16 px: 1 level
    assert get_metric("kid").render(got["kid"])[0] == ["KID mean", got["kid"]["kid"], "lower"]
    with pytest.raises(DermsynthError, match="fid need"):
        compute_metrics(["fid"], real, fake, MetricOptions())


def test_real_features_are_extracted_once_and_cached_on_disk(tmp_path):
    real, fake = _images(24, 0), _images(24, 1)
    ext = _extractor()
    real_set, fake_set = RealSet(real, cache_dir=tmp_path), ImageSet(fake)
    opts = MetricOptions(extractor=ext, device=torch.device("cpu"))
    first = compute_metrics(["fid", "kid", "prdc"], real_set, fake_set, opts)
    assert ext.network.seen == 48  # each set once, for three metrics
    compute_metrics(["fid"], real_set, ImageSet(_images(24, 2)), opts)
    assert ext.network.seen == 72  # only the new generated set
    cached = list(tmp_path.glob("real-*.npy"))
    assert len(cached) == 1 and np.array_equal(np.load(cached[0]), real_set.features(ext))
    # a new RealSet of the same images and extractor version reads the file: no extraction
    ext2 = _extractor()
    again = compute_metrics(["fid"], RealSet(real, cache_dir=tmp_path), fake_set, MetricOptions(extractor=ext2))
    assert ext2.network.seen == 0 and again["fid"]["fid"] == first["fid"]["fid"]
    # another extractor version or other images: another key
    other = RealSet(real, cache_dir=tmp_path)
    assert other.cache_path(_extractor("stats-v2")) != other.cache_path(ext)
    changed = real.copy()
    changed[0, 0, 0, 0] ^= 1
    assert RealSet(changed, cache_dir=tmp_path).cache_path(ext) != other.cache_path(ext)
    assert RealSet(real).cache_path(ext) is None  # no cache_dir: memory only


def test_training_metrics_scores_a_sampling_function():
    data = LesionDataset(images=_images(64, 0), labels=np.zeros(64), class_names=["a"],
                         ids=[str(i) for i in range(64)])
    calls = []

    def sample_fn(n: int, seed: int) -> np.ndarray:
        calls.append((n, seed))
        return _images(n, 100 + seed, offset=offset)

    metrics = TrainingMetrics(["fid", "swd", "colour_jsd"], data, n_images=32, extractor=_extractor(), device="cpu",
                              seed=7)
    assert metrics.names == ["fid", "swd", "colour_jsd"]
    offset = 60
    far = metrics(sample_fn)
    offset = 0
    near = metrics(sample_fn)
    assert calls == [(32, 7), (32, 7)]  # the same latents every time
    assert list(far) == ["fid", "swd", "colour_jsd"] and all(isinstance(v, float) for v in far.values())
    assert all(near[k] < far[k] for k in far)  # lower is better: the unshifted images score better on all three
    # the real set was subsampled to n_images (seeded); values match a direct computation on that subset
    idx = np.sort(np.random.default_rng(7).choice(64, 32, replace=False))
    fake = _images(32, 107)
    ext = _extractor()
    assert near["fid"] == pytest.approx(fid_from_features(ext(data.images[idx]), ext(fake), "cpu"))
    assert near["swd"] == pytest.approx(swd(data.images[idx], fake, n=32, seed=7, device="cpu").mean)
    assert metrics.details["swd"]["n_images"] == 32 and "swd_lower_bound" not in metrics.details["swd"]
    info = metrics.info
    assert info["extractor_version"] == "stats-v1" and "same extractor version" in info["extractor_warning"]
    assert info["n_real"] == 32 and len(info["real_sha256"]) == 64


def test_training_metrics_rejects_what_cannot_pick_a_snapshot():
    real = _images(16, 0)
    with pytest.raises(DermsynthError, match="'prdc' cannot select a snapshot; choose lower-is-better metrics "
                                             "from swd, fid, kid, colour_jsd"):
        TrainingMetrics(["swd", "prdc"], real, n_images=8)
    with pytest.raises(DermsynthError, match="metrics repeat"):
        TrainingMetrics("swd,swd", real, n_images=8)
    with pytest.raises(DermsynthError, match="fid need"):
        TrainingMetrics(["fid"], real, n_images=8, extractor="none")
    swd_only = TrainingMetrics("swd", real, n_images=8, extractor="none")  # no extractor needed
    assert swd_only.extractor is None and swd_only.names == ["swd"]
    with pytest.raises(DermsynthError, match="generator makes 8px images but the metric real set is 16px"):
        swd_only(lambda n, seed: _images(n, 0, size=8))
