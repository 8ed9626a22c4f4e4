"""Phantom healthy / lesion patch sets shared by the lesion-editing tests (32 px, pigmented classes, no hairs), and
photo / mask folders for `dermsynth edit`."""

from pathlib import Path

import numpy as np
from PIL import Image

from dermsynth.data.dataset import LesionDataset
from dermsynth.data.patches import PatchRule, cut_patches
from dermsynth.data.phantom import generate_phantom

SIZE = 32


def phantom_patches(root: Path, n: int = 60) -> tuple[LesionDataset, LesionDataset]:
    """(healthy, lesion) patches of ``n`` 96 px phantom images of dark (nevus, melanoma) stand-ins."""
    generate_phantom(n=n, size=96, classes=("nevus", "melanoma"), hairs=0.0).save(root / "src")
    cut_patches(root / "src", root / "patches", PatchRule(size=SIZE, margin=2), progress=False)
    return LesionDataset.load(root / "patches" / "healthy"), LesionDataset.load(root / "patches" / "lesion")


def write_pairs(folder: Path, patches: tuple[LesionDataset, LesionDataset], n: int = 3,
                mask_suffix: str = "_segmentation") -> tuple[Path, Path]:
    """``folder/img/p<i>.png`` (healthy patches) and ``folder/msk/p<i><mask_suffix>.png`` (lesion patches' masks)."""
    healthy, lesion = patches
    (folder / "img").mkdir(parents=True)
    (folder / "msk").mkdir()
    for i in range(n):
        Image.fromarray(np.asarray(healthy.images[i])).save(folder / "img" / f"p{i}.png")
        Image.fromarray(np.asarray(lesion.lesion_masks[i]) * 255).save(folder / "msk" / f"p{i}{mask_suffix}.png")
    return folder / "img", folder / "msk"
