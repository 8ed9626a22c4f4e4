"""What a synthetic set is worth in real images: the data-efficiency curve of an augmentation study.

Pure functions over run records, the dicts ``results.json`` holds per (condition, real fraction, seed) run:
``condition``, ``seed``, ``real_fraction``, ``n_real`` (real training images), optionally
``synthetic_ratio`` (synthetic images per real one) and ``n_train_synthetic``, and the metrics of a test
set under ``metrics`` (e.g. ``macro_auc``, ``melanoma_auc``).

* :func:`efficiency_curve`: metric vs number of real images per condition, mean and t-interval over seeds.
* :func:`equivalent_real_images`: for each condition and fraction, how many real images the real-only
  curve needs to reach that condition's mean, with a percentile bootstrap CI over seeds (and over test
  images when the runs' predictions are given).
* :func:`paired_with_baseline`: each condition vs the real-only baseline at the same fraction, paired by seed.
* :func:`ratio_sweep`: the synthetic:real ratio sweep at one fraction (default the smallest).
* :func:`study_efficiency`: all of the above for several metrics, as the experiment report shows them.
* :func:`plot_efficiency`: AUC vs real images, with and without synthetic images, CI bands, log x axis.

The real-only curve is made non-decreasing by isotonic regression (weighted by seeds) on log(n_real) and
inverted by linear interpolation in log(n_real) between its fractions; a target above its largest
fraction's value is *beyond the curve* (``inf``: more real images than the study has), one below its
smallest fraction's value is *below the curve* (``0.0``: fewer than the smallest fraction).
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from sklearn.isotonic import isotonic_regression

from dermsynth.classify.stats import PairedComparison, compare_to_baseline, summarize
from dermsynth.errors import DataError
from dermsynth.io import write_bytes

__all__ = ["RECORD_KEYS", "CurvePoint", "EfficiencyStudy", "EquivalentRealImages", "RatioRow", "efficiency_curve",
           "equivalent_real_images", "format_images", "invert_curve", "paired_with_baseline", "plot_efficiency",
           "ratio_sweep", "study_efficiency", "write_png"]

#: The keys every run record must carry (``synthetic_ratio`` is optional, 0 when absent).
RECORD_KEYS = ("condition", "seed", "real_fraction", "n_real")

#: Loads one run's test predictions: record -> (probabilities (N, C), labels (N,)).
PredictionLoader = Callable[[dict], tuple[np.ndarray, np.ndarray]]


@dataclass
class CurvePoint:
    """One condition at one real fraction: the metric over seeds."""

    condition: str
    real_fraction: float
    n_real: float  # mean over the runs (the nested subsets give every seed the same number)
    synthetic_ratio: float
    seeds: list[int]
    values: list[float]
    mean: float
    ci_low: float  # t-interval over seeds (NaN for one seed)
    ci_high: float


def _value(record: dict, metric: str, test_set: str) -> float | None:
    try:
        value = record[test_set][metric]
    except (KeyError, TypeError):
        raise DataError(f"run record {record.get('condition')!r} seed {record.get('seed')!r} has no "
                        f"{test_set}.{metric}") from None
    return None if value is None or not math.isfinite(value) else float(value)


def _check(records: Sequence[dict]) -> None:
    if not records:
        raise DataError("the efficiency study needs run records, got none")
    for r in records:
        missing = [k for k in RECORD_KEYS if k not in r]
        if missing:
            raise DataError(f"run record {r.get('condition')!r} seed {r.get('seed')!r} lacks {', '.join(missing)} "
                            f"(every record needs {', '.join(RECORD_KEYS)})")


def _groups(records: Sequence[dict]) -> dict[tuple[str, float], list[dict]]:
    """Records by (condition, real fraction), in order of first appearance."""
    _check(records)
    groups: dict[tuple[str, float], list[dict]] = {}
    for r in records:
        groups.setdefault((str(r["condition"]), float(r["real_fraction"])), []).append(r)
    return groups


def efficiency_curve(records: Sequence[dict], metric: str = "macro_auc", *, test_set: str = "metrics",
                     confidence: float = 0.95) -> list[CurvePoint]:
    """Mean and ``confidence`` t-interval over seeds of ``metric`` for every (condition, real fraction),
    sorted by condition (first appearance) and then by number of real images. Runs whose metric is
    undefined (None) are left out; a group with none is dropped."""
    points = []
    for (cond, frac), group in _groups(records).items():
        runs = [(int(r["seed"]), _value(r, metric, test_set)) for r in group]
        runs = sorted((s, v) for s, v in runs if v is not None)
        if not runs:
            continue
        s = summarize([v for _, v in runs], confidence)
        points.append(CurvePoint(cond, frac, float(np.mean([r["n_real"] for r in group])),
                                 float(group[0].get("synthetic_ratio") or 0.0), [s_ for s_, _ in runs],
                                 [v for _, v in runs], s.mean, s.ci_low, s.ci_high))
    order = {c: i for i, c in enumerate(dict.fromkeys(p.condition for p in points))}
    return sorted(points, key=lambda p: (order[p.condition], p.n_real))


def _monotone(values: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The non-decreasing least-squares fit (isotonic regression) of values ordered by n_real."""
    return isotonic_regression(values, sample_weight=weights, increasing=True)


