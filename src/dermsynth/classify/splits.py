"""Re-export of :mod:`dermsynth.data.splits` (splits moved to the data layer so that the trainer can train on
a split's training part; this name is kept for code and shipped metadata that cite it)."""

from dermsynth.data.splits import SPLIT_NAMES, Split, grouped_split, split_dataset

__all__ = ["SPLIT_NAMES", "Split", "grouped_split", "split_dataset"]
