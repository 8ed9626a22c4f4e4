"""Shared fixtures: tiny datasets and paths to the real data beside the repo."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dermsynth.data.dataset import LesionDataset

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"real data not present at {SHARED_DATA}")


@pytest.fixture(autouse=True, scope="session")
def _session_env(tmp_path_factory):
    """Caches go to a temporary folder, never the user's real ~/.cache/dermsynth, CLI runs keep one thread
    (dermsynth.device's policy) and float32 on every CPU (the figures tests assert must not depend on whether the
    CPU has native bf16; tests/test_bf16_cpu.py turns it on); CLI subprocesses inherit all three."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DERMSYNTH_CACHE", str(tmp_path_factory.mktemp("dermsynth-cache")))
        mp.setenv("DERMSYNTH_THREADS", "1")
        mp.setenv("DERMSYNTH_CPU_BF16", "0")
        yield


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tiny convolutions run fastest, and reproducibly, on one intra-op thread; on a shared or 2-core CPU
    more threads oversubscribe it (seen: a 4 s training test taking 105 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def labelled_noise(n: int = 64, size: int = 16) -> LesionDataset:
    """``n`` random images in classes MEL/NV/BCC: the smallest data a conditional GAN trains on."""
    rng = np.random.default_rng(0)
    return LesionDataset(images=rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
                         labels=rng.integers(0, 3, n), class_names=["MEL", "NV", "BCC"],
                         ids=[str(i) for i in range(n)])


@pytest.fixture
def noise_dataset() -> LesionDataset:
    """100 random 16x16 images in 3 classes: enough to exercise the trainer quickly."""
    rng = np.random.default_rng(0)
    return LesionDataset(images=rng.integers(0, 256, (100, 16, 16, 3), dtype=np.uint8),
                         labels=rng.integers(0, 3, 100), class_names=["a", "b", "c"],
                         ids=[f"img{i}" for i in range(100)])


def write_mask(path: Path, size=(40, 30), mode="L") -> Path:
    """A binary mask image (the central half of each side set), in PIL mode ``L`` or ``1``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    arr = np.zeros((h, w), np.uint8)
    arr[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 255
    im = Image.fromarray(arr)
    (im.convert("1") if mode == "1" else im).save(path)
    return path
