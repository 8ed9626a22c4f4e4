"""A checkpoint written before the step owned its networks (format ``dermsynth-gan-2``: one generator, one
discriminator, ``opt_g``/``opt_d``) keeps loading, sampling and resuming exactly.

``data/dcgan-format2-step4.pt`` was written by commit 14d266c: a conditional DCGAN (16 px, width 4, z_dim 8,
EMA 0.9) after 4 steps on the ``noise_dataset`` fixture, batch 16.
"""

import hashlib
import shutil
from pathlib import Path

import torch

from _runs import assert_same_training_state
from dermsynth.sample import generate, load_generator, truncated_normal
from dermsynth.train import TrainConfig, train
from dermsynth.checkpoint import load_checkpoint

OLD = Path(__file__).parent / "data" / "dcgan-format2-step4.pt"
CFG = dict(size=16, batch_size=16, width=4, z_dim=8, conditional=True, ema_beta=0.9, log_every=2, sample_every=100,
           checkpoint_every=100, device="cpu")
#: sample_images(load_generator(OLD), 6, seed=5) with the code that wrote OLD
OLD_SAMPLES_SHA256 = "1403489a04b31ad8f6db42da85b8f7bfc924e43db5395510feaba3515e8129d9"


def test_old_checkpoint_samples_as_before():
    # The latents and labels drawn as that code's sample_images drew them (6 latents, then 6 labels, from one
    # generator seeded 5); since issue 18 sample_images draws them a chunk at a time (image i independent of n).
    model = load_generator(OLD, device="cpu")
    gen = torch.Generator().manual_seed(5)
    z = truncated_normal(6, model.z_dim, None, gen)
    labels = torch.randint(len(model.class_names), (6,), generator=gen)
    images = generate(model, z, labels, seed=5)
    assert hashlib.sha256(images.tobytes()).hexdigest() == OLD_SAMPLES_SHA256
    assert labels.tolist() == [1, 1, 0, 2, 2, 2]


def test_old_checkpoint_resumes_bit_exactly(tmp_path, noise_dataset):
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    train(TrainConfig(out=str(full), steps=7, **CFG), dataset=noise_dataset, progress=False)
    resumed.mkdir()
    shutil.copy(OLD, resumed / "latest.pt")
    train(TrainConfig(out=str(resumed), steps=7, **CFG), dataset=noise_dataset, progress=False, resume=True)
    a, b = (load_checkpoint(p) for p in (full, resumed))
    assert a["step"] == b["step"] == 7
    assert_same_training_state(a, b)  # networks, EMA copy and optimizer states, bit for bit


def test_old_checkpoint_reads_in_the_current_layout():
    state = load_checkpoint(OLD)
    assert state["networks"].keys() == state["optimizers"].keys() == {"generator", "discriminator"}
    assert state["ema"].keys() == {"generator"} and state["sampled"] == "generator"
    assert state["sampled_inputs"] == ["z", "labels"] and state["step"] == 4
    assert not {"generator", "discriminator", "generator_ema", "opt_g", "opt_d"} & state.keys()
