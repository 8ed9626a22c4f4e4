"""Reliability (issue 14, outside the training loop): one-line errors for unwritable outputs and full disks,
atomic writes that leave the old file and no temporary file, checkpoint validation, one SWD sample size,
stale temporary files, calm progress bars, the thread policy and the CLI's advice."""

from __future__ import annotations

import errno
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import dermsynth.io as dio
from dermsynth.cli import main
from dermsynth.errors import CheckpointError, DermsynthError
from dermsynth.models import build_gan
from dermsynth.checkpoint import assert_finite_weights, load_checkpoint, save_checkpoint


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(result, *fragments):
    """Exit status 2, the last stderr line is the only ``error:`` line, no traceback, naming ``fragments``."""
    assert result.exit_code == 2, (result.output, result.exception)
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def tiny_checkpoint(path: Path, *, poison: str | None = None, drop: str | None = None) -> Path:
    """A hand-made, complete DCGAN 16 px checkpoint; ``poison`` sets that generator tensor's first entry to
    NaN, ``drop`` removes a key."""
    torch.manual_seed(0)
    G, _ = build_gan("dcgan", resolution=16, z_dim=8, width=8, num_classes=0)
    weights = G.state_dict()
    if poison is not None:
        weights[poison].view(-1)[0] = float("nan")
    state = {"format": "dermsynth-gan-1", "config": {"model": "dcgan", "size": 16}, "model": "dcgan",
             "model_options": {"resolution": 16, "z_dim": 8, "width": 8, "num_classes": 0}, "class_names": [],
             "step": 1, "generator": weights, "generator_ema": None}
    if drop is not None:
        del state[drop]
    torch.save(state, path)
    return path


