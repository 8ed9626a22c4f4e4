"""The augmentation experiment: balancing helps a starved class, synthetic images stay in training,
the statistics match scipy/sklearn, interrupted experiments resume, bad input gets a one-line error."""

import csv
import itertools
import json

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats as sps
from sklearn.metrics import balanced_accuracy_score, recall_score, roc_auc_score

from dermsynth.classify import experiment as exp_module
from dermsynth.classify.experiment import AugmentExperimentConfig, Condition, run_augment_experiment, synthetic_counts
from dermsynth.data.splits import Split, split_dataset
from dermsynth.classify.synthetic import FolderSource, GeneratorSource, phantom_source
from dermsynth.cli import main as cli
from dermsynth.data.phantom import PHANTOM_CLASSES, generate_phantom, render_phantom
from dermsynth.errors import DataError, DermsynthError
from dermsynth.report.figures import save_png

STARVED = "bcc"
PER_CLASS = {"train": 60, "val": 15, "test": 25}
STARVED_TRAIN = 6


@pytest.fixture(scope="module")
def starved(tmp_path_factory):
    """Phantom images at 28 px, 60 training images per class but only 6 of bcc; val 15 and test 25 per class."""
    ds = generate_phantom(520, 28, seed=0)
    assign = {}
    for c, name in enumerate(ds.class_names):
        idx = np.flatnonzero(ds.labels == c)
        n_train = STARVED_TRAIN if name == STARVED else PER_CLASS["train"]
        bounds = np.cumsum([0, PER_CLASS["train"], PER_CLASS["val"], PER_CLASS["test"]])
        assert len(idx) >= bounds[-1]
        assign.update({int(i): "train" for i in idx[:n_train]})
        for s, (lo, hi) in zip(("val", "test"), itertools.pairwise(bounds[1:])):
            assign.update({int(i): s for i in idx[lo:hi]})
    rows = sorted(assign)
    ds = ds.subset(rows)
    path = tmp_path_factory.mktemp("split") / "split.json"
    Split(list(ds.ids), [assign[i] for i in rows], list(ds.groups), ds.labels.tolist()).save(path)
    return ds, path


@pytest.fixture(scope="module")
def starved_run(starved, tmp_path_factory):
    ds, split = starved
    cfg = AugmentExperimentConfig(out=str(tmp_path_factory.mktemp("run")), size=28, conditions=["real", "real+balance"],
                                  seeds=3, epochs=4, batch_size=32, patience=None, n_boot=300, split=str(split))
    return run_augment_experiment(cfg, dataset=ds, source=phantom_source(ds.class_names), progress=False), ds


