"""End to end in a real browser: `dermsynth vtt serve` in a child process on 127.0.0.1, headless Debian
Chromium driven by Playwright. Three raters answer a 10-image study at the same time (keyboard, mouse,
going back to revise, reloading mid-way and resuming); the report's numbers must equal the answers given.
Then: a double click and a double key press give one answer; the page fits a 390x844 phone and a 1366x768
laptop with every control visible and nothing to scroll; the landing page with consent; a calibration image
with its feedback; the 1:1 view; a server killed and restarted under an open page.

Skipped, with the reason, only where no Chromium is installed (`make test` installs Debian's `chromium`
when it can; DERMSYNTH_CHROMIUM=PATH names another Chromium). With DERMSYNTH_VTT_SCREENSHOTS=DIR it also
saves DIR/vtt_rating.png and DIR/vtt_report.png (the pictures in docs/ were made so) and the page at both
viewports (vtt_390x844_*.png, vtt_1366x768_*.png).
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
    """Wait until ``position`` is on screen with its image shown and answers taken (the minimum display time
    over); return the image's opaque id."""
    await page.wait_for_function(
        "(i) => { const img = document.getElementById('image'); return document.getElementById('vtt')"
        ".dataset.position === String(i) && !img.hidden && img.dataset.image "
        "&& !document.getElementById('real').disabled; }", arg=position, timeout=15000)
    return await page.get_attribute("#image", "data-image")


async def _start(page) -> None:
    """Past the landing page (ticking the consent where there is one)."""
    await page.wait_for_selector("#landing", state="visible")
    if await page.is_visible("#consent-check"):
        await page.check("#consent-check")
    await page.click("#start")


def _drive(study, rater, scenario, start: bool = True, **context) -> None:
    """Serve the study, open the rater's link in Chromium (``context``: viewport etc.), pass the landing page
    unless ``start`` is False, and run ``await scenario(page, server)``."""

    async def run(server) -> None:
        async with async_api.async_playwright() as p:
            browser = await _launch(p)
            page = await (await browser.new_context(**context)).new_page()
            await page.goto(f"{server.url}/r/{rater.token}")
            if start:
                await _start(page)
            await scenario(page, server)
            await browser.close()

    with ServerProcess(study.path) as server:
        asyncio.run(run(server))


async def _rate(browser, link: str, style: str, choose, truth: dict, given: dict, log: list,
                screenshot: Path | None = None):
    """One rater: ``choose(position, is_real) -> "real"/"fake"``; records final answers in ``given``."""
    context = await browser.new_context(viewport={"width": 900, "height": 1000})
    page = await context.new_page()
    await page.goto(link)
    await _start(page)
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
                         size=64, allow_revise=True, confidence=True, title="Real or synthetic? (test)",
                         min_display_ms=200)
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
        got = rep.numbers["agreement"][group]["all"]["fleiss_kappa"]
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
                         time_limit=1.0, min_display_ms=0)
    (rater,) = study.add_raters("lay", 1)

    async def scenario(page, server) -> None:
        await _at(page, 0)
        await page.wait_for_selector("#image", state="hidden", timeout=5000)
        assert "Time is up" in await page.inner_text("#timer")
        await page.keyboard.press("f")               # answering after the image is gone works
        await _at(page, 1)

    _drive(study, rater, scenario)
    assert study.answers_frame().called_real.tolist() == [0]


def _answers(study) -> int:
    return len(study.log_frame())


def test_double_click_and_double_key_press_give_one_answer(tmp_path):
    study = create_study(tmp_path / "dbl.sqlite", real="phantom:8", fake="phantom:8", n_real=4, n_fake=4, size=32)
    assert study.settings.min_display_ms == 500  # the default
    (rater,) = study.add_raters("lay", 1)

    async def answered(position: int, page, count: int) -> None:
        await _at(page, position)
        await page.wait_for_timeout(700)             # time for a second answer to arrive, if one were sent
        assert _answers(study) == count and await page.get_attribute("#vtt", "data-position") == str(position)

    async def scenario(page, server) -> None:
        await _at(page, 0)
        await page.dblclick("#real")                 # a double click: one answer
        await answered(1, page, 1)
        await page.keyboard.press("Enter")           # Enter / Space after a click: focus has left the button
        await page.keyboard.press(" ")
        await answered(1, page, 1)
        await page.keyboard.press("f")               # a double key press: one answer
        await page.keyboard.press("f")
        await answered(2, page, 2)
        for _ in range(6):                           # a held key (auto-repeat): one answer
            await page.keyboard.down("r")
        await page.keyboard.up("r")
        await answered(3, page, 3)

    _drive(study, rater, scenario)
    log = study.log_frame()
    assert len(log) == 3 and log.image_id.is_unique
    assert (log.server_ms >= 500).all()  # every answer after the minimum display time, measured by the server


VISIBLE = """(ids) => ids.map((sel) => { const el = document.querySelector(sel); const r = el.getBoundingClientRect();
  return [sel, !el.hidden && r.width > 0 && r.height > 0 && r.left >= 0 && r.top >= 0
          && r.right <= window.innerWidth && r.bottom <= window.innerHeight]; })"""
NO_SCROLL = """() => [document.documentElement.scrollWidth <= window.innerWidth,
                    document.documentElement.scrollHeight <= window.innerHeight]"""
IMAGE_WIDTH = "() => document.getElementById('image').getBoundingClientRect().width"


