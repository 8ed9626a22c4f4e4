"""Indexes of dermoscopy datasets on disk: which images, labels, lesion groups and masks there are.

Reading an index is cheap (one directory walk and a CSV parse; nothing is decoded). :func:`read_source`
auto-detects the layout; :mod:`dermsynth.data.prepare` decodes the index into a cached :class:`LesionDataset`.

Layouts (``kind``), each one registration in :data:`LAYOUTS` (:func:`register_layout`: how ``auto`` detects it
and how it is read), tried by ``auto`` in this order:

``ham10000``
    ``HAM10000_metadata.csv`` (``lesion_id, image_id, dx``); classes = sorted ``dx``; group = ``lesion_id``.
``isic``
    ISIC challenge one-hot ground truth, e.g. ``ISIC2018_Task3_Training_GroundTruth.csv``
    (``image, MEL, NV, BCC, AKIEC, BKL, DF, VASC``; ISIC 2019's ``AK, SCC, UNK`` too); classes in column
    order, lower-cased; a ``*LesionGroupings.csv`` (``image, lesion_id``) next to it supplies groups.
``labels_csv``
    a generic ``labels.csv`` with ``image_id`` and ``dx`` (optional ``lesion_id``/``patient_id`` for groups);
    classes = sorted ``dx`` (numerically when all labels are integers). A table whose ``dx`` values are PH2's
    is read as ``ph2``.
``ph2``
    ``labels.csv`` (``image_id, dx`` in common_nevus / atypical_nevus / melanoma) + ``masks/<id>_lesion.png``,
    or the original release: ``PH2 Dataset images/IMDxxx/IMDxxx_Dermoscopic_Image/IMDxxx.bmp`` with
    ``IMDxxx_lesion/IMDxxx_lesion.bmp`` and the ``PH2_dataset.txt`` table ("Clinical Diagnosis" 0/1/2), or
    ``PH2_dataset.xlsx`` (needs openpyxl). Classes always in PH2 order: common_nevus, atypical_nevus, melanoma.
``folder``
    one subfolder per class (``root/<class>/**/*.jpg``); classes = sorted subfolder names.
``images``
    unlabelled images (labels -1, no classes), e.g. ``isic2018_task2_sample``: chosen by ``auto`` when the
    images sit directly in the root or all in a single subfolder (one "class" says nothing about labels).
``npz``
    MedMNIST-style ``train_images/train_labels/val_*/test_*`` (or plain ``images``/``labels``); ``split``
    picks one split or ``all``; ids like ``train_000012``. 7 RGB classes (or "derma" in the file name) are
    DermaMNIST: HAM10000 names akiec, bcc, bkl, df, mel, nv, vasc; otherwise ``class_0`` ...

For folder layouts images are found by id as ``<id>.{jpg,jpeg,png,bmp,tif,tiff}`` anywhere under the root,
lesion masks as ``<id>_segmentation.*`` or ``<id>_lesion.*``, attribute masks as ``<id>_attribute_<name>.*``
for the names in :data:`~dermsynth.data.dataset.ATTRIBUTES`.

Label tables: classes are case-insensitive (``MEL`` and ``mel`` are one class, named ``mel``); a table that uses
the HAM10000/ISIC codes (:data:`KNOWN_CODES`) must use only those, as must a PH2 table (``kind="ph2"``); an empty class, a one-hot row
without exactly one 1 (or with a value other than 0/1) and a row with more fields than the header are each a
:class:`DataError` naming the row (and the count of such rows).

Policies: an id in the label table without an image file raises :class:`DataError` naming the first such id
and the count (``skip_missing=True`` warns and drops them). A mask whose id has no image file raises naming the
mask (``skip_missing=True`` warns and ignores it). Ids found in several files (e.g. Kaggle's HAM10000 copy
ships each part folder twice) warn and use the first path in sorted order.
"""

from __future__ import annotations

import csv
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from dermsynth.data.dataset import ATTRIBUTES
from dermsynth.data.images import _check_file, _one_line
from dermsynth.errors import DataError

SPLITS: tuple[str, ...] = ("train", "val", "test")

IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})
MASK_EXTS = IMAGE_EXTS | {".gif"}

HAM_CLASSES: tuple[str, ...] = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
DERMAMNIST_CLASSES: tuple[str, ...] = HAM_CLASSES  # DermaMNIST label order = sorted HAM10000 dx
PH2_CLASSES: tuple[str, ...] = ("common_nevus", "atypical_nevus", "melanoma")
ISIC_TASK3_COLUMNS: tuple[str, ...] = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
_ISIC_CLASS_COLUMNS = frozenset(ISIC_TASK3_COLUMNS + ("AK", "SCC", "UNK"))
#: the HAM10000 dx codes and ISIC 2019's ak, scc, unk: a table using any of them must use only them
KNOWN_CODES = frozenset(c.lower() for c in _ISIC_CLASS_COLUMNS)
_PH2_MARKERS = frozenset({"common_nevus", "atypical_nevus"})  # names only PH2 uses (its melanoma is everyone's)