def _manifest(out):
    with open(out / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_balancing_with_the_phantom_generator_raises_the_starved_class_recall(starved_run):
    result, _ = starved_run
    recall = {c: np.mean([r["metrics"]["per_class_recall"][STARVED] for r in v["runs"]])
              for c, v in result.results["conditions"].items()}
    assert recall["real"] < 0.5, recall  # the starved class is really starved
    assert recall["real+balance"] - recall["real"] > 0.4, recall


def test_synthetic_images_stay_in_training_and_evaluation_sets_are_the_real_split(starved_run, starved):
    result, ds = starved_run
    split = Split.load(result.out / "split.json")
    ids_of = {s: sorted(split.ids[i] for i in split.indices(s)) for s in split.names}
    rows = _manifest(result.out)
    assert {(r["condition"], r["seed"]) for r in rows} == {(c, str(s)) for c in ("real", "real+balance")
                                                           for s in (0, 1, 2)}
    real_ids = set(ds.ids)
    for (cond, seed), group in itertools.groupby(rows, key=lambda r: (r["condition"], r["seed"])):
        group = list(group)
        for s in ("val", "test"):
            part = [r for r in group if r["split"] == s]
            assert {r["kind"] for r in part} == {"real"} and sorted(r["id"] for r in part) == ids_of[s]
        train = [r for r in group if r["split"] == "train"]
        assert sorted(r["id"] for r in train if r["kind"] == "real") == ids_of["train"]
        synthetic = [r for r in train if r["kind"] == "synthetic"]
        expected = PER_CLASS["train"] - STARVED_TRAIN if cond == "real+balance" else 0
        assert len(synthetic) == expected and {r["class"] for r in synthetic} <= {STARVED}
        assert not real_ids & {r["id"] for r in synthetic}
        assert {r["split"] for r in group if r["kind"] == "synthetic"} <= {"train"}
    seed0 = result.results["conditions"]["real+balance"]["runs"][0]
    assert seed0["n_train_synthetic"] == expected and seed0["synthetic_per_class"][STARVED] == expected


def test_statistics_match_scipy_and_sklearn(starved_run):
    result, _ = starved_run
    res, out = result.results, result.out
    names = res["data"]["class_names"]
    auc = {}
    for cond, v in res["conditions"].items():
        for run in v["runs"]:
            d = np.load(out / "runs" / Condition.parse(cond).slug / f"seed{run['seed']}.npz")
            probs, labels = d["probs"], d["labels"]
            m = run["metrics"]
            assert m["macro_auc"] == pytest.approx(roc_auc_score(labels, probs, multi_class="ovr", average="macro"))
            assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(labels, probs.argmax(1)))
            rec = recall_score(labels, probs.argmax(1), average=None, labels=range(len(names)), zero_division=0)
            assert [m["per_class_recall"][n] for n in names] == pytest.approx(rec)
            assert m["melanoma_auc"] == pytest.approx(roc_auc_score(labels == names.index("melanoma"),
                                                                    probs[:, names.index("melanoma")]))
        auc[cond] = np.array([r["metrics"]["macro_auc"] for r in v["runs"]])
        s = v["summary"]["macro_auc"]
        lo, hi = sps.t.interval(0.95, len(auc[cond]) - 1, loc=auc[cond].mean(), scale=sps.sem(auc[cond]))
        assert (s["mean"], s["std"], s["ci_low"], s["ci_high"]) == pytest.approx(
            (auc[cond].mean(), auc[cond].std(ddof=1), lo, hi))
    vs = res["conditions"]["real+balance"]["vs_baseline"]
    diff = auc["real+balance"] - auc["real"]
    paired = vs["paired"]["macro_auc"]
    assert paired["mean_diff"] == pytest.approx(diff.mean())
    assert paired["wilcoxon_p"] == pytest.approx(sps.wilcoxon(diff).pvalue)
    null = [np.mean(np.array(signs) * diff) for signs in itertools.product((-1, 1), repeat=len(diff))]
    assert paired["permutation_p"] == pytest.approx(np.mean(np.abs(null) >= abs(diff.mean()) - 1e-12))
    mean_probs = {c: np.mean([np.load(out / "runs" / Condition.parse(c).slug / f"seed{s}.npz")["probs"]
                              for s in (0, 1, 2)], axis=0) for c in auc}
    labels = np.load(out / "runs" / "real" / "seed0.npz")["labels"]
    boot = vs["bootstrap_seed_mean_probs"]["macro_auc"]
    assert boot["observed"] == pytest.approx(roc_auc_score(labels, mean_probs["real+balance"], multi_class="ovr")
                                             - roc_auc_score(labels, mean_probs["real"], multi_class="ovr"))
    assert boot["ci_low"] <= boot["observed"] <= boot["ci_high"]
    # DeLong's test of the melanoma AUCs of the seed-averaged predictions (its own tests check it against MLstatkit)
    mel = names.index("melanoma")
    delong = vs["delong"]["melanoma_auc"]
    assert delong["auc_a"] - delong["auc_b"] == pytest.approx(
        roc_auc_score(labels == mel, mean_probs["real+balance"][:, mel])
        - roc_auc_score(labels == mel, mean_probs["real"][:, mel]))
    assert 0 <= delong["p_value"] <= 1
    assert res["conditions"]["real"]["vs_baseline"] is None


def test_outputs_table_figures_report_and_config(starved_run):
    result, _ = starved_run
    out = result.out
    lines = (out / "table.md").read_text().splitlines()
    i = lines.index("| Training data | AUC (%) |")
    assert lines[i + 2].startswith("| Real images | ") and "±" in lines[i + 2]
    assert lines[i + 3].startswith("| Real images + synthetic to balance the classes | ")
    assert (out / "table.txt").read_text().splitlines()[0] == "Training data\tAUC (%)"
    for png in ("auc.png", "confusion/real.png", "confusion/real_balance.png"):
        assert (out / png).stat().st_size > 1000, png
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and "http" not in html
    saved = AugmentExperimentConfig.from_dict(json.loads((out / "config.json").read_text()))
    assert saved.conditions == ["real", "real+balance"] and saved.synthetic == "<phantom>" and saved.epochs == 4
    assert json.loads((out / "results.json").read_text())["seeds"] == [0, 1, 2]


