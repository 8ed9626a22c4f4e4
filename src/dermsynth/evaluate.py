"""One evaluation of a generator: every metric of :mod:`dermsynth.metrics` in one HTML report and one JSON.

``evaluate(real, fake, train=..., checkpoint=...)`` writes ``<out>/report.html`` (self-contained: tables,
plots, image grids) and ``<out>/metrics.json`` (every number). Sections:

* SWD (Laplacian pyramid) of real vs generated, with the real-vs-real lower bound at the same set size;
* FID, KID, precision / recall / density / coverage on the features of an extractor
  (:mod:`dermsynth.metrics.features`): the FID Inception when its weights file is given, else the
  user's classifier if its checkpoint is given, else the dermoscopy network shipped with dermsynth
  (``derm-smallcnn-v1``) -- the report says which, and every number carries the extractor's version;
* colour: per-channel histogram Jensen-Shannon divergence and per-class colour statistics (Essipova et al. 2020,
  Sec. 4);
* memorisation audit (needs ``train``; ``real`` then serves as the held-out reference, so it must not
  overlap the training images);
* truncation sweep and latent walk (need ``checkpoint``; without ``fake``, the generated set is sampled from it);
* discriminator over-fitting curve, when the checkpoint's run folder has ``overfit.csv``.

SWD, the feature metrics and the colour divergence come from the metric registry
(:mod:`dermsynth.metrics.registry`); the real set's features are extracted once (``stats_cache``: also
cached on disk, keyed by a hash of the real images and the extractor version) and reused by the sweep.

Sources are anything :func:`~dermsynth.data.prepare.load_dataset` reads (image folders, prepared caches,
dataset roots, ``phantom:N``) or a :class:`~dermsynth.data.dataset.LesionDataset`. A section that cannot be
computed is recorded as ``{"status": "skipped", "reason": ...}`` and explained in the report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dermsynth.data.dataset import LesionDataset
from dermsynth.device import resolve_device
from dermsynth.errors import DataError, DermsynthError, require_at_least
from dermsynth.io import check_writable_dir, write_json
from dermsynth.metrics.features import EXTRACTOR_CHOICES, FeatureExtractor, resolve_extractor
from dermsynth.metrics.inception import WEIGHTS_ENV
from dermsynth.metrics.registry import ImageSet, MetricOptions, RealSet, compute_metrics, get_metric
from dermsynth.truncation import threshold_label
from dermsynth.report.figures import image_grid, save_png
from dermsynth.report.html import HTMLReport

__all__ = ["EXTRACTOR_CHOICES", "EvaluationResult", "evaluate"]

GRID = 64  # images per grid


@dataclass
class EvaluationResult:
    """Paths of the report and the JSON, and the numbers written to the JSON."""

    report: Path
    json: Path
    numbers: dict = field(default_factory=dict)


@dataclass
class _Context:
    out: Path
    device: torch.device
    seed: int
    progress: bool
    report: HTMLReport
    numbers: dict

    def options(self, extractor: FeatureExtractor | None = None) -> MetricOptions:
        """Metric options of this evaluation (``extractor`` for the feature metrics)."""
        return MetricOptions(extractor=extractor, device=self.device, seed=self.seed, progress=self.progress)

    def skip(self, key: str, title: str, reason: str) -> None:
        self.numbers[key] = {"status": "skipped", "reason": reason}
        self.report.heading(title)
        self.report.note(f"Not computed: {reason}")


# ----------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------


def _load(source, size: int | None, what: str, progress: bool) -> LesionDataset:
    from dermsynth.data.prepare import load_dataset

    if isinstance(source, LesionDataset):
        if size is not None and source.size != size:
            raise DataError(f"{what} images are {source.size}px but {size}px are needed")
        return source
    return load_dataset(source, size=size, progress=progress)


def _at_most(ds: LesionDataset, n: int | None, seed: int) -> LesionDataset:
    if n is None or len(ds) <= n:
        return ds
    return ds.subset(np.sort(np.random.default_rng(seed).choice(len(ds), int(n), replace=False)))


def _sample(model, n: int, seed: int) -> LesionDataset:
    """``n`` untruncated samples of a generator, with their classes when it is conditional."""
    from dermsynth.sample import sample_images

    images, labels = sample_images(model, n, seed)
    return LesionDataset(images=images, labels=np.full(n, -1) if labels is None else labels.numpy(),
                         class_names=list(model.class_names) if labels is not None else [],
                         ids=[f"sample_{i:06d}" for i in range(n)], source=f"{model.checkpoint} (sampled, seed {seed})")


def _choose_extractor(choice: str, inception_weights, extractor_checkpoint) -> tuple[FeatureExtractor | None, str]:
    """(extractor or None, a sentence on the choice for the report)."""
    ext = resolve_extractor(choice, inception_weights=inception_weights, extractor_checkpoint=extractor_checkpoint)
    if ext is None:
        return None, "--extractor none was given"
    why = ""
    if choice == "auto" and ext.name != "inception":
        why = f"no FID Inception weights were given (--inception-weights / ${WEIGHTS_ENV}), so "
    return ext, f"Features: {why}{ext.description}. {ext.warning[0].upper()}{ext.warning[1:]}."


# ----------------------------------------------------------------------------------------
# Sections
# ----------------------------------------------------------------------------------------


def _images_section(ctx: _Context, real: LesionDataset, fake: LesionDataset) -> None:
    ctx.report.heading("Real vs generated")
    paths = []
    for name, ds in (("real", real), ("generated", fake)):
        pick = np.sort(np.random.default_rng(ctx.seed).choice(len(ds), min(GRID, len(ds)), replace=False))
        paths.append((f"{name} ({len(pick)} of {len(ds)})",
                      save_png(image_grid(np.asarray(ds.images[pick]), nrow=8), ctx.out / f"{name}.png", min_side=512)))
    ctx.report.images(paths)


def _swd_section(ctx: _Context, real: RealSet, fake: ImageSet) -> None:
    from dermsynth.metrics.swd import MIN_SIZE

    title = "Sliced Wasserstein distance (x1e3, Laplacian pyramid, Karras et al. 2018)"
    n = min(len(real) // 2, len(fake))
    if n < 1 or real.size < MIN_SIZE:
        return ctx.skip("swd", title, f"SWD needs at least 2 real images and images of >= {MIN_SIZE}px "
                                      f"(have {len(real)} real at {real.size}px)")
    values = compute_metrics(["swd"], real, fake, ctx.options())["swd"]
    ctx.numbers["swd"] = {"status": "ok", **values}
    ctx.report.heading(title)
    ctx.report.table(["level", "lower bound: real vs real", "generated vs real"], get_metric("swd").render(values),
                     caption=f"{n} images per set; lower is better. The lower bound is SWD between two disjoint "
                             "halves of the real set. SWD normalises each set per channel: it does not see a "
                             "global colour cast (see the colour section).")


FEATURE_METRICS = ("fid", "kid", "prdc")


def _feature_section(ctx: _Context, real: RealSet, fake: ImageSet, extractor: FeatureExtractor | None,
                     why: str) -> None:
    title = "FID, KID, precision / recall / density / coverage"
    if extractor is None:
        return ctx.skip("features", title, why)
    opts = ctx.options(extractor)
    if min(len(real), len(fake)) <= opts.prdc_k:
        return ctx.skip("features", title, f"need more than {opts.prdc_k} real and generated images (have "
                                           f"{len(real)}, {len(fake)})")
    values = compute_metrics(FEATURE_METRICS, real, fake, opts)
    ctx.numbers["features"] = {"status": "ok", **extractor.provenance(), "dim": extractor.dim, "n_real": len(real),
                               "n_fake": len(fake), **values}
    ctx.report.heading(title)
    ctx.report.paragraph(why)
    rows = [row for name in FEATURE_METRICS for row in get_metric(name).render(values[name])]
    ctx.report.table(["metric", f"value ({extractor.version})", "better"], rows,
                     caption=f"{len(real)} real, {len(fake)} generated images; KID over {values['kid']['num_subsets']}"
                             f" subsets of {values['kid']['subset_size']}; PRDC with k={opts.prdc_k}. FID is biased "
                             f"upwards at small N: compare at equal N. Extractor {extractor.version}: "
                             f"{extractor.warning}.")


def _class_colour_summary(df: pd.DataFrame) -> dict:
    cols = ["R", "G", "B", "grey"]
    return {str(name): {"n": len(g), "mean": {c: float(g[c].mean()) for c in cols},
                        "std": {c: float(g[c].std(ddof=0)) for c in cols}}
            for name, g in df.groupby("class", sort=False)}


def _colour_section(ctx: _Context, real: LesionDataset, fake: LesionDataset, real_set: RealSet,
                    fake_set: ImageSet) -> None:
    from dermsynth.metrics.colour import class_colour_statistics, plot_class_colour_statistics

    real_images, fake_images = real_set.images, fake_set.images
    jsd = compute_metrics(["colour_jsd"], real_set, fake_set, ctx.options())["colour_jsd"]
    tables = {}
    for tag, ds, images in (("real", real, real_images), ("generated", fake, fake_images)):
        names = ds.class_names if ds.num_classes else []
        df = class_colour_statistics(images, ds.labels if names else np.full(len(ds), -1), names)
        df["class"] = [f"{'all' if c == 'unlabelled' else c} ({tag})" for c in df["class"]]
        tables[tag] = df
    both = pd.concat([tables["real"], tables["generated"].assign(label=tables["generated"]["label"] + 1000)])
    fig = plot_class_colour_statistics(both, ctx.out / "colour_classes.png",
                                       title="per-image mean colour by class: real vs generated")
    ctx.numbers["colour"] = {"status": "ok", "histogram_jsd": {"per_channel": jsd["per_channel"],
                                                                "mean": jsd["colour_jsd"], "bins": jsd["bins"]},
                             "class_statistics": {tag: _class_colour_summary(df) for tag, df in tables.items()}}
    ctx.report.heading("Colour statistics")
    ctx.report.table(["channel", "JS divergence (bits)", "better"], get_metric("colour_jsd").render(jsd),
                     caption=f"Jensen-Shannon divergence between the pooled {jsd['bins']}-bin channel histograms "
                             "(0 = identical, 1 = disjoint).")
    rows = [[name, s["n"], *(f"{s['mean'][c]:.1f} ± {s['std'][c]:.1f}" for c in ("R", "G", "B", "grey"))]
            for tag in ("real", "generated") for name, s in ctx.numbers["colour"]["class_statistics"][tag].items()]
    ctx.report.table(["class", "n", "mean R", "mean G", "mean B", "mean grey"], rows,
                     caption="Per-image mean intensity (0-255), mean ± std over the images of each class "
                             "(Essipova et al. 2020, Sec. 4).")
    ctx.report.images([("per-class distributions of mean R, G, B and grey", fig)])


def _memorisation_section(ctx: _Context, real: np.ndarray, fake: np.ndarray, train: LesionDataset | None) -> None:
    from dermsynth.metrics.memorisation import memorisation_audit, plot_nearest_neighbours

    title = "Memorisation audit (nearest training images, Furger et al. 2020 Fig. 7)"
    if train is None:
        return ctx.skip("memorisation", title, "no training set given (--train)")
    train_images = np.asarray(train.images)
    audit = memorisation_audit(fake, train_images, real, metric="mse", device=ctx.device)
    summary = audit.summary
    overlap = float(np.mean(audit.heldout_distances == 0))  # --real images that are also training images
    flagged = audit.table.loc[audit.table["flagged"], ["generated", "nn_train", "distance", "exact_duplicate"]]
    ctx.numbers["memorisation"] = {"status": "ok", **summary, "heldout_fraction_in_train": overlap,
                                   "flagged": flagged.to_dict(orient="records")}
    fig = plot_nearest_neighbours(fake, train_images, audit.indices, ctx.out / "memorisation.png", n=8,
                                  scores=audit.scores, rows=audit.most_similar(8), metric="MSE")
    ctx.report.heading(title)
    if overlap > 0:
        ctx.report.note(f"{overlap:.1%} of the real (held-out) images are identical to training images: --real "
                        "overlaps --train, which pulls the threshold towards 0. Give held-out real images as --real.")
    ctx.report.table(["quantity", "value"], [[k.replace("_", " "), v] for k, v in summary.items()],
                     caption="Pixel MSE (uint8 units) to the nearest training image. A generated image is flagged "
                             "when it is closer than the given percentile of held-out real images (the --real set) "
                             "or byte-identical to a training image.")
    ctx.report.images([("the 8 generated images closest to the training set, with their 3 nearest training images",
                        fig)])


def _truncation_section(ctx: _Context, model, real: RealSet, extractor: FeatureExtractor | None,
                        metric: str, thresholds: Sequence[float | None] | None, n: int | None) -> None:
    from dermsynth.truncation import truncation_sweep

    title = "Truncation sweep (Furger et al. 2020, Table 3)"
    if model is None:
        return ctx.skip("truncation", title, "no generator checkpoint given (--checkpoint)")
    if get_metric(metric).needs_features and extractor is None:
        return ctx.skip("truncation", title, f"a {metric.upper()} sweep needs a feature extractor")
    if model.truncation is None:
        return ctx.skip("truncation", title, f"a {model.model} generator normalises its latent z: it has no truncation")
    n = min(len(real), n or len(real))
    sweep = truncation_sweep(model, real, metric=metric, thresholds=thresholds, n=n, extractor=extractor,
                             seed=ctx.seed, device=ctx.device, progress=ctx.progress)
    ctx.numbers["truncation"] = {"status": "ok", **sweep.as_dict()}
    ctx.report.heading(title)
    header = sweep.metric.upper() + (f" ({sweep.extractor})" if sweep.extractor else "")
    warning = f" Extractor {sweep.extractor}: {extractor.warning}." if sweep.extractor else ""
    how = ("components with |z| above the threshold are resampled" if sweep.parameter == "threshold"
           else "w is moved toward the average w by psi (1 = none)")
    ctx.report.table([sweep.parameter, header], sweep.rows(),
                     caption=f"{n} generated images per setting, same latent draws; {how}. Lower is better; "
                             f"best: {threshold_label(sweep.best)}.{warning}")
    ctx.report.images([("metric against truncation threshold", sweep.plot(ctx.out / "truncation.png"))])


def _latent_walk_section(ctx: _Context, checkpoint) -> None:
    from dermsynth.sample import latent_walk

    title = "Latent walks"
    if checkpoint is None:
        return ctx.skip("latent_walk", title, "no generator checkpoint given (--checkpoint)")
    path = latent_walk(checkpoint, ctx.out / "latent_walk.png", rows=4, steps=8, seed=ctx.seed, device=str(ctx.device))
    ctx.numbers["latent_walk"] = {"status": "ok", "rows": 4, "steps": 8, "seed": ctx.seed}
    ctx.report.heading(title)
    ctx.report.images([("slerp between random latents, one walk per row (Baur et al. 2018, Fig. 4)", path)])


def _overfitting_section(ctx: _Context, checkpoint) -> None:
    from dermsynth.report.figures import plot_curves

    title = "Discriminator over-fitting (Furger et al. 2020, Fig. 6)"
    if checkpoint is None:
        return ctx.skip("overfitting", title, "no generator checkpoint given (--checkpoint)")
    run = Path(checkpoint) if Path(checkpoint).is_dir() else Path(checkpoint).parent
    csv = run / "overfit.csv"
    df = pd.read_csv(csv) if csv.is_file() and csv.stat().st_size else None
    if df is None or df.empty:
        return ctx.skip("overfitting", title, f"{csv} is missing or empty: the run was trained without "
                                              f"--overfit-holdout")
    png = plot_curves(csv, ctx.out / "overfit.png", ["d_train", "d_heldout", "gap"], ylabel="mean D logit",
                      title="mean D output: training vs held-out real images")
    ctx.numbers["overfitting"] = {"status": "ok", "csv": str(csv), "rows": df.to_dict(orient="list")}
    last = df.iloc[-1]
    ctx.report.heading(title)
    ctx.report.table(["step", "D on training reals", "D on held-out reals", "gap"],
                     [[int(last["step"]), float(last["d_train"]), float(last["d_heldout"]), float(last["gap"])]],
                     caption="Last logged step. A gap that keeps growing means D memorises its training images.")
    ctx.report.images([("mean D logit over training", png)])


# ----------------------------------------------------------------------------------------
# The entry point
# ----------------------------------------------------------------------------------------


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (np.ndarray, Path)):
        return value.tolist() if isinstance(value, np.ndarray) else str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def evaluate(
    real,
    fake=None,
    *,
    train=None,
    checkpoint: str | Path | None = None,
    out: str | Path = "runs/evaluate",
    extractor: str = "auto",
    inception_weights: str | Path | None = None,
    extractor_checkpoint: str | Path | None = None,
    size: int | None = None,
    max_images: int | None = None,
    n_fake: int | None = None,
    sweep_metric: str = "swd",
    thresholds: Sequence[float | None] | None = None,
    sweep_n: int | None = 512,
    stats_cache: str | Path | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> EvaluationResult:
    """Evaluate generated images against real ones; write ``<out>/report.html`` and ``<out>/metrics.json``.

    ``real`` / ``fake`` / ``train``: sources (see the module docstring); ``fake`` may be None when
    ``checkpoint`` is given (``n_fake`` samples, default as many as real images). ``size``: side the sets
    are read at (default: the generator's resolution, else what ``real`` is). ``max_images``: subsample
    each set to at most this many (seeded). ``extractor``: auto | inception | shipped | classifier | none
    (auto: Inception if its weights are given, else the classifier if its checkpoint is given, else the
    shipped ``derm-smallcnn-v1``). ``sweep_metric``: a lower-is-better registered metric (swd, fid, kid,
    colour_jsd) for the truncation sweep (``thresholds``; default by model: latent thresholds, or psi for
    StyleGAN2; skipped for PGAN), over ``sweep_n`` images per setting. ``stats_cache``: a folder
    where the real set's features are cached on disk (keyed by a hash of the images + extractor version).
    """
    from dermsynth.sample import load_generator

    for option, value in (("--max-images", max_images), ("--n-fake", n_fake), ("--sweep-n", sweep_n)):
        require_at_least(option, value)
    out = check_writable_dir(out, "--out")  # before any computation
    dev = resolve_device(device)
    model = load_generator(checkpoint, dev) if checkpoint is not None else None
    if fake is None and model is None:
        raise DermsynthError("evaluate needs generated images (--fake) or a generator checkpoint (--checkpoint)")
    if model is not None:
        gen_size = int(model.generator.resolution)
        if size is not None and size != gen_size:
            raise DermsynthError(f"--size {size} differs from the generator's {gen_size}px output ({checkpoint})")
        size = gen_size
    ext, why = _choose_extractor(extractor, inception_weights, extractor_checkpoint)

    real_ds = _at_most(_load(real, size, "real", progress), max_images, seed)
    size = real_ds.size
    if fake is not None:
        fake_ds = _at_most(_load(fake, size, "generated", progress), max_images, seed + 1)
    else:
        fake_ds = _sample(model, n_fake or len(real_ds), seed + 1)
    train_ds = _at_most(_load(train, size, "training", progress), max_images, seed + 2) if train is not None else None
    real_set = RealSet(real_ds.images, cache_dir=stats_cache)
    fake_set = ImageSet(fake_ds.images, name="generated images")
    real_images, fake_images = real_set.images, fake_set.images

    numbers: dict = {"inputs": {
        "real": {"source": str(real_ds.source or real), "n": len(real_ds)},
        "fake": {"source": str(fake_ds.source or fake), "n": len(fake_ds)},
        "train": None if train_ds is None else {"source": str(train_ds.source or train), "n": len(train_ds)},
        "checkpoint": None if checkpoint is None else str(checkpoint), "size": size, "device": str(dev), "seed": seed,
    }}
    report = HTMLReport("dermsynth evaluation")
    ctx = _Context(out=out, device=dev, seed=seed, progress=progress, report=report, numbers=numbers)
    report.paragraph(f"Real: {numbers['inputs']['real']['source']} ({len(real_ds)} images). Generated: "
                     f"{numbers['inputs']['fake']['source']} ({len(fake_ds)} images). All at {size}x{size}; "
                     f"computed on {dev}.")
    _images_section(ctx, real_ds, fake_ds)
    _swd_section(ctx, real_set, fake_set)
    _feature_section(ctx, real_set, fake_set, ext, why)
    _colour_section(ctx, real_ds, fake_ds, real_set, fake_set)
    _memorisation_section(ctx, real_images, fake_images, train_ds)
    _truncation_section(ctx, model, real_set, ext, sweep_metric, thresholds, sweep_n)
    _latent_walk_section(ctx, checkpoint)
    _overfitting_section(ctx, checkpoint)

    json_path = write_json(out / "metrics.json", numbers, default=_json_default)
    return EvaluationResult(report=report.write(out / "report.html"), json=json_path, numbers=numbers)
