"""Lesion/patient-grouped, class-stratified train/val/test splits, fixed by a seed and saved for reuse.

Every group (lesion or patient id) goes wholly to one split, so no lesion is seen in training and
scored in testing. A group's class for stratification is its majority label (ties: the lowest label).
Within each class the groups are shuffled by the seed, ordered by size (largest first, the shuffle
breaking ties) and dealt one by one to the split whose image target for that class is least filled,
relatively (``(target - assigned) / target``). An empty split is always the least filled, so every
split receives at least one group of every class, and the per-class image fractions end close to the
requested ones (exactly, up to rounding, when all groups are single images).

A :class:`Split` is saved as JSON (``.json``) or CSV (``.csv``: ``id,split,group,label``) and applied to
any dataset holding the same image ids, e.g. the same source prepared at another size. A split of some
classes only (``classes``, e.g. Essipova et al.'s mel/bkl/bcc) applies to the whole dataset: the images of the other
classes are dropped and the labels renumbered in the split's class order.

The data-efficiency study trains on **nested real fractions** of the training part
(:func:`real_fraction_subset`): within each class the training groups (lesions) are shuffled once by the
split's seed and a fraction ``f`` takes the shortest prefix whose image count is closest to ``f`` x the class's
training images (at least one group), so every class keeps a lesion, lesions stay whole and every smaller
subset lies inside every larger one. ``dermsynth train --split FILE --real-fraction f`` and ``dermsynth augment
--real-fraction f`` call the same function on the same split file, so a GAN and the classifiers it augments
see the same real images; :func:`ids_fingerprint` lets a checkpoint record which.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from dermsynth.data.dataset import LesionDataset
from dermsynth.errors import DataError
from dermsynth.io import write_csv, write_json

__all__ = ["SPLIT_NAMES", "Split", "check_real_fraction", "grouped_split", "ids_fingerprint", "real_fraction_subset",
           "restrict_classes", "split_dataset", "split_part"]

SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")


@dataclass
class Split:
    """One split assignment per image id (plus its group and label, for auditing)."""

    ids: list[str]
    splits: list[str]
    groups: list[str]
    labels: list[int]
    names: tuple[str, ...] = SPLIT_NAMES
    fractions: dict[str, float] = field(default_factory=dict)
    seed: int | None = None
    classes: list[str] | None = None  # a split of these classes only (labels index this list)

    @property
    def fraction_seed(self) -> int:
        """Seed of the nested real fractions of the training part: the split's own seed (0 when unrecorded)."""
        return int(self.seed or 0)

    def indices(self, name: str) -> np.ndarray:
        """Row indices (into ``ids``) of one split."""
        if name not in self.names:
            raise DataError(f"unknown split {name!r}; splits are {', '.join(self.names)}")
        return np.flatnonzero(np.asarray(self.splits) == name)

    def class_counts(self, num_classes: int | None = None) -> dict[str, np.ndarray]:
        """Images per class in each split."""
        labels = np.asarray(self.labels)
        k = num_classes or int(labels.max()) + 1
        return {name: np.bincount(labels[self.indices(name)], minlength=k) for name in self.names}

    def apply(self, dataset: LesionDataset) -> dict[str, LesionDataset]:
        """The dataset's rows per split, matched by image id (every dataset id must be in the split; with
        ``classes``, every id of those classes, the others dropped first)."""
        if self.classes is not None:
            dataset = restrict_classes(dataset, self.classes)
        where = dict(zip(self.ids, self.splits))
        unknown = [i for i in dataset.ids if i not in where]
        if unknown:
            raise DataError(f"{len(unknown)} image id(s) of the dataset are not in the split "
                            f"(e.g. {unknown[0]!r}); was the split made from another dataset?")
        assigned = np.asarray([where[i] for i in dataset.ids])
        return {name: dataset.subset(np.flatnonzero(assigned == name)) for name in self.names}

    # --- files -------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write ``.json`` (everything) or ``.csv`` (``id,split,group,label``)."""
        path = Path(path)
        rows = zip(self.ids, self.splits, self.groups, self.labels)
        if path.suffix.lower() == ".csv":
            write_csv(path, ["id", "split", "group", "label"], rows)
        elif path.suffix.lower() == ".json":
            meta = {"names": list(self.names), "fractions": self.fractions, "seed": self.seed,
                    **({"classes": list(self.classes)} if self.classes is not None else {}),
                    "images": [{"id": i, "split": s, "group": g, "label": int(y)} for i, s, g, y in rows]}
            write_json(path, meta, indent=1)
        else:
            raise DataError(f"{path}: a split is saved as .json or .csv")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Split":
        """Read a split written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: split file not found")
        try:
            if path.suffix.lower() == ".csv":
                with open(path, newline="") as f:
                    rows = list(csv.DictReader(f))
                meta: dict = {}
            else:
                meta = json.loads(path.read_text())
                rows = meta["images"]
            ids = [str(r["id"]) for r in rows]
            splits = [str(r["split"]) for r in rows]
            groups = [str(r["group"]) for r in rows]
            labels = [int(r["label"]) for r in rows]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{path}: not a split file (need id, split, group, label per image; {exc!r})") from None
        names = tuple(meta.get("names") or [n for n in SPLIT_NAMES if n in splits]
                      + sorted(set(splits) - set(SPLIT_NAMES)))
        fractions = meta.get("fractions") or {n: splits.count(n) / len(splits) for n in names}
        return cls(ids, splits, groups, labels, names, fractions, meta.get("seed"), meta.get("classes"))


def grouped_split(labels: Sequence[int] | np.ndarray, groups: Sequence[str], ids: Sequence[str] | None = None, *,
                  fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0,
                  names: Sequence[str] = SPLIT_NAMES, class_names: Sequence[str] | None = None) -> Split:
    """Assign whole groups to splits, stratified by each group's majority class (see module docs)."""
    labels = np.asarray(labels, dtype=np.int64)
    ids = [str(i) for i in (ids if ids is not None else range(len(labels)))]
    groups = [str(g) for g in groups]
    fr = np.asarray(fractions, dtype=np.float64)
    if len(groups) != len(labels) or len(ids) != len(labels):
        raise DataError(f"{len(labels)} labels but {len(groups)} groups and {len(ids)} ids")
    if len(fr) != len(names) or np.any(fr < 0) or not np.isclose(fr.sum(), 1.0):
        raise DataError(f"split fractions must be {len(names)} non-negative numbers summing to 1, got {list(fr)}")
    if len(set(ids)) != len(ids):
        raise DataError("image ids must be unique to save and reuse a split")
    if len(labels) == 0 or labels.min() < 0:
        raise DataError("a stratified split needs labelled images (no -1 labels)")

    uniq, group_of = np.unique(groups, return_inverse=True)
    sizes = np.bincount(group_of)
    counts = np.zeros((len(uniq), int(labels.max()) + 1), dtype=np.int64)
    np.add.at(counts, (group_of, labels), 1)
    group_label = counts.argmax(axis=1)  # majority label, ties -> lowest label
    active = np.flatnonzero(fr > 0)
    rng = np.random.default_rng(seed)
    split_of_group = np.empty(len(uniq), dtype=np.int64)
    for c in np.unique(group_label):
        members = np.flatnonzero(group_label == c)
        if len(members) < len(active):
            name = class_names[c] if class_names is not None else int(c)
            raise DataError(f"class {name!r} has {len(members)} group(s) (lesions/patients); a split into "
                            f"{len(active)} parts needs at least {len(active)}")
        members = rng.permutation(members)
        members = members[np.argsort(-sizes[members], kind="stable")]
        target = fr[active] * sizes[members].sum()
        filled = np.zeros(len(active))
        for g in members:
            best = int(np.argmax((target - filled) / target))
            split_of_group[g] = active[best]
            filled[best] += sizes[g]
    splits = [names[s] for s in split_of_group[group_of]]
    return Split(ids, splits, groups, labels.tolist(), tuple(names),
                 {n: float(f) for n, f in zip(names, fr)}, seed)


