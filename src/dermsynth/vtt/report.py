"""The study report, laid out as Baur et al. 2018 reports its visual Turing test (Table 2 per rater, Table 3
Fleiss' kappa, Fig. 5 TPR vs FPR and accuracy by group) plus Furger et al.'s F1 per participant.

Written to ``out``: ``report.html`` (self-contained), ``report.json`` (every number), ``answers.csv`` (final
answers with the key), ``answer_log.csv`` (every submission, revisions included), ``images.csv`` (per-image
fraction called real), ``most_real.png`` / ``most_fake.png`` (grids) and ``fig5a.png`` / ``fig5b.png``.

Group and pooled figures, and every kappa, use the raters who answered every image ("complete"); raters
still under way appear in the per-rater tables only, marked. Pooled intervals treat all answers of a group
as independent, which they are not (the same images recur): read them as descriptive.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from dermsynth.report import HTMLReport, image_grid, save_png
from dermsynth.vtt.stats import Confusion, binary_table, binom_p, f1_interval, fleiss_kappa, wilson_interval
from dermsynth.vtt.store import Study

ALL = "all"
GRID_MAX = 16
_FRAME = {True: (46, 125, 50), False: (178, 59, 59)}  # green frame: real image, red: fake


@dataclass
class VTTReport:
    html: Path
    json: Path
    numbers: dict


def _interval(k: int, n: int) -> list[float]:
    return list(wilson_interval(k, n))


def confusion_summary(c: Confusion) -> dict:
    """Counts, rates with Wilson 95% intervals and the binomial test of accuracy against chance."""
    return {
        "tp": c.tp, "fp": c.fp, "fn": c.fn, "tn": c.tn, "n": c.n,
        "accuracy": c.accuracy, "accuracy_ci": _interval(c.correct, c.n), "accuracy_p": binom_p(c.correct, c.n),
        "tpr": c.tpr, "tpr_ci": _interval(c.tp, c.tp + c.fn),
        "tnr": c.tnr, "tnr_ci": _interval(c.tn, c.tn + c.fp),
        "fpr": c.fpr, "f1": c.f1,
    }


def _rater_rows(answers: pd.DataFrame, progress: dict[str, tuple[int, int]], groups: dict[str, str]) -> list[dict]:
    rows = []
    for name in groups:
        sub = answers[answers.rater == name]
        c = Confusion.of(sub.is_real, sub.called_real)
        done, total = progress[name]
        row = {"rater": name, "group": groups[name], "answered": done, "images": total, "complete": done == total,
               **confusion_summary(c), "f1_ci": list(f1_interval(sub.is_real, sub.called_real))}
        row["mean_confidence"] = float(sub.confidence.mean()) if sub.confidence.notna().any() else None
        row["revisions"] = int(sub.revisions.sum())
        rows.append(row)
    return rows


def _group_rows(raters: list[dict], answers: pd.DataFrame) -> list[dict]:
    complete = [r for r in raters if r["complete"]]
    names = sorted({r["group"] for r in complete})
    rows = []
    for group in names + [ALL]:
        members = [r for r in complete if group in (ALL, r["group"])]
        if not members:
            continue
        sub = answers[answers.rater.isin([r["rater"] for r in members])]
        pooled = Confusion.of(sub.is_real, sub.called_real)
        acc = np.array([r["accuracy"] for r in members])
        f1 = np.array([r["f1"] for r in members])
        rows.append({"group": group, "raters": len(members), **confusion_summary(pooled),
                     "rater_accuracy_mean": float(acc.mean()),
                     "rater_accuracy_sd": float(acc.std(ddof=1)) if len(acc) > 1 else math.nan,
                     "rater_f1_mean": float(np.nanmean(f1)) if np.isfinite(f1).any() else math.nan})
    return rows


def _kappa_table(raters: list[dict], answers: pd.DataFrame) -> dict:
    """Table 3: Fleiss' kappa per group and all raters (columns) on real / fake / all images (rows)."""
    complete = [r for r in raters if r["complete"]]
    groups = sorted({r["group"] for r in complete}) + [ALL]
    wide = answers.pivot(index="image_id", columns="rater", values="called_real")
    truth = answers.groupby("image_id").is_real.first()
    out: dict = {}
    for group in groups:
        members = [r["rater"] for r in complete if group in (ALL, r["group"])]
        cells = {}
        for subset, keep in (("real", truth == 1), ("fake", truth == 0), ("all", truth >= 0)):
            if len(members) < 2:
                cells[subset] = {"kappa": None, "reason": "needs at least 2 complete raters", "raters": len(members)}
                continue
            mat = wide.loc[keep[keep].index, members].dropna()  # images every member rated
            if not len(mat):
                cells[subset] = {"kappa": None, "reason": "no image rated by every rater", "raters": len(members),
                                 "images": 0}
                continue
            kappa = fleiss_kappa(binary_table(mat.to_numpy()))
            cells[subset] = {"kappa": None if math.isnan(kappa) else kappa, "raters": len(members),
                             "images": int(len(mat)),
                             **({"reason": "undefined: every answer in one category"} if math.isnan(kappa) else {})}
        out[group] = cells
    return out


