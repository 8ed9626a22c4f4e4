"""Metrics during training: metrics.csv, best.pt kept by the first metric, resume keeps the history; TensorBoard."""

import math

import numpy as np
import pytest
import torch

from dermsynth.data.phantom import generate_phantom
from dermsynth.data.prepare import load_dataset
from dermsynth.errors import DermsynthError
from dermsynth.metrics.registry import TrainingMetrics
from dermsynth.sample import load_generator, sample_images
from dermsynth.train import TrainConfig, train

CFG = dict(size=16, batch_size=16, width=8, z_dim=16, log_every=5, sample_every=100, checkpoint_every=100,
           metrics="swd", metric_every=0.16, metric_images=64)  # a metric row every 10 steps


@pytest.fixture(scope="module")
def phantom():
    return generate_phantom(n=128, size=16, seed=0)


class Recording:
    """Wraps TrainingMetrics, recording the images each evaluation was given."""

    def __init__(self, inner):
        self.inner, self.names, self.calls = inner, inner.names, []

    def __call__(self, sample_fn):
        values = self.inner(lambda n, seed: self._keep(sample_fn(n, seed)))
        return values

    def _keep(self, images):
        self.calls.append(images)
        return images


def _rows(path):
    lines = path.read_text().strip().splitlines()
    return lines[0].split(","), [dict(zip(lines[0].split(","), r.split(","))) for r in lines[1:]]


def test_metrics_csv_best_snapshot_and_resume(tmp_path, phantom):
    out = tmp_path / "run"
    metrics = Recording(TrainingMetrics(names=["swd"], real=phantom, n_images=64, device="cpu", seed=0))
    train(TrainConfig(out=str(out), steps=30, **CFG), dataset=phantom, progress=False, metrics=metrics)
    header, rows = _rows(out / "metrics.csv")
    assert header == ["step", "kimg", "swd"] and [r["step"] for r in rows] == ["10", "20", "30"]
    assert all(img.shape == (64, 16, 16, 3) and img.dtype == np.uint8 for img in metrics.calls)
    swds = [float(r["swd"]) for r in rows]
    best_step = int(rows[int(np.argmin(swds))]["step"])
    best = torch.load(out / "best.pt", weights_only=True)
    assert best["step"] == best_step and math.isclose(best["best_metric"], min(swds), rel_tol=1e-5)
    assert (out / "metrics.png").is_file()
    # best.pt is an ordinary checkpoint: sample from it
    images, _ = sample_images(load_generator(out / "best.pt"), 8, seed=0)
    assert images.shape == (8, 16, 16, 3)
    # the same images are scored at every evaluation only if the generator did not change: it did
    assert not np.array_equal(metrics.calls[0], metrics.calls[-1])

    # resume: the history is kept and continues; the metric of a step is what an uninterrupted run gives
    full = tmp_path / "full"
    train(TrainConfig(out=str(full), steps=40, **CFG), dataset=phantom, progress=False,
          metrics=TrainingMetrics(names=["swd"], real=phantom, n_images=64, device="cpu", seed=0))
    train(TrainConfig(out=str(out), steps=40, **CFG), dataset=phantom, progress=False, resume=True,
          metrics=TrainingMetrics(names=["swd"], real=phantom, n_images=64, device="cpu", seed=0))
    assert _rows(out / "metrics.csv") == _rows(full / "metrics.csv")
    assert torch.load(out / "best.pt", weights_only=True)["step"] == torch.load(full / "best.pt", weights_only=True)["step"]


def test_train_builds_the_metrics_its_config_names(tmp_path, phantom):
    """Without ``metrics=``, train() scores against the data its config names (here ``phantom:128``), exactly as
    the same TrainingMetrics built by hand."""
    cfg = dict(steps=20, phantom_n=128, **CFG)
    train(TrainConfig(out=str(tmp_path / "own"), **cfg), dataset=phantom, progress=False)
    real = load_dataset("phantom:128", size=16)
    train(TrainConfig(out=str(tmp_path / "given"), **cfg), dataset=phantom, progress=False,
          metrics=TrainingMetrics(names=["swd"], real=real, n_images=64, device="cpu", seed=0))
    header, rows = _rows(tmp_path / "own" / "metrics.csv")
    assert header == ["step", "kimg", "swd"] and [r["step"] for r in rows] == ["10", "20"]
    assert (header, rows) == _rows(tmp_path / "given" / "metrics.csv")
    with pytest.raises(DermsynthError, match="metric 'prdc' cannot select a snapshot"):
        train(TrainConfig(out=str(tmp_path / "bad"), **{**cfg, "metrics": "prdc"}), dataset=phantom, progress=False)


def test_tensorboard_logs_statistics_grids_and_metrics(tmp_path, phantom):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    out = tmp_path / "tb"
    train(TrainConfig(out=str(out), steps=20, tensorboard=True, **{**CFG, "sample_every": 10}), dataset=phantom,
          progress=False, metrics=TrainingMetrics(names=["swd"], real=phantom, n_images=64, device="cpu", seed=0))
    acc = event_accumulator.EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"train/d_loss", "train/g_loss", "metrics/swd"} <= set(tags["scalars"]) and "samples" in tags["images"]
    d_loss = [e.value for e in acc.Scalars("train/d_loss")]
    csv_d_loss = [float(r["d_loss"]) for r in _rows(out / "losses.csv")[1]]
    np.testing.assert_allclose(d_loss, csv_d_loss, rtol=1e-4)
    assert [e.step for e in acc.Scalars("metrics/swd")] == [10, 20]