def restrict_classes(dataset: LesionDataset, classes: Sequence[str]) -> LesionDataset:
    """The images of ``classes`` only (names matched case-insensitively), labels renumbered in that order."""
    lowered = [c.lower() for c in dataset.class_names]
    missing = [c for c in classes if c.lower() not in lowered]
    if missing or len({c.lower() for c in classes}) != len(classes) or len(classes) < 2:
        raise DataError(f"classes {', '.join(classes)}: need two or more distinct classes of the data "
                        f"({', '.join(dataset.class_names)})" + (f"; unknown: {', '.join(missing)}" if missing else ""))
    old = np.array([lowered.index(c.lower()) for c in classes])
    rows = np.flatnonzero(np.isin(dataset.labels, old))
    kept = dataset.subset(rows)
    relabel = np.full(len(dataset.class_names), -1, dtype=np.int64)
    relabel[old] = np.arange(len(old))
    kept.labels = relabel[kept.labels]
    kept.class_names = [dataset.class_names[i] for i in old]
    return kept


def split_dataset(dataset: LesionDataset, *, fractions: Sequence[float] = (0.7, 0.15, 0.15),
                  seed: int = 0, classes: Sequence[str] | None = None) -> Split:
    """:func:`grouped_split` of a dataset by its lesion/patient groups (of ``classes`` only, when given)."""
    if classes is not None:
        dataset = restrict_classes(dataset, classes)
    split = grouped_split(dataset.labels, dataset.groups, dataset.ids, fractions=fractions, seed=seed,
                          class_names=dataset.class_names)
    split.classes = None if classes is None else list(dataset.class_names)
    return split


