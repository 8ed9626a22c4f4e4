"""Tests for the feature extractors: the FID Inception-v3 (architecture, weights file handling) and the
project's own classifier extractor (training, checkpoint, features), and the registry.

The real FID weights cannot be downloaded here, so Inception is tested on random weights: shapes, the
pytorch-fid key names, strict reloading of its own state dict, and the error messages.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from dermsynth.classify.extractor import train_feature_extractor
from dermsynth.classify.fit import IMAGENET_MEAN, IMAGENET_STD
from dermsynth.data.prepare import load_dataset
from dermsynth.errors import DermsynthError
from dermsynth.metrics import features as features_module
from dermsynth.metrics.features import (
    EXTRACTORS,
    SHIPPED_EXTRACTOR,
    FeatureExtractor,
    PenultimateFeatures,
    build_extractor,
    load_classifier_extractor,
    load_shipped_extractor,
    register_extractor,
    resolve_extractor,
    shipped_extractor_card,
    shipped_extractor_path,
)
from dermsynth.metrics.inception import WEIGHTS_ENV, FIDInceptionV3, load_fid_inception

# ---------------------------------------------------------------------------------------
# FID Inception-v3
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    torch.manual_seed(0)
    model = FIDInceptionV3().eval()
    for m in model.modules():  # non-trivial running statistics, so that a reload is really checked
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("weights") / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(model.state_dict(), path)
    return model, path


def test_inception_has_the_pytorch_fid_layout(inception_file):
    model, _ = inception_file
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    # key names and shapes of pt_inception-2015-12-05-6726825d.pth (torchvision Inception3 names, 1008-way fc)
    expected = {
        "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
        "Conv2d_4a_3x3.bn.running_var": (192,),
        "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
        "Mixed_5d.branch5x5_2.conv.weight": (64, 48, 5, 5),
        "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
        "Mixed_6b.branch7x7_2.conv.weight": (128, 128, 1, 7),
        "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
        "Mixed_7a.branch7x7x3_4.conv.weight": (192, 192, 3, 3),
        "Mixed_7b.branch3x3dbl_1.conv.weight": (448, 1280, 1, 1),
        "Mixed_7c.branch_pool.conv.weight": (192, 2048, 1, 1),
        "fc.weight": (1008, 2048),
        "fc.bias": (1008,),
    }
    for key, shape in expected.items():
        assert shapes.get(key) == shape, key
    assert not any(k.startswith("AuxLogits") for k in shapes)
    assert all(m.eps == 1e-3 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    n_params = sum(p.numel() for p in model.parameters())
    assert 23_000_000 < n_params < 24_500_000, n_params  # Inception-v3 without the auxiliary head


def test_inception_forward_and_strict_reload(inception_file):
    model, path = inception_file
    x = torch.rand(2, 3, 40, 56)  # any size: resized to 299x299 inside
    with torch.no_grad():
        feats = model(x)
    assert feats.shape == (2, 2048) and torch.isfinite(feats).all()
    assert (feats >= 0).all()  # pool3 of ReLU outputs
    loaded = load_fid_inception(path)
    assert not loaded.training
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), feats)
    loaded.load_state_dict(torch.load(path, weights_only=True), strict=True)


def test_inception_extractor_from_env_matches_uint8_and_float(inception_file, monkeypatch):
    model, path = inception_file
    monkeypatch.setenv(WEIGHTS_ENV, str(path))
    ext = build_extractor("inception")
    assert ext.name == "inception" and ext.dim == 2048
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    from_uint8 = ext(images, batch_size=1, device="cpu")  # uint8 NHWC, one image per batch
    as_float = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255  # float NCHW in [0, 1]
    with torch.no_grad():
        np.testing.assert_allclose(from_uint8, model(as_float).numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ext(as_float, batch_size=2, device="cpu"), from_uint8, rtol=1e-4, atol=1e-5)


def test_inception_weights_errors(tmp_path, monkeypatch):
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    with pytest.raises(DermsynthError, match=f"{WEIGHTS_ENV}.*classifier") as info:
        build_extractor("inception")
    assert "\n" not in str(info.value)
    missing = tmp_path / "nothere.pth"
    with pytest.raises(DermsynthError, match="nothere.pth: FID Inception weights file not found"):
        load_fid_inception(missing)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a torch file")
    with pytest.raises(DermsynthError, match="garbage.pth: not a readable PyTorch state dict"):
        load_fid_inception(garbage)
    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(3)}, other)
    with pytest.raises(DermsynthError, match="other.pth: not the FID Inception-v3 weights .*missing"):
        load_fid_inception(other)
    monkeypatch.setenv(WEIGHTS_ENV, str(garbage))
    with pytest.raises(DermsynthError, match="garbage.pth"):
        build_extractor("inception")


# ---------------------------------------------------------------------------------------
# The project's classifier extractor
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def classifier_ckpt(tmp_path_factory):
    data = load_dataset("phantom:96", size=16)
    path = tmp_path_factory.mktemp("extractor") / "extractor.pt"
    return data, train_feature_extractor(data, path, size=16, epochs=2, device="cpu")


def test_classifier_extractor_trains_saves_and_extracts(classifier_ckpt):
    data, path = classifier_ckpt
    state = torch.load(path, weights_only=True)
    assert state["arch"] == "smallcnn" and state["image_size"] == 16 and state["class_names"] == data.class_names
    assert len(state["history"]) == 2 and sum(state["split_sizes"].values()) == len(data)
    ext = build_extractor("classifier", checkpoint=path)
    assert ext.name == "classifier" and ext.dim == 128
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert ext.version == f"classifier:extractor.pt@{digest[:12]}"  # another training run: another version
    assert "comparable only within this extractor version" in ext.description
    assert ext.provenance()["extractor_version"] == ext.version and "same extractor version" in ext.warning
    images = np.asarray(data.images[:10])
    feats = ext(images, batch_size=4, device="cpu")
    assert feats.shape == (10, 128) and feats.dtype == np.float32
    np.testing.assert_allclose(feats, ext(images, batch_size=10, device="cpu"), rtol=1e-5, atol=1e-6)
    # the features are the input of the classifier's fc: fc(features) reproduces its logits
    net = ext.network
    with torch.no_grad():
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
        mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD))
        logits = net.classifier((x - mean) / std)  # the normalisation the classifier was trained with
        torch.testing.assert_close(net.classifier.fc(torch.from_numpy(feats)), logits, rtol=1e-4, atol=1e-4)
    # other sizes are resized to the extractor's
    big = np.repeat(np.repeat(images, 2, axis=1), 2, axis=2)
    assert ext(big, device="cpu").shape == (10, 128)


def test_classifier_extractor_errors(classifier_ckpt, tmp_path):
    with pytest.raises(DermsynthError, match="needs its checkpoint"):
        build_extractor("classifier")
    with pytest.raises(DermsynthError, match="missing.pt: feature-extractor checkpoint not found"):
        load_classifier_extractor(tmp_path / "missing.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"generator": {}}, foreign)
    with pytest.raises(DermsynthError, match="foreign.pt: not a dermsynth feature-extractor checkpoint"):
        load_classifier_extractor(foreign)
    unlabelled = load_dataset("phantom:32", size=16).subset(np.arange(32))
    unlabelled.labels[:] = -1
    with pytest.raises(DermsynthError, match="labelled images"):
        train_feature_extractor(unlabelled, tmp_path / "x.pt", size=16, epochs=1, device="cpu")


def test_registry_and_input_checks(monkeypatch):
    with pytest.raises(DermsynthError, match="unknown feature extractor 'nope'"):
        build_extractor("nope")
    monkeypatch.setitem(EXTRACTORS, "mean-colour", None)  # restored after the test
    net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    register_extractor("mean-colour", lambda: FeatureExtractor("mean-colour", 3, net, "per-channel means"))
    ext = build_extractor("mean-colour")
    images = np.random.default_rng(1).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    np.testing.assert_allclose(ext(images, batch_size=2, device="cpu"), images.mean(axis=(1, 2)) / 255, rtol=1e-5)
    for bad in (images.astype(np.float32), images[..., :2], torch.from_numpy(images)):
        with pytest.raises(DermsynthError, match="feature extraction needs"):
            ext(bad, device="cpu")
    with pytest.raises(DermsynthError, match="no final 'fc'"):
        PenultimateFeatures(net, 8)


# ---------------------------------------------------------------------------------------
# The shipped extractor (derm-smallcnn-v1) and --extractor auto
# ---------------------------------------------------------------------------------------


def test_shipped_extractor_is_in_the_package_with_its_card():
    path, card = shipped_extractor_path(), shipped_extractor_card()
    assert path.is_file() and path.parent.name == "weights" and path.parent.parent.name == "metrics"
    assert path.stat().st_size < 8 * 2**20  # a few MB
    assert card["name"] == SHIPPED_EXTRACTOR and card["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert card["data_licence"] == "CC BY-NC 4.0" and "Tschandl" in card["data_citation"]
    assert "dermsynth train-extractor --data" in card["command"] and "lesion" in card["split"]
    assert 0.5 < card["test_macro_auc"] <= 1
    notice = (path.parent / "NOTICE").read_text()
    assert "CC BY-NC 4.0" in notice and SHIPPED_EXTRACTOR in notice
    # the checkpoint itself agrees with the card
    state = torch.load(path, weights_only=True)
    assert state["test_auc"] == pytest.approx(card["test_macro_auc"]) and state["image_size"] == card["image_size"]
    # and setuptools installs it: the package-data globs cover these files
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["dermsynth.metrics"]
    for f in (path, path.with_suffix(".json"), path.parent / "NOTICE"):
        assert any(Path("weights", f.name).match(g) for g in globs), f.name


def test_shipped_extractor_features():
    ext = load_shipped_extractor()
    assert (ext.name, ext.version, ext.dim) == ("shipped", SHIPPED_EXTRACTOR, 128)
    assert "CC BY-NC 4.0" in ext.description and SHIPPED_EXTRACTOR in ext.warning
    images = np.asarray(load_dataset("phantom:8", size=32).images)
    feats = ext(images, device="cpu")
    assert feats.shape == (8, 128) and np.isfinite(feats).all() and feats.std(axis=0).max() > 0
    # deterministic, and images of another size are resized to the network's input
    np.testing.assert_array_equal(feats, build_extractor("shipped")(images, device="cpu"))
    assert ext(np.asarray(load_dataset("phantom:8", size=16).images), device="cpu").shape == (8, 128)


def test_shipped_extractor_refuses_weights_that_do_not_match_its_card(tmp_path, monkeypatch):
    folder = tmp_path / "weights"
    folder.mkdir()
    for suffix in (".pt", ".json"):
        shutil.copy(shipped_extractor_path(suffix), folder / f"{SHIPPED_EXTRACTOR}{suffix}")
    monkeypatch.setattr(features_module, "shipped_extractor_path",
                        lambda suffix=".pt": folder / f"{SHIPPED_EXTRACTOR}{suffix}")
    assert load_shipped_extractor().version == SHIPPED_EXTRACTOR  # the copy is intact
    card = json.loads((folder / f"{SHIPPED_EXTRACTOR}.json").read_text())
    card["sha256"] = "0" * 64
    (folder / f"{SHIPPED_EXTRACTOR}.json").write_text(json.dumps(card))
    with pytest.raises(DermsynthError, match="do not match its card"):
        load_shipped_extractor()
    (folder / f"{SHIPPED_EXTRACTOR}.pt").unlink()
    with pytest.raises(DermsynthError, match="weights are missing; reinstall"):
        load_shipped_extractor()


def test_auto_prefers_inception_then_a_checkpoint_then_the_shipped_network(inception_file, classifier_ckpt,
                                                                         monkeypatch):
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    _, weights = inception_file
    _, ckpt = classifier_ckpt
    assert resolve_extractor("auto").version == SHIPPED_EXTRACTOR
    assert resolve_extractor("auto", extractor_checkpoint=ckpt).name == "classifier"
    both = resolve_extractor("auto", inception_weights=weights, extractor_checkpoint=ckpt)
    assert both.name == "inception" and both.comparable_with_published and "published" in both.warning
    monkeypatch.setenv(WEIGHTS_ENV, str(weights))
    assert resolve_extractor("auto").name == "inception"
    assert resolve_extractor("shipped").version == SHIPPED_EXTRACTOR  # explicit choices win
    assert resolve_extractor("none") is None
    with pytest.raises(DermsynthError, match="unknown --extractor 'nope'; choose from auto, inception, shipped"):
        resolve_extractor("nope")
