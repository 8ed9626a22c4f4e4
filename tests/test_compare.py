"""The Baur et al. 2018 comparison command on tiny phantom data."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from dermsynth.cli import main
from dermsynth.compare import compare, zoomed_crops
from dermsynth.data.prepare import load_dataset
from dermsynth.errors import DermsynthError

TINY = dict(size=16, width=8, phantom_n=64, device="cpu", progress=False)


def test_compare_writes_table_report_and_equal_budgets(tmp_path):
    models = ["pgan", "dcgan", "lapgan"]
    res = compare(models, kimg=0.32, batch_size=16, out=tmp_path, **TINY)
    assert list(res.models) == models
    numbers = json.loads((tmp_path / "compare.json").read_text())
    # Every model is given the same number of real images; fixed-batch models turn it into whole steps.
    budget = numbers["budget"]
    assert {b["kimg"] for b in budget.values()} == {0.32}
    for m in ("dcgan", "lapgan"):
        assert budget[m]["steps"] == 20 and budget[m]["batch_size"] == 16
    # PGAN grew to full resolution within the budget: its last checkpoint is at 16 px with alpha 1.
    cfg = json.loads((tmp_path / "pgan" / "config.json").read_text())
    assert cfg["kimg"] == 0.32 and cfg["stable_kimg"] == pytest.approx(0.32 / 5)
    from dermsynth.sample import load_generator
    G = load_generator(tmp_path / "pgan" / "latest.pt").generator
    assert G.current_resolution == 16 and float(G.alpha) == 1.0
    assert numbers["images_per_set"] == 32
    for m in models:
        assert np.isfinite(res.models[m].mean) and res.models[m].mean > 0
        assert (tmp_path / f"{m}_samples.png").exists() and (tmp_path / f"{m}_zoom.png").exists()
    # An untrained-for-long GAN is far from the real-vs-real lower bound.
    assert all(res.models[m].mean > res.lower_bound.mean for m in models)
    html = (tmp_path / "report.html").read_text()
    assert "Table 1" in html and "Fig. 3" in html and html.count("data:image/png;base64") == 1 + 2 * len(models)
    assert res.table().splitlines()[0].split()[:3] == ["level", "lower", "bound"]


def test_compare_resumes_instead_of_retraining(tmp_path):
    compare(["dcgan"], kimg=0.16, batch_size=16, out=tmp_path, **TINY)
    ckpt = tmp_path / "dcgan" / "latest.pt"
    before = ckpt.stat().st_mtime_ns
    compare(["dcgan"], kimg=0.16, batch_size=16, out=tmp_path, **TINY)
    assert ckpt.stat().st_mtime_ns == before  # the budget was already spent: nothing retrained


def test_zoomed_crops_enlarge_the_centre():
    imgs = np.arange(2 * 8 * 8 * 3, dtype=np.uint8).reshape(2, 8, 8, 3)
    crops = zoomed_crops(imgs, count=2, zoom=3)
    assert crops.shape == (2, 12, 12, 3)
    np.testing.assert_array_equal(crops[:, ::3, ::3], imgs[:, 2:6, 2:6])


def test_unknown_model_is_a_one_line_error(tmp_path):
    with pytest.raises(DermsynthError, match="unknown model"):
        compare(["stylegan9"], out=tmp_path, **TINY)
    result = CliRunner().invoke(main, ["compare", "--models", "dcgan,nope", "--out", str(tmp_path)])
    assert result.exit_code == 2 and result.output.strip().startswith("error: unknown model(s) nope")


def test_cli_compare(tmp_path):
    assert len(load_dataset("phantom:64", size=16)) == 64
    result = CliRunner().invoke(main, ["compare", "--models", "dcgan", "--size", "16", "--kimg", "0.16",
                                       "--batch-size", "16", "--out", str(tmp_path), "--device", "cpu",
                                       "--quiet", "--width", "8", "--phantom-n", "64"])
    assert result.exit_code == 0, result.output
    assert "DCGAN vs real" in result.output and (tmp_path / "table1.txt").exists()
