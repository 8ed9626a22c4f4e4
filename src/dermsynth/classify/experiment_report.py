"""Tables, figures and the HTML report of an augmentation experiment, all from its ``results.json``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dermsynth.classify.experiment_config import Condition
from dermsynth.classify.stats import format_mean_std
from dermsynth.report.html import HTMLReport

__all__ = ["detail_rows", "external_rows", "bissoto2018_table", "write_outputs"]


def _runs(cond: dict, key: str, test: str = "metrics") -> list[float]:
    """One metric of every run of a condition on one test set (``metrics``: internal, ``external_metrics``)."""
    return [r[test][key] for r in cond["runs"] if r[test][key] is not None]


def _pct(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{100 * x:.{digits}f}"


def _interval(lo: float | None, hi: float | None) -> str:
    return "n/a" if lo is None or hi is None else f"[{_pct(lo)}, {_pct(hi)}]"


def _p(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3g}"


def bissoto2018_table(results: dict) -> list[tuple[str, str]]:
    """Rows of Bissoto et al.'s table: (training data, "AUC mean ± std" in percent over seeds)."""
    return [(c["label"], format_mean_std(_runs(c, "macro_auc"))) for c in results["conditions"].values()]


DETAIL_HEADER = ["Training data", "synthetic images", "AUC (%) 95% CI", "ΔAUC vs baseline (pp) [95% CI]",
                 "permutation p", "Wilcoxon p", "bootstrap ΔAUC (pp) [95% CI]", "balanced accuracy (%)",
                 "accuracy (%)", "melanoma AUC (%)"]


def detail_rows(results: dict) -> list[list[str]]:
    """One row per condition: CIs, the comparison with the baseline and the secondary metrics."""
    rows = []
    for cond in results["conditions"].values():
        s = cond["summary"]["macro_auc"]
        vs = cond["vs_baseline"]
        paired = vs["paired"]["macro_auc"] if vs else None
        boot = vs["bootstrap_seed_mean_probs"]["macro_auc"] if vs else None
        mel = _runs(cond, "melanoma_auc") if results["melanoma_class"] else []
        rows.append([
            cond["label"], str(sum(cond["synthetic_per_class"].values())), _interval(s["ci_low"], s["ci_high"]),
            "baseline" if vs is None else _difference(paired),
            _p(paired["permutation_p"]) if paired else "", _p(paired["wilcoxon_p"]) if paired else "",
            "" if boot is None else f"{_pct(boot['observed'], 2)} {_interval(boot['ci_low'], boot['ci_high'])}",
            format_mean_std(_runs(cond, "balanced_accuracy")), format_mean_std(_runs(cond, "accuracy")),
            _mean_std(mel)])
    return rows


EXTERNAL_HEADER = ["Training data", "macro AUC (%)", "melanoma AUC (%)", "Δ melanoma AUC vs baseline (pp) [95% CI]",
                   "permutation p", "bootstrap Δ melanoma AUC (pp) [95% CI]", "balanced accuracy (%)"]


