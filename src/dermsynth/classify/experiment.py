"""The augmentation experiment: does adding synthetic images to the training set help a classifier?

Protocol (``dermsynth augment``; Bissoto et al. 2018 and Essipova et al. 2020):

1. One lesion-grouped, class-stratified train/val/test split of the real data, fixed by ``split_seed``
   (or read from ``split``) and saved as ``split.json``. Validation and test sets are real images only,
   the same for every condition; synthetic images only ever join the training set.
2. Conditions (:mod:`~dermsynth.classify.experiment_config`), written as ``+``-joined tokens: ``real``,
   ``classic``, ``synth:R``, ``balance``; e.g. ``real``, ``real+classic``, ``real+synth:0.5``,
   ``real+balance``, ``synth:1``.
3. Each condition is trained with K seeds (``seed``, ``seed + 1``, ...). A seed fixes the classifier's
   initial weights, the batch order, the augmentation and the synthetic draw; the same seed gives the
   same initial weights in every condition, so conditions are compared paired by seed.
4. Metrics on the untouched real test set (:func:`~dermsynth.classify.scoring.score_predictions`):
   macro one-vs-rest AUC, per-class AUC, melanoma-vs-rest AUC, balanced accuracy, accuracy, per-class
   recall, confusion matrix; with ``test`` (``--test SRC``) also on an external test set from another
   dataset, its classes matched to the training classes by name (:mod:`~dermsynth.classify.external`)
   and scored on the classes it has.
5. Statistics (:mod:`~dermsynth.classify.stats`): mean ± std and the 95 % t-interval over seeds; each
   condition against the baseline (default ``real``) paired by seed (mean difference with its
   t-interval, exact sign-flip permutation p, Wilcoxon p); and a percentile bootstrap CI, over test
   images, of the macro-AUC difference between the seed-averaged predictions of the two conditions.

Every (condition, seed) result is written as it finishes (``runs/<condition>/seed<k>.json`` with the
test probabilities in ``.npz`` and the image manifest in ``_manifest.csv``); a re-run with the same
``out`` skips finished pairs, so an interrupted experiment continues where it stopped, and more seeds
or conditions can be added later. Outputs: ``config.json``, ``split.json``, ``results.json`` (every
number), ``table.md`` / ``table.txt`` (Bissoto et al.'s "Training data | AUC (%)" layout, then details),
``auc.png``, ``confusion/<condition>.png``, ``manifest.csv`` (every image of every run, by split) and
a self-contained ``report.html``.
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from dermsynth.classify.scoring import score_predictions, melanoma_index
from dermsynth.classify.experiment_config import (RESUMABLE_CHANGES, AugmentExperimentConfig, Condition,
                                                  build_training_set, synthetic_counts)
from dermsynth.classify.experiment_report import write_outputs
from dermsynth.classify.external import class_mapping, map_to_training_classes
from dermsynth.classify.fit import predict_proba, train_classifier
from dermsynth.models.classifiers import build_classifier
from dermsynth.data.splits import Split, split_dataset
from dermsynth.classify.stats import bootstrap_auc_difference, compare_to_baseline, summarize
from dermsynth.classify.synthetic import SyntheticSource, open_source
from dermsynth.data.dataset import LesionDataset
from dermsynth.data.prepare import load_dataset
from dermsynth.device import bf16_native, resolve_device, runtime_info
from dermsynth.errors import DataError, DermsynthError
from dermsynth.io import atomic_open, write_csv, write_json
from dermsynth.progress import tqdm

__all__ = ["AugmentExperimentConfig", "AugmentExperimentResult", "Condition", "run_augment_experiment",
           "synthetic_counts"]

CONFIG_FILE, SPLIT_FILE, RESULTS_FILE, MANIFEST_FILE = "config.json", "split.json", "results.json", "manifest.csv"
MANIFEST_COLUMNS = ("split", "kind", "id", "class")
#: The test sets a run is scored on: (split name, key of its metrics in a run record, prefix of its arrays in
#: the run's .npz: probs, labels, ids).
TEST_SETS = (("test", "metrics", ""), ("external", "external_metrics", "external_"))


@dataclass
class AugmentExperimentResult:
    """What :func:`run_augment_experiment` produced."""

    out: Path
    results: dict  # the content of results.json
    table: str  # table.md
    report: Path
    trained: list[tuple[str, int]]  # (condition, seed) pairs trained by this call
    skipped: list[tuple[str, int]]  # pairs found finished and reused


# --- JSON ------------------------------------------------------------------------------------------
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
    write_json(path, _clean(obj), indent=1)


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
        dataset = load_dataset(cfg.data, size=cfg.size, progress=progress)
    if dataset.size != cfg.size:
        raise DataError(f"the data are {dataset.size}px but the experiment is set to {cfg.size}px")
    if dataset.num_classes < 2 or (dataset.labels < 0).any():
        raise DataError(f"{dataset.source or 'the data'}: the experiment needs every image labelled with one of "
                        f"at least two classes")
    return dataset


def _load_external(cfg: AugmentExperimentConfig, dataset: LesionDataset, progress: bool) -> tuple[LesionDataset, dict]:
    """The external test set relabelled with the training classes, and what to record about it."""
    raw = load_dataset(cfg.test, size=cfg.size, progress=progress)
    if len(raw) == 0:
        raise DataError(f"{cfg.test}: the external test set is empty")
    test = map_to_training_classes(raw, dataset.class_names)
    shared = sorted(set(raw.ids) & set(dataset.ids))
    info = {"source": raw.source or cfg.test, "images": len(raw), "class_counts": raw.class_counts(),
            "mapping": class_mapping(raw.class_names, dataset.class_names, cfg.test),
            "classes_scored": [c for c, n in test.class_counts().items() if n], "ids_also_in_data": len(shared)}
    return test, info


# --- one (condition, seed) run ---------------------------------------------------------------------
def _run_paths(out: Path, cond: Condition, seed: int) -> dict[str, Path]:
    base = out / "runs" / cond.slug
    return {"json": base / f"seed{seed}.json", "npz": base / f"seed{seed}.npz",
            "manifest": base / f"seed{seed}_manifest.csv"}


def _run_one(cfg: AugmentExperimentConfig, cond: Condition, seed: int, parts: dict[str, LesionDataset],
             counts: np.ndarray, source: SyntheticSource | None, out: Path, progress: bool) -> dict:
    """Train, evaluate and save one (condition, seed) pair; the JSON is written last (= finished)."""
    names = parts["train"].class_names
    train = build_training_set(cond, seed, parts["train"], counts, source)
    val = parts["val"]
    model = build_classifier(cfg.classifier, len(names), cfg.size, seed=seed)
    fit = train_classifier(model, train.images, train.labels, val.images, val.labels, epochs=cfg.epochs,
                           batch_size=cfg.batch_size, lr=cfg.lr, transforms=cond.classic,
                           class_weighting=cfg.class_weighting, patience=cfg.patience, seed=seed,
                           device=cfg.device, progress=progress)
    paths = _run_paths(out, cond, seed)
    paths["json"].parent.mkdir(parents=True, exist_ok=True)
    rows = [("train", k, i, names[y]) for i, k, y in zip(train.ids, train.kinds, train.labels)]
    arrays, record = {}, {"condition": cond.name, "seed": seed}
    for split, metrics_key, prefix in TEST_SETS:
        if split not in parts:
            continue
        ds = parts[split]
        probs = predict_proba(fit.model, np.asarray(ds.images), device=cfg.device)
        record[metrics_key] = score_predictions(probs, ds.labels, names).as_dict()
        arrays.update({f"{prefix}probs": probs, f"{prefix}labels": ds.labels, f"{prefix}ids": np.asarray(ds.ids)})
    rows += [(split, "real", i, names[y]) for split in ("val", "test", "external") if split in parts
             for i, y in zip(parts[split].ids, parts[split].labels)]
    write_csv(paths["manifest"], MANIFEST_COLUMNS, rows)
    with atomic_open(paths["npz"], "wb") as f:
        np.savez_compressed(f, **arrays)
    record.update({"n_train_real": train.kinds.count("real"), "n_train_synthetic": train.kinds.count("synthetic"),
                   "synthetic_per_class": dict(zip(names, counts.tolist())), "best_epoch": fit.best_epoch,
                   "epochs_run": len(fit.history), "stopped_early": fit.stopped_early, "seconds": fit.seconds,
                   "history": fit.history})
    _write_json(paths["json"], record)
    return record


def _finished(out: Path, cond: Condition, seed: int, external: bool) -> dict | None:
    paths = _run_paths(out, cond, seed)
    if not (paths["json"].is_file() and paths["npz"].is_file() and paths["manifest"].is_file()):
        return None
    try:
        record = json.loads(paths["json"].read_text())
    except (OSError, ValueError):
        return None  # a damaged result is simply run again
    if external and "external_metrics" not in record:
        return None
    return record if record.get("condition") == cond.name and record.get("seed") == seed else None


# --- statistics -----------------------------------------------------------------------------------
def _metric_values(records: list[dict], key: str, class_names: list[str], mel: int | None) -> dict[str, list[float]]:
    """Per-run values of every summarised metric of test set ``key`` (a run record's metrics entry)."""
    keys = ["macro_auc", "balanced_accuracy", "accuracy"] + (["melanoma_auc"] if mel is not None else [])
    values = {k: [r[key][k] for r in records] for k in keys}
    for c in class_names:
        values[f"auc/{c}"] = [r[key]["per_class_auc"][c] for r in records]
        values[f"recall/{c}"] = [r[key]["per_class_recall"][c] for r in records]
    return values


def _finite(values: list) -> list[float]:
    return [x for x in values if x is not None and math.isfinite(x)]


def _summaries(values: dict[str, list[float]]) -> dict[str, dict]:
    return {k: asdict(summarize(_finite(v))) if _finite(v) else None for k, v in values.items()}


def _mean_probs(out: Path, cond: Condition, seeds: list[int], prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """One test set's probabilities averaged over seeds, and its labels."""
    loaded = [np.load(_run_paths(out, cond, s)["npz"]) for s in seeds]
    return np.mean([d[f"{prefix}probs"] for d in loaded], axis=0), loaded[0][f"{prefix}labels"]


def _compare(cfg: AugmentExperimentConfig, out: Path, cond: Condition, base: Condition, test_set: tuple[str, str, str],
             values: dict[str, list[float]], base_values: dict[str, list[float]], mel: int | None) -> dict:
    """Paired tests over seeds for the headline metrics, and the bootstrap CI of the AUC difference."""
    prefix = test_set[2]
    paired = {}
    for key in ("macro_auc", "balanced_accuracy", "melanoma_auc"):
        if key not in values or len(_finite(values[key])) != len(values[key]):
            continue
        with warnings.catch_warnings():  # scipy warns about tiny samples; the p-value says it all
            warnings.simplefilter("ignore")
            paired[key] = asdict(compare_to_baseline(values[key], base_values[key], seed=cfg.seed))
    probs, labels = _mean_probs(out, cond, cfg.seed_list, prefix)
    base_probs, _ = _mean_probs(out, base, cfg.seed_list, prefix)
    boot = {"macro_auc": asdict(bootstrap_auc_difference(probs, base_probs, labels, n_boot=cfg.n_boot,
                                                         seed=cfg.seed))}
    if mel is not None:
        boot["melanoma_auc"] = asdict(bootstrap_auc_difference(probs, base_probs, labels, n_boot=cfg.n_boot,
                                                               seed=cfg.seed, class_index=mel))
    return {"paired": paired, "bootstrap_seed_mean_probs": boot}


def _test_set_results(cfg: AugmentExperimentConfig, out: Path, records: dict[str, list[dict]],
                      test_set: tuple[str, str, str], names: list[str], scored: list[str]) -> dict[str, dict]:
    """Per condition: summaries over seeds, the confusion matrix summed over seeds, and the comparison with the
    baseline, all on one test set; ``scored``: the classes that test set holds."""
    _, key, _ = test_set
    mel = melanoma_index(names)
    mel = mel if mel is not None and names[mel] in scored else None
    base = Condition.parse(cfg.baseline)
    values = {c.name: _metric_values(records[c.name], key, scored, mel) for c in cfg.parsed_conditions}
    return {cond.name: {
        "summary": _summaries(values[cond.name]),
        "confusion_sum_over_seeds": np.sum([r[key]["confusion"] for r in records[cond.name]], axis=0),
        "vs_baseline": (None if cond.name == base.name else
                        _compare(cfg, out, cond, base, test_set, values[cond.name], values[base.name], mel)),
    } for cond in cfg.parsed_conditions}


def _aggregate(cfg: AugmentExperimentConfig, out: Path, records: dict[str, list[dict]], parts: dict[str, LesionDataset],
               counts: dict[str, np.ndarray], source: SyntheticSource | None, dataset: LesionDataset,
               external: dict | None) -> dict:
    names = list(dataset.class_names)
    mel = melanoma_index(names)
    internal = _test_set_results(cfg, out, records, TEST_SETS[0], names, names)
    outside = (_test_set_results(cfg, out, records, TEST_SETS[1], names, external["classes_scored"])
               if external is not None else None)
    conditions = {}
    for cond in cfg.parsed_conditions:
        conditions[cond.name] = {
            "label": cond.label, "synthetic_per_class": dict(zip(names, counts[cond.name].tolist())),
            **internal[cond.name],
            "runs": [{k: v for k, v in r.items() if k != "history"} for r in records[cond.name]]}
        if outside is not None:
            conditions[cond.name]["external"] = outside[cond.name]
    return {
        "config": cfg.to_dict(), "data": {"source": dataset.source, "images": len(dataset), "class_names": names,
                                          "class_counts": dataset.class_counts()},
        "split": {s: parts[s].class_counts() for s in ("train", "val", "test")},
        "external_test": external,
        "synthetic_source": None if source is None else source.describe(),
        "baseline": Condition.parse(cfg.baseline).name, "melanoma_class": None if mel is None else names[mel],
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
    write_csv(out / MANIFEST_FILE, ("condition", "seed", *MANIFEST_COLUMNS), rows)


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
    external = None
    if cfg.test is not None:
        parts["external"], external = _load_external(cfg, dataset, progress)
    if source is not None:  # the training split only: a map translator never sees validation or test maps
        source.bind_training(parts["train"])
    train_counts = np.bincount(parts["train"].labels, minlength=dataset.num_classes)
    counts = {c.name: synthetic_counts(c, train_counts, dataset.class_names, source) for c in conditions}
    out.mkdir(parents=True, exist_ok=True)  # every input is checked: from here on, results are written
    split.save(out / SPLIT_FILE)
    device = resolve_device(cfg.device)
    _write_json(out / CONFIG_FILE, {**cfg.to_dict(), "runtime": runtime_info(device, bf16=bf16_native(device))})

    records: dict[str, list[dict]] = {c.name: [] for c in conditions}
    todo, skipped, trained = [], [], []
    for cond in conditions:
        for seed in cfg.seed_list:
            done = _finished(out, cond, seed, external is not None)
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
            ext = rec.get("external_metrics")
            bar.write(f"{cond.name} seed {seed}: macro AUC {rec['metrics']['macro_auc']:.4f}, balanced accuracy "
                      f"{rec['metrics']['balanced_accuracy']:.4f}"
                      + (f", external macro AUC {ext['macro_auc']:.4f}" if ext else "")
                      + f" (best epoch {rec['best_epoch']} of {rec['epochs_run']}, {rec['seconds']:.0f} s)")
    bar.close()
    for cond in conditions:
        records[cond.name].sort(key=lambda r: r["seed"])

    # cleaned as results.json holds it
    results = _clean(_aggregate(cfg, out, records, parts, counts, source, dataset, external))
    _write_json(out / RESULTS_FILE, results)
    _write_combined_manifest(out, cfg)
    table, report = write_outputs(results, out)
    return AugmentExperimentResult(out, results, table, report, trained, skipped)
