"""Tables, figures and the HTML report of an augmentation experiment, all from its ``results.json``.

Next to every paired p-value the tables give the smallest p the exact tests can reach with the seeds run
(2 / 2**K), the paired t-test, Holm's adjustment over the conditions compared with the one baseline, DeLong's
test of the melanoma AUC on the seed-averaged predictions (when ``results.json`` holds it) and a power line.
With several real fractions (or synthetic ratios) the data-efficiency sections follow
(:mod:`~dermsynth.classify.efficiency`): the curve, the equivalent real images and the ratio sweep, in
``table.md``, ``efficiency.json``, ``efficiency.png`` and the report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from dermsynth.classify.efficiency import (EfficiencyStudy, PredictionLoader, plot_efficiency, study_efficiency,
                                           write_png)
from dermsynth.classify.experiment_config import Condition
from dermsynth.classify.stats import format_mean_std, holm_adjust, min_attainable_p
from dermsynth.io import write_json, write_text
from dermsynth.report.html import HTMLReport

__all__ = ["detail_rows", "efficiency_of", "external_rows", "power_line", "run_records", "bissoto2018_table",
           "write_outputs"]


def _runs(cond: dict, key: str, test: str = "metrics") -> list[float]:
    """One metric of every run of a condition on one test set (``metrics``: internal, ``external_metrics``)."""
    return [r[test][key] for r in cond["runs"] if r[test][key] is not None]


def _missing(x: float | None) -> bool:
    return x is None or np.isnan(x)


def _pct(x: float | None, digits: int = 1) -> str:
    return "n/a" if _missing(x) else f"{100 * x:.{digits}f}"


def _interval(lo: float | None, hi: float | None) -> str:
    return "n/a" if _missing(lo) or _missing(hi) else f"[{_pct(lo)}, {_pct(hi)}]"


def _p(x: float | None) -> str:
    return "n/a" if _missing(x) else f"{x:.3g}"


def bissoto2018_table(results: dict) -> list[tuple[str, str]]:
    """Rows of Bissoto et al.'s table: (training data, "AUC mean ± std" in percent over seeds)."""
    return [(c["label"], format_mean_std(_runs(c, "macro_auc"))) for c in results["conditions"].values()]


METRIC_NAMES = {"macro_auc": "macro AUC", "melanoma_auc": "melanoma AUC"}
P_HEADER = ["permutation p", "Wilcoxon p", "min attainable p", "paired t p", "Holm p"]
DETAIL_HEADER = (["Training data", "synthetic images", "AUC (%) 95% CI", "ΔAUC vs baseline (pp) [95% CI]"] + P_HEADER
                 + ["detectable ΔAUC (pp)", "bootstrap ΔAUC (pp) [95% CI]", "DeLong Δ melanoma AUC (pp) p",
                    "balanced accuracy (%)", "accuracy (%)", "melanoma AUC (%)"])


def _holm(paired: Sequence[dict | None]) -> list[float | None]:
    """Holm-adjusted permutation p of each comparison (None for the baseline's row), over the family given."""
    p = [q["permutation_p"] for q in paired if q is not None]
    adjusted = iter(holm_adjust(p)) if p else iter(())
    return [None if q is None else float(next(adjusted)) for q in paired]


def _p_cells(paired: dict | None, holm: float | None) -> list[str]:
    """permutation p, Wilcoxon p, the minimum attainable exact p, paired t p, Holm p ("" for the baseline)."""
    if paired is None:
        return [""] * len(P_HEADER)
    return [_p(paired["permutation_p"]), _p(paired.get("wilcoxon_p")), _p(min_attainable_p(paired["n"])),
            _p(paired.get("t_p")), _p(holm)]


def _delong(vs: dict | None, key: str = "melanoma_auc") -> str:
    """"+1.23 (p 0.04)": DeLong's difference and p, or "n/a" where results.json has none."""
    d = ((vs or {}).get("delong") or {}).get(key)
    return "" if vs is None else "n/a" if d is None else f"{_pct(d['difference'], 2)} (p {_p(d['p_value'])})"


