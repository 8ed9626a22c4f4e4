"""The data layer at its limits (issue 18 §2): a full disk while a cache is built, sizes that cannot fit, SIGTERM
during prepare, file names that are not UTF-8, devices that do not exist, and the data fingerprint a resume
compares. Each ends in one ``error:`` line (or the signal's usual exit) with no temporary file left."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import dermsynth.resources as resources
from dermsynth.cli import main
from dermsynth.data import decode as decode_mod, prepare as prepare_mod
from dermsynth.data.dataset import LesionDataset
from dermsynth.data.phantom import generate_phantom
from dermsynth.data.prepare import build_dataset, content_hash, load_dataset, prepare
from dermsynth.data.readers import read_source
from dermsynth.device import resolve_device
from dermsynth.errors import DermsynthError

SRC = Path(__file__).resolve().parents[1] / "src"


def _images(root: Path, n: int = 12, side: int = 40, classes: tuple[str, ...] = ()) -> Path:
    """``n`` random RGB PNGs in ``root`` (or spread over class subfolders)."""
    for i in range(n):
        folder = root / classes[i % len(classes)] if classes else root
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.random.default_rng(i).integers(0, 256, (side, side, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"im{i:02d}.png")
    return root


def _left_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def _one_error_line(result, *fragments: str) -> str:
    assert result.exit_code == 2, (result.output, result.exception)
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: ") and "Traceback" not in result.output, result.stderr
    assert sum(line.startswith("error: ") for line in lines) == 1
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]
    return lines[-1]


# --- a full disk -----------------------------------------------------------------------------------------------


def test_full_disk_while_allocating_is_one_error_naming_the_file(tmp_path, monkeypatch):
    src, out = _images(tmp_path / "src"), tmp_path / "cache"
    calls = []

    def full(fd, offset, length):
        calls.append(length)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(DermsynthError, match=rf"{out}/images\.npy: cannot write \(no space left on device\)"):
        prepare(src, 32, out=out, progress=False)
    assert calls == [12 * 32 * 32 * 3] and not out.exists()  # no temporary file, nor the folder it made
    result = CliRunner().invoke(main, ["prepare", str(src), "--size", "32", "--out", str(out)])
    _one_error_line(result, "images.npy: cannot write (no space left on device)")
    assert not out.exists()


def test_arrays_are_allocated_for_real_also_where_fallocate_is_missing(tmp_path, monkeypatch):
    src = _images(tmp_path / "src")
    normal = prepare(src, 32, out=tmp_path / "a", progress=False)
    path = tmp_path / "a" / "images.npy"
    assert os.stat(path).st_blocks * 512 >= normal.images.nbytes  # not a sparse file

    def unsupported(fd, offset, length):
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(os, "posix_fallocate", unsupported)
    zeros_written = prepare(src, 32, out=tmp_path / "b", progress=False)  # falls back to writing zeros
    assert os.stat(tmp_path / "b" / "images.npy").st_blocks * 512 >= normal.images.nbytes
    np.testing.assert_array_equal(zeros_written.images, normal.images)


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True).returncode == 0


@pytest.mark.skipif(sys.platform != "linux", reason="needs a Linux tmpfs")
def test_a_really_full_file_system(tmp_path, monkeypatch):
    """On a 1 MiB tmpfs (root only): prepare and train --data refuse the size up front; past that check the
    kernel's own ENOSPC from fallocate is the error line (it was a SIGBUS, exit 135, and a sparse temp file)."""
    src, mnt = _images(tmp_path / "src"), tmp_path / "mnt"
    if not _mount_tmpfs(mnt, "1m"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               "DERMSYNTH_CACHE": str(mnt / "cache")}
        for args in (["prepare", str(src), "--size", "256", "--out", str(mnt / "c")],
                     ["train", "--data", str(src), "--size", "256", "--steps", "1", "--out", str(tmp_path / "run")]):
            proc = subprocess.run([sys.executable, "-m", "dermsynth.cli", *args], env=env, capture_output=True,
                                  text=True, timeout=300)
            assert proc.returncode == 2, proc.stderr
            assert proc.stderr.strip().splitlines()[-1].startswith("error: --size 256: the cache of 12 images")
        assert [p.name for p in (mnt / "cache").rglob("*") if p.is_file()] == [] and _left_in(mnt / "c") == []
        monkeypatch.setattr(decode_mod, "require_disk", lambda *a, **k: None)  # as if the disk filled meanwhile
        with pytest.raises(DermsynthError, match=r"c/images\.npy: cannot write \(no space left on device\)"):
            prepare(src, 256, out=mnt / "c", progress=False)
        assert _left_in(mnt / "c") == []
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


