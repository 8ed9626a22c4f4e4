"""Readers: every layout on small fixtures written here, the real data in ../shared/data when present, and errors."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dermsynth.data.dataset import ATTRIBUTES
from dermsynth.data.readers import (
    DERMAMNIST_CLASSES,
    PH2_CLASSES,
    DataWarning,
    SourceIndex,
    _parse_ph2_sheet,
    read_source,
)
from dermsynth.errors import DataError

from conftest import SHARED_DATA as SHARED, needs_shared, write_mask as _mask



def _img(path: Path, size=(40, 30), color=(200, 120, 80)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def _ham(root: Path) -> Path:
    """A HAM10000-like folder: two part folders, masks at 3x the image size."""
    rows = [
        ("HAM_1", "ISIC_0000001", "nv"),
        ("HAM_1", "ISIC_0000002", "nv"),
        ("HAM_2", "ISIC_0000003", "mel"),
        ("HAM_3", "ISIC_0000004", "bkl"),
        ("HAM_4", "ISIC_0000005", "nv"),
    ]
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=["lesion_id", "image_id", "dx"]).assign(dx_type="histo").to_csv(
        root / "HAM10000_metadata.csv", index=False
    )
    for k, (_, image_id, _) in enumerate(rows):
        _img(root / f"HAM10000_images_part_{1 + k % 2}" / f"{image_id}.jpg", (40, 30))
        _mask(root / "masks" / f"{image_id}_segmentation.png", (120, 90))
    return root


# --- layouts on fixtures ------------------------------------------------------------------------------------


def test_ham10000_layout(tmp_path):
    ix = read_source(_ham(tmp_path))
    assert isinstance(ix, SourceIndex) and ix.kind == "ham10000" and len(ix) == 5
    assert ix.class_names == ["bkl", "mel", "nv"]  # sorted dx
    by_id = {r.image_id: r for r in ix.records}
    assert by_id["ISIC_0000003"].label == 1 and by_id["ISIC_0000004"].label == 0
    assert by_id["ISIC_0000001"].group == by_id["ISIC_0000002"].group == "HAM_1"
    assert len(set(ix.groups)) == 4
    assert all(r.lesion_mask is not None and r.lesion_mask.name == f"{r.image_id}_segmentation.png" for r in ix.records)
    assert {r.image.parent.name for r in ix.records} == {"HAM10000_images_part_1", "HAM10000_images_part_2"}
    assert ix.class_counts() == {"bkl": 1, "mel": 1, "nv": 3}
    # pointing at the CSV itself works too
    assert len(read_source(tmp_path / "HAM10000_metadata.csv")) == 5


def test_isic_task3_onehot(tmp_path):
    cols = ["image", "MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    rows = [
        ["ISIC_1", 1.0, 0.0, 0, 0, 0, 0, 0],
        ["ISIC_2", 0.0, 1.0, 0, 0, 0, 0, 0],
        ["ISIC_3", 0.0, 0.0, 0, 0, 0, 0, 1],
    ]
    pd.DataFrame(rows, columns=cols).to_csv(tmp_path / "ISIC2018_Task3_Training_GroundTruth.csv", index=False)
    pd.DataFrame({"image": ["ISIC_1", "ISIC_2", "ISIC_3"], "lesion_id": ["L1", "L1", "L2"]}).to_csv(
        tmp_path / "ISIC2018_Task3_Training_LesionGroupings.csv", index=False
    )
    for i in (1, 2, 3):
        _img(tmp_path / "ISIC2018_Task3_Training_Input" / f"ISIC_{i}.jpg")
    ix = read_source(tmp_path)
    assert ix.kind == "isic"
    assert ix.class_names == ["mel", "nv", "bcc", "akiec", "bkl", "df", "vasc"]  # column order
    assert [r.label for r in ix.records] == [0, 1, 6]
    assert [r.group for r in ix.records] == ["L1", "L1", "L2"]


def test_ph2_simplified_layout(tmp_path):
    rows = [("IMD003", "common_nevus"), ("IMD004", "atypical_nevus"), ("IMD005", "melanoma"), ("IMD006", "melanoma")]
    table = pd.DataFrame(rows, columns=["image_id", "dx"]).assign(colors="dark_brown")
    table.to_csv(tmp_path / "labels.csv", index=False)
    for image_id, _ in rows:
        _img(tmp_path / "images" / f"{image_id}.jpg", (50, 40))
        _mask(tmp_path / "masks" / f"{image_id}_lesion.png", (50, 40), mode="1")
    ix = read_source(tmp_path)
    assert ix.kind == "ph2"
    assert ix.class_names == list(PH2_CLASSES)
    assert [r.label for r in ix.records] == [0, 1, 2, 2]
    assert all(r.lesion_mask is not None for r in ix.records)
    assert ix.groups == [r.image_id for r in ix.records]


PH2_TXT = """\
||   Name || Histological Diagnosis || Clinical Diagnosis || Asymmetry | Pigment Network | Dots/Globules | Streaks | Regression Areas | Blue-Whitish Veil ||           Colors ||
|| IMD002 ||                        ||                  1 ||         0 |               T |             A |       A |                A |                 A ||                4 ||
|| IMD003 ||                        ||                  0 ||         0 |               T |             A |       A |                A |                 A ||                4 ||
|| IMD040 ||              Melanoma ||                  2 ||         2 |              AT |             A |       P |                P |                 P ||  1  2  4  5  6 ||

