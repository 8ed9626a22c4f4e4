"""How close are a pix2pixHD model's translations to the real images? (issue 9 §4, Bissoto et al.'s (c) vs (d))

Each checkpoint translates the lesion maps (and superpixels, if it takes them) of the images in one part of a
saved split, normally the ``test`` part, whose images and maps the generator never saw when it was trained with
``--split``; the translations are compared with the real images of that part: SWD (x1e3, with its real-vs-real
lower bound at the same N), FID and KID with the shipped extractor (derm-smallcnn-v1: its FIDs compare only with
FIDs from the same extractor version), FID of two disjoint real halves (the floor at half the N), and the mean
grey-level contrast of skin minus lesion (per image, then averaged) of the translations and of the real images.

    python benchmarks/pix2pixhd_quality.py --data CACHE --split split.json \
        --checkpoint inst=runs/p2p-inst --checkpoint noinst=runs/p2p-noinst
"""

from __future__ import annotations

import argparse

import numpy as np

from _common import pick_device, record  # this folder is on sys.path when run
from dermsynth.data.maps import maps_of, masked_subset
from dermsynth.data.prepare import load_dataset
from dermsynth.data.splits import split_part
from dermsynth.metrics.features import load_shipped_extractor
from dermsynth.metrics.registry import MetricOptions, RealSet, compute_metrics
from dermsynth.metrics.swd import disjoint_halves
from dermsynth.sample import load_generator, translate_maps


def skin_minus_lesion(images: np.ndarray, lesion: np.ndarray) -> float:
    """Mean over images of (mean grey level of skin - mean grey level of lesion); images without both skipped."""
    grey = np.asarray(images, dtype=np.float64).mean(axis=-1)
    lesion = np.asarray(lesion).astype(bool)
    keep = lesion.any(axis=(1, 2)) & (~lesion).any(axis=(1, 2))
    skin = (grey * ~lesion).sum(axis=(1, 2)) / np.maximum((~lesion).sum(axis=(1, 2)), 1)
    inside = (grey * lesion).sum(axis=(1, 2)) / np.maximum(lesion.sum(axis=(1, 2)), 1)
    return float((skin - inside)[keep].mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="The data the models were trained from (a cache with masks).")
    ap.add_argument("--split", required=True, help="The split the models were trained with (--split).")
    ap.add_argument("--part", default="test", help="The split part whose maps are translated.")
    ap.add_argument("--checkpoint", action="append", required=True, help="NAME=CHECKPOINT, repeatable.")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default="benchmarks/results/pix2pixhd_quality.json")
    args = ap.parse_args()

    device = pick_device(args.device)
    named = [c.split("=", 1) if "=" in c else (c, c) for c in args.checkpoint]
    models = {name: load_generator(path, device) for name, path in named}
    sizes = {int(m.generator.resolution) for m in models.values()}
    if len(sizes) != 1:
        raise SystemExit(f"the checkpoints translate maps of different sizes: {sorted(sizes)}")
    size = sizes.pop()
    part = masked_subset(split_part(load_dataset(args.data, size=size), args.split, args.part), skip_unmasked=True)
    real_images = np.asarray(part.images)
    lesion = np.asarray(part.lesion_masks)
    extractor = load_shipped_extractor()
    opts = MetricOptions(extractor=extractor, device=device, seed=args.seed, kid_subset_size=min(1000, len(part)))
    real = RealSet(real_images)
    a, b = disjoint_halves(len(part), len(part) // 2, seed=args.seed)
    floor = compute_metrics(["fid"], RealSet(real_images[a]), real_images[b], opts)["fid"]["fid"]
    rows = {"real": {"skin_minus_lesion": skin_minus_lesion(real_images, lesion), "fid_real_halves": floor}}
    print(f"{args.part} part: {len(part)} masked images at {size} px; real-vs-real FID (halves of "
          f"{len(a)}) {floor:.3f}; real skin - lesion {rows['real']['skin_minus_lesion']:.1f}", flush=True)
    for name, model in models.items():
        fake = translate_maps(model, maps_of(part, instance=model.takes_instance), list(part.class_names), seed=args.seed)
        values = compute_metrics(["swd", "fid", "kid"], real, fake, opts)
        rows[name] = {"checkpoint": str(model.checkpoint), "step": model.step, "instance": model.takes_instance,
                      "swd": values["swd"]["swd"], "swd_lower_bound": values["swd"].get("swd_lower_bound"),
                      "swd_per_level": values["swd"]["per_level"], "fid": values["fid"]["fid"],
                      "kid": values["kid"]["kid"], "skin_minus_lesion": skin_minus_lesion(fake, lesion)}
        r = rows[name]
        print(f"{name:>10}: SWD {r['swd']:.2f} (lower bound {r['swd_lower_bound']:.2f}), FID {r['fid']:.3f}, "
              f"KID {r['kid']:.4f}, skin - lesion {r['skin_minus_lesion']:.1f}", flush=True)
    record("pix2pixhd_quality", device, args.json, data=args.data, split=args.split, part=args.part,
           images=len(part), size=size, extractor=extractor.provenance(), results=rows)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
