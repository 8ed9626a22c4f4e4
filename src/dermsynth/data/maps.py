"""Semantic and instance maps for map -> image models (pix2pixHD, Bissoto et al. 2018), and tools to edit them.

**Semantic map** (multi-hot, :data:`SEMANTIC_CHANNELS`): channel 0 is the lesion (its segmentation mask,
background skin = no lesion), channels 1-5 the ISIC 2018 Task 2 attributes pigment network, negative network,
streaks, milia-like cysts and globules. Attributes overlap in the ISIC annotations (one superpixel may carry
several), so every attribute has its own channel rather than a priority order; an attribute is kept only
inside the lesion. Images without attribute masks get the lesion channel only (the attribute channels stay 0);
an image without a lesion mask (missing, or empty) has no semantic map: an error, or skipped with
``--skip-unmasked`` and a count.

On disk and in memory a semantic map is *bit-coded*: one uint8 per pixel, bit ``k`` = channel ``k``
(lesion = 1, pigment network = 2, negative network = 4, streaks = 8, milia-like cysts = 16, globules = 32). A
value with attribute bits but no lesion bit, or above 63, is out of range. The code is unpacked into float
channels on the training device (:func:`unpack_semantic`).

**Instance map**: SLIC superpixels (scikit-image; :func:`superpixels`, computed once by ``dermsynth prepare
--superpixels`` and cached next to the images) as int32 ids, turned into pix2pixHD's instance-boundary map
(:func:`instance_edges`: 1 where a pixel's id differs from one of its 4 neighbours).

**Map editing** (:func:`flip_map`, :func:`rotate_map`, :func:`scale_map`, :func:`add_attribute`,
:func:`remove_attribute`, and any other lesion's map taken as it is): a :class:`LesionMap` is edited, then
:func:`maps_dataset` turns maps into a dataset that ``dermsynth.sample.translate_images`` translates.
A maps folder holds ``<id>_semantic.png`` (8-bit, bit-coded as above) and optionally ``<id>_instance.png``
(16-bit superpixel ids) and ``maps.csv`` (``map_id,class``).
"""

from __future__ import annotations

import csv
import math
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dermsynth.data.dataset import ATTRIBUTES, LesionDataset
from dermsynth.data.images import _check_file
from dermsynth.data.readers import DataWarning
from dermsynth.errors import DataError
from dermsynth.io import atomic_open, write_csv
from dermsynth.progress import tqdm

#: semantic map channels, in order (bit k of the coded map = channel k)
SEMANTIC_CHANNELS: tuple[str, ...] = ("lesion", *ATTRIBUTES)
MAX_CODE = (1 << len(SEMANTIC_CHANNELS)) - 1

#: SLIC settings (Bissoto et al. 2018 gives none; it used the ISIC Task 2 superpixels). Superpixels keep one size in pixels
#: at every resolution: the segment count scales with the image area (:func:`slic_segments`). A fixed count
#: (200 before) makes every pixel of a 32 px map a boundary pixel (99 % measured), so the instance map says
#: nothing. The area is about that of ISIC's Task 2 superpixels at the challenge's resolution (SLIC0, roughly
#: a thousand per ~1022x767 image: an estimate, the shared ISIC sample has no superpixel files); `prepare
#: --superpixel-area` changes it. scikit-image's default compactness.
SUPERPIXEL_AREA = 784.0
SLIC_COMPACTNESS = 10.0
#: above this fraction of boundary pixels an instance map is mostly edges: warned about
BOUNDARY_WARN_FRACTION = 0.5

_CHUNK = 512  # rows per chunk when coding a memory-mapped dataset


# --- a per-dataset cache (datasets are unhashable dataclasses: keyed by identity, dropped with the dataset) ---
_CACHE: dict[tuple[int, str], np.ndarray] = {}


def _cached(data: LesionDataset, key: str, make: Callable[[LesionDataset], np.ndarray]) -> np.ndarray:
    slot = (id(data), key)
    if slot not in _CACHE:
        _CACHE[slot] = make(data)
        weakref.finalize(data, _CACHE.pop, slot, None)
    return _CACHE[slot]


# --- semantic maps ----------------------------------------------------------------------------------------


