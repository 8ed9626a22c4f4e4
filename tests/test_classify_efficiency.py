"""The data-efficiency study: curve, equivalent real images, ratio sweep and plot, on constructed data whose
answers are known in closed form."""

import math

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

from dermsynth.classify.efficiency import (_weighted_auc, efficiency_curve, equivalent_real_images, format_images,
                                           invert_curve, paired_with_baseline, plot_efficiency, ratio_sweep,
                                           study_efficiency)
from dermsynth.classify.scoring import macro_auc
from dermsynth.classify.stats import compare_to_baseline
from dermsynth.errors import DataError

N_REAL = {0.125: 100, 0.25: 200, 0.5: 400, 1.0: 800}


def line(n):
    """The real-only curve: exactly linear in log(n)."""
    return 0.6 + 0.05 * np.log(n / 100)


def record(cond, frac, seed, value, ratio=0.0, mel=None, n_synthetic=None):
    r = {"condition": cond, "seed": seed, "real_fraction": frac, "n_real": N_REAL[frac], "synthetic_ratio": ratio,
         "metrics": {"macro_auc": value, "melanoma_auc": mel}}
    if n_synthetic is not None:
        r["n_train_synthetic"] = n_synthetic
    return r


def study(seeds=(0, 1, 2), spread=0.0, factor=3.0):
    """Real-only on the line; real+synth:1 worth ``factor`` x its real images (on the line at factor * n); seed
    offsets -spread, 0, +spread average to zero, so every mean is exactly on the line."""
    offsets = np.linspace(-spread, spread, len(seeds))
    recs = []
    for frac, n in N_REAL.items():
        for s, o in zip(seeds, offsets):
            recs.append(record("real", frac, s, line(n)))
            recs.append(record("real+synth:1", frac, s, line(factor * n) + o, ratio=1.0))
    return recs


def test_curve_is_mean_and_t_interval_over_seeds():
    recs = study(spread=0.01)
    pts = efficiency_curve(recs)
    assert [(p.condition, p.n_real) for p in pts] == [("real", n) for n in (100, 200, 400, 800)] + [
        ("real+synth:1", n) for n in (100, 200, 400, 800)]
    p = pts[4]
    vals = np.array([line(300) - 0.01, line(300), line(300) + 0.01])
    lo, hi = sps.t.interval(0.95, 2, loc=vals.mean(), scale=sps.sem(vals))
    assert p.values == pytest.approx(vals) and p.seeds == [0, 1, 2] and p.synthetic_ratio == 1.0
    assert (p.mean, p.ci_low, p.ci_high) == pytest.approx((line(300), lo, hi))
    recs[0]["metrics"]["macro_auc"] = None  # an undefined metric leaves its run out
    assert efficiency_curve(recs)[0].seeds == [1, 2]


def test_inverting_a_line_in_log_n_is_exact():
    n = [100, 200, 400, 800]
    for target_n in (100, 150, 300, 799):
        assert invert_curve(n, line(np.array(n)), line(target_n)) == pytest.approx(target_n)
    assert invert_curve(n, line(np.array(n)), line(801)) == math.inf  # beyond the curve
    assert invert_curve(n, line(np.array(n)), line(99)) == 0.0  # below it
    assert invert_curve(n[::-1], line(np.array(n[::-1])), line(300)) == pytest.approx(300)  # any order


def test_a_non_monotone_curve_is_made_monotone_before_inverting():
    n, y = [100, 200, 400, 800], [0.6, 0.7, 0.65, 0.8]
    # isotonic fit with equal weights pools 0.7 and 0.65: 0.6, 0.675, 0.675, 0.8
    assert invert_curve(n, y, 0.7) == pytest.approx(400 * 2 ** 0.2)  # (0.7 - 0.675) / (0.8 - 0.675) = 0.2
    assert invert_curve(n, y, 0.675) == pytest.approx(200)  # the first point that reaches it
    # weights 1, 3, 1, 1 pool to (3 * 0.7 + 0.65) / 4 = 0.6875
    assert invert_curve(n, y, 0.7, weights=[1, 3, 1, 1]) == pytest.approx(400 * 2 ** ((0.7 - 0.6875) / 0.1125))
    with pytest.raises(DataError, match="distinct positive"):
        invert_curve([100, 100], [0.6, 0.7], 0.65)


