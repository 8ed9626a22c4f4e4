"""The shared GAN trainer."""

from dermsynth.train.config import TrainConfig
from dermsynth.train.trainer import TrainingInterrupted, TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "TrainingInterrupted", "train"]
