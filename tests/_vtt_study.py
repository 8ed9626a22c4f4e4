"""Tiny visual Turing test studies for the tests (phantom images only)."""

from pathlib import Path

from dermsynth.vtt.create import create_study
from dermsynth.vtt.store import Study

# Baur et al. 2018, Table 2: per voter TP, FP, FN, TN and the printed ACC, TPR, TNR.
BAUR2018_TABLE2 = {
    "DLE1": (50, 26, 0, 4, 0.675, 1.000, 0.133), "DLE2": (30, 10, 20, 20, 0.625, 0.600, 0.666),
    "DLE3": (36, 9, 14, 21, 0.712, 0.720, 0.700), "DLE4": (26, 16, 24, 14, 0.500, 0.520, 0.466),
    "DLE5": (26, 20, 24, 10, 0.450, 0.520, 0.333), "ED1": (27, 11, 23, 19, 0.575, 0.540, 0.633),
    "ED2": (35, 18, 15, 12, 0.587, 0.700, 0.400), "ED3": (29, 17, 21, 13, 0.525, 0.580, 0.433),
}


def make_study(path: Path, n_real: int = 6, n_fake: int = 4, **settings) -> Study:
    """A study of ``n_real`` + ``n_fake`` 16-px phantom images (two phantom sets of different seeds)."""
    return create_study(path, real=f"phantom:{n_real + 2}", fake=f"phantom:{n_fake + 2}", n_real=n_real,
                        n_fake=n_fake, size=16, **settings)


def key(study: Study) -> dict[str, bool]:
    """image id -> is real (the owner's view, never the browser's)."""
    return {r.image_id: bool(r.is_real) for r in study.images_frame().itertuples()}
