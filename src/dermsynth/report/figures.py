"""Image grids and plots (PIL and matplotlib only; no torchvision)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dermsynth.io import atomic_open, save_figure


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Generator output in [-1, 1], (N, 3, H, W) -> uint8 (N, H, W, 3)."""
    x = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def image_grid(images: np.ndarray, nrow: int | None = None, pad: int = 2, fill: int = 255) -> np.ndarray:
    """Tile uint8 images (N, H, W, 3) into one (rows*H, cols*W, 3) image with ``pad`` pixels between."""
    n, h, w = images.shape[:3]
    cols = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), fill, dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[y:y + h, x:x + w] = images[i]
    return grid


def save_png(image: np.ndarray | Image.Image, path: str | Path, min_side: int = 0) -> Path:
    """Save a uint8 image (or a PIL image) atomically (:func:`dermsynth.io.atomic_open`: a failed write keeps
    the previous file and names ``path``); upscale with nearest-neighbour so small grids stay legible."""
    path = Path(path)
    pil = image if isinstance(image, Image.Image) else Image.fromarray(image)
    if min_side and min(pil.size) < min_side:
        k = math.ceil(min_side / min(pil.size))
        pil = pil.resize((pil.width * k, pil.height * k), Image.NEAREST)
    with atomic_open(path, "wb") as f:
        pil.save(f, format="PNG")
    return path



def plot_curves(csv_path: str | Path, png_path: str | Path, columns: list[str] | None = None,
                ylabel: str = "loss", title: str = "") -> Path | None:
    """Plot columns of a per-step CSV (default: every ``*_loss`` column) against ``step``.

    Returns None (and draws nothing) while the CSV is missing, empty, only a header or lacks the columns: a
    checkpoint may come before the first log row.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    try:
        df = pd.read_csv(csv_path)
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return None
    columns = [c for c in (columns or [c for c in df.columns if c.endswith("_loss")]) if c in df.columns]
    if df.empty or "step" not in df.columns or not columns:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=100)
    for col in columns:
        ax.plot(df["step"], df[col], label=col)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        return save_figure(fig, png_path)
    finally:
        plt.close(fig)