# --- sizes that cannot fit ---------------------------------------------------------------------------------------


def test_a_size_the_disk_cannot_hold_is_refused_before_allocating(tmp_path, monkeypatch):
    src, out = _images(tmp_path / "src"), tmp_path / "cache"
    monkeypatch.setattr(resources.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(2**30, 2**30 - 2**20, 2**20))
    with pytest.raises(DermsynthError, match=r"^--size 256: the cache of 12 images at 256x256 px needs 2\.2 MiB on "
                                             rf"disk; {out} has 1\.0 MiB free$"):
        prepare(src, 256, out=out, progress=False)
    assert not out.exists()
    out.mkdir()  # a folder that was there stays
    with pytest.raises(DermsynthError, match=r"^--size 256: "):
        prepare(src, 256, out=out, progress=False)
    assert out.is_dir() and _left_in(out) == []
    assert len(prepare(src, 64, out=out, progress=False)) == 12  # 144 KiB fits


def test_a_size_memory_cannot_hold_is_refused_before_allocating(tmp_path, monkeypatch):
    src, out = _images(tmp_path / "src"), tmp_path / "cache"
    monkeypatch.setattr(decode_mod, "available_memory", lambda: 64 * 2**20)
    monkeypatch.setattr(resources, "available_memory", lambda: 64 * 2**20)
    with pytest.raises(DermsynthError, match=r"^--size 4096: decoding one image at 4096x4096 px needs about "
                                             r"2\d\d\.\d MiB of memory; 64\.0 MiB is available$"):
        prepare(src, 4096, out=out, progress=False)
    assert not out.exists()
    with pytest.raises(DermsynthError, match=r"^--size 2048: holding 12 images at 2048x2048 px needs about"):
        build_dataset(read_source(src), 2048, progress=False)  # in memory (a .npz source)


def test_threads_and_batches_shrink_to_what_memory_holds(monkeypatch):
    decode, record = 100 * 2**20, 3 * 2**20
    monkeypatch.setattr(decode_mod, "available_memory", lambda: 10 * decode)
    assert decode_mod._parallelism(4, decode, record) == (4, 83)  # 4 threads; 1000 MiB / 4 / 3 MiB records
    monkeypatch.setattr(decode_mod, "available_memory", lambda: 3 * decode)
    assert decode_mod._parallelism(4, decode, record) == (1, 25)
    monkeypatch.setattr(decode_mod, "available_memory", lambda: None)  # unknown: the defaults
    assert decode_mod._parallelism(4, decode, record) == (4, decode_mod._CHUNK)


def test_swd_at_an_absurd_size_is_one_line(tmp_path):
    src = _images(tmp_path / "src", n=4)
    result = CliRunner().invoke(main, ["swd", str(src), "--size", "100000"])
    _one_error_line(result, "--size 100000: ")  # the disk (1.1 TiB) or the memory (120 GiB per image)
    assert not list(Path(os.environ["DERMSYNTH_CACHE"]).glob("src-100000-*"))  # no cache folder, no temp file
    _one_error_line(CliRunner().invoke(main, ["swd", "phantom:8", "--size", "100000"]),
                    "--size 100000: rendering 8 phantom images at 100000x100000 px needs about")


def test_phantom_render_memory_is_checked(monkeypatch):
    monkeypatch.setattr(resources, "available_memory", lambda: 2**19)
    with pytest.raises(DermsynthError, match=r"^--size 64: rendering 4 phantom images at 64x64 px needs about "
                                             r"944\.0 KiB of memory; 512\.0 KiB is available$"):  # 4096 px x 236 B
        generate_phantom(n=4, size=64)
    monkeypatch.setattr(resources, "available_memory", lambda: 2**30)
    assert len(generate_phantom(n=4, size=64)) == 4


# --- SIGTERM -----------------------------------------------------------------------------------------------------

_SLOW_PREPARE = """
import sys, time
import dermsynth.data.decode as decode
real = decode._decode
decode._decode = lambda *a: (time.sleep(0.2), real(*a))[1]
from dermsynth.data.prepare import prepare
prepare(sys.argv[1], 32, out=sys.argv[2], progress=False, workers=2)
"""


