"""dermsynth: GAN synthesis of dermatology images, honest quality metrics, augmentation studies."""

from dermsynth.errors import CheckpointError, DataError, DermsynthError

__version__ = "0.1.0"

__all__ = ["CheckpointError", "DataError", "DermsynthError", "__version__"]