def _invert(log_n: np.ndarray, fitted: np.ndarray, target: float) -> float:
    """n at which the non-decreasing piecewise-linear curve (log_n, fitted) first reaches ``target``."""
    if target > fitted[-1]:
        return math.inf
    if target < fitted[0]:
        return 0.0
    i = int(np.argmax(fitted >= target))
    if i == 0:
        return float(np.exp(log_n[0]))
    t = (target - fitted[i - 1]) / (fitted[i] - fitted[i - 1])  # fitted[i - 1] < target <= fitted[i]
    return float(np.exp(log_n[i - 1] + t * (log_n[i] - log_n[i - 1])))


def invert_curve(n_real: Sequence[float], values: Sequence[float], target: float,
                 weights: Sequence[float] | None = None) -> float:
    """How many real images the real-only curve (``values`` at ``n_real``) needs to reach ``target``.

    The curve is made non-decreasing (isotonic regression, ``weights`` e.g. seeds per point) and
    interpolated linearly in log(n_real). Returns ``inf`` beyond the curve (target above its last
    value), ``0.0`` below it (target under its first value).
    """
    n, y = np.asarray(n_real, dtype=np.float64), np.asarray(values, dtype=np.float64)
    if len(n) != len(y) or len(np.unique(n)) != len(n) or len(n) < 2 or (n <= 0).any():
        raise DataError(f"the real-only curve needs >= 2 distinct positive numbers of real images with one value "
                        f"each, got {list(n)} and {list(y)}")
    order = np.argsort(n)
    w = None if weights is None else np.asarray(weights, dtype=np.float64)[order]
    return _invert(np.log(n[order]), _monotone(y[order], w), float(target))


def format_images(n: float, curve_min: float, curve_max: float) -> str:
    """``"873"``, ``"< 120"`` (below the curve) or ``"> 2400"`` (beyond the curve)."""
    if math.isinf(n):
        return f"> {curve_max:.0f}"
    if n < curve_min:
        return f"< {curve_min:.0f}"
    return f"{n:.0f}"


@dataclass
class EquivalentRealImages:
    """How many real images one condition at one fraction is worth, read off the real-only curve."""

    condition: str
    real_fraction: float
    n_real: float
    synthetic_ratio: float
    mean: float  # the condition's metric, mean over seeds
    baseline_mean: float | None  # the real-only mean at the same fraction
    equivalent: float  # real images; inf beyond the curve, 0.0 below it
    ci_low: float  # percentile bootstrap interval, same conventions
    ci_high: float
    confidence: float
    n_boot: int
    share_beyond: float  # share of bootstrap replicates beyond the curve
    resampled: str  # "seeds" or "seeds and test images"
    curve_min: float  # the real-only curve's smallest and largest number of real images
    curve_max: float

    @property
    def status(self) -> str:
        """"within", "below" or "beyond" the real-only curve."""
        return "beyond" if math.isinf(self.equivalent) else "below" if self.equivalent < self.curve_min else "within"

    def formatted(self) -> str:
        """``"873 [610, > 2400]"``."""
        def fmt(n):
            return format_images(n, self.curve_min, self.curve_max)
        return f"{fmt(self.equivalent)} [{fmt(self.ci_low)}, {fmt(self.ci_high)}]"


