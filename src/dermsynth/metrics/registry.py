"""The metric registry: every image-set metric by name, with what it needs, how to compute and how to show it.

Modelled on stylegan2-ada-pytorch's ``metric_main.register_metric``: a metric is a function registered under
its name; callers (``dermsynth evaluate``, the truncation sweep, metrics during training) ask for metrics by
name and get a dict of numbers back. Here each entry (:class:`Metric`) also says what it ``needs``
(``"images"``: the uint8 images; ``"features"``: a feature extractor), which way is better, and how to
``render`` its numbers as table rows.

Real-set work is done once: a :class:`RealSet` holds the real images and caches, per extractor version, their
features (in memory, and on disk under ``cache_dir`` keyed by a SHA-256 of the images and the extractor
version) and the SWD real-vs-real lower bound; generated images go in an :class:`ImageSet`, so that
``fid``, ``kid`` and ``prdc`` of one generated set extract its features once.

Every ``compute`` returns a flat dict of numbers (floats, ints or lists of floats) whose key ``<name>`` is the
headline value. The metrics registered here:

========== ========= ======= =======================================================================
name       needs     better  headline
========== ========= ======= =======================================================================
swd        images    lower   Laplacian-pyramid SWD x1e3, mean over levels (+ the real-vs-real bound)
fid        features  lower   Fréchet distance of the feature Gaussians
kid        features  lower   KID (unbiased MMD^2, cubic kernel), mean over subsets
prdc       features  higher  precision, recall, density, coverage (no single headline: ``prdc`` = F1
                             of precision and recall)
colour_jsd images    lower   Jensen-Shannon divergence of the per-channel colour histograms, mean
========== ========= ======= =======================================================================

:class:`TrainingMetrics` packages a list of lower-is-better metrics for the trainer, which builds it from its
configuration (:mod:`dermsynth.train.in_training_metrics`) and calls it with a sampling function.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dermsynth.data.dataset import LesionDataset
from dermsynth.device import resolve_device
from dermsynth.errors import DataError, DermsynthError
from dermsynth.io import atomic_open
from dermsynth.metrics._pairwise import check_images
from dermsynth.metrics.colour import colour_histogram_divergence
from dermsynth.metrics.features import FeatureExtractor, resolve_extractor
from dermsynth.metrics.frechet import fid_from_features, kid
from dermsynth.metrics.prdc import prdc
from dermsynth.metrics.swd import MIN_SIZE, SWDResult, swd, swd_lower_bound

__all__ = ["METRICS", "ImageSet", "Metric", "MetricOptions", "RealSet", "TrainingMetrics", "as_real_set",
           "compute_metrics", "get_metric", "metric_names", "register_metric"]

Numbers = dict[str, float | int | list[float]]


# ----------------------------------------------------------------------------------------
# Image sets with cached features
# ----------------------------------------------------------------------------------------


class ImageSet:
    """uint8 (N, H, W, 3) images whose features are extracted at most once per extractor version."""

    def __init__(self, images, *, name: str = "images") -> None:
        if isinstance(images, LesionDataset):
            images = images.images
        self.images = check_images(np.asarray(images), name)
        self.name = name
        self._features: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.images)

    @property
    def size(self) -> int:
        return int(self.images.shape[1])

    def features(self, extractor: FeatureExtractor, device: torch.device | None = None,
                 progress: bool = False) -> np.ndarray:
        """The images' features under ``extractor`` (computed on first use, then cached)."""
        if extractor.version not in self._features:
            self._features[extractor.version] = extractor(self.images, device=device, progress=progress)
        return self._features[extractor.version]


