"""What a training run was trained on, checkable later: the image count and a hash of the contents.

``--resume`` compares the data it is given with the fingerprint in the checkpoint, so that a run is never
continued on other images (another folder, or the same folder with changed files) without a word, while the
same data reached by another spelling of its path (``imgs/`` and ``./imgs``) is accepted.
"""

from __future__ import annotations

import hashlib

import numpy as np

from dermsynth.data.dataset import LesionDataset

__all__ = ["data_fingerprint"]

_CHUNK = 256  # images hashed per read: a memory-mapped cache is streamed, never loaded whole


def data_fingerprint(data: LesionDataset) -> dict[str, object]:
    """``{"count": N, "sha256": hex}`` over the pixels, labels, class names and masks of ``data`` (in order).

    Content only: the same images from a copy of the folder or a rebuilt cache give the same fingerprint.
    Costs one pass over the pixels (about 1 s per GB).
    """
    h = hashlib.sha256()
    n = len(data)
    h.update(repr((n, tuple(data.images.shape[1:]), list(data.class_names))).encode())
    h.update(np.ascontiguousarray(np.asarray(data.labels, dtype=np.int64)).tobytes())
    for array in (data.images, data.lesion_masks, data.attribute_masks):
        if array is None:
            h.update(b"-")
            continue
        for start in range(0, n, _CHUNK):
            h.update(np.ascontiguousarray(array[start:start + _CHUNK]).tobytes())
    return {"count": n, "sha256": h.hexdigest()}