def external_rows(results: dict) -> list[list[str]]:
    """One row per condition on the external test set (macro AUC over the classes it has, melanoma AUC)."""
    rows = []
    for cond in results["conditions"].values():
        vs = cond["external"]["vs_baseline"]
        paired = (vs or {}).get("paired", {}).get("melanoma_auc")
        boot = (vs or {}).get("bootstrap_seed_mean_probs", {}).get("melanoma_auc")
        rows.append([
            cond["label"], _mean_std(_runs(cond, "macro_auc", "external_metrics")),
            _mean_std(_runs(cond, "melanoma_auc", "external_metrics")) if results["melanoma_class"] else "n/a",
            "baseline" if vs is None else _difference(paired),
            "" if paired is None else _p(paired["permutation_p"]),
            "" if boot is None else f"{_pct(boot['observed'], 2)} {_interval(boot['ci_low'], boot['ci_high'])}",
            _mean_std(_runs(cond, "balanced_accuracy", "external_metrics"))])
    return rows


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conds = list(results["conditions"].values())
    fig, ax = plt.subplots(figsize=(max(5.0, 1.4 * len(conds) + 2), 4), dpi=100)
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
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _plot_confusion(matrix: np.ndarray, names: list[str], title: str, path: Path) -> Path:
    """Row-normalised confusion matrix (counts summed over seeds written in each cell)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(matrix, dtype=np.float64)
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    k = len(names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * k, 1.0 + 0.55 * k), dpi=100)
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
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_outputs(results: dict, out: Path) -> tuple[str, Path]:
    """Write ``table.md``, ``table.txt``, ``auc.png``, ``confusion/*.png`` and ``report.html``."""
    out = Path(out)
    names = results["data"]["class_names"]
    main_rows = bissoto2018_table(results)
    details = detail_rows(results)
    recall_rows, auc_rows = _per_class_rows(results, "per_class_recall"), _per_class_rows(results, "per_class_auc")
    k = len(results["seeds"])
    table = (f"AUC: macro one-vs-rest ROC AUC on the real test set, mean ± std over {k} seed(s)\n\n"
             + _markdown(["Training data", "AUC (%)"], main_rows) + "\nDetails (baseline: "
             + f"{results['baseline']}; p-values paired by seed, two-sided)\n\n"
             + _markdown(DETAIL_HEADER, details) + "\nPer-class recall (%), mean ± std\n\n"
             + _markdown(["Training data"] + names, recall_rows) + "\nPer-class AUC (%), mean ± std\n\n"
             + _markdown(["Training data"] + names, auc_rows))
    if results.get("external_test"):
        table += ("\nExternal test set, mean ± std over seeds. " + _external_caption(results) + "\n\n"
                  + _markdown(EXTERNAL_HEADER, external_rows(results)))
    (out / "table.md").write_text(table)
    (out / "table.txt").write_text("Training data\tAUC (%)\n" + "".join(f"{a}\t{b}\n" for a, b in main_rows))

    auc_png = _plot_conditions(results, out / "auc.png")
    conf_dir = out / "confusion"
    conf_dir.mkdir(exist_ok=True)
    confusions = [(c["label"], _plot_confusion(np.asarray(c["confusion_sum_over_seeds"]), names,
                                               f"{c['label']}\n(summed over {k} seeds)",
                                               conf_dir / f"{Condition.parse(key).slug}.png"))
                  for key, c in results["conditions"].items()]

    cfg = results["config"]
    rep = HTMLReport("Augmentation experiment")
    rep.paragraph(f"Data: {results['data']['source']} ({results['data']['images']} images at {cfg['size']}px, "
                  f"classes {', '.join(names)}). Classifier {cfg['classifier']}, up to {cfg['epochs']} epochs "
                  f"(early stopping on validation macro AUC, patience {cfg['patience']}), {k} seeds "
                  f"{results['seeds']}. Synthetic source: {cfg['synthetic'] or 'none'}.")
    rep.table(["split"] + names, [[s] + [str(results["split"][s][n]) for n in names] for s in results["split"]],
              caption="Real images per split and class (lesion-grouped; synthetic images enter training only)")
    rep.heading("AUC")
    rep.table(["Training data", "AUC (%)"], main_rows, caption=f"Macro one-vs-rest AUC, mean ± std over {k} seeds")
    rep.table(DETAIL_HEADER, details, caption="; ".join(results["notes"].values()))
    rep.images([("Macro AUC per condition (mean, 95% CI, seeds)", auc_png)])
    if results.get("external_test"):
        rep.heading("External test set")
        rep.table(EXTERNAL_HEADER, external_rows(results), caption=_external_caption(results))
    rep.heading("Per class")
    rep.table(["Training data"] + names, recall_rows, caption="Recall (%), mean ± std over seeds")
    rep.table(["Training data"] + names, auc_rows, caption="One-vs-rest AUC (%), mean ± std over seeds")
    rep.images(confusions)
    report = rep.write(out / "report.html")
    return table, report