def unmasked_rows(data: LesionDataset) -> np.ndarray:
    """Indices of the images without a lesion (no mask, or an empty one)."""
    if data.lesion_masks is None:
        return np.arange(len(data))
    has = [np.asarray(data.lesion_masks[i:i + _CHUNK]).any(axis=(1, 2)) for i in range(0, len(data), _CHUNK)]
    return np.flatnonzero(~np.concatenate(has))


def check_masked(data: LesionDataset) -> None:
    """A DataError naming ``--skip-unmasked`` unless every image has a lesion mask."""
    missing = unmasked_rows(data)
    if len(missing) == len(data) and len(data):  # --skip-unmasked would leave nothing: not recommended
        raise DataError(f"{data.source or 'the dataset'}: none of the {len(data)} images has a lesion mask "
                        f"(<id>_segmentation.png); a semantic map needs one")
    if len(missing):
        where = data.source or "the dataset"
        raise DataError(f"{where}: {len(missing)} of {len(data)} images have no lesion mask (first: "
                        f"{data.ids[missing[0]]}), so they have no semantic map; add <id>_segmentation.png for "
                        f"them or pass --skip-unmasked to use the {len(data) - len(missing)} that have one")


def masked_subset(data: LesionDataset, skip_unmasked: bool) -> LesionDataset:
    """``data`` itself when every image has a lesion mask; else, with ``skip_unmasked``, the masked images
    (a warning with the count), without it the error of :func:`check_masked`."""
    missing = unmasked_rows(data)
    if not len(missing):
        return data
    if not skip_unmasked or len(missing) == len(data):
        check_masked(data)
    warnings.warn(f"--skip-unmasked: skipped {len(missing)} of {len(data)} images without a lesion mask "
                  f"(first: {data.ids[missing[0]]})", DataWarning, stacklevel=2)
    return data.subset(np.setdiff1d(np.arange(len(data)), missing))


def code_masks(lesion: np.ndarray, attributes: np.ndarray | None,
               attribute_names: list[str] | tuple[str, ...] = ATTRIBUTES) -> np.ndarray:
    """Bit-coded semantic maps (N, S, S) uint8 from lesion masks (N, S, S) and attribute masks (N, A, S, S)."""
    lesion = np.asarray(lesion).astype(bool)
    codes = lesion.astype(np.uint8)
    if attributes is not None:
        attributes = np.asarray(attributes)
        for bit, name in enumerate(ATTRIBUTES, start=1):
            if name in attribute_names:
                codes |= ((attributes[:, list(attribute_names).index(name)] > 0) & lesion).astype(np.uint8) << bit
    return codes


def semantic_codes(data: LesionDataset) -> np.ndarray:
    """The dataset's bit-coded semantic maps (N, S, S) uint8, computed once per dataset object.

    Raises a DataError (naming ``--skip-unmasked``) when an image has no lesion mask."""

    def make(d: LesionDataset) -> np.ndarray:
        check_masked(d)  # once: a failed check caches nothing, so it is raised again on every call
        out = np.empty((len(d), d.size, d.size), np.uint8)
        for i in range(0, len(d), _CHUNK):
            attrs = None if d.attribute_masks is None else d.attribute_masks[i:i + _CHUNK]
            out[i:i + _CHUNK] = code_masks(d.lesion_masks[i:i + _CHUNK], attrs, d.attribute_names)
        return out

    return _cached(data, "semantic", make)


def semantic_channels(data: LesionDataset) -> int:
    """Channels a model trained on ``data`` uses: the lesion only, or the lesion and the five attributes."""
    return len(SEMANTIC_CHANNELS) if data.attribute_masks is not None else 1


def unpack_semantic(codes: torch.Tensor, channels: int = len(SEMANTIC_CHANNELS)) -> torch.Tensor:
    """Bit-coded maps (B, H, W) (any integer dtype, any device) -> float channels (B, channels, H, W) in {0, 1}."""
    bits = torch.arange(channels, device=codes.device, dtype=torch.int32).view(1, -1, 1, 1)
    return ((codes.to(torch.int32)[:, None] >> bits) & 1).float()


