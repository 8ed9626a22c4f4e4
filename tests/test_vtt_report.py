"""The study report: Baur et al.'s Table 2 reproduced through the whole pipeline (answers given through the
study's own API), Table 3 kappas against statsmodels, pooled figures, per-image table, files and CLI."""

import json
import random

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from statsmodels.stats.inter_rater import aggregate_raters
from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss_kappa
from sklearn.metrics import roc_auc_score
from statsmodels.stats.proportion import proportion_confint

from dermsynth.cli import main
from dermsynth.vtt import report as report_module
from dermsynth.vtt.report import write_report

from _vtt_study import BAUR2018_TABLE2, give, key, make_study, nominal_alpha, order


def _answer_as_table2(study, rater, counts, rng):
    """Answer every image of the rater's list so that TP/FP/FN/TN equal ``counts``; which images get which
    answer is random, so raters agree only by chance."""
    tp, fp, fn, tn = counts
    truth = key(study)
    ids = order(study, rater)
    real = [i for i in ids if truth[i]]
    fake = [i for i in ids if not truth[i]]
    called_real = set(rng.choice(real, tp, replace=False)) | set(rng.choice(fake, fp, replace=False))
    for image_id in ids:
        give(study, rater, image_id, "real" if image_id in called_real else "fake")


@pytest.fixture(scope="module")
def table2_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("vtt")
    study = make_study(root / "baur2018.sqlite", n_real=50, n_fake=30)
    rng = np.random.default_rng(0)
    for group, names in (("DLE", ["DLE1", "DLE2", "DLE3", "DLE4", "DLE5"]), ("ED", ["ED1", "ED2", "ED3"])):
        for rater in study.add_raters(group, names=names):
            _answer_as_table2(study, rater, BAUR2018_TABLE2[rater.name][:4], rng)
    (late,) = study.add_raters("ED", names=["ED4"])  # started but not finished
    for image_id in order(study, late)[:3]:
        give(study, late, image_id, "real")
    rep = write_report(study, root / "report")
    return study, rep, root / "report"


