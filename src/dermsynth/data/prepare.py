"""Decode a data source once into a memory-mapped cache of square uint8 images (+ masks): the cache's side.

``prepare(source, size)`` reads the source's index (:func:`~dermsynth.data.readers.read_source`) and has
:mod:`dermsynth.data.decode` decode every image (centre crop, resize; masks fitted to their image, then cropped
and resized identically) straight into preallocated ``.npy`` memory maps in the cache folder; ``meta.json`` is
written last, so the folder is a :meth:`LesionDataset.load`-able cache only once complete.

Without ``out``, the cache lives in ``$DERMSYNTH_CACHE`` (default ``~/.cache/dermsynth``) under
``<name>-<size>-<hash8>``, the hash keyed by the resolved source path, kind, size and ``skip_corrupt``. A cache whose
recorded fingerprint (ids, labels, groups, file sizes and mtimes, size, flags) matches the current index is
loaded instead of decoding again.

``load_dataset(spec, size)`` is the single entry point for trainers and the CLI: phantom data, a prepared cache
folder, a ``.npz`` (built in memory) or any source folder (prepared into the default cache).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from dermsynth.data.dataset import ATTRIBUTES, CACHE_VERSION, LesionDataset, write_cache_meta
from dermsynth.data.decode import allocated_memmap, build_dataset, fill_arrays
from dermsynth.data.maps import (SLIC_COMPACTNESS, SUPERPIXEL_AREA, boundary_fraction, slic_segments,
                                 superpixels as slic_superpixels, warn_if_mostly_edges)
from dermsynth.data.readers import SourceIndex, read_source
from dermsynth.defaults import DEFAULT_PHANTOM_N, DEFAULT_SIZE
from dermsynth.errors import DataError, DermsynthError
from dermsynth.io import check_writable_dir, remove_stale_temp, temp_path, write_error, write_json
from dermsynth.resources import require_disk, unwind_on_sigterm

PREPARE_VERSION = 1  # bump when the decoding/cropping/resizing changes, to invalidate old caches


# ---------------------------------------------------------------------------------------------------------
# Cache location and identity
# ---------------------------------------------------------------------------------------------------------


def default_cache_root() -> Path:
    """``$DERMSYNTH_CACHE`` or ``~/.cache/dermsynth``."""
    env = os.environ.get("DERMSYNTH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dermsynth"


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


def _ids_digest(index: SourceIndex) -> str:
    return _digest([r.image_id for r in index.records])


def cache_dir_for(
    index: SourceIndex, size: int, skip_corrupt: bool = False, subset_key: bool = False, root: Path | None = None
) -> Path:
    """The default cache folder of ``index`` at ``size``: ``<cache root>/<name>-<size>-<hash8>``.

    ``subset_key`` adds the record ids to the hash (for hand-made sub-indexes of a source).
    """
    key = _digest(str(index.root), index.kind, index.notes.get("split", "all"), int(size), bool(skip_corrupt),
                  _ids_digest(index) if subset_key else "")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", index.name).strip("_") or "data"
    return (root or default_cache_root()) / f"{slug}-{int(size)}-{key[:8]}"


def _file_sig(item: Path | np.ndarray | None) -> str:
    if item is None:
        return "-"
    if isinstance(item, np.ndarray):
        return f"array{item.shape}{item.dtype}"
    try:
        st = os.stat(item)
    except OSError:
        return f"{item}:missing"
    return f"{item}:{st.st_size}:{st.st_mtime_ns}"


def fingerprint(index: SourceIndex, size: int, skip_corrupt: bool = False) -> str:
    """Identity of what a cache was built from: records, file sizes/mtimes, classes, size and flags."""
    h = hashlib.sha256()
    root_sig = _file_sig(index.root) if index.root.is_file() else str(index.root)
    h.update(json.dumps([PREPARE_VERSION, CACHE_VERSION, root_sig, index.kind, index.class_names,
                         int(size), bool(skip_corrupt)]).encode())
    for r in index.records:
        attrs = ";".join(f"{n}={_file_sig(p)}" for n, p in r.attribute_masks)
        # surrogateescape: a file name that is not UTF-8 (its undecodable bytes) hashes as its bytes
        superpixels = "" if r.superpixels is None else f"\0{_file_sig(r.superpixels)}"  # earlier caches' digests kept
        h.update(f"{r.image_id}\0{r.label}\0{r.group}\0{_file_sig(r.image)}\0{_file_sig(r.lesion_mask)}\0{attrs}"
                 f"{superpixels}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def _reusable(out: Path, fp: str, size: int) -> LesionDataset | None:
    """The cache at ``out`` if it is complete and was built from exactly this index at this size."""
    meta_path = out / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if meta.get("fingerprint") != fp or meta.get("size") != size:
        return None
    try:
        return LesionDataset.load(out)
    except DataError:
        return None


# ---------------------------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------------------------


def prepare(
    source: str | Path | SourceIndex,
    size: int,
    out: str | Path | None = None,
    skip_corrupt: bool = False,
    progress: bool = True,
    kind: str = "auto",
    *,
    split: str = "all",
    skip_missing: bool = False,
    workers: int | None = None,
    force: bool = False,
    superpixels: bool = False,
    superpixel_area: float = SUPERPIXEL_AREA,
) -> LesionDataset:
    """Decode ``source`` once at ``size`` px into a cache folder and return it memory-mapped.

    source: a folder / label CSV / .npz (read with ``read_source(source, kind, split=, skip_missing=)``) or an
    already-read :class:`SourceIndex`. out: the cache folder (default: under :func:`default_cache_root`).
    A complete cache built from the same index at the same size is reused (``force=True`` rebuilds).
    skip_corrupt: unreadable images (and records whose masks are unreadable or misaligned) are skipped with a
    warning and listed in meta.json's ``skipped`` instead of raising :class:`DataError`.
    workers: decoding threads (PIL releases the GIL while decoding/resizing); default min(4, CPUs).
    superpixels: also compute SLIC superpixels of the prepared images once (``instance_maps.npy``, the instance
    maps of map -> image models, :mod:`dermsynth.data.maps`); added to an existing cache without decoding again,
    and recomputed when the cached ones were made with other settings. superpixel_area: the size of one
    superpixel in pixels (the SLIC segment count scales with the image area); meta.json records the settings
    and the fraction of boundary pixels, warned about above one half. A source whose every image has ISIC 2018
    Task 2's ``<id>_superpixels.png`` gets those as its instance maps instead (decoded with the images, whether or
    not ``superpixels`` is asked for; meta.json says so), never SLIC's.
    """
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 1:
        raise DataError(f"size must be a positive integer number of pixels, got {size!r}")
    size = int(size)
    from_index = isinstance(source, SourceIndex)
    index = source if from_index else read_source(source, kind, split=split, skip_missing=skip_missing)
    out_given = out is not None
    out = Path(out).expanduser() if out_given else cache_dir_for(index, size, skip_corrupt, from_index)
    fp = fingerprint(index, size, skip_corrupt)
    if not force:
        cached = _reusable(out, fp, size)
        if cached is not None:
            recorded = _superpixel_settings(out)
            stale = cached.instance_maps is None or (recorded != ISIC_SUPERPIXELS
                                                     and recorded != _slic_settings(size, superpixel_area))
            return _add_superpixels(out, progress, superpixel_area) if superpixels and stale else cached
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: cache location exists and is not a folder")
    created = not out.exists()
    _check_cache_writable(out, given=out_given)
    remove_stale_temp(out)  # arrays of a prepare that was killed (up to GBs)
    try:
        (out / "meta.json").unlink(missing_ok=True)  # whatever was here is no longer a complete cache
    except OSError as exc:
        raise DataError(f"{out}: cannot write the cache folder ({exc.strerror})") from None

    # a SIGTERM removes the temporary arrays (GBs) before the process ends; a refused size leaves no folder
    with unwind_on_sigterm(), _removed_if_left_empty(out if created else None):
        arrays, kept, skipped, missing_lesion = fill_arrays(index, size, skip_corrupt, progress, workers, out)
        has_lesion = "lesion_masks" in arrays.arrays
        has_attrs = "attribute_masks" in arrays.arrays
        has_isic_superpixels = "instance_maps" in arrays.arrays
        try:
            arrays.finish()
        except BaseException as exc:
            arrays.discard()
            if isinstance(exc, OSError):
                raise write_error(out, exc) from None
            raise
    for name, present in (("lesion_masks", has_lesion), ("attribute_masks", has_attrs),
                          ("instance_maps", has_isic_superpixels)):
        if not present:
            (out / f"{name}.npy").unlink(missing_ok=True)
    extra = {}
    if has_isic_superpixels:
        fraction = boundary_fraction(np.load(out / "instance_maps.npy", mmap_mode="r"))
        warn_if_mostly_edges(fraction, str(out))
        extra["superpixels"] = {**ISIC_SUPERPIXELS, "boundary_fraction": round(fraction, 4)}

    write_cache_meta(
        out, source=str(index.root), size=size, class_names=index.class_names,
        labels=[r.label for r in kept], ids=[r.image_id for r in kept], groups=[r.group for r in kept],
        attribute_names=list(ATTRIBUTES), has_lesion_masks=has_lesion, has_attribute_masks=has_attrs,
        has_instance_maps=has_isic_superpixels,
        extra={
            **extra,
            "prepare_version": PREPARE_VERSION,
            "fingerprint": fp,
            "source_kind": index.kind,
            "source_name": index.name,
            "skip_corrupt": bool(skip_corrupt),
            "skipped": {"count": len(skipped), "files": [s["file"] for s in skipped],
                        "errors": [s["error"] for s in skipped]},
            "lesion_mask_missing": {"count": len(missing_lesion), "ids": missing_lesion},
        })
    if superpixels and not has_isic_superpixels:
        return _add_superpixels(out, progress, superpixel_area)
    return LesionDataset.load(out)


#: meta.json's record of superpixels read from the source's own ISIC 2018 Task 2 files
ISIC_SUPERPIXELS = {"method": "isic-superpixels-files", "files": "<id>_superpixels.png",
                    "decoding": "id = R + (G << 8) + (B << 16); centre-cropped as the image, nearest-neighbour resize"}


def _check_cache_writable(out: Path, given: bool) -> None:
    """``prepare --out`` names the folder itself; the default one lives under $DERMSYNTH_CACHE, which is what a
    read-only default cache calls for changing (a command such as train has an --out of its own)."""
    if given:
        check_writable_dir(out, "--out")
        return
    try:
        check_writable_dir(out)
    except DermsynthError as exc:
        raise DataError(f"{exc}: the cache folder {default_cache_root()} is not writable; set DERMSYNTH_CACHE to a "
                        f"writable folder") from None


def _slic_settings(size: int, superpixel_area: float) -> dict:
    """What decides a cache's superpixels (compared on reuse)."""
    return {"method": "skimage.segmentation.slic", "n_segments": slic_segments(size, superpixel_area),
            "superpixel_area": float(superpixel_area), "compactness": SLIC_COMPACTNESS}