@pytest.fixture(scope="module")
def small():
    return generate_phantom(160, 16, seed=1)


def _small_cfg(out, **kw):
    base = {"out": str(out), "size": 16, "conditions": ["real", "real+classic"], "seeds": 2, "epochs": 1,
            "batch_size": 32, "n_boot": 50, "patience": None}
    cfg = {**base, **kw}
    return AugmentExperimentConfig(**{"baseline": cfg["conditions"][0], **cfg})


def test_an_interrupted_experiment_resumes_without_redoing_finished_runs(small, tmp_path, monkeypatch):
    calls = []
    real_train = exp_module.train_classifier

    def interrupted(*args, **kwargs):
        calls.append(kwargs["seed"])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_train(*args, **kwargs)

    monkeypatch.setattr(exp_module, "train_classifier", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_augment_experiment(_small_cfg(tmp_path), dataset=small, progress=False)
    first = (tmp_path / "runs" / "real" / "seed0.json").read_text()
    monkeypatch.setattr(exp_module, "train_classifier", real_train)
    res = run_augment_experiment(_small_cfg(tmp_path), dataset=small, progress=False)
    assert res.skipped == [("real", 0), ("real", 1)]
    assert res.trained == [("real+classic", 0), ("real+classic", 1)]
    assert (tmp_path / "runs" / "real" / "seed0.json").read_text() == first
    more = run_augment_experiment(_small_cfg(tmp_path, seeds=3), dataset=small, progress=False)
    assert more.trained == [("real", 2), ("real+classic", 2)] and len(more.skipped) == 4
    with pytest.raises(DermsynthError, match="other settings.*epochs"):
        run_augment_experiment(_small_cfg(tmp_path, epochs=2), dataset=small, progress=False)


def _sample_folder(path, n, class_name=STARVED, size=16):
    path.mkdir(parents=True, exist_ok=True)
    code = PHANTOM_CLASSES.index(class_name)
    with open(path / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "class", "seed"])
        for i in range(n):
            save_png(render_phantom(code, np.random.default_rng([99, i]), size, 0.0)[0], path / f"s{i}.png")
            w.writerow([f"s{i}.png", class_name, 0])
    return path


def test_a_sample_folder_source_feeds_training_only(small, tmp_path):
    folder = _sample_folder(tmp_path / "samples", 40)
    res = run_augment_experiment(_small_cfg(tmp_path / "run", conditions=["real+synth:0.25"], seeds=1,
                                            synthetic=str(folder)), dataset=small, progress=False)
    rows = _manifest(res.out)
    synthetic = [r for r in rows if r["kind"] == "synthetic"]
    n_train = sum(1 for r in rows if r["kind"] == "real" and r["split"] == "train")
    assert len(synthetic) == round(0.25 * n_train) and {r["split"] for r in synthetic} == {"train"}
    assert {r["id"] for r in synthetic} <= {f"s{i}.png" for i in range(40)} and {r["class"] for r in synthetic} == {STARVED}
    # a bcc-only folder cannot balance the other classes, nor give enough images for a large ratio
    with pytest.raises(DermsynthError, match="cannot generate"):
        run_augment_experiment(_small_cfg(tmp_path / "b", conditions=["real+balance"], synthetic=str(folder)),
                               dataset=small, progress=False)
    with pytest.raises(DataError, match="sample more"):
        run_augment_experiment(_small_cfg(tmp_path / "c", conditions=["real+synth:3"], synthetic=str(folder)),
                               dataset=small, progress=False)


