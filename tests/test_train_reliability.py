"""The trainer under faults (issue 14): divergence, two runs into one folder, SIGTERM, changed options on resume,
a checkpoint before the first log row."""

import fcntl
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from _runs import assert_same_training_state, signal_during_step
from dermsynth.train import RunLocked, TrainConfig, TrainingDiverged, TrainingInterrupted, train
from dermsynth.train import trainer as trainer_module

TINY = dict(size=16, batch_size=16, width=8, z_dim=16, log_every=5, sample_every=10, checkpoint_every=10,
            conditional=True, ema_beta=0.9)


def _finite(path) -> bool:
    state = torch.load(path, weights_only=True)
    return all(torch.isfinite(t).all() for part in ("generator", "discriminator") for t in state["networks"][part].values()
               if isinstance(t, torch.Tensor))


def test_divergence_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, noise_dataset):
    out = tmp_path / "nan"
    pgan = dict(model="pgan", size=16, width=8, z_dim=16, stable_kimg=0.2, fade_kimg=0.2, log_every=2,
                sample_every=100, checkpoint_every=2)
    train(TrainConfig(out=str(out), steps=4, **pgan), dataset=noise_dataset, progress=False)
    assert torch.load(out / "latest.pt", weights_only=True)["step"] == 4
    with pytest.raises(TrainingDiverged, match=r"not finite at step.*latest.pt \(step 4\) is kept"):
        train(TrainConfig(out=str(out), steps=60, lr_g=1e6, lr_d=1e6, **pgan), dataset=noise_dataset,
              progress=False, resume=True)
    state = torch.load(out / "latest.pt", weights_only=True)
    assert state["step"] == 4 and _finite(out / "latest.pt")  # never overwritten with NaN weights


def test_non_finite_weights_are_refused_at_the_checkpoint_even_between_log_rows(tmp_path, noise_dataset,
                                                                                 monkeypatch):
    real_call = trainer_module.GANStep.__call__
    calls = {"n": 0}

    def poison_at_step_3(self, batch):
        calls["n"] += 1
        stats = real_call(self, batch)
        if calls["n"] == 3:
            with torch.no_grad():
                next(self.G_module.parameters()).fill_(float("nan"))
            return stats
        return stats

    monkeypatch.setattr(trainer_module.GANStep, "__call__", poison_at_step_3)
    out = tmp_path / "poisoned"
    # logs every 50 steps, checkpoints every 2: the step-4 checkpoint must see the NaN itself
    with pytest.raises(TrainingDiverged, match=r"not finite at step 4; the last good checkpoint .* \(step 2\)"):
        train(TrainConfig(out=str(out), steps=8, **{**TINY, "log_every": 50, "checkpoint_every": 2}),
              dataset=noise_dataset, progress=False)
    assert torch.load(out / "latest.pt", weights_only=True)["step"] == 2 and _finite(out / "latest.pt")


def test_checkpoint_before_the_first_log_row(tmp_path, noise_dataset):
    out = tmp_path / "early"
    train(TrainConfig(out=str(out), steps=3, **{**TINY, "log_every": 50, "checkpoint_every": 1}),
          dataset=noise_dataset, progress=False)
    assert torch.load(out / "latest.pt", weights_only=True)["step"] == 3
    assert (out / "losses.csv").read_text().startswith("step,d_loss,g_loss,d_real,d_fake,img_per_s")


def test_a_second_run_into_a_locked_folder_is_refused(tmp_path, noise_dataset):
    out = tmp_path / "busy"
    out.mkdir()
    with open(out / ".lock", "a+") as held:  # another run holds the folder
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("4242")
        held.flush()
        with pytest.raises(RunLocked, match=r"in use by another training run \(pid 4242\)"):
            train(TrainConfig(out=str(out), steps=2, **TINY), dataset=noise_dataset, progress=False)
    assert not (out / "latest.pt").exists() and not (out / "losses.csv").exists()
    # released: the folder is usable again
    train(TrainConfig(out=str(out), steps=2, **TINY), dataset=noise_dataset, progress=False)


