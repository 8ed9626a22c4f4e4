"""Sampling from a trained generator (any model in the registry): PNGs with a manifest, truncation, latent walks.

Images always come out at the model's full resolution (a PGAN checkpoint taken while it was still growing is
enlarged nearest-neighbour, as Karras' generator shows it). Generators that draw noise inside (LAPGAN's
band noise) draw it from a stream seeded by the sampling seed, so samples are reproducible by seed.
"""

from __future__ import annotations

import contextlib
import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from dermsynth.errors import DermsynthError
from dermsynth.models import build_gan
from dermsynth.models.layers import upsample_to
from dermsynth.report.figures import image_grid, save_png, to_uint8
from dermsynth.train.checkpoint import load_checkpoint


@dataclass
class LoadedGenerator:
    """A generator rebuilt from a checkpoint, in eval mode, with what is needed to sample it."""

    generator: nn.Module
    class_names: list[str]
    z_dim: int
    conditional: bool
    checkpoint: Path
    step: int

    def class_index(self, name_or_index: str | int | None) -> int | None:
        if name_or_index is None:
            return None
        if not self.conditional:
            raise DermsynthError(f"{self.checkpoint} is an unconditional model; --class needs a "
                                 f"model trained with --conditional")
        lowered = [c.lower() for c in self.class_names]
        key = str(name_or_index)
        if key.lower() in lowered:
            return lowered.index(key.lower())
        if key.isdigit() and int(key) < len(self.class_names):
            return int(key)
        raise DermsynthError(f"unknown class {key!r}; this model knows {', '.join(self.class_names)}")


def load_generator(checkpoint: str | Path, device: str | torch.device = "cpu", ema: bool = True) -> LoadedGenerator:
    """Rebuild the generator of a training checkpoint (the EMA copy when it has one and ``ema``)."""
    state = load_checkpoint(checkpoint)
    options = state["model_options"]
    G, _ = build_gan(state["model"], **options)
    weights = state["generator_ema"] if ema and state.get("generator_ema") is not None else state["generator"]
    G.load_state_dict(weights)
    G.to(device).eval().requires_grad_(False)
    return LoadedGenerator(G, list(state["class_names"]), int(options["z_dim"]), options["num_classes"] > 0,
                           Path(checkpoint), int(state["step"]))


def truncated_normal(n: int, dim: int, threshold: float | None, generator: torch.Generator) -> torch.Tensor:
    """Standard-normal latents; with ``threshold``, every component with |z| > threshold is redrawn
    until it falls inside (the resampling truncation trick of seed 003, not clamping)."""
    z = torch.randn(n, dim, generator=generator)
    if threshold is None:
        return z
    if threshold <= 0:
        raise DermsynthError(f"--truncation must be > 0, got {threshold}")
    outside = z.abs() > threshold
    while outside.any():
        z[outside] = torch.randn(int(outside.sum()), generator=generator)
        outside = z.abs() > threshold
    return z


@torch.no_grad()
def generate(model: LoadedGenerator, z: torch.Tensor, labels: torch.Tensor | None, batch_size: int = 256,
             seed: int | None = None) -> np.ndarray:
    """Run the generator over latents (and labels) in batches; returns uint8 (N, H, W, 3) at full resolution.

    With ``seed``, noise the generator draws itself (LAPGAN) comes from a forked RNG seeded with it, leaving
    the caller's global RNG untouched; without, from the global RNG.
    """
    device = next(model.generator.parameters()).device
    resolution = int(model.generator.resolution)
    fork = (torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])
            if seed is not None else contextlib.nullcontext())
    out = []
    with fork:
        if seed is not None:
            torch.manual_seed(seed)
        for i in range(0, len(z), batch_size):
            zb = z[i:i + batch_size].to(device)
            yb = None if labels is None else labels[i:i + batch_size].to(device)
            out.append(to_uint8(upsample_to(model.generator(zb, yb), resolution)))
    return np.concatenate(out) if out else np.zeros((0, 0, 0, 3), np.uint8)