_LESION_MASK_RE = re.compile(r"^(?P<id>.+)_(?:segmentation|lesion)$", re.IGNORECASE)
_ATTRIBUTE_MASK_RE = re.compile(r"^(?P<id>.+)_attribute_(?P<name>[A-Za-z_]+)$")
#: ISIC 2018 Task 2's superpixel maps (not photographs): ids RGB-encoded, read as the instance maps
_SUPERPIXELS_RE = re.compile(r"^(?P<id>.+)_superpixels$", re.IGNORECASE)
_PH2_ID_RE = re.compile(r"^IMD\d+$", re.IGNORECASE)


class DataWarning(UserWarning):
    """Something in the data was skipped or guessed; the message says what."""


@dataclass(frozen=True)
class Record:
    """One image of a source: where it is (or its decoded array), its label, group and masks."""

    image_id: str
    image: Path | np.ndarray  # a path, or an already-decoded uint8 array (npz sources)
    label: int  # -1 if unlabelled
    group: str  # lesion_id / patient id; image_id when unknown
    lesion_mask: Path | np.ndarray | None = None
    attribute_masks: tuple[tuple[str, Path], ...] = ()  # (attribute name, path), names from ATTRIBUTES
    superpixels: Path | None = None  # ISIC 2018 Task 2's <id>_superpixels.png (RGB-encoded ids), if the source has it


@dataclass
class SourceIndex:
    """The records of one data source, plus its class names (label i is ``class_names[i]``)."""

    name: str
    root: Path
    kind: str
    records: list[Record]
    class_names: list[str]
    notes: dict = field(default_factory=dict)  # table path, dropped ids, ... (informational)

    def __len__(self) -> int:
        return len(self.records)

    def class_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(self.class_names, 0)
        for r in self.records:
            if r.label >= 0:
                counts[self.class_names[r.label]] += 1
        return counts

    @property
    def groups(self) -> list[str]:
        return [r.group for r in self.records]

    def select(self, index) -> "SourceIndex":
        """A new index holding the records at ``index`` (a slice, or a sequence of positions)."""
        if isinstance(index, slice):
            records = self.records[index]
        else:
            records = [self.records[int(i)] for i in index]
        return replace(self, records=records, notes=dict(self.notes))


# ---------------------------------------------------------------------------------------------------------
# Directory scan
# ---------------------------------------------------------------------------------------------------------


@dataclass
class _Scan:
    root: Path
    images: dict[str, Path]  # id (file stem) -> first path in sorted order
    all_images: list[tuple[str, Path]]  # every image file, sorted
    lesion_masks: dict[str, Path]
    attribute_masks: dict[str, dict[str, Path]]  # id -> {attribute name -> path}
    duplicates: dict[str, list[Path]]
    superpixels: dict[str, Path] = field(default_factory=dict)  # id -> <id>_superpixels.png


def _scan(root: Path) -> _Scan:
    """Walk ``root`` once, sorting files into images, lesion masks and attribute masks by name."""
    images: dict[str, Path] = {}
    all_images: list[tuple[str, Path]] = []
    lesion: dict[str, Path] = {}
    attrs: dict[str, dict[str, Path]] = {}
    duplicates: dict[str, list[Path]] = {}
    superpixels: dict[str, Path] = {}
    attribute_set = set(ATTRIBUTES)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX")
        for fname in sorted(filenames):
            if fname.startswith("."):
                continue
            stem, ext = os.path.splitext(fname)
            ext = ext.lower()
            if ext not in MASK_EXTS:
                continue
            path = Path(dirpath) / fname
            m = _ATTRIBUTE_MASK_RE.match(stem)
            if m:
                name = m.group("name").lower()
                if name in attribute_set:
                    attrs.setdefault(m.group("id"), {}).setdefault(name, path)
                continue
            m = _LESION_MASK_RE.match(stem)
            if m:
                lesion.setdefault(m.group("id"), path)
                continue
            m = _SUPERPIXELS_RE.match(stem)
            if m:
                if ext == ".png":
                    superpixels.setdefault(m.group("id"), path)
                continue
            if ext not in IMAGE_EXTS:
                continue
            all_images.append((stem, path))
            if stem in images:
                duplicates.setdefault(stem, [images[stem]]).append(path)
            else:
                images[stem] = path
    return _Scan(root, images, all_images, lesion, attrs, duplicates, superpixels)


def _warn_duplicates(scan: _Scan) -> None:
    if scan.duplicates:
        stem, paths = next(iter(scan.duplicates.items()))
        warnings.warn(
            f"{scan.root}: {len(scan.duplicates)} image id(s) occur in more than one file "
            f"(e.g. {stem}: {', '.join(str(p) for p in paths)}); using the first of each",
            DataWarning,
            stacklevel=3,
        )


def _check_orphan_masks(scan: _Scan, skip_missing: bool) -> None:
    """Masks whose id matches no image file are misnamed or lack their image: error (or warn)."""
    orphans = [(i, p) for i, p in scan.lesion_masks.items() if i not in scan.images]
    for i, names in scan.attribute_masks.items():
        if i not in scan.images:
            orphans.extend((i, p) for p in names.values())
    if not orphans:
        return
    image_id, path = orphans[0]
    msg = (
        f"{path}: mask for image id {image_id!r}, but no image {image_id}.jpg/.png is under {scan.root}"
        + (f" ({len(orphans)} such masks)" if len(orphans) > 1 else "")
    )
    if skip_missing:
        warnings.warn(msg + "; ignoring them", DataWarning, stacklevel=3)
    else:
        raise DataError(msg + "; fix the name or pass --skip-missing (skip_missing=True)")