def check_codes(codes: np.ndarray, where: str) -> None:
    """A DataError when bit-coded maps hold values out of range (> 63, or attributes outside the lesion)."""
    codes = np.asarray(codes)
    bad = (codes > MAX_CODE) | ((codes > 0) & (codes % 2 == 0))
    if bad.any():
        value = int(codes[bad].flat[0])
        raise DataError(f"{where}: semantic label value {value} out of range (bit-coded: lesion 1 + attributes "
                        f"2/4/8/16/32, values 0 or odd up to {MAX_CODE}; attributes only inside the lesion)")


# --- instance maps ----------------------------------------------------------------------------------------


def slic_segments(size: int, area: float = SUPERPIXEL_AREA) -> int:
    """SLIC's segment count for ``size`` x ``size`` images with superpixels of about ``area`` pixels (at least 1)."""
    if not area > 0:
        raise DataError(f"--superpixel-area must be a positive number of pixels, got {area}")
    return max(1, round(size * size / area))


def boundary_fraction(ids: np.ndarray) -> float:
    """The fraction of pixels on a superpixel boundary (pix2pixHD's instance-edge map) of ids (N, S, S) or (S, S)."""
    ids = np.asarray(ids)
    ids = ids[None] if ids.ndim == 2 else ids
    if not ids.size:
        return 0.0
    edges = sum(float(instance_edges(torch.tensor(ids[i:i + _CHUNK], dtype=torch.int32)).sum())
                for i in range(0, len(ids), _CHUNK))  # in chunks: a cache's ids may be memory-mapped GBs
    return edges / ids.size


def warn_if_mostly_edges(fraction: float, where: str) -> None:
    """Warn when an instance map is mostly superpixel boundaries (then it carries almost no information)."""
    if fraction > BOUNDARY_WARN_FRACTION:
        warnings.warn(f"{where}: {100 * fraction:.0f} % of pixels lie on a superpixel boundary, so the instance "
                      f"map is almost constant; use larger superpixels (`prepare --superpixel-area`) or a higher "
                      f"resolution", DataWarning, stacklevel=3)


def superpixels(images: np.ndarray, n_segments: int | None = None, compactness: float = SLIC_COMPACTNESS,
                progress: bool = False, out: np.ndarray | None = None) -> np.ndarray:
    """SLIC superpixel ids (N, S, S) int32 of uint8 images (N, S, S, 3) (scikit-image, ids from 0).

    n_segments: SLIC's target count; default :func:`slic_segments` of the image size (constant superpixel area).
    """
    from skimage.segmentation import slic  # the heavy import only when superpixels are made

    out = np.empty(images.shape[:3], np.int32) if out is None else out
    n_segments = slic_segments(images.shape[1]) if n_segments is None else n_segments
    for i in tqdm(range(len(images)), desc="SLIC superpixels", unit="img", disable=not progress):
        out[i] = slic(np.asarray(images[i]), n_segments=n_segments, compactness=compactness, start_label=0,
                      channel_axis=-1)
    return out


def instance_ids(data: LesionDataset) -> np.ndarray:
    """The dataset's superpixel ids (N, S, S) int32: the cached ones, else computed once (with a warning)."""
    if data.instance_maps is not None:
        return data.instance_maps

    def make(d: LesionDataset) -> np.ndarray:
        warnings.warn(f"{d.source or 'the dataset'} has no cached superpixels; computing SLIC for {len(d)} images "
                      f"now (`dermsynth prepare SRC --superpixels` caches them)", DataWarning, stacklevel=4)
        ids = superpixels(d.images, progress=len(d) > 500)
        warn_if_mostly_edges(boundary_fraction(ids), d.source or "the dataset")
        return ids

    return _cached(data, "instance", make)


def instance_edges(ids: torch.Tensor) -> torch.Tensor:
    """pix2pixHD's instance-boundary map: (B, H, W) ids -> (B, 1, H, W) float, 1 where a 4-neighbour differs."""
    t = ids[:, None]
    edge = torch.zeros_like(t, dtype=torch.bool)
    dx = t[..., :, 1:] != t[..., :, :-1]
    dy = t[..., 1:, :] != t[..., :-1, :]
    edge[..., :, 1:] |= dx
    edge[..., :, :-1] |= dx
    edge[..., 1:, :] |= dy
    edge[..., :-1, :] |= dy
    return edge.float()