def test_sigterm_during_prepare_removes_the_temporary_arrays(tmp_path):
    src, out = _images(tmp_path / "src", n=40), tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_PREPARE, str(src), str(out)], env=env,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any(".tmp" in name for name in _left_in(out)):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr and proc.stderr.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    stderr = proc.communicate(timeout=60)[1]
    assert proc.returncode == -signal.SIGTERM, stderr  # ended by the signal as before (exit status 143) ...
    assert "Traceback" not in stderr
    assert not out.exists()  # ... but without its temporary arrays (nor the folder it made)


# --- names that are not UTF-8; devices that do not exist -------------------------------------------------------


@pytest.mark.skipif(sys.platform != "linux", reason="Linux file names are bytes")
def test_a_file_name_that_is_not_utf8(tmp_path, monkeypatch):
    src = _images(tmp_path / "src", n=2)
    os.rename(src / "im01.png", os.fsencode(src) + b"/caf\xe9.png")
    ds = prepare(src, 32, out=tmp_path / "cache", progress=False)
    assert sorted(ds.ids) == ["caf\udce9", "im00"]
    monkeypatch.setattr(prepare_mod, "fill_arrays", lambda *a: pytest.fail("the cache was not reused"))
    assert prepare(src, 32, out=tmp_path / "cache", progress=False).ids == ds.ids


@pytest.mark.parametrize("device", ["tpu", "mps", "cuda:x", "gpu", "cuda:99"])
def test_an_unknown_device_is_one_line_listing_the_valid_ones(device):
    with pytest.raises(DermsynthError, match=rf"^--device {device}: expected auto, cpu, cuda or cuda:N.*; "
                                             r"valid here: auto, cpu"):
        resolve_device(device)
    result = CliRunner().invoke(main, ["swd", "phantom:8", "--size", "16", "--device", device])
    _one_error_line(result, f"--device {device}: ", "valid here: auto, cpu")


def test_valid_devices_resolve():
    assert resolve_device("cpu").type == "cpu" and resolve_device("auto").type in ("cpu", "cuda")


# --- the fingerprint a resume compares --------------------------------------------------------------------------


def test_content_hash_tells_same_data_from_changed_data(tmp_path, monkeypatch):
    """What a resume compares: the same data however reached (another spelling, a moved copy, its cache) hash
    alike; a changed image or label in place does not."""
    def digest(source, data=None):
        return content_hash(data if data is not None else load_dataset(source, size=32, progress=False))

    src = _images(tmp_path / "imgs", n=6, classes=("mel", "nv"))
    first = digest(src)
    monkeypatch.chdir(tmp_path)
    assert digest("./imgs/") == first  # another spelling of the same path
    shutil.copytree(src, tmp_path / "moved")
    moved = digest(tmp_path / "moved")
    assert moved == first  # same data, elsewhere
    cache = prepare(src, 32, out=tmp_path / "cache", progress=False)
    assert digest(tmp_path / "cache", cache) == first  # its cache: same data
    Image.new("RGB", (40, 40), (9, 9, 9)).save(src / "mel" / "im00.png")  # one image changed in place
    assert digest(src) != first
    (tmp_path / "moved" / "nv" / "im01.png").rename(tmp_path / "moved" / "mel" / "im01.png")  # one label changed
    assert digest(tmp_path / "moved") != moved


def test_content_hash_covers_every_array_and_phantom_specs(tmp_path):
    data = generate_phantom(n=8, size=16, seed=1)
    assert content_hash(data) == content_hash(generate_phantom(n=8, size=16, seed=1))
    assert content_hash(data) != content_hash(generate_phantom(n=8, size=16, seed=2))
    masks = data.lesion_masks.copy()
    masks[0, 0, 0] ^= 1
    edited = LesionDataset(images=data.images, labels=data.labels, class_names=data.class_names, ids=data.ids,
                           lesion_masks=masks)
    plain = LesionDataset(images=data.images, labels=data.labels, class_names=data.class_names, ids=data.ids,
                          lesion_masks=data.lesion_masks)
    assert content_hash(edited) != content_hash(plain)


def test_a_sigterm_handler_someone_installed_is_left_alone():
    def graceful(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, graceful)
    try:
        with resources.unwind_on_sigterm():
            assert signal.getsignal(signal.SIGTERM) is graceful  # e.g. a training run's stop-after-this-step
    finally:
        signal.signal(signal.SIGTERM, previous)
    with resources.unwind_on_sigterm():
        assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, graceful)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
