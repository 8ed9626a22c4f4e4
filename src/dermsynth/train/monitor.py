"""Discriminator over-fitting monitor (Furger et al. 2020, Fig. 6).

A set of real images is held out of training (whole lesion groups, so no lesion is on both sides). While
training, the discriminator's mean output on a fixed sample of training images and on the held-out images
is logged; a growing gap means D memorises its training set rather than learning what real lesions are.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from dermsynth.data.dataset import LesionDataset
from dermsynth.errors import DermsynthError
from dermsynth.data.batch import BATCH_FIELD_NAMES, Batch, batch_from_dataset
from dermsynth.train.steps import TrainStep


def split_holdout(data: LesionDataset, n: int, seed: int) -> tuple[LesionDataset, LesionDataset]:
    """Hold out whole groups totalling at least ``n`` images (seeded); returns (train, held_out)."""
    groups = np.asarray(data.groups)
    unique = np.unique(groups)
    np.random.default_rng(seed).shuffle(unique)
    sizes = {g: c for g, c in zip(*np.unique(groups, return_counts=True))}
    chosen, count = [], 0
    for g in unique:
        if count >= n:
            break
        chosen.append(g)
        count += sizes[g]
    held = np.isin(groups, chosen)
    if held.all() or not held.any():
        raise DermsynthError(f"cannot hold out {n} of {len(data)} images for the over-fitting monitor")
    return data.subset(np.flatnonzero(~held)), data.subset(np.flatnonzero(held))


class OverfitMonitor:
    """Mean discriminator output on fixed training and held-out real images."""

    def __init__(self, train: LesionDataset, held_out: LesionDataset, device: torch.device,
                 needs: Iterable[str] = ("images", "labels"), max_images: int = 256, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.sets = [batch_from_dataset(d, np.sort(rng.choice(len(d), min(max_images, len(d)), replace=False)),
                                        needs, device) for d in (train, held_out)]

    @torch.no_grad()
    def measure(self, step: TrainStep, batch_size: int = 64) -> tuple[float, float]:
        """(mean D logit on training images, on held-out images), as ``step.real_logits`` scores them.

        D runs in training mode, i.e. on batches of only real images as it sees them during training; its
        batch-norm running statistics are restored afterwards so monitoring never changes training.
        """
        D = step.D_module
        buffers = {k: v.clone() for k, v in D.named_buffers()}
        means = []
        for batch in self.sets:
            with step.autocast:
                logits = torch.cat([step.real_logits(part).float().reshape(-1) for part in _split(batch, batch_size)])
            means.append(logits.mean())
        for k, v in D.named_buffers():
            v.copy_(buffers[k])
        return tuple(torch.stack(means).tolist())


def _split(batch: Batch, size: int) -> list[Batch]:
    """``batch`` cut into consecutive batches of at most ``size`` rows."""
    n = len(batch)
    return [Batch(**{f: (None if getattr(batch, f) is None or f == "domain_b" else getattr(batch, f)[i:i + size])
                     for f in BATCH_FIELD_NAMES}) for i in range(0, n, size)]