# --- pictures of maps -------------------------------------------------------------------------------------

#: display colours (RGB in [0, 1]) of background, lesion and the five attributes
_COLOURS = torch.tensor([(0.93, 0.85, 0.78), (0.45, 0.30, 0.20), (0.10, 0.10, 0.10), (0.95, 0.95, 0.95),
                         (0.85, 0.15, 0.15), (0.95, 0.85, 0.20), (0.20, 0.35, 0.90)])


def render_maps(semantic: torch.Tensor, edges: torch.Tensor | None = None) -> torch.Tensor:
    """A picture of semantic channels (B, C, H, W) (+ instance boundaries): (B, 3, H, W) in [-1, 1].

    Background beige, lesion brown, attributes blended in their own colours, superpixel boundaries darkened."""
    colours = _COLOURS.to(semantic.device)
    img = colours[0].view(1, 3, 1, 1).expand(semantic.shape[0], 3, *semantic.shape[-2:]).clone()
    for c in range(semantic.shape[1]):
        w = semantic[:, c:c + 1].float() * (1.0 if c == 0 else 0.6)
        img = img * (1 - w) + colours[c + 1].view(1, 3, 1, 1) * w
    if edges is not None:
        img = img * (1 - 0.35 * edges.float())
    return img * 2 - 1


# --- editable maps ----------------------------------------------------------------------------------------


@dataclass
class LesionMap:
    """One editable map: bit-coded semantic map (S, S) uint8, superpixel ids (S, S) int32 or None, its id
    and class (the class of the image it came from, or '')."""

    codes: np.ndarray
    instance: np.ndarray | None = None
    map_id: str = ""
    class_name: str = ""

    @property
    def size(self) -> int:
        return int(self.codes.shape[0])


def maps_of(data: LesionDataset, index: np.ndarray | list[int] | None = None,
            instance: bool = True) -> list[LesionMap]:
    """The maps of rows ``index`` of ``data`` (all by default), with their superpixels when ``instance``."""
    index = np.arange(len(data)) if index is None else np.asarray(index, dtype=np.int64)
    codes = semantic_codes(data)
    ids = instance_ids(data) if instance else None
    return [LesionMap(codes[i].copy(), None if ids is None else np.asarray(ids[i]).copy(), data.ids[i],
                      data.class_names[data.labels[i]] if data.labels[i] >= 0 else "") for i in index]


def _warp(arr: np.ndarray, inverse: np.ndarray, fill: int) -> np.ndarray:
    """Nearest-neighbour resampling of a square map: output pixel p takes input pixel inverse @ p (about the
    centre); pixels mapped outside get ``fill``."""
    s = arr.shape[0]
    c = (s - 1) / 2
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float64)
    src = inverse @ np.stack([xx.ravel() - c, yy.ravel() - c])
    sx, sy = np.rint(src[0] + c).astype(np.int64), np.rint(src[1] + c).astype(np.int64)
    inside = (sx >= 0) & (sx < s) & (sy >= 0) & (sy < s)
    out = np.full(s * s, fill, arr.dtype)
    out[inside] = arr[sy[inside], sx[inside]]
    return out.reshape(s, s)


def _transform(m: LesionMap, inverse: np.ndarray) -> LesionMap:
    instance = None
    if m.instance is not None:  # pixels from outside form one new superpixel
        instance = _warp(m.instance, inverse, int(m.instance.max()) + 1)
    return replace(m, codes=_warp(m.codes, inverse, 0), instance=instance)


def flip_map(m: LesionMap, horizontal: bool = True) -> LesionMap:
    """Mirror left-right (or top-bottom)."""
    axis = 1 if horizontal else 0
    return replace(m, codes=np.flip(m.codes, axis).copy(),
                   instance=None if m.instance is None else np.flip(m.instance, axis).copy())


def rotate_map(m: LesionMap, degrees: float) -> LesionMap:
    """Rotate about the centre by ``degrees`` (counter-clockwise on screen), nearest-neighbour."""
    a = math.radians(degrees)
    # screen y points down, so a counter-clockwise turn on screen is clockwise in (x, y); inverse = R(-a)
    return _transform(m, np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]))


