"""Classifier networks: output shapes at several sizes, parameter counts, seeded init, local weights."""

import pytest
import torch

from dermsynth.classify import ResNet18, SmallCNN, build_classifier, count_parameters, load_pretrained
from dermsynth.errors import DermsynthError


@pytest.mark.parametrize("name", ["smallcnn", "resnet18"])
@pytest.mark.parametrize("size", [28, 32, 64])
def test_output_shape_at_each_size(name, size):
    model = build_classifier(name, 4, size, seed=0).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 4) and torch.isfinite(out).all()
    assert model.num_classes == 4


def test_smallcnn_is_size_agnostic_with_one_parameter_count():
    counts = {size: count_parameters(build_classifier("smallcnn", 3, size)) for size in (16, 28, 32, 64)}
    assert len(set(counts.values())) == 1
    assert 100_000 < counts[28] < 1_000_000
    # at 28 px the three pooling stages leave exactly the 3x3 grid the dense layer expects
    model = SmallCNN(3)
    assert model.features(torch.zeros(1, 3, 28, 28)).shape == (1, 128, 3, 3)


def test_resnet18_matches_the_reference_parameter_count():
    assert count_parameters(ResNet18(1000, stem="imagenet")) == 11_689_512  # torchvision resnet18
    small = build_classifier("resnet18", 4, 32)
    assert small.stem == "small" and isinstance(small.maxpool, torch.nn.Identity)
    assert build_classifier("resnet18", 4, 224).stem == "imagenet"
    with torch.no_grad():
        assert build_classifier("resnet18", 4, 224).eval()(torch.zeros(1, 3, 224, 224)).shape == (1, 4)


def test_seed_fixes_the_initial_weights_without_touching_the_global_rng():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_classifier("smallcnn", 4, 28, seed=7)
    b = build_classifier("smallcnn", 4, 28, seed=7)
    assert torch.rand(1) == before
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    c = build_classifier("smallcnn", 4, 28, seed=8)
    assert not torch.equal(a.fc.weight, c.fc.weight)


def test_bad_names_and_options_are_clear_errors():
    with pytest.raises(DermsynthError, match="unknown classifier"):
        build_classifier("vgg", 4, 28)
    with pytest.raises(DermsynthError, match="cannot build"):
        build_classifier("smallcnn", 4, 28, nonsense=1)
    with pytest.raises(DermsynthError, match="stem"):
        build_classifier("resnet18", 4, 64, stem="huge")


def test_load_pretrained_from_a_local_file_skips_a_mismatched_head(tmp_path):
    source = ResNet18(1000, stem="imagenet")
    path = tmp_path / "resnet18.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    model = build_classifier("resnet18", 4, 224, seed=0)
    head = model.fc.weight.clone()
    skipped = load_pretrained(model, path)
    assert skipped == ["fc.weight", "fc.bias"]
    assert torch.equal(model.layer3[1].conv2.weight, source.layer3[1].conv2.weight)
    assert torch.equal(model.fc.weight, head)
    # ImageNet weights into the small stem: its 3x3 conv1 must be ignored explicitly
    small = build_classifier("resnet18", 4, 32)
    with pytest.raises(DermsynthError, match="shape mismatch: conv1.weight"):
        load_pretrained(small, path)
    assert "conv1.weight" in load_pretrained(small, path, ignore=("conv1.",))
    # the registry accepts the path too
    assert torch.equal(build_classifier("resnet18", 4, 224, pretrained=path).layer1[0].conv1.weight,
                       source.layer1[0].conv1.weight)


def test_load_pretrained_rejects_missing_corrupt_and_foreign_files(tmp_path):
    model = build_classifier("resnet18", 4, 64)
    with pytest.raises(DermsynthError, match="not found"):
        load_pretrained(model, tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DermsynthError, match="not a readable"):
        load_pretrained(model, tmp_path / "junk.pt")
    torch.save(SmallCNN(4).state_dict(), tmp_path / "cnn.pt")
    with pytest.raises(DermsynthError, match="do not fit ResNet18.*missing"):
        load_pretrained(model, tmp_path / "cnn.pt")
