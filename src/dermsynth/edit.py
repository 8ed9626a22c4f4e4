"""Edit photos with a trained lesion-editing checkpoint (``dermsynth edit``): add or remove a lesion.

* ``unet-translator`` checkpoints (Furger et al. 2020, 4.2) take a photo and a lesion mask of the same size and edit
  inside the mask only, in the direction they were trained for (``add`` or ``remove``). The mask must hold
  some lesion pixels and leave some skin outside: an empty mask has nothing to edit, and a mask covering the
  whole photo leaves nothing for the relevancy loss to keep (the models train on masks covering 10-80 %).
* ``cyclegan`` checkpoints (Furger et al. 2020, 4.3) translate the whole photo, ``ab`` (A -> B, e.g. healthy ->
  lesion) or ``ba``; a mask is optional and only used for the report.
* ``ddpm-inpaint`` checkpoints (diffusion inpainting, Saharia et al. 2022) repaint the inside of the mask in their
  trained direction, drawn with a diffusion sampler (``sampler``, ``sampling_steps``; DDIM 50 by default) from
  noise seeded by ``seed`` and the image's index; every pixel outside the mask is the input's, exactly (pasted
  back in 8 bits). The mask rules are the translator's.

Every run reports the *relevance* of the edit: the mean absolute change (8-bit grey levels) inside and
outside the mask, which for the U-Net editor should be large inside and near zero outside. Grids: input |
mask | output (Furger et al. 2020, Figs. 11-12) for the U-Net editor, input | translation | reconstruction (Fig. 13)
for CycleGAN. The folder form pairs ``IMAGES/<id>.<ext>`` with ``MASKS/<id>.png`` (or ``<id>_segmentation``,
``<id>_mask``, ``<id>_lesion``), checks every pair before it writes anything, and writes
``OUT/<id>.png``, ``OUT/manifest.csv``, ``OUT/grid.png`` and ``OUT/relevance.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dermsynth.data.images import load_image, load_mask
from dermsynth.device import resolve_device
from dermsynth.errors import DataError, DermsynthError
from dermsynth.io import check_writable_dir, output_dir, write_csv, write_json
from dermsynth.models.diffusion import inpaint_condition
from dermsynth.models.editing import CYCLE_DIRECTIONS, mask_change
from dermsynth.progress import tqdm
from dermsynth.report.figures import image_grid, save_png, to_uint8
from dermsynth.sample import (DiffusionSampling, LoadedGenerator, check_sampling_options, diffusion_sampling,
                              load_generator)

EDIT_MODELS = ("unet-translator", "cyclegan", "ddpm-inpaint")
#: models that edit inside a mask (the others translate the whole photo)
MASKED_MODELS = ("unet-translator", "ddpm-inpaint")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MASK_SUFFIXES = ("", "_segmentation", "_mask", "_lesion")
GRID_ROWS = 16
SIDE_MULTIPLE = 4  # two stride-2 convolutions in every GAN editing generator


@dataclass
class Editor:
    """A loaded editing generator and the direction it edits in."""

    model: LoadedGenerator
    direction: str
    #: a diffusion model's sampling and the seed of its noise (None for the GAN editors)
    sampling: DiffusionSampling | None = None
    seed: int = 0

    @property
    def needs_mask(self) -> bool:
        return self.model.model in MASKED_MODELS

    @property
    def side_multiple(self) -> int:
        """What the photo's sides must be multiples of: the generator's total down-sampling."""
        if self.sampling is None:
            return SIDE_MULTIPLE
        return 2 ** (len(self.model.generator.unet.config.block_out_channels) - 1)

    def settings(self) -> dict[str, object]:
        """The sampling of a diffusion editor, as the manifest and relevance.json state it ({} for a GAN)."""
        if self.sampling is None:
            return {}
        return {"sampler": self.sampling.sampler, "sampling_steps": self.sampling.steps, "seed": self.seed}

    @torch.no_grad()
    def __call__(self, image: np.ndarray, mask: np.ndarray | None,
                 index: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
        """(edited image, CycleGAN's reconstruction or None), uint8 (H, W, 3), for one uint8 photo (+ mask);
        ``index``: the photo's place in the run (a diffusion editor's noise depends on the seed and it)."""
        g = self.model.generator
        device = next(g.parameters()).device
        x = _as_tensor(image).to(device)
        if self.needs_mask:
            m = torch.from_numpy(np.array(mask)).to(device)[None, None].float()
            if self.sampling is None:
                return to_uint8(g(x, m))[0], None
            edited = g.process.sample(g, 1, condition=inpaint_condition(x, m), known=(x, m),
                                      sampler=self.sampling.sampler, steps=self.sampling.steps, seed=self.seed,
                                      first_index=index, bf16=device.type == "cuda")
            inside = np.array(mask, dtype=bool)[..., None]
            return np.where(inside, to_uint8(edited)[0], image), None  # outside: the input's own 8-bit values
        back = "ba" if self.direction == "ab" else "ab"
        y = g(x, self.direction)
        return to_uint8(y)[0], to_uint8(g(y, back))[0]


def load_editor(checkpoint: str | Path, direction: str | None = None, device: str = "auto",
                sampler: str | None = None, sampling_steps: int | None = None, seed: int | None = None) -> Editor:
    """The generator of a ``unet-translator``, ``cyclegan`` or ``ddpm-inpaint`` checkpoint; ``direction``:
    CycleGAN's ab|ba (default ab); for the U-Net editor and the inpainting model it may only repeat the trained
    direction. ``sampler``, ``sampling_steps``, ``seed`` (default 0): the inpainting model's sampling (refused
    for the GAN editors)."""
    model = load_generator(checkpoint, device=str(resolve_device(device)))
    if model.model not in EDIT_MODELS:
        raise DermsynthError(f"{checkpoint} is a {model.model} checkpoint; `dermsynth edit` takes "
                             f"{', '.join(EDIT_MODELS)} checkpoints")
    check_sampling_options(model, sampler=sampler, sampling_steps=sampling_steps)
    if seed is not None and not model.diffusion:
        raise DermsynthError(f"--seed applies to diffusion editors (ddpm-inpaint), whose sampling draws noise; "
                             f"{checkpoint} is a deterministic {model.model} checkpoint")
    sampling = diffusion_sampling(model, sampler, sampling_steps) if model.diffusion else None
    if model.model == "cyclegan":
        direction = direction or "ab"
        if direction not in CYCLE_DIRECTIONS:
            raise DermsynthError(f"--direction for a cyclegan checkpoint is one of {', '.join(CYCLE_DIRECTIONS)}, "
                                 f"got {direction!r}")
        return Editor(model, direction)
    trained = model.generator.direction
    if direction is not None and direction != trained:
        raise DermsynthError(f"{checkpoint} was trained to {trained} lesions; --direction {direction} needs a "
                             f"checkpoint trained with --direction {direction}")
    return Editor(model, trained, sampling, 0 if seed is None else seed)


def _read_pair(editor: Editor, image_path: Path, mask_path: Path | None) -> tuple[np.ndarray, np.ndarray | None]:
    """A photo and its {0, 1} mask, checked: same size, sides multiples of 4, mask neither empty nor full."""
    image = load_image(image_path)
    h, w = image.shape[:2]
    if h % editor.side_multiple or w % editor.side_multiple:
        raise DataError(f"{image_path}: image is {w}x{h}; the {editor.model.model} generator needs sides that "
                        f"are multiples of {editor.side_multiple} (crop it)")
    if mask_path is None:
        if editor.needs_mask:
            raise DermsynthError(f"{image_path}: a {editor.model.model} checkpoint edits inside a lesion mask; "
                                 f"give --mask (or --masks)")
        return image, None
    mask = load_mask(mask_path)
    if mask.shape != (h, w):
        raise DataError(f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image {image_path.name} "
                        f"is {w}x{h}; give a mask of the image's size")
    if editor.needs_mask:
        verb = editor.direction
        if not mask.any():
            raise DataError(f"{mask_path}: the mask is empty (no lesion pixel), so there is nowhere to {verb} a "
                            f"lesion")
        if mask.all():
            raise DataError(f"{mask_path}: the mask covers the whole image; the {editor.model.model} model "
                            f"{verb}s a lesion inside a mask and keeps the skin around it (trained on 10-80 % masks)")
    return image, mask


def _as_tensor(image: np.ndarray) -> torch.Tensor:
    # np.array copies: decoded images are read-only arrays, which torch.from_numpy warns about
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 127.5 - 1


def _change(image: np.ndarray, edited: np.ndarray, mask: np.ndarray | None) -> tuple[float, float]:
    """(inside, outside) mean absolute change in grey levels; without a mask: (whole image, nan)."""
    m = torch.ones(1, 1, *image.shape[:2]) if mask is None else torch.from_numpy(np.array(mask))[None, None].float()
    inside, outside = mask_change(_as_tensor(image), _as_tensor(edited), m)
    return float(inside), (float(outside) if mask is not None else float("nan"))


def _grid_tiles(image: np.ndarray, mask: np.ndarray | None, edited: np.ndarray, recon: np.ndarray | None) -> list:
    if recon is not None:
        return [image, edited, recon]
    return [image, np.repeat((mask * 255).astype(np.uint8)[..., None], 3, axis=2), edited]


@dataclass
class EditReport:
    """Mean absolute change (grey levels) inside and outside the masks over the edited images."""

    images: int
    inside: float
    outside: float
    outputs: list[Path]
    grid: Path | None

    def describe(self) -> str:
        rel = (f"mean |change| inside the mask {self.inside:.2f}, outside {self.outside:.2f} grey levels"
               if np.isfinite(self.outside) else f"mean |change| {self.inside:.2f} grey levels (no mask)")
        return f"{self.images} image(s) edited; {rel}"


def edit_image(checkpoint: str | Path, image: str | Path, mask: str | Path | None, out: str | Path,
               direction: str | None = None, device: str = "auto", sampler: str | None = None,
               sampling_steps: int | None = None, seed: int | None = None) -> EditReport:
    """Edit one photo into ``out`` (a .png); the grid goes to ``<out stem>_grid.png`` beside it. ``sampler``,
    ``sampling_steps``, ``seed``: a diffusion editor's sampling (:func:`load_editor`)."""
    editor = load_editor(checkpoint, direction, device, sampler, sampling_steps, seed)
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise DermsynthError(f"--out {out}: give a .png file (or --images/--masks with an output folder)")
    photo, m = _read_pair(editor, Path(image), None if mask is None else Path(mask))
    check_writable_dir(out.parent, "--out")
    edited, recon = editor(photo, m)
    save_png(edited, out)
    grid = save_png(image_grid(np.stack(_grid_tiles(photo, m, edited, recon)), nrow=3),
                    out.with_name(out.stem + "_grid.png"), min_side=256)
    inside, outside = _change(photo, edited, m)
    return EditReport(1, inside, outside, [out], grid)


