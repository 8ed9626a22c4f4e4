"""Decoding a source's records into square uint8 arrays: one job of ``dermsynth prepare``, the other being the
cache (:mod:`dermsynth.data.prepare`: where it lives, when it is reused, ``load_dataset``).

Every image is decoded, centre-cropped to a square and resized to ``size`` (LANCZOS); lesion and attribute
masks are first fitted to their image's pixel grid, then cropped and resized identically (nearest-neighbour), and
so are ISIC 2018 Task 2's ``<id>_superpixels.png`` files (RGB-encoded ids) when every image of a source has one:
they become the cache's instance maps instead of SLIC's.
Records are decoded on a thread pool in chunks; :func:`fill_arrays` writes them straight into preallocated
arrays (memory maps in a cache folder, so 10k images at 256 px -- 2 GB -- are never held as a list), and
:func:`build_dataset` returns them in memory.

Before anything is allocated the need is checked (:mod:`dermsynth.resources`): the cache's bytes against the
folder's free space, decoding one image (or holding all, in memory) against the available memory, each a one-line
error naming ``--size``; the threads and batch shrink to what memory holds. Memory-mapped files are allocated
for real (:func:`allocated_memmap`), so a disk that fills up anyway is an ``error:`` line naming the file, not
a SIGBUS, and every temporary file is removed on every error.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from dermsynth.data.dataset import ATTRIBUTES, LesionDataset
from dermsynth.data.images import (
    binarize_mask,
    fit_mask_to_image,
    load_image,
    load_mask,
    load_superpixels,
    preprocess_image,
    preprocess_mask,
)
from dermsynth.data.readers import DataWarning, Record, SourceIndex
from dermsynth.errors import DataError
from dermsynth.io import temp_path, write_error
from dermsynth.progress import tqdm
from dermsynth.resources import allocate, available_memory, require_disk, require_memory

__all__ = ["allocated_memmap", "build_dataset", "fill_arrays"]

_CHUNK = 256  # records per thread-pool batch (bounds memory held by finished-but-unwritten results)
# Peak bytes per output pixel while one image is decoded and resized, beside its finished arrays: PIL holds RGB
# at 4 bytes a pixel, LANCZOS an intermediate up to the output's size, numpy a 3-byte copy; masks 2 more.
_DECODE_BYTES_PER_PIXEL = 13


# ---------------------------------------------------------------------------------------------------------
# Decoding one record
# ---------------------------------------------------------------------------------------------------------


def _as_rgb_uint8(arr: np.ndarray, name: str) -> np.ndarray:
    """An in-memory image (npz) -> uint8 (H, W, 3)."""
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise DataError(f"{name}: image array has shape {arr.shape}; expected (H, W) or (H, W, 3)")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating):
            scale = 255.0 if float(np.nanmax(arr, initial=0.0)) <= 1.0 else 1.0
            arr = np.clip(np.nan_to_num(arr) * scale + 0.5, 0, 255)
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return arr


def _mask_array(item: Path | np.ndarray, image_shape: tuple[int, ...], size: int) -> np.ndarray:
    if isinstance(item, np.ndarray):
        mask, where = binarize_mask(item), "mask array"
    else:
        mask, where = load_mask(item), item
    return preprocess_mask(fit_mask_to_image(mask, image_shape, where), size)


def _decode(rec: Record, size: int, want_lesion: bool, want_attrs: bool, want_superpixels: bool = False):
    """(image, lesion mask or None, attribute masks or None, superpixel ids or None) for one record, all at
    ``size`` (superpixel ids: ISIC's file, fitted, cropped and resized as a mask)."""
    if isinstance(rec.image, np.ndarray):
        full = _as_rgb_uint8(rec.image, rec.image_id)
    else:
        full = load_image(rec.image)
    image = preprocess_image(full, size)
    lesion = None
    if want_lesion:
        if rec.lesion_mask is None:
            lesion = np.zeros((size, size), np.uint8)
        else:
            lesion = _mask_array(rec.lesion_mask, full.shape, size)
    attrs = None
    if want_attrs:
        attrs = np.zeros((len(ATTRIBUTES), size, size), np.uint8)
        for name, path in rec.attribute_masks:
            attrs[ATTRIBUTES.index(name)] = _mask_array(path, full.shape, size)
    ids = None
    if want_superpixels:
        ids = preprocess_mask(fit_mask_to_image(load_superpixels(rec.superpixels), full.shape, rec.superpixels), size)
    return image, lesion, attrs, ids


def _safe_decode(args):
    try:
        return True, _decode(*args)
    except DataError as exc:
        return False, exc


def _default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


# ---------------------------------------------------------------------------------------------------------
# Building arrays
# ---------------------------------------------------------------------------------------------------------


def allocated_memmap(path: Path, dtype, shape: tuple[int, ...]) -> np.memmap:
    """A new ``.npy`` memory map at ``path`` whose disk blocks are reserved now: a full disk raises OSError here
    instead of killing the process with SIGBUS at a later write (a plain ``open_memmap`` file is sparse)."""
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    with open(path, "r+b") as f:
        allocate(f.fileno(), arr.offset, arr.nbytes)
    return arr


class _Arrays:
    """Output arrays, preallocated in memory or as ``.npy`` memory maps under temporary names."""

    def __init__(self, n: int, size: int, lesion: bool, attrs: bool, directory: Path | None,
                 superpixels: bool = False):
        self.directory = directory
        self.tmp: dict[str, Path] = {}
        shapes = {"images": (n, size, size, 3)}
        if lesion:
            shapes["lesion_masks"] = (n, size, size)
        if attrs:
            shapes["attribute_masks"] = (n, len(ATTRIBUTES), size, size)
        if superpixels:
            shapes["instance_maps"] = (n, size, size)
        self.arrays: dict[str, np.ndarray] = {}
        try:
            for name, shape in shapes.items():
                self.arrays[name] = self._alloc(name, shape, np.int32 if name == "instance_maps" else np.uint8)
        except BaseException:
            self.discard()
            raise

    def _alloc(self, name: str, shape: tuple[int, ...], dtype=np.uint8) -> np.ndarray:
        if self.directory is None:
            return np.zeros(shape, dtype)
        path = temp_path(self.directory / f"{name}.npy")  # removed on failure, or by the next run if killed
        self.tmp[name] = path
        try:
            return allocated_memmap(path, dtype, shape)
        except OSError as exc:  # a full disk: name the file the cache was writing
            raise write_error(self.directory / f"{name.partition('.')[0]}.npy", exc) from None

    def shrink(self, n: int) -> None:
        """Keep the first ``n`` rows (after skipped records); memory maps are copied to smaller files."""
        for name, arr in list(self.arrays.items()):
            if len(arr) == n:
                continue
            if self.directory is None:
                self.arrays[name] = arr[:n].copy()
                continue
            old_path = self.tmp[name]
            new = self._alloc(name + ".shrunk", (n,) + arr.shape[1:], arr.dtype)
            for start in range(0, n, 1024):
                new[start : start + 1024] = arr[start : min(n, start + 1024)]
            new.flush()
            del arr
            self.arrays[name] = new
            os.unlink(old_path)
            self.tmp[name] = self.tmp.pop(name + ".shrunk")

    def finish(self) -> dict[str, Path]:
        """Flush and move memory maps to their final names; returns name -> final path."""
        final = {}
        for name, arr in self.arrays.items():
            if isinstance(arr, np.memmap):
                arr.flush()
            final[name] = self.directory / f"{name}.npy"
        self.arrays.clear()  # drop the writable maps before renaming
        for name, path in final.items():
            os.replace(self.tmp[name], path)
        return final

    def discard(self) -> None:
        self.arrays.clear()
        for path in self.tmp.values():
            try:
                os.unlink(path)
            except OSError:
                pass


def _check_fits(n: int, size: int, record_bytes: int, directory: Path | None) -> int:
    """Refuse (naming --size) a size whose arrays or decoding cannot fit; returns the peak decoding bytes."""
    decode_bytes = size * size * _DECODE_BYTES_PER_PIXEL + record_bytes
    what = f"{n} images at {size}x{size} px"
    if directory is None:
        require_memory(n * record_bytes + decode_bytes, f"holding {what}", f"--size {size}")
    else:
        require_disk(n * record_bytes, directory, f"the cache of {what}", f"--size {size}")
        require_memory(decode_bytes, f"decoding one image at {size}x{size} px", f"--size {size}")
    return decode_bytes


def _parallelism(workers: int, decode_bytes: int, record_bytes: int) -> tuple[int, int]:
    """(threads, records per batch) that the available memory holds, at most ``workers`` and :data:`_CHUNK`."""
    available = available_memory()
    if available is None:
        return workers, _CHUNK
    workers = max(1, min(workers, available // (2 * decode_bytes)))
    return workers, max(workers, min(_CHUNK, available // (4 * record_bytes)))


def fill_arrays(index: SourceIndex, size: int, skip_corrupt: bool, progress: bool, workers: int | None,
          directory: Path | None):
    """Decode every record into fresh arrays. Returns (arrays, kept records, skipped list, lesion-missing ids)."""
    records = index.records
    if not records:
        raise DataError(f"{index.root}: the index holds no images")
    want_lesion = any(r.lesion_mask is not None for r in records)
    want_attrs = any(r.attribute_masks for r in records)
    missing_lesion = [r.image_id for r in records if want_lesion and r.lesion_mask is None]
    # ISIC's own superpixels when every image has its file (else the instance maps are SLIC's, made later)
    with_superpixels = sum(r.superpixels is not None for r in records)
    want_superpixels = with_superpixels == len(records)
    if 0 < with_superpixels < len(records):
        warnings.warn(f"{index.root}: only {with_superpixels} of {len(records)} images have an <id>_superpixels.png; "
                      f"ignoring them (superpixels, if asked for, are computed with SLIC)", DataWarning, stacklevel=3)
    record_bytes = size * size * (3 + want_lesion + (len(ATTRIBUTES) if want_attrs else 0) + 4 * want_superpixels)
    decode_bytes = _check_fits(len(records), size, record_bytes, directory)
    workers, chunk_size = _parallelism(_default_workers() if workers is None else max(1, int(workers)),
                                       decode_bytes, record_bytes)
    kept: list[Record] = []
    skipped: list[dict] = []
    bar = tqdm(total=len(records), desc=f"preparing {index.name} at {size}px", unit="img", disable=not progress)
    pool = ThreadPoolExecutor(max_workers=workers) if workers > 1 else None
    arrays: _Arrays | None = None
    try:
        arrays = _Arrays(len(records), size, want_lesion, want_attrs, directory,  # removes its files if it fails
                         want_superpixels)
        for start in range(0, len(records), chunk_size):
            chunk = records[start : start + chunk_size]
            jobs = [(r, size, want_lesion, want_attrs, want_superpixels) for r in chunk]
            results = pool.map(_safe_decode, jobs) if pool else map(_safe_decode, jobs)
            for rec, (ok, value) in zip(chunk, results):
                bar.update(1)
                if not ok:
                    if not skip_corrupt:
                        raise value
                    skipped.append({"id": rec.image_id, "file": _where(rec), "error": str(value)})
                    continue
                image, lesion, attrs, ids = value
                row = len(kept)
                arrays.arrays["images"][row] = image
                if lesion is not None:
                    arrays.arrays["lesion_masks"][row] = lesion
                if attrs is not None:
                    arrays.arrays["attribute_masks"][row] = attrs
                if ids is not None:
                    arrays.arrays["instance_maps"][row] = ids
                kept.append(rec)
        if not kept:
            raise DataError(f"{index.root}: none of the {len(records)} images could be decoded "
                            f"(first error: {skipped[0]['error']})")
        if len(kept) < len(records):
            arrays.shrink(len(kept))
    except BaseException:
        if arrays is not None:
            arrays.discard()
        raise
    finally:
        bar.close()
        if pool:
            pool.shutdown(wait=True, cancel_futures=True)
    if skipped:
        warnings.warn(
            f"{index.root}: skipped {len(skipped)} unreadable image(s) (first: {skipped[0]['error']})",
            DataWarning,
            stacklevel=3,
        )
    kept_ids = {r.image_id for r in kept}
    missing_lesion = [i for i in missing_lesion if i in kept_ids]
    if missing_lesion:
        warnings.warn(
            f"{index.root}: {len(missing_lesion)} image(s) have no lesion mask (first: {missing_lesion[0]}); "
            "their masks are left all-zero and listed in the cache's meta.json",
            DataWarning,
            stacklevel=3,
        )
    return arrays, kept, skipped, missing_lesion


def _where(rec: Record) -> str:
    return rec.image_id if isinstance(rec.image, np.ndarray) else str(rec.image)


def build_dataset(
    index: SourceIndex, size: int, *, skip_corrupt: bool = False, progress: bool = True, workers: int | None = None
) -> LesionDataset:
    """Decode ``index`` into an in-memory :class:`LesionDataset` (no cache; for small sources such as .npz)."""
    arrays, kept, _, _ = fill_arrays(index, size, skip_corrupt, progress, workers, None)
    a = arrays.arrays
    return LesionDataset(
        images=a["images"],
        labels=np.array([r.label for r in kept], dtype=np.int64),
        class_names=list(index.class_names),
        ids=[r.image_id for r in kept],
        groups=[r.group for r in kept],
        lesion_masks=a.get("lesion_masks"),
        attribute_masks=a.get("attribute_masks"),
        attribute_names=list(ATTRIBUTES),
        source=str(index.root),
        instance_maps=a.get("instance_maps"),
    )
