"""Grouped, stratified splits: no shared lesion, class proportions, reproducibility, save/load round trip."""

import numpy as np
import pytest
from conftest import SHARED_DATA, needs_shared

from dermsynth.classify import Split, grouped_split, split_dataset
from dermsynth.data.dataset import LesionDataset
from dermsynth.errors import DataError


def _lesions(n_groups: int = 400, seed: int = 0):
    """Imbalanced classes, 1-5 images per lesion, a few lesions with a second label."""
    rng = np.random.default_rng(seed)
    group_label = rng.choice(4, size=n_groups, p=[0.5, 0.25, 0.15, 0.1])
    sizes = rng.integers(1, 6, size=n_groups)
    labels = np.repeat(group_label, sizes)
    groups = np.repeat([f"les{g:04d}" for g in range(n_groups)], sizes)
    mixed = rng.random(len(labels)) < 0.03
    labels[mixed] = rng.integers(0, 4, mixed.sum())
    ids = [f"img{i:05d}" for i in range(len(labels))]
    return labels, groups, ids


def test_no_group_is_shared_between_splits():
    labels, groups, ids = _lesions()
    split = grouped_split(labels, groups, ids, seed=0)
    seen: dict[str, str] = {}
    for g, s in zip(split.groups, split.splits):
        assert seen.setdefault(g, s) == s, f"group {g} in {seen[g]} and {s}"
    assert sorted(np.concatenate([split.indices(n) for n in split.names])) == list(range(len(ids)))


def test_split_sizes_and_class_proportions_follow_the_fractions():
    labels, groups, ids = _lesions()
    split = grouped_split(labels, groups, ids, fractions=(0.7, 0.15, 0.15), seed=1)
    overall = np.bincount(labels, minlength=4) / len(labels)
    counts = split.class_counts(4)
    for name, frac in zip(split.names, (0.7, 0.15, 0.15)):
        assert abs(counts[name].sum() / len(labels) - frac) < 0.02, name
        assert np.all(counts[name] > 0), f"{name} lacks a class"
        assert np.abs(counts[name] / counts[name].sum() - overall).max() < 0.04, name
    # other fractions, e.g. no validation set
    two = grouped_split(labels, groups, ids, fractions=(0.8, 0.0, 0.2), seed=1)
    assert len(two.indices("val")) == 0 and abs(len(two.indices("test")) / len(labels) - 0.2) < 0.02


def test_group_label_is_the_majority_label():
    labels = [0, 0, 1, 1, 1, 0, 2, 2, 2, 0, 1, 2]
    groups = ["a", "a", "a", "b", "b", "b", "c", "c", "d", "e", "f", "g"]
    split = grouped_split(labels, groups, fractions=(0.5, 0.5, 0.0), seed=0)
    # groups a (majority 0) and e (0) are the only class-0 groups: one in each nonempty split
    assert {split.splits[0], split.splits[9]} == {"train", "val"}


def test_reproducible_by_seed():
    labels, groups, ids = _lesions()
    a = grouped_split(labels, groups, ids, seed=3)
    assert a.splits == grouped_split(labels, groups, ids, seed=3).splits
    assert a.splits != grouped_split(labels, groups, ids, seed=4).splits


@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_round_trip_through_save_and_load(tmp_path, suffix):
    labels, groups, ids = _lesions(60)
    split = grouped_split(labels, groups, ids, seed=2)
    loaded = Split.load(split.save(tmp_path / f"split{suffix}"))
    assert (loaded.ids, loaded.splits, loaded.groups, loaded.labels) == (split.ids, split.splits, split.groups,
                                                                         split.labels)
    assert loaded.names == split.names
    assert loaded.fractions.keys() == split.fractions.keys()
    if suffix == ".json":
        assert loaded.seed == 2 and loaded.fractions == split.fractions


def test_split_dataset_applies_by_id_to_a_reordered_dataset(tmp_path):
    labels, groups, ids = _lesions(80)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (len(labels), 8, 8, 3), dtype=np.uint8)
    data = LesionDataset(images=images, labels=labels, class_names=["nv", "mel", "bkl", "bcc"], ids=ids,
                         groups=list(groups))
    split = Split.load(split_dataset(data, seed=0).save(tmp_path / "s.json"))
    order = rng.permutation(len(data))
    parts = split.apply(data.subset(order))  # same images, another order (e.g. prepared at another size)
    assert sum(len(p) for p in parts.values()) == len(data)
    for name, part in parts.items():
        assert set(part.ids) == {ids[i] for i in split.indices(name)}
        for i, img in zip(part.ids, part.images):
            assert np.array_equal(img, images[ids.index(i)])
    with pytest.raises(DataError, match="not in the split"):
        split.apply(LesionDataset(images=images[:2], labels=labels[:2], class_names=data.class_names,
                                  ids=["x", "y"]))


def test_too_few_groups_and_bad_input_are_data_errors(tmp_path):
    labels = [0] * 10 + [1, 1]
    groups = [f"g{i}" for i in range(10)] + ["h", "h"]  # class 1: one lesion only
    with pytest.raises(DataError, match="class 'mel' has 1 group"):
        grouped_split(labels, groups, class_names=["nv", "mel"])
    with pytest.raises(DataError, match="fractions"):
        grouped_split([0, 1], ["a", "b"], fractions=(0.5, 0.6, 0.1))
    with pytest.raises(DataError, match="labelled"):
        grouped_split([0, -1], ["a", "b"])
    with pytest.raises(DataError, match="not found"):
        Split.load(tmp_path / "missing.json")
    (tmp_path / "bad.csv").write_text("id,split\nimg1,train\n")
    with pytest.raises(DataError, match="not a split file"):
        Split.load(tmp_path / "bad.csv")


@needs_shared
def test_ham10000_split_never_shares_a_lesion_id_and_keeps_class_proportions():
    import pandas as pd

    meta = pd.read_csv(SHARED_DATA / "ham10000" / "HAM10000_metadata.csv")
    classes = sorted(meta["dx"].unique())
    labels = meta["dx"].map(classes.index).to_numpy()
    split = grouped_split(labels, meta["lesion_id"], meta["image_id"], seed=0, class_names=classes)
    lesions = {s: set(meta["lesion_id"][split.indices(s)]) for s in split.names}
    assert not (lesions["train"] & lesions["val"] or lesions["train"] & lesions["test"] or lesions["val"] & lesions["test"])
    overall = np.bincount(labels) / len(labels)
    for name, counts in split.class_counts(len(classes)).items():
        assert np.abs(counts / counts.sum() - overall).max() < 0.02, name