def _image_rows(answers: pd.DataFrame, images: pd.DataFrame, complete: list[str]) -> pd.DataFrame:
    sub = answers[answers.rater.isin(complete)]
    agg = sub.groupby("image_id").agg(answers=("called_real", "size"), called_real=("called_real", "sum"),
                                      mean_confidence=("confidence", "mean"))
    df = images.set_index("image_id").join(agg, how="left")
    df["answers"] = df["answers"].fillna(0).astype(int)
    df["called_real"] = df["called_real"].fillna(0).astype(int)
    with np.errstate(invalid="ignore", divide="ignore"):
        df["fraction_real"] = df["called_real"] / df["answers"].where(df["answers"] > 0)
    return df.reset_index().sort_values(["fraction_real", "is_real"], ascending=[False, True], na_position="last")


def _framed(png: bytes, is_real: bool) -> np.ndarray:
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).copy()
    width = max(1, round(img.shape[0] / 24))
    img[:width], img[-width:], img[:, :width], img[:, -width:] = (_FRAME[is_real],) * 4
    return img


def _grid(study: Study, rows: pd.DataFrame, path: Path) -> Path | None:
    rows = rows.head(GRID_MAX)
    if rows.empty:
        return None
    tiles = np.stack([_framed(study.png(i), bool(r)) for i, r in zip(rows.image_id, rows.is_real, strict=True)])
    return save_png(image_grid(tiles, nrow=min(8, len(tiles))), path, min_side=256)


def _fig5(raters: list[dict], out: Path) -> list[tuple[str, Path]]:
    """fig5a.png: TPR vs FPR per rater, coloured by group (Baur et al. 2018, Fig. 5a); fig5b.png: accuracy and F1 per
    group as box plots (Fig. 5b; Furger et al. 2020, Fig. 10). Empty without complete raters."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in raters if r["complete"] and r["n"]]
    if not done:
        return []
    groups = sorted({r["group"] for r in done})
    colours = {g: plt.get_cmap("tab10")(i % 10) for i, g in enumerate(groups)}
    fig, ax = plt.subplots(figsize=(5.2, 4.8), dpi=100)
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="chance")
    for g in groups:
        rs = [r for r in done if r["group"] == g]
        ax.scatter([r["fpr"] for r in rs], [r["tpr"] for r in rs], color=colours[g], label=g, s=40)
        for r in rs:
            ax.annotate(r["rater"], (r["fpr"], r["tpr"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set(xlim=(-0.03, 1.03), ylim=(-0.03, 1.03), xlabel="FPR (fakes called real)", ylabel="TPR (reals called real)",
           title="(a) every rater")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "fig5a.png")
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(7.5, 4.8), dpi=100)
    for ax, key, label in ((axes[0], "accuracy", "accuracy"), (axes[1], "f1", "F1 (real class)")):
        data = [[r[key] for r in done if r["group"] == g and not math.isnan(r[key])] for g in groups]
        ax.boxplot(data)
        ax.set_xticks(range(1, len(groups) + 1), groups, rotation=20 if len(groups) > 2 else 0)
        for i, vals in enumerate(data, start=1):
            ax.scatter(np.full(len(vals), i), vals, color=colours[groups[i - 1]], s=18, zorder=3)
        ax.axhline(0.5, ls="--", c="grey", lw=1)
        ax.set(ylim=(-0.03, 1.03), ylabel=label, title=f"({'b' if key == 'accuracy' else 'c'}) {label} by group")
    fig.tight_layout()
    fig.savefig(out / "fig5b.png")
    plt.close(fig)
    return [("(a) TPR vs FPR per rater", out / "fig5a.png"), ("(b, c) accuracy and F1 by group", out / "fig5b.png")]


def _fmt_ci(value: float, ci: list[float]) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci and not math.isnan(ci[0]) else f"{value:.3f}"


def _fmt_p(p: float) -> str:
    return "n/a" if math.isnan(p) else (f"{p:.2g}" if p < 0.001 else f"{p:.3f}")


def _clean(value):
    """NaN -> None, recursively, so that the JSON is standard."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        return _clean(value.item())
    return value


