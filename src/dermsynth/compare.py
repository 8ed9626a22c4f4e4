"""The Baur et al. 2018 comparison: several GANs trained on the same data, at the same resolution, with the same
image budget, scored by SWD against the real-vs-real lower bound (Table 1), with sample grids (Fig. 1)
and zoomed crops for artifacts (Fig. 3).

Every model trains in ``<out>/<model>`` with the shared trainer, so an interrupted comparison resumes
where it stopped: re-run the same command.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from dermsynth.data.dataset import LesionDataset
from dermsynth.defaults import DEFAULT_SIZE
from dermsynth.demo import rerun_to_continue
from dermsynth.device import resolve_device
from dermsynth.errors import DermsynthError
from dermsynth.io import write_json, write_text
from dermsynth.metrics.swd import SWDResult, disjoint_halves, swd
from dermsynth.models import MODELS, NOISE_INPUTS, model_spec
from dermsynth.report.figures import image_grid, save_png
from dermsynth.report.html import HTMLReport
from dermsynth.sample import load_generator, sample_images
from dermsynth.train import TrainConfig, train
from dermsynth.train.trainer import load_training_data

PAPER_ORDER = ("pgan", "dcgan", "lapgan")  # the column order of Baur et al. 2018, Table 1


def comparable_models() -> list[str]:
    """The registered models `compare` can train and score: those sampled from latents (noise -> image)."""
    return sorted(name for name, spec in MODELS.items() if spec.inputs == NOISE_INPUTS)


@dataclass
class CompareResult:
    report: Path
    lower_bound: SWDResult
    models: dict[str, SWDResult] = field(default_factory=dict)

    def table(self) -> str:
        """Table 1 layout as plain text: one column per model, a row per pyramid level and the mean."""
        names = list(self.models)
        header = ["level", "lower bound", *[f"{m.upper()} vs real" for m in names]]
        rows = [[f"{r}x{r}", self.lower_bound.per_level[i], *[self.models[m].per_level[i] for m in names]]
                for i, r in enumerate(self.lower_bound.resolutions)]
        rows.append(["mean", self.lower_bound.mean, *[self.models[m].mean for m in names]])
        widths = [max(len(h), 10) for h in header]
        fmt = lambda c: f"{c:.3f}" if isinstance(c, float) else str(c)  # noqa: E731
        lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
        lines += ["  ".join(fmt(c).rjust(w) for c, w in zip(row, widths)) for row in rows]
        return "\n".join(lines)


def compare(models: Sequence[str] = PAPER_ORDER, data: str | None = None, size: int = DEFAULT_SIZE, kimg: float = 100.0,
            out: str | Path = "runs/compare", batch_size: int | None = None, eval_images: int | None = None,
            device: str = "auto", seed: int = 0, progress: bool = True,
            **train_options: object) -> CompareResult:
    """Train every model in ``models`` for ``kimg`` thousand real images shown to D, then score them.

    Each model samples as many images as the training set has (or ``eval_images``). The real set is split
    into two disjoint halves A and B; the lower bound is SWD(A, B), and a model's score is the mean of
    SWD(A, F1) and SWD(B, F2) over two disjoint halves F1, F2 of its samples, so every number is taken at
    the same set size. ``batch_size`` None keeps each model's own minibatch (PGAN's per resolution).
    ``train_options`` are passed on to every :class:`TrainConfig`.
    """
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        raise DermsynthError(f"unknown model(s) {', '.join(unknown) or '(none given)'}; "
                             f"available: {', '.join(sorted(MODELS))}")
    translators = [m for m in models if MODELS[m].inputs != NOISE_INPUTS]
    if translators:  # SWD of samples drawn from latents: a map or image translator has none to draw
        raise DermsynthError(f"--models: {translators[0]} translates {', '.join(MODELS[translators[0]].inputs)}, it "
                             f"does not sample from latents; compare takes {', '.join(comparable_models())}")
    if not kimg > 0:
        raise DermsynthError(f"--kimg must be > 0, got {kimg}")
    out, dev = Path(out), resolve_device(device)
    base = TrainConfig(data=data, size=size, batch_size=batch_size, seed=seed, device=str(dev), **train_options)
    dataset = load_training_data(base, progress)
    n = min(eval_images or len(dataset), len(dataset))
    half = n // 2
    if half < 2:
        raise DermsynthError(f"need at least 4 real images to compare, got {n}")
    idx_a, idx_b = disjoint_halves(len(dataset), half, seed)
    real_a, real_b = np.asarray(dataset.images[idx_a]), np.asarray(dataset.images[idx_b])
    swd_kw = dict(seed=seed, device=str(dev), progress=progress)
    lower = swd(real_a, real_b, **swd_kw)

    scores: dict[str, SWDResult] = {}
    samples: dict[str, np.ndarray] = {}
    budget: dict[str, dict] = {}
    for name in models:
        cfg = budget_config(base, name, kimg, out / name)
        with rerun_to_continue(f"dermsynth compare --out {out}", cfg.out):
            result = train(cfg, dataset=dataset, resume=True, progress=progress)
        budget[name] = {"kimg": kimg, "steps": result.step, "batch_size": cfg.batch_size,
                        "batch_schedule": cfg.batch_schedule}
        fake, _ = sample_images(load_generator(result.checkpoint, dev), 2 * half, seed)
        samples[name] = fake
        scores[name] = _mean_result(swd(real_a, fake[:half], **swd_kw), swd(real_b, fake[half:], **swd_kw))

    res = CompareResult(report=out / "report.html", lower_bound=lower, models=scores)
    numbers = {"lower_bound": lower.as_dict(), "models": {m: s.as_dict() for m, s in scores.items()},
               "budget": budget, "images_per_set": half, "size": size, "data": dataset.source, "device": str(dev)}
    write_json(out / "compare.json", numbers)
    write_text(out / "table1.txt", res.table() + "\n")
    _write_report(res, dataset, real_b, samples, budget, half, out)
    return res


def budget_config(base: TrainConfig, model: str, kimg: float, out: Path) -> TrainConfig:
    """The resolved config that trains ``model`` on ``kimg`` thousand real images shown to D.

    A growing model (PGAN) gets its fade and stable phases scaled so that it reaches the full resolution
    and finishes one stable phase there within the budget, as in Baur et al. 2018; phases set in ``base`` are kept.
    """
    cfg = TrainConfig.from_dict({**base.to_dict(), "model": model, "out": str(out), "kimg": kimg, "steps": None})
    if "stable_kimg" in model_spec(model).defaults:
        growths = cfg.size.bit_length() - 3  # 4 px -> size
        phase = kimg / (2 * growths + 1)
        cfg.stable_kimg = phase if cfg.stable_kimg is None else cfg.stable_kimg
        cfg.fade_kimg = phase if cfg.fade_kimg is None else cfg.fade_kimg
    cfg = cfg.resolve()
    cfg.sample_every = cfg.checkpoint_every = max(cfg.steps // 10, 1)
    cfg.log_every = max(cfg.steps // 200, 1)
    return cfg


def zoomed_crops(images: np.ndarray, count: int = 4, zoom: int = 4) -> np.ndarray:
    """Fig. 3: the central quarter-area crop of the first ``count`` images, enlarged nearest-neighbour so
    that checkerboard and blocking artifacts stay visible."""
    h, w = images.shape[1:3]
    crops = images[:count, h // 4: h // 4 + h // 2, w // 4: w // 4 + w // 2]
    return crops.repeat(zoom, axis=1).repeat(zoom, axis=2)


def _mean_result(a: SWDResult, b: SWDResult) -> SWDResult:
    per_level = [(x + y) / 2 for x, y in zip(a.per_level, b.per_level)]
    return SWDResult(a.resolutions, per_level, float(np.mean(per_level)), a.n_images)


def _write_report(res: CompareResult, dataset: LesionDataset, real: np.ndarray, samples: dict[str, np.ndarray],
                  budget: dict[str, dict], half: int, out: Path) -> None:
    report = HTMLReport(f"dermsynth compare: {', '.join(m.upper() for m in samples)} on {dataset.source}")
    report.paragraph(f"{len(dataset)} training images at {dataset.size}x{dataset.size}. Same image budget for "
                     "every model: " + "; ".join(f"{m}: {b['kimg']:g} kimg = {b['steps']} steps at batch "
                                                 f"{b['batch_schedule'] or b['batch_size']}"
                                                 for m, b in budget.items()) + ".")
    report.heading("Table 1: sliced Wasserstein distance to the real images (x1e3)")
    names = list(res.models)
    rows = [[f"{r}", res.lower_bound.per_level[i], *[res.models[m].per_level[i] for m in names]]
            for i, r in enumerate(res.lower_bound.resolutions)]
    rows.append(["mean", res.lower_bound.mean, *[res.models[m].mean for m in names]])
    report.table(["level (px)", "lower bound (real vs real)", *[f"{m.upper()} vs real" for m in names]], rows,
                 caption=f"{half} images per set; a model's score is the mean over two disjoint halves of its "
                         "samples against the two halves of the real set. Lower is better.")
    report.heading("Fig. 1: real and generated samples")
    items = [("real", save_png(image_grid(real[:36], nrow=6), out / "real.png", min_side=384))]
    items += [(m.upper(), save_png(image_grid(s[:36], nrow=6), out / f"{m}_samples.png", min_side=384))
              for m, s in samples.items()]
    report.images(items)
    report.heading("Fig. 3: zoomed crops (artifacts)")
    report.images([(m.upper(), save_png(image_grid(zoomed_crops(s), nrow=4), out / f"{m}_zoom.png"))
                   for m, s in samples.items()])
    report.write(res.report)
