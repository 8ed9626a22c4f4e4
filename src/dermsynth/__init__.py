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

A new model is a registry entry (``register_model``) plus a step (``TrainStep``, ``register_step``); the
trainer's loop does not change. The subpackages ``dermsynth.metrics`` and ``dermsynth.classify`` hold every metric and classifier piece.
"""

import dermsynth.device  # noqa: F401  first: sets OpenMP's wait policy before torch loads (see dermsynth.device)
from dermsynth.classify import AugmentExperimentConfig, AugmentExperimentResult, run_augment_experiment
from dermsynth.compare import CompareResult, compare
from dermsynth.data import LesionDataset, generate_phantom, load_dataset, read_source
from dermsynth.data.patches import cut_patches
from dermsynth.data.prepare import prepare
from dermsynth.demo import DemoResult, run_demo
from dermsynth.edit import edit_folder, edit_image
from dermsynth.errors import CheckpointError, DataError, DermsynthError
from dermsynth.evaluate import EvaluationResult, evaluate
from dermsynth.metrics.registry import TrainingMetrics, compute_metrics, register_metric
from dermsynth.metrics.swd import SWDResult, swd, swd_lower_bound
from dermsynth.models import build_gan, model_spec, register_model
from dermsynth.sample import (latent_walk, load_generator, sample_images, translate_images, truncated_normal,
                              write_samples)
from dermsynth.train import (Batch, RunLocked, TrainConfig, TrainingDiverged, TrainingInterrupted, TrainResult,
                             TrainStep, register_step, train)
from dermsynth.translate import translate
from dermsynth.vtt import create_study, write_report as write_vtt_report

__version__ = "0.1.0"

__all__ = [
    "AugmentExperimentConfig", "AugmentExperimentResult", "Batch", "CheckpointError", "CompareResult", "DataError",
    "DemoResult", "DermsynthError", "EvaluationResult", "LesionDataset", "RunLocked", "SWDResult", "TrainConfig",
    "TrainResult", "TrainStep", "TrainingDiverged", "TrainingInterrupted", "TrainingMetrics", "__version__",
    "build_gan", "compare", "compute_metrics", "create_study", "cut_patches", "edit_folder", "edit_image",
    "evaluate", "generate_phantom", "latent_walk", "load_dataset", "load_generator", "model_spec", "prepare",
    "read_source", "register_metric", "register_model", "register_step", "run_augment_experiment", "run_demo",
    "sample_images", "swd", "swd_lower_bound", "train", "translate", "translate_images", "truncated_normal",
    "write_samples", "write_vtt_report",
]