def test_equivalent_real_images_are_the_closed_form_and_beyond_the_curve_is_said():
    eqs = equivalent_real_images(study(factor=3.0), n_boot=200)
    by_n = {e.n_real: e for e in eqs}
    assert by_n[100].equivalent == pytest.approx(300) and by_n[200].equivalent == pytest.approx(600)
    assert by_n[400].status == by_n[800].status == "beyond" and by_n[400].equivalent == math.inf
    # no seed spread: every bootstrap replicate gives the same answer
    assert (by_n[100].ci_low, by_n[100].ci_high) == pytest.approx((300, 300))
    assert by_n[100].baseline_mean == pytest.approx(line(100)) and by_n[100].resampled == "seeds"
    assert by_n[100].formatted() == "300 [300, 300]" and by_n[800].formatted() == "> 800 [> 800, > 800]"
    assert by_n[800].share_beyond == 1.0
    worse = equivalent_real_images(study(factor=0.5), n_boot=50)
    assert worse[0].status == "below" and worse[0].formatted().startswith("< 100")
    assert worse[1].equivalent == pytest.approx(100)  # 0.5 x 200 real images


def test_seed_bootstrap_interval_of_two_seeds_is_their_equivalents():
    # two seeds at v1 < v2: the resampled means are v1, (v1 + v2) / 2, v2 with chance 1/4, 1/2, 1/4, so the
    # 95 % percentile interval is exactly [equivalent(v1), equivalent(v2)] and 1/4 of replicates sit at v2
    recs = [record("real", f, s, line(n)) for f, n in N_REAL.items() for s in (0, 1)]
    recs += [record("real+synth:1", 0.125, 0, line(150), 1.0), record("real+synth:1", 0.125, 1, line(900), 1.0)]
    e = equivalent_real_images(recs, n_boot=4000, seed=1)[0]
    mean_value = (line(150) + line(900)) / 2
    assert e.equivalent == pytest.approx(invert_curve(list(N_REAL.values()), line(np.array([100, 200, 400, 800])),
                                                      mean_value))
    assert e.ci_low == pytest.approx(150) and e.ci_high == math.inf  # 900 > 800: beyond the curve
    assert e.share_beyond == pytest.approx(0.25, abs=0.03)


def test_weighted_auc_equals_sklearn_with_sample_weights_and_ties():
    rng = np.random.default_rng(3)
    scores = np.round(rng.normal(size=60), 1)  # ties
    positive = rng.random(60) < 0.4
    weights = rng.multinomial(60, np.full(60, 1 / 60), size=5).astype(float)
    expected = [roc_auc_score(positive, scores, sample_weight=w) for w in weights]
    assert _weighted_auc(scores, positive, weights) == pytest.approx(expected)
    assert _weighted_auc(scores, positive, np.ones((1, 60)))[0] == pytest.approx(roc_auc_score(positive, scores))


def _predictions(strength, seed, labels):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(len(labels), 3)) + strength * np.eye(3)[labels]
    return np.exp(logits) / np.exp(logits).sum(1, keepdims=True)


