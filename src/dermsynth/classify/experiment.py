"""The augmentation experiment: does adding synthetic images to the training set help a classifier?

Protocol (``dermsynth augment``; seeds 000 and 002):

1. One lesion-grouped, class-stratified train/val/test split of the real data, fixed by ``split_seed``
   (or read from ``split``) and saved as ``split.json``. Validation and test sets are real images only,
   the same for every condition; synthetic images only ever join the training set.
2. Conditions, written as ``+``-joined tokens (:class:`Condition`): ``real`` (the real training
   images), ``classic`` (seed 002's augmentation set while training), ``synth:R`` (``R`` x the number
   of real training images of synthetic images, in the real training set's class proportions over the
   classes the source generates; without ``real``: synthetic only), ``balance`` (synthetic images of
   every class until it matches the largest one, as seed 002 did for BCC). E.g. ``real``,
   ``real+classic``, ``real+synth:0.5``, ``real+balance``, ``synth:1``.
3. Each condition is trained with K seeds (``seed``, ``seed + 1``, ...). A seed fixes the classifier's
   initial weights, the batch order, the augmentation and the synthetic draw; the same seed gives the
   same initial weights in every condition, so conditions are compared paired by seed.
4. Metrics on the untouched real test set (:func:`~dermsynth.classify.evaluate.evaluate_predictions`):
   macro one-vs-rest AUC, per-class AUC, melanoma-vs-rest AUC, balanced accuracy, accuracy, per-class
   recall, confusion matrix.
5. Statistics (:mod:`~dermsynth.classify.stats`): mean ± std and the 95 % t-interval over seeds; each
   condition against the baseline (default ``real``) paired by seed (mean difference with its
   t-interval, exact sign-flip permutation p, Wilcoxon p); and a percentile bootstrap CI, over test
   images, of the macro-AUC difference between the seed-averaged predictions of the two conditions.

Every (condition, seed) result is written as it finishes (``runs/<condition>/seed<k>.json`` with the
test probabilities in ``.npz`` and the image manifest in ``_manifest.csv``); a re-run with the same
``out`` skips finished pairs, so an interrupted experiment continues where it stopped, and more seeds
or conditions can be added later. Outputs: ``config.json``, ``split.json``, ``results.json`` (every
number), ``table.md`` / ``table.txt`` (seed 000's "Training data | AUC (%)" layout, then details),
``auc.png``, ``confusion/<condition>.png``, ``manifest.csv`` (every image of every run, by split) and
a self-contained ``report.html``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from dermsynth.classify.evaluate import evaluate_predictions, melanoma_index
from dermsynth.classify.fit import predict_proba, train_classifier
from dermsynth.classify.networks import CLASSIFIERS, build_classifier
from dermsynth.classify.splits import Split, split_dataset
from dermsynth.classify.stats import bootstrap_auc_difference, compare_to_baseline, summarize
from dermsynth.classify.synthetic import SyntheticSource, open_source
from dermsynth.data.dataset import LesionDataset
from dermsynth.errors import DataError, DermsynthError

__all__ = ["AugmentExperimentConfig", "AugmentExperimentResult", "Condition", "run_augment_experiment",
           "synthetic_counts"]

CONFIG_FILE, SPLIT_FILE, RESULTS_FILE, MANIFEST_FILE = "config.json", "split.json", "results.json", "manifest.csv"
MANIFEST_COLUMNS = ("split", "kind", "id", "class")
# Settings that may change between a run and its resumption without invalidating finished results.
RESUMABLE_CHANGES = ("out", "conditions", "seeds", "baseline", "n_boot", "device")


# --- conditions -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Condition:
    """What one condition's training set holds (see the module docstring for the spelling)."""

    real: bool = True
    classic: bool = False
    synth_ratio: float = 0.0  # synthetic images per real training image
    balance: bool = False

    @classmethod
    def parse(cls, spec: str) -> Condition:
        """``"real+classic"``, ``"real+synth:0.5"``, ``"real+balance"``, ``"synth:1"``, ..."""
        tokens = [t.strip().lower() for t in str(spec).split("+")]
        seen: dict[str, Any] = {}
        for tok in tokens:
            key, _, arg = tok.partition(":")
            key = {"synthetic": "synth", "balanced": "balance"}.get(key, key)
            if key not in ("real", "classic", "synth", "balance") or (arg and key != "synth"):
                raise DermsynthError(f"condition {spec!r}: unknown part {tok!r} (use real, classic, synth:R, "
                                     f"balance joined by '+', e.g. real+synth:0.5)")
            if key in seen:
                raise DermsynthError(f"condition {spec!r}: {key!r} given twice")
            try:
                seen[key] = float(arg) if arg else 1.0
            except ValueError:
                raise DermsynthError(f"condition {spec!r}: synth:R needs a number R, got {arg!r}") from None
        ratio = seen.get("synth", 0.0)
        if "synth" in seen and not (math.isfinite(ratio) and ratio > 0):
            raise DermsynthError(f"condition {spec!r}: the synthetic ratio must be > 0, got {ratio}")
        cond = cls("real" in seen, "classic" in seen, ratio, "balance" in seen)
        if not cond.real and not cond.synth_ratio:
            raise DermsynthError(f"condition {spec!r} has no training images: add real or synth:R")
        if cond.balance and not cond.real:
            raise DermsynthError(f"condition {spec!r}: balance tops up the real classes; add real")
        return cond

    @property
    def name(self) -> str:
        """Canonical spelling, e.g. ``real+classic+synth:0.5``."""
        parts = (["real"] if self.real else []) + (["classic"] if self.classic else [])
        parts += [f"synth:{self.synth_ratio:g}"] if self.synth_ratio else []
        return "+".join(parts + (["balance"] if self.balance else []))

    @property
    def slug(self) -> str:
        """File-name form of :attr:`name`."""
        return re.sub(r"[^a-z0-9.]+", "_", self.name)

    @property
    def label(self) -> str:
        """Row label for the table, in seed 000's wording ("Real images", "Real images + synthetic ...")."""
        ratio = f" ({self.synth_ratio:g}x the real count)" if self.synth_ratio else ""
        extras = ([f"synthetic{ratio}"] if self.synth_ratio and self.real else [])
        extras += (["synthetic to balance the classes"] if self.balance else [])
        extras += (["classic augmentation"] if self.classic else [])
        return " + ".join([("Real images" if self.real else f"Synthetic images only{ratio}")] + extras)

    @property
    def uses_synthetic(self) -> bool:
        return bool(self.synth_ratio) or self.balance


