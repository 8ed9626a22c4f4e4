"""End to end in a real browser: `dermsynth vtt serve` in a child process on 127.0.0.1, headless Debian
Chromium driven by Playwright. Three raters answer a 10-image study at the same time (keyboard, mouse,
going back to revise, reloading mid-way and resuming); the report's numbers must equal the answers given.

Skipped, with the reason, only where no Chromium is installed (`make test` installs Debian's `chromium`
when it can; DERMSYNTH_CHROMIUM=PATH names another Chromium). With DERMSYNTH_VTT_SCREENSHOTS=DIR it also
saves DIR/vtt_rating.png and DIR/vtt_report.png (the pictures in docs/ were made so).
"""

import asyncio
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from statsmodels.stats.inter_rater import aggregate_raters
from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss_kappa

from dermsynth.vtt.background import ServerProcess
from dermsynth.vtt.create import create_study
from dermsynth.vtt.report import write_report
from dermsynth.vtt.stats import Confusion

from _vtt_study import key

CHROMIUM = os.environ.get("DERMSYNTH_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
SCREENSHOTS = os.environ.get("DERMSYNTH_VTT_SCREENSHOTS")

async_api = pytest.importorskip("playwright.async_api", reason="playwright (the `test` extra) is not installed")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).is_file(),
                                reason=f"no Chromium at {CHROMIUM}: install Debian's `chromium` "
                                       f"(apt-get install chromium) to run the browser test")

N = 10


async def _launch(p):
    return await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


async def _at(page, position: int) -> str:
    """Wait until ``position`` is on screen with its image shown; return the image's opaque id."""
    await page.wait_for_function(
        "(i) => { const img = document.getElementById('image'); return document.getElementById('vtt')"
        ".dataset.position === String(i) && !img.hidden && img.dataset.image; }", arg=position, timeout=15000)
    return await page.get_attribute("#image", "data-image")


async def _rate(browser, link: str, style: str, choose, truth: dict, given: dict, log: list,
                screenshot: Path | None = None):
    """One rater: ``choose(position, is_real) -> "real"/"fake"``; records final answers in ``given``."""
    context = await browser.new_context(viewport={"width": 900, "height": 1000})
    page = await context.new_page()
    await page.goto(link)
    i = 0
    while i < N:
        image_id = await _at(page, i)
        value = choose(i, truth[image_id])
        if style == "mouse":
            await page.check(f"input[name=confidence][value='{1 + i % 5}']")
            if screenshot is not None and i == 3:
                await page.screenshot(path=str(screenshot))
            await page.click(f"#{value}")
        else:
            await page.keyboard.press(str(1 + i % 5))
            await page.keyboard.press("r" if value == "real" else "f")
        given[image_id] = value
        log.append(image_id)
        if style == "revise" and i == 2:
            await _at(page, 3)
            await page.keyboard.press("ArrowLeft")        # back to image 2 and change the answer
            assert await _at(page, 2) == image_id
            assert "Your answer: " + value in await page.inner_text("#yours")
            flipped = "fake" if value == "real" else "real"
            await page.keyboard.press("5")
            await page.keyboard.press(flipped[0])
            given[image_id] = flipped
            log.append(image_id)
        if style == "reload" and i == 4:
            await _at(page, 5)
            await page.reload()                           # close and come back: resumes at the same image
            await _at(page, 5)
            assert (await page.inner_text("#counter")).startswith("5 / 10")
        i += 1
    await page.wait_for_selector("#done", state="visible")
    assert (await page.inner_text("#counter")).startswith("10 / 10")
    await context.close()


