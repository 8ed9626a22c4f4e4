"""Essipova et al. 2020 in its own layout: accuracy and per-class recall of a 28x28 CNN trained on
the real images, then with DCGAN images balancing the minority class.

Essipova et al. keep three HAM10000 classes (melanoma, benign keratosis-like lesions, basal cell carcinoma; about
1100, 1100 and 500 images), tops up BCC with DCGAN samples and reports one validation accuracy per model:
59 % without, 61 % with the synthetic images, no significance test. ``dermsynth augment --classes mel,bkl,bcc
--size 28 --conditions real,real+balance --layout essipova2020`` reproduces that setting; this module writes
the table in the paper's terms (accuracy, then recall per class) for every real fraction, mean ± std over
seeds, with the paper's two numbers as a reference row. The paired statistics stay in ``table.md``.
"""

from __future__ import annotations

from pathlib import Path

from dermsynth.classify.stats import format_mean_std

__all__ = ["ESSIPOVA_REPORTED", "essipova_rows", "write_essipova_table"]

#: Essipova et al.'s reported accuracies (one run each, their validation set): real only, real + DCGAN-balanced BCC.
ESSIPOVA_REPORTED = {"real": 0.59, "real+balance": 0.61}
TABLE_FILE = "table_essipova2020.md"


def _cell(runs: list[dict], what: str, class_name: str | None = None) -> str:
    values = [r["metrics"][what] if class_name is None else r["metrics"][what][class_name] for r in runs]
    values = [v for v in values if v is not None]
    return format_mean_std(values) if values else "n/a"


def essipova_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per (real fraction, condition), then the paper's reported row."""
    names = results["data"]["class_names"]
    header = ["Real images", "Training data", "synthetic images", "accuracy (%)"] + [f"recall {c} (%)" for c in names]
    rows = []
    for fraction in results["fractions"].values():
        for cond in fraction["conditions"].values():
            rows.append([f"{fraction['n_real']} ({100 * fraction['real_fraction']:g} %)", cond["label"],
                         str(sum(cond["synthetic_per_class"].values())), _cell(cond["runs"], "accuracy")]
                        + [_cell(cond["runs"], "per_class_recall", c) for c in names])
    for cond, acc in ESSIPOVA_REPORTED.items():
        rows.append(["Essipova et al. 2020 (reported, 1 run)", cond, "", f"{100 * acc:.0f}"] + ["n/a"] * len(names))
    return header, rows


def write_essipova_table(results: dict, out: str | Path) -> str:
    """Write ``table_essipova2020.md`` in ``out`` and return its text."""
    header, rows = essipova_rows(results)
    k = len(results["seeds"])
    text = (f"The layout of Essipova et al. 2020: accuracy and per-class recall on the real test set, "
            f"mean ± std over {k} seed(s), classes {', '.join(results['data']['class_names'])}\n\n"
            + "| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n"
            + "".join("| " + " | ".join(r) + " |\n" for r in rows))
    (Path(out) / TABLE_FILE).write_text(text)
    return text
