"""dermsynth: GAN synthesis of dermatology images, honest quality metrics, augmentation studies.

The public API, importable as ``import dermsynth as ds``::

    data = ds.load_dataset("../shared/data/ham10000", size=64)   # or ds.generate_phantom(...)
    result = ds.train(ds.TrainConfig(size=64, steps=5000), dataset=data)
    ds.write_samples(result.checkpoint, n=1000, out="samples", truncation=0.5)
    print(ds.swd(real_images, fake_images).table())
    ds.evaluate(real="heldout/", fake="samples", train="train/", out="runs/eval")   # one HTML report
    ds.compare(["pgan", "dcgan", "lapgan"], data="...", size=64, kimg=3000)         # Baur et al. 2018, Table 1
    ds.run_augment_experiment(ds.AugmentExperimentConfig(data="...", synthetic="runs/gan"))
    ds.translate("runs/p2p/latest.pt", "out/", from_data="...")                    # pix2pixHD: maps -> images
    ds.edit_image("runs/add/latest.pt", "skin.png", "mask.png", "edited.png")       # add/remove a lesion
    ds.create_study("study.sqlite", real="...", fake="runs/gan/latest.pt")          # a visual Turing test

A new model is a registry entry (``register_model``; its builder returns the model's networks by name) plus a
step (``TrainStep``, ``register_step``) that owns those networks and its optimizers; the trainer's loop does
not change. Names are imported on first use, so ``import dermsynth`` does not load torch. The subpackages
``dermsynth.metrics`` and ``dermsynth.classify`` hold every metric and classifier piece.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

# OpenMP reads its wait policy once, when torch loads it: set here, before any dermsynth module can load torch
# (see dermsynth.device); a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Every public name is imported on first use (PEP 562), so `import dermsynth` and `dermsynth --help` do not
# load torch (seconds).
_PUBLIC: dict[str, str] = {
    "AugmentExperimentConfig": "dermsynth.classify", "AugmentExperimentResult": "dermsynth.classify",
    "run_augment_experiment": "dermsynth.classify",
    "CompareResult": "dermsynth.compare", "compare": "dermsynth.compare",
    "LesionDataset": "dermsynth.data", "generate_phantom": "dermsynth.data", "load_dataset": "dermsynth.data",
    "read_source": "dermsynth.data", "register_layout": "dermsynth.data",
    "cut_patches": "dermsynth.data.patches", "prepare": "dermsynth.data.prepare",
    "DemoResult": "dermsynth.demo", "run_demo": "dermsynth.demo",
    "edit_folder": "dermsynth.edit", "edit_image": "dermsynth.edit",
    "CheckpointError": "dermsynth.errors", "DataError": "dermsynth.errors", "DermsynthError": "dermsynth.errors",
    "EvaluationResult": "dermsynth.evaluate", "evaluate": "dermsynth.evaluate",
    "TrainingMetrics": "dermsynth.metrics.registry", "compute_metrics": "dermsynth.metrics.registry",
    "register_metric": "dermsynth.metrics.registry",
    "SWDResult": "dermsynth.metrics.swd", "swd": "dermsynth.metrics.swd", "swd_lower_bound": "dermsynth.metrics.swd",
    "build_gan": "dermsynth.models", "build_networks": "dermsynth.models", "model_spec": "dermsynth.models",
    "register_model": "dermsynth.models",
    "latent_walk": "dermsynth.sample", "load_generator": "dermsynth.sample", "sample_images": "dermsynth.sample",
    "translate_images": "dermsynth.sample", "truncated_normal": "dermsynth.sample",
    "write_samples": "dermsynth.sample",
    "Batch": "dermsynth.train", "RunLocked": "dermsynth.train", "TrainConfig": "dermsynth.train",
    "TrainingDiverged": "dermsynth.train", "TrainingInterrupted": "dermsynth.train", "TrainResult": "dermsynth.train",
    "TrainStep": "dermsynth.train", "register_step": "dermsynth.train", "train": "dermsynth.train",
    "translate": "dermsynth.translate",
    "TruncationSweep": "dermsynth.truncation", "truncation_sweep": "dermsynth.truncation",
    "create_study": "dermsynth.vtt", "write_vtt_report": "dermsynth.vtt",
}
_RENAMED = {"write_vtt_report": "write_report"}


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (PEP 562) and keep the name here."""
    if name not in _PUBLIC:
        raise AttributeError(f"module 'dermsynth' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), _RENAMED.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})


if TYPE_CHECKING:  # the names as a type checker and an IDE see them
    from dermsynth.classify import AugmentExperimentConfig, AugmentExperimentResult, run_augment_experiment
    from dermsynth.compare import CompareResult, compare
    from dermsynth.data import LesionDataset, generate_phantom, load_dataset, read_source, register_layout
    from dermsynth.data.patches import cut_patches
    from dermsynth.data.prepare import prepare
    from dermsynth.demo import DemoResult, run_demo
    from dermsynth.edit import edit_folder, edit_image
    from dermsynth.errors import CheckpointError, DataError, DermsynthError
    from dermsynth.evaluate import EvaluationResult, evaluate
    from dermsynth.metrics.registry import TrainingMetrics, compute_metrics, register_metric
    from dermsynth.metrics.swd import SWDResult, swd, swd_lower_bound
    from dermsynth.models import build_gan, build_networks, model_spec, register_model
    from dermsynth.sample import (latent_walk, load_generator, sample_images, translate_images, truncated_normal,
                                  write_samples)
    from dermsynth.train import (Batch, RunLocked, TrainConfig, TrainingDiverged, TrainingInterrupted,
                                 TrainResult, TrainStep, register_step, train)
    from dermsynth.translate import translate
    from dermsynth.truncation import TruncationSweep, truncation_sweep
    from dermsynth.vtt import create_study, write_report as write_vtt_report

__version__ = "0.1.0"

__all__ = [
    "AugmentExperimentConfig", "AugmentExperimentResult", "Batch", "CheckpointError", "CompareResult", "DataError",
    "DemoResult", "DermsynthError", "EvaluationResult", "LesionDataset", "RunLocked", "SWDResult", "TrainConfig",
    "TrainResult", "TrainStep", "TrainingDiverged", "TrainingInterrupted", "TrainingMetrics", "TruncationSweep",
    "__version__", "build_gan", "build_networks", "compare", "compute_metrics", "create_study", "cut_patches",
    "edit_folder", "edit_image", "evaluate", "generate_phantom", "latent_walk", "load_dataset", "load_generator",
    "model_spec", "prepare", "read_source", "register_layout", "register_metric", "register_model", "register_step",
    "run_augment_experiment", "run_demo", "sample_images", "swd", "swd_lower_bound", "train", "translate",
    "translate_images", "truncated_normal", "truncation_sweep", "write_samples", "write_vtt_report",
]
