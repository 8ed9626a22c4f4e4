"""The step protocol without a generator/discriminator pair: a step that owns one network, one optimizer and
its EMA copy (the shape of a diffusion model's step) trains, checkpoints, resumes exactly and is sampled
through the same trainer and sampler; per-model options are refused for other models; ``import dermsynth``
and ``dermsynth --help`` do not load torch."""

import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from _runs import assert_same_training_state, resumed_and_uninterrupted
from dermsynth.errors import DermsynthError
from dermsynth.models import MODELS, ModelSpec
from dermsynth.models.options import ModelOptions
from dermsynth.sample import load_generator, translate_images
from dermsynth.train import TrainConfig, TrainStep, train
from dermsynth.train import steps as steps_module
from dermsynth.train.config import CommonOptions, model_fields


class Denoiser(nn.Module):
    def __init__(self, **_: object) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images + self.net(images)


class DenoiseStep(TrainStep):
    """One network, one Adam, an EMA copy: learn to remove Gaussian noise (sigma 0.2) from the images."""

    sampled = "denoiser"
    sampled_inputs = ("images",)
    stat_names = ("loss",)
    lr_options = {}  # a fixed rate

    @classmethod
    def from_config(cls, cfg, networks, *, bf16, noise=None, ema=None, dist=None):
        opt = torch.optim.Adam(networks["denoiser"].parameters(), lr=1e-3)
        return cls(networks, {"denoiser": opt}, bf16, batch_size=cfg.batch_size, ema_beta=cfg.ema_beta,
                   noise=noise, ema=ema, dist=dist)

    def __call__(self, batch):
        x = batch.images
        noisy = x + 0.2 * self.draw(self.global_batch, *x.shape[1:], like=x)
        loss = F.mse_loss(self.networks["denoiser"](noisy), x)
        self._update(self.optimizers["denoiser"], loss)
        return loss.detach()[None]

    def preview(self, generator, fixed):
        return generator(fixed.images[:16]).clamp(-1, 1), 8

    def synthesize(self, generator, n, seed, source):
        return generator(source.images[:n]).clamp(-1, 1)


@pytest.fixture
def denoise_model(monkeypatch):
    monkeypatch.setitem(steps_module.STEPS, "denoise", DenoiseStep)
    monkeypatch.setitem(MODELS, "denoise", ModelSpec(lambda **options: {"denoiser": Denoiser()}, "denoise",
                                                     {"batch_size": 8, "ema_beta": 0.5}, inputs=("images",),
                                                     options=ModelOptions))
    return dict(model="denoise", size=16, log_every=2, sample_every=4, checkpoint_every=4)


def test_a_one_network_step_trains_resumes_and_samples(tmp_path, noise_dataset, denoise_model):
    a, b = resumed_and_uninterrupted(tmp_path, 8, 3, dataset=noise_dataset, **denoise_model)
    assert_same_training_state(a, b)
    assert a["networks"].keys() == a["optimizers"].keys() == a["ema"].keys() == {"denoiser"}
    assert a["sampled"] == "denoiser" and a["sampled_inputs"] == ["images"]
    losses = np.loadtxt(tmp_path / "full" / "losses.csv", delimiter=",", skiprows=1)
    assert losses[-1, 1] < losses[0, 1]  # it learns
    model = load_generator(tmp_path / "full", device="cpu")
    ema = Denoiser()
    ema.load_state_dict(a["ema"]["denoiser"])
    images = translate_images(model, noise_dataset, np.arange(4))
    assert images.shape == (4, 16, 16, 3)
    with torch.no_grad():
        x = torch.as_tensor(np.asarray(noise_dataset.images[:4])).permute(0, 3, 1, 2).float() / 127.5 - 1
        expected = ((ema(x).clamp(-1, 1) + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    assert np.abs(images.astype(int) - expected.astype(int)).max() <= 1  # the EMA copy is what is sampled


def test_model_options_are_refused_for_other_models(tmp_path, noise_dataset):
    with pytest.raises(DermsynthError, match="--direction does not apply to --model dcgan"):
        TrainConfig(model="dcgan", direction="remove").resolve()
    with pytest.raises(DermsynthError, match="--r1-gamma does not apply to --model pgan"):
        TrainConfig(model="pgan", r1_gamma=1.0).resolve()
    # given explicitly (the CLI's `given`), even at its default value
    with pytest.raises(DermsynthError, match="--direction does not apply to --model dcgan"):
        train(TrainConfig(out=str(tmp_path / "r"), size=16, steps=1), dataset=noise_dataset, progress=False,
              given={"direction", "size", "steps"})
    assert not (tmp_path / "r").exists()


def test_every_model_default_is_one_of_its_options():
    common = {f.name for f in __import__("dataclasses").fields(CommonOptions)}
    for name, spec in MODELS.items():
        assert set(spec.defaults) <= common | model_fields(name), name


def test_train_help_groups_options_by_model():
    from click.testing import CliRunner

    from dermsynth.cli import main

    text = CliRunner().invoke(main, ["train", "--help"]).output
    sections = [line for line in text.splitlines() if line.startswith("Options of")]
    assert sections[0] == "Options of every model:" and len(sections) == 1 + len(MODELS)
    pgan = text.split("Options of --model pgan")[1].split("Options of")[0]
    assert "--stable-kimg" in pgan and "--r1-gamma" not in pgan


@pytest.mark.parametrize("code", ["import dermsynth; dermsynth.DermsynthError",
                                  "from dermsynth.cli import main\ntry: main(['--help'])\nexcept SystemExit: pass"])
def test_import_and_help_do_not_load_torch(code):
    check = f"import sys\n{code}\nassert 'torch' not in sys.modules, 'torch was imported'"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
