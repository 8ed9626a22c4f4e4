"""dermsynth: GAN synthesis of dermatology images, honest quality metrics, augmentation studies.

The public API, importable as ``import dermsynth as ds``::

    data = ds.load_dataset("../shared/data/ham10000", size=64)   # or ds.generate_phantom(...)
    result = ds.train(ds.TrainConfig(size=64, steps=5000), dataset=data)
    ds.write_samples(result.checkpoint, n=1000, out="samples", truncation=0.5)
    print(ds.swd(real_images, fake_images).table())
    ds.evaluate(real="heldout/", fake="samples", train="train/", out="runs/eval")   # one HTML report
    ds.compare(["pgan", "dcgan", "lapgan"], data="...", size=64, kimg=3000)         # seed 001, Table 1
    ds.run_augment_experiment(ds.AugmentExperimentConfig(data="...", synthetic="runs/gan"))

The subpackages ``dermsynth.metrics`` and ``dermsynth.classify`` hold every metric and classifier piece.
"""

from dermsynth.classify import AugmentExperimentConfig, AugmentExperimentResult, run_augment_experiment
from dermsynth.compare import CompareResult, compare
from dermsynth.data import LesionDataset, generate_phantom, load_dataset, read_source
from dermsynth.data.prepare import prepare
from dermsynth.demo import DemoResult, run_demo
from dermsynth.errors import CheckpointError, DataError, DermsynthError
from dermsynth.evaluate import EvaluationResult, evaluate
from dermsynth.metrics.swd import SWDResult, swd, swd_lower_bound
from dermsynth.models import build_gan, model_spec, register_model
from dermsynth.sample import latent_walk, load_generator, truncated_normal, write_samples
from dermsynth.train import TrainConfig, TrainingInterrupted, TrainResult, train

__version__ = "0.1.0"

__all__ = [
    "AugmentExperimentConfig", "AugmentExperimentResult", "CheckpointError", "CompareResult", "DataError",
    "DemoResult", "DermsynthError", "EvaluationResult", "LesionDataset", "SWDResult", "TrainConfig", "TrainResult",
    "TrainingInterrupted", "__version__", "build_gan", "compare", "evaluate", "generate_phantom", "latent_walk",
    "load_dataset", "load_generator", "model_spec", "prepare", "read_source", "register_model",
    "run_augment_experiment", "run_demo", "swd", "swd_lower_bound", "train", "truncated_normal", "write_samples",
]