def dihedral_map(m: LesionMap, k: int) -> LesionMap:
    """The ``k``-th (mod 8) symmetry of the square: ``k % 4`` quarter turns, mirrored left-right when
    ``k % 8 >= 4``; exact (no resampling). ``k = 0`` is the map itself."""
    def move(arr: np.ndarray) -> np.ndarray:
        arr = np.rot90(arr, k % 4)
        return np.ascontiguousarray(np.flip(arr, 1) if k % 8 >= 4 else arr)

    return replace(m, codes=move(m.codes), instance=None if m.instance is None else move(m.instance))


def scale_map(m: LesionMap, factor: float) -> LesionMap:
    """Scale about the centre (> 1 enlarges the lesion), nearest-neighbour; the frame keeps its size."""
    if not factor > 0:
        raise DataError(f"scale factor must be > 0, got {factor}")
    return _transform(m, np.eye(2) / factor)


def _attribute_bit(name: str) -> int:
    if name not in ATTRIBUTES:
        raise DataError(f"unknown attribute {name!r}; attributes are {', '.join(ATTRIBUTES)}")
    return 1 << (ATTRIBUTES.index(name) + 1)


def disc(size: int, cx: float, cy: float, radius: float) -> np.ndarray:
    """A boolean disc of a ``size`` map; centre and radius as fractions of the side."""
    yy, xx = np.mgrid[0:size, 0:size]
    return (xx + 0.5 - cx * size) ** 2 + (yy + 0.5 - cy * size) ** 2 <= (radius * size) ** 2


def add_attribute(m: LesionMap, name: str, region: np.ndarray) -> LesionMap:
    """Mark attribute ``name`` in the boolean ``region`` (kept only inside the lesion)."""
    region = np.asarray(region, dtype=bool) & (m.codes & 1).astype(bool)
    return replace(m, codes=np.where(region, m.codes | _attribute_bit(name), m.codes).astype(np.uint8))


def remove_attribute(m: LesionMap, name: str, region: np.ndarray | None = None) -> LesionMap:
    """Clear attribute ``name`` everywhere (or in ``region``)."""
    where = np.ones_like(m.codes, dtype=bool) if region is None else np.asarray(region, dtype=bool)
    return replace(m, codes=np.where(where, m.codes & ~np.uint8(_attribute_bit(name)), m.codes).astype(np.uint8))


def parse_edit(spec: str) -> Callable[[LesionMap], LesionMap]:
    """One map edit from its command-line form: ``flip``, ``vflip``, ``rotate:DEG``, ``scale:F``,
    ``remove:ATTR``, ``add:ATTR:CX,CY,R`` (a disc, centre and radius as fractions of the side)."""
    name, _, arg = spec.strip().partition(":")
    try:
        if name == "flip" and not arg:
            return flip_map
        if name == "vflip" and not arg:
            return lambda m: flip_map(m, horizontal=False)
        if name == "rotate":
            deg = float(arg)
            return lambda m: rotate_map(m, deg)
        if name == "scale":
            f = float(arg)
            if not f > 0:
                raise ValueError
            return lambda m: scale_map(m, f)
        if name == "remove":
            _attribute_bit(arg)
            return lambda m: remove_attribute(m, arg)
        if name == "add":
            attr, _, where = arg.partition(":")
            _attribute_bit(attr)
            cx, cy, r = (float(v) for v in where.split(","))
            return lambda m: add_attribute(m, attr, disc(m.size, cx, cy, r))
    except ValueError:
        pass
    raise DataError(f"--edit {spec!r}: expected flip, vflip, rotate:DEG, scale:F, remove:ATTR or "
                    f"add:ATTR:CX,CY,R (ATTR one of {', '.join(ATTRIBUTES)})")


