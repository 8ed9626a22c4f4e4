"""What every benchmark script shares: the device, its name, timing a step loop, and the JSON record."""

from __future__ import annotations

import datetime as dt
import json
import platform
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from dermsynth.data.dataset import LesionDataset
from dermsynth.device import bf16_native, resolve_device
from dermsynth.train.minibatches import Minibatches


def pick_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else the CPU."""
    return resolve_device(name)


def random_image_minibatches(n: int, resolution: int, batch: int, device: torch.device) -> Minibatches:
    """Minibatches of ``n`` random uint8 images (the content does not change the speed)."""
    images = np.random.default_rng(0).integers(0, 256, (n, resolution, resolution, 3), np.uint8)
    data = LesionDataset(images=images, labels=np.zeros(n, np.int64), class_names=[], ids=[str(i) for i in range(n)])
    return Minibatches(data, batch, seed=0, device=device, needs=("images",))


def networks_on(G: torch.nn.Module, D: torch.nn.Module, device: torch.device,
                fast: bool) -> tuple[torch.nn.Module, torch.nn.Module, bool]:
    """G and D on ``device``; in the fast setting (bf16 + channels_last, where the device computes bf16
    natively: CUDA, AVX512-BF16/AMX CPUs) also channels_last. Returns (G, D, channels_last)."""
    G, D = G.to(device), D.to(device)
    channels_last = fast and bf16_native(device)
    if channels_last:
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    return G, D, channels_last


def step_loop(step, sampler: Minibatches, channels_last: bool, images_seen: int = 0,
              advance: bool = False) -> Callable[[int], torch.Tensor]:
    """``run(n)``: ``n`` training steps of ``step`` on ``sampler``'s batches, statistics summed on the device (for
    :func:`time_steps`). ``images_seen`` is what ``step.begin`` is told (PGAN: the phase to time); with
    ``advance`` it grows by each minibatch (StyleGAN2's lazy regularisation and ADA follow it)."""
    shown = [images_seen]

    def run(n: int) -> torch.Tensor:
        acc = torch.zeros(len(step.stat_names), device=sampler.device)
        for _ in range(n):
            batch = step.begin(shown[0])
            data = sampler.next()
            if channels_last:
                data.images = data.images.contiguous(memory_format=torch.channels_last)
            acc += step(data)
            if advance:
                shown[0] += batch
        return acc

    return run


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def time_steps(run: Callable[[int], torch.Tensor], steps: int, warmup: int, device: torch.device) -> float:
    """Seconds that ``run(steps)`` takes after ``run(warmup)``; peak GPU memory is reset before timing.

    ``run`` returns a device tensor accumulated over its steps: reading it is the only host sync, so the
    time covers all queued work without a sync per step.
    """
    run(warmup)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    run(steps).cpu()
    return time.perf_counter() - t0


def peak_gib(device: torch.device) -> float | None:
    """Peak GPU memory since the last reset, GiB (None on the CPU: JSON null)."""
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None


def record(name: str, device: torch.device, path: str | Path, **fields: object) -> dict:
    """Write the benchmark's JSON (name, device, torch version, date and ``fields``); returns it."""
    result = {"benchmark": name, "device": device_name(device), "torch": torch.__version__,
              "date": dt.date.today().isoformat(), **fields}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return result