def test_table2_through_the_report(table2_study):
    _, rep, _ = table2_study
    raters = {r["rater"]: r for r in rep.numbers["raters"]}
    for name, (tp, fp, fn, tn, acc, tpr, tnr) in BAUR2018_TABLE2.items():
        r = raters[name]
        assert (r["tp"], r["fp"], r["fn"], r["tn"]) == (tp, fp, fn, tn) and r["complete"]
        for ours, printed in ((r["accuracy"], acc), (r["tpr"], tpr), (r["tnr"], tnr)):
            assert 0 <= ours - printed < 1e-3 + 1e-12  # the paper truncates to 3 decimals
        assert r["accuracy_ci"] == pytest.approx(proportion_confint(tp + tn, 80, method="wilson"))
        assert r["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
        assert r["f1_ci"][0] <= r["f1"] <= r["f1_ci"][1]
    assert raters["DLE1"]["accuracy_p"] < 0.01 and raters["DLE4"]["accuracy_p"] == pytest.approx(1.0)
    assert raters["ED4"]["complete"] is False and raters["ED4"]["answered"] == 3


def test_groups_pool_complete_raters_only(table2_study):
    _, rep, _ = table2_study
    groups = {g["group"]: g for g in rep.numbers["groups"]}
    assert set(groups) == {"DLE", "ED", "all"}
    for g, names in (("DLE", [f"DLE{i}" for i in range(1, 6)]), ("ED", ["ED1", "ED2", "ED3"]),
                     ("all", list(BAUR2018_TABLE2))):
        sums = np.sum([BAUR2018_TABLE2[n][:4] for n in names], axis=0)
        assert (groups[g]["tp"], groups[g]["fp"], groups[g]["fn"], groups[g]["tn"]) == tuple(sums)
        assert groups[g]["raters"] == len(names)
        accs = [(BAUR2018_TABLE2[n][0] + BAUR2018_TABLE2[n][3]) / 80 for n in names]
        assert groups[g]["rater_accuracy_mean"] == pytest.approx(np.mean(accs))
        assert groups[g]["rater_accuracy_sd"] == pytest.approx(np.std(accs, ddof=1))


def test_table3_kappas_match_statsmodels(table2_study):
    study, rep, _ = table2_study
    answers = study.answers_frame()
    answers = answers[answers.rater != "ED4"]
    wide = answers.pivot(index="image_id", columns="rater", values="called_real")
    truth = answers.groupby("image_id").is_real.first()
    kappa = rep.numbers["agreement"]
    assert set(kappa) == {"DLE", "ED", "all"}
    for group, members in (("DLE", [f"DLE{i}" for i in range(1, 6)]), ("ED", ["ED1", "ED2", "ED3"]),
                           ("all", list(BAUR2018_TABLE2))):
        for subset, keep in (("real", truth == 1), ("fake", truth == 0), ("all", truth >= 0)):
            mat = wide.loc[keep[keep].index, members].to_numpy()
            expected = sm_fleiss_kappa(aggregate_raters(mat)[0], method="fleiss")
            cell = kappa[group][subset]
            assert cell["fleiss_kappa"] == pytest.approx(expected, abs=1e-12)
            assert cell["fleiss_images"] == cell["alpha_images"] == {"real": 50, "fake": 30, "all": 80}[subset]
            assert cell["raters"] == len(members) and "warning" not in cell
            # complete design: alpha from the package equals the independent coincidence-matrix computation
            assert cell["krippendorff_alpha"] == pytest.approx(nominal_alpha(mat.T), abs=1e-9)


def test_files_per_image_table_and_standard_json(table2_study):
    study, rep, out = table2_study
    for name in ("report.html", "report.json", "answers.csv", "answer_log.csv", "images.csv", "most_real.png",
                 "most_fake.png", "fig5a.png", "fig5b.png", "settings.csv", "hanging_list.csv"):
        assert (out / name).stat().st_size > 0, name
    numbers = json.loads((out / "report.json").read_text(),
                         parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert numbers == json.loads(json.dumps(rep.numbers))
    answers = pd.read_csv(out / "answers.csv")
    assert len(answers) == 8 * 80 + 3 and len(pd.read_csv(out / "answer_log.csv")) == 8 * 80 + 3
    images = pd.read_csv(out / "images.csv")
    assert len(images) == 80 and (images.answers == 8).all()  # complete raters only
    done = answers[answers.rater != "ED4"]
    expected = done.groupby("image_id").called_real.mean()
    got = images.set_index("image_id").fraction_real
    assert np.allclose(got.loc[expected.index], expected)
    assert got.is_monotonic_decreasing  # sorted: most often called real first
    html = (out / "report.html").read_text()
    assert "Table 2 layout" in html and "Table 3 layout" in html and "ED4" in html and "incomplete" in html


def test_report_without_answers_or_raters(tmp_path):
    study = make_study(tmp_path / "empty.sqlite")
    rep = write_report(study, tmp_path / "r0")
    assert rep.numbers["raters"] == [] and rep.numbers["groups"] == [] and rep.html.is_file()
    study.add_raters("lay", 1)
    rep = write_report(study, tmp_path / "r1")
    assert rep.numbers["raters"][0]["n"] == 0 and rep.numbers["agreement"] == {}
    assert rep.numbers["raters"][0]["accuracy"] is None


def test_cli_create_invite_report_and_errors(tmp_path):
    runner = CliRunner()
    study = tmp_path / "cli.sqlite"
    r = runner.invoke(main, ["vtt", "create", "--real", "phantom:12", "--fake", "phantom:12", "--n-real", "5",
                             "--n-fake", "3", "--size", "16", "--out", str(study), "--time-limit", "3",
                             "--confidence", "--shared-order"])
    assert r.exit_code == 0, r.output
    assert "8 images (5 real, 3 fake)" in r.output and "3 s per image" in r.output
    r = runner.invoke(main, ["vtt", "invite", str(study), "--group", "ML expert", "--n", "2",
                             "--base-url", "http://example.org:9000/"])
    assert r.exit_code == 0, r.output
    links = [line.split()[-1] for line in r.output.splitlines()]
    assert len(links) == 2 and all(link.startswith("http://example.org:9000/r/") for link in links)
    r = runner.invoke(main, ["vtt", "raters", str(study)])
    assert "ML expert-2" in r.output and "0/8" in r.output and "/r/" not in r.output  # links only on request
    r = runner.invoke(main, ["vtt", "links", str(study), "--rater", "ML expert-2", "--base-url", "http://h:1"])
    assert r.exit_code == 0 and r.output.split()[-1] == "http://h:1/r/" + links[1].rsplit("/", 1)[1]
    r = runner.invoke(main, ["vtt", "export", str(study), "--out", str(tmp_path / "csv")])
    assert r.exit_code == 0 and {p.name for p in (tmp_path / "csv").iterdir()} == {
        "settings.csv", "hanging_list.csv", "answers.csv", "answer_log.csv"}
    r = runner.invoke(main, ["vtt", "report", str(study), "--out", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "rep" / "report.html").is_file()
    for args, message in (
        (["vtt", "report", str(tmp_path / "missing.sqlite"), "--out", str(tmp_path)], "study file not found"),
        (["vtt", "create", "--real", "phantom:12", "--fake", "phantom:12", "--n-real", "20", "--out",
          str(tmp_path / "x.sqlite")], "fewer than --n-real 20"),
        (["vtt", "create", "--real", "phantom:12", "--fake", "phantom:12", "--n-real", "2", "--n-fake", "2",
          "--out", str(study)], "exists"),
        (["vtt", "invite", str(study), "--group", "x", "--names", "a,a"], "distinct"),
        (["vtt", "invite", str(study), "--group", "ML expert", "--names", "ML expert-1"], "already taken"),
        (["vtt", "create", "--real", "phantom:12", "--fake", "phantom:12", "--time-limit", "0", "--out",
          str(tmp_path / "y.sqlite")], "--time-limit"),
    ):
        r = runner.invoke(main, args)
        assert r.exit_code == 2 and message in r.output, (args, r.output)
    not_a_study = tmp_path / "other.sqlite"
    not_a_study.write_bytes(b"x" * 100)
    r = runner.invoke(main, ["vtt", "serve", str(not_a_study)])
    assert r.exit_code == 2 and "not a dermsynth study" in r.output
    empty = make_study(tmp_path / "noraters.sqlite")
    r = runner.invoke(main, ["vtt", "serve", str(empty.path)])
    assert r.exit_code == 2 and "no raters yet" in r.output


def test_names_are_plain_text_and_a_failed_report_leaves_the_previous_one(tmp_path, monkeypatch):
    study = make_study(tmp_path / "s.sqlite")
    names = ["$x^2$", r"\alpha_{", "$$"]
    for name, group in zip(names, ["$g$", "$g$", r"\frac{"], strict=True):
        (rater,) = study.add_raters(group, names=[name])
        for i, image_id in enumerate(order(study, rater)):
            give(study, rater, image_id, "real" if i % 3 else "fake")
    rep = write_report(study, tmp_path / "rep")  # matplotlib's mathtext would have failed on these
    assert {r["rater"] for r in rep.numbers["raters"]} == set(names)
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "$x^2$" in html and (tmp_path / "rep" / "fig5a.png").stat().st_size > 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "rep").iterdir()}

    def broken(*args, **kwargs):
        raise RuntimeError("disk gone")

    monkeypatch.setattr(report_module, "_fig5", broken)
    with pytest.raises(RuntimeError):
        write_report(study, tmp_path / "rep")
    assert {p.name: p.read_bytes() for p in (tmp_path / "rep").iterdir()} == before  # untouched, no temp left


def test_incomplete_design_reports_alpha_with_counts_and_warns(tmp_path):
    study = make_study(tmp_path / "s.sqlite", images_per_rater=4)
    raters = study.add_raters("lay", 4)
    truth = key(study)
    rng = np.random.default_rng(3)
    for r in raters:
        for image_id in order(study, r):
            give(study, r, image_id, "real" if (truth[image_id] ^ (rng.random() < 0.3)) else "fake")
    rep = write_report(study, tmp_path / "rep")
    answers = study.answers_frame()
    wide = answers.pivot(index="image_id", columns="rater", values="called_real")
    cell = rep.numbers["agreement"]["lay"]["all"]
    assert cell["raters"] == 4 and cell["fleiss_images"] == len(wide.dropna())
    pairable = wide[wide.notna().sum(axis=1) >= 2]
    assert cell["alpha_images"] == len(pairable) and cell["alpha_answers"] == int(pairable.notna().sum().sum())
    expected = nominal_alpha(wide.to_numpy(dtype=float).T)
    assert (cell["krippendorff_alpha"] is None and not np.isfinite(expected)) or \
        cell["krippendorff_alpha"] == pytest.approx(expected, abs=1e-9)
    assert "too few" in cell["warning"]
    warning, for_all = rep.numbers["warnings"]  # one per column: the group, and all raters
    assert for_all.startswith("agreement of all (4 raters)")
    assert warning.startswith("agreement of lay (4 raters) rests on too few images") and \
        f"all ({cell['fleiss_images']} images for kappa, {cell['alpha_images']} for alpha)" in warning
    r = CliRunner().invoke(main, ["vtt", "report", str(study.path), "--out", str(tmp_path / "rep2")])
    assert r.exit_code == 0 and "warning: agreement of lay (4 raters) rests on too few" in r.output
    html = (tmp_path / "rep" / "report.html").read_text()
    assert f"{cell['fleiss_images']} images x 4 raters" in html


def test_reading_times_auc_methods_and_csv_export(tmp_path):
    study = make_study(tmp_path / "s.sqlite", confidence=True, calibration=2, allow_revise=True)
    a, b = study.add_raters("dermatologist", 2)
    truth = key(study)
    rng = np.random.default_rng(0)
    for r in (a, b):
        for image_id in order(study, r, calibration=True):
            state = give(study, r, image_id, "real", 3)
            assert state["feedback"]["truth"] in ("real", "fake")
        for image_id in order(study, r):
            give(study, r, image_id, "real" if rng.random() < 0.6 else "fake", int(rng.integers(1, 6)))
    give(study, a, order(study, a)[0], "fake", 5)  # one revision
    rep = write_report(study, tmp_path / "rep")
    answers = study.answers_frame()
    assert len(answers) == 20 and set(answers.image_id) <= set(truth)  # calibration answers never analysed
    for row in rep.numbers["raters"]:
        sub = answers[answers.rater == row["rater"]]
        assert row["reading_s_median"] == pytest.approx(np.median(sub.server_ms) / 1000)
        assert row["roc_auc"] == pytest.approx(
            roc_auc_score(sub.is_real, np.where(sub.called_real == 1, 1, -1) * sub.confidence))
    methods = rep.numbers["methods"]
    assert "10 images (6 real, 4 synthetic) at 16x16 px" in methods and "2 training images" in methods
    assert "dermatologist: 2 invited, 2 complete" in methods
    out = tmp_path / "rep"
    settings = pd.read_csv(out / "settings.csv").set_index("key").value
    assert settings["calibration"] == "2" and settings["order_seed"] == str(study.settings.order_seed)
    hanging = pd.read_csv(out / "hanging_list.csv")
    assert len(hanging) == 2 * 12 and hanging.calibration.sum() == 4
    for r in (a, b):
        mine = hanging[hanging.rater == r.name].sort_values("position")
        assert mine.image_id.tolist() == order(study, r, calibration=True) + order(study, r)
        rng_order = random.Random(int(mine.order_seed.iloc[0]))  # the recorded seed rebuilds the order
        cal = sorted(mine[mine.calibration == 1].image_id)
        rng_order.shuffle(cal)
        scored = sorted(mine[mine.calibration == 0].image_id)
        rng_order.shuffle(scored)
        assert cal + scored == mine.image_id.tolist()
    log = pd.read_csv(out / "answer_log.csv")
    assert len(log) == 2 * 12 + 1 and log.calibration.sum() == 4
    assert (pd.to_datetime(log.served_at) <= pd.to_datetime(log.answered_at)).all()
    final = pd.read_csv(out / "answers.csv")
    assert final.revisions.sum() == 1 and {"server_ms", "elapsed_ms", "answered_at"} <= set(final.columns)
