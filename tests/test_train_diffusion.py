"""`dermsynth train --model ddpm` in the shared trainer (issue 19 §2): the step owns one denoiser, its AdamW and its
EMA; the preset's recipe as defaults; warm-up; exact resume; in-training metrics with the sampler stated; sampling
through `dermsynth sample`; options of the other family refused in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from dermsynth.errors import DermsynthError
from dermsynth.metrics.registry import TrainingMetrics
from dermsynth.sample import load_generator, sample_images, write_samples
from dermsynth.train import TrainConfig, train

from _runs import assert_same_training_state, resumed_and_uninterrupted
from test_cli import assert_one_line_error, run_cli

# the tiny preset at half width (8-16-16 channels), 16 px; previews and metrics with 4 DDIM steps
TINY = dict(model="ddpm", preset="tiny", width=16, size=16, batch_size=8, log_every=2, sample_every=100,
            checkpoint_every=100, sampling_steps=4, warmup=3)


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory):
    """A class-conditional DDPM trained 6 steps on 3 classes of noise images (shared by the sampling tests)."""
    from conftest import labelled_noise

    out = tmp_path_factory.mktemp("ddpm") / "run"
    train(TrainConfig(out=str(out), steps=6, conditional=True, **TINY), dataset=labelled_noise(32), progress=False)
    return out


def test_a_run_owns_one_denoiser_with_its_ema_and_records_its_recipe(conditional_run):
    state = torch.load(conditional_run / "latest.pt", weights_only=True)
    assert state["sampled"] == "denoiser" and set(state["networks"]) == {"denoiser"}
    assert set(state["ema"]) == {"denoiser"} and set(state["optimizers"]) == {"denoiser"}
    assert state["model_options"]["preset"] == "tiny" and state["model_options"]["num_classes"] == 3
    header = (conditional_run / "losses.csv").read_text().splitlines()[0]
    assert header == "step,mse_loss,grad_norm,img_per_s"
    cfg = json.loads((conditional_run / "config.json").read_text())
    # the tiny preset trains as DDPM's CIFAR-10 model: Adam 2e-4, EMA 0.9999, clip 1; label dropout 0.1
    assert (cfg["lr"], cfg["beta1"], cfg["beta2"], cfg["weight_decay"]) == (2e-4, 0.9, 0.999, 0.0)
    assert (cfg["ema_beta"], cfg["grad_clip"], cfg["p_uncond"], cfg["sampler"]) == (0.9999, 1.0, 0.1, "ddim")
    # warm-up: after 6 of 3 warm-up steps the full rate, after 2 of 4 half of it
    assert state["optimizers"]["denoiser"]["param_groups"][0]["lr"] == pytest.approx(2e-4)


def test_the_learning_rate_warms_up_linearly(tmp_path, noise_dataset):
    train(TrainConfig(out=str(tmp_path / "run"), steps=2, **{**TINY, "warmup": 4}), dataset=noise_dataset,
          progress=False)
    state = torch.load(tmp_path / "run" / "latest.pt", weights_only=True)
    assert state["optimizers"]["denoiser"]["param_groups"][0]["lr"] == pytest.approx(2e-4 * 2 / 4)


@pytest.mark.parametrize("size, recipe", [
    (32, (2e-4, 128, 0.9, 0.0, 5000)),      # DDPM, CIFAR-10
    (64, (1e-4, 16, 0.95, 1e-6, 500)),      # diffusers' unconditional example
    (256, (2e-5, 64, 0.9, 0.0, 5000)),      # DDPM, 256 px
])
def test_defaults_are_the_presets_sources_recipes(size, recipe):
    cfg = TrainConfig(model="ddpm", size=size).resolve()
    assert (cfg.lr, cfg.batch_size, cfg.beta1, cfg.weight_decay, cfg.warmup) == recipe
    assert (cfg.ema_beta, cfg.grad_clip, cfg.p_uncond, cfg.sampling_steps) == (0.9999, 1.0, 0.0, 50)


def test_resume_reproduces_the_uninterrupted_run_bit_exactly(tmp_path, noise_dataset):
    # interrupted at step 2, inside the 3-step warm-up and at a log row (rows average the steps since the last one)
    full, split = resumed_and_uninterrupted(tmp_path, steps=6, split_at=2, conditional=True, dataset=noise_dataset,
                                            **TINY)
    assert_same_training_state(full, split)
    assert full["step_state"] == split["step_state"]
    losses = [[line.rsplit(",", 1)[0] for line in (tmp_path / run / "losses.csv").read_text().splitlines()]
              for run in ("full", "split")]  # every column but the speed
    assert losses[0] == losses[1] and len(losses[0]) == 4


def test_metrics_during_training_state_the_sampler_and_keep_best(tmp_path, noise_dataset):
    out = tmp_path / "run"
    metrics = TrainingMetrics(names=["swd"], real=noise_dataset, n_images=16, device="cpu", seed=0)
    train(TrainConfig(out=str(out), steps=4, metrics="swd", metric_every=0.016, metric_images=16, **TINY),
          dataset=noise_dataset, progress=False, metrics=metrics)
    lines = (out / "metrics.csv").read_text().strip().splitlines()
    assert lines[0] == "step,kimg,swd,sampler,sampling_steps,guidance,sample_s_per_img"
    rows = [dict(zip(lines[0].split(","), line.split(","))) for line in lines[1:]]
    assert [r["step"] for r in rows] == ["2", "4"]
    assert all(r["sampler"] == "ddim" and r["sampling_steps"] == "4" and float(r["sample_s_per_img"]) > 0
               for r in rows)
    images, _ = sample_images(load_generator(out / "best.pt"), 3, seed=0)
    assert images.shape == (3, 16, 16, 3)


def test_sample_writes_the_manifest_and_an_image_depends_on_seed_and_index_only(tmp_path, conditional_run):
    kwargs = dict(class_name="NV", seed=4, sampler="ddpm", sampling_steps=5, guidance=2.0, progress=False)
    write_samples(conditional_run, 5, tmp_path / "a", batch_size=5, **kwargs)
    write_samples(conditional_run, 5, tmp_path / "b", batch_size=2, **kwargs)
    lines = (tmp_path / "a" / "manifest.csv").read_text().strip().splitlines()
    assert lines[0] == "file,class,seed,truncation,psi,checkpoint,sampler,sampling_steps,guidance"
    assert lines[1].split(",")[1] == "NV" and lines[1].split(",")[-3:] == ["ddpm", "5", "2.0"]
    for i in range(5):
        name = f"sample_4_{i:06d}.png"
        assert np.array_equal(np.asarray(Image.open(tmp_path / "a" / name)), np.asarray(Image.open(tmp_path / "b" / name)))
    # without --class: one label per image, drawn from (seed, index) as well
    write_samples(conditional_run, 4, tmp_path / "c", seed=4, sampling_steps=2, batch_size=4, progress=False)
    write_samples(conditional_run, 4, tmp_path / "d", seed=4, sampling_steps=2, batch_size=3, progress=False)
    manifest = (tmp_path / "c" / "manifest.csv").read_text()
    assert manifest == (tmp_path / "d" / "manifest.csv").read_text()
    assert len({line.split(",")[1] for line in manifest.strip().splitlines()[1:]}) > 1  # not one class for all
    for i in range(4):
        name = f"sample_4_{i:06d}.png"
        assert np.array_equal(np.asarray(Image.open(tmp_path / "c" / name)), np.asarray(Image.open(tmp_path / "d" / name)))


def test_options_of_the_other_family_are_refused(tmp_path, conditional_run):
    with pytest.raises(DermsynthError, match="--truncation applies to GANs"):
        write_samples(conditional_run, 2, tmp_path / "x", truncation=1.0, progress=False)
    with pytest.raises(DermsynthError, match="--sampling-steps must be in"):
        write_samples(conditional_run, 2, tmp_path / "x", sampling_steps=2000, progress=False)
    for cfg, message in [
        (dict(model="ddpm", loss="wgan"), "--loss does not apply to --model ddpm"),
        (dict(model="ddpm", z_dim=32), "--z-dim does not apply to --model ddpm"),
        (dict(model="dcgan", sampler="ddpm"), "--sampler does not apply to --model dcgan"),
        (dict(model="dcgan", guidance=3.0), "--guidance does not apply to --model dcgan"),
        (dict(model="ddpm", guidance=3.0), "--guidance .* needs a class-conditional model"),
        (dict(model="ddpm", p_uncond=0.2), "--p-uncond applies to class-conditional models"),
        (dict(model="ddpm", sampling_steps=20, timesteps=10), "--sampling-steps must be in \\[1, 10\\]"),
        (dict(model="ddpm", preset="huge"), "unknown --preset .huge. for --model ddpm; available: auto, ddpm-32"),
        (dict(model="dcgan", preset="zhu2017"), "--preset does not apply to --model dcgan"),
    ]:
        with pytest.raises(DermsynthError, match=message):
            TrainConfig(**cfg).resolve()


def test_cli_trains_samples_and_refuses_a_gan_option_in_one_line(tmp_path):
    run = tmp_path / "run"
    proc = run_cli("train", "--model", "ddpm", "--preset", "tiny", "--width", 16, "--size", 16, "--steps", 2,
                   "--batch-size", 4, "--phantom-n", 16, "--sampling-steps", 2, "--out", run, "--quiet")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("sample", run, "--n", 2, "--sampler", "dpm-solver", "--sampling-steps", 3, "--out",
                   tmp_path / "s", "--quiet")
    assert proc.returncode == 0, proc.stderr and (tmp_path / "s" / "sample_0_000001.png").is_file()
    assert_one_line_error(run_cli("sample", run, "--n", 2, "--psi", 0.5, "--out", tmp_path / "t"), "--psi applies to GANs")


def test_resume_may_change_the_learning_rate(tmp_path, noise_dataset):
    out = tmp_path / "run"
    train(TrainConfig(out=str(out), steps=2, **TINY), dataset=noise_dataset, progress=False)
    train(TrainConfig(out=str(out), steps=3, **{**TINY, "lr": 1e-5}), dataset=noise_dataset, progress=False,
          resume=True, given={"steps", "lr"})
    state = torch.load(out / "latest.pt", weights_only=True)
    assert state["optimizers"]["denoiser"]["param_groups"][0]["lr"] == pytest.approx(1e-5)  # warmed up: 3 of 3
    assert json.loads((out / "config.json").read_text())["lr"] == 1e-5


def test_two_ranks_train_as_one_process_with_the_same_global_batch(tmp_path, noise_dataset):
    """Data-parallel (2 CPU processes, gloo): the step's draws (t, noise, label dropout) are made for the global
    batch and sharded as the rows are, so both ranks hold the same bits and match one process up to summation
    order."""
    from test_ddp import _run_ranks

    cfg = dict(TINY, conditional=True, device="cpu", bf16=False, steps=4)
    ranks = _run_ranks(2, {**cfg, "out": str(tmp_path / "ddp")}, noise_dataset, tmp_path / "w")
    assert set(ranks[0]) == {"denoiser", "generator_ema"}  # the dump names the EMA copy as the GAN test does
    for part in ranks[0]:
        for name, x in ranks[0][part].items():
            assert torch.equal(x, ranks[1][part][name]), f"{part}.{name}"
    train(TrainConfig(out=str(tmp_path / "single"), **cfg), dataset=noise_dataset, progress=False)
    single = torch.load(tmp_path / "single" / "latest.pt", weights_only=True)
    ddp = torch.load(tmp_path / "ddp" / "latest.pt", weights_only=True)
    # Adam's first steps are about lr * sign(gradient): where a gradient is ~0, float summation order may flip its
    # sign, so an element may differ by up to 2 lr per step; the typical element agrees closely (as test_ddp)
    lr = 2e-4
    for part in ("networks", "ema"):
        diff = torch.cat([(ddp[part]["denoiser"][k] - x).abs().flatten() for k, x in single[part]["denoiser"].items()
                          if x.is_floating_point()])
        assert diff.max() <= 2 * lr * 4 and diff.median() <= lr / 10, (part, diff.max(), diff.median())


def test_augment_takes_a_ddpm_checkpoint_as_a_synthetic_source(conditional_run):
    from dermsynth.classify.synthetic import GeneratorSource, open_source

    source = open_source(conditional_run)
    assert isinstance(source, GeneratorSource) and source.class_names == ["MEL", "NV", "BCC"]
    drawn = source.draw(np.array([0, 2, 1]), source.class_names, 16, seed=5)
    assert drawn.images.shape == (3, 16, 16, 3) and drawn.labels.tolist() == [1, 1, 2]
    assert np.array_equal(drawn.images, source.draw(np.array([0, 2, 1]), source.class_names, 16, seed=5).images)
    with pytest.raises(DermsynthError, match="--truncation applies to GANs"):
        open_source(conditional_run, truncation=0.5)


def test_augment_samples_a_diffusion_source_with_the_sampler_asked_for(conditional_run, tmp_path):
    """augment --sampler / --sampling-steps / --guidance reach a diffusion source, are recorded in its description
    (results.json), change its images, and are refused for a sample folder and the phantom source (a GAN: below)."""
    from conftest import labelled_noise
    from dermsynth.classify.experiment import run_augment_experiment
    from dermsynth.classify.experiment_config import AugmentExperimentConfig
    from dermsynth.classify.synthetic import open_source

    rows, names = np.array([0, 2, 1]), ["MEL", "NV", "BCC"]
    default = open_source(conditional_run)
    ancestral = open_source(conditional_run, sampler="ddpm", sampling_steps=3, guidance=2.0)
    assert default.describe()["sampling"] == {"sampler": "ddim", "steps": 50, "guidance": 1.0}
    assert ancestral.describe()["sampling"] == {"sampler": "ddpm", "steps": 3, "guidance": 2.0}
    assert not np.array_equal(default.draw(rows, names, 16, seed=5).images,
                              ancestral.draw(rows, names, 16, seed=5).images)
    with pytest.raises(DermsynthError, match="--sampling-steps must be in"):
        open_source(conditional_run, sampler="ddpm", sampling_steps=5000)
    folder = tmp_path / "samples"
    folder.mkdir()
    (folder / "manifest.csv").write_text("file,class\na.png,MEL\n")
    for spec in (folder, "phantom"):
        with pytest.raises(DermsynthError, match="--sampler applies to checkpoints only"):
            open_source(spec, sampler="ddpm")

    cfg = AugmentExperimentConfig(out=str(tmp_path / "aug"), size=16, conditions=["real", "real+synth:1"], seeds=1,
                                  epochs=1, synthetic=str(conditional_run), sampler="ddpm", sampling_steps=2,
                                  device="cpu")
    result = run_augment_experiment(cfg, dataset=labelled_noise(48), progress=False)
    saved = json.loads((tmp_path / "aug" / "results.json").read_text())
    assert result.results and saved["synthetic_source"]["sampling"] == {"sampler": "ddpm", "steps": 2, "guidance": 1.0}


def test_augment_refuses_a_diffusion_sampler_for_a_gan(tmp_path, noise_dataset):
    from dermsynth.classify.synthetic import open_source

    gan = train(TrainConfig(out=str(tmp_path / "gan"), model="dcgan", size=16, width=8, z_dim=16, batch_size=16,
                            steps=1), dataset=noise_dataset, progress=False).checkpoint
    with pytest.raises(DermsynthError, match="--sampler applies to diffusion models"):
        open_source(gan, sampler="ddpm", class_name="MEL")