def sample_images(model: LoadedGenerator, n: int, seed: int, truncation: float | None = None,
                  class_name: str | int | None = None, batch_size: int = 256) -> tuple[np.ndarray, torch.Tensor | None]:
    """``n`` uint8 images and their labels (None when unconditional), reproducible from ``seed``: latents, then
    labels, from one generator seeded with it; noise the generator draws itself (LAPGAN) seeded with it too."""
    gen = torch.Generator().manual_seed(seed)
    z = truncated_normal(n, model.z_dim, truncation, gen)
    labels = sample_labels(model, n, class_name, gen)
    return generate(model, z, labels, batch_size, seed=seed), labels


def sample_labels(model: LoadedGenerator, n: int, class_name: str | int | None, generator: torch.Generator) -> torch.Tensor | None:
    """Labels for a batch: the requested class, or (conditional models) uniform over classes."""
    if not model.conditional:
        if class_name is not None:
            model.class_index(class_name)  # raises the explanatory error
        return None
    idx = model.class_index(class_name)
    if idx is not None:
        return torch.full((n,), idx, dtype=torch.long)
    return torch.randint(len(model.class_names), (n,), generator=generator)


def write_samples(checkpoint: str | Path, n: int, out: str | Path, class_name: str | int | None = None,
                  truncation: float | None = None, seed: int = 0, device: str = "cpu",
                  batch_size: int = 256, progress: bool = True) -> Path:
    """Write ``n`` PNGs and ``manifest.csv`` (file, class, seed, truncation, checkpoint) to ``out``."""
    if n < 1:
        raise DermsynthError(f"--n must be >= 1, got {n}")
    model = load_generator(checkpoint, device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    z = truncated_normal(n, model.z_dim, truncation, gen)
    labels = sample_labels(model, n, class_name, gen)
    rows = []
    for start in tqdm(range(0, n, batch_size), desc="sampling", unit="batch", disable=not progress):
        stop = min(start + batch_size, n)
        images = generate(model, z[start:stop], None if labels is None else labels[start:stop], batch_size,
                          seed=seed * 1_000_003 + start)  # one noise stream per batch of the manifest
        for i, img in zip(range(start, stop), images):
            name = f"sample_{seed}_{i:06d}.png"
            save_png(img, out / name)
            cls = "" if labels is None else model.class_names[int(labels[i])]
            rows.append([name, cls, seed, "" if truncation is None else truncation, str(model.checkpoint)])
    manifest = out / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "class", "seed", "truncation", "checkpoint"])
        w.writerows(rows)
    return manifest


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between latent rows ``a`` and ``b`` at fractions ``t`` (T,) -> (T, dim)."""
    a_n, b_n = a / a.norm(), b / b.norm()
    omega = torch.arccos((a_n * b_n).sum().clamp(-1, 1))
    if omega.abs() < 1e-6:
        return a + t[:, None] * (b - a)
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega)[:, None] * a + torch.sin(t * omega)[:, None] * b) / so


def latent_walk(checkpoint: str | Path, out: str | Path, rows: int = 4, steps: int = 8,
                class_name: str | int | None = None, truncation: float | None = None, seed: int = 0,
                device: str = "cpu") -> Path:
    """A grid of latent walks (seed 001, Fig. 4): each row interpolates (slerp) between two random latents."""
    model = load_generator(checkpoint, device)
    gen = torch.Generator().manual_seed(seed)
    ends = truncated_normal(2 * rows, model.z_dim, truncation, gen)
    t = torch.linspace(0, 1, steps)
    z = torch.cat([slerp(ends[2 * r], ends[2 * r + 1], t) for r in range(rows)])
    labels = sample_labels(model, rows, class_name, gen)
    if labels is not None:
        labels = labels.repeat_interleave(steps)  # one class per row
    images = generate(model, z, labels, seed=seed)
    return save_png(image_grid(images, nrow=steps), Path(out), min_side=256)
