"""Every distance grows as the generated set is corrupted more (blur, noise): FID, KID, PRDC and colour JSD.

SWD's own version of this check is in test_swd.py. Features come from a fixed, randomly initialised
SmallCNN (its penultimate layer): untrained, but deterministic and sensitive to texture and sharpness,
which is all these checks need, and fast on a CPU.
"""

from __future__ import annotations

import numpy as np
import pytest
from _synthetic import add_noise, blur, make_lesions

from dermsynth.classify import build_classifier
from dermsynth.metrics import colour_histogram_divergence, fid_from_features, kid, prdc
from dermsynth.metrics.features import FeatureExtractor, PenultimateFeatures

N, SIZE = 150, 32


@pytest.fixture(scope="module")
def setup():
    net = PenultimateFeatures(build_classifier("smallcnn", 4, SIZE, seed=0).eval(), SIZE)
    extractor = FeatureExtractor("random-cnn", 128, net, "untrained SmallCNN, for tests")
    real, same = make_lesions(N, seed=1, size=SIZE), make_lesions(N, seed=2, size=SIZE)
    return extractor, real, extractor(real, device="cpu"), same


# Blur hardly changes pixel-value histograms (slight smoothing can even bring them closer to the real set's at
# first), so for blur the colour divergence is only required to be higher at the strongest blur.
@pytest.mark.parametrize(("degrade", "strengths", "colour_monotone"),
                         [(blur, [1.0, 2.0, 3.0], False), (add_noise, [4.0, 8.0, 16.0], True)], ids=["blur", "noise"])
def test_distances_grow_with_corruption(setup, degrade, strengths, colour_monotone):
    extractor, real, real_feats, same = setup
    sets = [same] + [degrade(same, s) for s in strengths]
    fid, kid_mean, density, coverage, precision, jsd = [], [], [], [], [], []
    for images in sets:
        feats = extractor(images, device="cpu")
        fid.append(fid_from_features(real_feats, feats, "cpu"))
        kid_mean.append(kid(real_feats, feats, subset_size=100, seed=0, device="cpu").mean)
        pr = prdc(real_feats, feats, k=5, device="cpu")
        density.append(pr.density)
        coverage.append(pr.coverage)
        precision.append(pr.precision)
        jsd.append(colour_histogram_divergence(real, images).mean)
    values = {"fid": fid, "kid": kid_mean, "density": density, "coverage": coverage, "precision": precision, "jsd": jsd}
    assert np.all(np.diff(fid) > 0) and fid[-1] > 2 * fid[0], values
    assert np.all(np.diff(kid_mean) > 0), values
    assert np.all(np.diff(density) < 0) and density[-1] < 0.8 * density[0], values
    assert np.all(np.diff(coverage) <= 0) and coverage[-1] < coverage[0], values
    assert precision[-1] < precision[0], values
    assert jsd[-1] > 2 * jsd[0] and (np.all(np.diff(jsd) > 0) or not colour_monotone), values