Legend:
|| Clinical Diagnosis || 0 - Common Nevus; 1 - Atypical Nevus; 2 - Melanoma ||
"""


def _ph2_original(root: Path) -> Path:
    base = root / "PH2Dataset"
    for image_id in ("IMD002", "IMD003", "IMD040"):
        folder = base / "PH2 Dataset images" / image_id
        _img(folder / f"{image_id}_Dermoscopic_Image" / f"{image_id}.bmp", (48, 36))
        _mask(folder / f"{image_id}_lesion" / f"{image_id}_lesion.bmp", (48, 36), mode="1")
        _mask(folder / f"{image_id}_roi" / f"{image_id}_R1_Label4.bmp", (48, 36), mode="1")  # colour ROI: ignored
    (base / "PH2_dataset.txt").write_text(PH2_TXT)
    return base


def test_ph2_original_layout_txt(tmp_path):
    base = _ph2_original(tmp_path)
    for where in (base, tmp_path):  # the release folder or its parent
        ix = read_source(where)
        assert ix.kind == "ph2", where
        assert ix.class_names == ["common_nevus", "atypical_nevus", "melanoma"]
        assert {r.image_id: r.label for r in ix.records} == {"IMD002": 1, "IMD003": 0, "IMD040": 2}
        assert all(r.image.suffix == ".bmp" and r.lesion_mask.name == f"{r.image_id}_lesion.bmp" for r in ix.records)
    assert len(read_source(base, kind="ph2")) == 3


def test_ph2_xlsx_sheet_parsing(tmp_path):
    sheet = pd.DataFrame(
        [
            ["Image Name", "Histological Diagnosis", "Clinical Diagnosis:", None, None, "Asymmetry"],
            [None, None, "Common Nevus", "Atypical Nevus", "Melanoma", None],
            ["IMD003", None, "X", None, None, "0"],
            ["IMD058", None, None, None, "X", "2"],
            ["IMD009", None, None, "X", None, "1"],
        ]
    )
    assert _parse_ph2_sheet(sheet, tmp_path / "PH2_dataset.xlsx") == [("IMD003", 0), ("IMD058", 2), ("IMD009", 1)]
    sheet.iat[3, 3] = "X"  # two marks on one row
    with pytest.raises(DataError, match="IMD058"):
        _parse_ph2_sheet(sheet, tmp_path / "PH2_dataset.xlsx")


def test_class_folders(tmp_path):
    _img(tmp_path / "nevus" / "a.jpg")
    _img(tmp_path / "nevus" / "sub" / "b.png")
    _img(tmp_path / "melanoma" / "c.jpg")
    _img(tmp_path / "melanoma" / "a.jpg")  # same stem in another class: ids disambiguated
    ix = read_source(tmp_path)
    assert ix.kind == "folder"
    assert ix.class_names == ["melanoma", "nevus"]
    labels = {r.image_id: r.label for r in ix.records}
    assert labels == {"melanoma/a": 0, "c": 0, "nevus/a": 1, "b": 1}
    assert len({r.image_id for r in ix.records}) == 4


def test_unlabelled_image_folder_with_masks(tmp_path):
    for i in ("ISIC_1", "ISIC_2"):
        _img(tmp_path / "images" / f"{i}.jpg")
        _mask(tmp_path / "images" / f"{i}_segmentation.png")
        _mask(tmp_path / "images" / f"{i}_attribute_globules.png")
    _mask(tmp_path / "images" / "ISIC_1_attribute_streaks.png")
    _img(tmp_path / "images" / "ISIC_1_superpixels.png")  # ISIC Task 2 input, not a photograph
    ix = read_source(tmp_path)
    assert ix.kind == "images" and ix.class_names == [] and len(ix) == 2
    assert all(r.label == -1 for r in ix.records)
    r1 = ix.records[0]
    assert [name for name, _ in r1.attribute_masks] == ["streaks", "globules"]  # ATTRIBUTES order
    assert r1.lesion_mask.name == "ISIC_1_segmentation.png"


def test_npz_medmnist(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "dermamnist.npz"
    np.savez(
        path,
        train_images=rng.integers(0, 255, (5, 28, 28, 3), dtype=np.uint8),
        train_labels=np.array([[0], [6], [2], [5], [5]]),
        val_images=rng.integers(0, 255, (2, 28, 28, 3), dtype=np.uint8),
        val_labels=np.array([[1], [3]]),
        test_images=rng.integers(0, 255, (3, 28, 28, 3), dtype=np.uint8),
        test_labels=np.array([[4], [4], [0]]),
    )
    ix = read_source(path)
    assert ix.kind == "npz" and len(ix) == 10
    assert ix.class_names == list(DERMAMNIST_CLASSES) == ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
    assert ix.records[0].image_id == "train_000000" and ix.records[5].image_id == "val_000000"
    assert isinstance(ix.records[0].image, np.ndarray) and ix.records[0].image.shape == (28, 28, 3)
    val = read_source(path, split="val")
    assert [r.image_id for r in val.records] == ["val_000000", "val_000001"]
    assert [r.label for r in val.records] == [1, 3]
    grey = tmp_path / "other.npz"
    np.savez(grey, train_images=np.zeros((4, 28, 28), np.uint8), train_labels=np.array([0, 1, 2, 1]))
    gx = read_source(grey)
    assert gx.class_names == ["class_0", "class_1", "class_2"] and [r.label for r in gx.records] == [0, 1, 2, 1]
    with pytest.raises(DataError, match="test_images"):
        read_source(grey, split="test")
    with pytest.raises(DataError, match="split"):
        read_source(grey, split="bogus")


def test_select_subset(tmp_path):
    ix = read_source(_ham(tmp_path))
    sub = ix.select(slice(0, 2))
    assert len(sub) == 2 and len(ix) == 5 and sub.class_names == ix.class_names


# --- errors --------------------------------------------------------------------------------------------------


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="nowhere.*no such file or folder"):
        read_source(tmp_path / "nowhere")


def test_unknown_layout(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match=r"unknown layout.*HAM10000_metadata.csv.*labels.csv") as e:
        read_source(tmp_path)
    assert str(tmp_path) in str(e.value) and "\n" not in str(e.value)


def test_unknown_kind(tmp_path):
    with pytest.raises(DataError, match="unknown data kind 'hamster'"):
        read_source(tmp_path, kind="hamster")


def test_csv_missing_columns(tmp_path):
    _ham(tmp_path)
    df = pd.read_csv(tmp_path / "HAM10000_metadata.csv").drop(columns=["lesion_id"])
    df.to_csv(tmp_path / "HAM10000_metadata.csv", index=False)
    with pytest.raises(DataError, match=r"HAM10000_metadata\.csv: missing column\(s\) lesion_id") as e:
        read_source(tmp_path)
    assert str(tmp_path) in str(e.value)
    (tmp_path / "HAM10000_metadata.csv").unlink()
    pd.DataFrame({"image_id": ["ISIC_0000001"], "split": ["train"]}).to_csv(tmp_path / "labels.csv", index=False)
    with pytest.raises(DataError, match=r"labels\.csv: missing column\(s\) dx"):
        read_source(tmp_path)


def test_id_without_image(tmp_path):
    _ham(tmp_path)
    df = pd.read_csv(tmp_path / "HAM10000_metadata.csv")
    extra = pd.DataFrame([["HAM_9", "ISIC_0000098", "nv"], ["HAM_9", "ISIC_0000099", "nv"]], columns=df.columns[:3])
    pd.concat([df, extra]).to_csv(tmp_path / "HAM10000_metadata.csv", index=False)
    with pytest.raises(DataError, match=r"HAM10000_metadata\.csv: 2 of 7 image id\(s\).*first: ISIC_0000098"):
        read_source(tmp_path)
    with pytest.warns(DataWarning, match="dropping"):
        ix = read_source(tmp_path, skip_missing=True)
    assert len(ix) == 5 and ix.notes["dropped_missing"] == ["ISIC_0000098", "ISIC_0000099"]


def test_mask_without_image(tmp_path):
    _ham(tmp_path)
    _mask(tmp_path / "masks" / "ISIC_9999999_segmentation.png", (120, 90))
    with pytest.raises(DataError, match=r"ISIC_9999999_segmentation\.png: mask for image id 'ISIC_9999999'"):
        read_source(tmp_path)
    with pytest.warns(DataWarning, match="ISIC_9999999"):
        assert len(read_source(tmp_path, skip_missing=True)) == 5


def test_duplicate_image_files_warn(tmp_path):
    _ham(tmp_path)
    _img(tmp_path / "copy" / "ISIC_0000001.jpg")
    with pytest.warns(DataWarning, match="more than one file"):
        assert len(read_source(tmp_path)) == 5


def test_folder_of_datasets(tmp_path):
    _ham(tmp_path / "ham")
    _img(tmp_path / "other" / "x" / "a.jpg")
    (tmp_path / "other" / "labels.csv").write_text("image_id,dx\na,nevus\n")
    with pytest.raises(DataError, match="several datasets.*ham.*other"):
        read_source(tmp_path)


def test_duplicate_table_rows(tmp_path):
    _ham(tmp_path)
    df = pd.read_csv(tmp_path / "HAM10000_metadata.csv")
    pd.concat([df, df.iloc[:1]]).to_csv(tmp_path / "HAM10000_metadata.csv", index=False)
    with pytest.raises(DataError, match="ISIC_0000001.*more than once"):
        read_source(tmp_path)


def test_ph2_txt_bad_diagnosis(tmp_path):
    base = _ph2_original(tmp_path)
    (base / "PH2_dataset.txt").write_text(PH2_TXT.replace("||                  0 ||", "||                  7 ||"))
    with pytest.raises(DataError, match=r"PH2_dataset\.txt: IMD003: Clinical Diagnosis 7"):
        read_source(base)


def test_lfs_pointer_label_table(tmp_path):
    _ham(tmp_path)
    (tmp_path / "HAM10000_metadata.csv").write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n"
    )
    with pytest.raises(DataError, match="HAM10000_metadata.csv: is a Git LFS pointer"):
        read_source(tmp_path)


# --- the real data -------------------------------------------------------------------------------------------


@needs_shared
def test_real_ham10000():
    ix = read_source(SHARED / "ham10000")
    assert ix.kind == "ham10000" and len(ix) == 10_015
    assert ix.class_names == ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
    assert ix.class_counts() == {"akiec": 327, "bcc": 514, "bkl": 1099, "df": 115, "mel": 1113, "nv": 6705, "vasc": 142}
    assert len(set(ix.groups)) == 7_470
    assert all(r.lesion_mask is not None for r in ix.records)


@needs_shared
def test_real_isic2017_ph2_originals_task2():
    ix = read_source(SHARED / "isic2017_256")
    assert len(ix) == 2_150 and ix.class_counts() == {"melanoma": 404, "nevus": 1450, "seborrheic_keratosis": 296}
    ph2 = read_source(SHARED / "ph2")
    assert ph2.kind == "ph2" and len(ph2) == 200
    assert ph2.class_counts() == {"common_nevus": 80, "atypical_nevus": 80, "melanoma": 40}
    assert all(r.lesion_mask is not None for r in ph2.records)
    orig = read_source(SHARED / "isic_originals")
    assert len(orig) == 40 and orig.class_names == ["melanoma", "nevus"]
    t2 = read_source(SHARED / "isic2018_task2_sample")
    assert t2.kind == "images" and len(t2) == 6
    assert all(r.lesion_mask is not None for r in t2.records)
    assert all([n for n, _ in r.attribute_masks] == ["pigment_network"] for r in t2.records)
    assert set(ATTRIBUTES) >= {"pigment_network"}
    with pytest.raises(DataError, match="several datasets"):
        read_source(SHARED)


def test_no_warnings_on_clean_fixture(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_source(_ham(tmp_path))


def test_a_new_layout_is_one_registration(tmp_path, monkeypatch):
    """register_layout alone makes a layout readable by name and by ``auto`` (before the generic image folder
    that would otherwise take this folder) and names it in the error when nothing matches."""
    from dermsynth.data import readers

    monkeypatch.setattr(readers, "LAYOUTS", dict(readers.LAYOUTS))
    root = tmp_path / "tsv"
    _img(root / "a.png")
    _img(root / "b.png")
    (root / "labels.tsv").write_text("a\tmel\nb\tnv\n")

    def read_tsv(folder, table, split, skip_missing):
        rows = [line.split("\t") for line in (folder / "labels.tsv").read_text().splitlines()]
        classes = sorted({dx for _, dx in rows})
        records = [readers.Record(i, folder / f"{i}.png", classes.index(dx), i) for i, dx in rows]
        return SourceIndex(folder.name, folder, "tsv", records, classes)

    assert readers.detect_kind(root) == "images"
    readers.register_layout("tsv", readers.Layout("labels.tsv (id<TAB>dx) + images", read_tsv,
                                                  lambda path: (path / "labels.tsv").is_file(), "labels.tsv"))
    for kind in ("auto", "tsv"):
        index = read_source(root, kind=kind)
        assert index.kind == "tsv" and index.class_names == ["mel", "nv"]
        assert [(r.image_id, r.label) for r in index.records] == [("a", 0), ("b", 1)]
    assert "tsv" in readers.layout_names()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"unknown layout: no .*images or labels\.tsv found"):
        read_source(tmp_path / "empty")


def test_prepare_help_lists_every_layout():
    from click.testing import CliRunner

    from dermsynth.cli import main
    from dermsynth.data.readers import LAYOUTS

    shown = " ".join(CliRunner().invoke(main, ["prepare", "--help"], terminal_width=200).output.split())
    for name, layout in LAYOUTS.items():
        assert f"{name}: {layout.summary}" in shown


# --- label tables that say one thing (issue 18) --------------------------------------------------------------


def _labels_csv(root: Path, rows: list[tuple[str, str]]) -> Path:
    for image_id, _ in rows:
        _img(root / "images" / f"{image_id}.jpg")
    pd.DataFrame(rows, columns=["image_id", "dx"]).to_csv(root / "labels.csv", index=False)
    return root


def test_class_labels_are_case_insensitive(tmp_path):
    ix = read_source(_labels_csv(tmp_path / "codes", [("a", "MEL"), ("b", "mel"), ("c", "Nv"), ("d", "nv")]))
    assert ix.class_names == ["mel", "nv"] and [r.label for r in ix.records] == [0, 0, 1, 1]
    # free labels: one class per spelling-insensitive name; a single spelling keeps its case
    ix = read_source(_labels_csv(tmp_path / "free", [("a", "Melanoma"), ("b", "melanoma"), ("c", "Nevus")]))
    assert ix.class_names == ["Nevus", "melanoma"] and [r.label for r in ix.records] == [1, 1, 0]
    # HAM10000 metadata in capitals is the same 3 classes as in lower case
    _ham(tmp_path / "ham")
    table = tmp_path / "ham" / "HAM10000_metadata.csv"
    df = pd.read_csv(table)
    df.assign(dx=df["dx"].str.upper()).to_csv(table, index=False)
    assert read_source(tmp_path / "ham").class_names == ["bkl", "mel", "nv"]


def test_unknown_class_is_an_error(tmp_path):
    _ham(tmp_path / "ham")
    table = tmp_path / "ham" / "HAM10000_metadata.csv"
    df = pd.read_csv(table)
    df.loc[[1, 3], "dx"] = "melanom"
    df.to_csv(table, index=False)
    with pytest.raises(DataError, match=r"data row 2 \(image 'ISIC_0000002'\) has unknown class 'melanom' "
                                        r"\(2 such rows\); the table uses HAM10000/ISIC codes: ak, akiec"):
        read_source(tmp_path / "ham")
    # a labels.csv mixing codes with something else, and PH2 names with a typo
    with pytest.raises(DataError, match="'c'.*unknown class 'nevus'"):
        read_source(_labels_csv(tmp_path / "mixed", [("a", "mel"), ("b", "nv"), ("c", "nevus")]))
    ph2 = _labels_csv(tmp_path / "ph2", [("a", "common_nevus"), ("b", "melanom")])
    with pytest.raises(DataError, match="unknown class 'melanom'; the table uses PH2 diagnoses"):
        read_source(ph2, kind="ph2")
    assert read_source(ph2).class_names == ["common_nevus", "melanom"]  # not all PH2's: a table of its own


def test_empty_class_is_an_error_naming_the_row(tmp_path):
    root = _labels_csv(tmp_path, [("a", "mel"), ("b", "nv")])
    (root / "labels.csv").write_text("image_id,dx\na,mel\nb,\n")
    with pytest.raises(DataError, match=r"labels\.csv: data row 2 \(image 'b'\) has an empty dx"):
        read_source(root)
    _ham(tmp_path / "ham")
    table = tmp_path / "ham" / "HAM10000_metadata.csv"
    df = pd.read_csv(table, dtype=str)
    df.loc[4, "dx"] = ""
    df.to_csv(table, index=False)
    with pytest.raises(DataError, match=r"data row 5 \(image 'ISIC_0000005'\) has an empty dx"):
        read_source(tmp_path / "ham")


def test_row_with_extra_fields_says_so(tmp_path):
    _ham(tmp_path)
    table = tmp_path / "HAM10000_metadata.csv"
    lines = table.read_text().splitlines()
    for where in (1, 3):  # the first data row (pandas would make column 1 the index) and a later one
        changed = lines.copy()
        changed[where] += ",extra"
        table.write_text("\n".join(changed) + "\n")
        with pytest.raises(DataError, match=rf"HAM10000_metadata\.csv: line {where + 1} has 5 fields, "
                                            r"the header has 4") as e:
            read_source(tmp_path)
        assert "more than once" not in str(e.value)


def _isic(root: Path, rows: list[list]) -> Path:
    cols = ["image", "MEL", "NV", "BCC"]
    pd.DataFrame(rows, columns=cols).to_csv(root / "ISIC2018_Task3_Training_GroundTruth.csv", index=False)
    for r in rows:
        _img(root / "input" / f"{r[0]}.jpg")
    return root


@pytest.mark.parametrize("bad_row, message", [
    (["ISIC_3", 1.0, 1.0, 0.0], r"data row 3 \(image 'ISIC_3'\) has 2 class columns set to 1"),
    (["ISIC_3", 0.0, 0.0, 0.0], r"data row 3 \(image 'ISIC_3'\) has 0 class columns set to 1"),
    (["ISIC_3", 0.5, 0.5, 0.0], r"data row 3 \(image 'ISIC_3'\) has a class value other than 0 or 1"),
])
def test_onehot_row_must_have_exactly_one(tmp_path, bad_row, message):
    good = [["ISIC_1", 1.0, 0.0, 0.0], ["ISIC_2", 0.0, 1.0, 0.0]]
    assert [r.label for r in read_source(_isic(tmp_path, good)).records] == [0, 1]
    with pytest.raises(DataError, match=message):
        read_source(_isic(tmp_path, good + [bad_row]))