def test_test_image_bootstrap_widens_the_interval_and_uses_the_runs_predictions():
    labels = np.random.default_rng(0).integers(0, 3, 150)
    preds, recs = {}, []
    for f, n in N_REAL.items():
        for cond, strength in (("real", np.log(n / 50)), ("real+synth:1", np.log(3 * n / 50))):
            probs = _predictions(strength, 7, labels)  # the same predictions for each seed: no seed spread
            for s in (0, 1, 2):
                preds[(cond, f, s)] = probs
                recs.append(record(cond, f, s, macro_auc(probs, labels), 1.0 if "synth" in cond else 0.0,
                                   mel=roc_auc_score(labels == 1, probs[:, 1])))

    def load(r):
        return preds[(r["condition"], r["real_fraction"], r["seed"])], labels

    seeds_only = equivalent_real_images(recs, n_boot=300)[0]
    both = equivalent_real_images(recs, n_boot=300, predictions=load)[0]
    assert both.equivalent == seeds_only.equivalent  # the estimate is the recorded values'
    assert seeds_only.ci_low == seeds_only.ci_high == seeds_only.equivalent
    assert both.resampled == "seeds and test images" and both.n_boot == 300
    assert both.ci_low < both.equivalent < both.ci_high or both.ci_high == math.inf
    assert both.ci_low < seeds_only.ci_low
    # one class's AUC (class 1 vs rest, recorded as melanoma_auc here)
    one_class = equivalent_real_images(recs, "real", "melanoma_auc", n_boot=300, class_index=1, predictions=load)[0]
    mel_only = equivalent_real_images(recs, "real", "melanoma_auc", n_boot=300)[0]
    assert one_class.equivalent == mel_only.equivalent and mel_only.ci_low == mel_only.ci_high
    assert one_class.ci_low < one_class.ci_high
    with pytest.raises(DataError, match="test labels differ"):
        equivalent_real_images(recs, n_boot=10, predictions=lambda r: (load(r)[0], labels if r["seed"] else labels[::-1]))


def test_ratio_sweep_at_the_smallest_fraction():
    recs = [record("real", f, s, line(n) + 0.001 * s) for f, n in N_REAL.items() for s in range(4)]
    for ratio, factor in ((0.5, 1.5), (1.0, 2.0), (2.0, 2.5)):
        recs += [record(f"real+synth:{ratio:g}", 0.125, s, line(factor * 100) + 0.002 * s * ratio, ratio,
                        n_synthetic=ratio * 100) for s in range(4)]
    recs.append(record("real+classic", 0.125, 0, 0.7))  # no synthetic images: not part of the sweep
    eqs = equivalent_real_images(recs, n_boot=100)
    rows = ratio_sweep(recs, equivalents=eqs)
    assert [(r.condition, r.synthetic_ratio) for r in rows] == [("real", 0.0), ("real+synth:0.5", 0.5),
                                                                ("real+synth:1", 1.0), ("real+synth:2", 2.0)]
    assert rows[0].vs_baseline is None and rows[0].n_synthetic is None
    base = [line(100) + 0.001 * s for s in range(4)]
    cond = [line(200) + 0.002 * s for s in range(4)]  # ratio 1: offsets 0.002 * s
    ref = compare_to_baseline(cond, base)
    assert rows[2].vs_baseline.mean_diff == pytest.approx(ref.mean_diff)
    assert rows[2].vs_baseline.t_p == pytest.approx(ref.t_p) and rows[2].n_synthetic == 100
    assert rows[2].mean == pytest.approx(np.mean(cond))
    assert rows[2].equivalent.real_fraction == 0.125 and rows[2].equivalent.condition == "real+synth:1"


def test_bad_records_are_one_line_errors():
    with pytest.raises(DataError, match="lacks real_fraction, n_real"):
        efficiency_curve([{"condition": "real", "seed": 0, "metrics": {"macro_auc": 0.7}}])
    with pytest.raises(DataError, match="no metrics.macro_auc"):
        efficiency_curve([{"condition": "real", "seed": 0, "real_fraction": 1.0, "n_real": 5, "metrics": {}}])
    with pytest.raises(DataError, match="at >= 2 real fractions"):
        equivalent_real_images([record("real", 1.0, 0, 0.7), record("real+synth:1", 1.0, 0, 0.8, 1.0)])
    assert format_images(1234.4, 100, 800) == "1234" and format_images(50, 100, 800) == "< 100"


