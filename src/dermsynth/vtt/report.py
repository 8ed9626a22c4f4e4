"""The study report, laid out as Baur et al. 2018 reports its visual Turing test (Table 2 per rater, Table 3
Fleiss' kappa, Fig. 5 TPR vs FPR and accuracy by group) plus Furger et al.'s F1 per participant, a methods
paragraph a paper can cite, reading times, per-rater ROC AUC of the confidence scale, and every agreement
figure with the images and raters behind it (Krippendorff's alpha for incomplete designs).

Written to ``out`` (all at once: built in a temporary folder and moved in, so a failure leaves the previous
files): ``report.html`` (self-contained), ``report.json`` (every number), the CSV export of
:func:`export_csv` (``settings.csv``, ``hanging_list.csv``, ``answers.csv``, ``answer_log.csv``),
``images.csv`` (per-image fraction called real), ``most_real.png`` / ``most_fake.png`` and ``fig5a.png`` /
``fig5b.png``. Calibration (training) images and their answers appear in the export only, never in a figure.

Group and pooled figures, and every agreement figure, use the raters who answered their whole list
("complete"); raters still under way appear in the per-rater tables only, marked. Pooled intervals treat all
answers of a group as independent, which they are not (the same images recur): read them as descriptive.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from dermsynth.io import atomic_open
from dermsynth.report import HTMLReport, image_grid, save_png
from dermsynth.vtt.stats import (Confusion, binary_table, binom_p, confidence_score, f1_interval, fleiss_kappa,
                                 krippendorff_alpha, roc_auc, wilson_interval)
from dermsynth.vtt.store import Study

ALL = "all"
GRID_MAX = 16
# Fewer images than this behind an agreement figure (or fewer than 2 raters): reported with a warning, since
# kappa's and alpha's sampling error is then of the order of the figure itself.
MIN_AGREEMENT_IMAGES = 20
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
        row["roc_auc"] = (roc_auc(sub.is_real, confidence_score(sub.called_real, sub.confidence))
                          if len(sub) and sub.confidence.notna().all() else None)
        row["revisions"] = int(sub.revisions.sum())
        row.update(_reading_times(sub))
        rows.append(row)
    return rows


def _reading_times(sub: pd.DataFrame) -> dict:
    """Median and quartiles of the server-measured reading time (image served -> answer), in seconds."""
    ms = sub.server_ms.dropna().to_numpy(dtype=np.float64)
    if not len(ms):
        return {"reading_s_median": None, "reading_s_q1": None, "reading_s_q3": None, "reading_s_total": None}
    q1, med, q3 = np.percentile(ms / 1000, [25, 50, 75])
    return {"reading_s_median": float(med), "reading_s_q1": float(q1), "reading_s_q3": float(q3),
            "reading_s_total": float(ms.sum() / 1000)}


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
        aucs = [r["roc_auc"] for r in members if r["roc_auc"] is not None and not math.isnan(r["roc_auc"])]
        rows.append({"group": group, "raters": len(members), **confusion_summary(pooled),
                     "rater_accuracy_mean": float(acc.mean()),
                     "rater_accuracy_sd": float(acc.std(ddof=1)) if len(acc) > 1 else math.nan,
                     "rater_f1_mean": float(np.nanmean(f1)) if np.isfinite(f1).any() else math.nan,
                     "rater_auc_mean": float(np.mean(aucs)) if aucs else None, **_reading_times(sub)})
    return rows


def _agreement(raters: list[dict], answers: pd.DataFrame) -> tuple[dict, list[str]]:
    """Table 3 and more: per group and all raters (columns) on real / fake / all images (rows), Fleiss' kappa
    over the images every member rated and Krippendorff's alpha over every answer (incomplete designs), each
    with the images and raters behind it; plus a warning for every figure resting on too few of either."""
    complete = [r for r in raters if r["complete"]]
    groups = sorted({r["group"] for r in complete}) + [ALL]
    wide = answers.pivot(index="image_id", columns="rater", values="called_real")
    truth = answers.groupby("image_id").is_real.first()
    out: dict = {}
    warnings: list[str] = []
    for group in groups:
        members = [r["rater"] for r in complete if group in (ALL, r["group"])]
        cells = {}
        for subset, keep in (("real", truth == 1), ("fake", truth == 0), ("all", truth >= 0)):
            mat = wide.loc[keep[keep].index, members]
            cell = {"raters": len(members)}
            full = mat.dropna()  # images every member rated
            cell["fleiss_images"] = int(len(full))
            if len(members) < 2:
                cell.update(fleiss_kappa=None, fleiss_reason="needs at least 2 complete raters")
            elif not len(full):
                cell.update(fleiss_kappa=None, fleiss_reason="no image rated by every rater")
            else:
                kappa = fleiss_kappa(binary_table(full.to_numpy()))
                cell["fleiss_kappa"] = None if math.isnan(kappa) else kappa
                if math.isnan(kappa):
                    cell["fleiss_reason"] = "undefined: every answer in one category"
            pairable = mat[mat.notna().sum(axis=1) >= 2]
            cell["alpha_images"] = int(len(pairable))
            cell["alpha_answers"] = int(pairable.notna().sum().sum())
            alpha = krippendorff_alpha(mat.to_numpy(dtype=np.float64)) if len(members) >= 2 else math.nan
            cell["krippendorff_alpha"] = None if math.isnan(alpha) else alpha
            if len(members) < 2 or min(cell["fleiss_images"], cell["alpha_images"]) < MIN_AGREEMENT_IMAGES:
                cell["warning"] = (f"too few to mean much: {len(members)} rater(s), Fleiss on "
                                   f"{cell['fleiss_images']} images, alpha on {cell['alpha_images']} images "
                                   f"(want >= 2 raters and >= {MIN_AGREEMENT_IMAGES} images)")
            cells[subset] = cell
        small = [f"{subset} ({c['fleiss_images']} images for kappa, {c['alpha_images']} for alpha)"
                 for subset, c in cells.items() if "warning" in c]
        if small and len(members) >= 2:
            warnings.append(f"agreement of {group} ({len(members)} raters) rests on too few images to mean much: "
                            f"{', '.join(small)}; want >= {MIN_AGREEMENT_IMAGES}")
        out[group] = cells
    return out, warnings


def _image_rows(answers: pd.DataFrame, images: pd.DataFrame, complete: list[str]) -> pd.DataFrame:
    sub = answers[answers.rater.isin(complete)]
    agg = sub.groupby("image_id").agg(answers=("called_real", "size"), called_real=("called_real", "sum"),
                                      mean_confidence=("confidence", "mean"), reading_ms=("server_ms", "median"))
    agg["reading_s_median"] = agg.pop("reading_ms") / 1000
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


def plain(text: str) -> str:
    """A name as matplotlib must print it: literally (a "$" would start mathtext, which can fail)."""
    return str(text).replace("$", r"\$")


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
        ax.scatter([r["fpr"] for r in rs], [r["tpr"] for r in rs], color=colours[g], label=plain(g), s=40)
        for r in rs:
            ax.annotate(plain(r["rater"]), (r["fpr"], r["tpr"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
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
        ax.set_xticks(range(1, len(groups) + 1), [plain(g) for g in groups], rotation=20 if len(groups) > 2 else 0)
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


def export_csv(study: Study | str | Path, out: str | Path) -> list[Path]:
    """The study as CSV files in ``out``: ``settings.csv`` (key, value), ``hanging_list.csv`` (every rater's
    list: position, image, calibration or scored, key, order seed, first served), ``answers.csv`` (final
    answers to scored images with the key, server and browser reading times, time and revisions) and
    ``answer_log.csv`` (every answer given, revisions and calibration images included, served and answered
    timestamps). Written atomically, one file at a time."""
    study = study if isinstance(study, Study) else Study(study)
    out = Path(out)
    settings = {**{k: v for k, v in asdict(study.settings).items() if k != "sources"},
                **{f"source_{k}": v for k, v in study.settings.sources.items()},
                "file": str(study.path), "created_at": study.created_at}
    frames = {"settings.csv": pd.DataFrame({"key": list(settings),
                                            "value": [json.dumps(v) if isinstance(v, (dict, list)) else v
                                                      for v in settings.values()]}),
              "hanging_list.csv": study.hanging_frame(), "answers.csv": study.answers_frame(),
              "answer_log.csv": study.log_frame()}
    paths = []
    for name, frame in frames.items():
        with atomic_open(out / name, "w") as f:
            frame.to_csv(f, index=False)
        paths.append(out / name)
    return paths


def methods_text(numbers: dict) -> str:
    """A methods paragraph a paper can cite: design, counts and what was measured."""
    st, raters = numbers["study"], numbers["raters"]
    groups = {}
    for r in raters:
        groups.setdefault(r["group"], [0, 0])
        groups[r["group"]][0] += 1
        groups[r["group"]][1] += int(r["complete"])
    group_text = "; ".join(f"{g}: {n} invited, {c} complete" for g, (n, c) in groups.items()) or "none yet"
    design = [
        f"{st['images']} images ({st['real']} real, {st['fake']} synthetic) at {st['size']}x{st['size']} px, "
        f"real from {st['sources'].get('real', '?')}, synthetic from {st['sources'].get('fake', '?')} "
        f"(drawn with seed {st['sources'].get('seed', '?')})",
        f"{st['images_per_rater']} images per rater, a random subset stratified by the key"
        if st["images_per_rater"] else "every rater saw every image",
        "one order shared by all raters" if st["shared_order"]
        else f"each rater in their own random order (order seed {st['order_seed']}, recorded per rater)",
        f"each image visible for {st['time_limit']:g} s" if st["time_limit"] else "no time limit",
        f"answers taken only after {st['min_display_ms']} ms on screen",
        f"{st['calibration']} training images with feedback first (not analysed)" if st["calibration"]
        else "no training images",
        "answers could be revised" if st["allow_revise"] else "answers final once given",
        "a 1-5 confidence with every answer" if st["confidence"] else "no confidence rating",
    ]
    return (f"Visual Turing test ('{st['title']}'): {'; '.join(design)}. Raters by group: {group_text}. Real is the "
            "positive class (TP = real called real); accuracy, TPR and TNR carry Wilson 95% intervals and an "
            "exact binomial test against 0.5, F1 a bootstrap interval; agreement is Fleiss' kappa on the images "
            "every rater of a group saw and Krippendorff's alpha (nominal) on all answers, each reported with "
            "its numbers of images and raters; reading time is measured by the server from serving an image to "
            "receiving its answer (pauses excluded); with confidence ratings, each "
            "rater's ROC AUC uses the 10-point scale of answer x confidence. Analyses use complete raters; "
            f"made with dermsynth vtt report from {Path(st['file']).name} (created {st['created_at']}).")


def write_report(study: Study | str | Path, out: str | Path) -> VTTReport:
    """Analyse every answer of a study and write the report files (see the module docstring) to ``out``."""
    study = study if isinstance(study, Study) else Study(study)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".report.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        rep = _write_report(study, tmp)
        for path in sorted(tmp.iterdir()):
            os.replace(path, out / path.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return VTTReport(out / rep.html.name, out / rep.json.name, rep.numbers)


def _write_report(study: Study, out: Path) -> VTTReport:
    answers = study.answers_frame()
    images = study.images_frame()
    raters_info = study.raters()
    prog = study.progress()
    progress = {r.name: prog.get(r.id, (0, 0)) for r in raters_info}
    groups = {r.name: r.group for r in raters_info}
    export_csv(study, out)

    raters = _rater_rows(answers, progress, groups)
    complete = [r["rater"] for r in raters if r["complete"]]
    group_rows = _group_rows(raters, answers)
    agreement, warnings = (_agreement(raters, answers[answers.rater.isin(complete)]) if complete else ({}, []))
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
                  "size": s.size, "shared_order": s.shared_order, "order_seed": s.order_seed,
                  "images_per_rater": s.images_per_rater, "time_limit": s.time_limit,
                  "min_display_ms": s.min_display_ms, "calibration": s.calibration, "allow_revise": s.allow_revise,
                  "confidence": s.confidence, "sources": s.sources},
        "positive_class": "real (TP: real called real, TN: fake called fake)",
        "raters": raters, "groups": group_rows, "agreement": agreement, "warnings": warnings,
        "images": per_image.to_dict(orient="records"),
        "notes": ["Group, pooled and agreement figures use complete raters only.",
                  "Pooled Wilson intervals and binomial tests treat every answer as independent.",
                  "F1 intervals: 95% percentile bootstrap over the rater's answers (2000 resamples, seed 0).",
                  "Reading times: measured by the server from serving the image to receiving the answer.",
                  "ROC AUC: answer x confidence as a 10-point rating of 'real' (Mann-Whitney)."],
    })
    numbers["methods"] = methods_text(numbers)
    json_path = out / "report.json"
    json_path.write_text(json.dumps(numbers, indent=2) + "\n")

    rep = HTMLReport(f"Visual Turing test: {s.title}")
    rep.heading("Methods (to cite)")
    rep.paragraph(numbers["methods"])
    rep.paragraph("Real is the positive class: TP = real called real, FP = fake called real, FN = real called "
                  "fake, TN = fake called fake; TPR = TP/(TP+FN), TNR = TN/(TN+FP), F1 of the real class.")
    for warning in warnings:
        rep.note(f"warning: {warning}")
    if raters:
        rep.heading("Per rater (Baur et al. 2018, Table 2 layout)")
        keys = [("TP", "tp"), ("FP", "fp"), ("FN", "fn"), ("TN", "tn"), ("ACC", "accuracy"), ("TPR", "tpr"),
                ("TNR", "tnr"), ("F1", "f1")] + ([("AUC", "roc_auc")] if s.confidence else [])
        rep.table([""] + [r["rater"] for r in raters],
                  [[label] + [_num(r[key]) for r in raters] for label, key in keys])
        rep.table(["rater", "group", "answered", "accuracy [Wilson 95%]", "p (vs 0.5)", "TPR [95%]", "TNR [95%]",
                   "F1 [bootstrap 95%]", "ROC AUC", "mean confidence", "reading s median [IQR]", "revisions"],
                  [[r["rater"], r["group"],
                    f"{r['answered']}/{r['images']}" + ("" if r["complete"] else " (incomplete)"),
                    _fmt_ci(r["accuracy"], r["accuracy_ci"]), _fmt_p(r["accuracy_p"]), _fmt_ci(r["tpr"], r["tpr_ci"]),
                    _fmt_ci(r["tnr"], r["tnr_ci"]), _fmt_ci(r["f1"], r["f1_ci"]), _num(r["roc_auc"]),
                    "" if r["mean_confidence"] is None else f"{r['mean_confidence']:.2f}", _reading(r),
                    r["revisions"]] for r in raters],
                  caption="p: two-sided exact binomial test of the accuracy against chance; reading time: server, "
                          "image served to answer received")
    if group_rows:
        rep.heading("Per group and pooled (complete raters)")
        rep.table(["group", "raters", "TP", "FP", "FN", "TN", "pooled accuracy [95%]", "p (vs 0.5)", "TPR [95%]",
                   "TNR [95%]", "F1", "rater accuracy mean ± sd", "rater F1 mean", "rater AUC mean",
                   "reading s median [IQR]"],
                  [[g["group"], g["raters"], g["tp"], g["fp"], g["fn"], g["tn"],
                    _fmt_ci(g["accuracy"], g["accuracy_ci"]),
                    _fmt_p(g["accuracy_p"]), _fmt_ci(g["tpr"], g["tpr_ci"]), _fmt_ci(g["tnr"], g["tnr_ci"]),
                    _num(g["f1"]), f"{g['rater_accuracy_mean']:.3f} ± {_num(g['rater_accuracy_sd'])}",
                    _num(g["rater_f1_mean"]), _num(g["rater_auc_mean"]), _reading(g)] for g in group_rows],
                  caption="pooled intervals and tests treat all answers of a group as independent (descriptive)")
    if agreement:
        rep.heading("Agreement (Baur et al. 2018, Table 3 layout) with the images and raters behind each figure")
        cols = list(agreement)
        rep.table(["images"] + cols,
                  [[f"{subset} images"] + [_agreement_cell(agreement[c][subset]) for c in cols]
                   for subset in ("real", "fake", "all")],
                  caption="kappa: Fleiss, on the images every rater of the column saw; alpha: Krippendorff "
                          "(nominal), on all answers; 1: perfect agreement, <= 0: none beyond chance")
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
    rep.table(["image id", "key", "origin", "answers", "called real", "fraction called real", "mean confidence",
               "reading s median"],
              [[r.image_id, "real" if r.is_real else "fake", r.origin_id, r.answers, r.called_real,
                _num(r.fraction_real), _num(r.mean_confidence), _num(r.reading_s_median)]
               for r in per_image.itertuples()])
    rep.paragraph("Raw data: settings.csv, hanging_list.csv (every rater's list and order), answers.csv (final "
                  "answers with the key), answer_log.csv (every submission with timestamps), images.csv, "
                  "report.json.")
    html_path = rep.write(out / "report.html")
    return VTTReport(html_path, json_path, numbers)


def _num(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _reading(row: dict) -> str:
    if row.get("reading_s_median") is None:
        return "n/a"
    return f"{row['reading_s_median']:.2f} [{row['reading_s_q1']:.2f}, {row['reading_s_q3']:.2f}]"


def _agreement_cell(cell: dict) -> str:
    kappa = ("n/a (" + cell.get("fleiss_reason", "") + ")" if cell.get("fleiss_kappa") is None
             else f"{cell['fleiss_kappa']:.4f}")
    alpha = "n/a" if cell.get("krippendorff_alpha") is None else f"{cell['krippendorff_alpha']:.4f}"
    text = (f"kappa {kappa} ({cell['fleiss_images']} images x {cell['raters']} raters); alpha {alpha} "
            f"({cell['alpha_images']} images, {cell['alpha_answers']} answers)")
    return text + (" ⚠ " + cell["warning"] if cell.get("warning") else "")