def write_report(study: Study | str | Path, out: str | Path) -> VTTReport:
    """Analyse every answer of a study and write the report files (see the module docstring) to ``out``."""
    study = study if isinstance(study, Study) else Study(study)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    answers = study.answers_frame()
    images = study.images_frame()
    raters_info = study.raters()
    prog = study.progress()
    progress = {r.name: prog.get(r.id, (0, 0)) for r in raters_info}
    groups = {r.name: r.group for r in raters_info}

    answers.to_csv(out / "answers.csv", index=False)
    study.log_frame().to_csv(out / "answer_log.csv", index=False)

    raters = _rater_rows(answers, progress, groups)
    complete = [r["rater"] for r in raters if r["complete"]]
    group_rows = _group_rows(raters, answers)
    kappa = _kappa_table(raters, answers[answers.rater.isin(complete)]) if complete else {}
    per_image = _image_rows(answers, images, complete)
    per_image.to_csv(out / "images.csv", index=False)
    answered = per_image[per_image.answers > 0]
    grid_real = _grid(study, answered, out / "most_real.png")
    grid_fake = _grid(study, answered.sort_values(["fraction_real", "is_real"], ascending=[True, False]),
                      out / "most_fake.png")
    figures = _fig5(raters, out)

    s = study.settings
    numbers = _clean({
        "study": {"file": str(study.path), "created_at": study.created_at, "title": s.title,
                  "images": len(images), "real": int(images.is_real.sum()), "fake": int((images.is_real == 0).sum()),
                  "per_rater_order": s.per_rater_order, "images_per_rater": s.images_per_rater,
                  "time_limit": s.time_limit, "allow_revise": s.allow_revise, "confidence": s.confidence,
                  "sources": s.sources},
        "positive_class": "real (TP: real called real, TN: fake called fake)",
        "raters": raters, "groups": group_rows, "fleiss_kappa": kappa,
        "images": per_image.to_dict(orient="records"),
        "notes": ["Group, pooled and kappa figures use complete raters only.",
                  "Pooled Wilson intervals and binomial tests treat every answer as independent.",
                  "F1 intervals: 95% percentile bootstrap over the rater's answers (2000 resamples, seed 0)."],
    })
    json_path = out / "report.json"
    json_path.write_text(json.dumps(numbers, indent=2) + "\n")

    rep = HTMLReport(f"Visual Turing test: {s.title}")
    rep.paragraph(f"{len(images)} images ({numbers['study']['real']} real, {numbers['study']['fake']} fake) from "
                  f"real = {s.sources.get('real', '?')}, fake = {s.sources.get('fake', '?')}; "
                  f"{'one order per rater' if s.per_rater_order else 'the same order for every rater'}"
                  f"{f', {s.images_per_rater} images per rater' if s.images_per_rater else ''}"
                  f"{f', {s.time_limit:g} s per image' if s.time_limit else ''}"
                  f"{', revising allowed' if s.allow_revise else ''}{', with confidence' if s.confidence else ''}. "
                  f"{len(raters)} raters invited, {len(complete)} complete.")
    rep.paragraph("Real is the positive class: TP = real called real, FP = fake called real, FN = real called "
                  "fake, TN = fake called fake; TPR = TP/(TP+FN), TNR = TN/(TN+FP), F1 of the real class.")
    if raters:
        rep.heading("Per rater (Baur et al. 2018, Table 2 layout)")
        keys = [("TP", "tp"), ("FP", "fp"), ("FN", "fn"), ("TN", "tn"), ("ACC", "accuracy"), ("TPR", "tpr"),
                ("TNR", "tnr"), ("F1", "f1")]
        rep.table([""] + [r["rater"] for r in raters],
                  [[label] + [_num(r[key]) for r in raters] for label, key in keys])
        rep.table(["rater", "group", "answered", "accuracy [Wilson 95%]", "p (vs 0.5)", "TPR [95%]", "TNR [95%]",
                   "F1 [bootstrap 95%]", "mean confidence", "revisions"],
                  [[r["rater"], r["group"],
                    f"{r['answered']}/{r['images']}" + ("" if r["complete"] else " (incomplete)"),
                    _fmt_ci(r["accuracy"], r["accuracy_ci"]), _fmt_p(r["accuracy_p"]), _fmt_ci(r["tpr"], r["tpr_ci"]),
                    _fmt_ci(r["tnr"], r["tnr_ci"]), _fmt_ci(r["f1"], r["f1_ci"]),
                    "" if r["mean_confidence"] is None else f"{r['mean_confidence']:.2f}", r["revisions"]]
                   for r in raters], caption="p: two-sided exact binomial test of the accuracy against chance")
    if group_rows:
        rep.heading("Per group and pooled (complete raters)")
        rep.table(["group", "raters", "TP", "FP", "FN", "TN", "pooled accuracy [95%]", "p (vs 0.5)", "TPR [95%]",
                   "TNR [95%]", "F1", "rater accuracy mean ± sd", "rater F1 mean"],
                  [[g["group"], g["raters"], g["tp"], g["fp"], g["fn"], g["tn"],
                    _fmt_ci(g["accuracy"], g["accuracy_ci"]),
                    _fmt_p(g["accuracy_p"]), _fmt_ci(g["tpr"], g["tpr_ci"]), _fmt_ci(g["tnr"], g["tnr_ci"]),
                    _num(g["f1"]), f"{g['rater_accuracy_mean']:.3f} ± {_num(g['rater_accuracy_sd'])}",
                    _num(g["rater_f1_mean"])] for g in group_rows],
                  caption="pooled intervals and tests treat all answers of a group as independent (descriptive)")
    if kappa:
        rep.heading("Fleiss' kappa (Baur et al. 2018, Table 3 layout)")
        cols = list(kappa)
        rep.table(["images"] + cols,
                  [[f"{subset} images"] + [_kappa_cell(kappa[c][subset]) for c in cols]
                   for subset in ("real", "fake", "all")],
                  caption="1: perfect agreement; <= 0: no agreement beyond chance")
    if figures:
        rep.heading("Fig. 5 (Baur et al. 2018) and F1 by group (Furger et al. 2020, Fig. 10)")
        rep.images(figures)
    grids = [(cap, p) for cap, p in (("most often called real", grid_real), ("most often called fake", grid_fake))
             if p is not None]
    if grids:
        rep.heading("Images most often called real / fake")
        rep.paragraph("Frames: green = real image, red = fake image. Left to right, top to bottom.")
        rep.images(grids)
    rep.heading("Per image")
    rep.table(["image id", "key", "origin", "answers", "called real", "fraction called real", "mean confidence"],
              [[r.image_id, "real" if r.is_real else "fake", r.origin_id, r.answers, r.called_real,
                _num(r.fraction_real), _num(r.mean_confidence)] for r in per_image.itertuples()])
    rep.paragraph("Raw data: answers.csv (final answers with the key), answer_log.csv (every submission), "
                  "images.csv, report.json.")
    html_path = rep.write(out / "report.html")
    return VTTReport(html_path, json_path, numbers)


def _num(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _kappa_cell(cell: dict) -> str:
    if cell.get("kappa") is None:
        return f"n/a ({cell.get('reason', '')})"
    return f"{cell['kappa']:.4f}"
