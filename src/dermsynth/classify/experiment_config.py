"""What an augmentation experiment runs: its conditions, its configuration and each run's training set.

A condition is written as ``+``-joined tokens (:class:`Condition`): ``real`` (the real training images),
``classic`` (Essipova et al.'s augmentation set while training), ``synth:R`` (``R`` x the number of real training
images of synthetic images, in the real training set's class proportions over the classes the source
generates; without ``real``: synthetic only), ``balance`` (synthetic images of every class until it
matches the largest one, as Essipova et al. 2020 did for BCC); a condition may end in ``@NAME`` to draw from the named
synthetic source ``NAME`` of a study with several (``real+synth:1@dcgan``). :func:`synthetic_counts` turns a condition into
synthetic images per class, :func:`build_training_set` into the images themselves; the experiment that
trains and compares them is :mod:`dermsynth.classify.experiment`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np

from dermsynth.models.classifiers import CLASSIFIERS
from dermsynth.classify.synthetic import SyntheticSource
from dermsynth.data.dataset import LesionDataset
from dermsynth.data.splits import check_real_fraction
from dermsynth.errors import DermsynthError

__all__ = ["EXECUTION_SETTINGS", "EXECUTORS", "LAYOUTS", "RESUMABLE_CHANGES", "AugmentExperimentConfig", "Condition", "TrainingSet", "build_training_set",
           "synthetic_counts"]

# Settings that may change between a run and its resumption without invalidating finished results.
RESUMABLE_CHANGES = ("out", "conditions", "seeds", "baseline", "n_boot", "device", "real_fractions",
                     "synthetic_ratios", "sweep_fraction", "seeds_at", "layout", "workers", "executor", "slurm_partition",
                     "slurm_minutes")
#: How the runs are executed, not what they compute: left out of results.json (serial = parallel results).
EXECUTION_SETTINGS = ("out", "device", "workers", "executor", "slurm_partition", "slurm_minutes")
#: ``--executor``: ``pool`` (a local process pool of ``--workers``), or submitit's ``local`` / ``debug`` / ``slurm``.
EXECUTORS = ("pool", "local", "debug", "slurm")
#: ``--layout``: extra tables besides the default (``essipova2020``: Essipova et al.'s accuracy / per-class recall table).
LAYOUTS = ("default", "essipova2020")


@dataclass(frozen=True)
class Condition:
    """What one condition's training set holds (see the module docstring for the spelling)."""

    real: bool = True
    classic: bool = False
    synth_ratio: float = 0.0  # synthetic images per real training image
    balance: bool = False
    source: str | None = None  # the named synthetic source (``@NAME``); None: the experiment's only one

    @classmethod
    def parse(cls, spec: str) -> Condition:
        """``"real+classic"``, ``"real+synth:0.5"``, ``"real+balance"``, ``"synth:1"``, ``"real+synth:1@dcgan"``..."""
        body, at, source = str(spec).partition("@")
        source = source.strip().lower()
        if at and not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", source):
            raise DermsynthError(f"condition {spec!r}: a source name after '@' is letters, digits, '_', '-', '.'")
        tokens = [t.strip().lower() for t in body.split("+")]
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
        cond = cls("real" in seen, "classic" in seen, ratio, "balance" in seen, source or None)
        if cond.source and not cond.uses_synthetic:
            raise DermsynthError(f"condition {spec!r} draws no synthetic images: drop '@{source}'")
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
        name = "+".join(parts + (["balance"] if self.balance else []))
        return f"{name}@{self.source}" if self.source else name

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
        label = " + ".join([("Real images" if self.real else f"Synthetic images only{ratio}")] + extras)
        return f"{label} [{self.source}]" if self.source else label

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
    seeds: int = 10                      # K repeats per condition: 10, so the exact paired tests can reach p < 0.05
    seed: int = 0                        # first seed; the runs use seed, seed + 1, ..., seed + K - 1
    baseline: str = "real"
    synthetic: str | None = None         # GAN checkpoint, sample folder with manifest.csv, or "phantom"
    synthetic_class: str | None = None   # the one class of an unconditional checkpoint
    truncation: float | None = None      # latent truncation when sampling a checkpoint
    sampler: str | None = None           # diffusion checkpoints: ddpm | ddim | dpm-solver (None: ddim)
    sampling_steps: int | None = None    # diffusion checkpoints: sampler steps (None: the sampler's default)
    guidance: float | None = None        # diffusion checkpoints: classifier-free guidance (None: 1, none)
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
    real_fractions: list[float] = field(default_factory=lambda: [1.0])  # nested fractions of the training split
    synthetic_ratios: list[float] = field(default_factory=list)  # ratio sweep: real+synth:R at sweep_fraction
    sweep_fraction: float | None = None  # where the ratio sweep runs (default: the smallest real fraction)
    seeds_at: dict[str, int] = field(default_factory=dict)  # more (or fewer) seeds at some fractions: "0.05" -> 10
    sources: dict[str, str] = field(default_factory=dict)  # named synthetic sources, NAME -> spec
    classes: list[str] | None = None     # these classes only (Essipova et al. 2020: mel, bkl, bcc)
    layout: str = "default"              # extra table layout (LAYOUTS)
    workers: int = 1                     # parallel runs (executor pool / local)
    executor: str = "pool"               # EXECUTORS
    slurm_partition: str | None = None
    slurm_minutes: int = 60              # time limit of one run's SLURM job

    def validate(self) -> AugmentExperimentConfig:
        if not self.conditions:
            raise DermsynthError("give at least one condition")
        if self.synthetic is not None and self.sources:
            raise DermsynthError("give one unnamed synthetic source or named ones (NAME=SPEC), not both")
        for name in self.sources:
            if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", name):
                raise DermsynthError(f"synthetic source name {name!r}: use lower-case letters, digits, '_', '-', '.'")
        fractions = [check_real_fraction(f) for f in self.real_fractions]
        if not fractions or len(set(fractions)) != len(fractions):
            raise DermsynthError(f"--real-fraction needs distinct fractions, got {self.real_fractions}")
        if any(not (math.isfinite(float(r)) and float(r) > 0) for r in self.synthetic_ratios):
            raise DermsynthError(f"--synthetic-ratio takes ratios > 0, got {self.synthetic_ratios}")
        for key, k in self.seeds_at.items():
            if key not in {f"{f:g}" for f in fractions} or int(k) < 1:
                raise DermsynthError(f"--seeds-at {key}:{k}: need one of the real fractions "
                                     f"({', '.join(f'{f:g}' for f in fractions)}) and at least one seed")
        if self.sweep_fraction is not None and self.sweep_fraction not in fractions:
            raise DermsynthError(f"--sweep-fraction {self.sweep_fraction:g} is not one of the real fractions "
                                 f"({', '.join(f'{f:g}' for f in fractions)})")
        if self.executor not in EXECUTORS or self.layout not in LAYOUTS:
            raise DermsynthError(f"--executor is one of {', '.join(EXECUTORS)} and --layout one of "
                                 f"{', '.join(LAYOUTS)}; got {self.executor!r}, {self.layout!r}")
        if self.workers < 1 or self.slurm_minutes < 1:
            raise DermsynthError("--workers and --slurm-minutes must be >= 1")
        names = [c.name for c in self.parsed_conditions]
        if len(set(names)) != len(names):
            raise DermsynthError(f"conditions repeat: {', '.join(self.conditions)}")
        unknown = {c.source for c in self.parsed_conditions if c.source} - set(self.sources)
        if unknown:
            raise DermsynthError(f"condition names synthetic source {sorted(unknown)[0]!r}, which is not among the "
                                 f"named sources ({', '.join(self.sources) or 'none: give --synthetic NAME=SPEC'})")
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
        """The conditions, each one that draws synthetic images without naming a source crossed with every
        named source (``real+synth:1`` with sources dcgan, sg2 -> ``real+synth:1@dcgan``, ``real+synth:1@sg2``)."""
        out = []
        for spec in self.conditions:
            cond = Condition.parse(spec)
            if cond.uses_synthetic and cond.source is None and self.sources:
                out += [replace(cond, source=name) for name in self.sources]
            else:
                out.append(cond)
        return out

    @property
    def fractions_sorted(self) -> list[float]:
        """The real fractions, smallest first."""
        return sorted(float(f) for f in self.real_fractions)

    @property
    def sweep_conditions(self) -> list[Condition]:
        """The ratio sweep's conditions (``real+synth:R`` per ratio and source) at :attr:`sweep_at`."""
        names = list(self.sources) or [None]
        return [Condition(synth_ratio=float(r), source=n) for r in self.synthetic_ratios for n in names]

    @property
    def sweep_at(self) -> float:
        return self.sweep_fraction if self.sweep_fraction is not None else self.fractions_sorted[0]

    def cells(self) -> list[tuple[float, Condition]]:
        """Every (real fraction, condition) the experiment trains: the conditions at every fraction, then the
        ratio sweep's conditions not already among them at the sweep fraction."""
        cells = [(f, c) for f in self.fractions_sorted for c in self.parsed_conditions]
        cells += [(self.sweep_at, c) for c in self.sweep_conditions if (self.sweep_at, c) not in cells]
        return cells

    def source_spec(self, name: str | None, fraction: float) -> str | None:
        """The synthetic source of ``name`` (None: the unnamed one) at a real fraction: ``{fraction}`` in its
        spec is replaced by the fraction (``runs/gan-{fraction}`` -> ``runs/gan-0.05``)."""
        spec = self.synthetic if name is None else self.sources[name]
        return None if spec is None else spec.replace("{fraction}", f"{fraction:g}")

    @property
    def seed_list(self) -> list[int]:
        """Every seed of the experiment (the most any fraction has)."""
        return [self.seed + k for k in range(max([self.seeds, *map(int, self.seeds_at.values())]))]

    def seeds_for(self, fraction: float) -> list[int]:
        """The seeds of one real fraction (``seeds_at``, else ``seeds``); always the first K of :attr:`seed_list`,
        so runs stay paired by seed across conditions and fractions."""
        return [self.seed + k for k in range(int(self.seeds_at.get(f"{fraction:g}", self.seeds)))]

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
