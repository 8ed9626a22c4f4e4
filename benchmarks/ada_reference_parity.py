"""ADA's augmentation pipeline against the reference implementation, numerically.

Runs NVlabs/stylegan2-ada-pytorch's ``training/augment.py`` (``AugmentPipe``, read from a local checkout given
with ``--reference``; nothing of it is copied into dermsynth) and :func:`dermsynth.train.disc_augment.augment_images`
on the same images from the same torch RNG state, for every named pipe at several sizes and probabilities,
and prints the largest absolute difference. Both draw their random numbers in the same order and shapes, so
the two outputs agree to float rounding. CPU only (the reference's custom CUDA ops fall back to plain torch).

    python benchmarks/ada_reference_parity.py --reference PATH/TO/stylegan2-ada-pytorch [--json F]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from _common import record
from dermsynth.train.disc_augment import AUGMENT_PIPES, AugmentSpec, augment_images, torch_draw

CASES = ((16, 0.7), (32, 1.0), (64, 0.3))  # (image side, p)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", required=True, help="A checkout of NVlabs/stylegan2-ada-pytorch.")
    parser.add_argument("--json", default="benchmarks/results/ada_reference_parity.json")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(args.reference).resolve()))
    from training.augment import AugmentPipe  # noqa: E402  (the reference, from --reference)

    rows = []
    for name, transforms in AUGMENT_PIPES.items():
        for size, p in CASES:
            if "imgfilter" in transforms and size <= 21:
                continue  # both refuse: the filter bank's reflection padding needs larger images
            pipe = AugmentPipe(**{t: 1 for t in transforms})
            pipe.p.copy_(torch.tensor(p))
            x = torch.rand(24, 3, size, size, generator=torch.Generator().manual_seed(5)) * 2 - 1
            torch.manual_seed(123)
            reference = pipe(x)
            torch.manual_seed(123)
            ours = augment_images(x, torch.tensor(p), torch_draw("cpu", None), AugmentSpec.pipe(name))
            diff = float((reference - ours).abs().max())
            rows.append({"pipe": name, "size": size, "p": p, "max_abs_difference": diff})
            print(f"{name:7s} {size:3d} px  p={p:<4}  max |ours - reference| = {diff:.3g}")
    worst = max(r["max_abs_difference"] for r in rows)
    print(f"largest difference over {len(rows)} cases: {worst:.3g} (images in [-1, 1])")
    record("ada_reference_parity", torch.device("cpu"), args.json, rows=rows, worst=worst)


if __name__ == "__main__":
    main()
