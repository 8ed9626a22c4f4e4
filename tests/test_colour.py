"""Tests for colour histograms, their Jensen-Shannon divergence and per-class colour statistics."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from dermsynth.data.phantom import generate_phantom
from dermsynth.errors import DermsynthError
from dermsynth.metrics.colour import (
    ColourDivergence,
    channel_histograms,
    class_colour_statistics,
    colour_histogram_divergence,
    jensen_shannon_divergence,
    plot_class_colour_statistics,
)


@pytest.fixture(scope="module")
def phantom():
    return generate_phantom(120, 32, seed=0)


def shift_colour(images: np.ndarray, delta) -> np.ndarray:
    return np.clip(images.astype(np.int16) + np.asarray(delta, dtype=np.int16), 0, 255).astype(np.uint8)


def test_channel_histograms_match_numpy(phantom):
    imgs = phantom.images
    for bins in (256, 64, 10):
        h = channel_histograms(imgs, bins)
        assert h.shape == (3, bins)
        np.testing.assert_allclose(h.sum(axis=1), 1.0)
        for c in range(3):
            ref, _ = np.histogram(imgs[..., c], bins=bins, range=(0, 256))
            np.testing.assert_allclose(h[c], ref / ref.sum(), atol=1e-15)


def test_jsd_matches_scipy():
    rng = np.random.default_rng(0)
    p, q = rng.uniform(size=32), rng.uniform(size=32)
    q[:5] = 0.0  # zero bins on one side
    assert jensen_shannon_divergence(p, q) == pytest.approx(jensenshannon(p, q, base=2) ** 2, rel=1e-10)
    fixed_p, fixed_q = np.array([0.5, 0.5, 0.0, 0.0]), np.array([0.0, 0.25, 0.25, 0.5])
    assert jensen_shannon_divergence(fixed_p, fixed_q) == pytest.approx(jensenshannon(fixed_p, fixed_q, base=2) ** 2)
    assert jensen_shannon_divergence([1, 0], [0, 1]) == pytest.approx(1.0)  # disjoint support: 1 bit
    assert jensen_shannon_divergence(p, p) == pytest.approx(0.0, abs=1e-15)
    with pytest.raises(DermsynthError):
        jensen_shannon_divergence([1, 2], [1, 2, 3])


def test_divergence_zero_for_identical_and_grows_with_shift(phantom):
    imgs = phantom.images
    same = colour_histogram_divergence(imgs, imgs.copy())
    assert isinstance(same, ColourDivergence) and same.mean == 0.0 and same.per_channel == [0.0, 0.0, 0.0]
    h = channel_histograms(imgs, 64)
    values = []
    for delta in (8, 24, 64):
        fake = shift_colour(imgs, [delta, 0, 0])
        res = colour_histogram_divergence(imgs, fake)
        assert res.per_channel[0] == pytest.approx(jensenshannon(h[0], channel_histograms(fake, 64)[0], base=2) ** 2)
        assert res.per_channel[1] == 0.0 and res.per_channel[2] == 0.0  # only red moved
        values.append(res.per_channel[0])
    assert 0 < values[0] < values[1] < values[2] <= 1.0
    other_half = colour_histogram_divergence(imgs[:60], imgs[60:])  # sampling noise is small next to a real cast
    assert other_half.mean < colour_histogram_divergence(imgs, shift_colour(imgs, [24, 24, 24])).mean
    assert set(same.as_dict()["per_channel"]) == {"R", "G", "B"}


def test_class_colour_statistics_match_numpy(phantom):
    imgs, labels = phantom.images, phantom.labels.copy()
    labels[0] = -1
    df = class_colour_statistics(imgs, labels, phantom.class_names)
    assert list(df.columns) == ["class", "label", "R", "G", "B", "grey"] and len(df) == len(imgs)
    f = imgs.astype(np.float64)
    np.testing.assert_allclose(df[["R", "G", "B"]].to_numpy(), f.mean(axis=(1, 2)), rtol=1e-12)
    grey = (0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]).mean(axis=(1, 2))
    np.testing.assert_allclose(df["grey"].to_numpy(), grey, rtol=1e-12)
    assert df["class"].iloc[0] == "unlabelled"
    assert (df["class"].iloc[1:].to_numpy() == np.array(phantom.class_names)[labels[1:]]).all()
    with pytest.raises(DermsynthError):
        class_colour_statistics(imgs, np.full(len(imgs), 7), phantom.class_names)
    with pytest.raises(DermsynthError):
        class_colour_statistics(imgs.astype(np.float32), labels, phantom.class_names)


def test_plot_class_colour_statistics_writes_file(phantom, tmp_path):
    df = class_colour_statistics(phantom.images, phantom.labels, phantom.class_names)
    out = plot_class_colour_statistics(df, tmp_path / "sub" / "colour.png", title="phantom")
    assert out.is_file() and out.stat().st_size > 10_000
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(DermsynthError):
        plot_class_colour_statistics(df.drop(columns="grey"), tmp_path / "x.png")