def test_bad_sources_are_one_line_errors(small, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no manifest.csv"):
        FolderSource(tmp_path / "empty")
    foreign = _sample_folder(tmp_path / "foreign", 3)
    (foreign / "manifest.csv").write_text("file,class\ns0.png,MEL\n")
    with pytest.raises(DataError, match="'MEL' is not a class of the real data"):
        run_augment_experiment(_small_cfg(tmp_path / "r", conditions=["real+synth:0.1"], synthetic=str(foreign)),
                               dataset=small, progress=False)
    (foreign / "manifest.csv").write_text("file,class\ns0.png,\n")
    with pytest.raises(DataError, match="empty file or class"):
        FolderSource(foreign)
    with pytest.raises(DermsynthError, match="needs a synthetic source"):
        run_augment_experiment(_small_cfg(tmp_path / "n", conditions=["real+balance"]), dataset=small, progress=False)
    with pytest.raises(DataError, match="not found"):
        run_augment_experiment(_small_cfg(tmp_path / "m", conditions=["synth:1"], synthetic=str(tmp_path / "nope")),
                               dataset=small, progress=False)
    assert not (tmp_path / "n").exists()  # nothing is written before the input is checked
    result = CliRunner().invoke(cli, ["augment", "--synthetic", str(tmp_path / "empty"), "--out", str(tmp_path / "o"),
                                      "--conditions", "real,real+balance", "--quiet"])
    assert result.exit_code == 2 and result.output.strip().count("\n") == 0
    assert result.output.startswith("error:") and "no manifest.csv" in result.output


def test_an_unconditional_checkpoint_cannot_balance_unless_its_class_is_given(small, tmp_path):
    from dermsynth.train import TrainConfig, train

    ckpt = train(TrainConfig(out=str(tmp_path / "gan"), size=16, width=8, z_dim=16, batch_size=16, steps=2),
                 dataset=small, progress=False).checkpoint
    with pytest.raises(DermsynthError, match="cannot generate .*no labelled classes"):
        run_augment_experiment(_small_cfg(tmp_path / "r", conditions=["real+balance"], synthetic=str(ckpt)),
                               dataset=small, progress=False)
    one = GeneratorSource(ckpt, class_name=STARVED)
    drawn = one.draw([0, 0, 0, 5], list(PHANTOM_CLASSES), size=28, seed=0)
    assert drawn.images.shape == (5, 28, 28, 3) and drawn.labels.tolist() == [3] * 5
    again = one.draw([0, 0, 0, 5], list(PHANTOM_CLASSES), size=28, seed=0)
    assert np.array_equal(drawn.images, again.images)


@pytest.mark.parametrize("spec, message", [("real+foo", "unknown part"), ("balance", "add real"),
                                           ("real+synth:0", "must be > 0"), ("real+real", "twice"),
                                           ("classic", "no training images"), ("real+synth:x", "needs a number")])
def test_bad_conditions_are_clear_errors(spec, message):
    with pytest.raises(DermsynthError, match=message):
        Condition.parse(spec)


def test_condition_names_and_synthetic_counts():
    assert Condition.parse(" Real + Synthetic:0.50 + classic").name == "real+classic+synth:0.5"
    src = phantom_source(["nevus", "melanoma", "bcc"])
    names = ["nevus", "melanoma", "bcc"]
    counts = [50, 30, 6]
    assert synthetic_counts(Condition.parse("real+balance"), counts, names, src).tolist() == [0, 20, 44]
    ratio = synthetic_counts(Condition.parse("real+synth:0.5"), counts, names, src)
    assert ratio.sum() == 43 and ratio.tolist() == [25, 15, 3]
    assert synthetic_counts(Condition.parse("real+classic"), counts, names, None).tolist() == [0, 0, 0]
    with pytest.raises(DermsynthError, match="baseline 'real' is not among"):
        AugmentExperimentConfig(conditions=["real+classic"]).validate()
    with pytest.raises(DermsynthError, match="synthetic only.*keratosis"):
        synthetic_counts(Condition.parse("synth:1"), counts + [9], names + ["keratosis"], src)


def test_a_split_that_shares_a_lesion_is_rejected(small, tmp_path):
    split = split_dataset(small, seed=0)
    test_row = int(split.indices("test")[0])
    split.groups[test_row] = split.groups[int(split.indices("train")[0])]
    split.save(tmp_path / "bad.json")
    with pytest.raises(DataError, match="in both"):
        run_augment_experiment(_small_cfg(tmp_path / "r", split=str(tmp_path / "bad.json")), dataset=small,
                               progress=False)


def test_split_command_saves_a_grouped_split(tmp_path):
    out = tmp_path / "split.csv"
    result = CliRunner().invoke(cli, ["split", "phantom:120", "--size", "16", "--seed", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    split = Split.load(out)
    assert len(split.ids) == 120 and set(split.splits) == {"train", "val", "test"} and "test: " in result.output


# --- Bissoto et al.'s protocol: a pix2pixHD checkpoint translates the training split's own maps ----------------------
P2P_TINY = dict(model="pix2pixhd", size=16, width=4, g_downsample=1, g_blocks=1, d_layers=1, d_scales=1,
                batch_size=4, steps=2, log_every=1, sample_every=10, checkpoint_every=10)


@pytest.fixture(scope="module")
def p2p_on_train_split(small, tmp_path_factory):
    """A tiny pix2pixHD trained with ``split=`` (the split's training images only), and that split."""
    from dermsynth.train import TrainConfig, train

    root = tmp_path_factory.mktemp("p2p")
    split = split_dataset(small, seed=0)
    split.save(root / "split.json")
    res = train(TrainConfig(out=str(root / "gan"), split=str(root / "split.json"), **P2P_TINY), dataset=small,
                progress=False)
    return res.checkpoint, root / "split.json", split


@pytest.mark.filterwarnings("ignore:phantom has no cached superpixels")  # SLIC on the fly is the point here
def test_train_split_trains_on_the_training_part_only(small, p2p_on_train_split, tmp_path):
    from dermsynth.train import TrainConfig, train

    ckpt, path, split = p2p_on_train_split
    data_info = json.loads((ckpt.parent / "data.json").read_text())
    assert data_info["count"] == len(split.indices("train")) < len(small)
    assert json.loads((ckpt.parent / "config.json").read_text())["split"] == str(path)
    other = split_dataset(generate_phantom(40, 16, seed=9), seed=0)
    other.ids = [f"x{i}" for i in range(len(other.ids))]
    other.save(tmp_path / "other.json")
    with pytest.raises(DataError, match="not in the split"):
        train(TrainConfig(out=str(tmp_path / "g"), split=str(tmp_path / "other.json"), **P2P_TINY), dataset=small,
              progress=False)


@pytest.mark.filterwarnings("ignore:phantom has no cached superpixels")  # SLIC on the fly is the point here
def test_a_pix2pixhd_checkpoint_translates_the_training_maps_labelled_by_their_source(small, p2p_on_train_split,
                                                                                         tmp_path):
    from dermsynth.classify.synthetic import TranslationSource, open_source

    ckpt, path, split = p2p_on_train_split
    res = run_augment_experiment(_small_cfg(tmp_path / "run", conditions=["real", "real+synth:1"], seeds=1,
                                            split=str(path), synthetic=str(ckpt)), dataset=small, progress=False)
    source_info = res.results["synthetic_source"]
    assert source_info["kind"] == "TranslationSource" and source_info["instance"] is True
    train_ids = [small.ids[i] for i in split.indices("train")]
    class_of = {i: small.class_names[y] for i, y in zip(small.ids, small.labels)}
    synthetic = [r for r in _manifest(res.out) if r["kind"] == "synthetic"]
    assert len(synthetic) == len(train_ids)
    sources = [r["id"].split(":")[1] for r in synthetic]
    assert sorted(sources) == sorted(train_ids)  # each training map once; never a validation or test map
    assert all(r["class"] == class_of[s] for r, s in zip(synthetic, sources))

    # more images than maps (balancing): each later pass turns or mirrors the maps, exactly
    source = open_source(ckpt)
    assert isinstance(source, TranslationSource)
    part = split.apply(small)["train"]
    source.bind_training(part)
    c = int(np.bincount(part.labels).argmin())
    k = int((part.labels == c).sum())
    counts = np.zeros(len(small.class_names), int)
    counts[c] = 2 * k + 1
    drawn = source.draw(counts, small.class_names, 16, seed=3)
    assert drawn.labels.tolist() == [c] * (2 * k + 1)
    assert [i.split(":")[2] for i in drawn.ids] == ["d0"] * k + ["d1"] * k + ["d2"]
    assert len(set(drawn.ids)) == len(drawn.ids)
    assert np.array_equal(drawn.images, source.draw(counts, small.class_names, 16, seed=3).images)

    with pytest.raises(DermsynthError, match="run it with --size 16"):
        run_augment_experiment(_small_cfg(tmp_path / "r28", size=28, conditions=["real", "real+synth:1"], seeds=1,
                                          synthetic=str(ckpt)), progress=False)
    with pytest.raises(DermsynthError, match="drop the synthetic class"):
        open_source(ckpt, class_name=STARVED)