def detail_rows(results: dict) -> list[list[str]]:
    """One row per condition: CIs, the comparison with the baseline and the secondary metrics."""
    conds = list(results["conditions"].values())
    paired = [c["vs_baseline"]["paired"]["macro_auc"] if c["vs_baseline"] else None for c in conds]
    rows = []
    for cond, pair, holm in zip(conds, paired, _holm(paired)):
        s = cond["summary"]["macro_auc"]
        vs = cond["vs_baseline"]
        boot = vs["bootstrap_seed_mean_probs"]["macro_auc"] if vs else None
        mel = _runs(cond, "melanoma_auc") if results["melanoma_class"] else []
        rows.append([
            cond["label"], str(sum(cond["synthetic_per_class"].values())), _interval(s["ci_low"], s["ci_high"]),
            "baseline" if vs is None else _difference(pair), *_p_cells(pair, holm),
            "" if pair is None else _pct(pair.get("min_detectable"), 2),
            "" if boot is None else f"{_pct(boot['observed'], 2)} {_interval(boot['ci_low'], boot['ci_high'])}",
            _delong(vs), format_mean_std(_runs(cond, "balanced_accuracy")), format_mean_std(_runs(cond, "accuracy")),
            _mean_std(mel)])
    return rows


EXTERNAL_HEADER = (["Training data", "macro AUC (%)", "melanoma AUC (%)", "Δ melanoma AUC vs baseline (pp) [95% CI]"]
                   + P_HEADER + ["bootstrap Δ melanoma AUC (pp) [95% CI]", "DeLong Δ melanoma AUC (pp) p",
                                 "balanced accuracy (%)"])


def external_rows(results: dict) -> list[list[str]]:
    """One row per condition on the external test set (macro AUC over the classes it has, melanoma AUC)."""
    conds = list(results["conditions"].values())
    paired = [(c["external"]["vs_baseline"] or {}).get("paired", {}).get("melanoma_auc") for c in conds]
    rows = []
    for cond, pair, holm in zip(conds, paired, _holm(paired)):
        vs = cond["external"]["vs_baseline"]
        boot = (vs or {}).get("bootstrap_seed_mean_probs", {}).get("melanoma_auc")
        rows.append([
            cond["label"], _mean_std(_runs(cond, "macro_auc", "external_metrics")),
            _mean_std(_runs(cond, "melanoma_auc", "external_metrics")) if results["melanoma_class"] else "n/a",
            "baseline" if vs is None else _difference(pair), *_p_cells(pair, holm),
            "" if boot is None else f"{_pct(boot['observed'], 2)} {_interval(boot['ci_low'], boot['ci_high'])}",
            _delong(vs), _mean_std(_runs(cond, "balanced_accuracy", "external_metrics"))])
    return rows


def power_line(results: dict, test: str | None = None, metric: str = "macro_auc") -> str:
    """What the seeds could detect: the smallest mean paired difference the paired t-test finds with 80 %
    power at alpha 0.05 two-sided, given each condition's observed seed-to-seed SD of the differences
    (``test``: None for the internal test set, "external" for the external one)."""
    rows = [(c["label"], c["vs_baseline"] if test is None else c[test]["vs_baseline"])
            for c in results["conditions"].values()]
    got = [(label, vs["paired"][metric]) for label, vs in rows if vs and metric in vs["paired"]
           and vs["paired"][metric].get("min_detectable") is not None]
    k = len(results["seeds"])
    if not got:
        return (f"Power: not computable for {metric} (the paired comparisons need >= 2 seeds and results.json of "
                f"this version).")
    parts = "; ".join(f"{label}: {_pct(p['min_detectable'], 2)} pp (SD {_pct(p['sd_diff'], 2)} pp)" for label, p in got)
    return (f"Power: with {k} seeds, the paired t-test (alpha 0.05, two-sided) detects with 80% power a mean "
            f"{METRIC_NAMES.get(metric, metric)} difference of at least: {parts}; smaller true effects would usually be "
            f"missed. The exact tests cannot give p below {_p(min_attainable_p(k))} with {k} seeds "
            f"(Holm over {len(got)} comparison{'s' if len(got) != 1 else ''}: {_p(min(1.0, len(got) * min_attainable_p(k)))}).")


