"""The shared trainer: one loop, one step protocol (``dermsynth.train.steps``) for every model."""

from dermsynth.data.batch import Batch
from dermsynth.train.config import TrainConfig
from dermsynth.train.steps import AdversarialStep, TrainStep, register_step
from dermsynth.train.trainer import RunLocked, TrainingDiverged, TrainingInterrupted, TrainResult, train
import dermsynth.train.steps_edit  # noqa: E402,F401  (registers the "unet-translator" and "cyclegan" steps)
import dermsynth.train.steps_translate  # noqa: E402,F401  (registers "pix2pixhd")
import dermsynth.train.steps_stylegan2  # noqa: E402,F401  (registers "stylegan2")
import dermsynth.train.steps_diffusion  # noqa: E402,F401  (registers "ddpm")

__all__ = ["AdversarialStep", "Batch", "RunLocked", "TrainConfig", "TrainResult", "TrainStep", "TrainingDiverged",
           "TrainingInterrupted", "register_step", "train"]