def test_the_lock_of_a_killed_run_is_taken_over(tmp_path, noise_dataset):
    out = tmp_path / "stale"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, sys, time\n"
        f"f = open({str(out / '.lock')!r}, 'a+'); fcntl.flock(f, fcntl.LOCK_EX); f.write('1'); f.flush()\n"
        "print('locked', flush=True); time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    holder.kill()  # kill -9: no clean-up ran; the lock file stays behind
    holder.wait()
    assert (out / ".lock").exists()
    train(TrainConfig(out=str(out), steps=2, **TINY), dataset=noise_dataset, progress=False)
    assert torch.load(out / "latest.pt", weights_only=True)["step"] == 2


def test_sigterm_checkpoints_and_resumes_exactly(tmp_path, noise_dataset, monkeypatch):
    full, stopped = tmp_path / "full", tmp_path / "stopped"
    train(TrainConfig(out=str(full), steps=20, **TINY), dataset=noise_dataset, progress=False)
    # SIGTERM arrives in the middle of step 6 (timeout, SLURM, Kubernetes)
    real_call = signal_during_step(monkeypatch, 6, signal.SIGTERM)
    with pytest.raises(TrainingInterrupted, match="SIGTERM at step 6") as info:
        train(TrainConfig(out=str(stopped), steps=20, **TINY), dataset=noise_dataset, progress=False)
    assert info.value.exit_code == 143
    assert torch.load(stopped / "latest.pt", weights_only=True)["step"] == 6
    monkeypatch.setattr(trainer_module.GANStep, "__call__", real_call)
    train(TrainConfig(out=str(stopped), steps=20, **TINY), dataset=noise_dataset, progress=False, resume=True)
    a, b = (torch.load(p / "latest.pt", weights_only=True) for p in (full, stopped))
    assert_same_training_state(a, b)


def test_cli_exits_143_on_sigterm_with_a_resumable_checkpoint(tmp_path):
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "dermsynth.cli", "train", "--data", "phantom:64", "--size", "16", "--width", "8",
           "--z-dim", "16", "--batch-size", "16", "--steps", "100000", "--log-every", "1", "--checkpoint-every",
           "100000", "--sample-every", "100000", "--device", "cpu", "--out", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while time.time() < deadline and not ((out / "losses.csv").exists()
                                          and len((out / "losses.csv").read_text().splitlines()) > 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "SIGTERM at step" in err and "Traceback" not in err
    step = torch.load(out / "latest.pt", weights_only=True)["step"]
    assert step >= 2


def test_resume_refuses_options_that_fix_the_run_and_records_the_others(tmp_path, noise_dataset):
    out = tmp_path / "run"
    train(TrainConfig(out=str(out), steps=10, **TINY), dataset=noise_dataset, progress=False)
    for change, option in ((dict(size=32), "--size 32 (the run has 16)"), (dict(model="pgan"), "--model pgan"),
                           (dict(width=16), "--width 16")):
        with pytest.raises(Exception, match=r"--resume cannot change .*" + option.replace("(", r"\(").replace(")", r"\)")):
            train(TrainConfig(out=str(out), steps=20, **{**TINY, **change}), dataset=noise_dataset,
                  progress=False, resume=True)
    train(TrainConfig(out=str(out), steps=20, **{**TINY, "lr_g": 5e-4, "log_every": 2}), dataset=noise_dataset,
          progress=False, resume=True)
    config = json.loads((out / "config.json").read_text())
    assert config["lr_g"] == 5e-4 and config["log_every"] == 2
    changed = {c["option"]: c for c in config["resume_changes"]}
    assert changed["lr_g"] == {"option": "lr_g", "from": 2e-4, "to": 5e-4, "step": 10}
    assert changed["log_every"]["step"] == 10
    state = torch.load(out / "latest.pt", weights_only=True)
    assert state["optimizers"]["generator"]["param_groups"][0]["lr"] == 5e-4
    assert state["optimizers"]["discriminator"]["param_groups"][0]["lr"] == 2e-4
    rows = [r.split(",")[0] for r in (out / "losses.csv").read_text().splitlines()[1:]]
    assert rows == ["5", "10", "12", "14", "16", "18", "20"]  # the new cadence from step 10 on
