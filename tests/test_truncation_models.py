"""Truncation is never a silent no-op (issue 20 §4): for every model that accepts it, the diversity of samples
falls monotonically as truncation tightens; a model whose generator renormalises z refuses latent truncation."""

import numpy as np
import pytest

from dermsynth.errors import DermsynthError
from dermsynth.truncation import PSI_VALUES, truncation_sweep
from dermsynth.sample import load_generator, sample_images, write_samples
from dermsynth.train import TrainConfig, train

from conftest import labelled_noise

COMMON = dict(size=16, log_every=2, sample_every=100, checkpoint_every=100, steps=2)
MODELS = {
    "dcgan": dict(model="dcgan", width=8, batch_size=8, z_dim=16),
    "lapgan": dict(model="lapgan", width=8, batch_size=8, z_dim=16),
    "pgan": dict(model="pgan", width=2, z_dim=16, stable_kimg=0.064, fade_kimg=0.064, batch_schedule="4:8,8:8,16:8"),
    "stylegan2": dict(model="stylegan2", width=4, batch_size=8),
}
LATENT = (None, 1.0, 0.3, 0.05, 0.01)  # loosest to tightest
PSI = (1.0, 0.7, 0.4, 0.1, 0.0)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    data = labelled_noise()
    root = tmp_path_factory.mktemp("trunc")
    return {name: load_generator(train(TrainConfig(out=str(root / name), **COMMON, **opts), dataset=data,
                                       progress=False).checkpoint, "cpu")
            for name, opts in MODELS.items()}


def _spread(images: np.ndarray) -> float:
    """Diversity: the per-pixel standard deviation over samples, averaged."""
    return float(images.astype(np.float64).std(axis=0).mean())


@pytest.mark.parametrize("name", ["dcgan", "lapgan"])
def test_latent_truncation_narrows_the_samples_monotonically(models, name):
    spread = [_spread(sample_images(models[name], 48, seed=1, truncation=t)[0]) for t in LATENT]
    assert all(a > b for a, b in zip(spread, spread[1:])), spread
    if name == "dcgan":  # G(z) -> G(0): no noise of its own, so the tightest truncation all but collapses it
        assert spread[-1] < 0.1 * spread[0]


def test_stylegan2_truncates_in_w_and_narrows_monotonically(models):
    model = models["stylegan2"]
    assert model.truncation == "w"
    spread = [_spread(sample_images(model, 48, seed=1, psi=p)[0]) for p in PSI]
    assert all(a > b for a, b in zip(spread, spread[1:])), spread
    with pytest.raises(DermsynthError, match="--psi"):
        sample_images(model, 4, seed=1, truncation=0.5)


def test_stylegan2_sweep_uses_psi(models):
    real = sample_images(models["dcgan"], 16, seed=5)[0]
    sweep = truncation_sweep(models["stylegan2"], real, n=16, device="cpu")
    assert sweep.parameter == "psi" and sweep.thresholds == list(PSI_VALUES) and len(set(sweep.values)) > 1


def test_pgan_has_no_truncation(models, tmp_path):
    model = models["pgan"]
    assert model.truncation is None
    with pytest.raises(DermsynthError, match="normalises its latent"):
        sample_images(model, 4, seed=1, truncation=0.5)
    with pytest.raises(DermsynthError, match="normalises its latent"):
        write_samples(model.checkpoint, 4, tmp_path / "s", truncation=0.5, progress=False)
    real = sample_images(models["dcgan"], 16, seed=5)[0]
    with pytest.raises(DermsynthError, match="no truncation"):
        truncation_sweep(model, real, n=16, device="cpu")
