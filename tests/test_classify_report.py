"""The experiment report's statistics (minimum attainable p, paired t-test, Holm, DeLong, power line) and its
data-efficiency sections, on results dicts built from constructed runs (no training), checked against
scipy / statsmodels and closed forms."""

import json
from dataclasses import asdict

import numpy as np
import pytest
from scipy import stats as sps

from dermsynth.classify.experiment_config import Condition
from dermsynth.classify.experiment_report import detail_rows, efficiency_of, power_line, run_records, write_outputs
from dermsynth.classify.stats import compare_to_baseline, summarize

NAMES = ["nevus", "melanoma", "bcc"]
N_REAL = {0.25: 100, 0.5: 200, 1.0: 400}
SEEDS = list(range(6))


def line(n):
    return 0.6 + 0.05 * np.log(n / 100)


def _run(cond, frac, seed, macro, ratio):
    metrics = {"macro_auc": macro, "melanoma_auc": macro - 0.05, "balanced_accuracy": 0.5, "accuracy": 0.6,
               "per_class_recall": dict.fromkeys(NAMES, 0.5), "per_class_auc": dict.fromkeys(NAMES, macro),
               "confusion": [[5, 1, 0], [1, 5, 0], [0, 1, 5]]}
    return {"condition": cond, "seed": seed, "real_fraction": frac, "n_real": N_REAL[frac], "synthetic_ratio": ratio,
            "n_train_real": N_REAL[frac], "n_train_synthetic": int(ratio * N_REAL[frac]), "metrics": metrics}