def _record(scan: _Scan, image_id: str, image: Path, label: int, group: str) -> Record:
    attrs = scan.attribute_masks.get(image_id, {})
    return Record(
        image_id=image_id,
        image=image,
        label=int(label),
        group=group or image_id,
        lesion_mask=scan.lesion_masks.get(image_id),
        attribute_masks=tuple((name, attrs[name]) for name in ATTRIBUTES if name in attrs),
        superpixels=scan.superpixels.get(image_id),
    )


def _records_from_table(
    rows: list[tuple[str, int, str]], scan: _Scan, table: Path, skip_missing: bool, notes: dict
) -> list[Record]:
    """Match table rows (id, label, group) to image files; policy for ids without a file."""
    seen: set[str] = set()
    records: list[Record] = []
    missing: list[str] = []
    for image_id, label, group in rows:
        if image_id in seen:
            raise DataError(f"{table}: image id {image_id!r} is listed more than once")
        seen.add(image_id)
        path = scan.images.get(image_id)
        if path is None:
            missing.append(image_id)
            continue
        records.append(_record(scan, image_id, path, label, group))
    if missing:
        msg = (
            f"{table}: {len(missing)} of {len(rows)} image id(s) have no image file under {scan.root} "
            f"(first: {missing[0]}; looked for <id>.jpg/.jpeg/.png/.bmp/.tif anywhere below)"
        )
        if not skip_missing:
            raise DataError(msg + "; pass --skip-missing (skip_missing=True) to drop them")
        warnings.warn(msg + "; dropping them", DataWarning, stacklevel=3)
        notes["dropped_missing"] = missing
    _warn_duplicates(scan)
    _check_orphan_masks(scan, skip_missing)
    return records


# ---------------------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------------------


