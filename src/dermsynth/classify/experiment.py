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

Real fractions (``real_fractions``, issue 21): every condition is also trained on nested, lesion-grouped,
class-stratified fractions of the training split (:func:`~dermsynth.data.splits.real_fraction_subset`, seeded by the
split's seed); validation and test never change. The ratio sweep (``synthetic_ratios``) adds ``real+synth:R`` at
the sweep fraction (default the smallest). A synthetic source may name ``{fraction}`` (one GAN per fraction, from
``dermsynth train --split FILE --real-fraction f``), and several named sources may be compared (``sources``;
``real+synth:1@dcgan``). A trained model whose recorded training images (the ids fingerprint in its
checkpoint) are not the fraction it augments is refused, so a GAN never sees real images its classifier is
denied. Each run record carries ``real_fraction``, ``n_real`` (the fraction's real training images) and
``synthetic_ratio``; ``results.json`` holds ``runs`` (every run), ``fractions`` (per fraction, per condition,
against the baseline at that fraction), ``ratio_sweep`` and, as before, ``conditions`` (the largest fraction).

Every (fraction, condition, seed) result is written as it finishes (``runs/[frac<f>/]<condition>/seed<k>.json``
with the test probabilities in ``.npz`` and the image manifest in ``_manifest.csv``); a re-run with the same
``out`` skips finished runs, so an interrupted experiment continues where it stopped, and more seeds,
conditions or fractions can be added later. The runs are independent: ``workers`` > 1 runs them in a local
process pool (CPUs / workers threads each), ``executor`` ``local`` / ``debug`` / ``slurm`` as submitit jobs
(:func:`run_in_folder` rebuilds the study from ``config.json``; a SLURM array is submitted and the next call
collects it); the results are those of the serial run. Outputs: ``config.json``, ``split.json``,
``results.json`` (every number), ``table.md`` / ``table.txt`` (Bissoto et al.'s "Training data | AUC (%)" layout,
then details and, with several fractions or ratios, the data-efficiency tables), ``auc.png``,
``confusion/<condition>.png``, ``manifest.csv`` (every image of every run, by split) and a self-contained
``report.html``; ``layout="essipova2020"`` adds Essipova et al.'s table (:mod:`~dermsynth.classify.essipova_table`).
"""

from __future__ import annotations

import csv
import json
import math
import multiprocessing
import os
import re
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from functools import partial
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dermsynth.classify.scoring import score_predictions, melanoma_index
from dermsynth.classify.essipova_table import write_essipova_table
from dermsynth.classify.experiment_config import (EXECUTION_SETTINGS, RESUMABLE_CHANGES, AugmentExperimentConfig,
                                                  Condition, build_training_set, synthetic_counts)
from dermsynth.classify.experiment_report import write_outputs
from dermsynth.classify.external import class_mapping, map_to_training_classes
from dermsynth.classify.fit import predict_proba, train_classifier
from dermsynth.models.classifiers import build_classifier
from dermsynth.data.splits import Split, ids_fingerprint, real_fraction_subset, restrict_classes, split_dataset
from dermsynth.classify.stats import bootstrap_auc_difference, compare_to_baseline, delong_test, summarize
from dermsynth.classify.synthetic import SyntheticSource, open_source
from dermsynth.data.dataset import LesionDataset
from dermsynth.data.prepare import load_dataset
from dermsynth.device import THREADS_ENV, available_cpus, bf16_native, resolve_device, runtime_info, user_threads
from dermsynth.errors import DataError, DermsynthError
from dermsynth.io import atomic_open, write_csv, write_json
from dermsynth.progress import tqdm

__all__ = ["AugmentExperimentConfig", "AugmentExperimentResult", "Condition", "run_augment_experiment",
           "run_in_folder", "synthetic_counts"]

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
        split = split_dataset(dataset, fractions=cfg.fractions, seed=cfg.split_seed, classes=cfg.classes)
    _check_split(split, dataset)
    if tuple(split.names[:3]) != ("train", "val", "test"):
        raise DataError(f"the split must name train, val and test, got {', '.join(split.names)}")
    return split


def _load_data(cfg: AugmentExperimentConfig, dataset: LesionDataset | None, progress: bool) -> LesionDataset:
    if dataset is None:
        dataset = load_dataset(cfg.data, size=cfg.size, progress=progress)
    if dataset.size != cfg.size:
        raise DataError(f"the data are {dataset.size}px but the experiment is set to {cfg.size}px")
    if cfg.classes is not None:
        dataset = restrict_classes(dataset, cfg.classes)
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


# --- the study: data, split, real fractions, sources --------------------------------------------
@dataclass
class _Study:
    """Everything the runs of one experiment share, built the same way by the caller and by every worker."""

    cfg: AugmentExperimentConfig
    dataset: LesionDataset
    split: Split
    parts: dict[str, LesionDataset]               # train (all of it), val, test[, external]
    external: dict | None                         # what to record about the external test set
    train_at: dict[float, LesionDataset]          # the nested real fraction of the training split
    sources: dict[tuple[str | None, float], SyntheticSource]  # (source name, fraction) -> source
    counts: dict[tuple[float, str], np.ndarray]   # (fraction, condition) -> synthetic images per class

    def run_parts(self, fraction: float) -> dict[str, LesionDataset]:
        return {**self.parts, "train": self.train_at[fraction]}

    def source(self, fraction: float, cond: Condition) -> SyntheticSource | None:
        return self.sources.get((cond.source, fraction))


def _check_training_subset(source: SyntheticSource, fraction: float, train: LesionDataset, strict: bool) -> None:
    """Refuse a trained synthetic model whose recorded training images are not the real fraction it augments
    (``strict``: the experiment names real fractions; otherwise only models trained with --real-fraction)."""
    record = source.training_subset
    if record is None or (not strict and record.get("real_fraction") is None):
        return  # not a trained model (phantom, sample folder), or the one-fraction experiment of old
    if record.get("ids_sha256") == ids_fingerprint(train.ids):
        return
    trained = (f"real fraction {record['real_fraction']:g} of {record['split']}" if record.get("real_fraction")
               else f"split {record['split']}" if record.get("split") else "data outside any split")
    raise DermsynthError(f"{source.name} was trained on {record.get('images')} images ({trained}), not on the "
                         f"{len(train)} images of real fraction {fraction:g} it would augment; train it with "
                         f"`dermsynth train --split <this experiment's split.json> --real-fraction {fraction:g}`"
                         + (" and without --overfit-holdout" if record.get("overfit_holdout") else ""))


def _open_sources(cfg: AugmentExperimentConfig, given: SyntheticSource | None,
                  train_at: dict[float, LesionDataset], class_names: list[str]) -> dict:
    """Each (source name, fraction) a cell draws from, opened once, checked against its fraction's images and
    bound to them (a map translator translates that fraction's training maps only)."""
    sources = {}
    for fraction, cond in cfg.cells():
        key = (cond.source, fraction)
        if not cond.uses_synthetic or key in sources:
            continue
        spec = cfg.source_spec(cond.source, fraction)
        if given is not None:
            source = given
        elif spec is None:
            source = None  # synthetic_counts names what is missing
        else:
            source = open_source(spec, class_name=cfg.synthetic_class, truncation=cfg.truncation, device=cfg.device,
                                 sampler=cfg.sampler, sampling_steps=cfg.sampling_steps, guidance=cfg.guidance)
        if source is not None:
            if cfg.classes is None:  # with --classes, a source's other classes are simply never drawn
                source.check_classes(class_names)
            strict = cfg.fractions_sorted != [1.0] or "{fraction}" in str(cfg.synthetic or "") + "".join(cfg.sources.values())
            _check_training_subset(source, fraction, train_at[fraction], strict)
            source.bind_training(train_at[fraction])
        sources[key] = source
    return sources


def _prepare(cfg: AugmentExperimentConfig, dataset: LesionDataset | None, source: SyntheticSource | None,
             out: Path, progress: bool) -> _Study:
    dataset = _load_data(cfg, dataset, progress)
    split = _load_split(cfg, dataset, out)
    parts = split.apply(dataset)
    external = None
    if cfg.test is not None:
        parts["external"], external = _load_external(cfg, dataset, progress)
    # the training split only, and of it the nested fractions: validation and test never change
    train_at = {f: real_fraction_subset(parts["train"], f, split.fraction_seed) for f in cfg.fractions_sorted}
    sources = _open_sources(cfg, source, train_at, list(dataset.class_names))
    counts = {}
    for fraction, cond in cfg.cells():
        train_counts = np.bincount(train_at[fraction].labels, minlength=dataset.num_classes)
        counts[(fraction, cond.name)] = synthetic_counts(cond, train_counts, dataset.class_names,
                                                         sources.get((cond.source, fraction)))
    return _Study(cfg, dataset, split, parts, external, train_at, sources, counts)


# --- one (fraction, condition, seed) run ----------------------------------------------------------
def _run_paths(out: Path, fraction: float, cond: Condition, seed: int) -> dict[str, Path]:
    """Where a run's files go; the whole training split keeps the folders of experiments before real fractions."""
    base = out / "runs" / ("" if fraction == 1.0 else f"frac{fraction:g}") / cond.slug
    return {"json": base / f"seed{seed}.json", "npz": base / f"seed{seed}.npz",
            "manifest": base / f"seed{seed}_manifest.csv"}


def _run_one(study: _Study, fraction: float, cond: Condition, seed: int, out: Path, progress: bool) -> dict:
    """Train, evaluate and save one run; the JSON is written last (= finished)."""
    cfg, parts = study.cfg, study.run_parts(fraction)
    names = parts["train"].class_names
    counts = study.counts[(fraction, cond.name)]
    train = build_training_set(cond, seed, parts["train"], counts, study.source(fraction, cond))
    val = parts["val"]
    model = build_classifier(cfg.classifier, len(names), cfg.size, seed=seed)
    fit = train_classifier(model, train.images, train.labels, val.images, val.labels, epochs=cfg.epochs,
                           batch_size=cfg.batch_size, lr=cfg.lr, transforms=cond.classic,
                           class_weighting=cfg.class_weighting, patience=cfg.patience, seed=seed,
                           device=cfg.device, progress=progress)
    paths = _run_paths(out, fraction, cond, seed)
    paths["json"].parent.mkdir(parents=True, exist_ok=True)
    rows = [("train", k, i, names[y]) for i, k, y in zip(train.ids, train.kinds, train.labels)]
    # n_real: the real training images of the fraction, used by the classifier itself or through its source
    arrays, record = {}, {"condition": cond.name, "seed": seed, "real_fraction": fraction,
                          "n_real": len(parts["train"]), "synthetic_ratio": cond.synth_ratio,
                          "source": cfg.source_spec(cond.source, fraction) if cond.uses_synthetic else None}
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


def _finished(out: Path, fraction: float, cond: Condition, seed: int, external: bool) -> dict | None:
    paths = _run_paths(out, fraction, cond, seed)
    if not (paths["json"].is_file() and paths["npz"].is_file() and paths["manifest"].is_file()):
        return None
    try:
        record = json.loads(paths["json"].read_text())
    except (OSError, ValueError):
        return None  # a damaged result is simply run again
    if external and "external_metrics" not in record:
        return None
    record.setdefault("real_fraction", 1.0)  # runs of experiments before real fractions
    return record if (record.get("condition"), record.get("seed"), record["real_fraction"]) == \
        (cond.name, seed, fraction) else None


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


def _mean_probs(out: Path, fraction: float, cond: Condition, seeds: list[int], prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """One test set's probabilities averaged over seeds, and its labels."""
    loaded = [np.load(_run_paths(out, fraction, cond, s)["npz"]) for s in seeds]
    return np.mean([d[f"{prefix}probs"] for d in loaded], axis=0), loaded[0][f"{prefix}labels"]


def _compare(cfg: AugmentExperimentConfig, out: Path, fraction: float, cond: Condition, base: Condition,
             test_set: tuple[str, str, str], values: dict[str, list[float]], base_values: dict[str, list[float]],
             mel: int | None) -> dict:
    """Paired tests over seeds for the headline metrics, and the bootstrap CI of the AUC difference."""
    prefix = test_set[2]
    paired = {}
    for key in ("macro_auc", "balanced_accuracy", "melanoma_auc"):
        if key not in values or len(_finite(values[key])) != len(values[key]):
            continue
        with warnings.catch_warnings():  # scipy warns about tiny samples; the p-value says it all
            warnings.simplefilter("ignore")
            paired[key] = asdict(compare_to_baseline(values[key], base_values[key], seed=cfg.seed))
    probs, labels = _mean_probs(out, fraction, cond, cfg.seeds_for(fraction), prefix)
    base_probs, _ = _mean_probs(out, fraction, base, cfg.seeds_for(fraction), prefix)
    boot = {"macro_auc": asdict(bootstrap_auc_difference(probs, base_probs, labels, n_boot=cfg.n_boot,
                                                         seed=cfg.seed))}
    delong = {}
    if mel is not None:
        boot["melanoma_auc"] = asdict(bootstrap_auc_difference(probs, base_probs, labels, n_boot=cfg.n_boot,
                                                               seed=cfg.seed, class_index=mel))
        positive = labels == mel
        if 2 <= positive.sum() <= len(positive) - 2:  # DeLong's variance needs two of each
            delong["melanoma_auc"] = asdict(delong_test(probs[:, mel], base_probs[:, mel], positive))
    return {"paired": paired, "bootstrap_seed_mean_probs": boot, "delong": delong}


def _test_set_results(cfg: AugmentExperimentConfig, out: Path, fraction: float, conditions: list[Condition],
                      records: dict[str, list[dict]], test_set: tuple[str, str, str], names: list[str],
                      scored: list[str]) -> dict[str, dict]:
    """Per condition at one real fraction: summaries over seeds, the confusion matrix summed over seeds, and the
    comparison with the baseline at the same fraction, all on one test set; ``scored``: the classes it holds."""
    _, key, _ = test_set
    mel = melanoma_index(names)
    mel = mel if mel is not None and names[mel] in scored else None
    base = Condition.parse(cfg.baseline)
    values = {c.name: _metric_values(records[c.name], key, scored, mel) for c in conditions}
    return {cond.name: {
        "summary": _summaries(values[cond.name]),
        "confusion_sum_over_seeds": np.sum([r[key]["confusion"] for r in records[cond.name]], axis=0),
        "vs_baseline": (None if cond.name == base.name else
                        _compare(cfg, out, fraction, cond, base, test_set, values[cond.name], values[base.name], mel)),
    } for cond in conditions}


def _fraction_results(study: _Study, out: Path, fraction: float, records: dict[str, list[dict]]) -> dict:
    """Every condition at one real fraction, against the baseline at that fraction."""
    cfg, names = study.cfg, list(study.dataset.class_names)
    conds = [c for f, c in cfg.cells() if f == fraction]
    internal = _test_set_results(cfg, out, fraction, conds, records, TEST_SETS[0], names, names)
    outside = (_test_set_results(cfg, out, fraction, conds, records, TEST_SETS[1], names,
                                 study.external["classes_scored"]) if study.external is not None else None)
    conditions = {}
    for cond in conds:
        counts = study.counts[(fraction, cond.name)]
        conditions[cond.name] = {
            "label": cond.label, "real_fraction": fraction, "n_real": len(study.train_at[fraction]),
            "synthetic_ratio": cond.synth_ratio, "source": cond.source,
            "synthetic_per_class": dict(zip(names, counts.tolist())), **internal[cond.name],
            "runs": [{k: v for k, v in r.items() if k != "history"} for r in records[cond.name]]}
        if outside is not None:
            conditions[cond.name]["external"] = outside[cond.name]
    train = study.train_at[fraction]
    return {"real_fraction": fraction, "n_real": len(train), "lesions": len(set(train.groups)),
            "seeds": cfg.seeds_for(fraction),
            "class_counts": train.class_counts(), "conditions": conditions}


def _aggregate(study: _Study, out: Path, records: dict[tuple[float, str], list[dict]]) -> dict:
    cfg, dataset, parts = study.cfg, study.dataset, study.parts
    names = list(dataset.class_names)
    mel = melanoma_index(names)
    fractions = {}
    for f in cfg.fractions_sorted:
        fractions[f"{f:g}"] = _fraction_results(study, out, f, {c.name: records[(g, c.name)]
                                                                 for g, c in cfg.cells() if g == f})
    top = fractions[f"{cfg.fractions_sorted[-1]:g}"]
    sweep = None
    if cfg.synthetic_ratios:
        at = cfg.sweep_at
        sweep = {"real_fraction": at, "n_real": len(study.train_at[at]), "baseline": Condition.parse(cfg.baseline).name,
                 "ratios": [float(r) for r in cfg.synthetic_ratios],
                 "conditions": [c.name for c in cfg.sweep_conditions]}
    described = {f"{name or 'synthetic'}@{f:g}": s.describe() for (name, f), s in study.sources.items() if s is not None}
    unnamed = study.sources.get((None, cfg.fractions_sorted[-1]))
    return {
        "config": {k: v for k, v in cfg.to_dict().items() if k not in EXECUTION_SETTINGS},
        "data": {"source": dataset.source, "images": len(dataset), "class_names": names,
                 "class_counts": dataset.class_counts()},
        "split": {s: parts[s].class_counts() for s in ("train", "val", "test")},
        "external_test": study.external,
        "synthetic_source": None if unnamed is None else unnamed.describe(), "synthetic_sources": described,
        "baseline": Condition.parse(cfg.baseline).name, "melanoma_class": None if mel is None else names[mel],
        "seeds": cfg.seed_list, "real_fractions": cfg.fractions_sorted, "real_fraction": top["real_fraction"],
        "n_real": top["n_real"], "conditions": top["conditions"], "fractions": fractions, "ratio_sweep": sweep,
        "runs": [{k: v for k, v in r.items() if k != "history"} for f, c in cfg.cells() for r in records[(f, c.name)]],
        "notes": {"ci": "95% t-interval over seeds", "paired": "condition - baseline at the same real fraction, "
                  "paired by seed: mean difference with its 95% t-interval, exact sign-flip permutation p "
                  "(two-sided), Wilcoxon p",
                  "bootstrap": "percentile bootstrap over test images of AUC(condition) - AUC(baseline), each "
                  "condition's test probabilities averaged over its seeds",
                  "fractions": "nested, lesion-grouped, class-stratified subsets of the training split (seeded by "
                  "the split's seed); n_real: the real training images of the fraction; 'conditions' holds the "
                  "largest fraction, 'fractions' every one, 'runs' every run"}}


def _run_predictions(out: Path, record: dict) -> tuple[np.ndarray, np.ndarray]:
    """A run's internal test probabilities and labels (the report's bootstrap over test images)."""
    with np.load(_run_paths(out, record["real_fraction"], Condition.parse(record["condition"]), record["seed"])["npz"]) as d:
        return d["probs"], d["labels"]


def _write_combined_manifest(out: Path, cfg: AugmentExperimentConfig) -> None:
    rows = []
    for fraction, cond in cfg.cells():
        for seed in cfg.seeds_for(fraction):
            with open(_run_paths(out, fraction, cond, seed)["manifest"], newline="") as f:
                rows += [(f"{fraction:g}", cond.name, seed, *r) for r in list(csv.reader(f))[1:]]
    write_csv(out / MANIFEST_FILE, ("real_fraction", "condition", "seed", *MANIFEST_COLUMNS), rows)


# --- executing the runs: here, in a process pool, or as submitit jobs -------------------------------
_WORKER_STUDY: dict[tuple[str, str], _Study] = {}  # per process: each (folder, config.json) study, built once


def _study_in(out: str) -> _Study:
    """The study of the experiment folder ``out``, rebuilt from its config.json (in a worker or a job)."""
    text = (Path(out) / CONFIG_FILE).read_text()
    if (out, text) not in _WORKER_STUDY:
        cfg = AugmentExperimentConfig.from_dict(json.loads(text))
        _WORKER_STUDY[(out, text)] = _prepare(cfg.validate(), None, None, Path(out), progress=False)
    return _WORKER_STUDY[(out, text)]


def run_in_folder(out: str, fraction: float, condition: str, seed: int, threads: int | None = None) -> dict:
    """One run of the experiment in folder ``out`` (written by its first ``augment`` call): what a worker
    process or a submitit job executes (with ``threads`` intra-op threads); the record is also written to the
    run's folder."""
    if threads is not None:
        _init_worker(threads)
    return _run_one(_study_in(out), fraction, Condition.parse(condition), seed, Path(out), progress=False)


def _init_worker(threads: int) -> None:
    os.environ[THREADS_ENV] = str(threads)  # the thread policy of everything the run calls
    torch.set_num_threads(threads)


def _threads_per_worker(workers: int) -> int:
    """Intra-op threads per parallel run so that workers x threads <= the CPUs (a user's count, if lower)."""
    share = max(1, available_cpus() // workers)
    return min(share, user_threads() or share)


def _execute(study: _Study, todo: list[tuple[float, Condition, int]], out: Path, progress: bool,
             report: Any, jobs: Any) -> list[dict] | None:
    """Run ``todo``; the records in order, or None when the runs were submitted to SLURM (not waited for).
    ``jobs``: the submitit executor (:func:`_job_executor`) of a submitit ``executor``."""
    cfg = study.cfg
    if cfg.executor == "pool" and cfg.workers == 1:
        return [report(_run_one(study, f, c, s, out, progress)) for f, c, s in todo]
    args = [(str(out), f, c.name, s) for f, c, s in todo]
    if cfg.executor == "pool":
        threads = _threads_per_worker(cfg.workers)
        # spawn: a fresh interpreter per worker (forking a process that ran torch's thread pool can hang)
        with ProcessPoolExecutor(cfg.workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_init_worker, initargs=(threads,)) as pool:
            futures = [pool.submit(run_in_folder, *a) for a in args]
            return [report(f.result()) for f in as_completed(futures)]
    return _submit(cfg, jobs, args, out, report)


def _job_threads(cfg: AugmentExperimentConfig) -> int:
    return _threads_per_worker(cfg.workers) if cfg.executor == "local" else user_threads() or 1


def _job_executor(cfg: AugmentExperimentConfig, out: Path) -> Any:
    """submitit's executor for ``cfg.executor`` (local, debug, slurm), or a one-line error before anything runs."""
    try:
        import submitit
    except ImportError:
        raise DermsynthError(f"--executor {cfg.executor} needs submitit: pip install 'dermsynth[cluster]'") from None
    try:
        executor = submitit.AutoExecutor(folder=out / "submitit", cluster=cfg.executor)
    except RuntimeError as exc:  # e.g. no srun/sbatch on this machine
        raise DermsynthError(f"--executor {cfg.executor}: {exc}") from None
    executor.update_parameters(timeout_min=cfg.slurm_minutes, cpus_per_task=_job_threads(cfg),
                               **({"slurm_partition": cfg.slurm_partition} if cfg.slurm_partition else {}),
                               **({"slurm_array_parallelism": cfg.workers} if cfg.executor == "slurm" else {}))
    return executor


def _job_result(job: Any) -> dict:
    """A finished job's record; a failed job is one error line naming its log (finished runs stay saved)."""
    try:
        return job.result()
    except DermsynthError:
        raise
    except Exception as exc:  # submitit's FailedJobError carries the whole remote traceback
        causes = [line.strip() for line in str(exc).splitlines()
                  if re.match(r"[\w.]+(Error|Exception|Interrupt)\b", line.strip())]
        raise DermsynthError(f"run job {job.job_id} failed ({(causes or [type(exc).__name__])[-1]}); its log: "
                             f"{job.paths.stderr}") from None


def _submit(cfg: AugmentExperimentConfig, executor: Any, args: list[tuple], out: Path,
            report: Any) -> list[dict] | None:
    """The runs as submitit jobs: ``slurm`` submits one job array and returns; ``local`` (processes on this
    machine, ``workers`` at a time) and ``debug`` (in this process) wait for the records."""
    columns = list(zip(*args)) + [[_job_threads(cfg)] * len(args)]
    if cfg.executor == "slurm":
        jobs = executor.map_array(run_in_folder, *columns)
        print(f"submitted {len(jobs)} run(s) as SLURM job array {jobs[0].job_id.split('_')[0]} "
              f"(logs: {out / 'submitit'}); run the same augment command again to collect the results")
        return None
    records = []
    wave = cfg.workers if cfg.executor == "local" else len(args)
    for start in range(0, len(args), wave):
        jobs = executor.map_array(run_in_folder, *[c[start:start + wave] for c in columns])
        records += [report(_job_result(job)) for job in jobs]
    return records


# --- the experiment -------------------------------------------------------------------------------
def run_augment_experiment(config: AugmentExperimentConfig, *, dataset: LesionDataset | None = None,
                           source: SyntheticSource | None = None, progress: bool = True) -> AugmentExperimentResult:
    """Run (or resume) the experiment of ``config``; see the module docstring.

    ``dataset``: the real data (default: ``load_dataset(config.data, size=config.size)``). ``source``: a
    synthetic source object used at every real fraction (default: opened from ``config.synthetic``; in the
    saved configuration a given object is recorded by its name). Runs in parallel (``workers`` > 1 or a
    submitit ``executor``) rebuild the data and sources from the saved configuration, so they take neither.
    """
    cfg = config.validate()
    if source is not None:
        cfg = replace(cfg, synthetic=f"<{source.name}>")
    parallel = cfg.workers > 1 or cfg.executor != "pool"
    if parallel and (dataset is not None or source is not None):
        raise DermsynthError("parallel runs (workers > 1 or a submitit executor) read the data and synthetic "
                             "sources from the configuration: give them as data= / synthetic= specs, not objects")
    out = Path(cfg.out)
    _check_resumable(out, cfg)
    study = _prepare(cfg, dataset, source, out, progress)
    jobs = _job_executor(cfg, out) if cfg.executor != "pool" else None
    out.mkdir(parents=True, exist_ok=True)  # every input is checked: from here on, results are written
    study.split.save(out / SPLIT_FILE)
    device = resolve_device(cfg.device)
    _write_json(out / CONFIG_FILE, {**cfg.to_dict(), "runtime": runtime_info(device, bf16=bf16_native(device))})

    records: dict[tuple[float, str], list[dict]] = {(f, c.name): [] for f, c in cfg.cells()}
    todo, skipped, trained = [], [], []
    for fraction, cond in cfg.cells():
        for seed in cfg.seeds_for(fraction):
            done = _finished(out, fraction, cond, seed, study.external is not None)
            if done is None:
                todo.append((fraction, cond, seed))
            else:
                records[(fraction, cond.name)].append(done)
                skipped.append((cond.name, seed))
    bar = tqdm(total=len(todo), desc="augment", unit="run", disable=not progress, dynamic_ncols=True)

    def report(rec: dict) -> dict:
        records[(rec["real_fraction"], rec["condition"])].append(rec)
        trained.append((rec["condition"], rec["seed"]))
        bar.update()
        if progress:
            ext = rec.get("external_metrics")
            bar.write(f"fraction {rec['real_fraction']:g} {rec['condition']} seed {rec['seed']}: macro AUC "
                      f"{rec['metrics']['macro_auc']:.4f}, balanced accuracy {rec['metrics']['balanced_accuracy']:.4f}"
                      + (f", external macro AUC {ext['macro_auc']:.4f}" if ext else "")
                      + f" (best epoch {rec['best_epoch']} of {rec['epochs_run']}, {rec['seconds']:.0f} s)")
        return rec

    finished = _execute(study, todo, out, progress, report, jobs) if todo else []
    bar.close()
    if finished is None:  # submitted to a cluster: the next call collects them
        return AugmentExperimentResult(out, {}, "", out / "report.html", [], skipped)
    for (fraction, _), recs in records.items():
        recs.sort(key=lambda r: r["seed"])
        for r in recs:  # runs of experiments before real fractions
            r.setdefault("n_real", len(study.train_at[fraction]))
            r.setdefault("synthetic_ratio", Condition.parse(r["condition"]).synth_ratio)

    results = _clean(_aggregate(study, out, records))  # cleaned as results.json holds it
    _write_json(out / RESULTS_FILE, results)
    _write_combined_manifest(out, cfg)
    table, report_path = write_outputs(results, out, predictions=partial(_run_predictions, out))
    if cfg.layout == "essipova2020":
        table += "\n" + write_essipova_table(results, out)
    return AugmentExperimentResult(out, results, table, report_path, trained, skipped)