class RealSet(ImageSet):
    """The real (reference) images and what metrics compute from them alone, computed once.

    Features are cached in memory and, with ``cache_dir``, on disk as ``<cache_dir>/real-<key>.npy``,
    where ``key`` hashes the images (bytes and shape) and the extractor version: another real set or
    another extractor never reuses a file. The SWD lower bound is cached per (n, seed).
    """

    def __init__(self, images, *, cache_dir: str | Path | None = None, name: str = "real images") -> None:
        super().__init__(images, name=name)
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self._digest: str | None = None
        self._lower_bounds: dict[tuple[int, int], SWDResult] = {}

    @property
    def digest(self) -> str:
        """SHA-256 (hex) of the images' shape and bytes."""
        if self._digest is None:
            h = hashlib.sha256(repr(self.images.shape).encode())
            for start in range(0, len(self.images), 1024):  # in slices: a memmap is never read whole into memory
                h.update(np.ascontiguousarray(self.images[start:start + 1024]).tobytes())
            self._digest = h.hexdigest()
        return self._digest

    def cache_path(self, extractor: FeatureExtractor) -> Path | None:
        """Where the features under ``extractor`` are cached on disk (None without ``cache_dir``)."""
        if self.cache_dir is None:
            return None
        key = hashlib.sha256(f"{self.digest}\n{extractor.version}".encode()).hexdigest()[:24]
        return self.cache_dir / f"real-{key}.npy"

    def features(self, extractor: FeatureExtractor, device: torch.device | None = None,
                 progress: bool = False) -> np.ndarray:
        if extractor.version in self._features:
            return self._features[extractor.version]
        path = self.cache_path(extractor)
        if path is not None and path.is_file():
            feats = np.load(path)
            if feats.shape == (len(self), extractor.dim):
                self._features[extractor.version] = feats
                return feats
        feats = super().features(extractor, device, progress)
        if path is not None:
            with atomic_open(path, "wb") as f:
                np.save(f, feats)
        return feats

    def swd_lower_bound(self, n: int, seed: int, device: torch.device | None = None,
                        progress: bool = False) -> SWDResult:
        """SWD between two disjoint halves of ``n`` real images each (cached per (n, seed))."""
        if (n, seed) not in self._lower_bounds:
            self._lower_bounds[(n, seed)] = swd_lower_bound(self.images, n=n, seed=seed, device=device,
                                                            progress=progress)
        return self._lower_bounds[(n, seed)]


def as_real_set(real, cache_dir: str | Path | None = None) -> RealSet:
    """``real`` as a :class:`RealSet` (returned unchanged if it is one)."""
    return real if isinstance(real, RealSet) else RealSet(real, cache_dir=cache_dir)


# ----------------------------------------------------------------------------------------
# The registry
# ----------------------------------------------------------------------------------------


@dataclass
class MetricOptions:
    """What a metric's ``compute`` may use besides the two image sets."""

    extractor: FeatureExtractor | None = None
    device: torch.device | None = None
    seed: int = 0
    progress: bool = False
    swd_lower_bound: bool = True   # SWD also computes the real-vs-real bound (at the same n: n <= len(real) // 2)
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    prdc_k: int = 5


ComputeFn = Callable[[RealSet, ImageSet, MetricOptions], Numbers]
RenderFn = Callable[[Numbers], list[list]]


@dataclass(frozen=True)
class Metric:
    """One registered metric (see the module docstring)."""

    name: str
    needs: frozenset[str]
    compute: ComputeFn
    render: RenderFn
    better: str = "lower"          # of the headline value <name>: "lower" or "higher"
    description: str = ""

    @property
    def needs_features(self) -> bool:
        return "features" in self.needs


METRICS: dict[str, Metric] = {}


def register_metric(name: str, *, needs: Sequence[str], better: str = "lower", description: str = "",
                    render: RenderFn | None = None) -> Callable[[ComputeFn], ComputeFn]:
    """Decorator: register ``compute(real, fake, opts) -> dict of numbers`` under ``name``.

    ``needs``: "images" and/or "features". ``render(numbers) -> [[label, value, better], ...]`` table rows
    (default: every numeric entry).
    """
    unknown = set(needs) - {"images", "features"}
    if unknown or better not in ("lower", "higher"):
        raise DermsynthError(f"metric {name!r}: needs must be 'images'/'features' and better 'lower'/'higher'")

    def decorate(fn: ComputeFn) -> ComputeFn:
        METRICS[name] = Metric(name, frozenset(needs), fn, render or _default_rows(better), better, description)
        return fn

    return decorate


def _default_rows(better: str) -> RenderFn:
    def rows(values: Numbers) -> list[list]:
        return [[k, v, better if i == 0 else ""] for i, (k, v) in enumerate(values.items())
                if isinstance(v, (int, float))]
    return rows


def metric_names(*, better: str | None = None) -> list[str]:
    """Registered names (only those whose headline is ``better`` when given)."""
    return [n for n, m in METRICS.items() if better is None or m.better == better]


def get_metric(name: str) -> Metric:
    """The metric registered as ``name``; a one-line error listing the choices otherwise."""
    if name not in METRICS:
        raise DermsynthError(f"unknown metric {name!r}; choose from {', '.join(METRICS)}")
    return METRICS[name]


def compute_metrics(names: Sequence[str], real, fake, opts: MetricOptions | None = None) -> dict[str, Numbers]:
    """``{name: numbers}`` for each metric of ``names`` on ``real`` (a :class:`RealSet` or images) and ``fake``
    (an :class:`ImageSet` or images); features of each set are extracted once."""
    opts = opts or MetricOptions()
    metrics = [get_metric(n) for n in names]
    if any(m.needs_features for m in metrics) and opts.extractor is None:
        need = ", ".join(m.name for m in metrics if m.needs_features)
        raise DermsynthError(f"{need} need(s) a feature extractor")
    real = as_real_set(real)
    fake = fake if isinstance(fake, ImageSet) else ImageSet(fake, name="generated images")
    return {m.name: m.compute(real, fake, opts) for m in metrics}


