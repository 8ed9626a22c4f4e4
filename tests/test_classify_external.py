"""External test sets in the augmentation experiment (``dermsynth augment --test SRC``): the documented class-name
mapping (ISIC 2017, PH2, ISIC 2018 onto HAM10000), scoring on the classes the external set has, an unknown class
as one error line, and a run on a small external set written as an ISIC-style labels.csv folder."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import SHARED_DATA, needs_shared
from dermsynth.classify.scoring import score_predictions
from dermsynth.classify.experiment import AugmentExperimentConfig, run_augment_experiment
from dermsynth.classify.external import canonical_class, class_mapping, map_to_training_classes
from dermsynth.classify.synthetic import phantom_source
from dermsynth.cli import main as cli
from dermsynth.data.phantom import generate_phantom
from dermsynth.errors import DataError

HAM = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
# phantom class -> the name an external (ISIC 2017 / PH2 style) set gives it
EXTERNAL_NAME = {"melanoma": "melanoma", "nevus": "common_nevus", "keratosis": "seborrheic_keratosis"}


def test_the_documented_mapping_onto_ham10000():
    assert class_mapping(["melanoma", "nevus", "seborrheic_keratosis"], HAM, "isic2017") == {
        "melanoma": "mel", "nevus": "nv", "seborrheic_keratosis": "bkl"}
    assert class_mapping(["common_nevus", "atypical_nevus", "melanoma"], HAM, "ph2") == {
        "common_nevus": "nv", "atypical_nevus": "nv", "melanoma": "mel"}
    assert class_mapping(["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"], HAM) == {
        c.upper(): c for c in HAM}  # ISIC 2018 Task 3 ground truth
    assert canonical_class("Seborrheic Keratosis") == canonical_class("seborrheic-keratosis") == "bkl"
    assert canonical_class("psoriasis") == "psoriasis"  # unknown names are their own canonical name
    assert class_mapping(["psoriasis"], ["psoriasis", "eczema"]) == {"psoriasis": "psoriasis"}
    # and the other way round: training data with long names, a test set with codes
    assert class_mapping(["mel", "nv"], ["melanoma", "nevus", "keratosis", "bcc"]) == {"mel": "melanoma",
                                                                                      "nv": "nevus"}


def test_unknown_or_ambiguous_classes_are_one_line_errors():
    with pytest.raises(DataError, match=r"ext/: class 'psoriasis' is not a class of the training data \(akiec, "
                                        r"bcc, bkl, df, mel, nv, vasc\)") as info:
        class_mapping(["melanoma", "psoriasis"], HAM, "ext/")
    assert "\n" not in str(info.value)
    with pytest.raises(DataError, match="'nevus' and 'nv' mean the same class"):
        class_mapping(["melanoma"], ["mel", "nevus", "nv"])


def test_relabelled_set_keeps_images_and_scores_only_present_classes():
    ds = generate_phantom(40, 16, seed=3)
    ds.class_names = [EXTERNAL_NAME.get(c, c) for c in ds.class_names]  # melanoma, common_nevus, ..., bcc
    keep = np.flatnonzero(ds.labels != ds.class_names.index("bcc"))
    ext = map_to_training_classes(ds.subset(keep), HAM)
    assert ext.class_names == HAM and len(ext) == len(keep)
    assert np.array_equal(ext.images, ds.images[keep]) and ext.ids == [ds.ids[i] for i in keep]
    names = [ds.class_names[y] for y in ds.labels[keep]]
    assert [HAM[y] for y in ext.labels] == [class_mapping(set(names), HAM)[n] for n in names]
    # a classifier's 7-class probabilities on it: AUC of absent classes is undefined, the macro averages the rest
    probs = np.random.default_rng(0).dirichlet(np.ones(7), len(ext))
    m = score_predictions(probs, ext.labels, HAM)
    present = sorted({HAM[y] for y in ext.labels})
    assert [c for c in HAM if np.isfinite(m.per_class_auc[c])] == present
    assert m.macro_auc == pytest.approx(np.mean([m.per_class_auc[c] for c in present]))
    assert m.melanoma_auc == m.per_class_auc["mel"]


def _write_external(root, n: int = 36, size: int = 40, extra_class: str | None = None):
    """An ISIC-style folder: PNGs + labels.csv (image_id, dx) with external class names; no bcc."""
    ds = generate_phantom(n * 2, size, seed=11)
    root.mkdir(parents=True)
    rows = []
    for i, (img, y) in enumerate(zip(ds.images, ds.labels)):
        name = ds.class_names[y]
        if name not in EXTERNAL_NAME or len(rows) >= n:
            continue
        image_id = f"EXT_{i:04d}"
        Image.fromarray(img).save(root / f"{image_id}.png")
        rows.append((image_id, EXTERNAL_NAME[name]))
    if extra_class:
        rows[0] = (rows[0][0], extra_class)
    with open(root / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([("image_id", "dx"), *rows])
    return root, rows


def test_augment_with_an_external_test_set(tmp_path):
    ext_root, rows = _write_external(tmp_path / "external")
    cfg = AugmentExperimentConfig(data="phantom:160", size=16, out=str(tmp_path / "run"), test=str(ext_root),
                                  conditions=["real", "real+balance"], seeds=2, epochs=2, batch_size=32,
                                  patience=None, n_boot=100)
    result = run_augment_experiment(cfg, source=phantom_source(), progress=False)
    ext = result.results["external_test"]
    assert ext["images"] == len(rows) and ext["mapping"] == {
        "common_nevus": "nevus", "melanoma": "melanoma", "seborrheic_keratosis": "keratosis"}
    assert sorted(ext["classes_scored"]) == ["keratosis", "melanoma", "nevus"] and ext["ids_also_in_data"] == 0
    for cond in ("real", "real+balance"):
        c = result.results["conditions"][cond]
        for run in c["runs"]:  # the recorded external metrics are those of the saved probabilities
            saved = np.load(result.out / "runs" / cond.replace("+", "_") / f"seed{run['seed']}.npz")
            assert len(saved["external_probs"]) == len(rows) and saved["probs"].shape[0] == len(saved["labels"])
            again = score_predictions(saved["external_probs"], saved["external_labels"],
                                      result.results["data"]["class_names"])
            assert run["external_metrics"]["macro_auc"] == pytest.approx(again.macro_auc)
            assert run["external_metrics"]["melanoma_auc"] == pytest.approx(again.melanoma_auc)
            assert run["external_metrics"]["per_class_auc"]["bcc"] is None  # absent from the external set
            assert run["metrics"]["per_class_auc"]["bcc"] is not None  # present in the internal test split
        assert c["external"]["summary"]["melanoma_auc"]["n"] == 2
        assert "auc/bcc" not in c["external"]["summary"]
    vs = result.results["conditions"]["real+balance"]["external"]["vs_baseline"]
    assert set(vs["paired"]) >= {"macro_auc", "melanoma_auc"} and "melanoma_auc" in vs["bootstrap_seed_mean_probs"]
    assert result.results["conditions"]["real"]["external"]["vs_baseline"] is None
    table = (result.out / "table.md").read_text()
    assert "External test set" in table and "seborrheic_keratosis -> keratosis" in table
    assert "<h2>External test set" in result.report.read_text()
    manifest = list(csv.DictReader(open(result.out / "manifest.csv", newline="")))
    assert sum(r["split"] == "external" for r in manifest) == len(rows) * 4  # 2 conditions x 2 seeds
    # re-running resumes (nothing trained); the external set is part of the configuration
    again = run_augment_experiment(cfg, source=phantom_source(), progress=False)
    assert again.trained == [] and len(again.skipped) == 4
    other = AugmentExperimentConfig(**{**cfg.to_dict(), "fractions": tuple(cfg.fractions), "test": None})
    with pytest.raises(Exception, match="other settings \\(test"):
        run_augment_experiment(other, source=phantom_source(), progress=False)


def test_cli_augment_test_option_and_unknown_class(tmp_path):
    ext_root, _ = _write_external(tmp_path / "external", n=12, extra_class="psoriasis")
    res = CliRunner().invoke(cli, ["augment", "--data", "phantom:80", "--size", "16", "--test", str(ext_root),
                                   "--conditions", "real", "--seeds", "1", "--epochs", "1",
                                   "--out", str(tmp_path / "run"), "--quiet"])
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error: ") and res.output.count("\n") == 1
    assert "class 'psoriasis' is not a class of the training data (nevus, melanoma, keratosis, bcc)" in res.output
    assert not (tmp_path / "run" / "config.json").exists()  # checked before anything is written
    assert "--test" in CliRunner().invoke(cli, ["augment", "--help"]).output


@needs_shared
def test_real_external_sets_map_onto_ham10000():
    from dermsynth.data.readers import read_source

    ham = read_source(SHARED_DATA / "ham10000").class_names
    isic = read_source(SHARED_DATA / "isic2017_256").class_names
    ph2 = read_source(SHARED_DATA / "ph2").class_names
    assert class_mapping(isic, ham) == {"melanoma": "mel", "nevus": "nv", "seborrheic_keratosis": "bkl"}
    assert class_mapping(ph2, ham) == {"common_nevus": "nv", "atypical_nevus": "nv", "melanoma": "mel"}
    json.dumps(class_mapping(isic, ham))  # recorded in results.json as is