def _allocate(total: int, weights: np.ndarray) -> np.ndarray:
    """Split ``total`` into integers proportional to ``weights`` (largest remainders get the rest)."""
    share = total * weights / weights.sum()
    out = np.floor(share).astype(np.int64)
    out[np.argsort(-(share - out), kind="stable")[: total - out.sum()]] += 1
    return out


def synthetic_counts(condition: Condition, train_counts: Sequence[int], class_names: Sequence[str],
                     source: SyntheticSource | None) -> np.ndarray:
    """Synthetic images per class for one condition, given the real training counts per class.

    Raises a one-line error when the condition needs classes the source cannot generate.
    """
    counts = np.asarray(train_counts, dtype=np.int64)
    out = np.zeros_like(counts)
    if not condition.uses_synthetic:
        return out
    if source is None:
        raise DermsynthError(f"condition {condition.name!r} needs a synthetic source (a GAN checkpoint, "
                             f"a sample folder with manifest.csv, or 'phantom')")
    can = np.array([source.can_generate(c) for c in class_names])
    if condition.balance:
        deficit = counts.max() - counts
        missing = [c for c, d, ok in zip(class_names, deficit, can) if d > 0 and not ok]
        if missing:
            raise DermsynthError(f"condition {condition.name!r}: {source.name} cannot generate "
                                 f"{', '.join(missing)} (it generates {', '.join(source.class_names) or 'no labelled classes'}); "
                                 f"balancing needs a class-conditional checkpoint or samples of every minority class")
        out += deficit
    if condition.synth_ratio:
        if not condition.real and not can.all():
            missing = [c for c, ok in zip(class_names, can) if not ok]
            raise DermsynthError(f"condition {condition.name!r} (synthetic only) needs every class, but "
                                 f"{source.name} cannot generate {', '.join(missing)}")
        weights = counts * can
        if weights.sum() == 0:
            raise DermsynthError(f"condition {condition.name!r}: {source.name} generates none of the classes "
                                 f"{', '.join(class_names)}")
        out += _allocate(round(condition.synth_ratio * counts.sum()), weights.astype(np.float64))
    return out


