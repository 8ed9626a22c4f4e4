"""Colour statistics of image sets: channel histograms, their Jensen-Shannon divergence, per-class means.

Complements SWD, which normalises each set per channel and so cannot see a global colour cast.
:func:`class_colour_statistics` and :func:`plot_class_colour_statistics` reproduce the per-class
distributions of mean R, G, B and grey intensity used to compare real and synthetic lesions in
"Synthetic Medical Image Augmentation for Classification of Pigmented Lesions" (Section 4).

Images are uint8 (N, H, W, 3) numpy arrays (memmaps are read in batches of :data:`BATCH` images).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dermsynth.errors import DermsynthError
from dermsynth.metrics._pairwise import check_images, save_figure

__all__ = [
    "ColourDivergence",
    "channel_histograms",
    "channel_means",
    "class_colour_statistics",
    "colour_histogram_divergence",
    "jensen_shannon_divergence",
    "plot_class_colour_statistics",
]

CHANNELS: tuple[str, ...] = ("R", "G", "B")
#: ITU-R BT.601 luma weights for R, G, B.
GREY_WEIGHTS = np.array([0.299, 0.587, 0.114])
BATCH = 1024


def channel_histograms(images: np.ndarray, bins: int = 256) -> np.ndarray:
    """Per-channel histograms (3, bins) of uint8 images, each row summing to 1.

    Bins split [0, 256) evenly: value ``v`` falls in bin ``v * bins // 256``.
    """
    check_images(images, "images")
    if not 1 <= int(bins) <= 256:
        raise DermsynthError(f"histogram bins must be between 1 and 256; got {bins}")
    counts = np.zeros((3, 256), dtype=np.int64)
    for start in range(0, len(images), BATCH):
        batch = np.asarray(images[start : start + BATCH]).reshape(-1, 3)
        for c in range(3):
            counts[c] += np.bincount(batch[:, c], minlength=256)
    bin_of = np.arange(256) * int(bins) // 256
    hist = np.stack([np.bincount(bin_of, weights=counts[c], minlength=int(bins)) for c in range(3)])
    return hist / hist.sum(axis=1, keepdims=True)


def jensen_shannon_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence in bits (in [0, 1]) between two histograms (normalised here)."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if p.shape != q.shape or p.ndim != 1 or (p < 0).any() or (q < 0).any() or p.sum() <= 0 or q.sum() <= 0:
        raise DermsynthError(f"Jensen-Shannon divergence needs two non-negative, non-zero 1-D histograms of one length; "
                             f"got shapes {p.shape} and {q.shape}")
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return min(1.0, max(0.0, 0.5 * kl(p) + 0.5 * kl(q)))


@dataclass
class ColourDivergence:
    """Jensen-Shannon divergence (bits) between real and fake channel histograms, per channel (R, G, B) and mean."""

    per_channel: list[float]
    mean: float
    bins: int

    def as_dict(self) -> dict:
        """JSON-friendly dict of the fields, with per-channel values keyed R, G, B."""
        return {"per_channel": dict(zip(CHANNELS, self.per_channel)), "mean": self.mean, "bins": self.bins}


def colour_histogram_divergence(real: np.ndarray, fake: np.ndarray, bins: int = 64) -> ColourDivergence:
    """Per-channel JSD (bits) between the pooled ``bins``-bin histograms of two uint8 image sets."""
    check_images(real, "real images")
    check_images(fake, "fake images")
    hr, hf = channel_histograms(real, bins), channel_histograms(fake, bins)
    per_channel = [jensen_shannon_divergence(hr[c], hf[c]) for c in range(3)]
    return ColourDivergence(per_channel=per_channel, mean=float(np.mean(per_channel)), bins=int(bins))


def channel_means(images: np.ndarray) -> np.ndarray:
    """Per-image mean of R, G, B (N, 3) float64."""
    check_images(images, "images")
    return np.concatenate([
        np.asarray(images[s : s + BATCH]).mean(axis=(1, 2), dtype=np.float64) for s in range(0, len(images), BATCH)
    ])


def class_colour_statistics(images: np.ndarray, labels, class_names: Sequence[str]) -> pd.DataFrame:
    """One row per image: ``class`` (name; "unlabelled" for label -1), ``label``, mean ``R``, ``G``, ``B``
    and ``grey`` (BT.601: 0.299 R + 0.587 G + 0.114 B) in [0, 255]."""
    means = channel_means(images)
    labels = np.asarray(labels)
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
        raise DermsynthError(f"labels must be {len(images)} integers, one per image; got {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < -1 or labels.max() >= len(class_names)):
        raise DermsynthError(f"labels must lie in [0, {len(class_names)}) (or -1 for unlabelled); "
                             f"got {labels.min()}..{labels.max()}")
    names = np.array(list(class_names) + ["unlabelled"], dtype=object)
    df = pd.DataFrame({"class": names[labels], "label": labels.astype(np.int64)})  # -1 picks "unlabelled"
    for c, name in enumerate(CHANNELS):
        df[name] = means[:, c]
    df["grey"] = means @ GREY_WEIGHTS
    return df


def plot_class_colour_statistics(df: pd.DataFrame, path: str | Path, bins: int = 32, title: str | None = None) -> Path:
    """2x2 figure (R, G, B, grey): per-class step histograms (densities) of the per-image means.

    ``df`` as from :func:`class_colour_statistics` (columns ``class``, R, G, B, grey); to compare sets,
    give the rows distinct class names (e.g. "melanoma (real)", "melanoma (fake)").
    """
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    missing = [c for c in ("class", *CHANNELS, "grey") if c not in df.columns]
    if missing or df.empty:
        raise DermsynthError(f"plot_class_colour_statistics needs a non-empty table with columns class, R, G, B, grey; "
                             f"missing {missing}" if missing else "plot_class_colour_statistics got an empty table")
    fig = Figure(figsize=(9, 7), dpi=100)
    axes = fig.subplots(2, 2)
    for ax, col in zip(axes.ravel(), (*CHANNELS, "grey")):
        lo, hi = float(df[col].min()), float(df[col].max())
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
        ordered = df.sort_values("label", kind="stable") if "label" in df.columns else df
        for name, group in ordered.groupby("class", sort=False):
            ax.hist(group[col], bins=edges, density=True, histtype="step", linewidth=1.5, label=f"{name} (n={len(group)})")
        ax.set_xlabel(f"mean {col} intensity" if col != "grey" else "mean grey intensity (BT.601)")
        ax.set_ylabel("density")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
