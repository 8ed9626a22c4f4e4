"""`--model ddpm-maps` (issue 19 §3): Bissoto et al.'s semantic (+ instance) maps as the denoiser's extra input
channels, trained on the data pix2pixHD trains on; `dermsynth translate` and the augmentation protocol's
TranslationSource take it. (That the concatenated channels steer the samples is shown by
tests/test_diffusion.py::test_a_mask_conditioned_denoiser_paints_inside_its_mask.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dermsynth.classify.synthetic import TranslationSource, open_source
from dermsynth.data.maps import maps_of, superpixels
from dermsynth.data.phantom import generate_phantom
from dermsynth.errors import DermsynthError
from dermsynth.sample import load_generator, translate_images, translate_maps
from dermsynth.train import TrainConfig, train
from dermsynth.translate import translate

TINY = dict(model="ddpm-maps", preset="tiny", width=16, size=16, batch_size=4, log_every=2, sample_every=100,
            checkpoint_every=100, sampling_steps=3, warmup=0)


@pytest.fixture(scope="module")
def phantom():
    data = generate_phantom(n=12, size=16, seed=1)  # lesion masks and the five attribute masks
    data.instance_maps = superpixels(data.images)
    return data


@pytest.fixture(scope="module")
def runs(tmp_path_factory, phantom):
    """Two 3-step runs: with the instance-boundary map, and --no-instance (semantic maps alone)."""
    root = tmp_path_factory.mktemp("ddpm-maps")
    for name, instance in (("with", True), ("without", False)):
        train(TrainConfig(out=str(root / name), steps=3, instance=instance, **TINY), dataset=phantom, progress=False)
    return root


def test_the_denoiser_takes_the_maps_as_channels(runs):
    state = torch.load(runs / "with" / "latest.pt", weights_only=True)
    assert state["sampled"] == "denoiser" and state["sampled_inputs"] == ["semantic", "instance"]
    assert state["model_options"]["condition_channels"] == 6 + 1  # lesion + 5 attributes, instance boundaries
    state = torch.load(runs / "without" / "latest.pt", weights_only=True)
    assert state["sampled_inputs"] == ["semantic"] and state["model_options"]["condition_channels"] == 6
    assert (runs / "with" / "samples" / "step-0000003.png").is_file()


def test_translation_depends_on_seed_and_map_only(runs, phantom):
    model = load_generator(runs / "with")
    assert model.takes_instance and model.semantic_channels == 6
    whole = translate_images(model, phantom, np.arange(5), batch_size=5, seed=2, steps=3)
    parts = translate_images(model, phantom, np.arange(5), batch_size=2, seed=2, steps=3)
    assert whole.shape == (5, 16, 16, 3) and np.array_equal(whole, parts)
    assert not np.array_equal(whole, translate_images(model, phantom, np.arange(5), batch_size=5, seed=3, steps=3))
    # editable maps (no superpixels needed without the instance map)
    plain = load_generator(runs / "without")
    images = translate_maps(plain, maps_of(phantom, np.arange(3), instance=False), steps=3)
    assert images.shape == (3, 16, 16, 3) and not plain.takes_instance


def test_translate_command_and_its_errors(runs, tmp_path):
    result = translate(runs / "without", tmp_path / "out", from_data="phantom:8", n=2, sampling_steps=2,
                       progress=False)
    assert result.count == 2 and result.grid.is_file()
    with pytest.raises(DermsynthError, match="--sampler must be one of"):
        translate(runs / "without", tmp_path / "bad", from_data="phantom:8", n=2, sampler="euler", progress=False)
    with pytest.raises(DermsynthError, match="conditioned on lesion maps, not classes"):
        TrainConfig(model="ddpm-maps", conditional=True).resolve()


def test_the_augmentation_protocol_takes_it_as_a_translation_source(runs, phantom):
    source = open_source(runs / "with")
    assert isinstance(source, TranslationSource)
    source.bind_training(phantom)
    counts = np.bincount(phantom.labels, minlength=phantom.num_classes)
    c = int(np.flatnonzero(counts)[0])
    wanted = np.zeros(phantom.num_classes, int)
    wanted[c] = 2
    drawn = source.draw(wanted, phantom.class_names, 16, seed=1)
    assert drawn.images.shape == (2, 16, 16, 3) and drawn.labels.tolist() == [c, c]
