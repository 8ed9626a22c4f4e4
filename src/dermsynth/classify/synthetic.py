"""Synthetic sources for the augmentation study: where labelled synthetic training images come from.

A :class:`SyntheticSource` draws ``n`` images of a named class at a given size and seed. Three kinds:

* :class:`GeneratorSource`: a GAN checkpoint (``dermsynth train``), sampled with :mod:`dermsynth.sample`.
  A class-conditional model generates any of its classes; an unconditional one only the single class
  it is declared to produce (``class_name``, e.g. a DCGAN trained on BCC images only, as in Essipova et al. 2020).
* :class:`TranslationSource`: a map -> image checkpoint (pix2pixHD, Bissoto et al. 2018) that translates the lesion maps
  of the experiment's **training split** (handed over by :meth:`SyntheticSource.bind_training`, never the
  validation or test images); each image is labelled with the class of the image its map came from.
* :class:`FolderSource`: a folder of images with a ``manifest.csv`` (``file, class``; what
  ``dermsynth sample`` writes); images are drawn without replacement.
* :class:`CallableSource`: any function ``fn(class_name, n, seed, size) -> uint8 (n, size, size, 3)``;
  :func:`phantom_source` wraps the procedural phantom generator (for tests and demos on phantom data).

Draws are reproducible: class ``c`` at seed ``s`` uses its own random stream derived from ``(s, c)``,
so the images of one class do not depend on how many of another were asked for. Images of another
size are centre-cropped and resized (anti-aliased) to the requested size. Class names are matched
case-insensitively; :meth:`SyntheticSource.check_classes` rejects a source whose classes are not
classes of the real data.
"""

from __future__ import annotations

import csv
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dermsynth.data.dataset import LesionDataset
from dermsynth.data.images import load_image, preprocess_image
from dermsynth.data.maps import dihedral_map, maps_of, masked_subset
from dermsynth.device import resolve_device
from dermsynth.errors import DataError, DermsynthError
from dermsynth.checkpoint import load_checkpoint
from dermsynth.sample import (LoadedGenerator, check_sampling_options, diffuse, diffusion_sampling, generate,
                              load_generator, translate_maps)

__all__ = ["CallableSource", "checkpoint_training_subset", "FolderSource", "GeneratorSource", "SyntheticImages", "SyntheticSource",
           "TranslationSource", "open_source", "phantom_source"]

MANIFEST = "manifest.csv"


@dataclass
class SyntheticImages:
    """Drawn synthetic images with labels (indices into the real class list) and one id per image."""

    images: np.ndarray  # uint8 (N, S, S, 3)
    labels: np.ndarray  # int64 (N,)
    ids: list[str]


