"""Data layer: one dataset abstraction, readers for ISIC/HAM10000, PH2, folders and .npz (a registry of layouts:
``register_layout``), a cached preprocessing step (``dermsynth.data.prepare``), and the built-in procedural
phantom generator."""

from dermsynth.data.dataset import ATTRIBUTES, LesionDataset
from dermsynth.data.phantom import PHANTOM_CLASSES, generate_phantom, render_phantom
from dermsynth.data.prepare import load_dataset
from dermsynth.data.readers import LAYOUTS, Layout, Record, SourceIndex, read_source, register_layout

__all__ = ["ATTRIBUTES", "LAYOUTS", "Layout", "PHANTOM_CLASSES", "LesionDataset", "Record", "SourceIndex",
           "generate_phantom", "load_dataset", "read_source", "register_layout", "render_phantom"]