def _difference(paired: dict | None) -> str:
    """"+1.23 [-0.5, 3.0]": a paired mean difference in percentage points with its CI."""
    if paired is None:
        return "n/a"
    return f"{_pct(paired['mean_diff'], 2)} {_interval(paired['ci_low'], paired['ci_high'])}"


def _external_caption(results: dict) -> str:
    ext = results["external_test"]
    mapping = ", ".join(f"{a} -> {b}" for a, b in ext["mapping"].items())
    return (f"External test set {ext['source']} ({ext['images']} images; classes mapped {mapping}); scored on "
            f"{', '.join(ext['classes_scored'])} only: the macro AUC averages the one-vs-rest AUCs of those classes. "
            f"{ext['ids_also_in_data']} of its image ids also occur in the training data.")


def _mean_std(values: list[float | None]) -> str:
    finite = [v for v in values if v is not None]
    return format_mean_std(finite) if finite else "n/a"


def _per_class_rows(results: dict, what: str) -> list[list[str]]:
    names = results["data"]["class_names"]
    return [[c["label"]] + [_mean_std([r["metrics"][what][n] for r in c["runs"]]) for n in names]
            for c in results["conditions"].values()]


def _markdown(header: list[str], rows: list[list[str]] | list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def _plot_conditions(results: dict, path: Path) -> Path:
    """Macro AUC per condition: every seed, the mean and its 95% CI."""
    from matplotlib.figure import Figure

    conds = list(results["conditions"].values())
    fig = Figure(figsize=(max(5.0, 1.4 * len(conds) + 2), 4), dpi=100)
    ax = fig.subplots()
    rng = np.random.default_rng(0)
    for i, c in enumerate(conds):
        vals = 100 * np.asarray(_runs(c, "macro_auc"))
        ax.scatter(i + rng.uniform(-0.12, 0.12, len(vals)), vals, s=14, color="0.6", zorder=2)
        s = c["summary"]["macro_auc"]
        if s["ci_low"] is not None:
            ax.errorbar(i, 100 * s["mean"], yerr=[[100 * (s["mean"] - s["ci_low"])], [100 * (s["ci_high"] - s["mean"])]],
                        fmt="o", color="C0", capsize=6, zorder=3)
        else:
            ax.plot(i, 100 * s["mean"], "o", color="C0", zorder=3)
    ax.axhline(100 * results["conditions"][results["baseline"]]["summary"]["macro_auc"]["mean"], color="C3",
               ls="--", lw=1, label="baseline mean")
    ax.legend(loc="best", fontsize=8)
    ax.set_xticks(range(len(conds)), [c["label"].replace(" + ", "\n+ ") for c in conds], fontsize=8)
    ax.set_ylabel("macro one-vs-rest AUC (%) on the real test set")
    ax.set_title(f"mean and 95% CI over {len(results['seeds'])} seeds (dots: seeds)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return write_png(fig, path)


def _plot_confusion(matrix: np.ndarray, names: list[str], title: str, path: Path) -> Path:
    """Row-normalised confusion matrix (counts summed over seeds written in each cell)."""
    from matplotlib.figure import Figure

    matrix = np.asarray(matrix, dtype=np.float64)
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    k = len(names)
    fig = Figure(figsize=(1.0 + 0.6 * k, 1.0 + 0.55 * k), dpi=100)
    ax = fig.subplots()
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{int(matrix[i, j])}", ha="center", va="center", fontsize=7,
                    color="white" if rates[i, j] > 0.6 else "black")
    ax.set_xticks(range(k), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=8)
    return write_png(fig, path)


# --- the data-efficiency study -------------------------------------------------------------------


def run_records(results: dict) -> list[dict]:
    """Every run record of ``results`` (its ``runs``, else every condition's), with ``real_fraction`` 1,
    ``n_real`` and ``synthetic_ratio`` filled in for experiments made before real fractions."""
    runs = results.get("runs")
    if runs is None:
        runs = [r for c in results["conditions"].values() for r in c["runs"]]
    return [{"real_fraction": 1.0, "n_real": r.get("n_train_real"),
             "synthetic_ratio": Condition.parse(r["condition"]).synth_ratio, **r} for r in runs]


def efficiency_of(results: dict, predictions: PredictionLoader | None = None) -> EfficiencyStudy | None:
    """The data-efficiency study of ``results`` (macro and, with a melanoma class, melanoma AUC on the internal
    test set), or None with one real fraction and fewer than two synthetic ratios. ``predictions`` (a run
    record -> its test probabilities and labels) adds the test images to the equivalents' bootstrap."""
    metrics: dict[str, int | None] = {"macro_auc": None}
    if results.get("melanoma_class"):
        metrics["melanoma_auc"] = results["data"]["class_names"].index(results["melanoma_class"])
    cfg, sweep = results.get("config", {}), results.get("ratio_sweep") or {}
    return study_efficiency(run_records(results), results["baseline"], metrics,
                            sweep_fraction=sweep.get("real_fraction"), sweep_conditions=sweep.get("conditions"),
                            n_boot=cfg.get("n_boot", 2000), seed=cfg.get("seed", 0), predictions=predictions)


def _label(results: dict, condition: str) -> str:
    known = results["conditions"].get(condition)
    return known["label"] if known else Condition.parse(condition).label


def _ci_cell(mean: float, lo: float, hi: float) -> str:
    return f"{_pct(mean)} {_interval(lo, hi)}"


def _efficiency_tables(results: dict, study: EfficiencyStudy) -> list[tuple[str, list[str], list[list[str]]]]:
    """(caption, header, rows) of the curve, the equivalent real images per metric and the ratio sweep."""
    k = len(results["seeds"])
    tables = []
    macro = study.curves["macro_auc"]
    mel = {(p.condition, p.real_fraction): p for p in study.curves.get("melanoma_auc", [])}
    cmp = study.comparisons["macro_auc"]
    paired = [asdict(cmp[(p.condition, p.real_fraction)]) if (p.condition, p.real_fraction) in cmp else None
              for p in macro]
    rows = []
    for p, c, holm in zip(macro, paired, _holm(paired)):
        m = mel.get((p.condition, p.real_fraction))
        rows.append([_label(results, p.condition), f"{p.real_fraction:g}", f"{p.n_real:.0f}",
                     _ci_cell(p.mean, p.ci_low, p.ci_high), "n/a" if m is None else _ci_cell(m.mean, m.ci_low, m.ci_high),
                     "baseline" if p.condition == study.baseline else _difference(c), *_p_cells(c, holm)])
    tables.append((f"Data-efficiency curve: AUC on the real test set vs real training images, mean [95% t-interval] "
                   f"over {k} seeds; each condition against {study.baseline} at the same real fraction, paired by "
                   f"seed; Holm over all {len(cmp)} comparisons of this table (permutation p).",
                   ["Training data", "real fraction", "real images", "macro AUC (%) [95% CI]",
                    "melanoma AUC (%) [95% CI]", "ΔAUC vs real-only (pp) [95% CI]"] + P_HEADER, rows))
    for metric, eqs in study.equivalents.items():
        if not eqs:
            continue
        rows = [[_label(results, e.condition), f"{e.real_fraction:g}", f"{e.n_real:.0f}", _pct(e.mean),
                 _pct(e.baseline_mean), e.formatted(),
                 f"{e.equivalent / e.n_real:.2f}x" if e.status == "within" else e.status,
                 f"{100 * e.share_beyond:.0f}"] for e in eqs]
        name = METRIC_NAMES.get(metric, metric)
        tables.append((f"Equivalent real images ({name}): the real images the real-only curve needs to reach each "
                       f"condition's mean (isotonic real-only curve, linear in log(real images) between fractions); "
                       f"'> N': beyond the curve (more than its largest fraction), '< N': below it. 95% percentile "
                       f"bootstrap over {eqs[0].resampled} ({eqs[0].n_boot} resamples, seeds paired across "
                       f"conditions).",
                       ["Training data", "real fraction", "real images", f"{name} (%)", f"real-only {name} (%)",
                        "equivalent real images [95% CI]", "x real images", "beyond the curve (% of resamples)"],
                       rows))
    sweep = study.sweep.get("macro_auc", [])
    if sweep:
        mel_rows = {r.condition: r for r in study.sweep.get("melanoma_auc", [])}
        paired = [None if r.vs_baseline is None else asdict(r.vs_baseline) for r in sweep]
        rows = []
        for r, c, holm in zip(sweep, paired, _holm(paired)):
            m = mel_rows.get(r.condition)
            rows.append([f"{r.synthetic_ratio:g}", _label(results, r.condition),
                         "" if r.n_synthetic is None else f"{r.n_synthetic:.0f}", _ci_cell(r.mean, r.ci_low, r.ci_high),
                         "n/a" if m is None else _ci_cell(m.mean, m.ci_low, m.ci_high),
                         "baseline" if r.condition == study.baseline else _difference(c), *_p_cells(c, holm),
                         "" if r.equivalent is None else r.equivalent.formatted()])
        tables.append((f"Synthetic:real ratio sweep at real fraction {study.sweep_fraction:g} ({sweep[0].n_real:.0f} "
                       f"real images), mean [95% t-interval] over seeds; against {study.baseline} paired by seed; Holm "
                       f"over the {sum(c is not None for c in paired)} ratios; equivalent real images (macro AUC) as above.",
                       ["synthetic:real", "Training data", "synthetic images", "macro AUC (%) [95% CI]",
                        "melanoma AUC (%) [95% CI]", "ΔAUC vs real-only (pp) [95% CI]"] + P_HEADER
                       + ["equivalent real images [95% CI]"], rows))
    return tables


def _plot_efficiency(results: dict, study: EfficiencyStudy, path: Path) -> Path:
    labels = {p.condition: _label(results, p.condition) for p in study.curves["macro_auc"]}
    return plot_efficiency({METRIC_NAMES.get(m, m): pts for m, pts in study.curves.items()}, path,
                           baseline=study.baseline, labels=labels)


def write_outputs(results: dict, out: Path, *, predictions: PredictionLoader | None = None) -> tuple[str, Path]:
    """Write ``table.md``, ``table.txt``, ``auc.png``, ``confusion/*.png`` and ``report.html`` (all atomically);
    with several real fractions or synthetic ratios also ``efficiency.json`` and ``efficiency.png``.
    ``predictions``: see :func:`efficiency_of`."""
    out = Path(out)
    names = results["data"]["class_names"]
    main_rows = bissoto2018_table(results)
    details = detail_rows(results)
    recall_rows, auc_rows = _per_class_rows(results, "per_class_recall"), _per_class_rows(results, "per_class_auc")
    k = len(results["seeds"])
    p_note = (f"min attainable p: the smallest p the exact sign-flip and Wilcoxon tests can give with {k} seeds "
              f"(2/2^{k}); Holm p: the permutation p adjusted (Holm) over the {max(len(details) - 1, 0)} conditions "
              f"compared with the baseline; detectable ΔAUC: the smallest mean difference the paired t-test finds "
              f"with 80% power at alpha 0.05 given the observed seed-to-seed SD; DeLong: the melanoma AUC of the "
              f"seed-averaged predictions")
    table = (f"AUC: macro one-vs-rest ROC AUC on the real test set, mean ± std over {k} seed(s)\n\n"
             + _markdown(["Training data", "AUC (%)"], main_rows) + "\nDetails (baseline: "
             + f"{results['baseline']}; p-values paired by seed, two-sided; {p_note})\n\n"
             + _markdown(DETAIL_HEADER, details) + "\n" + power_line(results) + "\n\nPer-class recall (%), mean ± std\n\n"
             + _markdown(["Training data"] + names, recall_rows) + "\nPer-class AUC (%), mean ± std\n\n"
             + _markdown(["Training data"] + names, auc_rows))
    if results.get("external_test"):
        table += ("\nExternal test set, mean ± std over seeds. " + _external_caption(results) + "\n\n"
                  + _markdown(EXTERNAL_HEADER, external_rows(results)) + "\n"
                  + power_line(results, "external", "melanoma_auc") + "\n")
    study = efficiency_of(results, predictions)
    efficiency = _efficiency_tables(results, study) if study is not None else []
    for caption, header, rows in efficiency:
        table += "\n" + caption + "\n\n" + _markdown(header, rows)
    write_text(out / "table.md", table)
    write_text(out / "table.txt", "Training data\tAUC (%)\n" + "".join(f"{a}\t{b}\n" for a, b in main_rows))

    auc_png = _plot_conditions(results, out / "auc.png")
    conf_dir = out / "confusion"
    confusions = [(c["label"], _plot_confusion(np.asarray(c["confusion_sum_over_seeds"]), names,
                                               f"{c['label']}\n(summed over {k} seeds)",
                                               conf_dir / f"{Condition.parse(key).slug}.png"))
                  for key, c in results["conditions"].items()]

    cfg = results["config"]
    rep = HTMLReport("Augmentation experiment")
    rep.paragraph(f"Data: {results['data']['source']} ({results['data']['images']} images at {cfg['size']}px, "
                  f"classes {', '.join(names)}). Classifier {cfg['classifier']}, up to {cfg['epochs']} epochs "
                  f"(early stopping on validation macro AUC, patience {cfg['patience']}), {k} seeds "
                  f"{results['seeds']}. Synthetic source: {cfg.get('synthetic') or 'none'}.")
    rep.table(["split"] + names, [[s] + [str(results["split"][s][n]) for n in names] for s in results["split"]],
              caption="Real images per split and class (lesion-grouped; synthetic images enter training only)")
    rep.heading("AUC")
    rep.table(["Training data", "AUC (%)"], main_rows, caption=f"Macro one-vs-rest AUC, mean ± std over {k} seeds")
    rep.table(DETAIL_HEADER, details, caption="; ".join(list(results["notes"].values()) + [p_note]))
    rep.paragraph(power_line(results))
    rep.images([("Macro AUC per condition (mean, 95% CI, seeds)", auc_png)])
    if results.get("external_test"):
        rep.heading("External test set")
        rep.table(EXTERNAL_HEADER, external_rows(results), caption=_external_caption(results))
        rep.paragraph(power_line(results, "external", "melanoma_auc"))
    if study is not None:
        write_json(out / "efficiency.json", study.as_dict())
        rep.heading("Data efficiency: what the synthetic images are worth in real images")
        for caption, header, rows in efficiency:
            rep.table(header, rows, caption=caption)
        rep.images([("AUC vs real training images, with and without synthetic images (mean, 95% CI over seeds)",
                     _plot_efficiency(results, study, out / "efficiency.png"))])
    rep.heading("Per class")
    rep.table(["Training data"] + names, recall_rows, caption="Recall (%), mean ± std over seeds")
    rep.table(["Training data"] + names, auc_rows, caption="One-vs-rest AUC (%), mean ± std over seeds")
    rep.images(confusions)
    report = rep.write(out / "report.html")
    return table, report
