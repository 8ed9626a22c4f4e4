"""Truncation sweep (seed 003, Table 3): a quality metric of one generator across latent truncation thresholds.

For each threshold, ``n`` latents are drawn with the same seed and resampled component-wise into
[-threshold, threshold] (:func:`dermsynth.sample.truncated_normal`; ``None`` = no truncation), the
generator is run and the images are scored against the real set: SWD (default) or, with a feature
extractor, FID or KID. Small thresholds trade diversity for typicality; the table shows where a
generator is best.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dermsynth.errors import DataError, DermsynthError
from dermsynth.metrics._pairwise import check_images, save_figure

__all__ = ["SWEEP_METRICS", "THRESHOLDS", "TruncationSweep", "threshold_label", "truncation_sweep"]

#: Seed 003's thresholds; ``None`` is the untruncated normal.
THRESHOLDS: tuple[float | None, ...] = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, None)
SWEEP_METRICS: tuple[str, ...] = ("swd", "fid", "kid")


def threshold_label(threshold: float | None) -> str:
    """'none' for no truncation, else the threshold as written (0.05, 1, ...)."""
    return "none" if threshold is None else f"{threshold:g}"


@dataclass
class TruncationSweep:
    """One metric value per truncation threshold (``None`` = no truncation); lower is better for all three."""

    metric: str
    thresholds: list[float | None]
    values: list[float]
    n_images: int
    extractor: str | None = None

    @property
    def best(self) -> float | None:
        """The threshold with the lowest value."""
        return self.thresholds[int(np.argmin(self.values))]

    def as_dict(self) -> dict:
        """JSON-friendly dict (thresholds as numbers, ``None`` for no truncation)."""
        return {"metric": self.metric, "thresholds": list(self.thresholds), "values": list(self.values),
                "n_images": self.n_images, "extractor": self.extractor, "best": self.best}

    def rows(self) -> list[list]:
        """Table rows ``[threshold label, value]``."""
        return [[threshold_label(t), v] for t, v in zip(self.thresholds, self.values)]

    def table(self) -> str:
        """Plain-text table."""
        name = self.metric.upper() + (" x1e3 (mean over levels)" if self.metric == "swd" else "")
        lines = [f"truncation sweep: {name}, n={self.n_images}", f"{'threshold':>10}  {'value':>12}"]
        lines += [f"{t:>10}  {v:12.4f}" for t, v in self.rows()]
        return "\n".join(lines)

    def plot(self, path: str | Path) -> Path:
        """Line plot of the metric against the threshold (evenly spaced, 'none' last)."""
        from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

        fig = Figure(figsize=(6.5, 3.5), dpi=100)
        ax = fig.subplots()
        x = np.arange(len(self.values))
        ax.plot(x, self.values, marker="o")
        ax.set_xticks(x, [t for t, _ in self.rows()])
        ax.set_xlabel("truncation threshold |z| (resampled beyond)")
        ax.set_ylabel(self.metric.upper() + (" x1e3" if self.metric == "swd" else ""))
        ax.set_title(f"truncation sweep (n={self.n_images} per threshold)")
        ax.grid(alpha=0.3)
        return save_figure(fig, path)


def truncation_sweep(
    checkpoint,
    real: np.ndarray,
    *,
    metric: str = "swd",
    thresholds: Sequence[float | None] = THRESHOLDS,
    n: int | None = None,
    extractor=None,
    real_features: np.ndarray | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    batch_size: int = 256,
    progress: bool = False,
) -> TruncationSweep:
    """Score ``n`` generated images per threshold against ``real`` (uint8 (N, H, W, 3) at the generator's size).

    ``checkpoint``: a training checkpoint path or a :class:`~dermsynth.sample.LoadedGenerator`.
    ``metric``: "swd" (images), "fid" or "kid" (need ``extractor``, a
    :class:`~dermsynth.metrics.features.FeatureExtractor`; ``real_features`` may be passed to skip
    re-extracting the real set). ``n`` defaults to ``len(real)`` (SWD uses ``n`` real images too).
    """
    from tqdm.auto import tqdm

    from dermsynth.device import resolve_device
    from dermsynth.metrics.frechet import fid_from_features, kid
    from dermsynth.metrics.swd import swd
    from dermsynth.sample import LoadedGenerator, load_generator, sample_images

    if metric not in SWEEP_METRICS:
        raise DermsynthError(f"unknown truncation-sweep metric {metric!r}; choose from {', '.join(SWEEP_METRICS)}")
    if metric != "swd" and extractor is None:
        raise DermsynthError(f"a {metric.upper()} truncation sweep needs a feature extractor")
    if not thresholds:
        raise DermsynthError("truncation_sweep needs at least one threshold")
    real = check_images(real, "real images")
    dev = resolve_device(device)
    model = checkpoint if isinstance(checkpoint, LoadedGenerator) else load_generator(checkpoint, dev)
    n = len(real) if n is None else int(n)
    if n < 2 or (metric == "swd" and n > len(real)):
        raise DermsynthError(f"truncation sweep n={n} must be >= 2 (and <= {len(real)} real images for SWD)")
    if metric != "swd" and real_features is None:
        real_features = extractor(real, device=dev, progress=progress)
    values = []
    for t in tqdm(list(thresholds), desc="truncation sweep", unit="threshold", disable=not progress):
        fake, _ = sample_images(model, n, int(seed), t, batch_size=batch_size)  # the same draws at every threshold
        if fake.shape[1:] != real.shape[1:]:
            raise DataError(f"the generator makes {fake.shape[1]}px images but the real set is {real.shape[1]}px")
        if metric == "swd":
            values.append(swd(real, fake, n=n, seed=seed, device=dev).mean)
        else:
            feats = extractor(fake, device=dev)
            values.append(fid_from_features(real_features, feats, dev) if metric == "fid"
                          else kid(real_features, feats, num_subsets=100, subset_size=1000, seed=seed, device=dev).mean)
    return TruncationSweep(metric=metric, thresholds=list(thresholds), values=[float(v) for v in values], n_images=n,
                           extractor=None if metric == "swd" else extractor.name)