@pytest.mark.parametrize("viewport", [(390, 844), (1366, 768)], ids=["phone-390x844", "laptop-1366x768"])
def test_page_fits_the_screen_landing_calibration_and_zoom(tmp_path, viewport):
    width, height = viewport
    study = create_study(tmp_path / "fit.sqlite", real="phantom:10", fake="phantom:10", n_real=3, n_fake=3,
                         size=256, calibration=2, confidence=True, allow_revise=True, min_display_ms=300,
                         instructions="## How to rate\n\nLook at each image **closely**.\n\n- R: real\n- F: fake",
                         consent="I agree that my answers are *recorded* and published anonymously.")
    (rater,) = study.add_raters("dermatologist", names=["Dr $x$ <b>"])
    truth = dict(study.conn.execute("SELECT id, is_real FROM images"))
    shots = Path(SCREENSHOTS) if SCREENSHOTS else None
    name = f"{width}x{height}"

    async def fits(page, controls: list[str], shot: str | None = None) -> None:
        assert await page.evaluate(NO_SCROLL) == [True, True], f"{name}: the page scrolls"
        visible = dict(await page.evaluate(VISIBLE, controls))
        assert all(visible.values()), f"{name}: not fully on screen: {[k for k, v in visible.items() if not v]}"
        if shots and shot:
            await page.screenshot(path=str(shots / f"vtt_{name}_{shot}.png"))

    async def scenario(page, server) -> None:
        # landing page: who, the instructions (Markdown, as text), consent before Start
        await page.wait_for_selector("#landing", state="visible")
        assert await page.inner_text("#who-name") == "Dr $x$ <b>"
        assert await page.inner_text("#instructions h2") == "How to rate"
        assert await page.inner_text("#instructions strong") == "closely"
        assert "recorded" in await page.inner_text("#consent")
        assert await page.is_disabled("#start")
        await fits(page, ["#start", "#consent-check"], "landing")
        await _start(page)
        # a calibration image: banner, all controls on screen, feedback with the key, not counted
        image_id = await _at(page, 0)
        assert "Training image 1 of 2" in await page.inner_text("#calib-banner")
        await fits(page, ["#image", "#real", "#fake", "#back", "#next", "#pause", "#one-to-one",
                          "#confidence label:first-of-type", "#confidence label:last-of-type", "#counter"],
                   "calibration")
        natural = await page.evaluate("() => document.getElementById('image').naturalWidth")
        assert natural == 256 and await page.evaluate(IMAGE_WIDTH) <= 256  # never enlarged; reduced to fit
        await page.click("#confidence label:nth-of-type(4)")
        await page.click("#real")
        await page.wait_for_selector("#feedback", state="visible")
        expected = "real" if truth[image_id] else "fake"
        assert f"this image is {expected}" in await page.inner_text("#feedback-text")
        assert ("Correct" in await page.inner_text("#feedback-text")) == bool(truth[image_id])
        assert await page.inner_text("#counter") == "0 / 6 answered"
        await fits(page, ["#continue", "#image"])
        await page.click("#continue")
        await _at(page, 1)
        await page.keyboard.press("3")
        await page.keyboard.press("f")
        await page.click("#continue")
        await _at(page, 2)
        assert await page.is_hidden("#calib-banner")
        # the 1:1 view: the stored pixels, zoomed, panned by dragging
        await page.keyboard.press("z")
        assert await page.evaluate(IMAGE_WIDTH) == 256
        await page.keyboard.press("+")
        await page.keyboard.press("+")
        assert await page.evaluate(IMAGE_WIDTH) == 1024 and await page.inner_text("#scale") == "400%"
        b = await (await page.query_selector("#stage")).bounding_box()
        await page.mouse.move(b["x"] + b["width"] / 2, b["y"] + b["height"] / 2)
        await page.mouse.down()
        await page.mouse.move(b["x"] + b["width"] / 2 - 40, b["y"] + b["height"] / 2 - 40, steps=4)
        await page.mouse.up()
        assert await page.evaluate("() => document.getElementById('stage').scrollLeft") > 0
        await fits(page, ["#real", "#fake", "#one-to-one", "#zoom-in", "#zoom-out"], "zoom")
        await page.keyboard.press("z")
        # pause hides the image; resume shows it again
        await page.click("#pause")
        await page.wait_for_selector("#paused", state="visible")
        assert await page.is_hidden("#image")
        await page.click("#resume")
        await _at(page, 2)
        await page.keyboard.press("5")
        await page.click("#real")
        await _at(page, 3)

    _drive(study, rater, scenario, start=False, viewport={"width": width, "height": height},
           has_touch=width < 500, is_mobile=width < 500)
    log = study.log_frame()
    assert log.calibration.tolist() == [1, 1, 0] and len(study.answers_frame()) == 1


def test_a_server_restart_seen_from_the_browser(tmp_path):
    study = create_study(tmp_path / "restart.sqlite", real="phantom:8", fake="phantom:8", n_real=3, n_fake=3,
                         size=32, min_display_ms=100)
    (rater,) = study.add_raters("lay", 1)

    async def scenario(page, server) -> None:
        await _at(page, 0)
        await page.keyboard.press("r")
        await _at(page, 1)
        server.kill()                                  # crash: the page is left open
        await page.keyboard.press("f")                 # this answer cannot arrive
        await page.wait_for_function("() => document.getElementById('vtt').dataset.offline === '1'", timeout=10000)
        assert "lost" in await page.inner_text("#message")
        with ServerProcess(study.path, port=server.port):  # back, at the same address
            await page.wait_for_function("() => !document.getElementById('vtt').dataset.offline", timeout=20000)
            await _at(page, 1)                         # the unsaved answer's image again, nothing lost
            assert (await page.inner_text("#counter")).startswith("1 / 6")
            for i in range(1, 6):
                await _at(page, i)
                await page.keyboard.press("f")
            await page.wait_for_selector("#done", state="visible")

    _drive(study, rater, scenario)
    answers = study.answers_frame()
    assert len(answers) == 6 and answers.called_real.tolist() == [1, 0, 0, 0, 0, 0]
