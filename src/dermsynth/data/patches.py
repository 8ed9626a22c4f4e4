"""Healthy-skin and lesion patch sets cut from any dataset with lesion masks (Furger et al. 2020, section 3.1).

Furger et al. 2020 cuts 128x128 patches from annotated photos into two sets: *healthy* skin (no lesion pixel) and
skin with a lesion covering 10-80 % of the patch. :func:`cut_patches` does the same for every image of a
source that has a lesion mask, on a regular grid (``stride``, default the patch size: no overlap):

* **lesion** patch: its lesion fraction lies in ``lesion_fraction`` (inclusive);
* **healthy** patch: no lesion pixel inside the patch grown by ``margin`` pixels on every side (clipped to
  the image), so a healthy patch never touches the lesion's border zone;
* either kind is dropped when more than ``max_dark`` of its pixels are background (every channel below 26,
  i.e. the dermoscope's black field / vignette): Furger et al.'s patches are "skin only".

An image whose lesion mask is all zero is skipped with a warning and a count, as one without a mask is: an empty
mask marks no lesion, not a lesion-free photo (a cache keeps all-zero masks for images that had none), so its
patches cannot be called healthy.

Each patch keeps the source image's label and group (the lesion id for HAM10000, else the image id), so
lesion-grouped splits of the patches never put one lesion, or the skin around it, on both sides; its id is
``<image id>@y<row>x<col>``. The outputs are two ordinary dermsynth caches (``OUT/healthy`` and
``OUT/lesion``, :meth:`~dermsynth.data.dataset.LesionDataset.save`) with their lesion masks, which
:func:`~dermsynth.data.prepare.load_dataset` opens like any prepared source.

Images are read at their native resolution (masks fitted to the image grid nearest-neighbour, e.g.
HAM10000's 600x450 masks to its 200x150 images) unless ``read_size`` is given: then the source is prepared
(centre-crop, resize) at ``read_size`` px first. Phantom data (``phantom:N``) is rendered at ``read_size``
(default 128).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dermsynth.data.dataset import LesionDataset
from dermsynth.data.images import fit_mask_to_image, load_image, load_mask
from dermsynth.data.prepare import load_dataset, prepare
from dermsynth.data.readers import DataWarning, SourceIndex, read_source
from dermsynth.errors import DataError, require_at_least
from dermsynth.io import check_writable_dir
from dermsynth.progress import tqdm

#: a pixel is background (not skin) when every channel is below this (about 10 % grey)
DARK_LEVEL = 26
#: read size for phantom sources when none is given
PHANTOM_READ_SIZE = 128
KINDS = ("healthy", "lesion")


@dataclass(frozen=True)
class PatchRule:
    """How patches are cut and classified (see the module docstring)."""

    size: int = 128
    lesion_fraction: tuple[float, float] = (0.1, 0.8)
    margin: int = 0
    stride: int | None = None  # default: size
    max_dark: float = 0.05

    def __post_init__(self) -> None:
        lo, hi = self.lesion_fraction
        if self.size < 4:
            raise DataError(f"--size must be >= 4 pixels, got {self.size}")
        if not 0.0 < lo <= hi <= 1.0:
            raise DataError(f"--lesion-fraction must be LO:HI with 0 < LO <= HI <= 1, got {lo}:{hi}")
        if self.margin < 0:
            raise DataError(f"--margin must be >= 0 pixels, got {self.margin}")
        if self.stride is not None and self.stride < 1:
            raise DataError(f"--stride must be >= 1 pixel, got {self.stride}")
        if not 0.0 <= self.max_dark <= 1.0:
            raise DataError(f"--max-dark must be a fraction in [0, 1], got {self.max_dark}")

    @property
    def step(self) -> int:
        return self.stride or self.size


def parse_fraction_range(text: str) -> tuple[float, float]:
    """``"0.1:0.8"`` -> (0.1, 0.8) (percentages such as ``10:80`` are accepted too)."""
    try:
        lo, hi = (float(v) for v in str(text).split(":"))
    except ValueError:
        raise DataError(f"--lesion-fraction must be LO:HI, e.g. 0.1:0.8, got {text!r}") from None
    if hi > 1.0:  # given in percent
        lo, hi = lo / 100.0, hi / 100.0
    return lo, hi


def _window_sums(table: np.ndarray, top: np.ndarray, left: np.ndarray, bottom: np.ndarray,
                 right: np.ndarray) -> np.ndarray:
    """Sums over [top, bottom) x [left, right) from a summed-area table with a zero first row/column."""
    return table[bottom, right] - table[top, right] - table[bottom, left] + table[top, left]


def _summed(a: np.ndarray) -> np.ndarray:
    out = np.zeros((a.shape[0] + 1, a.shape[1] + 1), np.int64)
    out[1:, 1:] = a.astype(np.int64).cumsum(0).cumsum(1)
    return out


def classify_patches(image: np.ndarray, mask: np.ndarray, rule: PatchRule) -> dict[str, list[tuple[int, int]]]:
    """Top-left corners (row, col) of the healthy and lesion patches of one image and its {0, 1} mask."""
    h, w = mask.shape
    s, m = rule.size, rule.margin
    if h < s or w < s:
        return {"healthy": [], "lesion": []}
    ys, xs = np.meshgrid(np.arange(0, h - s + 1, rule.step), np.arange(0, w - s + 1, rule.step), indexing="ij")
    ys, xs = ys.ravel(), xs.ravel()
    lesion_table = _summed(mask > 0)
    dark_table = _summed((image < DARK_LEVEL).all(axis=2))
    area = float(s * s)
    fraction = _window_sums(lesion_table, ys, xs, ys + s, xs + s) / area
    skin = _window_sums(dark_table, ys, xs, ys + s, xs + s) / area <= rule.max_dark
    grown = _window_sums(lesion_table, np.maximum(ys - m, 0), np.maximum(xs - m, 0),
                         np.minimum(ys + s + m, h), np.minimum(xs + s + m, w))
    lo, hi = rule.lesion_fraction
    kinds = {"healthy": skin & (grown == 0), "lesion": skin & (fraction >= lo) & (fraction <= hi)}
    return {k: list(zip(ys[sel].tolist(), xs[sel].tolist())) for k, sel in kinds.items()}


@dataclass
class _Source:
    """One masked image of a source, at the resolution it is cut at."""

    image_id: str
    group: str
    label: int
    image: np.ndarray
    mask: np.ndarray


def _from_dataset(data: LesionDataset) -> Iterator[_Source]:
    if data.lesion_masks is None:
        raise DataError(f"{data.source or 'the dataset'} has no lesion masks; patches need them "
                        f"(<id>_segmentation.png next to the images)")
    for i in range(len(data)):
        yield _Source(data.ids[i], data.groups[i], int(data.labels[i]), np.asarray(data.images[i]),
                      np.asarray(data.lesion_masks[i]))


def open_source(source: str | Path | SourceIndex, read_size: int | None = None,
                skip_corrupt: bool = False) -> tuple[Iterator[_Source], int, list[str], str]:
    """(masked images, their count, class names, description of the read resolution) of a source: a spec
    :func:`~dermsynth.data.prepare.load_dataset` takes, or an already-read :class:`SourceIndex`."""
    if isinstance(source, SourceIndex):
        if read_size is not None:
            data = prepare(source, read_size, skip_corrupt=skip_corrupt, progress=False)
            return _from_dataset(data), len(data), list(data.class_names), f"{data.size}x{data.size} (square)"
        index, path = source, source.root
    else:
        spec = str(source)
        path = Path(spec).expanduser()
        is_phantom = spec.lower().split(":")[0] == "phantom" and not path.exists()
        if is_phantom or read_size is not None or LesionDataset.is_cache(path) or path.suffix.lower() == ".npz":
            size = read_size or (PHANTOM_READ_SIZE if is_phantom else None)
            data = load_dataset(spec, size=size, skip_corrupt=skip_corrupt, progress=False)
            return _from_dataset(data), len(data), list(data.class_names), f"{data.size}x{data.size} (square)"
        index = read_source(path)
    masked = [r for r in index.records if r.lesion_mask is not None]
    if not masked:
        raise DataError(f"{path}: none of its {len(index.records)} images has a lesion mask; patches need them "
                        f"(<id>_segmentation.png next to the images)")
    if len(masked) < len(index.records):
        warnings.warn(f"{path}: {len(index.records) - len(masked)} image(s) without a lesion mask are skipped",
                      DataWarning, stacklevel=2)

    def records() -> Iterator[_Source]:
        for r in masked:
            try:
                image = load_image(r.image) if not isinstance(r.image, np.ndarray) else r.image
                mask = load_mask(r.lesion_mask) if not isinstance(r.lesion_mask, np.ndarray) else r.lesion_mask
                mask = fit_mask_to_image(mask, image.shape, r.lesion_mask)
            except DataError as exc:
                if not skip_corrupt:
                    raise
                warnings.warn(f"skipped: {exc}", DataWarning, stacklevel=2)
                continue
            yield _Source(r.image_id, r.group, r.label, image, mask)

    return records(), len(masked), list(index.class_names), "native (each image's own resolution)"


@dataclass
class PatchSummary:
    """What :func:`cut_patches` wrote."""

    out: Path
    counts: dict[str, int]
    images: int
    images_with_lesion_patches: int
    read: str
    rule: PatchRule
    skipped_empty_masks: int = 0  # images whose lesion mask has no lesion pixel (not cut)

    def describe(self) -> str:
        return (f"{self.counts['healthy']} healthy and {self.counts['lesion']} lesion patches of "
                f"{self.rule.size}x{self.rule.size} from {self.images} images read at {self.read} "
                f"-> {self.out}/healthy, {self.out}/lesion")


def cut_patches(source: str | Path | SourceIndex, out: str | Path, rule: PatchRule = PatchRule(), *,
                read_size: int | None = None, max_per_image: int | None = None, seed: int = 0,
                skip_corrupt: bool = False, progress: bool = True) -> PatchSummary:
    """Cut the healthy and lesion patch sets of ``source`` into ``out/healthy`` and ``out/lesion``.

    ``max_per_image`` keeps at most that many patches of each kind per image (a random choice seeded by
    ``(seed, image number)``; default all). Nothing is written unless both sets are non-empty.
    """
    if max_per_image is not None and max_per_image < 1:
        raise DataError(f"--max-per-image must be >= 1, got {max_per_image}")
    require_at_least("--read-size", read_size)  # 0 is not "the default"
    out = Path(out).expanduser()
    name = str(source.root) if isinstance(source, SourceIndex) else str(source)
    check_writable_dir(out, "--out")
    items, total, class_names, read = open_source(source, read_size, skip_corrupt)
    sets: dict[str, dict[str, list]] = {k: {"images": [], "masks": [], "ids": [], "groups": [], "labels": []}
                                        for k in KINDS}
    n_images = with_lesion = 0
    empty_masks: list[str] = []
    s = rule.size
    for i, item in enumerate(tqdm(items, total=total, desc="cutting patches", unit="img", disable=not progress)):
        if not item.mask.any():
            empty_masks.append(item.image_id)
            continue
        n_images += 1
        corners = classify_patches(item.image, item.mask, rule)
        with_lesion += bool(corners["lesion"])
        rng = np.random.default_rng([seed, i])
        for kind, where in corners.items():
            if max_per_image is not None and len(where) > max_per_image:
                where = [where[j] for j in np.sort(rng.choice(len(where), max_per_image, replace=False))]
            bucket = sets[kind]
            for y, x in where:
                bucket["images"].append(item.image[y:y + s, x:x + s].copy())  # not a view: frees the photo
                bucket["masks"].append(item.mask[y:y + s, x:x + s].copy())
                bucket["ids"].append(f"{item.image_id}@y{y}x{x}")
                bucket["groups"].append(item.group)
                bucket["labels"].append(item.label)
    if empty_masks:
        warnings.warn(f"{name}: {len(empty_masks)} image(s) with an all-zero lesion mask are skipped "
                      f"(first: {empty_masks[0]})", DataWarning, stacklevel=2)
    counts = {k: len(v["ids"]) for k, v in sets.items()}
    empty = [k for k, c in counts.items() if c == 0]
    if empty:
        skipped = f" (and {len(empty_masks)} skipped with an all-zero mask)" if empty_masks else ""
        raise DataError(f"{name}: no {' and no '.join(empty)} patches of {s}x{s} in {n_images} images{skipped} "
                        f"(read at {read}); try a smaller --size or --margin, or a wider --lesion-fraction; "
                        f"nothing was written")
    meta = {"patches": {"source": name, "read": read, **asdict(rule), "stride": rule.step,
                        "max_per_image": max_per_image, "seed": seed, "counts": counts,
                        "skipped_empty_masks": len(empty_masks)}}
    for kind, bucket in sets.items():
        LesionDataset(images=np.stack(bucket["images"]).astype(np.uint8), labels=np.asarray(bucket["labels"]),
                      class_names=class_names, ids=bucket["ids"], groups=bucket["groups"],
                      lesion_masks=np.stack(bucket["masks"]).astype(np.uint8),
                      source=f"{name} ({kind} patches)").save(out / kind, extra_meta={**meta, "kind": kind})
    return PatchSummary(out, counts, n_images, with_lesion, read, rule, len(empty_masks))


def patch_domains(data: str | None, data_b: str | None, first: str) -> tuple[str | None, str | None]:
    """Expand a patch folder given as ``--data`` alone into its two domains.

    ``first`` (``"healthy"`` or ``"lesion"``) is the domain that ``--data`` stands for; when ``data`` holds
    ``healthy/`` and ``lesion/`` caches and ``data_b`` is not given, returns ``(data/first, data/other)``.
    Anything else is returned unchanged.
    """
    if data is None or data_b is not None:
        return data, data_b
    root = Path(data).expanduser()
    if all(LesionDataset.is_cache(root / k) for k in KINDS) and not LesionDataset.is_cache(root):
        other = "lesion" if first == "healthy" else "healthy"
        return str(root / first), str(root / other)
    return data, data_b
