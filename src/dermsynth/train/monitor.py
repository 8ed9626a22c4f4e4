"""Discriminator over-fitting monitor (seed 003, Fig. 6).

A set of real images is held out of training (whole lesion groups, so no lesion is on both sides). While
training, the discriminator's mean output on a fixed sample of training images and on the held-out images
is logged; a growing gap means D memorises its training set rather than learning what real lesions are.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from dermsynth.data.dataset import LesionDataset
from dermsynth.errors import DermsynthError


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
                 max_images: int = 256, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        pick = lambda d: np.sort(rng.choice(len(d), min(max_images, len(d)), replace=False))  # noqa: E731
        self.sets = []
        for d in (train, held_out):
            idx = pick(d)
            x = torch.from_numpy(np.asarray(d.images[idx])).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1
            self.sets.append((x, torch.from_numpy(d.labels[idx]).to(device)))

    @torch.no_grad()
    def measure(self, D: nn.Module, conditional: bool, autocast, batch_size: int = 64) -> tuple[float, float]:
        """(mean D logit on training images, on held-out images).

        D runs in training mode, i.e. on batches of only real images as it sees them during training; its
        batch-norm running statistics are restored afterwards so monitoring never changes training.
        """
        buffers = {k: v.clone() for k, v in D.named_buffers()}
        means = []
        for x, y in self.sets:
            with autocast:
                logits = torch.cat([D(xb, yb if conditional else None).float()
                                    for xb, yb in zip(x.split(batch_size), y.split(batch_size))])
            means.append(logits.mean())
        with torch.no_grad():
            for k, v in D.named_buffers():
                v.copy_(buffers[k])
        return tuple(torch.stack(means).tolist())