def maps_dataset(maps: list[LesionMap], class_names: list[str] | None = None) -> LesionDataset:
    """A dataset holding ``maps`` (blank images; lesion/attribute masks decoded from the codes, superpixels
    when every map has them) for ``translate_images``."""
    if not maps:
        raise DataError("no maps to translate")
    size = maps[0].size
    codes = np.stack([m.codes for m in maps])
    classes = list(class_names) if class_names is not None else sorted({m.class_name for m in maps} - {""})
    labels = [classes.index(m.class_name) if m.class_name in classes else -1 for m in maps]
    instance = None
    if all(m.instance is not None for m in maps):
        instance = np.stack([m.instance for m in maps]).astype(np.int32)
    attrs = np.stack([(codes >> (k + 1)) & 1 for k in range(len(ATTRIBUTES))], axis=1).astype(np.uint8)
    return LesionDataset(images=np.zeros((len(maps), size, size, 3), np.uint8), labels=np.asarray(labels),
                         class_names=classes, ids=[m.map_id or f"map_{i:06d}" for i, m in enumerate(maps)],
                         lesion_masks=(codes & 1).astype(np.uint8), attribute_masks=attrs,
                         instance_maps=instance, source="maps")


# --- maps folders -----------------------------------------------------------------------------------------


def write_maps(maps: list[LesionMap], folder: str | Path) -> Path:
    """Write ``<id>_semantic.png`` (+ ``<id>_instance.png``) per map and ``maps.csv`` (map_id, class)."""
    folder = Path(folder)
    ids = [m.map_id for m in maps]
    if len(set(ids)) != len(ids):
        raise DataError(f"maps to write share an id ({next(i for i in ids if ids.count(i) > 1)}); give each its own")
    for m in maps:
        if m.instance is not None and m.instance.max() >= 2 ** 16:
            raise DataError(f"{m.map_id}: {int(m.instance.max()) + 1} superpixels do not fit a 16-bit PNG")
    for m in maps:  # atomically, each write error naming its file (dermsynth.io)
        with atomic_open(folder / f"{m.map_id}_semantic.png") as f:
            Image.fromarray(m.codes.astype(np.uint8), mode="L").save(f, format="PNG")
        if m.instance is not None:
            with atomic_open(folder / f"{m.map_id}_instance.png") as f:
                Image.fromarray(m.instance.astype(np.uint16)).save(f, format="PNG")
    write_csv(folder / "maps.csv", ["map_id", "class"], ([m.map_id, m.class_name] for m in maps))
    return folder


def _read_png(path: Path, what: str) -> np.ndarray:
    _check_file(path, what)
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
                raise DataError(f"{path}: {what} must be a single-channel PNG, got mode {im.mode}")
            return np.asarray(im)
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: unreadable {what} ({' '.join(str(exc).split()) or type(exc).__name__})") from None


def read_maps(folder: str | Path, size: int) -> list[LesionMap]:
    """The maps of a maps folder (see the module docstring), checked: square, ``size`` px, values in range,
    no instance map without its semantic map."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"--maps {folder}: no such folder")
    semantic = {p.name.removesuffix("_semantic.png"): p for p in sorted(folder.glob("*_semantic.png"))}
    instance = {p.name.removesuffix("_instance.png"): p for p in sorted(folder.glob("*_instance.png"))}
    orphans = sorted(set(instance) - set(semantic))
    if orphans:
        raise DataError(f"{instance[orphans[0]]}: an instance map without a semantic map "
                        f"({orphans[0]}_semantic.png); a map needs its semantic labels")
    if not semantic:
        raise DataError(f"--maps {folder}: no <id>_semantic.png maps found")
    classes: dict[str, str] = {}
    table = folder / "maps.csv"
    if table.is_file():
        with open(table, newline="") as f:
            rows = list(csv.DictReader(f))
        if rows and not {"map_id", "class"} <= set(rows[0]):
            raise DataError(f"{table}: expected columns map_id,class")
        classes = {r["map_id"]: r["class"] for r in rows}
    maps = []
    for map_id, path in semantic.items():
        codes = _read_png(path, "semantic map")
        if codes.shape != (size, size):
            raise DataError(f"{path}: map is {codes.shape[1]}x{codes.shape[0]} but the model makes {size}x{size} "
                            f"images; give square maps of the model's size")
        check_codes(codes, str(path))
        ids = None
        if map_id in instance:
            ids = _read_png(instance[map_id], "instance map").astype(np.int32)
            if ids.shape != codes.shape:
                raise DataError(f"{instance[map_id]}: instance map is {ids.shape[1]}x{ids.shape[0]}, its semantic "
                                f"map {size}x{size}")
        maps.append(LesionMap(codes.astype(np.uint8), ids, map_id, classes.get(map_id, "")))
    return maps
