"""What the trainer tests share: a run resumed part-way against the same run uninterrupted, compared bit for bit."""

from __future__ import annotations

import os
from unittest import mock

import pytest
import torch

from dermsynth.train import TrainConfig, train
from dermsynth.train import trainer as trainer_module


def _equal(a, b, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert set(a) == set(b), f"{where}: keys differ"
        for key in a:
            _equal(a[key], b[key], f"{where}.{key}")
    else:
        assert a == b, f"{where} differs"


def assert_same_training_state(a: dict, b: dict, parts=("networks", "ema")) -> None:
    """Two checkpoints hold bit-identical networks (``parts``; an absent EMA on both sides is equal) and
    optimizer states."""
    for part in parts:
        _equal(a.get(part), b.get(part), part)
    assert a["optimizers"].keys() == b["optimizers"].keys()
    for name in a["optimizers"]:
        _equal(a["optimizers"][name]["state"], b["optimizers"][name]["state"], f"optimizer {name} state")


class _StopAfter:
    """Stands in for the trainer's signal handler: asks the loop to stop after ``steps`` steps, as a Ctrl-C
    would (the loop reads ``requested`` once per step)."""

    def __init__(self, steps: int) -> None:
        self.left, self.signum = steps, None

    def __enter__(self) -> "_StopAfter":
        return self

    def __exit__(self, *exc) -> None:
        return None

    @property
    def requested(self) -> bool:
        self.left -= 1
        return self.left <= 0


def resumed_and_uninterrupted(tmp_path, steps: int, split_at: int, **options) -> tuple[dict, dict]:
    """Train ``steps`` steps at once, and the same run interrupted after ``split_at`` steps then resumed with
    ``--resume``; both final checkpoints. (Interrupted, not shortened: a schedule over the run's length, such
    as a linear learning-rate decay, must see the same length in both.)

    ``options``: TrainConfig fields, plus ``dataset``/``dataset_b`` for :func:`train`."""
    data = {k: options.pop(k) for k in ("dataset", "dataset_b") if k in options}
    full, split = tmp_path / "full", tmp_path / "split"
    train(TrainConfig(out=str(full), steps=steps, **options), progress=False, **data)
    with mock.patch.object(trainer_module, "_StopOnSignal", lambda: _StopAfter(split_at)):
        with pytest.raises(trainer_module.TrainingInterrupted, match=f"at step {split_at};"):
            train(TrainConfig(out=str(split), steps=steps, **options), progress=False, **data)
    train(TrainConfig(out=str(split), steps=steps, **options), progress=False, resume=True, **data)
    return tuple(torch.load(p / "latest.pt", weights_only=True) for p in (full, split))


def signal_during_step(monkeypatch, call: int, signum: int):
    """Send ``signum`` to this process in the middle of the ``call``-th training step (GANStep.__call__);
    returns the real ``__call__`` so a test can put it back before resuming."""
    real_call = trainer_module.GANStep.__call__
    calls = {"n": 0}

    def call_then_signal(self, *args):
        calls["n"] += 1
        if calls["n"] == call:
            os.kill(os.getpid(), signum)
        return real_call(self, *args)

    monkeypatch.setattr(trainer_module.GANStep, "__call__", call_then_signal)
    return real_call