def _weighted_auc(scores: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC of one score under each row of case ``weights`` (B, N) (bootstrap multiplicities), ties 1/2.

    Sorting once makes each row O(N): a positive's credit is the negative weight below it (plus half the
    negative weight tied with it, summed per group of equal scores when there are ties)."""
    order = np.argsort(scores, kind="stable")
    s, pos = scores[order], positive[order]
    w = weights[:, order]
    w_pos, w_neg = w * pos, w * ~pos
    if len(np.unique(s)) == len(s):  # no ties: a case is positive or negative, so w_pos * w_neg = 0
        credit = np.einsum("bn,bn->b", w_pos, np.cumsum(w_neg, axis=1))
    else:
        starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
        w_pos, w_neg = np.add.reduceat(w_pos, starts, axis=1), np.add.reduceat(w_neg, starts, axis=1)
        credit = np.einsum("bn,bn->b", w_pos, np.cumsum(w_neg, axis=1) - 0.5 * w_neg)
    total = w_pos.sum(axis=1) * w_neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, credit / total, np.nan)


def _resampled_metric(probs: np.ndarray, labels: np.ndarray, weights: np.ndarray, class_index: int | None,
                      chunk: int = 64) -> np.ndarray:
    """Macro one-vs-rest AUC (classes present in each resample), or one class's AUC, per weight row
    (``chunk`` rows at a time: small temporaries are much faster than (B, N) ones)."""
    classes = range(probs.shape[1]) if class_index is None else [class_index]
    out = []
    for start in range(0, len(weights), chunk):
        w = weights[start:start + chunk]
        out.append(_nanmean(np.stack([_weighted_auc(probs[:, c], labels == c, w) for c in classes], axis=1)))
    return np.concatenate(out)


def _nanmean(x: np.ndarray) -> np.ndarray:
    """Row means over the finite entries; NaN (without numpy's warning) for a row with none."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=1)


def _percentiles(x: np.ndarray, confidence: float) -> tuple[float, float]:
    """Percentile interval by order statistics (no interpolation, so inf and 0 sentinels stay exact)."""
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(x, [alpha, 1 - alpha], method="inverted_cdf")
    return float(lo), float(hi)


def _replicate_values(points: list[CurvePoint], group_records: dict[tuple[str, float], list[dict]], seeds: list[int],
                      n_boot: int, rng: np.random.Generator, predictions: PredictionLoader | None,
                      class_index: int | None) -> dict[tuple[str, float], np.ndarray]:
    """Per point, the metric of each seed (rows) under each test-image resample (columns; one column, the
    recorded value, without predictions); NaN where a seed has no run."""
    if predictions is None:
        out = {}
        for p in points:
            v = np.full((len(seeds), 1), np.nan)
            v[[seeds.index(s) for s in p.seeds], 0] = p.values
            out[(p.condition, p.real_fraction)] = v
        return out
    weights, labels0, out = None, None, {}
    for p in points:
        v = np.full((len(seeds), n_boot), np.nan)
        for r in group_records[(p.condition, p.real_fraction)]:
            if int(r["seed"]) not in p.seeds:
                continue
            probs, labels = (np.asarray(a) for a in predictions(r))
            if labels0 is None:
                labels0 = labels
                weights = rng.multinomial(len(labels), np.full(len(labels), 1 / len(labels)),
                                          size=n_boot).astype(np.float64)
            elif not np.array_equal(labels, labels0):
                raise DataError(f"run {p.condition!r} seed {r['seed']}: its test labels differ from the other runs'; "
                                f"the test-image bootstrap needs one shared test set")
            v[seeds.index(int(r["seed"]))] = _resampled_metric(probs, labels, weights, class_index)
        out[(p.condition, p.real_fraction)] = v
    return out


def equivalent_real_images(records: Sequence[dict], baseline: str = "real", metric: str = "macro_auc", *,
                           test_set: str = "metrics", n_boot: int = 2000, confidence: float = 0.95, seed: int = 0,
                           predictions: PredictionLoader | None = None,
                           class_index: int | None = None) -> list[EquivalentRealImages]:
    """For every non-baseline condition at every fraction: the real images the ``baseline`` curve needs to
    reach its mean ``metric`` (see the module docstring), with a percentile bootstrap CI.

    Each bootstrap replicate draws the seeds with replacement, the same seeds for every condition and
    fraction (runs are paired by seed), recomputes every mean, refits the real-only curve and reads the
    equivalent off it. With ``predictions`` (a loader of each run's test probabilities and labels) each
    replicate also resamples the test images, the same images for every run, and recomputes each run's
    AUC on them: macro one-vs-rest, or the AUC of class ``class_index`` (e.g. melanoma vs rest).
    """
    if n_boot < 1 or not 0 < confidence < 1:
        raise DataError(f"need n_boot >= 1 and 0 < confidence < 1, got {n_boot} and {confidence}")
    points = efficiency_curve(records, metric, test_set=test_set)
    real = [p for p in points if p.condition == baseline]
    if len(real) < 2:
        raise DataError(f"equivalent real images need the baseline {baseline!r} at >= 2 real fractions, got "
                        f"{len(real)}")
    seeds = sorted({s for p in points for s in p.seeds})
    rng = np.random.default_rng(seed)
    values = _replicate_values(points, _groups(records), seeds, n_boot, rng, predictions, class_index)
    draw = rng.integers(0, len(seeds), size=(n_boot, len(seeds)))

    def replicate_means(p: CurvePoint) -> np.ndarray:
        v = values[(p.condition, p.real_fraction)]
        cols = np.arange(n_boot)[:, None] if v.shape[1] == n_boot else 0
        return _nanmean(v[draw, cols])  # NaN where a replicate drew none of the point's seeds

    log_n = np.log([p.n_real for p in real])
    weights = np.array([len(p.values) for p in real], dtype=np.float64)
    curve = _monotone(np.array([p.mean for p in real]), weights)
    real_reps = np.stack([replicate_means(p) for p in real], axis=1)  # (n_boot, fractions)
    real_at = {p.real_fraction: p.mean for p in real}
    out = []
    for p in points:
        if p.condition == baseline:
            continue
        targets = replicate_means(p)
        reps = np.array([_invert(log_n, _monotone(row, weights), t) for row, t in zip(real_reps, targets)
                         if np.all(np.isfinite(row)) and np.isfinite(t)])
        lo, hi = _percentiles(reps, confidence)
        out.append(EquivalentRealImages(
            p.condition, p.real_fraction, p.n_real, p.synthetic_ratio, p.mean, real_at.get(p.real_fraction),
            _invert(log_n, curve, p.mean), lo, hi, confidence, len(reps), float(np.mean(np.isinf(reps))),
            "seeds" if predictions is None else "seeds and test images", float(real[0].n_real),
            float(real[-1].n_real)))
    return out


def paired_with_baseline(points: Sequence[CurvePoint], baseline: str = "real") -> dict[tuple[str, float], PairedComparison]:
    """Each non-baseline point vs the baseline at the same real fraction, paired by the seeds both have:
    (condition, real fraction) -> :func:`~dermsynth.classify.stats.compare_to_baseline`."""
    base = {p.real_fraction: p for p in points if p.condition == baseline}
    out = {}
    for p in points:
        b = base.get(p.real_fraction)
        if p.condition == baseline or b is None:
            continue
        shared = [s for s in p.seeds if s in b.seeds]
        if shared:
            with warnings.catch_warnings():  # scipy's Wilcoxon warns about tiny samples; the p-value says it all
                warnings.simplefilter("ignore")
                out[(p.condition, p.real_fraction)] = compare_to_baseline(
                    [p.values[p.seeds.index(s)] for s in shared], [b.values[b.seeds.index(s)] for s in shared])
    return out


@dataclass
class RatioRow:
    """One synthetic:real ratio at the sweep's real fraction."""

    condition: str
    synthetic_ratio: float
    real_fraction: float
    n_real: float
    n_synthetic: float | None  # mean synthetic training images per run, when the records say
    mean: float
    ci_low: float
    ci_high: float
    vs_baseline: PairedComparison | None  # paired by seed with the baseline at the same fraction
    equivalent: EquivalentRealImages | None


def _in_sweep(p: CurvePoint, baseline: str, conditions: Sequence[str] | None) -> bool:
    return p.condition == baseline or (p.condition in conditions if conditions is not None else p.synthetic_ratio > 0)


def ratio_sweep(records: Sequence[dict], baseline: str = "real", metric: str = "macro_auc", *,
                real_fraction: float | None = None, conditions: Sequence[str] | None = None,
                test_set: str = "metrics", equivalents: Sequence[EquivalentRealImages] = ()) -> list[RatioRow]:
    """The baseline and the sweep's ``conditions`` (default: every one with ``synthetic_ratio`` > 0) at
    ``real_fraction`` (default: the smallest), by ratio, each compared with the baseline paired by seed;
    ``equivalents`` (from :func:`equivalent_real_images`) are attached where they match."""
    points = efficiency_curve(records, metric, test_set=test_set)
    at = min(p.real_fraction for p in points) if real_fraction is None else float(real_fraction)
    here = [p for p in points if p.real_fraction == at and _in_sweep(p, baseline, conditions)]
    paired = paired_with_baseline(here, baseline)
    groups = _groups(records)
    rows = []
    for p in sorted(here, key=lambda p: (p.condition != baseline, p.synthetic_ratio, p.condition)):
        synth = [r["n_train_synthetic"] for r in groups[(p.condition, p.real_fraction)] if "n_train_synthetic" in r]
        eq = next((e for e in equivalents if (e.condition, e.real_fraction) == (p.condition, p.real_fraction)), None)
        rows.append(RatioRow(p.condition, p.synthetic_ratio, p.real_fraction, p.n_real,
                             float(np.mean(synth)) if synth else None, p.mean, p.ci_low, p.ci_high,
                             paired.get((p.condition, p.real_fraction)), eq))
    return rows


@dataclass
class EfficiencyStudy:
    """Everything :func:`study_efficiency` computes, per metric (e.g. ``macro_auc``, ``melanoma_auc``)."""

    baseline: str
    curves: dict[str, list[CurvePoint]]
    comparisons: dict[str, dict[tuple[str, float], PairedComparison]]  # vs the baseline at the same fraction
    equivalents: dict[str, list[EquivalentRealImages]]  # empty without the baseline at >= 2 fractions
    sweep: dict[str, list[RatioRow]]  # empty without >= 2 synthetic ratios at the sweep fraction
    sweep_fraction: float

    def as_dict(self) -> dict:
        """JSON-ready: infinite numbers of real images (beyond the curve) as ``"inf"``, NaN as None."""
        def clean(x):
            if isinstance(x, dict):
                return {k: clean(v) for k, v in x.items()}
            if isinstance(x, (list, tuple)):
                return [clean(v) for v in x]
            if isinstance(x, float) and not math.isfinite(x):
                return None if math.isnan(x) else "inf" if x > 0 else "-inf"
            return x

        return clean({
            "baseline": self.baseline, "sweep_fraction": self.sweep_fraction,
            "curves": {m: [asdict(p) for p in pts] for m, pts in self.curves.items()},
            "comparisons": {m: [{"condition": c, "real_fraction": f, **asdict(v)} for (c, f), v in cmp.items()]
                            for m, cmp in self.comparisons.items()},
            "equivalents": {m: [{**asdict(e), "status": e.status} for e in eqs] for m, eqs in self.equivalents.items()},
            "ratio_sweep": {m: [asdict(r) for r in rows] for m, rows in self.sweep.items()}})


def study_efficiency(records: Sequence[dict], baseline: str = "real", metrics: dict[str, int | None] | None = None, *,
                     sweep_fraction: float | None = None, sweep_conditions: Sequence[str] | None = None,
                     n_boot: int = 2000, seed: int = 0,
                     predictions: PredictionLoader | None = None) -> EfficiencyStudy | None:
    """The curve, the comparisons at each fraction, the equivalent real images and the ratio sweep (of
    ``sweep_conditions`` at ``sweep_fraction``, see :func:`ratio_sweep`) for each of ``metrics`` (metric ->
    class index for the test-image bootstrap: None for the macro AUC), or None when the records hold neither
    several real fractions nor several synthetic ratios."""
    metrics = metrics or {"macro_auc": None}
    _check(records)
    fractions = sorted({float(r["real_fraction"]) for r in records})
    at = fractions[0] if sweep_fraction is None else float(sweep_fraction)
    ratios = {float(r.get("synthetic_ratio") or 0) for r in records if float(r["real_fraction"]) == at
              and (sweep_conditions is None or r["condition"] in sweep_conditions)} - {0.0}
    base_fractions = {float(r["real_fraction"]) for r in records if r["condition"] == baseline}
    if len(fractions) < 2 and len(ratios) < 2:
        return None
    curves, comparisons, equivalents, sweep = {}, {}, {}, {}
    for metric, class_index in metrics.items():
        points = efficiency_curve(records, metric)
        if not points:
            continue
        curves[metric] = points
        comparisons[metric] = paired_with_baseline(points, baseline)
        equivalents[metric] = (equivalent_real_images(records, baseline, metric, n_boot=n_boot, seed=seed,
                                                      predictions=predictions, class_index=class_index)
                               if len(base_fractions) >= 2 else [])
        if len(ratios) >= 2:
            sweep[metric] = ratio_sweep(records, baseline, metric, real_fraction=at, conditions=sweep_conditions,
                                        equivalents=equivalents[metric])
    return EfficiencyStudy(baseline, curves, comparisons, equivalents, sweep, at)


def plot_efficiency(curves: dict[str, list[CurvePoint]], path: str | Path, *, baseline: str = "real",
                    labels: dict[str, str] | None = None) -> Path:
    """One figure, a panel per metric (``curves``: metric label -> :func:`efficiency_curve` points): metric
    (%) vs real training images on a log axis, a line and 95 % CI band per condition (a condition at one
    fraction only, e.g. a ratio of the sweep, as a point with its interval). Written atomically."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullLocator

    labels = labels or {}
    fig = Figure(figsize=(5.5 * len(curves), 4.2), dpi=100)
    axes = fig.subplots(1, len(curves), squeeze=False)[0]
    for ax, (title, points) in zip(axes, curves.items()):
        conditions = list(dict.fromkeys(p.condition for p in points))
        for i, cond in enumerate(conditions):
            pts = [p for p in points if p.condition == cond]
            x = np.array([p.n_real for p in pts])
            y, lo, hi = (100 * np.array([getattr(p, k) for p in pts], dtype=np.float64)
                         for k in ("mean", "ci_low", "ci_high"))
            style = {"color": "black", "ls": "--"} if cond == baseline else {"color": f"C{i}"}
            label = labels.get(cond, cond)
            if len(pts) > 1:
                ax.plot(x, y, marker="o", label=label, **style)
                ax.fill_between(x, lo, hi, color=style["color"], alpha=0.15, lw=0)
            else:
                yerr = None if np.isnan(lo[0]) else [[y[0] - lo[0]], [hi[0] - y[0]]]
                ax.errorbar(x, y, yerr=yerr, fmt="s", capsize=4, color=style["color"], label=label)
        ax.set_xscale("log")
        ticks = sorted({p.n_real for p in points})
        ax.set_xticks(ticks, [f"{t:.0f}" for t in ticks])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("real training images (log scale)")
        ax.set_ylabel(f"{title} (%)")
        ax.set_title(f"{title}: mean and 95% CI over seeds", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    return write_png(fig, path)


def write_png(fig, path: str | Path) -> Path:
    """Lay out a matplotlib ``Figure`` and write it as PNG atomically (a failed write keeps the old file)."""
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return write_bytes(path, buf.getvalue())
