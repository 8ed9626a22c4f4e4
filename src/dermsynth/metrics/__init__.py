"""Evaluation metrics, each usable alone: SWD, FID/KID, precision/recall/density/coverage, colour
statistics, the memorisation audit, feature extractors (FID Inception, the shipped derm-smallcnn-v1, a
user's classifier) and the metric registry (with TrainingMetrics for the trainer). The truncation sweep, which
samples a checkpoint, is one layer up: :mod:`dermsynth.truncation`."""

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
    load_shipped_extractor,
    register_extractor,
    resolve_extractor,
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
from dermsynth.metrics.registry import (METRICS, MetricOptions, RealSet, TrainingMetrics, compute_metrics,
                                        get_metric, metric_names, register_metric)
from dermsynth.metrics.swd import SWDResult, swd, swd_lower_bound

__all__ = [
    "EXTRACTORS", "METRICS", "AuditResult", "ColourDivergence", "FIDInceptionV3", "FeatureExtractor",
    "KIDResult", "MetricOptions", "PRDCResult", "RealSet", "SWDResult", "TrainingMetrics",
    "build_extractor", "channel_histograms", "class_colour_statistics", "colour_histogram_divergence",
    "compute_metrics", "feature_statistics", "fid_from_features", "frechet_distance", "get_metric", "kid",
    "load_classifier_extractor", "load_fid_inception", "load_shipped_extractor", "memorisation_audit",
    "metric_names", "nearest_neighbours", "plot_class_colour_statistics", "plot_nearest_neighbours", "prdc",
    "register_extractor", "register_metric", "resolve_extractor", "ssim", "swd", "swd_lower_bound",
]
