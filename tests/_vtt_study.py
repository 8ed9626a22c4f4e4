"""Tiny visual Turing test studies for the tests (phantom images only)."""

from pathlib import Path

import numpy as np

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
    """A study of ``n_real`` + ``n_fake`` 16-px phantom images (two phantom sets of different seeds); no minimum
    display time unless asked (tests answer at machine speed)."""
    extra = settings.get("calibration", 0)
    settings.setdefault("min_display_ms", 0)
    return create_study(path, real=f"phantom:{n_real + 2 + extra}", fake=f"phantom:{n_fake + 2 + extra}",
                        n_real=n_real, n_fake=n_fake, size=16, **settings)


def give(study: Study, rater, image_id: str, value: str, confidence=None) -> dict:
    """What the rating page does for one answer, through the study's API: start (once), serve, answer."""
    study.start(rater.token)
    study.image(rater.token, image_id)
    return study.answer(rater.token, image_id, value, confidence)


def order(study: Study, rater, calibration: bool = False) -> list[str]:
    """The rater's list of scored (or calibration) image ids, in order."""
    return [r[0] for r in study.conn.execute(
        "SELECT image_id FROM rater_items WHERE rater_id = ? AND calibration = ? ORDER BY position",
        (rater.id, int(calibration)))]


def key(study: Study) -> dict[str, bool]:
    """image id -> is real (the owner's view, never the browser's)."""
    return {r.image_id: bool(r.is_real) for r in study.images_frame().itertuples()}


def nominal_alpha(data) -> float:
    """Krippendorff's alpha (nominal), written out from the coincidence matrix (Krippendorff 2011, "Computing
    Krippendorff's alpha-reliability", Sec. C): (observers, units) with NaN for missing values. An independent
    reference for the ``krippendorff`` package the report uses."""
    data = np.asarray(data, dtype=float)
    values = sorted(set(data[np.isfinite(data)].tolist()))
    where = {v: i for i, v in enumerate(values)}
    o = np.zeros((len(values), len(values)))
    for unit in data.T:
        seen = unit[np.isfinite(unit)]
        if len(seen) < 2:
            continue  # unpairable
        for i, a in enumerate(seen):
            for j, b in enumerate(seen):
                if i != j:
                    o[where[a], where[b]] += 1 / (len(seen) - 1)
    n_c = o.sum(axis=1)
    n = n_c.sum()
    return float(1 - (n - 1) * (o.sum() - np.trace(o)) / (n * n - (n_c ** 2).sum()))
