"""Evaluation metrics, each usable alone: SWD, FID/KID, precision/recall/density/coverage, colour
statistics, the memorisation audit, feature extractors (FID Inception, the project's classifier) and the
truncation sweep."""

from dermsynth.metrics.colour import (
    ColourDivergence,
    channel_histograms,
    class_colour_statistics,
    colour_histogram_divergence,
    plot_class_colour_statistics,
)
from dermsynth.metrics.features import (
    EXTRACTORS,
    FeatureExtractor,
    build_extractor,
    load_classifier_extractor,
    register_extractor,
    train_feature_extractor,
)
from dermsynth.metrics.frechet import KIDResult, feature_statistics, fid_from_features, frechet_distance, kid
from dermsynth.metrics.inception import FIDInceptionV3, load_fid_inception
from dermsynth.metrics.memorisation import (
    AuditResult,
    memorisation_audit,
    nearest_neighbours,
    plot_nearest_neighbours,
    ssim,
)
from dermsynth.metrics.prdc import PRDCResult, prdc
from dermsynth.metrics.swd import SWDResult, swd, swd_lower_bound
from dermsynth.metrics.truncation import THRESHOLDS, TruncationSweep, truncation_sweep

__all__ = [
    "EXTRACTORS", "THRESHOLDS", "AuditResult", "ColourDivergence", "FIDInceptionV3", "FeatureExtractor", "KIDResult",
    "PRDCResult", "SWDResult", "TruncationSweep", "build_extractor", "channel_histograms", "class_colour_statistics",
    "colour_histogram_divergence", "feature_statistics", "fid_from_features", "frechet_distance", "kid",
    "load_classifier_extractor", "load_fid_inception", "memorisation_audit", "nearest_neighbours",
    "plot_class_colour_statistics", "plot_nearest_neighbours", "prdc", "register_extractor", "ssim", "swd",
    "swd_lower_bound", "train_feature_extractor", "truncation_sweep",
]