# --- configuration --------------------------------------------------------------------------------
@dataclass
class AugmentExperimentConfig:
    """Every setting of an augmentation experiment; written to ``<out>/config.json``."""

    data: str = "phantom"                # dataset spec for load_dataset (folder, cache, .npz, phantom[:N])
    out: str = "runs/augment"
    size: int = 28                       # seed 002 classifies 28x28 images
    conditions: list[str] = field(default_factory=lambda: ["real", "real+classic"])
    seeds: int = 5                       # K repeats per condition
    seed: int = 0                        # first seed; the runs use seed, seed + 1, ..., seed + K - 1
    baseline: str = "real"
    synthetic: str | None = None         # GAN checkpoint, sample folder with manifest.csv, or "phantom"
    synthetic_class: str | None = None   # the one class of an unconditional checkpoint
    truncation: float | None = None      # latent truncation when sampling a checkpoint
    split: str | None = None             # a saved split (.json/.csv); default: made with split_seed
    split_seed: int = 0
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    classifier: str = "smallcnn"
    epochs: int = 50
    batch_size: int = 64
    lr: float = 1e-3
    patience: int | None = 10
    class_weighting: bool = False
    n_boot: int = 2000
    device: str = "cpu"

    def validate(self) -> AugmentExperimentConfig:
        if not self.conditions:
            raise DermsynthError("give at least one condition")
        names = [Condition.parse(c).name for c in self.conditions]
        if len(set(names)) != len(names):
            raise DermsynthError(f"conditions repeat: {', '.join(self.conditions)}")
        if Condition.parse(self.baseline).name not in names:
            raise DermsynthError(f"the baseline {self.baseline!r} is not among the conditions "
                                 f"({', '.join(self.conditions)}); add it or choose another --baseline")
        for name in ("seeds", "epochs", "batch_size", "size"):
            if getattr(self, name) < 1:
                raise DermsynthError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.seed < 0 or self.n_boot < 1 or self.lr <= 0 or (self.patience is not None and self.patience < 1):
            raise DermsynthError("need seed >= 0, n_boot >= 1, lr > 0 and patience >= 1 (or none)")
        if self.classifier not in CLASSIFIERS:
            raise DermsynthError(f"unknown classifier {self.classifier!r}; available: {', '.join(sorted(CLASSIFIERS))}")
        return self

    @property
    def parsed_conditions(self) -> list[Condition]:
        return [Condition.parse(c) for c in self.conditions]

    @property
    def seed_list(self) -> list[int]:
        return [self.seed + k for k in range(self.seeds)]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["fractions"] = list(self.fractions)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> AugmentExperimentConfig:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in d.items() if k in known}
        if "fractions" in values:
            values["fractions"] = tuple(values["fractions"])
        return cls(**values)


