"""Figures and self-contained HTML reports."""

from dermsynth.report.figures import image_grid, plot_curves, save_png, to_uint8
from dermsynth.report.html import HTMLReport

__all__ = ["HTMLReport", "image_grid", "plot_curves", "save_png", "to_uint8"]
