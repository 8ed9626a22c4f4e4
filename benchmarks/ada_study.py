"""Summarise GAN runs trained with and without discriminator augmentation (issue 12): one table row per run (final
and peak D over-fitting gap, ADA p, SWD and FID from ``dermsynth evaluate``) and one figure of the over-fitting
curves (mean D logit on training minus held-out real images, from each run's ``overfit.csv``) and of p.

Each run folder needs ``overfit.csv`` (``--overfit-holdout``), ``losses.csv`` and ``eval/metrics.json``
(``dermsynth evaluate --real DATA --checkpoint RUN/latest.pt --out RUN/eval``). The real-vs-real FID floor
of a data set (two disjoint halves, shipped extractor) is added with ``--real NAME=DATA``.

    python benchmarks/ada_study.py --run df-none=runs/sg2-df-none --run df-ada=runs/sg2-df-ada \\
        --real df=runs/ham32-df --figure docs/stylegan2_ada_overfit.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from _common import pick_device, record  # this folder is on sys.path when run
from dermsynth.data.prepare import load_dataset
from dermsynth.io import read_json
from dermsynth.metrics.features import load_shipped_extractor
from dermsynth.metrics.registry import MetricOptions, RealSet, compute_metrics
from dermsynth.metrics.swd import disjoint_halves


def summarise(folder: Path) -> dict:
    """Final/peak over-fitting gap, ADA p and the evaluation's SWD and FID of one run folder."""
    gap = pd.read_csv(folder / "overfit.csv")
    losses = pd.read_csv(folder / "losses.csv")
    metrics = read_json(folder / "eval" / "metrics.json", "evaluation")
    config = read_json(folder / "config.json", "run config")
    tail = gap["gap"].iloc[-max(1, len(gap) // 10):]  # the last tenth of the run: less noisy than one row
    return {"augment": config["augment"], "steps": int(losses["step"].iloc[-1]), "images": read_json(
                folder / "data.json", "data summary")["count"],
            "gap_final": float(tail.mean()), "gap_peak": float(gap["gap"].max()),
            "p_max": float(losses["aug_p"].max()), "p_final": float(losses["aug_p"].iloc[-1]),
            "swd": metrics["swd"]["swd"], "swd_lower_bound": metrics["swd"].get("swd_lower_bound"),
            "fid": metrics["features"]["fid"]["fid"], "n_fid": [metrics["features"]["n_real"], metrics["features"]["n_fake"]]}


def fid_floor(data: str, size: int, device, max_n: int | None = None) -> dict:
    """FID between two disjoint halves of ``data`` (at most ``max_n`` images each; the shipped extractor): what
    real-vs-real scores at that N."""
    images = np.asarray(load_dataset(data, size=size).images)
    a, b = disjoint_halves(len(images), min(len(images) // 2, max_n or len(images)), seed=0)
    opts = MetricOptions(extractor=load_shipped_extractor(), device=device, seed=0)
    return {"n_per_half": len(a), "fid": compute_metrics(["fid"], RealSet(images[a]), images[b], opts)["fid"]["fid"]}


def figure(runs: dict[str, Path], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_gap, ax_p) = plt.subplots(1, 2, figsize=(11, 3.8), dpi=100)
    for name, folder in runs.items():
        gap = pd.read_csv(folder / "overfit.csv")
        losses = pd.read_csv(folder / "losses.csv")
        line, = ax_gap.plot(gap["step"], gap["gap"].rolling(4, min_periods=1).mean(), label=name)
        ax_p.plot(losses["step"], losses["aug_p"], label=name, color=line.get_color())
    ax_gap.axhline(0, color="grey", lw=0.8)
    ax_gap.set(xlabel="step", ylabel="D(train) - D(held-out), mean logit",
               title="discriminator over-fitting (rolling mean of 4 rows)")
    ax_p.set(xlabel="step", ylabel="augmentation probability p", title="ADA p")
    for ax in (ax_gap, ax_p):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", action="append", required=True, help="NAME=RUN_FOLDER, repeatable.")
    ap.add_argument("--real", action="append", default=[], help="NAME=DATA: add its real-vs-real FID floor.")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--floor-max", type=int, default=None, help="At most this many images per half in a floor.")
    ap.add_argument("--figure", default="docs/stylegan2_ada_overfit.png")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default="benchmarks/results/ada_study.json")
    args = ap.parse_args()

    device = pick_device(args.device)
    runs = {name: Path(folder) for name, folder in (r.split("=", 1) for r in args.run)}
    rows = {name: summarise(folder) for name, folder in runs.items()}
    print(f"{'run':>12} {'aug':>5} {'imgs':>6} {'gap end':>8} {'gap max':>8} {'p max':>6} {'p end':>6} "
          f"{'SWD':>7} {'(bound)':>7} {'FID':>7}")
    for name, r in rows.items():
        print(f"{name:>12} {r['augment']:>5} {r['images']:>6} {r['gap_final']:>8.3f} {r['gap_peak']:>8.3f} "
              f"{r['p_max']:>6.3f} {r['p_final']:>6.3f} {r['swd']:>7.1f} {r['swd_lower_bound'] or 0:>7.1f} "
              f"{r['fid']:>7.2f}")
    floors = {name: fid_floor(data, args.size, device, args.floor_max) for name, data in (r.split("=", 1) for r in args.real)}
    for name, f in floors.items():
        print(f"real-vs-real FID {name}: {f['fid']:.2f} (halves of {f['n_per_half']})")
    figure(runs, Path(args.figure))
    record("ada_study", device, args.json, runs={k: {**v, "folder": str(runs[k])} for k, v in rows.items()},
           fid_floor=floors, figure=args.figure)
    print(f"wrote {args.json} and {args.figure}")


if __name__ == "__main__":
    main()
