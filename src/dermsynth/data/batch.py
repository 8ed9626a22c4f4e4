"""What a training step or a translating generator is given: a :class:`Batch`, built with exactly the fields
it declares.

Every model shares one protocol (``dermsynth.train.steps``): a step names the batch fields it ``needs``
(``images`` always; ``labels``, ``masks``, ``semantic``, ``instance`` for conditioned models; ``domain_b`` for
two-domain models such as CycleGAN), the minibatch stream (:class:`~dermsynth.train.minibatches.Minibatches`)
uploads the matching arrays of a :class:`~dermsynth.data.dataset.LesionDataset` once and cuts every batch from
them.

How a dataset array becomes a batch tensor is a :class:`BatchField` in :data:`FIELDS`, so a new kind of
conditioning (a map the data layer learns to make) is one entry here, not a change to the minibatch stream or trainer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import Optional

import numpy as np
import torch

from dermsynth.data.dataset import LesionDataset
from dermsynth.data.maps import instance_edges, instance_ids, semantic_codes, unpack_semantic
from dermsynth.errors import DermsynthError


@dataclass
class Batch:
    """One minibatch on the training device (this rank's rows of the global batch).

    images: (B, 3, H, W) float in [-1, 1]. labels: (B,) int64 (``None`` when the step does not condition on
    classes). masks: (B, 1, H, W) float lesion masks in {0, 1}. semantic: (B, C, H, W) float semantic map
    channels. instance: (B, 1, H, W) float instance-boundary map. domain_b: a second domain's batch
    (two-domain models), or None.
    """

    images: torch.Tensor
    labels: Optional[torch.Tensor] = None
    masks: Optional[torch.Tensor] = None
    semantic: Optional[torch.Tensor] = None
    instance: Optional[torch.Tensor] = None
    domain_b: Optional["Batch"] = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def get(self, name: str) -> torch.Tensor | None:
        """A field by name (generator inputs are recorded by name in checkpoints)."""
        if name not in BATCH_FIELD_NAMES:
            raise DermsynthError(f"unknown batch field {name!r}; known: {', '.join(BATCH_FIELD_NAMES)}")
        return getattr(self, name)


BATCH_FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(Batch))


@dataclass(frozen=True)
class BatchField:
    """How one batch field is made from a dataset.

    ``array(dataset)`` returns the dataset's stored array for the field (rows = images) or raises a
    DermsynthError saying what the dataset lacks; ``convert(rows)`` turns the indexed rows (a tensor on the
    device, the array's own dtype) into the float/int tensor the networks take.
    """

    array: Callable[[LesionDataset], np.ndarray]
    convert: Callable[[torch.Tensor], torch.Tensor]


def _images_to_float(rows: torch.Tensor) -> torch.Tensor:
    # NHWC uint8 -> NCHW float in [-1, 1]; the permuted view is channels_last in memory for free
    return rows.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def _lesion_masks(data: LesionDataset) -> np.ndarray:
    if data.lesion_masks is None:
        raise DermsynthError(f"{data.source or 'the dataset'} has no lesion masks, which this model needs "
                             f"(<id>_segmentation.png next to the images)")
    return data.lesion_masks


FIELDS: dict[str, BatchField] = {
    "images": BatchField(lambda d: d.images, _images_to_float),
    "labels": BatchField(lambda d: np.asarray(d.labels, dtype=np.int64), lambda rows: rows),
    "masks": BatchField(_lesion_masks, lambda rows: rows[:, None].float()),
    # pix2pixHD's maps: bit-coded semantic maps unpacked into channels, superpixel ids into the boundary map
    "semantic": BatchField(semantic_codes, unpack_semantic),
    "instance": BatchField(instance_ids, instance_edges),
}


def register_batch_field(name: str, field: BatchField) -> None:
    """Teach the minibatch stream to make batch field ``name`` (one of :data:`BATCH_FIELD_NAMES`)."""
    if name not in BATCH_FIELD_NAMES or name == "domain_b":
        raise DermsynthError(f"{name!r} is not a data field of Batch")
    FIELDS[name] = field


def field_spec(name: str) -> BatchField:
    if name not in FIELDS:
        raise DermsynthError(f"no batch field {name!r} can be made from a dataset; known: {', '.join(FIELDS)}")
    return FIELDS[name]


def data_fields(needs: Iterable[str]) -> list[str]:
    """The dataset-backed fields among ``needs`` (images first, always included; ``domain_b`` excluded)."""
    names = ["images"] + sorted(set(needs) - {"images", "domain_b"})
    for name in names:
        field_spec(name)
    return names


def batch_from_dataset(data: LesionDataset, index: np.ndarray | torch.Tensor, needs: Iterable[str],
                       device: torch.device | str = "cpu") -> Batch:
    """A :class:`Batch` of the rows ``index`` of ``data`` with the fields ``needs`` names (no ``domain_b``).

    For evaluation, previews and monitors; training batches come from the minibatch stream, which keeps the arrays
    on the device.
    """
    index = np.asarray(index, dtype=np.int64)
    values = {}
    for name in data_fields(needs):
        spec = field_spec(name)
        rows = torch.from_numpy(np.ascontiguousarray(np.asarray(spec.array(data))[index])).to(device)
        values[name] = spec.convert(rows)
    return Batch(**values)
