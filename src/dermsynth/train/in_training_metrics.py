"""The in-training metrics a run's configuration names (``--metrics``), built by :func:`~dermsynth.train.train`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dermsynth.data.prepare import load_dataset
from dermsynth.data.splits import split_part
from dermsynth.metrics.registry import TrainingMetrics

if TYPE_CHECKING:
    from dermsynth.train.config import TrainConfig


def in_training_metrics(cfg: TrainConfig) -> TrainingMetrics:
    """``cfg.metrics`` of a resolved config, against ``--metric-real`` or else the training images themselves
    (only the ``train`` part of ``--split``, the images the generator is trained on)."""
    real = load_dataset(cfg.metric_real or cfg.data or f"phantom:{cfg.phantom_n}", size=cfg.size)
    if cfg.split is not None and cfg.metric_real is None:
        real = split_part(real, cfg.split, "train")
    return TrainingMetrics(names=cfg.metrics, real=real, n_images=cfg.metric_images, device=cfg.device,
                           seed=cfg.seed)
