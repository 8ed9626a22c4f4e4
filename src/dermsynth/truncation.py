"""Truncation sweep (Furger et al. 2020, Table 3): a quality metric of one generator across truncation settings.

For each threshold, ``n`` latents are drawn with the same seed and resampled component-wise into
[-threshold, threshold] (:func:`dermsynth.sample.truncated_normal`; ``None`` = no truncation), the
generator is run and the images are scored against the real set with a lower-is-better metric of the
registry (:mod:`dermsynth.metrics.registry`): SWD (default) or, with a feature extractor, FID or KID. The
real set's features are extracted once for the whole sweep. Small thresholds trade diversity for
typicality; the table shows where a generator is best.

A StyleGAN generator normalises z, which undoes that resampling; it is swept over psi instead (truncation toward
the average w, :data:`PSI_VALUES`, 1 = none), as StyleGAN's truncation trick. A model without truncation
(PGAN: pixel norm of z) is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dermsynth.device import resolve_device
from dermsynth.errors import DataError, DermsynthError
from dermsynth.metrics._pairwise import save_figure
from dermsynth.metrics.registry import MetricOptions, RealSet, as_real_set, compute_metrics, get_metric, metric_names
from dermsynth.sample import LoadedGenerator, load_generator, sample_images
from dermsynth.progress import tqdm

__all__ = ["PSI_VALUES", "SWEEP_METRICS", "THRESHOLDS", "TruncationSweep", "threshold_label", "truncation_sweep"]

#: Furger et al.'s thresholds; ``None`` is the untruncated normal.
THRESHOLDS: tuple[float | None, ...] = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, None)
#: psi values for generators truncated in w (StyleGAN); 1 is no truncation. Tightest first, as THRESHOLDS.
PSI_VALUES: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0)
#: The registered lower-is-better metrics (at import time); any later-registered one works too.
SWEEP_METRICS: tuple[str, ...] = tuple(metric_names(better="lower"))


def threshold_label(threshold: float | None) -> str:
    """'none' for no truncation, else the threshold as written (0.05, 1, ...)."""
    return "none" if threshold is None else f"{threshold:g}"


@dataclass
class TruncationSweep:
    """One metric value per truncation setting (thresholds, ``None`` = no truncation; or psi values when
    ``parameter`` is "psi"); lower is better for every sweep metric."""

    metric: str
    thresholds: list[float | None]
    values: list[float]
    n_images: int
    extractor: str | None = None       # the extractor version for feature metrics
    provenance: dict | None = None     # the extractor's name, version and comparability warning
    parameter: str = "threshold"       # "threshold" (z resampled beyond |z|) or "psi" (toward the average w)

    @property
    def best(self) -> float | None:
        """The threshold with the lowest value."""
        return self.thresholds[int(np.argmin(self.values))]

    def as_dict(self) -> dict:
        """JSON-friendly dict (thresholds as numbers, ``None`` for no truncation)."""
        return {**(self.provenance or {}), "metric": self.metric, "thresholds": list(self.thresholds),
                "values": list(self.values), "n_images": self.n_images, "extractor": self.extractor, "best": self.best,
                "parameter": self.parameter}

    def rows(self) -> list[list]:
        """Table rows ``[threshold label, value]``."""
        return [[threshold_label(t), v] for t, v in zip(self.thresholds, self.values)]

    def table(self) -> str:
        """Plain-text table."""
        name = self.metric.upper() + (" x1e3 (mean over levels)" if self.metric == "swd" else "")
        lines = [f"truncation sweep: {name}, n={self.n_images}"]
        lines += [self.provenance["extractor_warning"]] if self.provenance else []
        lines += [f"{self.parameter:>10}  {'value':>12}"]
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
        ax.set_xlabel("truncation threshold |z| (resampled beyond)" if self.parameter == "threshold"
                      else "psi (truncation toward the average w; 1 = none)")
        ax.set_ylabel(self.metric.upper() + (" x1e3" if self.metric == "swd" else ""))
        ax.set_title(f"truncation sweep (n={self.n_images} per threshold)")
        ax.grid(alpha=0.3)
        return save_figure(fig, path)


def truncation_sweep(
    checkpoint,
    real,
    *,
    metric: str = "swd",
    thresholds: Sequence[float | None] | None = None,
    n: int | None = None,
    extractor=None,
    seed: int = 0,
    device: str | torch.device | None = None,
    batch_size: int = 256,
    progress: bool = False,
) -> TruncationSweep:
    """Score ``n`` generated images per threshold against ``real`` (uint8 (N, H, W, 3) at the generator's size,
    or a :class:`~dermsynth.metrics.registry.RealSet` whose cached features are reused).

    ``checkpoint``: a training checkpoint path or a :class:`~dermsynth.sample.LoadedGenerator`.
    ``metric``: a lower-is-better registered metric: "swd" (images), "fid" or "kid" (need ``extractor``, a
    :class:`~dermsynth.metrics.features.FeatureExtractor`), ... ``n`` defaults to ``len(real)`` (SWD uses
    ``n`` real images too).
    """
    choices = metric_names(better="lower")
    if metric not in choices:
        raise DermsynthError(f"unknown truncation-sweep metric {metric!r}; choose from {', '.join(choices)}")
    if get_metric(metric).needs_features and extractor is None:
        raise DermsynthError(f"a {metric.upper()} truncation sweep needs a feature extractor")
    real_set: RealSet = as_real_set(real)
    dev = resolve_device(device)
    model = checkpoint if isinstance(checkpoint, LoadedGenerator) else load_generator(checkpoint, dev)
    model.require_noise()
    if model.truncation is None:
        raise DermsynthError(f"{model.checkpoint}: a {model.model} generator normalises its latent z, so it has no "
                             f"truncation to sweep")
    in_w = model.truncation == "w"
    thresholds = (PSI_VALUES if in_w else THRESHOLDS) if thresholds is None else thresholds
    if not thresholds:
        raise DermsynthError("truncation_sweep needs at least one threshold")
    n = len(real_set) if n is None else int(n)
    if n < 2 or (metric == "swd" and n > len(real_set)):
        raise DermsynthError(f"truncation sweep n={n} must be >= 2 (and <= {len(real_set)} real images for SWD)")
    features = get_metric(metric).needs_features
    opts = MetricOptions(extractor=extractor if features else None, device=dev, seed=int(seed), progress=False,
                         swd_lower_bound=False)
    if features:
        real_set.features(extractor, dev, progress)  # once, with a progress bar, before the sweep
    values = []
    for t in tqdm(list(thresholds), desc="truncation sweep", unit="threshold", disable=not progress):
        fake, _ = (sample_images(model, n, int(seed), psi=t, batch_size=batch_size) if in_w  # same draws each time
                   else sample_images(model, n, int(seed), t, batch_size=batch_size))
        if fake.shape[1:] != real_set.images.shape[1:]:
            raise DataError(f"the generator makes {fake.shape[1]}px images but the real set is {real_set.size}px")
        values.append(compute_metrics([metric], real_set, fake, opts)[metric][metric])
    return TruncationSweep(metric=metric, thresholds=list(thresholds), values=[float(v) for v in values], n_images=n,
                           extractor=extractor.version if features else None,
                           provenance=extractor.provenance() if features else None,
                           parameter="psi" if in_w else "threshold")