def not_a_folder(tmp_path: Path) -> Path:
    """A path below a regular file: no one, root included, can create or write it."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    return blocker / "out"


# --------------------------------------------------------------------------------------------------------
# Unwritable outputs: one line naming the path, before any long computation
# --------------------------------------------------------------------------------------------------------


def test_unwritable_out_is_one_line_everywhere(tmp_path):
    out = not_a_folder(tmp_path)
    assert_one_line_error(invoke("sample", tmp_path / "never-read.pt", "--out", out), str(out), "--out")
    assert_one_line_error(invoke("evaluate", "--real", "phantom:8", "--fake", "phantom:8", "--out", out),
                          str(out), "--out")
    assert_one_line_error(invoke("swd", "phantom:8", "--size", 16, "--json", out / "swd.json"), str(out), "--json")
    folder = tmp_path / "imgs" / "nevus"
    folder.mkdir(parents=True)
    Image.fromarray(np.full((20, 20, 3), 128, np.uint8)).save(folder / "a.png")
    assert_one_line_error(invoke("prepare", tmp_path / "imgs", "--size", 16, "--out", out), str(out))


def test_check_writable_dir_probes_a_real_write(tmp_path, monkeypatch):
    assert dio.check_writable_dir(tmp_path / "new" / "dir", "--out").is_dir()

    def read_only(*args, **kwargs):
        raise PermissionError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(dio.tempfile, "TemporaryFile", read_only)  # what root sees on a read-only mount
    with pytest.raises(DermsynthError, match=r"cannot write there \(Read-only file system\); choose another --out"):
        dio.check_writable_dir(tmp_path, "--out")


def test_cli_names_the_path_of_a_stray_os_error(monkeypatch):
    """The last-resort handler in the CLI: an OSError from anywhere is one line with its file name."""
    import dermsynth.demo

    def boom(**kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", "/somewhere/report.html")

    monkeypatch.setattr(dermsynth.demo, "run_demo", boom)
    assert_one_line_error(invoke("demo", "--quiet"), "/somewhere/report.html: Permission denied")


# --------------------------------------------------------------------------------------------------------
# A full disk: the old checkpoint stays, no temporary file, one line
# --------------------------------------------------------------------------------------------------------


def _state(value: float, n: int = 1000) -> dict:
    return {"config": {}, "model": "dcgan", "model_options": {"resolution": 16, "z_dim": 8, "num_classes": 0},
            "class_names": [], "step": int(value), "generator": {"w": torch.full((n,), value)}}


@pytest.mark.parametrize("failure", ["torch", "oserror"])
def test_full_disk_keeps_the_old_checkpoint(tmp_path, monkeypatch, failure):
    path = save_checkpoint(_state(1.0), tmp_path / "latest.pt")
    real_save = torch.save

    def fills_the_disk(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 partial zip")  # part of the file reaches the disk, then the disk is full
        if failure == "torch":  # what torch's writer raises (seen on a full disk)
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 896 vs 790")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(dio.torch, "save", fills_the_disk)
    with pytest.raises(DermsynthError) as err:
        save_checkpoint(_state(2.0), path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message and "cannot write" in message
    assert "inline_container" not in message
    monkeypatch.setattr(dio.torch, "save", real_save)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.pt"]  # no temporary file left
    assert load_checkpoint(path)["step"] == 1  # the previous checkpoint, intact


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A real 64 KiB file system (needs root and mount rights; skipped elsewhere)."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False)


def test_really_full_disk(tiny_tmpfs):
    path = save_checkpoint(_state(1.0, n=10), tiny_tmpfs / "latest.pt")
    with pytest.raises(DermsynthError, match=r"latest\.pt: cannot write \(no space left on device"):
        save_checkpoint(_state(2.0, n=100_000), path)  # 400 kB into 64 kB
    with pytest.raises(DermsynthError, match=r"big\.txt: cannot write \(no space left on device\)"):
        dio.write_text(tiny_tmpfs / "big.txt", "x" * 200_000)
    assert sorted(p.name for p in tiny_tmpfs.iterdir()) == ["latest.pt"]
    assert load_checkpoint(path)["step"] == 1


def test_atomic_writers_leave_nothing_behind_on_any_failure(tmp_path):
    target = dio.write_json(tmp_path / "a.json", {"x": 1})
    with pytest.raises(ZeroDivisionError):  # an error of the caller's own passes through unchanged
        with dio.atomic_open(target, "w") as f:
            f.write("half")
            1 / 0
    assert json.loads(target.read_text()) == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
    dio.write_csv(tmp_path / "t.csv", ["step", "loss"], [[1, 0.5], [2, 0.25]])
    dio.append_csv_row(tmp_path / "t.csv", ["step", "loss"], [3, 0.125])
    dio.append_csv_row(tmp_path / "new.csv", ["step", "loss"], [1, 1.0])
    assert dio.read_csv_rows(tmp_path / "t.csv") == [["step", "loss"], ["1", "0.5"], ["2", "0.25"], ["3", "0.125"]]
    assert dio.read_csv_rows(tmp_path / "new.csv") == [["step", "loss"], ["1", "1.0"]]
    assert dio.read_csv_rows(tmp_path / "missing.csv") == []
    with pytest.raises(DermsynthError, match=r"bad\.json: unreadable JSON file"):
        dio.read_json(dio.write_text(tmp_path / "bad.json", "{not json"))


def test_load_torch_errors_are_one_line(tmp_path):
    with pytest.raises(CheckpointError, match=r"nope\.pt: dermsynth checkpoint not found"):
        dio.load_torch(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00junk")
    with pytest.raises(DermsynthError, match=r"junk\.pt: not a readable PyTorch state dict \("):
        dio.load_torch(tmp_path / "junk.pt", what="PyTorch state dict", error=DermsynthError)


# --------------------------------------------------------------------------------------------------------
# Checkpoints: incomplete ones and diverged weights are refused in one line
# --------------------------------------------------------------------------------------------------------


def test_checkpoint_without_model_options_is_one_line(tmp_path):
    path = tiny_checkpoint(tmp_path / "hand.pt", drop="model_options")
    with pytest.raises(CheckpointError, match=r"hand\.pt: incomplete dermsynth checkpoint \(no model_options\)"):
        load_checkpoint(path)
    assert_one_line_error(invoke("sample", path, "--out", tmp_path / "s", "--quiet"), "hand.pt", "model_options")
    options = torch.load(tiny_checkpoint(tmp_path / "ok.pt"), weights_only=True)
    del options["model_options"]["resolution"]
    torch.save(options, tmp_path / "half.pt")
    with pytest.raises(CheckpointError, match=r"model_options lacks resolution"):
        load_checkpoint(tmp_path / "half.pt")


def test_assert_finite_weights_names_the_first_bad_tensor(tmp_path):
    state = torch.load(tiny_checkpoint(tmp_path / "ok.pt"), weights_only=True)
    assert_finite_weights(state, "ok.pt")  # finite: no error
    name = next(k for k, v in state["generator"].items() if v.is_floating_point())
    state["discriminator"] = {"head.weight": torch.tensor([1.0, float("inf")])}
    with pytest.raises(CheckpointError, match=r"x\.pt: discriminator\.head\.weight holds inf weights"):
        assert_finite_weights(state, "x.pt")
    state["generator"][name] = state["generator"][name].clone().fill_(float("nan"))
    with pytest.raises(CheckpointError, match=rf"generator\.{name.replace('.', '[.]')} holds NaN weights"):
        assert_finite_weights(state, "x.pt")
    module = torch.nn.Linear(2, 2)
    with torch.no_grad():
        module.bias[1] = float("nan")
    with pytest.raises(CheckpointError, match=r"m: bias holds NaN"):
        assert_finite_weights(module, "m")


def test_non_finite_weights_refused_by_evaluate_sweep_and_augment(tmp_path):
    from dermsynth.classify.synthetic import open_source
    from dermsynth.evaluate import evaluate
    from dermsynth.truncation import truncation_sweep

    path = tiny_checkpoint(tmp_path / "nan.pt", poison=_first_weight())
    with pytest.raises(CheckpointError, match=r"nan\.pt: generator\..* holds NaN weights \(the run diverged\)"):
        evaluate("phantom:8", checkpoint=path, out=tmp_path / "eval", device="cpu", progress=False)
    assert not (tmp_path / "eval" / "metrics.json").exists()
    with pytest.raises(CheckpointError, match="holds NaN"):
        truncation_sweep(path, np.zeros((4, 16, 16, 3), np.uint8), thresholds=(None,), n=4, device="cpu")
    with pytest.raises(CheckpointError, match="holds NaN"):
        open_source(path, class_name="nv", device="cpu")
    assert_one_line_error(invoke("evaluate", "--real", "phantom:8", "--checkpoint", path, "--out", tmp_path / "e2",
                                 "--device", "cpu", "--quiet"), "nan.pt", "NaN")


def _first_weight() -> str:
    G, _ = build_gan("dcgan", resolution=16, z_dim=8, width=8, num_classes=0)
    return next(k for k, v in G.state_dict().items() if v.is_floating_point())


# --------------------------------------------------------------------------------------------------------
# SWD: the lower bound and fake-vs-real at one n
# --------------------------------------------------------------------------------------------------------


def test_swd_numbers_share_one_n(tmp_path):
    from dermsynth.data.phantom import generate_phantom
    from dermsynth.metrics.swd import swd, swd_lower_bound, swd_with_lower_bound

    real = generate_phantom(n=40, size=16, seed=1).images
    fake = generate_phantom(n=30, size=16, seed=2).images
    lower, score = swd_with_lower_bound(real, fake, seed=0, device="cpu")
    assert lower.n_images == score.n_images == 20  # min(40 // 2, 30), not 20 against 30
    assert lower.per_level == swd_lower_bound(real, n=20, seed=0, device="cpu").per_level
    assert score.per_level == swd(real, fake, n=20, seed=0, device="cpu").per_level
    assert swd_with_lower_bound(real, seed=0, device="cpu")[1] is None

    res = invoke("swd", "phantom:40", "phantom:15", "--size", 16, "--device", "cpu", "--json", tmp_path / "s.json")
    assert res.exit_code == 0, res.output
    numbers = json.loads((tmp_path / "s.json").read_text())
    assert numbers["lower_bound"]["n_images"] == numbers["fake_vs_real"]["n_images"] == 15  # min(40 // 2, 15)
    assert "n = 15 images per set for both" in res.output
    res = invoke("swd", "phantom:40", "phantom:30", "--size", 16, "--device", "cpu", "--n", 7,
                 "--json", tmp_path / "s.json")
    numbers = json.loads((tmp_path / "s.json").read_text())
    assert numbers["lower_bound"]["n_images"] == numbers["fake_vs_real"]["n_images"] == 7


def test_swd_bad_n_names_the_option():
    assert_one_line_error(invoke("swd", "phantom:8", "--size", 16, "--n", -3), "--n must be >= 1", "-3")


# --------------------------------------------------------------------------------------------------------
# Loss curves, stale temporary files, prepare --skip-missing
# --------------------------------------------------------------------------------------------------------


def test_plot_curves_before_the_first_log_row(tmp_path):
    from dermsynth.report.figures import plot_curves

    (tmp_path / "empty.csv").write_text("")  # opened, nothing flushed yet
    (tmp_path / "header.csv").write_text("step,d_loss,g_loss\n")
    for name in ("empty.csv", "header.csv", "missing.csv"):
        assert plot_curves(tmp_path / name, tmp_path / f"{name}.png") is None
        assert not (tmp_path / f"{name}.png").exists()
    pd.DataFrame({"step": [1, 2], "d_loss": [1.0, 0.5], "g_loss": [2.0, 1.0]}).to_csv(tmp_path / "ok.csv", index=False)
    assert plot_curves(tmp_path / "ok.csv", tmp_path / "ok.png").stat().st_size > 0
    assert plot_curves(tmp_path / "ok.csv", tmp_path / "gap.png", ["gap"]) is None  # a column it lacks


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_prepare_temp_files_are_removed(tmp_path):
    from dermsynth.data.prepare import prepare

    folder = tmp_path / "imgs" / "nevus"
    folder.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((20, 20, 3), 40 * i, np.uint8)).save(folder / f"{i}.png")
    out = tmp_path / "cache"
    out.mkdir()
    dead = out / f".images.npy.{_dead_pid()}.tmp"  # what a prepare killed with -9 leaves (GBs at 256 px)
    dead_old_style = out / f".images.{_dead_pid()}.tmp.npy"
    alive = out / ".images.npy.1.tmp"  # pid 1 is alive: another process is writing it now
    for p in (dead, dead_old_style, alive):
        p.write_bytes(b"\x00" * 64)
    ds = prepare(tmp_path / "imgs", size=16, out=out, progress=False)
    assert len(ds) == 3
    assert not dead.exists() and not dead_old_style.exists() and alive.exists()
    assert not [p for p in out.iterdir() if ".tmp" in p.name and p != alive]


def test_prepare_skip_missing_option(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    for name in ("ISIC_1", "ISIC_2"):
        Image.fromarray(np.full((20, 20, 3), 90, np.uint8)).save(root / f"{name}.jpg")
    pd.DataFrame({"image_id": ["ISIC_1", "ISIC_2", "ISIC_3"], "dx": ["nv", "mel", "nv"]}).to_csv(
        root / "labels.csv", index=False)
    assert_one_line_error(invoke("prepare", root, "--size", 16, "--out", tmp_path / "c"),
                          "1 of 3 image id(s)", "--skip-missing")
    # a subprocess: pytest would capture the warning in-process
    res = subprocess.run([sys.executable, "-m", "dermsynth.cli", "prepare", str(root), "--size", "16", "--out",
                          str(tmp_path / "c"), "--skip-missing"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "2 images at 16x16" in res.stdout
    warning = [line for line in res.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warning) == 1 and "1 of 3 image id(s)" in warning[0] and "dropping them" in warning[0]


# --------------------------------------------------------------------------------------------------------
# Advice the CLI can follow (demo)
# --------------------------------------------------------------------------------------------------------


def test_demo_at_another_size_names_size_and_out(tmp_path):
    run = tmp_path / "demo"
    dio.write_json(run / "train" / "config.json", {"model": "dcgan", "size": 32, "data": None})
    error = assert_one_line_error(invoke("demo", "--out", run, "--size", 64, "--device", "cpu", "--quiet"),
                                  "32px", "--size 32", "--out")
    assert "--resume" not in error


def test_interrupted_demo_says_how_to_continue(tmp_path, monkeypatch):
    import dermsynth.demo
    from dermsynth.train import TrainingInterrupted

    monkeypatch.setattr(dermsynth.demo, "load_training_data", lambda cfg, progress: None)

    def interrupted(cfg, **kwargs):
        raise TrainingInterrupted(f"interrupted at step 7; checkpoint saved to {cfg.out}/latest.pt; "
                                  "continue with --resume")

    monkeypatch.setattr(dermsynth.demo, "train", interrupted)
    res = invoke("demo", "--out", tmp_path / "d", "--device", "cpu", "--quiet")
    assert res.exit_code != 0
    line = res.stderr.strip().splitlines()[-1]
    assert line.startswith("interrupted: interrupted at step 7;") and "--resume" not in line
    assert f"dermsynth demo --out {tmp_path / 'd'}" in line


# --------------------------------------------------------------------------------------------------------
# Progress bars, caches, threads, devices
# --------------------------------------------------------------------------------------------------------


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_progress_bar_is_calm_when_not_a_terminal():
    from dermsynth.progress import tqdm

    log = _Stream(tty=False)
    for _ in tqdm(range(20_000), desc="work", file=log):
        pass
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert 1 <= len(lines) <= 3 and lines[-1].startswith("work: 100%")  # seconds, not 20,000 redraws
    term = _Stream(tty=True)
    for _ in tqdm(range(50), desc="work", file=term, mininterval=0):
        pass
    assert term.getvalue().count("\r") > 10  # a terminal still gets the live bar


def test_tests_never_touch_the_real_cache():
    from dermsynth.data.prepare import default_cache_root

    root = default_cache_root().resolve()
    assert not str(root).startswith(str((Path.home() / ".cache").resolve()))


def test_thread_policy(monkeypatch):
    from dermsynth import device

    for env in (device.THREADS_ENV, "OMP_NUM_THREADS"):
        monkeypatch.delenv(env, raising=False)
    top = device._TORCH_DEFAULT_THREADS
    assert device.choose_threads(cpus=top, busy=0) == top
    assert device.choose_threads(cpus=top, busy=1) == max(1, top - 1)
    assert device.choose_threads(cpus=2, busy=5) == 1
    assert device.choose_threads(cpus=64, busy=0) == top  # never more than one per physical core
    monkeypatch.setenv(device.THREADS_ENV, "3")
    assert device.choose_threads(cpus=2, busy=2) == 3  # the user's word wins
    monkeypatch.setenv(device.THREADS_ENV, "many")
    with pytest.raises(DermsynthError, match="DERMSYNTH_THREADS must be a whole number"):
        device.choose_threads()
    assert 1 <= device.available_cpus() <= (os.cpu_count() or 1)


def test_fixed_threads_sets_and_restores_the_count_unless_the_user_set_one(monkeypatch):
    import torch

    from dermsynth import device

    for env in (device.THREADS_ENV, "OMP_NUM_THREADS"):
        monkeypatch.delenv(env, raising=False)
    before = torch.get_num_threads()
    wanted = 1 if before != 1 else 2
    with device.fixed_threads(wanted) as n:
        assert n == wanted == torch.get_num_threads()
    assert torch.get_num_threads() == before
    with device.fixed_threads(None) as n:
        assert n == before
    monkeypatch.setenv(device.THREADS_ENV, str(before))  # the user's count wins over the demo's
    with device.fixed_threads(wanted) as n:
        assert n == before == torch.get_num_threads()


def test_openmp_wait_policy_reaches_openmp():
    """libgomp reads OMP_WAIT_POLICY once, when torch loads it; OMP_DISPLAY_ENV makes it print what it read
    (PASSIVE: spin count 0; unset, libgomp spins 300,000 times before sleeping)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["OMP_DISPLAY_ENV"] = "VERBOSE"
    run = lambda: subprocess.run([sys.executable, "-c", "import dermsynth.models"], env=env, capture_output=True,  # noqa: E731
                                 text=True, timeout=300).stderr
    assert "GOMP_SPINCOUNT = '0'" in run()
    env["OMP_WAIT_POLICY"] = "ACTIVE"  # the user's choice wins
    assert "OMP_WAIT_POLICY = 'ACTIVE'" in run()


def test_device_option_defaults_to_auto_everywhere():
    for command in ("sample", "swd", "evaluate", "truncation-sweep", "train-extractor", "augment", "demo", "compare"):
        params = {p.name: p for p in main.commands[command].params}
        assert params["device"].default == "auto", command
