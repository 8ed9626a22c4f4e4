"""The command line: every bad input ends in one `error:` line, never a traceback; the demo runs end to end."""

import json
import subprocess
import sys

import pytest

from dermsynth.defaults import DEMO_THREADS
from dermsynth.device import user_threads

CLI = [sys.executable, "-m", "dermsynth.cli"]


def run_cli(*args, cwd=None):
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600)


def assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], proc.stderr  # progress bars may precede it
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def test_missing_data_folder(tmp_path):
    proc = run_cli("prepare", tmp_path / "nowhere", "--size", 32, "--out", tmp_path / "c")
    assert_one_line_error(proc, "nowhere")


def test_missing_checkpoint(tmp_path):
    assert_one_line_error(run_cli("sample", tmp_path / "missing.pt", "--out", tmp_path / "s"), "missing.pt")


def test_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage")
    assert_one_line_error(run_cli("sample", bad, "--out", tmp_path / "s"), "bad.pt")


def test_bad_training_option(tmp_path):
    assert_one_line_error(run_cli("train", "--size", 48, "--out", tmp_path / "r"), "power of two")


def test_corrupt_image_in_a_folder(tmp_path):
    folder = tmp_path / "imgs" / "nevus"
    folder.mkdir(parents=True)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    assert_one_line_error(run_cli("prepare", tmp_path / "imgs", "--size", 32, "--out", tmp_path / "c"), "broken.jpg")


def test_train_sample_swd_commands_end_to_end(tmp_path):
    run = tmp_path / "run"
    proc = run_cli("train", "--size", 16, "--width", 8, "--steps", 4, "--batch-size", 16, "--phantom-n", 64,
                   "--conditional", "--out", run, "--quiet")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("sample", run / "latest.pt", "--n", 40, "--out", tmp_path / "samples", "--class", 0)
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "samples").glob("*.png"))) == 40
    proc = run_cli("sample", run / "latest.pt", "--interpolate", "--out", tmp_path / "walk")
    assert proc.returncode == 0 and (tmp_path / "walk" / "latent_walk.png").is_file(), proc.stderr
    proc = run_cli("swd", tmp_path / "samples", tmp_path / "samples", "--size", 16, "--json", tmp_path / "swd.json")
    assert proc.returncode == 0, proc.stderr
    numbers = json.loads((tmp_path / "swd.json").read_text())
    assert set(numbers) == {"lower_bound", "fake_vs_real"}


@pytest.mark.slow
def test_demo_writes_report_and_swd_falls(tmp_path):
    """The main job on the built-in data, scaled down: the trained generator beats the untrained one."""
    from dermsynth.demo import run_demo

    result = run_demo(out=tmp_path / "demo", size=32, steps=600, eval_images=512, device="cpu", progress=False)
    html = result.report.read_text()
    for section in ("Real vs generated", "Training", "Sliced Wasserstein", "procedural"):
        assert section in html
    assert html.count("data:image/png;base64,") == 4
    assert result.swd_trained.mean < 0.5 * result.swd_untrained.mean
    assert result.swd_lower_bound.mean < result.swd_trained.mean
    numbers = json.loads((tmp_path / "demo" / "swd.json").read_text())
    assert numbers["cpu_threads"] == (user_threads() or DEMO_THREADS)  # fixed, whatever the machine's load
    assert f"({numbers['cpu_threads']} CPU threads)" in html
