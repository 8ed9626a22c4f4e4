"""What lesion-editing checkpoints do to real patches (Furger et al. 2020, 4.2-4.3): change inside vs outside the mask,
cycle error, and SWD / FID of the outputs against the real target domain; grids as Furger et al.'s Figs. 11-13.

Inputs: a patch folder from ``dermsynth patches`` (``healthy/``, ``lesion/``) and a folder of runs named
``add``, ``remove``, ``add-norel`` (unet-translator) and ``cyclegan*`` (any that exist). ``--n`` healthy and
``--n`` lesion patches are drawn at random (seed 0) as inputs; the translator adds lesions inside the masks of
the drawn lesion patches (paired at random) and removes them from the lesion patches with their own masks;
CycleGAN translates healthy -> lesion (ab) and lesion -> healthy (ba) and back. The real target sets are two
more disjoint random draws of ``--n`` (the second gives the real-vs-real floor). Changes are mean absolute
differences in 8-bit grey levels over pixels and channels; FID uses the shipped ``derm-smallcnn-v1`` features.

    python benchmarks/lesion_editing.py --patches runs/patches32 --runs runs/edit [--n 1024] [--out DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from _common import pick_device, record  # this folder is on sys.path when run
from dermsynth.data.dataset import LesionDataset
from dermsynth.metrics.features import load_shipped_extractor
from dermsynth.metrics.frechet import fid_from_features
from dermsynth.metrics.swd import swd
from dermsynth.report.figures import image_grid, save_png, to_uint8
from dermsynth.sample import load_generator
from dermsynth.data.batch import batch_from_dataset
from dermsynth.train.steps_edit import interleave
from dermsynth.models.editing import mask_change

UNET_RUNS = ("add", "remove", "add-norel")


def _run(g, x: torch.Tensor, *args: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([g(x[i:i + 256], *[a[i:i + 256] for a in args]).clamp(-1, 1) for i in range(0, len(x), 256)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patches", required=True)
    ap.add_argument("--runs", required=True)
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    H, L = (LesionDataset.load(Path(args.patches) / k) for k in ("healthy", "lesion"))
    n, rng = args.n, np.random.default_rng(0)
    hi, li = np.sort(rng.choice(len(H), n, replace=False)), np.sort(rng.choice(len(L), n, replace=False))
    healthy = batch_from_dataset(H, hi, ["images"])
    lesion = batch_from_dataset(L, li, ["images", "masks"])
    rest_h = rng.permutation(np.setdiff1d(np.arange(len(H)), hi))[:2 * n]
    rest_l = rng.permutation(np.setdiff1d(np.arange(len(L)), li))[:2 * n]
    ht, ht2 = (np.asarray(H.images[np.sort(r)]) for r in (rest_h[:n], rest_h[n:]))
    lt, lt2 = (np.asarray(L.images[np.sort(r)]) for r in (rest_l[:n], rest_l[n:]))
    ext = load_shipped_extractor()
    target_features = {"healthy": ext(ht, device="cpu"), "lesion": ext(lt, device="cpu")}
    targets = {"healthy": ht, "lesion": lt}

    def scores(target: str, images: np.ndarray) -> dict:
        return {"swd": swd(targets[target], images, seed=0).mean,
                "fid": fid_from_features(target_features[target], ext(images, device="cpu"), device="cpu")}

    rows = []

    def row(name: str, x: torch.Tensor, y: torch.Tensor, m: torch.Tensor, target: str, **extra) -> None:
        inside, outside = (float(v) for v in mask_change(x, y, m))
        signed = float(((y - x) * m).sum() / (3 * m.sum())) * 127.5
        rows.append({"run": name, "change_inside": inside, "change_outside": outside,
                     "signed_change_inside": signed, "target": target, **scores(target, to_uint8(y)), **extra})

    runs = Path(args.runs)
    for name in UNET_RUNS:
        if not (runs / name / "latest.pt").is_file():
            continue
        g = load_generator(runs / name / "latest.pt").generator
        x, target = (healthy.images, "lesion") if g.direction == "add" else (lesion.images, "healthy")
        y = _run(g, x, lesion.masks)
        row(name, x, y, lesion.masks, target)
        tiles = interleave(x[:16], lesion.masks[:16].expand(-1, 3, -1, -1) * 2 - 1, y[:16])
        save_png(image_grid(to_uint8(tiles), nrow=6), out / f"lesion_editing_{name}.png", min_side=600)
    for ckpt in sorted(runs.glob("cyclegan*/latest.pt")):
        name = ckpt.parent.name
        g = load_generator(ckpt).generator
        to_b, to_a = (lambda t: g(t, "ab")), (lambda t: g(t, "ba"))
        ab, ba = _run(to_b, healthy.images), _run(to_a, lesion.images)
        rec_a, rec_b = _run(to_a, ab), _run(to_b, ba)
        row(f"{name} ab", healthy.images, ab, torch.ones_like(healthy.images[:, :1]), "lesion",
            cycle=float((rec_a - healthy.images).abs().mean()) * 127.5)
        row(f"{name} ba", lesion.images, ba, lesion.masks, "healthy",
            cycle=float((rec_b - lesion.images).abs().mean()) * 127.5)
        tiles = interleave(lesion.images[:8], ba[:8], rec_b[:8], healthy.images[:8], ab[:8], rec_a[:8])
        save_png(image_grid(to_uint8(tiles), nrow=6), out / f"lesion_editing_{name}.png", min_side=600)
    base = {"real_vs_real": {"healthy": scores("healthy", ht2), "lesion": scores("lesion", lt2)},
            "unedited_inputs": {"healthy -> lesion": scores("lesion", np.asarray(H.images[hi])),
                                "lesion -> healthy": scores("healthy", np.asarray(L.images[li]))}}
    for r in rows:
        print(" | ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{v}" for k, v in r.items()))
    print(base)
    record("lesion_editing", pick_device("cpu"), out / "lesion_editing.json", patches=args.patches, runs=args.runs,
           n=n, rows=rows, baselines=base, extractor=ext.provenance())


if __name__ == "__main__":
    main()
