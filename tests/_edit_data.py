"""Phantom healthy / lesion patch sets shared by the lesion-editing tests (32 px, pigmented classes, no hairs)."""

from pathlib import Path

from dermsynth.data.dataset import LesionDataset
from dermsynth.data.patches import PatchRule, cut_patches
from dermsynth.data.phantom import generate_phantom

SIZE = 32


def phantom_patches(root: Path, n: int = 60) -> tuple[LesionDataset, LesionDataset]:
    """(healthy, lesion) patches of ``n`` 96 px phantom images of dark (nevus, melanoma) stand-ins."""
    generate_phantom(n=n, size=96, classes=("nevus", "melanoma"), hairs=0.0).save(root / "src")
    cut_patches(root / "src", root / "patches", PatchRule(size=SIZE, margin=2), progress=False)
    return LesionDataset.load(root / "patches" / "healthy"), LesionDataset.load(root / "patches" / "lesion")
