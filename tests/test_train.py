"""The shared trainer: outputs, bit-exact resume, graceful interruption, bad options."""

import json
import signal
from dataclasses import replace

import numpy as np
import pytest
import torch

from _runs import assert_same_training_state, resumed_and_uninterrupted, signal_during_step
from dermsynth.errors import DermsynthError
from dermsynth.train import TrainConfig, TrainingInterrupted, train
from dermsynth.train import trainer as trainer_module

TINY = dict(size=16, batch_size=16, width=8, z_dim=16, log_every=5, sample_every=10, checkpoint_every=10,
            conditional=True, ema_beta=0.9)


def _weights(path):
    return torch.load(path, weights_only=True)


def _assert_same(a, b):
    assert a["ema"].keys() == b["ema"].keys() == {"generator"}
    assert_same_training_state(a, b)


def test_run_writes_every_promised_output(tmp_path, noise_dataset):
    out = tmp_path / "run"
    result = train(TrainConfig(out=str(out), steps=20, **TINY), dataset=noise_dataset, progress=False)
    assert result.step == 20
    for name in ("latest.pt", "config.json", "data.json", "losses.csv", "losses.png", "real.png"):
        assert (out / name).is_file(), name
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step-0000010.png", "step-0000020.png"]
    config = json.loads((out / "config.json").read_text())
    assert config["steps"] == 20 and config["model"] == "dcgan"
    rows = (out / "losses.csv").read_text().strip().splitlines()
    assert rows[0].startswith("step,d_loss,g_loss") and len(rows) == 1 + 4
    state = torch.load(out / "latest.pt", weights_only=True)
    assert state["step"] == 20 and state["class_names"] == ["a", "b", "c"]


def test_resume_reproduces_uninterrupted_run_bit_exactly(tmp_path, noise_dataset):
    full, split = tmp_path / "full", tmp_path / "split"
    train(TrainConfig(out=str(full), steps=30, **TINY), dataset=noise_dataset, progress=False)
    train(TrainConfig(out=str(split), steps=13, **TINY), dataset=noise_dataset, progress=False)
    train(TrainConfig(out=str(split), steps=30, **TINY), dataset=noise_dataset, progress=False, resume=True)
    _assert_same(_weights(full / "latest.pt"), _weights(split / "latest.pt"))


def test_ctrl_c_saves_a_checkpoint_that_resumes_exactly(tmp_path, noise_dataset, monkeypatch):
    full, interrupted = tmp_path / "full", tmp_path / "interrupted"
    train(TrainConfig(out=str(full), steps=20, **TINY), dataset=noise_dataset, progress=False)

    real_call = signal_during_step(monkeypatch, 7, signal.SIGINT)  # Ctrl-C arrives in the middle of step 7
    with pytest.raises(TrainingInterrupted, match="step 7"):
        train(TrainConfig(out=str(interrupted), steps=20, **TINY), dataset=noise_dataset, progress=False)
    assert torch.load(interrupted / "latest.pt", weights_only=True)["step"] == 7
    monkeypatch.setattr(trainer_module.GANStep, "__call__", real_call)
    train(TrainConfig(out=str(interrupted), steps=20, **TINY), dataset=noise_dataset, progress=False, resume=True)
    _assert_same(_weights(full / "latest.pt"), _weights(interrupted / "latest.pt"))


def test_existing_run_is_never_overwritten_without_resume(tmp_path, noise_dataset):
    out = tmp_path / "run"
    train(TrainConfig(out=str(out), steps=2, **TINY), dataset=noise_dataset, progress=False)
    with pytest.raises(DermsynthError, match="--resume"):
        train(TrainConfig(out=str(out), steps=4, **TINY), dataset=noise_dataset, progress=False)


@pytest.mark.parametrize("change,message", [
    (dict(size=48), "power of two"),
    (dict(batch_size=0), "batch-size"),
    (dict(ema_beta=1.5), "ema-beta"),
    (dict(batch_size=512), "fewer than one batch"),
    (dict(size=32), "16px"),
])
def test_bad_options_get_clear_errors(tmp_path, noise_dataset, change, message):
    cfg = TrainConfig(out=str(tmp_path / "r"), steps=1, **{**TINY, **change})
    with pytest.raises(DermsynthError, match=message):
        train(cfg, dataset=noise_dataset, progress=False)