def _pairs(images_dir: Path, masks_dir: Path | None) -> list[tuple[Path, Path | None]]:
    if not images_dir.is_dir():
        raise DataError(f"--images {images_dir}: no such folder")
    images = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
                    and not any(p.stem.endswith(s) for s in MASK_SUFFIXES[1:]))
    if not images:
        raise DataError(f"--images {images_dir}: no images ({', '.join(IMAGE_SUFFIXES)})")
    if masks_dir is None:
        return [(p, None) for p in images]
    if not masks_dir.is_dir():
        raise DataError(f"--masks {masks_dir}: no such folder")
    by_stem = {p.stem: p for p in masks_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}

    def mask_of(image: Path) -> Path | None:  # never the photo itself (--masks may be the --images folder)
        found = [by_stem[image.stem + s] for s in MASK_SUFFIXES if image.stem + s in by_stem]
        return next((m for m in found if m.resolve() != image.resolve()), None)

    pairs = [(p, mask_of(p)) for p in images]
    missing = [p for p, m in pairs if m is None]
    if len(missing) == len(pairs):
        raise DataError(f"--masks {masks_dir}: none of the {len(pairs)} images in {images_dir} has a mask there "
                        f"(looked for <id>.png, <id>_segmentation.png, <id>_mask.png, <id>_lesion.png)")
    if missing:
        raise DataError(f"--masks {masks_dir}: {len(missing)} of {len(pairs)} images have no mask, first "
                        f"{missing[0].name}; nothing was written")
    return pairs