def _extra_fields(path: Path) -> str | None:
    """Where a CSV row has more fields than its header ("line N has K fields, the header has H"), else None."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, [])
            for row in reader:
                if len(row) > len(header):
                    return f"line {reader.line_num} has {len(row)} fields, the header has {len(header)}"
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    return None


def _read_csv(path: Path, nrows: int | None = None) -> pd.DataFrame:
    _check_file(path, "label table")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True, nrows=nrows)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, ValueError) as exc:
        extra = _extra_fields(path) if isinstance(exc, pd.errors.ParserError) else None
        raise DataError(f"{path}: {extra}" if extra else f"{path}: unreadable CSV ({_one_line(exc)})") from None
    if not isinstance(df.index, pd.RangeIndex):
        # pandas silently turns the first column into the index when the first row has one field too many
        raise DataError(f"{path}: {_extra_fields(path) or 'rows have more fields than the header'}")
    df.columns = [str(c).strip() for c in df.columns]
    if nrows is None:
        for c in df.columns:
            df[c] = df[c].str.strip()
    return df


def _columns(df: pd.DataFrame, path: Path, wanted: list[str | tuple[str, ...]]) -> list[str]:
    """Resolve required columns case-insensitively (a tuple lists accepted alternatives, first named in errors)."""
    lower = {c.lower(): c for c in df.columns}
    found, missing = [], []
    for want in wanted:
        options = (want,) if isinstance(want, str) else want
        hit = next((lower[o.lower()] for o in options if o.lower() in lower), None)
        if hit is None:
            missing.append(options[0])
        found.append(hit)
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(missing)} (found: {', '.join(df.columns) or 'none'})"
        )
    return found


def _optional_column(df: pd.DataFrame, *options: str) -> str | None:
    lower = {c.lower(): c for c in df.columns}
    return next((lower[o] for o in options if o in lower), None)


def _sorted_classes(values) -> list[str]:
    names = sorted({v for v in values if v != ""})
    if names and all(re.fullmatch(r"-?\d+", n) for n in names):
        names.sort(key=int)
    return names


def _row(pos: int, image_id: str) -> str:
    """A table row in messages: its position among the data rows and its image id."""
    return f"data row {pos + 1} (image {image_id!r})"


def _first_of(table: Path, bad: list[int], ids: list[str], what: str) -> str:
    """``<table>: data row N (image X) <what>`` with the count when several rows share the problem."""
    more = f" ({len(bad)} such rows)" if len(bad) > 1 else ""
    return f"{table}: {_row(bad[0], ids[bad[0]])} {what}{more}"


def _dx_labels(
    df: pd.DataFrame, id_col: str, dx_col: str, table: Path, vocabulary: str = "auto"
) -> tuple[list[str], list[tuple[str, int]], bool]:
    """(class names, (image id, label) per row with an id, whether the classes are PH2's) of a ``dx`` column.

    Classes are case-insensitive (``MEL`` and ``mel`` are one class, named in lower case when spelled several
    ways or a known code). ``vocabulary``: ``"codes"`` (HAM10000/ISIC dx codes), ``"ph2"``, or ``"auto"``: PH2's
    when every class is PH2's and a PH2-only name occurs, the codes when a code (other than unk) occurs, else
    free. A class outside the vocabulary, or an empty one, is a :class:`DataError` naming the first such row
    and the count.
    """
    ids, values = list(df[id_col]), list(df[dx_col])
    keep = [k for k, i in enumerate(ids) if i != ""]
    empty = [k for k in keep if values[k] == ""]
    if empty:
        raise DataError(_first_of(table, empty, ids, f"has an empty {dx_col}; every image needs a class"))
    keys = {values[k].lower() for k in keep}
    if vocabulary == "auto":
        vocabulary = ("ph2" if keys & _PH2_MARKERS and keys <= set(PH2_CLASSES)
                      else "codes" if keys & (KNOWN_CODES - {"unk"}) else "free")
    allowed = {"ph2": frozenset(PH2_CLASSES), "codes": KNOWN_CODES}.get(vocabulary)
    if allowed is not None:
        unknown = [k for k in keep if values[k].lower() not in allowed]
        if unknown:
            kind = "PH2 diagnoses" if vocabulary == "ph2" else "HAM10000/ISIC codes"
            raise DataError(_first_of(table, unknown, ids, f"has unknown class {values[unknown[0]]!r}")
                            + f"; the table uses {kind}: {', '.join(sorted(allowed))}")
    spellings: dict[str, set[str]] = {}
    for k in keep:
        spellings.setdefault(values[k].lower(), set()).add(values[k])
    names = {key: key if len(sp) > 1 or key in KNOWN_CODES else next(iter(sp)) for key, sp in spellings.items()}
    class_names = list(PH2_CLASSES) if vocabulary == "ph2" else _sorted_classes(names.values())
    index = {key: class_names.index(names[key]) for key in names}
    return class_names, [(ids[k], index[values[k].lower()]) for k in keep], vocabulary == "ph2"


def _find_file(root: Path, name: str) -> Path | None:
    """A file directly in ``root`` whose name matches case-insensitively."""
    exact = root / name
    if exact.is_file():
        return exact
    for p in sorted(root.iterdir()):
        if p.is_file() and p.name.lower() == name.lower():
            return p
    return None


def _is_onehot_table(path: Path) -> bool:
    try:
        cols = pd.read_csv(path, nrows=0).columns
    except Exception:  # noqa: BLE001 - any unreadable CSV is simply not an ISIC table
        return False
    upper = {str(c).strip().upper() for c in cols}
    return "IMAGE" in upper and len(upper & _ISIC_CLASS_COLUMNS) >= 2


def _onehot_tables(root: Path) -> list[Path]:
    return [p for p in sorted(root.glob("*.csv")) + sorted(root.glob("*.CSV")) if _is_onehot_table(p)]


# ---------------------------------------------------------------------------------------------------------
# Readers
# ---------------------------------------------------------------------------------------------------------


def read_ham10000(root: Path, table: Path | None = None, *, skip_missing: bool = False) -> SourceIndex:
    """HAM10000 / ISIC 2018 Task 3 with ``HAM10000_metadata.csv``: groups are lesion ids."""
    table = table or _find_file(root, "HAM10000_metadata.csv")
    if table is None:
        raise DataError(f"{root}: no HAM10000_metadata.csv found")
    df = _read_csv(table)
    id_col, dx_col, lesion_col = _columns(df, table, ["image_id", "dx", "lesion_id"])
    class_names, labels, _ = _dx_labels(df, id_col, dx_col, table, "codes")
    groups = dict(zip(df[id_col], df[lesion_col]))
    rows = [(i, label, groups[i] or i) for i, label in labels]
    notes = {"table": str(table)}
    records = _records_from_table(rows, _scan(root), table, skip_missing, notes)
    return SourceIndex(root.name, root, "ham10000", records, class_names, notes)


def read_isic_onehot(
    root: Path, tables: list[Path] | None = None, *, skip_missing: bool = False
) -> SourceIndex:
    """ISIC challenge one-hot ground-truth CSV(s) (``image`` + MEL, NV, BCC, AKIEC, BKL, DF, VASC ...)."""
    tables = tables or _onehot_tables(root)
    if not tables:
        raise DataError(f"{root}: no ISIC ground-truth CSV (image, MEL, NV, BCC, AKIEC, BKL, DF, VASC) found")
    class_cols: list[str] | None = None
    rows: list[tuple[str, int, str]] = []
    for table in tables:
        df = _read_csv(table)
        (id_col,) = _columns(df, table, ["image"])
        cols = [c for c in df.columns if c.upper() in _ISIC_CLASS_COLUMNS]
        if len(cols) < 2:
            _columns(df, table, list(ISIC_TASK3_COLUMNS))  # raises, naming the missing class columns
        try:
            values = df[cols].apply(pd.to_numeric, errors="raise").to_numpy(dtype=np.float64)
        except (ValueError, TypeError) as exc:
            raise DataError(f"{table}: non-numeric one-hot values ({_one_line(exc)})") from None
        keep = [j for j, c in enumerate(cols) if not (c.upper() == "UNK" and not values[:, j].any())]
        cols, values = [cols[j] for j in keep], values[:, keep]
        names = [c.upper() for c in cols]
        if class_cols is None:
            class_cols = names
        elif names != class_cols:
            raise DataError(f"{table}: class columns {names} differ from {tables[0]}'s {class_cols}")
        ids = list(df[id_col])
        named = np.array([i != "" for i in ids], dtype=bool)
        not_binary = np.flatnonzero(named & ~np.isin(values, (0.0, 1.0)).all(axis=1)).tolist()
        if not_binary:
            raise DataError(_first_of(table, not_binary, ids, "has a class value other than 0 or 1"))
        ones = values.sum(axis=1)
        not_onehot = np.flatnonzero(named & (ones != 1)).tolist()
        if not_onehot:
            raise DataError(_first_of(table, not_onehot, ids, f"has {int(ones[not_onehot[0]])} class columns set "
                                      f"to 1 ({', '.join(names)}); one-hot needs exactly one"))
        rows.extend((i, int(lab), i) for i, lab, keep in zip(ids, values.argmax(axis=1), named) if keep)
    # ISIC2018_Task3_Training_LesionGroupings.csv (image, lesion_id) gives the lesion groups.
    groups: dict[str, str] = {}
    for p in sorted(root.glob("*.csv")):
        if p in tables:
            continue
        try:
            head = pd.read_csv(p, nrows=0).columns.str.strip().str.lower()
        except Exception:  # noqa: BLE001
            continue
        if "image" in head and "lesion_id" in head:
            g = _read_csv(p)
            id_col, lesion_col = _columns(g, p, ["image", "lesion_id"])
            groups.update({i: l for i, l in zip(g[id_col], g[lesion_col]) if l})
    rows = [(i, lab, groups.get(i, i)) for i, lab, _ in rows]
    notes = {"table": ", ".join(str(t) for t in tables)}
    records = _records_from_table(rows, _scan(root), tables[0], skip_missing, notes)
    class_names = [c.lower() for c in class_cols or []]
    return SourceIndex(root.name, root, "isic", records, class_names, notes)


def read_labels_csv(
    root: Path, table: Path | None = None, *, skip_missing: bool = False, ph2: bool = False
) -> SourceIndex:
    """A generic ``labels.csv`` (``image_id, dx``); PH2 class order when the labels are PH2's (``ph2=True``:
    they must be)."""
    table = table or _find_file(root, "labels.csv")
    if table is None:
        raise DataError(f"{root}: no labels.csv found")
    df = _read_csv(table)
    id_col, dx_col = _columns(df, table, [("image_id", "image", "id"), ("dx", "label", "diagnosis")])
    group_col = _optional_column(df, "lesion_id", "patient_id", "group")
    class_names, labels, ph2 = _dx_labels(df, id_col, dx_col, table, "ph2" if ph2 else "auto")
    groups = dict(zip(df[id_col], df[group_col] if group_col else df[id_col]))
    rows = [(i, label, groups[i] or i) for i, label in labels]
    notes = {"table": str(table)}
    records = _records_from_table(rows, _scan(root), table, skip_missing, notes)
    return SourceIndex(root.name, root, "ph2" if ph2 else "labels_csv", records, class_names, notes)


def _parse_ph2_txt(path: Path) -> list[tuple[str, int]]:
    """``PH2_dataset.txt``: a ``||``-separated table; "Clinical Diagnosis" 0/1/2 = common/atypical nevus/melanoma."""
    _check_file(path, "label table")
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({_one_line(exc)})") from None

    def cells(line: str) -> list[str]:
        return [c.strip() for c in line.strip().strip("|").split("||")]

    header = next((cells(l) for l in lines if "name" in l.lower() and "clinical diagnosis" in l.lower()), None)
    if header is None:
        raise DataError(f"{path}: no header row with 'Name' and 'Clinical Diagnosis' columns")
    lowered = [h.lower() for h in header]
    name_i = next(i for i, h in enumerate(lowered) if "name" in h)
    clin_i = lowered.index("clinical diagnosis") if "clinical diagnosis" in lowered else None
    if clin_i is None:
        raise DataError(f"{path}: missing column(s) Clinical Diagnosis (found: {', '.join(header)})")
    rows = []
    for line in lines:
        c = cells(line)
        if len(c) <= max(name_i, clin_i) or not _PH2_ID_RE.match(c[name_i]):
            continue  # header, separators, the legend below the table
        try:
            label = int(c[clin_i])
        except ValueError:
            raise DataError(f"{path}: {c[name_i]}: Clinical Diagnosis {c[clin_i]!r} is not 0, 1 or 2") from None
        if label not in (0, 1, 2):
            raise DataError(f"{path}: {c[name_i]}: Clinical Diagnosis {label} is not 0, 1 or 2")
        rows.append((c[name_i], label))
    if not rows:
        raise DataError(f"{path}: no image rows (IMDxxx) in the table")
    return rows


def _parse_ph2_sheet(sheet: pd.DataFrame, path: Path) -> list[tuple[str, int]]:
    """``PH2_dataset.xlsx`` read with ``header=None``: an "Image Name" column and Common Nevus / Atypical
    Nevus / Melanoma columns marked with X (the header may span rows)."""
    cells = sheet.astype(str).apply(lambda col: col.str.strip().str.lower())
    name_col = None
    class_cols: dict[int, int] = {}
    for r in range(min(len(cells), 40)):
        for c in range(cells.shape[1]):
            v = cells.iat[r, c]
            if v in ("image name", "name") and name_col is None:
                name_col = c
            for k, cls in enumerate(PH2_CLASSES):
                if v == cls.replace("_", " "):
                    class_cols.setdefault(k, c)
    if name_col is None or len(class_cols) != 3:
        raise DataError(f"{path}: no 'Image Name' column with Common Nevus / Atypical Nevus / Melanoma columns")
    rows = []
    for r in range(len(cells)):
        name = str(sheet.iat[r, name_col]).strip()
        if not _PH2_ID_RE.match(name):
            continue
        marked = [k for k, c in class_cols.items() if cells.iat[r, c] == "x"]
        if len(marked) != 1:
            raise DataError(f"{path}: {name}: expected one X among Common Nevus / Atypical Nevus / Melanoma")
        rows.append((name, marked[0]))
    if not rows:
        raise DataError(f"{path}: no image rows (IMDxxx) in the sheet")
    return rows


def _find_ph2_table(root: Path) -> Path | None:
    """``PH2_dataset.txt`` (preferred) or ``.xlsx`` in ``root`` or up to two folder levels below."""
    candidates: list[Path] = []
    for depth_glob in ("*", "*/*", "*/*/*"):
        candidates += [p for p in sorted(root.glob(depth_glob)) if p.name.lower().startswith("ph2") and p.is_file()]
        for ext in (".txt", ".xlsx"):
            hit = [p for p in candidates if p.suffix.lower() == ext and "dataset" in p.name.lower()]
            if hit:
                return hit[0]
    return None


def read_ph2(root: Path, *, skip_missing: bool = False) -> SourceIndex:
    """PH2: ``labels.csv`` + ``masks/<id>_lesion.png``, or the original BMP folders + ``PH2_dataset.txt``."""
    labels = _find_file(root, "labels.csv")
    if labels is not None:
        return read_labels_csv(root, labels, skip_missing=skip_missing, ph2=True)
    table = _find_ph2_table(root)
    if table is None:
        raise DataError(f"{root}: no PH2 labels.csv, PH2_dataset.txt or PH2_dataset.xlsx found")
    if table.suffix.lower() == ".xlsx":
        try:
            sheet = pd.read_excel(table, header=None, dtype=str)
        except ImportError:
            raise DataError(
                f"{table}: reading .xlsx needs openpyxl (pip install openpyxl); or put PH2_dataset.txt next to it"
            ) from None
        except Exception as exc:  # noqa: BLE001
            raise DataError(f"{table}: unreadable spreadsheet ({_one_line(exc)})") from None
        pairs = _parse_ph2_sheet(sheet, table)
    else:
        pairs = _parse_ph2_txt(table)
    rows = [(i, lab, i) for i, lab in pairs]
    notes = {"table": str(table)}
    records = _records_from_table(rows, _scan(root), table, skip_missing, notes)
    return SourceIndex(root.name, root, "ph2", records, list(PH2_CLASSES), notes)


def _class_dirs(scan: _Scan) -> tuple[list[str], int]:
    """Class subfolder names that hold images (anywhere below), and the count of images directly in root."""
    classes, at_root = set(), 0
    for _, path in scan.all_images:
        rel = path.relative_to(scan.root).parts
        if len(rel) == 1:
            at_root += 1
        else:
            classes.add(rel[0])
    return sorted(classes), at_root


def read_class_folders(root: Path, *, skip_missing: bool = False) -> SourceIndex:
    """``root/<class>/**/*.jpg``: labels from the class subfolder (sorted names); ids are file stems."""
    scan = _scan(root)
    class_names, at_root = _class_dirs(scan)
    if not class_names:
        raise DataError(f"{root}: no class subfolders with images found")
    if at_root:
        warnings.warn(f"{root}: ignoring {at_root} image(s) directly in the root (not in a class folder)",
                      DataWarning, stacklevel=2)
    index = {c: i for i, c in enumerate(class_names)}
    stems = [s for s, p in scan.all_images if len(p.relative_to(root).parts) > 1]
    clashes = {s for s in stems if stems.count(s) > 1} if len(set(stems)) != len(stems) else set()
    records = []
    for stem, path in scan.all_images:
        rel = path.relative_to(root).parts
        if len(rel) == 1:
            continue
        image_id = f"{rel[0]}/{stem}" if stem in clashes else stem
        attrs = scan.attribute_masks.get(stem, {})
        records.append(
            Record(image_id, path, index[rel[0]], image_id, scan.lesion_masks.get(stem),
                   tuple((n, attrs[n]) for n in ATTRIBUTES if n in attrs), scan.superpixels.get(stem))
        )
    _check_orphan_masks(scan, skip_missing)
    return SourceIndex(root.name, root, "folder", records, class_names, {})


def read_image_folder(root: Path, *, skip_missing: bool = False) -> SourceIndex:
    """Unlabelled images anywhere under ``root`` (labels -1, no classes), with their masks."""
    scan = _scan(root)
    if not scan.images:
        raise DataError(f"{root}: no images (.jpg/.jpeg/.png/.bmp/.tif) found")
    records = [_record(scan, i, p, -1, i) for i, p in scan.images.items()]
    _warn_duplicates(scan)
    _check_orphan_masks(scan, skip_missing)
    return SourceIndex(root.name, root, "images", records, [], {})


def read_npz(path: Path, split: str = "all") -> SourceIndex:
    """MedMNIST-style ``.npz``: ``<split>_images`` (N, H, W) or (N, H, W, 3) and ``<split>_labels`` (N,) or (N, 1)."""
    if split != "all" and split not in SPLITS:
        raise DataError(f"unknown split {split!r}: expected one of all, {', '.join(SPLITS)}")
    _check_file(path, "npz")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as exc:  # noqa: BLE001 - zipfile/pickle/ValueError: all mean "not a readable npz"
        raise DataError(f"{path}: unreadable .npz ({_one_line(exc)})") from None
    parts: list[tuple[str, np.ndarray, np.ndarray | None]] = []
    present = [s for s in SPLITS if f"{s}_images" in arrays]
    if present:
        wanted = present if split == "all" else [split]
        for s in wanted:
            if f"{s}_images" not in arrays:
                raise DataError(f"{path}: no {s}_images array (has: {', '.join(sorted(arrays))})")
            parts.append((s, arrays[f"{s}_images"], arrays.get(f"{s}_labels")))
    elif "images" in arrays:
        if split != "all":
            raise DataError(f"{path}: has no splits (only 'images'), so split={split!r} cannot be selected")
        parts.append(("img", arrays["images"], arrays.get("labels")))
    else:
        raise DataError(
            f"{path}: no train_images/val_images/test_images or images array (has: {', '.join(sorted(arrays))})"
        )

    flat: list[tuple[str, np.ndarray, np.ndarray]] = []
    for s, images, labels in parts:
        if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (1, 3)):
            raise DataError(f"{path}: {s} images have shape {images.shape}; expected (N, H, W) or (N, H, W, 3)")
        if labels is None:
            labels = np.full(len(images), -1, dtype=np.int64)
        labels = np.asarray(labels)
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.ndim != 1 or len(labels) != len(images):
            raise DataError(
                f"{path}: {s} labels have shape {labels.shape} for {len(images)} images "
                "(expected (N,) or (N, 1); multi-label tables are not supported)"
            )
        flat.append((s, images, labels.astype(np.int64)))
    all_labels = np.concatenate([lab for _, _, lab in flat]) if flat else np.zeros(0, np.int64)
    n_classes = int(all_labels.max()) + 1 if (all_labels >= 0).any() else 0
    rgb = all(im.ndim == 4 and im.shape[-1] == 3 for _, im, _ in flat)
    if n_classes and ("derma" in path.name.lower() or (n_classes == 7 and rgb)) and n_classes <= 7:
        class_names = list(DERMAMNIST_CLASSES)
    else:
        class_names = [f"class_{i}" for i in range(n_classes)]
    records = [
        Record(f"{s}_{i:06d}", images[i], int(labels[i]), f"{s}_{i:06d}")
        for s, images, labels in flat
        for i in range(len(images))
    ]
    name = path.stem if split == "all" else f"{path.stem}-{split}"
    return SourceIndex(name, path, "npz", records, class_names, {"split": split})


# ---------------------------------------------------------------------------------------------------------
# Dispatch
# ---------------------------------------------------------------------------------------------------------


def _has_table(folder: Path) -> bool:
    try:
        names = {p.name.lower() for p in folder.iterdir() if p.is_file()}
    except OSError:
        return False
    return bool(names & {"ham10000_metadata.csv", "labels.csv", "meta.json"}) or any(
        n.startswith("ph2") and n.endswith((".txt", ".xlsx")) and "dataset" in n for n in names
    )


@dataclass(frozen=True)
class Layout:
    """One data layout: how ``auto`` recognises it and how it is read. A new layout is one
    :func:`register_layout` call; ``read_source``, ``auto`` detection and the lists in ``--help`` follow.

    ``read(root, table, split, skip_missing)`` indexes it (``table``: the label CSV given as the source, else
    None; ``root``: its folder, or the file itself for ``source="file"``). ``detect(path)`` is True when ``auto``
    should read ``path`` (a folder, or a file) this way. ``source``: what it reads: ``"folder"``, ``"table"`` (a
    folder or its label CSV) or ``"file"``. ``generic`` layouts match any folder of images, so ``auto`` tries
    them last, after the specific ones and after refusing a folder that holds several datasets. ``marker``:
    what ``auto`` looks for, named in its error when nothing matches. ``splits``: the source has
    train/val/test parts (``split=``)."""

    summary: str
    read: Callable[[Path, Path | None, str, bool], SourceIndex]
    detect: Callable[[Path], bool]
    marker: str
    source: str = "folder"
    generic: bool = False
    splits: bool = False


#: Every layout by name, in the order ``auto`` tries them.
LAYOUTS: dict[str, Layout] = {}


def register_layout(name: str, layout: Layout) -> None:
    """Add a data layout (see :class:`Layout`); ``auto`` tries it after those registered before it (generic
    layouts after every specific one)."""
    if layout.source not in ("folder", "table", "file"):
        raise ValueError(f"layout source must be folder, table or file, got {layout.source!r}")
    LAYOUTS[name] = layout


def layout_names() -> tuple[str, ...]:
    """The ``kind`` values :func:`read_source` takes: ``auto`` and every registered layout."""
    return ("auto", *LAYOUTS)


def layouts_help() -> str:
    """One line per layout (name: summary), for ``--help`` and docs."""
    return "\n".join(f"{name}: {layout.summary}" for name, layout in LAYOUTS.items())


def _is_csv(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".csv"


def _is_ham10000(path: Path) -> bool:
    if _is_csv(path):
        return path.name.lower() == "ham10000_metadata.csv"
    return path.is_dir() and _find_file(path, "HAM10000_metadata.csv") is not None


def _is_isic(path: Path) -> bool:
    return _is_onehot_table(path) if _is_csv(path) else path.is_dir() and bool(_onehot_tables(path))


def _is_labels_csv(path: Path) -> bool:
    return _is_csv(path) or path.is_dir() and _find_file(path, "labels.csv") is not None


def _is_ph2(path: Path) -> bool:
    return _find_ph2_table(path) is not None or (path / "PH2 Dataset images").is_dir()


def _is_class_folder(path: Path) -> bool:
    classes, at_root = _class_dirs(_scan(path))
    return len(classes) >= 2 and not at_root


def _reads_table(read: Callable[..., SourceIndex]) -> Callable[[Path, Path | None, str, bool], SourceIndex]:
    """``read(root, table, skip_missing=)`` as a :attr:`Layout.read`."""
    return lambda root, table, split, skip_missing: read(root, table, skip_missing=skip_missing)


def _reads_folder(read: Callable[..., SourceIndex]) -> Callable[[Path, Path | None, str, bool], SourceIndex]:
    """``read(root, skip_missing=)`` as a :attr:`Layout.read`."""
    return lambda root, table, split, skip_missing: read(root, skip_missing=skip_missing)


def _read_isic(root: Path, table: Path | None, split: str, skip_missing: bool) -> SourceIndex:
    return read_isic_onehot(root, [table] if table else None, skip_missing=skip_missing)


for _name, _layout in {
    "ham10000": Layout("HAM10000_metadata.csv (lesion_id, image_id, dx) + images", _reads_table(read_ham10000),
                       _is_ham10000, "HAM10000_metadata.csv", source="table"),
    "isic": Layout("ISIC challenge one-hot ground-truth CSV (image, MEL, NV, ...) + images", _read_isic, _is_isic,
                   "ISIC ground-truth CSV", source="table"),
    "labels_csv": Layout("labels.csv (image_id, dx[, lesion_id]) + images", _reads_table(read_labels_csv),
                         _is_labels_csv, "labels.csv", source="table"),
    "ph2": Layout("PH2: its original release (PH2_dataset.txt/.xlsx) or labels.csv + masks/<id>_lesion.png",
                  _reads_folder(read_ph2), _is_ph2, "PH2_dataset.txt"),
    "npz": Layout("MedMNIST-style .npz (train_images, train_labels, val_*, test_*)",
                  lambda path, table, split, skip_missing: read_npz(path, split),
                  lambda path: path.suffix.lower() == ".npz", ".npz", source="file", splits=True),
    "folder": Layout("one subfolder of images per class", _reads_folder(read_class_folders), _is_class_folder,
                     "class subfolders", generic=True),
    "images": Layout("unlabelled images (e.g. dermsynth sample output)", _reads_folder(read_image_folder),
                     lambda path: bool(_scan(path).images), "images", generic=True),
}.items():
    register_layout(_name, _layout)


def _markers() -> str:
    markers = [layout.marker for layout in LAYOUTS.values() if layout.source != "file"]
    return ", ".join(markers[:-1]) + " or " + markers[-1]


def detect_kind(root: Path) -> str:
    """The layout ``auto`` would read at ``root`` (a folder or a file)."""
    if root.is_file():
        for name, layout in LAYOUTS.items():
            if layout.source != "folder" and layout.detect(root):
                return name
        raise DataError(f"{root}: not a dataset folder, .npz or label CSV")
    if (root / "meta.json").is_file() and (root / "images.npy").is_file():
        raise DataError(
            f"{root}: is a prepared dataset cache, not a source; load it with load_dataset or LesionDataset.load"
        )
    folder_layouts = [(name, layout) for name, layout in LAYOUTS.items() if layout.source != "file"]
    for name, layout in folder_layouts:
        if not layout.generic and layout.detect(root):
            return name
    subs = [p for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    nested = [p.name for p in subs if _has_table(p)]
    if nested:
        raise DataError(
            f"{root}: holds several datasets ({', '.join(nested)}); point at one of them"
        )
    for name, layout in folder_layouts:
        if layout.generic and layout.detect(root):
            return name
    raise DataError(f"{root}: unknown layout: no {_markers()} found")


def read_source(
    path: str | Path, kind: str = "auto", *, split: str = "all", skip_missing: bool = False
) -> SourceIndex:
    """Index a data source (folder, label CSV or ``.npz``), auto-detecting its layout (see module doc and
    :data:`LAYOUTS`)."""
    if kind != "auto" and kind not in LAYOUTS:
        raise DataError(f"unknown data kind {kind!r}: expected one of {', '.join(layout_names())}")
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    path = path.resolve()
    if kind == "auto":
        kind = detect_kind(path)
    layout = LAYOUTS[kind]
    if split != "all" and not layout.splits:
        with_splits = ", ".join(layout.marker for layout in LAYOUTS.values() if layout.splits)
        raise DataError(f"split={split!r} only applies to {with_splits} sources; {path} is read whole")
    table: Path | None = None
    if layout.source == "file":
        if not path.is_file():
            raise DataError(f"{path}: expected a {layout.marker} file")
        return layout.read(path, None, split, skip_missing)
    if path.is_file():
        if path.suffix.lower() != ".csv" or layout.source != "table":
            raise DataError(f"{path}: kind {kind!r} needs a folder, not a file")
        table, path = path, path.parent
    return layout.read(path, table, split, skip_missing)