def test_corrupt_checkpoint_gets_one_line_error(tmp_path, noise_dataset):
    out = tmp_path / "run"
    out.mkdir()
    (out / "latest.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DermsynthError, match="not a readable dermsynth checkpoint"):
        train(TrainConfig(out=str(out), steps=2, **TINY), dataset=noise_dataset, progress=False, resume=True)


def test_overfit_monitor_logs_train_vs_heldout_without_changing_training(tmp_path, noise_dataset):
    """Furger et al. 2020 Fig. 6: D's mean output on training vs held-out reals; monitoring must not alter training."""
    from dermsynth.train.monitor import split_holdout

    train_part, held = split_holdout(noise_dataset, 20, seed=0)
    assert len(held) >= 20 and not set(train_part.groups) & set(held.groups)
    out = tmp_path / "mon"
    train(TrainConfig(out=str(out), steps=20, overfit_holdout=20, **TINY), dataset=noise_dataset, progress=False)
    rows = (out / "overfit.csv").read_text().strip().splitlines()
    assert rows[0] == "step,d_train,d_heldout,gap" and len(rows) == 1 + 4
    step, d_train, d_held, gap = map(float, rows[-1].split(","))
    assert step == 20 and abs(d_train - d_held - gap) < 1e-4
    assert (out / "overfit.png").is_file()
    # The same run without monitoring, on the same training subset, ends with identical weights.
    plain = tmp_path / "plain"
    train(TrainConfig(out=str(plain), steps=20, **TINY), dataset=train_part, progress=False)
    _assert_same(_weights(out / "latest.pt"), _weights(plain / "latest.pt"))


def test_discriminator_overfits_a_tiny_training_set(tmp_path):
    """With 32 training images and many steps, D scores them clearly above held-out reals of the same
    distribution: the monitor shows the effect it exists to show."""
    from dermsynth.data.phantom import generate_phantom

    data = generate_phantom(n=96, size=16, seed=3)
    out = tmp_path / "overfit"
    cfg = TrainConfig(out=str(out), size=16, width=16, z_dim=16, batch_size=16, steps=300, log_every=50,
                      sample_every=1000, checkpoint_every=1000, overfit_holdout=64)
    train(cfg, dataset=data, progress=False)
    gaps = [float(r.split(",")[3]) for r in (out / "overfit.csv").read_text().strip().splitlines()[1:]]
    assert gaps[-1] > 0.4 and gaps[-1] > gaps[0] + 0.4  # seen: -0.04 at step 50 -> 0.86 at step 300


def test_ema_warm_up_follows_the_generator_early_and_reaches_beta():
    from dermsynth.train.trainer import ema_beta_at

    assert ema_beta_at(0.999, 0) == pytest.approx(0.1)
    assert ema_beta_at(0.999, 90) == pytest.approx(0.91)
    assert ema_beta_at(0.999, 10**6) == 0.999
    assert ema_beta_at(0.5, 100) == 0.5
    betas = [ema_beta_at(0.999, t) for t in range(0, 20000, 100)]
    assert betas == sorted(betas)


def test_config_json_records_where_the_run_ran(tmp_path):
    import json

    import torch

    from dermsynth.train import TrainConfig, train

    out = tmp_path / "run"
    train(TrainConfig(out=str(out), size=16, width=4, z_dim=8, batch_size=8, steps=1, phantom_n=16, device="cpu"),
          progress=False)
    from dermsynth.device import cpu_has_bf16

    runtime = json.loads((out / "config.json").read_text())["runtime"]
    # the suite pins float32 (DERMSYNTH_CPU_BF16=0): what ran is recorded beside what the CPU could do
    assert runtime == {"device": "cpu", "torch": torch.__version__, "cpu_threads": torch.get_num_threads(),
                       "cpu_bf16": cpu_has_bf16(), "bf16": False, "channels_last": False}


# --------------------------------------------------------------------------------------------------------
# Resume checks (issue 18): the same data, a length ahead of the run, losses.csv bit for bit
# --------------------------------------------------------------------------------------------------------


def _without_timing(path):
    """losses.csv without its img_per_s column (wall-clock throughput)."""
    return [line.rsplit(",", 1)[0] for line in path.read_text().splitlines()]


def test_resume_refuses_other_data_and_accepts_the_same_folder_spelled_otherwise(tmp_path, monkeypatch):
    from conftest import labelled_noise

    labelled_noise(n=40).save(tmp_path / "imgs")
    labelled_noise(n=41).save(tmp_path / "other")  # another set: 41 images
    monkeypatch.chdir(tmp_path)
    cfg = dict(size=16, batch_size=8, width=4, z_dim=8, log_every=2, sample_every=100, checkpoint_every=100)
    train(TrainConfig(out="run", data="imgs/", steps=2, **cfg), progress=False)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data"] == str(tmp_path / "imgs")
    train(TrainConfig(out="run", data="./imgs", steps=3, **cfg), progress=False, resume=True)  # the same folder
    with pytest.raises(DermsynthError, match=r"--resume: --data .*other is not the data the run was trained on "
                                             r"\(41 images.*the run had 40 images"):
        train(TrainConfig(out="run", data="other", steps=4, **cfg), progress=False, resume=True)
    labelled_noise(n=40).save(tmp_path / "moved")  # the same images elsewhere: accepted, recorded
    train(TrainConfig(out="run", data="moved", steps=4, **cfg), progress=False, resume=True)
    changes = json.loads((tmp_path / "run" / "config.json").read_text())["resume_changes"]
    assert changes[-1] == {"option": "data", "from": str(tmp_path / "imgs"), "to": str(tmp_path / "moved"), "step": 3}
    images = np.asarray(labelled_noise(n=40).images).copy()
    images[0, 0, 0] ^= 1  # one pixel changed under the same path
    replace(labelled_noise(n=40), images=images).save(tmp_path / "moved")
    with pytest.raises(DermsynthError, match="is not the data the run was trained on"):
        train(TrainConfig(out="run", data="moved", steps=5, **cfg), progress=False, resume=True)


def test_resume_to_fewer_steps_than_done_is_an_error(tmp_path, noise_dataset):
    out = tmp_path / "run"
    train(TrainConfig(out=str(out), steps=6, **TINY), dataset=noise_dataset, progress=False)
    before = (out / "config.json").read_text()
    with pytest.raises(DermsynthError, match=r"at step 6, beyond --steps 3; give a longer --steps"):
        train(TrainConfig(out=str(out), steps=3, **TINY), dataset=noise_dataset, progress=False, resume=True)
    assert (out / "config.json").read_text() == before


def test_losses_csv_is_bit_identical_after_a_resume_between_log_rows(tmp_path, noise_dataset):
    # logged every 5 steps, interrupted after step 7: the row of steps 6-10 spans the interruption
    resumed_and_uninterrupted(tmp_path, 20, 7, dataset=noise_dataset, **TINY)
    full, split = (_without_timing(tmp_path / name / "losses.csv") for name in ("full", "split"))
    assert len(full) == 1 + 4 and full == split
