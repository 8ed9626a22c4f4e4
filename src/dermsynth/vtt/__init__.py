"""Visual Turing tests: reader studies of real vs synthetic images (Baur et al. 2018, Sec. 3.4; Furger et al. 2020,
Sec. 4.1).

``create_study`` makes a study file, ``Study.add_raters`` invites raters, ``create_app`` is the web app
(``dermsynth vtt serve``), ``write_report`` analyses the answers.
"""

from dermsynth.vtt.create import create_study
from dermsynth.vtt.report import write_report
from dermsynth.vtt.stats import Confusion, fleiss_kappa, wilson_interval
from dermsynth.vtt.store import Refused, Study, StudySettings

__all__ = ["Confusion", "Refused", "Study", "StudySettings", "create_study", "fleiss_kappa", "wilson_interval",
           "write_report"]