async def _study_run(links: dict, truth: dict, screenshot_dir: Path | None):
    plans = {  # rater -> (input style, policy)
        "A": ("revise", lambda i, real: "real" if real else "fake"),   # always right, then one revision
        "B": ("mouse", lambda i, real: "real"),                       # calls everything real
        "C": ("reload", lambda i, real: "real" if i % 2 else "fake"),  # alternates
    }
    given = {name: {} for name in plans}
    logs = {name: [] for name in plans}
    async with async_api.async_playwright() as p:
        browser = await _launch(p)
        shot = screenshot_dir / "vtt_rating.png" if screenshot_dir else None
        await asyncio.gather(*(_rate(browser, links[name], style, policy, truth, given[name], logs[name],
                                     shot if name == "B" else None)
                               for name, (style, policy) in plans.items()))
        await browser.close()
    return given, logs


def test_three_raters_in_a_real_browser(tmp_path):
    study = create_study(tmp_path / "e2e.sqlite", real="phantom:8", fake="phantom:6", n_real=6, n_fake=4,
                         size=64, allow_revise=True, confidence=True, title="Real or synthetic? (test)")
    added = study.add_raters("dermatologist", names=["A", "B"]) + study.add_raters("lay", names=["C"])
    raters = {r.name: r for r in added}
    truth = key(study)
    shots = Path(SCREENSHOTS) if SCREENSHOTS else None
    with ServerProcess(study.path) as server:
        links = {name: f"{server.url}/r/{r.token}" for name, r in raters.items()}
        given, logs = asyncio.run(_study_run(links, truth, shots))
    assert sum(len(v) for v in logs.values()) == 3 * N + 1

    rep = write_report(study.path, tmp_path / "report")
    by_name = {r["rater"]: r for r in rep.numbers["raters"]}
    ids = sorted(truth)
    for name, answers in given.items():
        assert sorted(answers) == ids
        expected = Confusion.of([truth[i] for i in ids], [answers[i] == "real" for i in ids])
        r = by_name[name]
        assert r["complete"] and (r["tp"], r["fp"], r["fn"], r["tn"]) == (expected.tp, expected.fp, expected.fn,
                                                                        expected.tn), name
    assert by_name["A"]["accuracy"] == pytest.approx(0.9) and by_name["A"]["revisions"] == 1
    assert by_name["B"]["tpr"] == 1.0 and by_name["B"]["tnr"] == 0.0
    answers = study.answers_frame()
    assert answers.confidence.notna().all() and len(answers) == 3 * N
    for group, members in (("dermatologist", ["A", "B"]), ("all", ["A", "B", "C"])):
        mat = np.array([[given[m][i] == "real" for m in members] for i in ids], dtype=int)
        expected = sm_fleiss_kappa(aggregate_raters(mat)[0])
        got = rep.numbers["fleiss_kappa"][group]["all"]["kappa"]
        assert (got is None and np.isnan(expected)) or got == pytest.approx(expected, abs=1e-12)
    if shots:
        asyncio.run(_report_screenshot(rep.html, shots / "vtt_report.png"))


async def _report_screenshot(html: Path, out: Path) -> None:
    async with async_api.async_playwright() as p:
        browser = await _launch(p)
        page = await browser.new_page(viewport={"width": 1280, "height": 1500})
        await page.goto(html.resolve().as_uri())
        await page.screenshot(path=str(out))
        await browser.close()


def test_time_limit_hides_the_image_in_the_browser(tmp_path):
    study = create_study(tmp_path / "timed.sqlite", real="phantom:4", fake="phantom:4", n_real=2, n_fake=2, size=16,
                         time_limit=1.0)
    (rater,) = study.add_raters("lay", 1)

    async def run(url: str) -> None:
        async with async_api.async_playwright() as p:
            browser = await _launch(p)
            page = await browser.new_page()
            await page.goto(url)
            await _at(page, 0)
            await page.wait_for_selector("#image", state="hidden", timeout=5000)
            assert "Time is up" in await page.inner_text("#timer")
            await page.keyboard.press("f")               # answering after the image is gone works
            await _at(page, 1)
            await browser.close()

    with ServerProcess(study.path) as server:
        asyncio.run(run(f"{server.url}/r/{rater.token}"))
    assert study.answers_frame().called_real.tolist() == [0]
