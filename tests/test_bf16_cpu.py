"""bf16 on CPUs that compute it natively (issue 18 §5): detected (or forced with DERMSYNTH_CPU_BF16), recorded in
config.json's runtime, used by GAN training (with channels_last) and the classifier, and exact on resume.

The rest of the suite pins float32 (conftest) so that its figures do not depend on the CPU; here it is turned on.
bf16 arithmetic is emulated where the CPU lacks it, so these tests run anywhere, just slower."""

import json

import numpy as np
import pytest
import torch

from _runs import assert_same_training_state, resumed_and_uninterrupted
from dermsynth.classify.fit import train_classifier
from dermsynth.models.classifiers import build_classifier
from dermsynth.device import bf16_native, cpu_has_bf16
from dermsynth.errors import DermsynthError
from dermsynth.train import TrainConfig, train

TINY = dict(model="dcgan", size=16, width=8, z_dim=16, batch_size=16, log_every=2, sample_every=100,
            checkpoint_every=100, conditional=True)


def test_detection_and_its_override(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setenv("DERMSYNTH_CPU_BF16", "1")
    assert bf16_native(cpu)
    monkeypatch.setenv("DERMSYNTH_CPU_BF16", "0")
    assert not bf16_native(cpu)
    monkeypatch.delenv("DERMSYNTH_CPU_BF16")
    assert bf16_native(cpu) == cpu_has_bf16()  # auto: the CPU's flags
    monkeypatch.setenv("DERMSYNTH_CPU_BF16", "yes")
    with pytest.raises(DermsynthError, match="DERMSYNTH_CPU_BF16"):
        bf16_native(cpu)


def test_gan_training_runs_in_bf16_and_records_it(tmp_path, monkeypatch, noise_dataset):
    runs = {}
    for flag in ("0", "1"):
        monkeypatch.setenv("DERMSYNTH_CPU_BF16", flag)
        out = tmp_path / flag
        train(TrainConfig(out=str(out), steps=4, device="cpu", **TINY), dataset=noise_dataset, progress=False)
        runtime = json.loads((out / "config.json").read_text())["runtime"]
        assert runtime["bf16"] is (flag == "1") and runtime["channels_last"] is (flag == "1")
        runs[flag] = torch.load(out / "latest.pt", weights_only=True)["networks"]["generator"]
    # the same seeds, other arithmetic: bf16 really ran (the weights differ, and stay finite and close)
    diffs = [float((runs["0"][k].float() - runs["1"][k].float()).abs().max()) for k in runs["0"]]
    assert max(diffs) > 0 and all(np.isfinite(diffs)) and max(diffs) < 0.1


def test_bf16_run_resumes_bit_exactly(tmp_path, monkeypatch, noise_dataset):
    monkeypatch.setenv("DERMSYNTH_CPU_BF16", "1")
    a, b = resumed_and_uninterrupted(tmp_path, 8, 3, dataset=noise_dataset, device="cpu", **TINY)
    assert_same_training_state(a, b)


def test_classifier_uses_bf16_where_native(monkeypatch):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (48, 16, 16, 3), dtype=np.uint8)
    labels = np.arange(48) % 3
    outputs = {}
    for flag in ("0", "1"):
        monkeypatch.setenv("DERMSYNTH_CPU_BF16", flag)
        model = build_classifier("smallcnn", 3, 16, seed=0)
        fitted = train_classifier(model, images, labels, epochs=2, batch_size=16, transforms=False, patience=None)
        outputs[flag] = torch.cat([p.detach().flatten() for p in fitted.model.parameters()])
    assert torch.isfinite(outputs["1"]).all() and not torch.equal(outputs["0"], outputs["1"])
