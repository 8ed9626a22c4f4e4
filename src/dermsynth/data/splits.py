"""Lesion/patient-grouped, class-stratified train/val/test splits, fixed by a seed and saved for reuse.

Every group (lesion or patient id) goes wholly to one split, so no lesion is seen in training and
scored in testing. A group's class for stratification is its majority label (ties: the lowest label).
Within each class the groups are shuffled by the seed, ordered by size (largest first, the shuffle
breaking ties) and dealt one by one to the split whose image target for that class is least filled,
relatively (``(target - assigned) / target``). An empty split is always the least filled, so every
split receives at least one group of every class, and the per-class image fractions end close to the
requested ones (exactly, up to rounding, when all groups are single images).

A :class:`Split` is saved as JSON (``.json``) or CSV (``.csv``: ``id,split,group,label``) and applied to
any dataset holding the same image ids, e.g. the same source prepared at another size.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from dermsynth.data.dataset import LesionDataset
from dermsynth.errors import DataError
from dermsynth.io import write_csv, write_json

__all__ = ["SPLIT_NAMES", "Split", "grouped_split", "split_dataset", "split_part"]

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
        """The dataset's rows per split, matched by image id (every dataset id must be in the split)."""
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
        return cls(ids, splits, groups, labels, names, fractions, meta.get("seed"))


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


def split_dataset(dataset: LesionDataset, *, fractions: Sequence[float] = (0.7, 0.15, 0.15),
                  seed: int = 0) -> Split:
    """:func:`grouped_split` of a dataset by its lesion/patient groups."""
    return grouped_split(dataset.labels, dataset.groups, dataset.ids, fractions=fractions, seed=seed,
                         class_names=dataset.class_names)


def split_part(dataset: LesionDataset, split_file: str | Path, part: str = "train") -> LesionDataset:
    """The rows of ``dataset`` that the saved split ``split_file`` puts in ``part`` (e.g. a GAN for the
    augmentation study trained on the classifier's training images only); a one-line error when the split
    was made from other data or the part is empty."""
    chosen = Split.load(split_file).apply(dataset)[part]
    if len(chosen) == 0:
        raise DataError(f"{split_file}: its {part} part holds none of the images of {dataset.source or 'the data'}")
    return chosen
