"""Visual Turing tests: reader studies of real vs synthetic images (Baur et al. 2018, Sec. 3.4; Furger et al. 2020,
Sec. 4.1).

``create_study`` makes a study file, ``Study.add_raters`` invites raters, ``create_app`` is the web app
(``dermsynth vtt serve``), ``write_report`` analyses the answers, ``export_csv`` exports them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# imported on first use (PEP 562): `dermsynth --help` loads this package's CLI without torch
_PUBLIC = {"create_study": "create", "write_report": "report", "export_csv": "report", "Confusion": "stats",
           "fleiss_kappa": "stats", "krippendorff_alpha": "stats", "roc_auc": "stats", "wilson_interval": "stats",
           "Refused": "store", "Study": "store", "StudySettings": "store"}


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'dermsynth.vtt' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"dermsynth.vtt.{_PUBLIC[name]}"), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from dermsynth.vtt.create import create_study
    from dermsynth.vtt.report import export_csv, write_report
    from dermsynth.vtt.stats import Confusion, fleiss_kappa, krippendorff_alpha, roc_auc, wilson_interval
    from dermsynth.vtt.store import Refused, Study, StudySettings

__all__ = ["Confusion", "Refused", "Study", "StudySettings", "create_study", "export_csv", "fleiss_kappa",
           "krippendorff_alpha", "roc_auc", "wilson_interval", "write_report"]
