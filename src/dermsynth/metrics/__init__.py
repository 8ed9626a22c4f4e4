"""Evaluation metrics, each usable alone: SWD, FID/KID, precision/recall/density/coverage, colour
statistics and the memorisation audit."""

from dermsynth.metrics.colour import (
    ColourDivergence,
    channel_histograms,
    class_colour_statistics,
    colour_histogram_divergence,
    plot_class_colour_statistics,
)
from dermsynth.metrics.frechet import KIDResult, feature_statistics, fid_from_features, frechet_distance, kid
from dermsynth.metrics.memorisation import AuditResult, memorisation_audit, nearest_neighbours, plot_nearest_neighbours, ssim
from dermsynth.metrics.prdc import PRDCResult, prdc
from dermsynth.metrics.swd import SWDResult, swd, swd_lower_bound

__all__ = [
    "AuditResult", "ColourDivergence", "KIDResult", "PRDCResult", "SWDResult", "channel_histograms",
    "class_colour_statistics", "colour_histogram_divergence", "feature_statistics", "fid_from_features",
    "frechet_distance", "kid", "memorisation_audit", "nearest_neighbours", "plot_class_colour_statistics",
    "plot_nearest_neighbours", "prdc", "ssim", "swd", "swd_lower_bound",
]