def _superpixel_settings(out: Path) -> dict:
    """The settings recorded with a cache's superpixels (without the measured boundary fraction)."""
    recorded = dict(json.loads((out / "meta.json").read_text()).get("superpixels") or {})
    recorded.pop("boundary_fraction", None)
    return recorded


@contextlib.contextmanager
def _removed_if_left_empty(folder: Path | None) -> Iterator[None]:
    """Remove ``folder`` (one this run created) if the block fails and leaves it empty."""
    try:
        yield
    except BaseException:
        if folder is not None:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only succeeds when empty
        raise


def _add_superpixels(out: Path, progress: bool, superpixel_area: float = SUPERPIXEL_AREA) -> LesionDataset:
    """Compute the SLIC superpixels of a complete cache into ``instance_maps.npy`` and record them in meta.json."""
    images = LesionDataset.load(out).images
    settings = _slic_settings(images.shape[1], superpixel_area)
    final = out / "instance_maps.npy"
    require_disk(4 * int(np.prod(images.shape[:3])), out, f"{final.name} (int32 per pixel)", "--superpixels")
    tmp = temp_path(final)
    try:
        with unwind_on_sigterm():
            ids = allocated_memmap(tmp, np.int32, images.shape[:3])
            slic_superpixels(images, settings["n_segments"], out=ids, progress=progress)
            ids.flush()
            fraction = boundary_fraction(ids)
            del ids
            os.replace(tmp, final)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise write_error(final, exc) from None
        raise
    meta = json.loads((out / "meta.json").read_text())
    meta.update(has_instance_maps=True, superpixels={**settings, "boundary_fraction": round(fraction, 4)})
    write_json(out / "meta.json", meta, indent=1)
    warn_if_mostly_edges(fraction, str(out))
    return LesionDataset.load(out)


