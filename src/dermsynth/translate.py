"""``dermsynth translate``: images from semantic (+ instance) maps with a trained map -> image model (pix2pixHD).

Maps come from a maps folder (``--maps DIR``: ``<id>_semantic.png`` [+ ``<id>_instance.png``], ``maps.csv``;
see :mod:`dermsynth.data.maps`) or from a dataset's own lesion/attribute masks and superpixels
(``--from-data SRC``, optionally ``--ids`` to pick lesions). Edits (``--edit``, applied in order to every map:
flip, rotate, scale, add or remove an attribute region) make new maps from existing ones; taking another
lesion's map is picking it with ``--ids``. Written to ``--out``: one PNG per map, ``manifest.csv`` (file,
source map, class of the source image, edits, checkpoint, the perceptual network the generator was trained with), ``grid.png`` (rows of map | synthetic | real; the
real column only for ``--from-data``) and, with ``--export-maps``, the (edited) maps as a maps folder.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dermsynth.data.dataset import LesionDataset
from dermsynth.data.maps import (LesionMap, instance_edges, maps_of, masked_subset, parse_edit,
                                 read_maps, render_maps, unpack_semantic, write_maps)
from dermsynth.data.prepare import load_dataset
from dermsynth.errors import DermsynthError
from dermsynth.io import check_writable_dir
from dermsynth.report.figures import image_grid, save_png, to_uint8
from dermsynth.sample import check_sampling_options, load_generator, translate_maps

GRID_ROWS = 16


@dataclass
class TranslateResult:
    out: Path
    manifest: Path
    grid: Path
    count: int


def _select(data: LesionDataset, ids: list[str] | None, n: int | None) -> np.ndarray:
    if ids:
        where = {i: k for k, i in enumerate(data.ids)}
        unknown = [i for i in ids if i not in where]
        if unknown:
            raise DermsynthError(f"--ids: {unknown[0]} is not an image of the data (or has no lesion mask)")
        index = np.array([where[i] for i in ids], dtype=np.int64)
    else:
        index = np.arange(len(data))
    return index if n is None else index[:n]


def translate(checkpoint: str | Path, out: str | Path, *, maps: str | Path | None = None,
              from_data: str | None = None, ids: list[str] | None = None, n: int | None = None,
              edits: list[str] | tuple[str, ...] = (), seed: int = 0, device: str = "auto",
              skip_unmasked: bool = False, export_maps: bool = False, progress: bool = True,
              sampler: str | None = None, sampling_steps: int | None = None) -> TranslateResult:
    """Translate maps with the generator of ``checkpoint`` into ``out`` (see the module docstring);
    ``sampler``/``sampling_steps``: a map-conditioned diffusion model's sampling (default ddim, 50 steps)."""
    if (maps is None) == (from_data is None):
        raise DermsynthError("give exactly one of --maps DIR or --from-data SRC")
    if n is not None and n < 1:
        raise DermsynthError(f"--n must be >= 1, got {n}")
    model = load_generator(checkpoint, device)
    model.require_maps()  # before any data is read
    check_sampling_options(model, sampler=sampler, sampling_steps=sampling_steps)
    sampling = {"sampler": sampler, "steps": sampling_steps} if model.diffusion else {}
    G = model.generator
    size = int(G.resolution)
    uses_instance = model.takes_instance
    steps = [parse_edit(e) for e in edits]
    out = Path(out)
    check_writable_dir(out, "--out")

    real = None
    if maps is not None:
        chosen = read_maps(maps, size)
        if ids:
            by_id = {m.map_id: m for m in chosen}
            missing = [i for i in ids if i not in by_id]
            if missing:
                raise DermsynthError(f"--ids: no map {missing[0]}_semantic.png in {maps}")
            chosen = [by_id[i] for i in ids]
        chosen = chosen[:n] if n is not None else chosen
        if uses_instance and any(m.instance is None for m in chosen):
            first = next(m for m in chosen if m.instance is None)
            raise DermsynthError(f"{checkpoint} was trained with instance maps, but {maps} has no "
                                 f"{first.map_id}_instance.png")
        class_names = None
    else:
        data = masked_subset(load_dataset(from_data, size=size, progress=progress), skip_unmasked)
        index = _select(data, ids, n)
        chosen = maps_of(data, index, instance=uses_instance)
        real = np.asarray(data.images)[index]
        class_names = list(data.class_names)
    for step in steps:
        chosen = [step(m) for m in chosen]
    images = translate_maps(model, chosen, class_names, seed=seed, **sampling)
    perceptual = str(model.config.get("perceptual") or "")  # the perceptual network the generator trained with
    rows = []
    for i, (m, img) in enumerate(zip(chosen, images)):
        name = f"translated_{i:06d}.png"
        save_png(img, out / name)
        rows.append([name, m.map_id, m.class_name, ";".join(edits), str(model.checkpoint), perceptual])
    manifest = out / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "source_map", "class", "edits", "checkpoint", "perceptual"])
        w.writerows(rows)
    grid = save_png(map_grid(chosen[:GRID_ROWS], images[:GRID_ROWS], None if real is None else real[:GRID_ROWS],
                             model.semantic_channels), out / "grid.png", min_side=256)
    if export_maps:
        write_maps(chosen, out / "maps")
    return TranslateResult(out, manifest, grid, len(rows))


def map_grid(maps: list[LesionMap], synthetic: np.ndarray, real: np.ndarray | None, channels: int) -> np.ndarray:
    """Rows of map | synthetic (| real): a uint8 grid image."""
    codes = torch.from_numpy(np.stack([m.codes for m in maps]))
    edges = None
    if all(m.instance is not None for m in maps):
        edges = instance_edges(torch.from_numpy(np.stack([m.instance for m in maps])))
    pictures = to_uint8(render_maps(unpack_semantic(codes, channels), edges))
    columns = [pictures, synthetic] + ([] if real is None else [real])
    return image_grid(np.stack(columns, axis=1).reshape(-1, *synthetic.shape[1:]), nrow=len(columns))