def check_real_fraction(fraction: float, option: str = "--real-fraction") -> float:
    """``fraction`` as a float in (0, 1], or a one-line error naming ``option``."""
    try:
        value = float(fraction)
    except (TypeError, ValueError):
        raise DataError(f"{option} takes numbers in (0, 1], got {fraction!r}") from None
    if not (math.isfinite(value) and 0 < value <= 1):
        raise DataError(f"{option} takes numbers in (0, 1], got {fraction!r}")
    return value


def real_fraction_subset(train: LesionDataset, fraction: float, seed: int) -> LesionDataset:
    """The nested, lesion-grouped, class-stratified ``fraction`` of a training set (see the module docstring).

    ``seed`` fixes the one shuffle of each class's groups; for a fixed seed the subset of a smaller fraction is
    always inside that of a larger one, and ``fraction=1`` is the whole set."""
    fraction = check_real_fraction(fraction)
    if fraction == 1.0 or len(train) == 0:
        return train
    if (train.labels < 0).any():
        raise DataError("a class-stratified real fraction needs every training image labelled")
    uniq, group_of = np.unique(np.asarray(train.groups, dtype=str), return_inverse=True)
    sizes = np.bincount(group_of)
    counts = np.zeros((len(uniq), max(int(train.labels.max()) + 1, 1)), dtype=np.int64)
    np.add.at(counts, (group_of, train.labels), 1)
    group_label = counts.argmax(axis=1)  # majority label, ties -> lowest label (as grouped_split)
    chosen = np.zeros(len(uniq), dtype=bool)
    for c in np.unique(group_label):
        # one stream per class: a class's order does not depend on the other classes
        order = np.random.default_rng([int(seed), int(c)]).permutation(np.flatnonzero(group_label == c))
        cumulative = np.cumsum(sizes[order])
        k = int(np.argmin(np.abs(cumulative - fraction * cumulative[-1])))  # first of ties: nested in fraction
        chosen[order[: k + 1]] = True
    return train.subset(np.flatnonzero(chosen[group_of]))


def ids_fingerprint(ids: Sequence[str]) -> str:
    """SHA-256 of the sorted image ids: which real images a run trained on, whatever their order."""
    return hashlib.sha256("\n".join(sorted(map(str, ids))).encode()).hexdigest()


def split_part(dataset: LesionDataset, split_file: str | Path, part: str = "train",
               real_fraction: float | None = None) -> LesionDataset:
    """The rows of ``dataset`` that the saved split ``split_file`` puts in ``part`` (e.g. a GAN for the
    augmentation study trained on the classifier's training images only), and of those the nested
    ``real_fraction`` (:func:`real_fraction_subset`, seeded by the split's seed); a one-line error when the
    split was made from other data or the part is empty."""
    split = Split.load(split_file)
    chosen = split.apply(dataset)[part]
    if len(chosen) == 0:
        raise DataError(f"{split_file}: its {part} part holds none of the images of {dataset.source or 'the data'}")
    if real_fraction is not None:
        chosen = real_fraction_subset(chosen, real_fraction, split.fraction_seed)
    return chosen
