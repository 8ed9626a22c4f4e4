"""What an augmentation experiment runs: its conditions, its configuration and each run's training set.

A condition is written as ``+``-joined tokens (:class:`Condition`): ``real`` (the real training images),
``classic`` (Essipova et al.'s augmentation set while training), ``synth:R`` (``R`` x the number of real training
images of synthetic images, in the real training set's class proportions over the classes the source
generates; without ``real``: synthetic only), ``balance`` (synthetic images of every class until it
matches the largest one, as Essipova et al. 2020 did for BCC). :func:`synthetic_counts` turns a condition into
synthetic images per class, :func:`build_training_set` into the images themselves; the experiment that
trains and compares them is :mod:`dermsynth.classify.experiment`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from dermsynth.models.classifiers import CLASSIFIERS
from dermsynth.classify.synthetic import SyntheticSource
from dermsynth.data.dataset import LesionDataset
from dermsynth.errors import DermsynthError

__all__ = ["RESUMABLE_CHANGES", "AugmentExperimentConfig", "Condition", "TrainingSet", "build_training_set",
           "synthetic_counts"]

# Settings that may change between a run and its resumption without invalidating finished results.
RESUMABLE_CHANGES = ("out", "conditions", "seeds", "baseline", "n_boot", "device")


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
        """Row label for the table, in Bissoto et al.'s wording ("Real images", "Real images + synthetic ...")."""
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


@dataclass
class AugmentExperimentConfig:
    """Every setting of an augmentation experiment; written to ``<out>/config.json``."""

    data: str = "phantom"                # dataset spec for load_dataset (folder, cache, .npz, phantom[:N])
    out: str = "runs/augment"
    size: int = 28                       # Essipova et al. 2020 classifies 28x28 images
    conditions: list[str] = field(default_factory=lambda: ["real", "real+classic"])
    seeds: int = 5                       # K repeats per condition
    seed: int = 0                        # first seed; the runs use seed, seed + 1, ..., seed + K - 1
    baseline: str = "real"
    synthetic: str | None = None         # GAN checkpoint, sample folder with manifest.csv, or "phantom"
    synthetic_class: str | None = None   # the one class of an unconditional checkpoint
    truncation: float | None = None      # latent truncation when sampling a checkpoint
    test: str | None = None              # an external test set (another dataset); classes matched by name
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
    device: str = "auto"

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
class TrainingSet:
    """One run's training images, labels and ids, and whether each image is real or synthetic."""


    images: np.ndarray
    labels: np.ndarray
    ids: list[str]
    kinds: list[str]  # "real" or "synthetic"


def build_training_set(cond: Condition, seed: int, real: LesionDataset, counts: np.ndarray,
                       source: SyntheticSource | None) -> TrainingSet:
    """The training set of ``cond`` at ``seed``: the real training images (if the condition has them) and
    ``counts[c]`` synthetic images of each class drawn from ``source`` with ``seed``."""
    parts = []
    if cond.real:
        parts.append((real.images, real.labels, list(real.ids), "real"))
    if counts.sum():
        syn = source.draw(counts, real.class_names, real.size, seed)
        parts.append((syn.images, syn.labels, syn.ids, "synthetic"))
    return TrainingSet(np.concatenate([np.asarray(p[0]) for p in parts]), np.concatenate([p[1] for p in parts]),
                       [i for p in parts for i in p[2]], [p[3] for p in parts for _ in p[2]])