# ----------------------------------------------------------------------------------------
# The metrics
# ----------------------------------------------------------------------------------------


def _swd_rows(v: Numbers) -> list[list]:
    rows = [[f"{r}x{r}", lo, f] for r, lo, f in zip(v["resolutions"], v.get("lower_bound_per_level", []) or
                                                     [None] * len(v["per_level"]), v["per_level"])]
    return rows + [["mean", v.get("swd_lower_bound"), v["swd"]]]


@register_metric("swd", needs=["images"], render=_swd_rows,
                 description="Laplacian-pyramid sliced Wasserstein distance x1e3 (Karras et al. 2018)")
def _swd(real: RealSet, fake: ImageSet, opts: MetricOptions) -> Numbers:
    if real.size < MIN_SIZE or real.size != fake.size:
        raise DataError(f"SWD needs real and generated images of one size >= {MIN_SIZE}px "
                        f"(have {real.size}px and {fake.size}px)")
    n = min(len(real) // 2, len(fake)) if opts.swd_lower_bound else min(len(real), len(fake))
    if n < 1:
        raise DataError(f"SWD needs at least {2 if opts.swd_lower_bound else 1} real images (have {len(real)})")
    score = swd(real.images, fake.images, n=n, seed=opts.seed, device=opts.device, progress=opts.progress)
    out: Numbers = {"swd": score.mean, "n_images": n, "resolutions": list(score.resolutions),
                    "per_level": list(score.per_level)}
    if opts.swd_lower_bound:
        lower = real.swd_lower_bound(n, opts.seed, opts.device, opts.progress)
        out.update({"swd_lower_bound": lower.mean, "lower_bound_per_level": list(lower.per_level)})
    return out


def _features(real: RealSet, fake: ImageSet, opts: MetricOptions) -> tuple[np.ndarray, np.ndarray]:
    return (real.features(opts.extractor, opts.device, opts.progress),
            fake.features(opts.extractor, opts.device, opts.progress))


@register_metric("fid", needs=["features"], description="Fréchet distance between feature Gaussians")
def _fid(real: RealSet, fake: ImageSet, opts: MetricOptions) -> Numbers:
    fr, ff = _features(real, fake, opts)
    return {"fid": fid_from_features(fr, ff, opts.device), "n_real": len(fr), "n_fake": len(ff)}


@register_metric("kid", needs=["features"],
                 render=lambda v: [["KID mean", v["kid"], "lower"], ["KID std", v["kid_std"], ""]],
                 description="kernel inception distance (unbiased MMD^2, cubic polynomial kernel)")
def _kid(real: RealSet, fake: ImageSet, opts: MetricOptions) -> Numbers:
    fr, ff = _features(real, fake, opts)
    res = kid(fr, ff, num_subsets=opts.kid_subsets, subset_size=opts.kid_subset_size, seed=opts.seed,
              device=opts.device)
    return {"kid": res.mean, "kid_std": res.std, "num_subsets": res.num_subsets, "subset_size": res.subset_size}


@register_metric("prdc", needs=["features"], better="higher",
                 render=lambda v: [["precision (fidelity)", v["precision"], "higher"],
                                   ["recall (diversity)", v["recall"], "higher"], ["density", v["density"], "~1"],
                                   ["coverage", v["coverage"], "higher"]],
                 description="precision / recall / density / coverage of k-NN balls (Naeem et al. 2020)")
def _prdc(real: RealSet, fake: ImageSet, opts: MetricOptions) -> Numbers:
    fr, ff = _features(real, fake, opts)
    if min(len(fr), len(ff)) <= opts.prdc_k:
        raise DataError(f"PRDC needs more than k={opts.prdc_k} real and generated images (have {len(fr)}, {len(ff)})")
    res = prdc(fr, ff, k=opts.prdc_k, device=opts.device)
    f1 = 2 * res.precision * res.recall / (res.precision + res.recall) if res.precision + res.recall > 0 else 0.0
    return {"prdc": f1, "precision": res.precision, "recall": res.recall, "density": res.density,
            "coverage": res.coverage, "k": res.k}


@register_metric("colour_jsd", needs=["images"],
                 render=lambda v: [*([c, x, ""] for c, x in zip("RGB", v["per_channel"])),
                                   ["mean", v["colour_jsd"], "lower"]],
                 description="Jensen-Shannon divergence (bits) of the per-channel colour histograms")
def _colour_jsd(real: RealSet, fake: ImageSet, opts: MetricOptions) -> Numbers:
    div = colour_histogram_divergence(real.images, fake.images)
    return {"colour_jsd": div.mean, "per_channel": list(div.per_channel), "bins": div.bins}


# ----------------------------------------------------------------------------------------
# Metrics during training
# ----------------------------------------------------------------------------------------

SampleFn = Callable[[int, int], np.ndarray]


@dataclass
class TrainingMetrics:
    """Lower-is-better metrics of a generator during training, real-set work done once.

    ``names``: registered metrics whose headline is lower-is-better (e.g. ``["swd", "fid"]``); the first
    decides the best snapshot. ``real``: a :class:`~dermsynth.data.dataset.LesionDataset` or uint8
    (N, H, W, 3) images at the generator's size, subsampled (seeded) to at most ``n_images``. ``n_images``:
    generated images per evaluation (SWD compares ``min(n_images, len(real))`` of each). ``extractor``: a
    :class:`~dermsynth.metrics.features.FeatureExtractor`, an ``--extractor`` choice (default ``"auto"``:
    Inception weights if given by ``$DERMSYNTH_INCEPTION_WEIGHTS``, else the shipped network), or None;
    only built when a metric needs features. ``seed``: the sampling seed passed to ``sample_fn`` every
    time (the same latents at every evaluation) and the metrics' own seed.

    ``metrics(sample_fn)`` with ``sample_fn(n, seed) -> uint8 (n, H, W, 3)`` returns ``{name: value}``
    for every name, in order; :attr:`details` holds the full numbers of the last call and :attr:`info`
    what to record with them (extractor name and version, its warning, image counts, real-set hash).
    """

    names: list[str]
    real: LesionDataset | np.ndarray
    n_images: int = 1000
    extractor: FeatureExtractor | str | None = "auto"
    device: str | torch.device | None = None
    seed: int = 0
    cache_dir: str | Path | None = None
    details: dict[str, Numbers] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.names = [n.strip() for n in (self.names.split(",") if isinstance(self.names, str) else self.names)
                      if n.strip()]
        if not self.names:
            raise DermsynthError("give at least one metric for training (e.g. --metrics swd,fid)")
        lower = metric_names(better="lower")
        for name in self.names:
            if name not in lower:
                raise DermsynthError(f"metric {name!r} cannot select a snapshot; choose lower-is-better metrics from "
                                     f"{', '.join(lower)}")
        if len(set(self.names)) != len(self.names):
            raise DermsynthError(f"metrics repeat: {', '.join(self.names)}")
        if int(self.n_images) < 2:
            raise DermsynthError(f"metrics need at least 2 images per evaluation, got {self.n_images}")
        self.n_images = int(self.n_images)
        images = np.asarray(self.real.images if isinstance(self.real, LesionDataset) else self.real)
        images = check_images(images, "metric real images")
        if len(images) > self.n_images:
            images = images[np.sort(np.random.default_rng(self.seed).choice(len(images), self.n_images, False))]
        self._real = RealSet(np.ascontiguousarray(images), cache_dir=self.cache_dir)
        self._device = resolve_device(self.device)
        metrics = [get_metric(n) for n in self.names]
        if any(m.needs_features for m in metrics):
            if not isinstance(self.extractor, FeatureExtractor):
                self.extractor = resolve_extractor(self.extractor or "none")
            if self.extractor is None:
                raise DermsynthError(f"{', '.join(m.name for m in metrics if m.needs_features)} need(s) a feature "
                                     f"extractor")
        else:
            self.extractor = None
        self._opts = MetricOptions(extractor=self.extractor, device=self._device, seed=self.seed,
                                   swd_lower_bound=False)

    @property
    def info(self) -> dict:
        """What to record next to the numbers (e.g. in the run's config.json)."""
        out = {"metrics": list(self.names), "n_images": self.n_images, "n_real": len(self._real),
               "real_sha256": self._real.digest, "seed": self.seed, "better": "lower"}
        if self.extractor is not None:
            out.update(self.extractor.provenance())
        return out

    def __call__(self, sample_fn: SampleFn) -> dict[str, float]:
        """Score ``sample_fn(n_images, seed)``; ``{name: value}`` in the order of :attr:`names`."""
        fake = np.asarray(sample_fn(self.n_images, self.seed))
        fake = check_images(fake, "generated images")
        if fake.shape[1:] != self._real.images.shape[1:]:
            raise DataError(f"the generator makes {fake.shape[1]}px images but the metric real set is "
                            f"{self._real.size}px")
        with torch.no_grad():
            self.details = compute_metrics(self.names, self._real, ImageSet(fake, name="generated images"),
                                           self._opts)
        return {n: float(self.details[n][n]) for n in self.names}