def test_plot_is_written_atomically(tmp_path):
    recs = study(spread=0.01)
    recs.append(record("real+synth:5", 0.125, 0, 0.75, 5.0))  # a single-fraction condition: a point
    path = plot_efficiency({"macro AUC": efficiency_curve(recs)}, tmp_path / "sub" / "efficiency.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert sorted(p.name for p in path.parent.iterdir()) == ["efficiency.png"]  # no temporary file left


def test_paired_with_baseline_pairs_by_shared_seeds_at_each_fraction():
    recs = study(seeds=(0, 1, 2, 3), spread=0.01)
    recs = [r for r in recs if not (r["condition"] == "real" and r["real_fraction"] == 0.5 and r["seed"] == 3)]
    cmp = paired_with_baseline(efficiency_curve(recs))
    assert sorted(cmp) == [("real+synth:1", f) for f in sorted(N_REAL)]
    offsets = np.linspace(-0.01, 0.01, 4)
    ref = compare_to_baseline(line(1200) + offsets[:3], [line(400)] * 3)  # seed 3 has no baseline run at 0.5
    assert cmp[("real+synth:1", 0.5)].n == 3 and cmp[("real+synth:1", 0.5)].mean_diff == pytest.approx(ref.mean_diff)
    assert cmp[("real+synth:1", 0.5)].t_p == pytest.approx(ref.t_p)


def test_study_efficiency_bundles_the_sections_and_says_when_there_is_nothing_to_show():
    import json

    recs = study(spread=0.01)
    for r in recs:
        r["metrics"]["melanoma_auc"] = r["metrics"]["macro_auc"] - 0.05
    s = study_efficiency(recs, metrics={"macro_auc": None, "melanoma_auc": 1}, n_boot=100)
    assert set(s.curves) == set(s.equivalents) == {"macro_auc", "melanoma_auc"} and s.sweep == {}
    assert s.equivalents["melanoma_auc"][0].equivalent == pytest.approx(300)  # the same shift on both curves
    d = json.loads(json.dumps(s.as_dict()))  # plain JSON
    assert d["equivalents"]["macro_auc"][-1]["equivalent"] == "inf" and d["equivalents"]["macro_auc"][-1][
        "status"] == "beyond"
    assert d["comparisons"]["macro_auc"][0]["condition"] == "real+synth:1" and s.sweep_fraction == 0.125
    one_fraction = [r for r in recs if r["real_fraction"] == 1.0]
    assert study_efficiency(one_fraction) is None
    sweep = one_fraction + [record("real+synth:2", 1.0, s_, 0.8, 2.0) for s_ in (0, 1, 2)]
    only_sweep = study_efficiency(sweep)
    assert only_sweep.equivalents == {"macro_auc": []} and [r.synthetic_ratio for r in only_sweep.sweep[
        "macro_auc"]] == [0.0, 1.0, 2.0]
    assert [r.condition for r in ratio_sweep(recs, real_fraction=0.5)] == ["real", "real+synth:1"]


def test_the_sweep_keeps_the_conditions_it_is_given():
    recs = study()
    recs += [record(c, 0.125, s, 0.7, 1.0) for c in ("synth:1", "real+classic+synth:1") for s in (0, 1, 2)]
    recs += [record("real+synth:2", 0.125, s, 0.72, 2.0) for s in (0, 1, 2)]
    everything = [r.condition for r in ratio_sweep(recs)]
    assert everything == ["real", "real+classic+synth:1", "real+synth:1", "synth:1", "real+synth:2"]
    named = study_efficiency(recs, sweep_conditions=["real+synth:1", "real+synth:2"], n_boot=20)
    assert [r.condition for r in named.sweep["macro_auc"]] == ["real", "real+synth:1", "real+synth:2"]