def _condition(runs, base_runs, delong=None):
    values = [r["metrics"]["macro_auc"] for r in runs]
    vs = None
    if base_runs is not runs:
        base = [r["metrics"]["macro_auc"] for r in base_runs]
        paired = {"macro_auc": asdict(compare_to_baseline(values, base))}
        boot = {"macro_auc": {"observed": 0.01, "ci_low": 0.0, "ci_high": 0.02}}
        vs = {"paired": paired, "bootstrap_seed_mean_probs": boot, **({"delong": delong} if delong else {})}
    cond = Condition.parse(runs[0]["condition"])
    return {"label": cond.label, "synthetic_per_class": dict.fromkeys(NAMES, runs[0]["n_train_synthetic"] // 3),
            "summary": {"macro_auc": asdict(summarize(values))}, "confusion_sum_over_seeds": np.eye(3).tolist(),
            "vs_baseline": vs, "runs": runs}


def _results(runs, top=1.0, delong=None, legacy=False, sweep_at=None):
    """A results dict as the experiment writes it: 'conditions' at the largest fraction, every run in 'runs'."""
    at_top = {}
    for r in runs:
        if r["real_fraction"] == top:
            at_top.setdefault(r["condition"], []).append(r)
    base = at_top["real"]
    conditions = {c: _condition(rs, base, delong if c != "real" else None) for c, rs in at_top.items()}
    res = {"config": {"size": 28, "classifier": "smallcnn", "epochs": 1, "patience": None, "synthetic": "phantom",
                      "n_boot": 200, "seed": 0},
           "data": {"source": "constructed", "images": 999, "class_names": NAMES},
           "split": {"train": dict.fromkeys(NAMES, 10), "val": dict.fromkeys(NAMES, 5), "test": dict.fromkeys(NAMES, 5)},
           "external_test": None, "baseline": "real", "melanoma_class": "melanoma", "seeds": SEEDS,
           "conditions": conditions, "notes": {"ci": "95% t-interval over seeds"}}
    if legacy:
        for c in conditions.values():
            for r in c["runs"]:
                for k in ("real_fraction", "n_real", "synthetic_ratio"):
                    r.pop(k)
    else:
        res["runs"] = runs
        res["ratio_sweep"] = None if sweep_at is None else {
            "real_fraction": sweep_at, "conditions": sorted({r["condition"] for r in runs if r["synthetic_ratio"]})}
    return res


def _study_runs(factor=3.0, spread=0.01):
    offsets = np.linspace(-spread, spread, len(SEEDS))
    runs = []
    for frac, n in N_REAL.items():
        for s, o in zip(SEEDS, offsets):
            runs.append(_run("real", frac, s, line(n) + 0.3 * o, 0.0))
            runs.append(_run("real+synth:1", frac, s, line(factor * n) + o, 1.0))
            runs.append(_run("real+classic", frac, s, line(n) + 0.002 + o * (s % 2), 0.0))
    return runs


def test_detail_table_gives_min_p_t_test_holm_and_delong():
    from statsmodels.stats.multitest import multipletests

    runs = _study_runs()
    res = _results(runs, delong={"melanoma_auc": {"difference": 0.0123, "p_value": 0.0312}})
    rows = {r[0]: r for r in detail_rows(res)}
    header = __import__("dermsynth.classify.experiment_report", fromlist=["DETAIL_HEADER"]).DETAIL_HEADER
    col = {h: i for i, h in enumerate(header)}
    base = np.array([r["metrics"]["macro_auc"] for r in runs if r["condition"] == "real" and r["real_fraction"] == 1])
    perm = []
    for cond in ("real+synth:1", "real+classic"):
        row = rows[Condition.parse(cond).label]
        vals = np.array([r["metrics"]["macro_auc"] for r in runs if r["condition"] == cond and r["real_fraction"] == 1])
        assert row[col["min attainable p"]] == f"{2 / 2 ** 6:.3g}" == "0.0312"
        assert row[col["paired t p"]] == f"{sps.ttest_rel(vals, base).pvalue:.3g}"
        assert row[col["DeLong Δ melanoma AUC (pp) p"]] == "1.23 (p 0.0312)"
        perm.append(res["conditions"][cond]["vs_baseline"]["paired"]["macro_auc"]["permutation_p"])
    holm = multipletests(perm, method="holm")[1]
    assert [rows[Condition.parse(c).label][col["Holm p"]] for c in ("real+synth:1", "real+classic")] == [
        f"{h:.3g}" for h in holm]
    assert rows["Real images"][col["Holm p"]] == "" and rows["Real images"][col["DeLong Δ melanoma AUC (pp) p"]] == ""
    no_delong = {r[0]: r for r in detail_rows(_results(runs))}
    assert no_delong[Condition.parse("real+classic").label][col["DeLong Δ melanoma AUC (pp) p"]] == "n/a"


def test_power_line_is_statsmodels_smallest_detectable_effect_times_the_observed_sd():
    from statsmodels.stats.power import TTestPower

    runs = _study_runs()
    res = _results(runs)
    d = TTestPower().solve_power(nobs=6, alpha=0.05, power=0.8, alternative="two-sided")
    sd = np.std([a["metrics"]["macro_auc"] - b["metrics"]["macro_auc"] for a, b in zip(
        [r for r in runs if r["condition"] == "real+synth:1" and r["real_fraction"] == 1],
        [r for r in runs if r["condition"] == "real" and r["real_fraction"] == 1])], ddof=1)
    text = power_line(res)
    assert f"{100 * d * sd:.2f} pp (SD {100 * sd:.2f} pp)" in text and "with 6 seeds" in text
    assert "cannot give p below 0.0312" in text


def test_single_fraction_results_keep_the_old_report(tmp_path):
    res = _results([r for r in _study_runs() if r["real_fraction"] == 1.0], legacy=True)
    assert efficiency_of(res) is None
    assert {r["real_fraction"] for r in run_records(res)} == {1.0}
    table, report = write_outputs(res, tmp_path)
    assert "| Training data | AUC (%) |" in table and "Equivalent real images" not in table
    assert not (tmp_path / "efficiency.json").exists() and not (tmp_path / "efficiency.png").exists()
    assert report.read_text().count("data:image/png;base64,") == 4  # auc.png and three confusion matrices
    assert "Power: with 6 seeds" in (tmp_path / "table.md").read_text()


def test_several_fractions_add_the_curve_the_equivalents_and_the_plot(tmp_path):
    res = _results(_study_runs(factor=3.0, spread=0.0))  # no spread: the equivalents are exact
    table, report = write_outputs(res, tmp_path)
    eff = json.loads((tmp_path / "efficiency.json").read_text())
    eq = {(e["condition"], e["real_fraction"]): e for e in eff["equivalents"]["macro_auc"]}
    assert eq[("real+synth:1", 0.25)]["equivalent"] == pytest.approx(300)  # 3 x 100 on the line
    assert eq[("real+synth:1", 0.5)]["equivalent"] == "inf" and eq[("real+synth:1", 0.5)]["status"] == "beyond"
    assert eq[("real+synth:1", 0.25)]["resampled"] == "seeds"
    assert "| Real images + synthetic (1x the real count) | 0.25 | 100 | 65.5 | 60.0 | 300 [300, 300] | 3.00x | 0 |" \
        in table
    assert "> 400 [> 400, > 400]" in table and "Data-efficiency curve" in table
    from statsmodels.stats.multitest import multipletests

    curve = table[table.index("Data-efficiency curve"):table.index("Equivalent real images")]
    rows = [ln.split(" | ") for ln in curve.splitlines() if ln.startswith("| Real images +")]
    perm = [c["permutation_p"] for c in eff["comparisons"]["macro_auc"]]  # the same order as the rows
    assert len(rows) == len(perm) == 6 and [r[-1].rstrip(" |") for r in rows] == [
        f"{h:.3g}" for h in multipletests(perm, method="holm")[1]]
    assert (tmp_path / "efficiency.png").stat().st_size > 5000
    assert report.read_text().count("data:image/png;base64,") == 5
    assert "Synthetic:real ratio sweep" not in table  # one ratio only


def test_a_ratio_sweep_gets_its_table(tmp_path):
    runs = _study_runs()
    for ratio, factor in ((0.5, 1.5), (2.0, 4.0)):
        runs += [_run(f"real+synth:{ratio:g}", 0.25, s, line(factor * 100), ratio) for s in SEEDS]
    res = _results(runs, sweep_at=0.25)
    runs += [_run("synth:1", 0.25, s, 0.7, 1.0) for s in SEEDS]  # synthetic only: not a sweep condition
    res["runs"] = runs
    table, _ = write_outputs(res, tmp_path)
    sweep = table[table.index("Synthetic:real ratio sweep at real fraction 0.25"):]
    lines = [ln for ln in sweep.splitlines() if ln.startswith("| ")][1:]
    assert [ln.split(" | ")[0] for ln in lines] == ["| 0", "| 0.5", "| 1", "| 2"]
    assert "| 2 | Real images + synthetic (2x the real count) | 200 |" in sweep
    eff = json.loads((tmp_path / "efficiency.json").read_text())
    assert [r["synthetic_ratio"] for r in eff["ratio_sweep"]["macro_auc"]] == [0.0, 0.5, 1.0, 2.0]


def test_predictions_put_the_test_images_into_the_bootstrap(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 120)
    runs = _study_runs()
    probs = {}
    for r in runs:  # predictions whose strength follows the recorded AUC's ordering
        logits = rng.normal(size=(120, 3)) + 8 * (r["metrics"]["macro_auc"] - 0.5) * np.eye(3)[labels]
        probs[(r["condition"], r["real_fraction"], r["seed"])] = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    study = efficiency_of(_results(runs), lambda r: (probs[(r["condition"], r["real_fraction"], r["seed"])], labels))
    eq = study.equivalents["macro_auc"][0]
    assert eq.resampled == "seeds and test images" and eq.n_boot == 200
    assert study.equivalents["melanoma_auc"][0].resampled == "seeds and test images"
