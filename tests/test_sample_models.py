"""Sampling PGAN and LAPGAN checkpoints exactly as DCGAN ones: PNGs at full size, truncation, latent walks,
classes, reproducibility by seed -- also from a PGAN checkpoint taken while it was still growing."""

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from dermsynth.sample import generate, latent_walk, load_generator, write_samples
from dermsynth.train import TrainConfig, train

from conftest import labelled_noise

COMMON = dict(size=16, z_dim=16, conditional=True, ema_beta=0.5, log_every=2, sample_every=100,
              checkpoint_every=100)
MODELS = {
    # stops at step 6: 96 images, inside the 8 px fade-in (phases of 64 images)
    "pgan": dict(model="pgan", width=2, steps=6, stable_kimg=0.064, fade_kimg=0.064, batch_schedule="4:16,8:16,16:8"),
    "lapgan": dict(model="lapgan", width=8, batch_size=16, steps=3),
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    ds = labelled_noise()
    root = tmp_path_factory.mktemp("models")
    return {name: train(TrainConfig(out=str(root / name), **COMMON, **opts), dataset=ds, progress=False).checkpoint
            for name, opts in MODELS.items()}


TRUNCATION = {"pgan": None, "lapgan": 0.7}  # PGAN normalises z (pixel norm): it has no truncation


@pytest.mark.parametrize("model", list(MODELS))
def test_write_samples_full_size_by_class_with_truncation(tmp_path, checkpoints, model):
    manifest = write_samples(checkpoints[model], n=5, out=tmp_path, class_name="nv", truncation=TRUNCATION[model],
                             seed=2, batch_size=2, progress=False)
    with open(manifest) as f:
        rows = list(csv.DictReader(f))
    expected = "" if TRUNCATION[model] is None else str(TRUNCATION[model])
    assert len(rows) == 5 and {r["class"] for r in rows} == {"NV"} and {r["truncation"] for r in rows} == {expected}
    for r in rows:
        img = Image.open(tmp_path / r["file"])
        assert img.size == (16, 16) and img.mode == "RGB"


@pytest.mark.parametrize("model", list(MODELS))
def test_samples_reproducible_by_seed_and_varied(tmp_path, checkpoints, model):
    dirs = [write_samples(checkpoints[model], n=3, out=tmp_path / name, seed=seed, progress=False).parent
            for name, seed in (("a", 1), ("b", 1), ("c", 2))]
    read = lambda d, seed, i: np.asarray(Image.open(d / f"sample_{seed}_{i:06d}.png"))  # noqa: E731
    assert np.array_equal(read(dirs[0], 1, 0), read(dirs[1], 1, 0))  # LAPGAN's band noise is seeded too
    assert not np.array_equal(read(dirs[0], 1, 0), read(dirs[2], 2, 0))
    assert not np.array_equal(read(dirs[0], 1, 0), read(dirs[0], 1, 1))


@pytest.mark.parametrize("model", list(MODELS))
def test_latent_walk(tmp_path, checkpoints, model):
    img = Image.open(latent_walk(checkpoints[model], tmp_path / "walk.png", rows=2, steps=4, class_name="MEL",
                                 truncation=TRUNCATION[model]))
    assert img.width > img.height


def test_growing_pgan_checkpoint_samples_at_full_resolution(checkpoints):
    model = load_generator(checkpoints["pgan"])
    G = model.generator
    assert (G.level, G.resolution) == (1, 16) and 0 < G.alpha.item() < 1  # saved mid fade-in of 8 px
    z, y = torch.randn(4, 16), torch.tensor([0, 1, 2, 0])
    images = generate(model, z, y)
    assert images.shape == (4, 16, 16, 3)
    with torch.no_grad():  # the 8 px output enlarged nearest-neighbour: 2x2 blocks of equal pixels
        small = G(z, y)
    assert small.shape[-1] == 8
    assert np.array_equal(images[:, ::2, ::2], images[:, 1::2, 1::2])
