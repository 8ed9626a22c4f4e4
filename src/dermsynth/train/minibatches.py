"""Mini-batches cut from a dataset's arrays kept on the training device.

The stream uploads, once, the arrays of exactly the batch fields a step needs (``dermsynth.data.batch``):
images stay uint8 (4x smaller than float) and every field is converted per batch. The order is a fresh
permutation per epoch drawn from (seed, epoch), so the stream's whole state is two integers and a resumed run
sees exactly the batches an uninterrupted run would. Under multi-process training every rank walks the same
permutation and keeps its rows ``rank::world`` of each global batch, so the state does not depend on the
number of ranks.

With ``flip`` (the map -> image and image -> image models, as pix2pixHD's and CycleGAN's data loaders), each
example is flipped horizontally with probability 1/2, every spatial field of it alike (image, maps, masks).
The flips are drawn with the epoch's permutation, from the same (seed, epoch) generator, one per position, so
they too are part of the two-integer state: a resumed run flips exactly the examples an uninterrupted run does.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from dermsynth.data.dataset import LesionDataset
from dermsynth.errors import DermsynthError
from dermsynth.data.batch import Batch, data_fields, field_spec
from dermsynth.train.distributed import DistInfo


class Minibatches:
    """Batches of ``data`` holding the fields ``needs`` names (images always), on ``device``."""

    def __init__(self, data: LesionDataset, batch_size: int, seed: int, device: torch.device,
                 needs: Iterable[str] = ("images", "labels"), keep_on_device: bool | None = None,
                 dist: DistInfo | None = None, flip: bool = False) -> None:
        n = len(data)
        if n < batch_size:
            raise DermsynthError(f"the dataset has {n} images, fewer than one batch of {batch_size}; "
                                 f"lower --batch-size")
        self.n, self.batch_size, self.seed, self.device = n, batch_size, seed, device
        self.dist = dist or DistInfo()
        self.names = data_fields(needs)
        arrays = {name: field_spec(name).array(data) for name in self.names}
        if keep_on_device is None:
            nbytes = sum(np.asarray(a).nbytes for a in arrays.values())
            keep_on_device = device.type != "cuda" or _fits_on_gpu(nbytes, device)
        where = device if keep_on_device else torch.device("cpu")
        # np.array copies a (read-only) memory map into RAM once, so no step ever waits on the disk.
        self.arrays = {name: torch.from_numpy(np.array(a)).to(where) for name, a in arrays.items()}
        if not keep_on_device and device.type == "cuda":
            self.arrays = {name: t.pin_memory() for name, t in self.arrays.items()}
        self.flip = flip
        self.epoch, self.position = 0, 0
        self._perm, self._flips = self._permutation(0)

    def _permutation(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The epoch's order and, per position, whether that example is flipped."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        perm = torch.randperm(self.n, generator=g)
        flips = torch.rand(self.n, generator=g) < 0.5 if self.flip else torch.zeros(self.n, dtype=torch.bool)
        where = self.arrays["images"].device
        return perm.to(where), flips.to(self.device)

    def next(self, batch_size: int | None = None) -> Batch:
        """The next batch (images as float in [-1, 1], (B, 3, H, W), and the other needed fields).

        ``batch_size`` (at most the one given at construction) overrides it for this batch: PGAN's minibatch
        changes with the resolution. Both are global: each rank gets ``batch_size / world`` rows.
        """
        batch_size = batch_size or self.batch_size
        self.dist.local_batch(batch_size)  # a clear error if the ranks cannot share it equally
        if batch_size > self.batch_size:
            raise DermsynthError(f"batch of {batch_size} exceeds the minibatch stream's maximum {self.batch_size}")
        if self.position + batch_size > self.n:  # drop the incomplete tail: fixed batch shapes
            self.epoch, self.position = self.epoch + 1, 0
            self._perm, self._flips = self._permutation(self.epoch)
        window = slice(self.position, self.position + batch_size)
        idx, flips = self.dist.shard(self._perm[window]), self.dist.shard(self._flips[window])
        self.position += batch_size
        fields = {name: field_spec(name).convert(t[idx].to(self.device, non_blocking=True))
                  for name, t in self.arrays.items()}
        if self.flip:
            fields = {name: _flip_rows(t, flips) for name, t in fields.items()}
        return Batch(**fields)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._perm, self._flips = self._permutation(self.epoch)


def _flip_rows(t: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Rows of an (N, C, H, W) field mirrored left-right where ``flips``; other fields (labels) unchanged."""
    if t.dim() != 4:
        return t
    return torch.where(flips.view(-1, 1, 1, 1), t.flip(-1), t)


def _fits_on_gpu(nbytes: int, device: torch.device) -> bool:
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes < 0.4 * free