def _parse_phantom(spec: str) -> int:
    _, _, n = spec.partition(":")
    if not n.strip():
        return DEFAULT_PHANTOM_N
    try:
        value = int(n)
    except ValueError:
        value = 0
    if value < 1:
        raise DataError(f"data spec {spec!r}: expected phantom or phantom:N with N a positive integer")
    return value


def load_dataset(spec: str | Path | None = None, size: int | None = DEFAULT_SIZE, *, seed: int = 0,
                 **kw) -> LesionDataset:
    """The one data entry for trainers and the CLI.

    spec: None / ``"phantom"`` / ``"phantom:N"`` -> synthetic phantom lesions (N defaults to DEFAULT_PHANTOM_N,
    2048; ``seed`` used);
    a prepared cache folder (has meta.json) -> loaded memory-mapped (DataError if it was prepared at another size;
    ``size=None`` accepts any); a ``.npz`` -> read and built in memory at ``size`` (``split=`` selects a split);
    anything else -> :func:`prepare` into the default cache (``kw`` passed on: kind, skip_corrupt, progress, ...).
    """
    if spec is None or (isinstance(spec, str) and spec.strip().lower().split(":")[0] == "phantom"
                        and not Path(spec).exists()):
        n = DEFAULT_PHANTOM_N if spec is None else _parse_phantom(spec.strip())
        from dermsynth.data.phantom import generate_phantom

        return generate_phantom(n=n, size=DEFAULT_SIZE if size is None else int(size), seed=seed)
    path = Path(spec).expanduser()
    if path.is_dir() and LesionDataset.is_cache(path):
        ds = LesionDataset.load(path)
        if size is not None and ds.size != int(size):
            raise DataError(
                f"{path}: cache was prepared at {ds.size}px but {size}px was requested; "
                f"prepare the source again at {size}px or ask for {ds.size}"
            )
        return ds
    if path.is_file() and path.suffix.lower() == ".npz" and "out" not in kw:
        index = read_source(path, "npz", split=kw.pop("split", "all"))
        if size is None:
            first = index.records[0].image if index.records else None
            size = int(min(first.shape[:2])) if first is not None else DEFAULT_SIZE
        return build_dataset(index, int(size), skip_corrupt=kw.pop("skip_corrupt", False),
                             progress=kw.pop("progress", False), workers=kw.pop("workers", 1))
    return prepare(path, DEFAULT_SIZE if size is None else int(size), **kw)


# ---------------------------------------------------------------------------------------------------------
# What a run trained on
# ---------------------------------------------------------------------------------------------------------

_HASH_ROWS = 256  # images hashed per step (bounds the memory a memory-mapped dataset is read in)


def content_hash(data: LesionDataset) -> str:
    """SHA-256 of what a model learns from: class names, ids, labels, images and every mask/map array.

    The same data give the same hash however they were reached (a source folder, its cache, another path to
    either); any changed pixel, label, id or class name changes it. Reads every array once (SHA-256 ran at about
    250 MB/s on this project's shared CPU).
    """
    h = hashlib.sha256()
    h.update(json.dumps([list(data.class_names), list(data.ids), data.labels.tolist()], ensure_ascii=True).encode())
    for name in ("images", "lesion_masks", "attribute_masks", "instance_maps"):
        arr = getattr(data, name)
        if arr is None:
            continue
        h.update(f"\0{name}{arr.shape}{arr.dtype.str}".encode())
        for start in range(0, len(arr), _HASH_ROWS):
            h.update(memoryview(np.ascontiguousarray(arr[start : start + _HASH_ROWS])).cast("B"))
    return h.hexdigest()

