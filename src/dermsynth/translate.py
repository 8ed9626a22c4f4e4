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

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from dermsynth.data.dataset import LesionDataset
from dermsynth.data.maps import (LesionMap, instance_edges, maps_of, masked_subset, parse_edit,
                                 read_maps, render_maps, unpack_semantic, write_maps)
from dermsynth.data.prepare import load_dataset
from dermsynth.errors import DermsynthError
from dermsynth.io import output_dir, write_csv
from dermsynth.report.figures import image_grid, save_png, to_uint8
from dermsynth.sample import check_sampling_options, load_generator, translate_maps

GRID_ROWS = 16
#: what `dermsynth translate` writes into its folder (removed by --overwrite, with the files its manifest lists)
TRANSLATE_FILES = ("translated_*.png", "manifest.csv", "grid.png", "maps/*_semantic.png", "maps/*_instance.png",
                   "maps/maps.csv")


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
              sampler: str | None = None, sampling_steps: int | None = None,
              overwrite: bool = False) -> TranslateResult:
    """Translate maps with the generator of ``checkpoint`` into ``out`` (see the module docstring);
    ``sampler``/``sampling_steps``: a map-conditioned diffusion model's sampling (default ddim, 50 steps).

    ``out`` must be empty or new; ``overwrite`` first removes what an earlier translate wrote there
    (:data:`TRANSLATE_FILES` and the files its manifest lists). A checkpoint trained on lesion masks only
    refuses attribute edits and maps with attribute regions (it would ignore them); ``--from-data`` maps are
    cut to their lesion for it."""
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
    lesion_only = model.semantic_channels < 2
    attribute_edits = [e for e in edits if e.strip().partition(":")[0] in ("add", "remove")]
    if lesion_only and attribute_edits:
        raise DermsynthError(f"--edit {attribute_edits[0]}: {checkpoint} was trained on lesion masks only (no "
                             f"attribute masks), so it cannot draw attributes; train pix2pixhd on data with "
                             f"attribute masks")
    out = output_dir(out, "--out", overwrite=overwrite, ours=TRANSLATE_FILES)

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
        with_attributes = next((m for m in chosen if (m.codes > 1).any()), None)
        if lesion_only and with_attributes is not None:
            raise DermsynthError(f"{Path(maps) / (with_attributes.map_id + '_semantic.png')} has attribute regions "
                                 f"(values above 1), but {checkpoint} was trained on lesion masks only and would "
                                 f"ignore them; give lesion maps (0/1) or a checkpoint trained with attribute masks")
        if uses_instance and any(m.instance is None for m in chosen):
            first = next(m for m in chosen if m.instance is None)
            raise DermsynthError(f"{checkpoint} was trained with instance maps, but {maps} has no "
                                 f"{first.map_id}_instance.png")
        class_names = None
    else:
        data = masked_subset(load_dataset(from_data, size=size, progress=progress), skip_unmasked)
        index = _select(data, ids, n)
        chosen = maps_of(data, index, instance=uses_instance)
        if lesion_only:  # the data's attribute masks, which this model never saw: not shown as if used
            chosen = [replace(m, codes=m.codes & 1) for m in chosen]
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
    manifest = write_csv(out / "manifest.csv", ["file", "source_map", "class", "edits", "checkpoint", "perceptual"],
                         rows)
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
