"""dermsynth: GAN synthesis of dermatology images, honest quality metrics, augmentation studies.

The public API, importable as ``import dermsynth as ds``::

    data = ds.load_dataset("../shared/data/ham10000", size=64)   # or ds.generate_phantom(...)
    result = ds.train(ds.TrainConfig(size=64, steps=5000), dataset=data)
    ds.write_samples(result.checkpoint, n=1000, out="samples", truncation=0.5)
    print(ds.swd(real_images, fake_images).table())
"""

from dermsynth.data import LesionDataset, generate_phantom, load_dataset, read_source
from dermsynth.data.prepare import prepare
from dermsynth.demo import DemoResult, run_demo
from dermsynth.errors import CheckpointError, DataError, DermsynthError
from dermsynth.metrics.swd import SWDResult, swd, swd_lower_bound
from dermsynth.models import build_gan, register_model
from dermsynth.sample import latent_walk, load_generator, truncated_normal, write_samples
from dermsynth.train import TrainConfig, TrainingInterrupted, TrainResult, train

__version__ = "0.1.0"

__all__ = [
    "CheckpointError", "DataError", "DemoResult", "DermsynthError", "LesionDataset", "SWDResult", "TrainConfig",
    "TrainResult", "TrainingInterrupted", "__version__", "build_gan", "generate_phantom", "latent_walk",
    "load_dataset", "load_generator", "prepare", "read_source", "register_model", "run_demo", "swd",
    "swd_lower_bound", "train", "truncated_normal", "write_samples",
]
