"""The one in-memory dataset abstraction every reader, the phantom generator and the trainer share.

A :class:`LesionDataset` holds square uint8 images of one size (N, H, W, 3), integer labels with their
class names, and optionally lesion masks, dermoscopic-attribute masks and a group id (lesion or patient)
so that splits never put one lesion on both sides. Arrays may be NumPy memory maps of a prepared cache.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dermsynth.errors import DataError
from dermsynth.io import atomic_open, ensure_dir, write_json

# ISIC 2018 Task 2 attribute names, in the order attribute masks are stacked.
ATTRIBUTES: tuple[str, ...] = ("pigment_network", "negative_network", "streaks", "milia_like_cyst", "globules")

CACHE_VERSION = 1


@dataclass
class LesionDataset:
    """Square uint8 RGB images with labels and optional masks.

    images: (N, S, S, 3) uint8.  labels: (N,) int64, -1 for unlabelled.
    lesion_masks: (N, S, S) uint8 in {0, 1}, or None.
    attribute_masks: (N, len(attribute_names), S, S) uint8 in {0, 1}, or None.
    instance_maps: (N, S, S) int32 SLIC superpixel ids (``dermsynth.data.maps``), or None.
    groups: lesion/patient id per image (defaults to the image id: every image its own group).
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    ids: list[str]
    groups: list[str] | None = None
    lesion_masks: np.ndarray | None = None
    attribute_masks: np.ndarray | None = None
    attribute_names: list[str] = field(default_factory=lambda: list(ATTRIBUTES))
    source: str = ""
    instance_maps: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.ndim != 4 or self.images.shape[-1] != 3 or self.images.dtype != np.uint8:
            raise DataError(f"images must be uint8 (N, H, W, 3), got {self.images.dtype} {self.images.shape}")
        if self.images.shape[1] != self.images.shape[2]:
            raise DataError(f"images must be square, got {self.images.shape[1]}x{self.images.shape[2]}")
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if len(self.labels) != n or len(self.ids) != n:
            raise DataError(f"{n} images but {len(self.labels)} labels and {len(self.ids)} ids")
        if self.groups is None:
            self.groups = list(self.ids)
        for name, arr in (("lesion_masks", self.lesion_masks), ("attribute_masks", self.attribute_masks),
                          ("instance_maps", self.instance_maps)):
            if arr is not None and (len(arr) != n or arr.shape[-2:] != self.images.shape[1:3]):
                raise DataError(f"{name} shape {arr.shape} does not match images {self.images.shape}")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def size(self) -> int:
        """Side length in pixels."""
        return int(self.images.shape[1])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels[self.labels >= 0], minlength=self.num_classes)
        return {name: int(c) for name, c in zip(self.class_names, counts)}

    def class_index(self, name_or_index: str | int) -> int:
        """Resolve a class given by name (case-insensitive) or index."""
        if isinstance(name_or_index, int) or str(name_or_index).isdigit():
            idx = int(name_or_index)
            if 0 <= idx < self.num_classes:
                return idx
        else:
            lowered = [c.lower() for c in self.class_names]
            if str(name_or_index).lower() in lowered:
                return lowered.index(str(name_or_index).lower())
        raise DataError(f"unknown class {name_or_index!r}; classes are {', '.join(self.class_names)}")

    def random_subset(self, n: int, seed: int) -> "LesionDataset":
        """A seeded random choice of ``n`` rows (in their original order); the dataset itself when ``n >= len``."""
        if n >= len(self):
            return self
        return self.subset(np.sort(np.random.default_rng(seed).permutation(len(self))[:n]))

    def subset(self, index: np.ndarray | list[int]) -> "LesionDataset":
        """A new dataset holding the given rows (copied into memory)."""
        index = np.asarray(index, dtype=np.int64)
        return LesionDataset(
            images=np.ascontiguousarray(self.images[index]),
            labels=self.labels[index],
            class_names=list(self.class_names),
            ids=[self.ids[i] for i in index],
            groups=[self.groups[i] for i in index] if self.groups is not None else None,
            lesion_masks=None if self.lesion_masks is None else np.ascontiguousarray(self.lesion_masks[index]),
            attribute_masks=None if self.attribute_masks is None else np.ascontiguousarray(self.attribute_masks[index]),
            attribute_names=list(self.attribute_names),
            source=self.source,
            instance_maps=None if self.instance_maps is None else np.ascontiguousarray(self.instance_maps[index]),
        )

    # --- cache on disk -------------------------------------------------------------------------
    def save(self, directory: str | Path, extra_meta: dict | None = None) -> Path:
        """Write the dataset as a cache folder: ``images.npy`` (+ masks) and ``meta.json``.

        Files are written under temporary names and renamed, so an interrupted write never
        leaves a cache that looks complete.
        """
        directory = ensure_dir(directory)
        arrays = {"images": self.images, "lesion_masks": self.lesion_masks, "attribute_masks": self.attribute_masks,
                  "instance_maps": self.instance_maps}
        for name, arr in arrays.items():
            if arr is not None:
                with atomic_open(directory / f"{name}.npy") as f:
                    np.save(f, np.ascontiguousarray(arr))
        write_cache_meta(directory, source=self.source, size=self.size, class_names=self.class_names,
                         labels=self.labels.tolist(), ids=self.ids, groups=self.groups,
                         attribute_names=self.attribute_names, has_lesion_masks=self.lesion_masks is not None,
                         has_attribute_masks=self.attribute_masks is not None,
                         has_instance_maps=self.instance_maps is not None, extra=extra_meta)
        return directory

    @classmethod
    def load(cls, directory: str | Path, mmap: bool = True) -> "LesionDataset":
        """Open a cache folder written by :meth:`save` (arrays memory-mapped by default)."""
        directory = Path(directory)
        meta_path = directory / "meta.json"
        if not meta_path.is_file():
            raise DataError(f"{directory}: not a prepared dataset cache (no meta.json)")
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"{meta_path}: unreadable cache metadata ({exc})") from None
        mode = "r" if mmap else None

        def _arr(name: str, present: bool) -> np.ndarray | None:
            if not present:
                return None
            path = directory / f"{name}.npy"
            try:
                return np.load(path, mmap_mode=mode)
            except (OSError, ValueError) as exc:
                raise DataError(f"{path}: unreadable cache array ({exc})") from None

        return cls(
            images=_arr("images", True),
            labels=np.asarray(meta["labels"], dtype=np.int64),
            class_names=list(meta["class_names"]),
            ids=list(meta["ids"]),
            groups=meta.get("groups"),
            lesion_masks=_arr("lesion_masks", meta.get("has_lesion_masks", False)),
            attribute_masks=_arr("attribute_masks", meta.get("has_attribute_masks", False)),
            attribute_names=list(meta.get("attribute_names", ATTRIBUTES)),
            source=meta.get("source", str(directory)),
            instance_maps=_arr("instance_maps", meta.get("has_instance_maps", False)),
        )

    @staticmethod
    def is_cache(directory: str | Path) -> bool:
        return (Path(directory) / "meta.json").is_file()


def write_cache_meta(directory: Path, *, source: str, size: int, class_names: list[str], labels: list[int],
                     ids: list[str], groups: list[str] | None, attribute_names: list[str], has_lesion_masks: bool,
                     has_attribute_masks: bool, extra: dict | None = None, has_instance_maps: bool = False) -> None:
    """Write a cache folder's ``meta.json`` atomically. Call it last: its presence marks a complete cache."""
    meta = {
        "version": CACHE_VERSION,
        "source": source,
        "size": size,
        "count": len(ids),
        "class_names": list(class_names),
        "labels": [int(v) for v in labels],
        "ids": list(ids),
        "groups": None if groups is None else list(groups),
        "attribute_names": list(attribute_names),
        "has_lesion_masks": has_lesion_masks,
        "has_attribute_masks": has_attribute_masks,
        "has_instance_maps": has_instance_maps,
        **(extra or {}),
    }
    write_json(Path(directory) / "meta.json", meta, indent=1)
