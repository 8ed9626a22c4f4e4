"""Issue 21 §1, §3, §4: nested real fractions (data layer, GAN training, experiment), the ratio sweep, the
refusal of a GAN trained on other images, Essipova et al.'s table layout, and parallel runs (process pool, submitit)
that give the serial results."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from dermsynth.classify.essipova_table import ESSIPOVA_REPORTED, TABLE_FILE
from dermsynth.classify.experiment import AugmentExperimentConfig, run_augment_experiment
from dermsynth.cli import main as cli
from dermsynth.data.dataset import LesionDataset
from dermsynth.data.phantom import generate_phantom
from dermsynth.data.splits import (Split, ids_fingerprint, real_fraction_subset, restrict_classes, split_dataset,
                                   split_part)
from dermsynth.errors import DataError, DermsynthError

FRACTIONS = (0.05, 0.1, 0.25, 0.5, 1.0)


def _lesions(n_groups=300, seed=0):
    """Imbalanced classes (one rare), 1-4 images per lesion."""
    rng = np.random.default_rng(seed)
    group_label = rng.choice(4, size=n_groups, p=[0.6, 0.25, 0.12, 0.03])
    sizes = rng.integers(1, 5, size=n_groups)
    labels = np.repeat(group_label, sizes)
    groups = [f"les{g}" for g in np.repeat(np.arange(n_groups), sizes)]
    n = len(labels)
    return LesionDataset(np.zeros((n, 4, 4, 3), np.uint8), labels, ["a", "b", "c", "d"], [f"img{i}" for i in range(n)],
                         groups)


def test_real_fractions_are_nested_grouped_stratified_and_seeded():
    train = _lesions()
    subsets = {f: real_fraction_subset(train, f, seed=3) for f in FRACTIONS}
    assert subsets[1.0] is train
    totals = np.bincount(train.labels, minlength=4)
    for small, large in zip(FRACTIONS, FRACTIONS[1:]):
        assert set(subsets[small].ids) <= set(subsets[large].ids)  # every smaller subset inside the larger
    group_size = {g: train.groups.count(g) for g in set(train.groups)}
    for f, sub in subsets.items():
        kept = {g: sub.groups.count(g) for g in set(sub.groups)}
        assert all(kept[g] == group_size[g] for g in kept), "a lesion was cut"
        counts = np.bincount(sub.labels, minlength=4)
        assert np.all(counts > 0), f"fraction {f} lost a class"
        # each class: within one lesion (<= 4 images) of f x its images, or the one lesion it must keep
        assert np.all((np.abs(counts - f * totals) <= 4) | (counts <= 4)), (f, counts, f * totals)
    again = real_fraction_subset(train, 0.25, seed=3)
    assert again.ids == subsets[0.25].ids
    assert real_fraction_subset(train, 0.25, seed=4).ids != subsets[0.25].ids
    for bad in (0, 1.5, float("nan"), "x"):
        with pytest.raises(DataError, match="--real-fraction"):
            real_fraction_subset(train, bad, seed=0)


def test_a_split_of_some_classes_applies_to_the_whole_dataset(tmp_path):
    ds = generate_phantom(120, 16, seed=0)
    three = restrict_classes(ds, ["bcc", "nevus"])
    assert three.class_names == ["bcc", "nevus"] and set(three.labels) == {0, 1}
    assert [ds.class_names[y] for y in ds.labels[np.isin(ds.labels, [0, 3])]] == \
        [three.class_names[y] for y in three.labels]
    split = split_dataset(ds, seed=1, classes=["bcc", "nevus"])
    split.save(tmp_path / "s.json")
    loaded = Split.load(tmp_path / "s.json")
    assert loaded.classes == ["bcc", "nevus"]
    train = split_part(ds, tmp_path / "s.json", "train", real_fraction=0.5)
    assert train.class_names == ["bcc", "nevus"] and len(train) < len(loaded.indices("train"))
    assert train.ids == real_fraction_subset(loaded.apply(ds)["train"], 0.5, loaded.fraction_seed).ids
    with pytest.raises(DataError, match="unknown: foo"):
        restrict_classes(ds, ["bcc", "foo"])


def _cfg(out, **kw):
    base = {"data": "phantom:160", "out": str(out), "size": 16, "conditions": ["real"], "seeds": 1, "epochs": 1,
            "batch_size": 32, "n_boot": 20, "patience": None, "device": "cpu"}
    return AugmentExperimentConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    cfg = _cfg(out, conditions=["real", "real+synth:1"], synthetic="phantom", real_fractions=[1.0, 0.25],
               synthetic_ratios=[0.5, 1, 2])
    return run_augment_experiment(cfg, progress=False)


def test_fractions_cross_conditions_and_the_ratio_sweep_runs_at_the_smallest(sweep):
    res = sweep.results
    runs = res["runs"]
    cells = {(r["real_fraction"], r["condition"]) for r in runs}
    assert cells == {(0.25, "real"), (0.25, "real+synth:1"), (1.0, "real"), (1.0, "real+synth:1"),
                     (0.25, "real+synth:0.5"), (0.25, "real+synth:2")}
    n_real = {f: res["fractions"][f"{f:g}"]["n_real"] for f in (0.25, 1.0)}
    assert n_real[1.0] == sum(res["split"]["train"].values()) and 0 < n_real[0.25] < 0.4 * n_real[1.0]
    for r in runs:
        assert r["n_real"] == n_real[r["real_fraction"]]
        assert r["n_train_real"] == r["n_real"]
        assert r["n_train_synthetic"] == round(r["synthetic_ratio"] * r["n_real"])
    assert res["ratio_sweep"]["real_fraction"] == 0.25 and res["ratio_sweep"]["ratios"] == [0.5, 1.0, 2.0]
    assert set(res["conditions"]) == {"real", "real+synth:1"}  # the largest fraction, as before fractions
    # validation and test are the same real images at every fraction; training images nested
    manifest = {}
    for line in (sweep.out / "manifest.csv").read_text().splitlines()[1:]:
        fraction, cond, seed, split, kind, image, _ = line.split(",")
        manifest.setdefault((fraction, split, kind), set()).add(image)
    for split in ("val", "test"):
        assert manifest[("0.25", split, "real")] == manifest[("1", split, "real")]
    assert manifest[("0.25", "train", "real")] < manifest[("1", "train", "real")]


def test_a_finished_fraction_study_is_reused(sweep):
    again = run_augment_experiment(AugmentExperimentConfig.from_dict(sweep.results["config"]
                                                                     | {"out": str(sweep.out)}), progress=False)
    assert again.trained == [] and len(again.skipped) == 6
    assert again.results["runs"] == sweep.results["runs"]


def test_named_sources_cross_the_conditions_that_draw_synthetic_images():
    cfg = AugmentExperimentConfig(conditions=["real", "real+synth:1", "real+balance@sg2"], real_fractions=[0.1, 1],
                                  sources={"dcgan": "runs/dcgan-{fraction}", "sg2": "runs/sg2-{fraction}"},
                                  synthetic_ratios=[2]).validate()
    assert [c.name for c in cfg.parsed_conditions] == ["real", "real+synth:1@dcgan", "real+synth:1@sg2",
                                                       "real+balance@sg2"]
    assert (0.1, cfg.parsed_conditions[1]) in cfg.cells() and len(cfg.cells()) == 2 * 4 + 2
    assert cfg.source_spec("sg2", 0.1) == "runs/sg2-0.1" and cfg.source_spec("dcgan", 1.0) == "runs/dcgan-1"
    assert cfg.parsed_conditions[3].label.endswith("[sg2]")
    for bad, message in [({"conditions": ["real", "real+synth:1@gan"]}, "not among the named sources"),
                         ({"synthetic": "phantom"}, "not both"), ({"seeds_at": {"0.5": 3}}, "--seeds-at 0.5:3"),
                         ({"sweep_fraction": 0.5}, "--sweep-fraction 0.5"), ({"executor": "mpi"}, "--executor")]:
        with pytest.raises(DermsynthError, match=message):
            AugmentExperimentConfig(**{**cfg.to_dict(), **bad}).validate()


def test_a_gan_must_be_trained_on_the_fraction_it_augments(tmp_path):
    from dermsynth.train import TrainConfig, train

    data = generate_phantom(160, 16, seed=0)
    split = split_dataset(data, seed=5)
    split.save(tmp_path / "split.json")
    tiny = {"model": "dcgan", "size": 16, "width": 8, "z_dim": 8, "steps": 2, "batch_size": 8, "conditional": True,
            "log_every": 1, "sample_every": 100, "checkpoint_every": 100, "device": "cpu",
            "split": str(tmp_path / "split.json")}
    for f in (0.5, 1.0):
        train(TrainConfig(out=str(tmp_path / f"gan-{f:g}"), real_fraction=f, **tiny), dataset=data, progress=False)
    summary = json.loads((tmp_path / "gan-0.5" / "data.json").read_text())
    expected = real_fraction_subset(split.apply(data)["train"], 0.5, split.fraction_seed)
    assert summary["count"] == len(expected) and summary["ids_sha256"] == ids_fingerprint(expected.ids)

    cfg = _cfg(tmp_path / "ok", conditions=["real", "real+synth:1"], split=str(tmp_path / "split.json"),
               real_fractions=[0.5, 1.0], synthetic=str(tmp_path / "gan-{fraction}"))
    res = run_augment_experiment(cfg, dataset=data, progress=False)
    assert {s["name"] for s in res.results["synthetic_sources"].values()} == \
        {str(tmp_path / "gan-0.5"), str(tmp_path / "gan-1")}
    wrong = _cfg(tmp_path / "wrong", conditions=["real", "real+synth:1"], split=str(tmp_path / "split.json"),
                 real_fractions=[0.25, 1.0], synthetic=str(tmp_path / "gan-0.5"))
    with pytest.raises(DermsynthError, match=r"real fraction 0.5 of .*not on the \d+ images of real fraction 0.25"):
        run_augment_experiment(wrong, dataset=data, progress=False)
    assert not (tmp_path / "wrong").exists()  # refused before anything is written
    with pytest.raises(DermsynthError, match="--real-fraction takes a fraction of a split"):
        TrainConfig(real_fraction=0.5).validate()


def _comparable(result):
    """results.json without the wall-clock seconds of each run (the only thing allowed to differ)."""
    def drop(obj):
        if isinstance(obj, dict):
            return {k: drop(v) for k, v in obj.items() if k != "seconds"}
        return [drop(v) for v in obj] if isinstance(obj, list) else obj

    text = json.loads((result.out / "results.json").read_text())
    assert all("seconds" in r for r in text["runs"])
    return drop(text)


def test_a_process_pool_gives_the_serial_results(sweep, tmp_path):
    cfg = AugmentExperimentConfig.from_dict(sweep.results["config"] | {"out": str(tmp_path), "workers": 2})
    parallel = run_augment_experiment(cfg, progress=False)
    assert len(parallel.trained) == 6 and not parallel.skipped
    assert _comparable(parallel) == _comparable(sweep)


@pytest.mark.parametrize("executor", ["debug", "local"])
def test_submitit_executors_give_the_serial_results(tmp_path, executor):
    pytest.importorskip("submitit")
    serial = run_augment_experiment(_cfg(tmp_path / "serial", real_fractions=[0.5, 1.0]), progress=False)
    jobs = run_augment_experiment(_cfg(tmp_path / "jobs", real_fractions=[0.5, 1.0], executor=executor, workers=2),
                                  progress=False)
    assert len(jobs.trained) == 2 and (tmp_path / "jobs" / "submitit").is_dir()
    assert _comparable(jobs) == _comparable(serial)


def test_slurm_without_a_cluster_is_a_one_line_error(tmp_path):
    pytest.importorskip("submitit")
    import shutil

    if shutil.which("srun"):
        pytest.skip("a SLURM cluster is reachable here")
    result = CliRunner().invoke(cli, ["augment", "--data", "phantom:80", "--size", "16", "--conditions", "real",
                                      "--seeds", "1", "--epochs", "1", "--executor", "slurm", "--device", "cpu",
                                      "--out", str(tmp_path / "s"), "--quiet"])
    assert result.exit_code != 0 and result.output.startswith("error: --executor slurm:"), result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "s" / "results.json").exists() and not (tmp_path / "s" / "runs").exists()


def test_a_failed_submitit_job_is_one_error_line_naming_its_log(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    from pathlib import Path

    from dermsynth.classify import experiment

    real_write = experiment._write_json

    def unreadable_config(path, obj):  # the job process cannot rebuild the study: it fails remotely
        real_write(path, obj)
        if Path(path).name == "config.json":
            Path(path).write_text("{not json")

    monkeypatch.setattr(experiment, "_write_json", unreadable_config)
    with pytest.raises(DermsynthError, match=r"run job \S+ failed \(json.decoder.JSONDecodeError: .*\); its log: \S+err"):
        run_augment_experiment(_cfg(tmp_path, executor="local", data="phantom:80"), progress=False)


def test_parallel_runs_refuse_objects_they_cannot_rebuild(tmp_path):
    with pytest.raises(DermsynthError, match="parallel runs"):
        run_augment_experiment(_cfg(tmp_path, workers=2), dataset=generate_phantom(40, 16), progress=False)


def test_essipova_layout_reports_accuracy_and_recall_per_fraction(tmp_path):
    cfg = _cfg(tmp_path, conditions=["real", "real+balance"], synthetic="phantom", classes=["melanoma", "keratosis",
               "bcc"], real_fractions=[0.5, 1.0], layout="essipova2020", seeds=1)
    res = run_augment_experiment(cfg, progress=False)
    text = (tmp_path / TABLE_FILE).read_text()
    assert res.results["data"]["class_names"] == ["melanoma", "keratosis", "bcc"]
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| ") and "Training data" not in line]
    assert len(rows) == 4 + len(ESSIPOVA_REPORTED)
    first = res.results["fractions"]["0.5"]["conditions"]["real"]["runs"][0]["metrics"]
    assert rows[0][3] == f"{100 * first['accuracy']:.1f} ± nan"
    assert rows[0][4] == f"{100 * first['per_class_recall']['melanoma']:.1f} ± nan"
    assert rows[-1][3] == "61" and rows[-2][3] == "59"


def test_cli_real_fractions_ratio_sweep_and_workers(tmp_path):
    out = tmp_path / "cli"
    result = CliRunner().invoke(cli, ["augment", "--data", "phantom:120", "--size", "16", "--out", str(out),
                                      "--conditions", "real", "--seeds", "1", "--epochs", "1", "--n-boot", "10",
                                      "--real-fraction", "0.5,1", "--synthetic", "phantom", "--synthetic-ratio", "1",
                                      "--seeds-at", "0.5:3", "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert sorted((r["real_fraction"], r["condition"], r["seed"]) for r in results["runs"]) == [
        (0.5, "real", 0), (0.5, "real", 1), (0.5, "real", 2), (0.5, "real+synth:1", 0), (0.5, "real+synth:1", 1),
        (0.5, "real+synth:1", 2), (1.0, "real", 0)]
    assert results["fractions"]["0.5"]["seeds"] == [0, 1, 2] and results["seeds"] == [0, 1, 2]
    bad = CliRunner().invoke(cli, ["augment", "--real-fraction", "0,1", "--out", str(tmp_path / "x")])
    assert bad.exit_code != 0 and "error: --real-fraction takes numbers in (0, 1]" in bad.output
    split = CliRunner().invoke(cli, ["split", "phantom:80", "--size", "16", "--classes", "bcc,nevus",
                                     "--out", str(tmp_path / "s.json")])
    assert split.exit_code == 0, split.output
    assert Split.load(tmp_path / "s.json").classes == ["bcc", "nevus"]


@pytest.mark.slow  # four dermsynth processes, twice
def test_the_study_script_chains_split_gans_per_fraction_and_augment(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    entry = Path(sys.executable).parent / "dermsynth"
    if not entry.is_file():
        pytest.skip("no dermsynth entry point next to the interpreter")
    env = {**os.environ, "PYTHONPATH": str(root / "src"), "DERMSYNTH": str(entry), "DATA": "phantom:160",
           "SIZE": "16", "FRACTIONS": "0.5 1", "SOURCES": "dcgan", "DCGAN_STEPS": "2", "DCGAN_BATCH": "8", "GAN_WIDTH": "8", "SEEDS": "1",
           "EPOCHS": "1", "WORKERS": "1", "TEST": "", "RATIOS": "2", "CONDITIONS": "real,real+synth:1",
           "OUT": str(tmp_path)}
    done = subprocess.run(["bash", str(root / "benchmarks" / "efficiency_study.sh")], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "augment" / "results.json").read_text())
    assert {(r["real_fraction"], r["condition"]) for r in results["runs"]} == {
        (0.5, "real"), (1.0, "real"), (0.5, "real+synth:1@dcgan"), (1.0, "real+synth:1@dcgan"),
        (0.5, "real+synth:2@dcgan")}
    assert results["synthetic_sources"]["dcgan@0.5"]["name"] == str(tmp_path / "gan-dcgan-0.5")
    again = subprocess.run(["bash", str(root / "benchmarks" / "efficiency_study.sh")], env=env, capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0 and "trained 0 run(s), reused 5" in again.stdout, again.stderr[-2000:]
