"""Tests for the evaluation report (dermsynth.evaluate), the truncation sweep and the CLI commands, on a tiny
phantom run: a DCGAN trained for a few steps at 16 px with the D over-fitting monitor, and a classifier
feature extractor trained for one epoch."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from dermsynth.cli import main
from dermsynth.data.prepare import load_dataset
from dermsynth.errors import DermsynthError
from dermsynth.evaluate import evaluate
from dermsynth.classify.extractor import train_feature_extractor
from dermsynth.metrics.features import SHIPPED_EXTRACTOR
from dermsynth.truncation import THRESHOLDS, truncation_sweep
from dermsynth.sample import load_generator, write_samples
from dermsynth.train import TrainConfig, train

SECTIONS = ("swd", "features", "colour", "memorisation", "truncation", "latent_walk", "overfitting")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    data = load_dataset("phantom:64", size=16)
    cfg = TrainConfig(model="dcgan", size=16, width=8, z_dim=16, steps=4, batch_size=16, ema_beta=0.0, log_every=2,
                      sample_every=4, checkpoint_every=4, overfit_holdout=16, device="cpu", out=str(root / "run"))
    result = train(cfg, dataset=data, progress=False)
    extractor = train_feature_extractor(data, root / "extractor.pt", size=16, epochs=1, device="cpu")
    heldout = load_dataset("phantom:48", size=16, seed=1)  # other phantoms: not in the training set
    return {"root": root, "data": data, "heldout": heldout, "checkpoint": result.checkpoint, "extractor": extractor}


def _numbers(tree) -> list[float]:
    """Every number in a JSON tree."""
    if isinstance(tree, dict):
        return [x for v in tree.values() for x in _numbers(v)]
    if isinstance(tree, list):
        return [x for v in tree for x in _numbers(v)]
    return [float(tree)] if isinstance(tree, (int, float)) and not isinstance(tree, bool) else []


def test_report_has_every_section_and_the_json_every_number(run):
    out = run["root"] / "full"
    res = evaluate(run["heldout"], None, train=run["data"], checkpoint=run["checkpoint"], out=out,
                   extractor_checkpoint=run["extractor"], thresholds=(0.1, 1.0, None), sweep_n=24, device="cpu",
                   progress=False)
    numbers = json.loads(res.json.read_text())
    assert numbers == json.loads(json.dumps(res.numbers, default=str))
    for key in SECTIONS:
        assert numbers[key]["status"] == "ok", (key, numbers[key])
    assert numbers["inputs"]["fake"]["n"] == 48 and numbers["inputs"]["size"] == 16
    swd_, feats = numbers["swd"], numbers["features"]
    assert swd_["n_images"] == 24  # generated vs real and the real-vs-real bound at one n
    assert swd_["swd"] > swd_["swd_lower_bound"] > 0  # 4 training steps: far from real
    assert len(swd_["per_level"]) == len(swd_["lower_bound_per_level"]) == len(swd_["resolutions"])
    assert feats["extractor"] == "classifier" and feats["fid"]["fid"] > 0 and feats["dim"] == 128
    assert feats["extractor_version"].startswith("classifier:extractor.pt@")
    assert "same extractor version" in feats["extractor_warning"]
    assert numbers["truncation"]["metric"] == "swd" and numbers["truncation"]["extractor"] is None
    for key in ("precision", "recall", "density", "coverage"):
        assert 0 <= feats["prdc"][key] <= (1 + 1 / 5 if key == "density" else 1)
    assert set(numbers["colour"]["class_statistics"]["real"]) == {f"{c} (real)" for c in run["data"].class_names}
    assert set(numbers["colour"]["class_statistics"]["generated"]) == {"all (generated)"}
    assert 0 < numbers["colour"]["histogram_jsd"]["mean"] <= 1
    mem = numbers["memorisation"]
    assert mem["n_generated"] == 48 and mem["n_train"] == 64 and mem["n_heldout"] == 48
    assert mem["median_heldout_distance"] > 0 and len(mem["flagged"]) == mem["n_flagged"]
    assert mem["heldout_fraction_in_train"] == 0
    assert numbers["truncation"]["thresholds"] == [0.1, 1.0, None] and len(numbers["truncation"]["values"]) == 3
    assert numbers["overfitting"]["rows"]["step"] == [2, 4]
    assert all(math.isfinite(x) for x in _numbers(numbers))

    html = res.report.read_text()
    for heading in ("Real vs generated", "Sliced Wasserstein", "FID, KID", "Colour statistics", "Memorisation audit",
                    "Truncation sweep", "Latent walks", "Discriminator over-fitting"):
        assert f"<h2>{heading}" in html
    assert "Not computed" not in html
    assert html.count("data:image/png;base64,") == 7  # 2 grids, colour, memorisation, sweep, walk, over-fitting
    assert "comparable only within this extractor version" in html and feats["extractor_version"] in html


def test_sections_that_cannot_be_computed_say_why(run, tmp_path, monkeypatch):
    monkeypatch.delenv("DERMSYNTH_INCEPTION_WEIGHTS", raising=False)
    fake = load_dataset("phantom:40", size=16, seed=2)
    res = evaluate(run["heldout"], fake, out=tmp_path, device="cpu", progress=False)
    numbers = res.numbers
    assert numbers["swd"]["status"] == numbers["colour"]["status"] == "ok"
    # no Inception weights, no checkpoint: the shipped network, named with its version and warning
    feats = numbers["features"]
    assert feats["status"] == "ok" and feats["extractor"] == "shipped"
    assert feats["extractor_version"] == SHIPPED_EXTRACTOR and feats["fid"]["fid"] > 0
    assert "--train" in numbers["memorisation"]["reason"]
    for key in ("truncation", "latent_walk", "overfitting"):
        assert "--checkpoint" in numbers[key]["reason"]
    html = res.report.read_text()
    assert html.count("Not computed") == 4
    assert f"value ({SHIPPED_EXTRACTOR})" in html and "no FID Inception weights were given" in html
    assert f"compare only with numbers from the same extractor version ({SHIPPED_EXTRACTOR})" in html
    with pytest.raises(DermsynthError, match="--fake.*--checkpoint"):
        evaluate(run["heldout"], None, out=tmp_path, device="cpu", progress=False)
    with pytest.raises(DermsynthError, match="FID Inception weights not given"):
        evaluate(run["heldout"], fake, out=tmp_path, extractor="inception", device="cpu", progress=False)


def test_memorisation_warns_when_real_overlaps_train(run, tmp_path):
    fake = load_dataset("phantom:40", size=16, seed=2)
    res = evaluate(run["data"], fake, train=run["data"], out=tmp_path, extractor="none", device="cpu", progress=False)
    assert res.numbers["memorisation"]["heldout_fraction_in_train"] == 1.0
    assert "100.0% of the real (held-out) images are identical to training images" in res.report.read_text()


def test_overfitting_section_skipped_without_monitor(run, tmp_path):
    cfg = TrainConfig(model="dcgan", size=16, width=8, z_dim=16, steps=1, batch_size=16, ema_beta=0.0, device="cpu",
                      out=str(tmp_path / "plain"))
    ckpt = train(cfg, dataset=run["data"], progress=False).checkpoint
    res = evaluate(run["heldout"], None, checkpoint=ckpt, out=tmp_path / "out", extractor="none",
                   thresholds=(0.5, None), sweep_n=16, device="cpu", progress=False)
    assert res.numbers["truncation"]["status"] == "ok"
    assert "--overfit-holdout" in res.numbers["overfitting"]["reason"]
    assert res.numbers["features"]["reason"] == "--extractor none was given"


def test_truncation_sweep_reuses_the_latents(run, tmp_path):
    model = load_generator(run["checkpoint"])
    real = np.asarray(run["heldout"].images)
    sweep = truncation_sweep(model, real, thresholds=(0.05, 100.0, None), n=32, device="cpu")
    # a threshold no component exceeds redraws nothing: the same latents, the same images, the same SWD
    assert sweep.values[1] == sweep.values[2]
    assert sweep.values[0] != sweep.values[2]
    assert sweep.best in (0.05, 100.0, None) and sweep.n_images == 32 and sweep.extractor is None
    assert "none" in sweep.table() and sweep.plot(tmp_path / "sweep.png").stat().st_size > 0
    assert THRESHOLDS == (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, None)
    with pytest.raises(DermsynthError, match="unknown truncation-sweep metric"):
        truncation_sweep(model, real, metric="is")
    with pytest.raises(DermsynthError, match="needs a feature extractor"):
        truncation_sweep(model, real, metric="fid")
    with pytest.raises(DermsynthError, match="generator makes 16px"):
        truncation_sweep(model, np.zeros((8, 32, 32, 3), np.uint8), thresholds=(None,), n=8, device="cpu")


def test_cli_train_extractor_and_evaluate(run, tmp_path, monkeypatch):
    monkeypatch.setenv("DERMSYNTH_CACHE", str(tmp_path / "cache"))
    runner = CliRunner()
    ckpt = tmp_path / "ext.pt"
    res = runner.invoke(main, ["train-extractor", "--data", "phantom:48", "--size", "16", "--out", str(ckpt),
                               "--epochs", "1", "--device", "cpu", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "comparable only within this extractor version" in res.output and ckpt.is_file()
    write_samples(run["checkpoint"], n=24, out=tmp_path / "fake", progress=False)
    res = runner.invoke(main, ["evaluate", "--real", "phantom:48", "--fake", str(tmp_path / "fake"), "--size", "16",
                               "--extractor-checkpoint", str(ckpt), "--out", str(tmp_path / "ev"), "--device", "cpu",
                               "--quiet"])
    assert res.exit_code == 0, res.output
    assert "memorisation: skipped" in res.output and (tmp_path / "ev" / "report.html").is_file()
    numbers = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert numbers["features"]["status"] == "ok" and numbers["inputs"]["fake"]["n"] == 24
    res = runner.invoke(main, ["evaluate", "--real", "phantom:48", "--extractor", "inception",
                               "--inception-weights", str(tmp_path / "none.pth"), "--checkpoint", str(run["checkpoint"]),
                               "--out", str(tmp_path / "ev2"), "--device", "cpu", "--quiet"])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "none.pth" in res.output, res.output


def test_cli_truncation_sweep(run, tmp_path):
    res = CliRunner().invoke(main, ["truncation-sweep", str(run["checkpoint"]), "--real", "phantom:48", "--n", "16",
                                    "--out", str(tmp_path), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    sweep = json.loads((tmp_path / "truncation.json").read_text())
    assert sweep["thresholds"] == list(THRESHOLDS) and len(sweep["values"]) == 8 and sweep["metric"] == "swd"
    assert (tmp_path / "truncation.png").is_file() and "none" in res.output
    res = CliRunner().invoke(main, ["truncation-sweep", str(run["checkpoint"]), "--real", "phantom:48",
                                    "--metric", "fid", "--n", "16", "--out", str(tmp_path), "--device", "cpu"])
    assert res.exit_code == 0, res.output  # FID with the shipped network: no weights needed
    sweep = json.loads((tmp_path / "truncation.json").read_text())
    assert sweep["metric"] == "fid" and sweep["extractor"] == sweep["extractor_version"] == SHIPPED_EXTRACTOR
    assert "same extractor version" in res.output
    res = CliRunner().invoke(main, ["truncation-sweep", str(run["checkpoint"]), "--real", "phantom:48",
                                    "--metric", "fid", "--extractor", "inception", "--out", str(tmp_path),
                                    "--device", "cpu"])
    assert res.exit_code == 2 and "FID Inception weights not given" in res.output, res.output