def _stream_seed(seed: int, class_name: str) -> int:
    """A 63-bit seed for the (seed, class) random stream."""
    key = [int(seed)] + [ord(ch) for ch in class_name.lower()]
    return int(np.random.SeedSequence(key).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def _fit_size(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 (N, H, W, 3) -> (N, size, size, 3), centre-cropped and resized where needed."""
    if images.shape[1:3] == (size, size) or len(images) == 0:
        return np.ascontiguousarray(images)
    return np.stack([preprocess_image(img, size) for img in images])


def checkpoint_training_subset(checkpoint: str | Path) -> dict:
    """Which real images a checkpoint's model was trained on, as ``dermsynth train`` recorded them: the split
    file and real fraction of its configuration, and the fingerprint of its training ids (``None`` where a
    checkpoint predates the record)."""
    state = load_checkpoint(checkpoint)
    cfg, data = state.get("config") or {}, state.get("data") or {}
    return {"split": cfg.get("split"), "real_fraction": cfg.get("real_fraction"),
            "overfit_holdout": cfg.get("overfit_holdout", 0), "images": data.get("count"),
            "ids_sha256": data.get("ids_sha256")}


class SyntheticSource(ABC):
    """Labelled synthetic images on demand (see the module docstring)."""

    name: str = "synthetic"
    class_names: list[str]  # the classes this source can generate (set by each subclass)
    #: the real images a trained model saw (:func:`checkpoint_training_subset`); None: not a trained model
    training_subset: dict | None = None

    def can_generate(self, class_name: str) -> bool:
        return class_name.lower() in (c.lower() for c in self.class_names)

    def check_classes(self, real_class_names: Sequence[str]) -> None:
        """DataError unless every class of this source is a class of the real data."""
        real = {c.lower() for c in real_class_names}
        foreign = [c for c in self.class_names if c.lower() not in real]
        if foreign:
            raise DataError(f"{self.name}: class {foreign[0]!r} is not a class of the real data "
                            f"({', '.join(real_class_names)})")

    def describe(self) -> dict:
        """JSON-ready description, recorded with the experiment's configuration."""
        return {"kind": type(self).__name__, "name": self.name, "classes": list(self.class_names)}

    def bind_training(self, train: LesionDataset) -> None:
        """Called by the experiment with its training split, before any draw; sources that derive their
        images from real training images (:class:`TranslationSource`) keep it, the others ignore it."""

    @abstractmethod
    def _generate(self, class_name: str, n: int, seed: int, size: int) -> tuple[np.ndarray, list[str]]:
        """``n`` images of one class (any size) and their ids, from the (seed, class) stream ``seed``."""

    def draw(self, counts: Sequence[int], class_names: Sequence[str], size: int, seed: int) -> SyntheticImages:
        """``counts[c]`` images of each real class ``class_names[c]``, at ``size`` px."""
        images, labels, ids = [], [], []
        for c, (name, n) in enumerate(zip(class_names, counts)):
            if n <= 0:
                continue
            if not self.can_generate(name):
                raise DermsynthError(f"{self.name} cannot generate class {name!r} (it generates "
                                     f"{', '.join(self.class_names) or 'no labelled classes'})")
            imgs, tags = self._generate(name, int(n), _stream_seed(seed, name), size)
            images.append(_fit_size(imgs, size))
            labels.append(np.full(len(imgs), c, dtype=np.int64))
            ids += tags
        if not images:
            return SyntheticImages(np.zeros((0, size, size, 3), np.uint8), np.zeros(0, np.int64), [])
        return SyntheticImages(np.concatenate(images), np.concatenate(labels), ids)


class CallableSource(SyntheticSource):
    """Images from ``fn(class_name, n, seed, size) -> uint8 (n, size, size, 3)``."""

    def __init__(self, fn: Callable[[str, int, int, int], np.ndarray], class_names: Sequence[str],
                 name: str = "callable") -> None:
        self.fn, self.class_names, self.name = fn, list(class_names), name

    def _generate(self, class_name: str, n: int, seed: int, size: int) -> tuple[np.ndarray, list[str]]:
        images = np.asarray(self.fn(class_name, n, seed, size))
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[0] != n or images.shape[-1] != 3:
            raise DermsynthError(f"{self.name} returned {images.dtype} {images.shape}; expected uint8 "
                                 f"({n}, H, W, 3)")
        return images, [f"{self.name}:{class_name}:{seed}:{i}" for i in range(n)]


def phantom_source(class_names: Sequence[str] | None = None, hairs: float = 0.3) -> CallableSource:
    """The procedural phantom generator as a source: fresh phantoms of the requested class.

    ``class_names``: phantom classes it may generate (default all). Its random streams never coincide
    with :func:`~dermsynth.data.phantom.generate_phantom`'s, so it draws new images, not copies.
    """
    from dermsynth.data.phantom import PHANTOM_CLASSES, render_phantom

    names = list(class_names or PHANTOM_CLASSES)
    unknown = [c for c in names if c.lower() not in PHANTOM_CLASSES]
    if unknown:
        raise DataError(f"phantom source: unknown class {unknown[0]!r}; phantom classes are "
                        f"{', '.join(PHANTOM_CLASSES)}")

    def render(class_name: str, n: int, seed: int, size: int) -> np.ndarray:
        code = PHANTOM_CLASSES.index(class_name.lower())
        return np.stack([render_phantom(code, np.random.default_rng([seed, code, i, 7]), size, hairs)[0]
                         for i in range(n)])

    return CallableSource(render, names, name="phantom")


class GeneratorSource(SyntheticSource):
    """Samples of a GAN checkpoint; ``class_name`` declares the one class of an unconditional model.
    ``device``: auto (CUDA when available), cpu, cuda... A checkpoint with non-finite weights is refused."""

    def __init__(self, checkpoint: str | Path, *, class_name: str | None = None, truncation: float | None = None,
                 device: str = "auto", batch_size: int = 256, model: LoadedGenerator | None = None,
                 sampler: str | None = None, sampling_steps: int | None = None,
                 guidance: float | None = None) -> None:
        self.model = model or load_generator(checkpoint, resolve_device(device))  # refuses non-finite weights
        self.model.require_noise()
        # a diffusion model has no latent to truncate, a GAN no sampler
        check_sampling_options(self.model, truncation=truncation, sampler=sampler, sampling_steps=sampling_steps,
                               guidance=guidance)
        self.sampling = (diffusion_sampling(self.model, sampler, sampling_steps, guidance) if self.model.diffusion
                         else None)
        self.name = str(checkpoint)
        self.training_subset = checkpoint_training_subset(checkpoint)
        self.truncation, self.batch_size = truncation, batch_size
        if self.model.conditional:
            if class_name is not None:
                raise DermsynthError(f"{checkpoint} is class-conditional: it generates "
                                     f"{', '.join(self.model.class_names)}; drop the synthetic class option")
            self.class_names = list(self.model.class_names)
        else:
            # An unconditional model's images carry no class unless the user says which one it learned.
            self.class_names = [] if class_name is None else [str(class_name)]

    def describe(self) -> dict:
        return {**super().describe(), "step": self.model.step, "conditional": self.model.conditional,
                "truncation": self.truncation, "labels": self.labelling(),
                **({"sampling": vars(self.sampling)} if self.sampling is not None else {})}

    def labelling(self) -> str:
        """How this source's images get their class, in words (for results.json and the report)."""
        if self.model.conditional:
            return "the class each image was generated for (class-conditional model)"
        if not self.class_names:
            return "none: an unconditional model without --synthetic-class generates no labelled class"
        return (f"every image labelled {self.class_names[0]} (--synthetic-class of an unconditional model): the "
                f"synthetic images of a condition all go to this one class, not in the real class proportions")

    def _generate(self, class_name: str, n: int, seed: int, size: int) -> tuple[np.ndarray, list[str]]:
        labels = (torch.full((n,), self.model.class_index(class_name), dtype=torch.long)
                  if self.model.conditional else None)
        if self.sampling is not None:  # image i from (seed, i), with the chosen sampler (default DDIM at 50 steps)
            images = diffuse(self.model, n, seed, labels, self.sampling, batch_size=self.batch_size)
        else:
            z = self.model.latents(n, self.truncation, torch.Generator().manual_seed(seed))
            images = generate(self.model, z, labels, self.batch_size, seed=seed)  # seed: noise drawn inside G
        return images, [f"{Path(self.name).name}:{class_name}:{seed}:{i}" for i in range(n)]


class TranslationSource(SyntheticSource):
    """Bissoto et al.'s protocol: a map -> image checkpoint (pix2pixHD) translates the lesion maps (and superpixels,
    if it was trained with them) of the experiment's training images, each output labelled with the class of
    its source image. Never validation or test maps: the experiment binds the training split only.

    A class asked for ``n`` images uses its training maps in an order shuffled by the (seed, class) stream.
    When ``n`` exceeds them (``real+balance``), pass ``k`` over the maps applies the ``k``-th of the square's
    8 symmetries (:func:`~dermsynth.data.maps.dihedral_map`: quarter turns and mirror images, exact on maps),
    so up to 8x the maps give distinct inputs; beyond that, inputs repeat (pix2pixHD has no noise input). A
    training image without a lesion mask has no map and is left out (counted in :meth:`describe`).
    """

    def __init__(self, checkpoint: str | Path, *, device: str = "auto", batch_size: int = 64,
                 model: LoadedGenerator | None = None) -> None:
        self.model = model or load_generator(checkpoint, resolve_device(device))
        self.model.require_maps()
        self.name, self.batch_size = str(checkpoint), batch_size
        self.training_subset = checkpoint_training_subset(checkpoint)
        self.class_names: list[str] = []  # known once the training split is bound
        self.train: LesionDataset | None = None
        self.unmasked = 0

    def bind_training(self, train: LesionDataset) -> None:
        size = int(self.model.generator.resolution)
        if train.size != size:
            raise DermsynthError(f"{self.name} translates {size} px maps, but the experiment reads images at "
                                 f"{train.size} px; run it with --size {size}")
        masked = masked_subset(train, skip_unmasked=True) if len(train) else train
        self.unmasked = len(train) - len(masked)
        self.train = masked
        present = np.unique(masked.labels[masked.labels >= 0])
        self.class_names = [masked.class_names[c] for c in present]

    def describe(self) -> dict:
        maps = None if self.train is None else {
            self.train.class_names[c]: int(k) for c, k in enumerate(np.bincount(
                self.train.labels[self.train.labels >= 0], minlength=self.train.num_classes)) if k}
        return {**super().describe(), "model": self.model.model, "inputs": list(self.model.inputs),
                "instance": self.model.takes_instance, "training_maps": maps,
                "training_images_without_mask": self.unmasked}

    def _generate(self, class_name: str, n: int, seed: int, size: int) -> tuple[np.ndarray, list[str]]:
        if self.train is None:
            raise DermsynthError(f"{self.name}: no training split bound (SyntheticSource.bind_training)")
        code = next(i for i, c in enumerate(self.train.class_names) if c.lower() == class_name.lower())
        rows = np.random.default_rng(seed).permutation(np.flatnonzero(self.train.labels == code))
        picks = np.arange(n)
        chosen = rows[picks % len(rows)]
        passes = picks // len(rows)
        maps = [dihedral_map(m, int(k))
                for m, k in zip(maps_of(self.train, chosen, instance=self.model.takes_instance), passes)]
        images = translate_maps(self.model, maps, list(self.train.class_names), self.batch_size, seed=seed)
        return images, [f"{Path(self.name).name}:{m.map_id}:d{int(k) % 8}" for m, k in zip(maps, passes)]


class FolderSource(SyntheticSource):
    """Images listed in ``<folder>/manifest.csv`` (columns ``file`` and ``class``), drawn without replacement."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.name = str(self.folder)
        manifest = self.folder / MANIFEST
        if not manifest.is_file():
            raise DataError(f"{self.folder}: no {MANIFEST} (a sample folder needs one row per image with its "
                            f"file and class, as `dermsynth sample` writes)")
        try:
            with open(manifest, newline="") as f:
                rows = list(csv.DictReader(f))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise DataError(f"{manifest}: unreadable ({exc})") from None
        if not rows or not {"file", "class"} <= set(rows[0]):
            raise DataError(f"{manifest}: needs the columns file and class and at least one row")
        self.files: dict[str, list[str]] = {}
        for line, row in enumerate(rows, start=2):
            cls, name = (row["class"] or "").strip(), (row["file"] or "").strip()
            if not cls or not name:
                raise DataError(f"{manifest}, line {line}: empty file or class (samples of an unconditional "
                                f"model carry no class; sample a conditional model or fill in the class)")
            self.files.setdefault(cls, []).append(name)
        self.class_names = list(self.files)
        self._cache: dict[str, np.ndarray] = {}

    def describe(self) -> dict:
        return {**super().describe(), "images": {c: len(f) for c, f in self.files.items()}}

    def _load(self, name: str, size: int) -> np.ndarray:
        key = f"{size}/{name}"
        if key not in self._cache:
            path = self.folder / name
            if not path.is_file():
                raise DataError(f"{path}: listed in {MANIFEST} but missing")
            self._cache[key] = preprocess_image(load_image(path), size)
        return self._cache[key]

    def _generate(self, class_name: str, n: int, seed: int, size: int) -> tuple[np.ndarray, list[str]]:
        key = next(c for c in self.files if c.lower() == class_name.lower())
        files = self.files[key]
        if n > len(files):
            raise DataError(f"{self.folder}: {len(files)} images of class {key!r}, but {n} are needed; "
                            f"sample more")
        chosen = [files[i] for i in np.random.default_rng(seed).permutation(len(files))[:n]]
        return np.stack([self._load(f, size) for f in chosen]), chosen


def open_source(spec: str | Path, *, class_name: str | None = None, truncation: float | None = None,
                device: str = "auto", sampler: str | None = None, sampling_steps: int | None = None,
                guidance: float | None = None) -> SyntheticSource:
    """A source from a string: ``phantom``, a checkpoint (``.pt`` file or run folder with ``latest.pt``: a noise ->
    image GAN or diffusion model gives a :class:`GeneratorSource`, a map -> image model a
    :class:`TranslationSource`) or a sample folder with ``manifest.csv``. ``sampler`` / ``sampling_steps`` /
    ``guidance``: how a diffusion checkpoint is sampled (refused for anything else)."""
    sampling = {"--sampler": sampler, "--sampling-steps": sampling_steps, "--guidance": guidance}
    given = [flag for flag, v in {"--synthetic-class": class_name, "--truncation": truncation, **sampling}.items()
             if v is not None]
    if str(spec).strip().lower() == "phantom" and not Path(spec).exists():
        if given:
            raise DermsynthError(f"the phantom source renders lesions; {given[0]} applies to checkpoints only")
        return phantom_source()
    path = Path(spec).expanduser()
    if not path.exists():
        raise DataError(f"{path}: synthetic source not found (give a GAN checkpoint, a sample folder with "
                        f"{MANIFEST}, or 'phantom')")
    if path.is_file() or (path / "latest.pt").is_file():
        model = load_generator(path, resolve_device(device))  # refuses non-finite weights
        if model.samples_noise:
            return GeneratorSource(path, class_name=class_name, truncation=truncation, model=model, sampler=sampler,
                                   sampling_steps=sampling_steps, guidance=guidance)
        if given:
            raise DermsynthError(f"{path} translates lesion maps: its images take the class of the training image "
                                 f"whose map they come from; drop the synthetic class, truncation and sampler options "
                                 f"({given[0]} given)")
        return TranslationSource(path, model=model)
    if given:
        raise DermsynthError(f"{path}: a sample folder takes its classes from {MANIFEST} and its images as sampled; "
                             f"{given[0]} applies to checkpoints only")
    return FolderSource(path)