@dataclass
class AugmentExperimentResult:
    """What :func:`run_augment_experiment` produced."""

    out: Path
    results: dict  # the content of results.json
    table: str  # table.md
    report: Path
    trained: list[tuple[str, int]]  # (condition, seed) pairs trained by this call
    skipped: list[tuple[str, int]]  # pairs found finished and reused


# --- small file helpers ---------------------------------------------------------------------------
def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _clean(obj: Any) -> Any:
    """JSON-ready: NaN/inf -> None, NumPy scalars/arrays -> Python."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _write_json(path: Path, obj: Any) -> None:
    _atomic_write(path, json.dumps(_clean(obj), indent=1) + "\n")


def _write_csv(path: Path, header: Sequence[str], rows: list[tuple]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    os.replace(tmp, path)


# --- setup: data, split, source, resumption --------------------------------------------------------
def _check_resumable(out: Path, cfg: AugmentExperimentConfig) -> None:
    path = out / CONFIG_FILE
    if not path.is_file():
        return
    try:
        saved = AugmentExperimentConfig.from_dict(json.loads(path.read_text())).to_dict()
    except (OSError, ValueError, TypeError) as exc:
        raise DermsynthError(f"{path}: unreadable experiment config ({exc})") from None
    new = cfg.to_dict()
    changed = [k for k in new if k not in RESUMABLE_CHANGES and saved.get(k) != new[k]]
    if changed:
        k = changed[0]
        raise DermsynthError(f"{out} holds an experiment with other settings ({k}: {saved.get(k)!r} there, "
                             f"{new[k]!r} now); use another --out or the same settings")


def _check_split(split: Split, dataset: LesionDataset) -> None:
    """The split's labels match the dataset's, and no group (lesion) spans two splits."""
    label_of = dict(zip(split.ids, split.labels))
    bad = next((i for i, y in zip(dataset.ids, dataset.labels) if i in label_of and label_of[i] != y), None)
    if bad is not None:
        raise DataError(f"split labels disagree with the data (e.g. image {bad!r}); was the split made from "
                        f"another dataset or class order?")
    where: dict[str, str] = {}
    for g, s in zip(split.groups, split.splits):
        if where.setdefault(g, s) != s:
            raise DataError(f"split puts lesion/group {g!r} in both {where[g]} and {s}")


def _load_split(cfg: AugmentExperimentConfig, dataset: LesionDataset, out: Path) -> Split:
    saved = out / SPLIT_FILE
    if cfg.split is not None:
        split = Split.load(cfg.split)
        if saved.is_file() and Split.load(saved).splits != split.splits:
            raise DermsynthError(f"{out} was run with another split than {cfg.split}; use another --out")
    elif saved.is_file():
        split = Split.load(saved)
    else:
        split = split_dataset(dataset, fractions=cfg.fractions, seed=cfg.split_seed)
    _check_split(split, dataset)
    if tuple(split.names[:3]) != ("train", "val", "test"):
        raise DataError(f"the split must name train, val and test, got {', '.join(split.names)}")
    return split


def _load_data(cfg: AugmentExperimentConfig, dataset: LesionDataset | None, progress: bool) -> LesionDataset:
    if dataset is None:
        from dermsynth.data.prepare import load_dataset

        dataset = load_dataset(cfg.data, size=cfg.size, progress=progress)
    if dataset.size != cfg.size:
        raise DataError(f"the data are {dataset.size}px but the experiment is set to {cfg.size}px")
    if dataset.num_classes < 2 or (dataset.labels < 0).any():
        raise DataError(f"{dataset.source or 'the data'}: the experiment needs every image labelled with one of "
                        f"at least two classes")
    return dataset


# --- one (condition, seed) run ---------------------------------------------------------------------
@dataclass
class _TrainingSet:
    images: np.ndarray
    labels: np.ndarray
    ids: list[str]
    kinds: list[str]  # "real" or "synthetic"


def _training_set(cond: Condition, seed: int, real: LesionDataset, counts: np.ndarray,
                  source: SyntheticSource | None) -> _TrainingSet:
    parts = []
    if cond.real:
        parts.append((real.images, real.labels, list(real.ids), "real"))
    if counts.sum():
        syn = source.draw(counts, real.class_names, real.size, seed)
        parts.append((syn.images, syn.labels, syn.ids, "synthetic"))
    return _TrainingSet(np.concatenate([np.asarray(p[0]) for p in parts]), np.concatenate([p[1] for p in parts]),
                        [i for p in parts for i in p[2]], [p[3] for p in parts for _ in p[2]])


def _run_paths(out: Path, cond: Condition, seed: int) -> dict[str, Path]:
    base = out / "runs" / cond.slug
    return {"json": base / f"seed{seed}.json", "npz": base / f"seed{seed}.npz",
            "manifest": base / f"seed{seed}_manifest.csv"}


def _run_one(cfg: AugmentExperimentConfig, cond: Condition, seed: int, parts: dict[str, LesionDataset],
             counts: np.ndarray, source: SyntheticSource | None, out: Path, progress: bool) -> dict:
    """Train, evaluate and save one (condition, seed) pair; the JSON is written last (= finished)."""
    names = parts["train"].class_names
    train = _training_set(cond, seed, parts["train"], counts, source)
    val, test = parts["val"], parts["test"]
    model = build_classifier(cfg.classifier, len(names), cfg.size, seed=seed)
    fit = train_classifier(model, train.images, train.labels, val.images, val.labels, epochs=cfg.epochs,
                           batch_size=cfg.batch_size, lr=cfg.lr, augment=cond.classic,
                           class_weighting=cfg.class_weighting, patience=cfg.patience, seed=seed,
                           device=cfg.device, progress=progress)
    probs = predict_proba(fit.model, np.asarray(test.images), device=cfg.device)
    metrics = evaluate_predictions(probs, test.labels, names)
    paths = _run_paths(out, cond, seed)
    paths["json"].parent.mkdir(parents=True, exist_ok=True)
    rows = [("train", k, i, names[y]) for i, k, y in zip(train.ids, train.kinds, train.labels)]
    rows += [(split, "real", i, names[y]) for split, ds in (("val", val), ("test", test))
             for i, y in zip(ds.ids, ds.labels)]
    _write_csv(paths["manifest"], MANIFEST_COLUMNS, rows)
    tmp = paths["npz"].with_name(f".{paths['npz'].stem}.tmp.npz")
    np.savez_compressed(tmp, probs=probs, labels=test.labels, ids=np.asarray(test.ids))
    os.replace(tmp, paths["npz"])
    record = {"condition": cond.name, "seed": seed, "metrics": metrics.as_dict(),
              "n_train_real": train.kinds.count("real"), "n_train_synthetic": train.kinds.count("synthetic"),
              "synthetic_per_class": dict(zip(names, counts.tolist())), "best_epoch": fit.best_epoch,
              "epochs_run": len(fit.history), "stopped_early": fit.stopped_early, "seconds": fit.seconds,
              "history": fit.history}
    _write_json(paths["json"], record)
    return record


def _finished(out: Path, cond: Condition, seed: int) -> dict | None:
    paths = _run_paths(out, cond, seed)
    if not (paths["json"].is_file() and paths["npz"].is_file() and paths["manifest"].is_file()):
        return None
    try:
        record = json.loads(paths["json"].read_text())
    except (OSError, ValueError):
        return None  # a damaged result is simply run again
    return record if record.get("condition") == cond.name and record.get("seed") == seed else None


# --- statistics -----------------------------------------------------------------------------------
def _metric_values(records: list[dict], class_names: list[str], mel: int | None) -> dict[str, list[float]]:
    """Per-run values of every summarised metric, by metric name."""
    keys = ["macro_auc", "balanced_accuracy", "accuracy"] + (["melanoma_auc"] if mel is not None else [])
    values = {k: [r["metrics"][k] for r in records] for k in keys}
    for c in class_names:
        values[f"auc/{c}"] = [r["metrics"]["per_class_auc"][c] for r in records]
        values[f"recall/{c}"] = [r["metrics"]["per_class_recall"][c] for r in records]
    return values


def _summaries(values: dict[str, list[float]]) -> dict[str, dict]:
    out = {}
    for k, v in values.items():
        finite = [x for x in v if x is not None and math.isfinite(x)]
        out[k] = asdict(summarize(finite)) if finite else None
    return out


def _mean_probs(out: Path, cond: Condition, seeds: list[int]) -> tuple[np.ndarray, np.ndarray]:
    loaded = [np.load(_run_paths(out, cond, s)["npz"]) for s in seeds]
    return np.mean([d["probs"] for d in loaded], axis=0), loaded[0]["labels"]


def _compare(cfg: AugmentExperimentConfig, out: Path, cond: Condition, base: Condition,
             values: dict[str, list[float]], base_values: dict[str, list[float]], mel: int | None) -> dict:
    """Paired tests over seeds for the headline metrics, and the bootstrap CI of the AUC difference."""
    paired = {}
    for key in ("macro_auc", "balanced_accuracy", "melanoma_auc"):
        if key not in values:
            continue
        with warnings.catch_warnings():  # scipy warns about tiny samples; the p-value says it all
            warnings.simplefilter("ignore")
            paired[key] = asdict(compare_to_baseline(values[key], base_values[key], seed=cfg.seed))
    probs, labels = _mean_probs(out, cond, cfg.seed_list)
    base_probs, _ = _mean_probs(out, base, cfg.seed_list)
    boot = {"macro_auc": asdict(bootstrap_auc_difference(probs, base_probs, labels, n_boot=cfg.n_boot,
                                                         seed=cfg.seed))}
    if mel is not None:
        boot["melanoma_auc"] = asdict(bootstrap_auc_difference(probs, base_probs, labels, n_boot=cfg.n_boot,
                                                               seed=cfg.seed, class_index=mel))
    return {"paired": paired, "bootstrap_seed_mean_probs": boot}


def _aggregate(cfg: AugmentExperimentConfig, out: Path, records: dict[str, list[dict]], parts: dict[str, LesionDataset],
               counts: dict[str, np.ndarray], source: SyntheticSource | None, dataset: LesionDataset) -> dict:
    names = list(dataset.class_names)
    mel = melanoma_index(names)
    base = Condition.parse(cfg.baseline)
    values = {c.name: _metric_values(records[c.name], names, mel) for c in cfg.parsed_conditions}
    conditions = {}
    for cond in cfg.parsed_conditions:
        conf = np.sum([r["metrics"]["confusion"] for r in records[cond.name]], axis=0)
        conditions[cond.name] = {
            "label": cond.label, "synthetic_per_class": dict(zip(names, counts[cond.name].tolist())),
            "summary": _summaries(values[cond.name]), "confusion_sum_over_seeds": conf,
            "runs": [{k: v for k, v in r.items() if k != "history"} for r in records[cond.name]],
            "vs_baseline": (None if cond.name == base.name else
                            _compare(cfg, out, cond, base, values[cond.name], values[base.name], mel))}
    return {
        "config": cfg.to_dict(), "data": {"source": dataset.source, "images": len(dataset), "class_names": names,
                                          "class_counts": dataset.class_counts()},
        "split": {s: parts[s].class_counts() for s in ("train", "val", "test")},
        "synthetic_source": None if source is None else source.describe(),
        "baseline": base.name, "melanoma_class": None if mel is None else names[mel],
        "seeds": cfg.seed_list, "conditions": conditions,
        "notes": {"ci": "95% t-interval over seeds", "paired": "condition - baseline, paired by seed: mean "
                  "difference with its 95% t-interval, exact sign-flip permutation p (two-sided), Wilcoxon p",
                  "bootstrap": "percentile bootstrap over test images of AUC(condition) - AUC(baseline), each "
                  "condition's test probabilities averaged over its seeds"}}


def _write_combined_manifest(out: Path, cfg: AugmentExperimentConfig) -> None:
    rows = []
    for cond in cfg.parsed_conditions:
        for seed in cfg.seed_list:
            with open(_run_paths(out, cond, seed)["manifest"], newline="") as f:
                rows += [(cond.name, seed, *r) for r in list(csv.reader(f))[1:]]
    _write_csv(out / MANIFEST_FILE, ("condition", "seed", *MANIFEST_COLUMNS), rows)


# --- the experiment -------------------------------------------------------------------------------
def run_augment_experiment(config: AugmentExperimentConfig, *, dataset: LesionDataset | None = None,
                           source: SyntheticSource | None = None, progress: bool = True) -> AugmentExperimentResult:
    """Run (or resume) the experiment of ``config``; see the module docstring.

    ``dataset``: the real data (default: ``load_dataset(config.data, size=config.size)``). ``source``: a
    synthetic source object (default: opened from ``config.synthetic``; in the saved configuration a
    given object is recorded by its name).
    """
    cfg = config.validate()
    if source is not None:
        cfg = replace(cfg, synthetic=f"<{source.name}>")
    out = Path(cfg.out)
    _check_resumable(out, cfg)
    conditions = cfg.parsed_conditions
    if source is None and cfg.synthetic is not None and any(c.uses_synthetic for c in conditions):
        source = open_source(cfg.synthetic, class_name=cfg.synthetic_class, truncation=cfg.truncation,
                             device=cfg.device)
    dataset = _load_data(cfg, dataset, progress)
    if source is not None:
        source.check_classes(dataset.class_names)
    split = _load_split(cfg, dataset, out)
    parts = split.apply(dataset)
    train_counts = np.bincount(parts["train"].labels, minlength=dataset.num_classes)
    counts = {c.name: synthetic_counts(c, train_counts, dataset.class_names, source) for c in conditions}
    out.mkdir(parents=True, exist_ok=True)  # every input is checked: from here on, results are written
    split.save(out / SPLIT_FILE)
    _write_json(out / CONFIG_FILE, cfg.to_dict())

    records: dict[str, list[dict]] = {c.name: [] for c in conditions}
    todo, skipped, trained = [], [], []
    for cond in conditions:
        for seed in cfg.seed_list:
            done = _finished(out, cond, seed)
            if done is None:
                todo.append((cond, seed))
            else:
                records[cond.name].append(done)
                skipped.append((cond.name, seed))
    bar = tqdm(todo, desc="augment", unit="run", disable=not progress, dynamic_ncols=True)
    for cond, seed in bar:
        bar.set_postfix_str(f"{cond.name} seed {seed}")
        rec = _run_one(cfg, cond, seed, parts, counts[cond.name], source, out, progress)
        records[cond.name].append(rec)
        trained.append((cond.name, seed))
        if progress:
            bar.write(f"{cond.name} seed {seed}: macro AUC {rec['metrics']['macro_auc']:.4f}, balanced accuracy "
                      f"{rec['metrics']['balanced_accuracy']:.4f} (best epoch {rec['best_epoch']} of "
                      f"{rec['epochs_run']}, {rec['seconds']:.0f} s)")
    bar.close()
    for cond in conditions:
        records[cond.name].sort(key=lambda r: r["seed"])

    from dermsynth.classify.experiment_report import write_outputs

    results = _clean(_aggregate(cfg, out, records, parts, counts, source, dataset))  # as results.json holds it
    _write_json(out / RESULTS_FILE, results)
    _write_combined_manifest(out, cfg)
    table, report = write_outputs(results, out)
    return AugmentExperimentResult(out, results, table, report, trained, skipped)
