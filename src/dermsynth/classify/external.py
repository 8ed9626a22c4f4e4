"""External test sets: another dataset's images scored by a classifier trained on ``--data``.

Classes are matched by name. Both the training classes and the external ones are first brought to one
canonical name (case, spaces and hyphens ignored) through :data:`CLASS_ALIASES`, HAM10000's seven
diagnosis codes; names not in the table are their own canonical name (so ``MEL`` matches ``mel`` and an
own dataset's ``foo`` matches ``foo``). The mapping, by source dataset:

============================== ======================================= ==========
external class                 dataset                                 HAM10000
============================== ======================================= ==========
melanoma                       ISIC 2017, PH2, ISIC archive             mel
nevus                          ISIC 2017, ISIC archive                  nv
common_nevus, atypical_nevus   PH2 (atypical = dysplastic nevi, which  nv
                               HAM10000 counts as melanocytic nevi)
seborrheic_keratosis           ISIC 2017 (HAM10000's bkl covers         bkl
                               seborrheic keratoses, solar lentigines
                               and lichen-planus-like keratoses)
keratosis                      the phantom data                         bkl
MEL, NV, BCC, AKIEC, BKL, DF,  ISIC 2018 Task 3 test ground truth       same code
VASC
============================== ======================================= ==========

An external class with no training class of the same canonical name is an error (one line, naming the
class, the test source and the training classes). The external labels are rewritten as indices of the
training classes; training classes the external set lacks simply do not occur, and the metrics skip them
(:func:`~dermsynth.classify.scoring.per_class_auc` gives NaN, the macro AUC averages the present classes),
so ISIC 2017 is scored on mel/nv/bkl and PH2 on mel/nv (melanoma-vs-rest AUC is the headline there).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from dermsynth.data.dataset import LesionDataset
from dermsynth.errors import DataError

__all__ = ["CLASS_ALIASES", "canonical_class", "class_mapping", "map_to_training_classes"]

#: Canonical (HAM10000) code of every known class name, keys normalised by :func:`_normalise`.
CLASS_ALIASES: dict[str, str] = {
    "mel": "mel", "melanoma": "mel", "malignant_melanoma": "mel",
    "nv": "nv", "nevus": "nv", "naevus": "nv", "nevi": "nv", "melanocytic_nevus": "nv", "melanocytic_nevi": "nv",
    "common_nevus": "nv", "atypical_nevus": "nv", "dysplastic_nevus": "nv",
    "bkl": "bkl", "seborrheic_keratosis": "bkl", "seborrhoeic_keratosis": "bkl", "benign_keratosis": "bkl",
    "benign_keratosis_like_lesions": "bkl", "solar_lentigo": "bkl", "lichen_planus_like_keratosis": "bkl",
    "keratosis": "bkl",
    "bcc": "bcc", "basal_cell_carcinoma": "bcc",
    "akiec": "akiec", "actinic_keratosis": "akiec", "actinic_keratoses": "akiec", "intraepithelial_carcinoma": "akiec",
    "bowens_disease": "akiec",
    "df": "df", "dermatofibroma": "df",
    "vasc": "vasc", "vascular_lesion": "vasc", "vascular_lesions": "vasc",
}


def _normalise(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", str(name).strip().lower())


def canonical_class(name: str) -> str:
    """The canonical name of a class (its HAM10000 code when :data:`CLASS_ALIASES` knows it)."""
    key = _normalise(name)
    return CLASS_ALIASES.get(key, key)


def class_mapping(external: Sequence[str], training: Sequence[str], source: str = "the test set") -> dict[str, str]:
    """``{external class: training class}``; a :class:`DataError` for an external class with no match."""
    by_canon: dict[str, str] = {}
    for name in training:
        if by_canon.setdefault(canonical_class(name), name) != name:
            raise DataError(f"training classes {by_canon[canonical_class(name)]!r} and {name!r} mean the same class "
                            f"({canonical_class(name)}); external test sets cannot be matched to them")
    mapping = {}
    for name in external:
        target = by_canon.get(canonical_class(name))
        if target is None:
            raise DataError(f"{source}: class {name!r} is not a class of the training data "
                            f"({', '.join(training)}) under the name mapping of dermsynth.classify.external")
        mapping[name] = target
    return mapping


def map_to_training_classes(test: LesionDataset, training_classes: Sequence[str]) -> LesionDataset:
    """``test`` relabelled with indices of ``training_classes`` (images, ids and groups kept)."""
    source = test.source or "the test set"
    if test.num_classes == 0 or (test.labels < 0).any():
        raise DataError(f"{source}: an external test set needs every image labelled")
    mapping = class_mapping(test.class_names, training_classes, source)
    index = {name: i for i, name in enumerate(training_classes)}
    lookup = np.array([index[mapping[name]] for name in test.class_names], dtype=np.int64)
    return LesionDataset(images=test.images, labels=lookup[test.labels], class_names=list(training_classes),
                         ids=list(test.ids), groups=list(test.groups), source=test.source)
