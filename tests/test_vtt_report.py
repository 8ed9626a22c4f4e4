"""The study report: Baur et al.'s Table 2 reproduced through the whole pipeline (answers given through the
study's own API), Table 3 kappas against statsmodels, pooled figures, per-image table, files and CLI."""

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from statsmodels.stats.inter_rater import aggregate_raters
from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss_kappa
from statsmodels.stats.proportion import proportion_confint

from dermsynth.cli import main
from dermsynth.vtt.report import write_report

from _vtt_study import BAUR2018_TABLE2, key, make_study


def _answer_as_table2(study, rater, counts, rng):
    """Answer every image of the rater's list so that TP/FP/FN/TN equal ``counts``; which images get which
    answer is random, so raters agree only by chance."""
    tp, fp, fn, tn = counts
    truth = key(study)
    order = [r[0] for r in study.conn.execute(
        "SELECT image_id FROM rater_items WHERE rater_id = ? ORDER BY position", (rater.id,))]
    real = [i for i in order if truth[i]]
    fake = [i for i in order if not truth[i]]
    called_real = set(rng.choice(real, tp, replace=False)) | set(rng.choice(fake, fp, replace=False))
    for image_id in order:
        study.answer(rater.token, image_id, "real" if image_id in called_real else "fake")


@pytest.fixture(scope="module")
def table2_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("vtt")
    study = make_study(root / "baur2018.sqlite", n_real=50, n_fake=30)
    rng = np.random.default_rng(0)
    for group, names in (("DLE", ["DLE1", "DLE2", "DLE3", "DLE4", "DLE5"]), ("ED", ["ED1", "ED2", "ED3"])):
        for rater in study.add_raters(group, names=names):
            _answer_as_table2(study, rater, BAUR2018_TABLE2[rater.name][:4], rng)
    (late,) = study.add_raters("ED", names=["ED4"])  # started but not finished
    for image_id in [r[0] for r in study.conn.execute(
            "SELECT image_id FROM rater_items WHERE rater_id = ? ORDER BY position LIMIT 3", (late.id,))]:
        study.answer(late.token, image_id, "real")
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
    kappa = rep.numbers["fleiss_kappa"]
    assert set(kappa) == {"DLE", "ED", "all"}
    for group, members in (("DLE", [f"DLE{i}" for i in range(1, 6)]), ("ED", ["ED1", "ED2", "ED3"]),
                           ("all", list(BAUR2018_TABLE2))):
        for subset, keep in (("real", truth == 1), ("fake", truth == 0), ("all", truth >= 0)):
            mat = wide.loc[keep[keep].index, members].to_numpy()
            expected = sm_fleiss_kappa(aggregate_raters(mat)[0], method="fleiss")
            assert kappa[group][subset]["kappa"] == pytest.approx(expected, abs=1e-12)
            assert kappa[group][subset]["images"] == {"real": 50, "fake": 30, "all": 80}[subset]


def test_files_per_image_table_and_standard_json(table2_study):
    study, rep, out = table2_study
    for name in ("report.html", "report.json", "answers.csv", "answer_log.csv", "images.csv", "most_real.png",
                 "most_fake.png", "fig5a.png", "fig5b.png"):
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
    assert rep.numbers["raters"][0]["n"] == 0 and rep.numbers["fleiss_kappa"] == {}
    assert rep.numbers["raters"][0]["accuracy"] is None


def test_cli_create_invite_report_and_errors(tmp_path):
    runner = CliRunner()
    study = tmp_path / "cli.sqlite"
    r = runner.invoke(main, ["vtt", "create", "--real", "phantom:12", "--fake", "phantom:12", "--n-real", "5",
                             "--n-fake", "3", "--size", "16", "--out", str(study), "--time-limit", "3",
                             "--confidence", "--per-rater-order"])
    assert r.exit_code == 0, r.output
    assert "8 images (5 real, 3 fake)" in r.output and "3 s per image" in r.output
    r = runner.invoke(main, ["vtt", "invite", str(study), "--group", "ML expert", "--n", "2",
                             "--base-url", "http://example.org:9000/"])
    assert r.exit_code == 0, r.output
    links = [line.split()[-1] for line in r.output.splitlines()]
    assert len(links) == 2 and all(link.startswith("http://example.org:9000/r/") for link in links)
    r = runner.invoke(main, ["vtt", "raters", str(study)])
    assert "ML expert-2" in r.output and "0/8" in r.output
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
