"""What the trainer tests share: a run resumed part-way against the same run uninterrupted, compared bit for bit."""

from __future__ import annotations

import torch

from dermsynth.train import TrainConfig, train


def _equal(a, b, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert set(a) == set(b), f"{where}: keys differ"
        for key in a:
            _equal(a[key], b[key], f"{where}.{key}")
    else:
        assert a == b, f"{where} differs"


def assert_same_training_state(a: dict, b: dict, parts=("generator", "discriminator", "generator_ema")) -> None:
    """Two checkpoints hold bit-identical networks (``parts``; an absent EMA on both sides is equal) and Adam
    states."""
    for part in parts:
        _equal(a.get(part), b.get(part), part)
    for part in ("opt_g", "opt_d"):
        _equal(a[part]["state"], b[part]["state"], f"{part} state")


def resumed_and_uninterrupted(tmp_path, steps: int, split_at: int, **options) -> tuple[dict, dict]:
    """Train ``steps`` steps at once, and ``split_at`` steps then ``--resume`` to ``steps``; both final checkpoints.

    ``options``: TrainConfig fields, plus ``dataset``/``dataset_b`` for :func:`train`."""
    data = {k: options.pop(k) for k in ("dataset", "dataset_b") if k in options}
    full, split = tmp_path / "full", tmp_path / "split"
    train(TrainConfig(out=str(full), steps=steps, **options), progress=False, **data)
    train(TrainConfig(out=str(split), steps=split_at, **options), progress=False, **data)
    train(TrainConfig(out=str(split), steps=steps, **options), progress=False, resume=True, **data)
    return tuple(torch.load(p / "latest.pt", weights_only=True) for p in (full, split))