#: what `dermsynth edit --images` writes into its folder besides the edited photos its manifest lists
EDIT_FILES = ("manifest.csv", "grid.png", "relevance.json")


def edit_folder(checkpoint: str | Path, images: str | Path, masks: str | Path | None, out: str | Path,
                direction: str | None = None, device: str = "auto", progress: bool = True,
                overwrite: bool = False, sampler: str | None = None, sampling_steps: int | None = None,
                seed: int | None = None) -> EditReport:
    """Edit every photo of ``images`` (with its mask from ``masks``) into the folder ``out``; a diffusion
    editor's photo ``i`` (in file-name order) is drawn from noise of ``seed`` and ``i``.

    Every pair is read and checked first; nothing is written unless all of them are valid. ``out`` must be
    empty or new; ``overwrite`` first removes what an earlier edit wrote there (the files its manifest lists,
    :data:`EDIT_FILES`)."""
    editor = load_editor(checkpoint, direction, device, sampler, sampling_steps, seed)
    pairs = _pairs(Path(images), None if masks is None else Path(masks))
    if editor.needs_mask and pairs[0][1] is None:
        raise DermsynthError(f"a {editor.model.model} checkpoint edits inside lesion masks; give --masks")
    for image_path, mask_path in pairs:  # validate everything before writing anything
        _read_pair(editor, image_path, mask_path)
    out = output_dir(out, "--out", overwrite=overwrite, ours=EDIT_FILES)
    rows, outputs, tiles, changes = [], [], [], []
    for index, (image_path, mask_path) in enumerate(tqdm(pairs, desc="editing", unit="img", disable=not progress)):
        photo, m = _read_pair(editor, image_path, mask_path)
        edited, recon = editor(photo, m, index)
        path = save_png(edited, out / f"{image_path.stem}.png")
        inside, outside = _change(photo, edited, m)
        changes.append((inside, outside))
        outputs.append(path)
        rows.append([path.name, str(image_path), "" if mask_path is None else str(mask_path), editor.model.model,
                     editor.direction, editor.model.step, f"{inside:.4f}", f"{outside:.4f}",
                     *editor.settings().values()])
        if len(tiles) < 3 * GRID_ROWS and (not tiles or tiles[0].shape == photo.shape):
            tiles += _grid_tiles(photo, m, edited, recon)
    write_csv(out / "manifest.csv", ["file", "image", "mask", "model", "direction", "checkpoint_step",
                                     "change_inside", "change_outside", *editor.settings()], rows)
    grid = save_png(image_grid(np.stack(tiles), nrow=6 if len(tiles) >= 6 else 3), out / "grid.png", min_side=256)
    inside, outside = (float(np.mean(v)) for v in zip(*changes))
    report = EditReport(len(pairs), inside, outside, outputs, grid)
    write_json(out / "relevance.json", {"checkpoint": str(checkpoint), "model": editor.model.model,
                                        "direction": editor.direction, **editor.settings(), "images": len(pairs),
                                        "change_inside": inside,
                                        "change_outside": outside if np.isfinite(outside) else None,
                                        "units": "mean absolute change, 8-bit grey levels"})
    return report
