"""The rating web app through Starlette's test client: tokens, ids, order, revising, confidence, time limits,
isolation between raters, resuming, landing page and start, calibration feedback, pauses, minimum display
time, never-served images, malformed and oversized bodies, cross-site posts, and that nothing a rater can
reach tells real from fake (byte sizes and headers included)."""

import asyncio
import io
import json
import os
import random
import re
import stat
import time

import numpy as np
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from starlette.testclient import TestClient

from dermsynth.vtt import server as server_module
from dermsynth.vtt import store as store_module
from dermsynth.vtt.create import create_study
from dermsynth.vtt.report import write_report
from dermsynth.vtt.server import create_app
from dermsynth.vtt.store import Study, rater_seed

from _vtt_study import key, make_study
from _vtt_study import order as rater_order


@pytest.fixture
def plain(tmp_path):
    study = make_study(tmp_path / "plain.sqlite", shared_order=True)
    a, b = study.add_raters("dermatologist", 2)
    return study, a, b


def client(study, started=()) -> TestClient:
    c = TestClient(create_app(study.path), raise_server_exceptions=False)
    for rater in started:
        assert c.post(f"/api/{rater.token}/start", json={}).status_code == 200
    return c


def answer(c, rater, image_id, value="real", **extra):
    """Post an answer as it is (the image may or may not have been served)."""
    return c.post(f"/api/{rater.token}/answer", json={"image": image_id, "answer": value, **extra})


def seen(c, rater, image_id, value="real", **extra):
    """What the page does: fetch the image, then answer it."""
    assert c.get(f"/api/{rater.token}/image/{image_id}").status_code == 200
    return answer(c, rater, image_id, value, **extra)


def current_id(c, rater) -> str:
    state = c.get(f"/api/{rater.token}/state").json()
    return state["items"][state["current"]]["id"]


def test_page_state_and_images_never_reveal_the_key(plain):
    study, a, _ = plain
    c = client(study, [a])
    page = c.get(f"/r/{a.token}")
    assert page.status_code == 200 and 'data-token="' + a.token + '"' in page.text
    assert page.headers["cache-control"] == "no-store" and page.headers["referrer-policy"] == "no-referrer"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    origins = set(study.images_frame().origin_id)
    seen = [page.text, c.get("/static/vtt.js").text]
    for _ in range(study.n_images()):
        state = c.get(f"/api/{a.token}/state")
        seen.append(state.text)
        item = state.json()["items"][state.json()["current"]]
        assert set(item) == {"position", "id", "answer", "confidence", "calibration"}
        assert re.fullmatch(r"[A-Za-z0-9_-]{16}", item["id"])
        img = c.get(f"/api/{a.token}/image/{item['id']}")
        assert img.status_code == 200 and img.headers["content-type"] == "image/png"
        assert not any(chunk in img.content for chunk in (b"tEXt", b"iTXt", b"zTXt", b"eXIf"))  # no metadata
        assert Image.open(io.BytesIO(img.content)).size == (16, 16)
        seen.append(str(dict(img.headers)))
        r = answer(c, a, item["id"], "fake")
        assert r.status_code == 200
        seen.append(r.text)
    text = "\n".join(seen)
    assert "is_real" not in text and "origin" not in text and '"real": ' not in text
    assert not any(o in text for o in origins)  # no source ids (phantom_000003, file names) anywhere
    final = c.get(f"/api/{a.token}/state").json()
    assert final["answered"] == final["n"] == final["current"] == 10


def test_wrong_or_missing_tokens_get_404_not_tracebacks(plain):
    study, a, _ = plain
    c = client(study, [a])
    image_id = current_id(c, a)
    bad = "x" * 24
    for url in (f"/r/{bad}", "/r/", f"/api/{bad}/state", f"/api/{bad}/image/{image_id}", "/api//state",
                f"/r/{a.token[:-1]}", "/", "/static/", "/static/../store.py", "/static/rate.html",
                "/api/%00/state", f"/r/{'a' * 5000}"):
        r = c.get(url)
        assert r.status_code == 404, url
        assert "Traceback" not in r.text
    r = c.post(f"/api/{bad}/answer", json={"image": image_id, "answer": "real"})
    assert r.status_code == 404 and r.json() == {"error": "unknown invitation link"}
    assert c.post(f"/api/{a.token}/state").status_code == 405


def test_images_and_answers_outside_the_list_or_order_are_refused(plain):
    study, a, _ = plain
    c = client(study, [a])
    state = c.get(f"/api/{a.token}/state").json()
    assert len(state["items"]) == 1  # nothing ahead of the current image is listed
    order = rater_order(study, a)
    made_up = "A" * 16
    assert c.get(f"/api/{a.token}/image/{made_up}").status_code == 403
    assert answer(c, a, made_up).status_code == 403
    assert answer(c, a, "../../etc/passwd").status_code == 403
    assert c.get(f"/api/{a.token}/image/{order[3]}").status_code == 409   # ahead of the current one
    assert answer(c, a, order[3]).status_code == 409
    assert seen(c, a, order[0]).status_code == 200
    assert answer(c, a, order[0], "fake").status_code == 409               # no revising in this study
    assert c.get(f"/api/{a.token}/image/{order[0]}").status_code == 409
    assert study.log_frame().shape[0] == 1 and study.answers_frame().called_real.tolist() == [1]


def test_bad_bodies(plain):
    study, a, _ = plain
    c = client(study, [a])
    image_id = current_id(c, a)
    assert c.get(f"/api/{a.token}/image/{image_id}").status_code == 200
    url = f"/api/{a.token}/answer"
    assert c.post(url, content=b"not json", headers={"content-type": "application/json"}).status_code == 400
    assert c.post(url, json=["real"]).status_code == 400
    assert c.post(url, json={"image": image_id, "answer": "maybe"}).status_code == 422
    assert c.post(url, json={"image": image_id, "answer": "real", "confidence": 3}).status_code == 422
    assert c.post(url, json={"image": image_id, "answer": "real", "elapsed_ms": -5}).status_code == 422
    assert c.post(url, json={"image": [image_id], "answer": "real"}).status_code == 403
    assert c.post(url, content=json.dumps({"image": image_id, "answer": "real", "pad": "x" * 5000}),
                  headers={"content-type": "application/json"}).status_code == 413
    # NaN, Infinity, overflowing numbers and deep nesting: a 4xx with a message, never a 500
    for body in ('{"image": "%s", "answer": "real", "elapsed_ms": NaN}' % image_id,
                 '{"image": "%s", "answer": "real", "elapsed_ms": Infinity}' % image_id,
                 '{"image": "%s", "answer": "real", "elapsed_ms": -Infinity}' % image_id,
                 "[" * 1000 + "]" * 1000, '{"a":' * 1000 + "1" + "}" * 1000, "[" * 100000):
        r = c.post(url, content=body, headers={"content-type": "application/json"})
        assert 400 <= r.status_code < 500 and r.json()["error"], body[:40]
    for value in ("1e400", "-1e400", str(2**31), str(24 * 3600 * 1000 + 1)):  # 1e400 parses as inf
        r = c.post(url, content='{"image": "%s", "answer": "real", "elapsed_ms": %s}' % (image_id, value),
                   headers={"content-type": "application/json"})
        assert r.status_code == 422 and "elapsed_ms" in r.json()["error"]
    assert study.log_frame().empty


def test_raters_are_isolated_and_share_one_order(plain):
    study, a, b = plain
    c = client(study, [a, b])
    first = current_id(c, a)
    assert current_id(c, b) == first  # --shared-order: the same order for everyone
    seen(c, a, first, "real")
    sb = c.get(f"/api/{b.token}/state").json()
    assert sb["answered"] == 0 and sb["items"][0]["answer"] is None and sb["rater"] == b.name
    assert answer(c, b, first, "fake").status_code == 409  # served to a, never to b
    assert seen(c, b, first, "fake").status_code == 200    # a's answer does not block or show for b
    ans = study.answers_frame().set_index("rater").called_real.to_dict()
    assert ans == {a.name: 1, b.name: 0}


def test_per_rater_orders_are_the_default_seeded_and_recorded(tmp_path):
    study = make_study(tmp_path / "s.sqlite", order_seed=11)
    raters = study.add_raters("lay", 3)
    orders = [tuple(rater_order(study, r)) for r in raters]
    assert len(set(orders)) == 3 and all(sorted(o) == sorted(orders[0]) for o in orders)
    for r, o in zip(raters, orders, strict=True):  # the recorded seed rebuilds each order from the sorted ids
        seed = study.conn.execute("SELECT order_seed FROM raters WHERE id = ?", (r.id,)).fetchone()[0]
        assert seed == rater_seed(11, r.id)
        rebuilt = sorted(o)
        random.Random(seed).shuffle(rebuilt)
        assert tuple(rebuilt) == o
    shared = make_study(tmp_path / "t.sqlite", shared_order=True)
    assert len({tuple(rater_order(shared, r)) for r in shared.add_raters("lay", 3)}) == 1


def test_revise_confidence_and_resume_after_restart(tmp_path):
    study = make_study(tmp_path / "s.sqlite", allow_revise=True, confidence=True)
    (a,) = study.add_raters("ML expert", 1)
    c = client(study, [a])
    ids = []
    for value in ("real", "fake", "real"):
        ids.append(current_id(c, a))
        assert seen(c, a, ids[-1], value).status_code == 422  # confidence is required
        assert answer(c, a, ids[-1], value, confidence=0).status_code == 422
        assert answer(c, a, ids[-1], value, confidence=4).status_code == 200
    assert answer(c, a, ids[0], "fake", confidence=2).status_code == 409  # a revision needs the image again
    r = seen(c, a, ids[0], "fake", confidence=2)           # go back and revise
    assert r.status_code == 200 and r.json()["items"][0] == {"position": 0, "id": ids[0], "answer": "fake",
                                                           "confidence": 2, "calibration": False}
    assert c.get(f"/api/{a.token}/image/{ids[0]}").status_code == 200  # answered images stay viewable
    # a new server process on the same file (restart) resumes where the rater stopped
    c2 = TestClient(create_app(Study(study.path)))
    state = c2.get(f"/api/{a.token}/state").json()
    assert state["current"] == 3 and [i["answer"] for i in state["items"][:3]] == ["fake", "fake", "real"]
    final = Study(study.path).answers_frame()
    assert final.revisions.tolist() == [1, 0, 0] and final.confidence.tolist() == [2, 4, 4]
    assert len(Study(study.path).log_frame()) == 4


def test_time_limit_closes_the_viewing_window(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "TIME_LIMIT_GRACE_S", 0.0)
    study = make_study(tmp_path / "s.sqlite", time_limit=0.3)
    (a,) = study.add_raters("lay", 1)
    c = client(study, [a])
    assert c.get(f"/r/{a.token}").status_code == 200
    state = c.get(f"/api/{a.token}/state").json()
    assert state["time_limit"] == 0.3
    image_id = state["items"][0]["id"]
    assert c.get(f"/api/{a.token}/image/{image_id}").status_code == 200
    time.sleep(0.4)
    r = c.get(f"/api/{a.token}/image/{image_id}")
    assert r.status_code == 410 and "viewing time" in r.json()["error"]
    assert answer(c, a, image_id, "real").status_code == 200  # answering after the image is gone is fine


def test_timed_images_are_not_shown_again_when_revising(tmp_path):
    study = make_study(tmp_path / "s.sqlite", time_limit=30, allow_revise=True)
    (a,) = study.add_raters("lay", 1)
    c = client(study, [a])
    image_id = current_id(c, a)
    assert c.get(f"/api/{a.token}/image/{image_id}").status_code == 200
    assert c.get(f"/api/{a.token}/image/{image_id}").status_code == 200  # a reload within the window
    assert answer(c, a, image_id, "real").status_code == 200
    assert c.get(f"/api/{a.token}/image/{image_id}").status_code == 410  # inside the window, but answered
    assert answer(c, a, image_id, "fake").status_code == 200              # revising from memory is allowed


def test_ids_are_random_and_not_in_storage_order(tmp_path):
    s1 = make_study(tmp_path / "a.sqlite")
    s2 = make_study(tmp_path / "b.sqlite")
    k1, k2 = key(s1), key(s2)
    assert not set(k1) & set(k2)  # fresh ids for the same images
    assert sorted(k1.values()) == sorted(k2.values()) and sum(k1.values()) == 6
    # the shared order is a random permutation, independent of the ids' order and of the key
    order = [r[0] for r in s1.conn.execute("SELECT image_id FROM shared_order ORDER BY position")]
    assert sorted(order) == sorted(k1)


def test_image_subsets_per_rater_refuse_images_of_other_lists(tmp_path):
    study = make_study(tmp_path / "s.sqlite", images_per_rater=5)  # 6 real + 4 fake in the study
    raters = study.add_raters("lay", 4)
    truth = key(study)
    lists = {r.name: rater_order(study, r) for r in raters}
    for ids in lists.values():
        assert len(ids) == len(set(ids)) == 5 and sum(truth[i] for i in ids) == 3  # stratified: 3 real, 2 fake
    assert len({tuple(sorted(v)) for v in lists.values()}) > 1  # 4 raters, C(6,3)*C(4,2) = 120 possible subsets
    c = client(study, raters)
    a = raters[0]
    outside = next(i for i in truth if i not in lists[a.name])  # a real image id of the study, not in a's list
    assert c.get(f"/api/{a.token}/image/{outside}").status_code == 403
    assert answer(c, a, outside).status_code == 403
    for r in raters:
        for image_id in lists[r.name]:
            assert seen(c, r, image_id, "real" if truth[image_id] else "fake").status_code == 200
    state = c.get(f"/api/{a.token}/state").json()
    assert state["n"] == state["answered"] == 5
    rep = write_report(study, tmp_path / "rep")
    assert all(r["n"] == 5 and r["complete"] and r["accuracy"] == 1.0 for r in rep.numbers["raters"])
    per_image = {row["image_id"]: row["answers"] for row in rep.numbers["images"]}
    assert sum(per_image.values()) == 20
    assert rep.numbers["study"]["images_per_rater"] == 5
    cell = rep.numbers["agreement"]["lay"]["all"]  # kappa only over the images every rater saw
    assert cell["fleiss_images"] == len(set.intersection(*map(set, lists.values())))
    assert cell["alpha_images"] == sum(1 for i in truth if sum(i in v for v in lists.values()) >= 2)


def test_landing_start_and_never_served_images(plain):
    study, a, _ = plain
    c = client(study)
    state = c.get(f"/api/{a.token}/state").json()
    assert state["started"] is False and state["group"] == "dermatologist" and state["instructions"]
    image_id = state["items"][0]["id"]
    r = c.get(f"/api/{a.token}/image/{image_id}")
    assert r.status_code == 409 and "Start" in r.json()["error"]      # nothing is shown before Start
    assert answer(c, a, image_id).status_code == 409
    assert c.post(f"/api/{a.token}/start", json={}).json()["started"] is True
    r = answer(c, a, image_id)
    assert r.status_code == 409 and "never shown" in r.json()["error"]  # not served to this rater
    started = study.conn.execute("SELECT started_at FROM raters WHERE id = ?", (a.id,)).fetchone()[0]
    c.post(f"/api/{a.token}/start", json={})
    assert study.conn.execute("SELECT started_at FROM raters WHERE id = ?", (a.id,)).fetchone()[0] == started
    assert seen(c, a, image_id).status_code == 200
    assert study.log_frame().shape[0] == 1


def test_minimum_display_time_and_server_reading_time(tmp_path):
    study = make_study(tmp_path / "s.sqlite", min_display_ms=300, allow_revise=True)
    (a,) = study.add_raters("lay", 1)
    c = client(study, [a])
    image_id = current_id(c, a)
    t0 = time.time()
    assert c.get(f"/api/{a.token}/image/{image_id}").status_code == 200
    r = answer(c, a, image_id, elapsed_ms=5)
    assert r.status_code == 409 and "too soon" in r.json()["error"]  # a double click's second answer
    time.sleep(0.35)
    assert answer(c, a, image_id, elapsed_ms=5).status_code == 200
    row = study.answers_frame().iloc[0]
    assert 350 <= row.server_ms <= (time.time() - t0) * 1000 + 1 and row.elapsed_ms == 5  # the client's is kept
    # a pause stops the server's clock; the image must be served again before an answer counts
    second = current_id(c, a)
    assert c.get(f"/api/{a.token}/image/{second}").status_code == 200
    time.sleep(0.35)
    assert c.post(f"/api/{a.token}/pause", json={"image": second}).status_code == 200
    time.sleep(0.5)
    assert "paused" in answer(c, a, second).json()["error"]
    assert c.get(f"/api/{a.token}/image/{second}").status_code == 200
    time.sleep(0.35)
    assert answer(c, a, second).status_code == 200
    ms = study.answers_frame().set_index("image_id").server_ms[second]
    assert 700 <= ms < 700 + 450  # both viewings, not the 0.5 s paused


def test_calibration_images_give_feedback_and_never_count(tmp_path):
    study = make_study(tmp_path / "s.sqlite", calibration=3)
    (a,) = study.add_raters("lay", 1)
    c = client(study, [a])
    state = c.get(f"/api/{a.token}/state").json()
    assert state["n"] == 13 and state["n_calibration"] == 3 and state["items"][0]["calibration"] is True
    assert "truth" not in state["items"][0]  # the key only after the answer
    truth = dict(study.conn.execute("SELECT id, is_real FROM images"))
    calibration = {i for (i,) in study.conn.execute("SELECT id FROM images WHERE calibration = 1")}
    assert len(calibration) == 3 and not calibration & set(key(study))  # disjoint from the scored images
    for k in range(3):
        image_id = current_id(c, a)
        assert image_id in calibration
        r = seen(c, a, image_id, "real").json()
        fb = r["feedback"]
        assert fb["truth"] == ("real" if truth[image_id] else "fake") and fb["correct"] == bool(truth[image_id])
        assert r["items"][k]["truth"] == fb["truth"] and r["scored_answered"] == 0
    for _ in range(10):
        r = seen(c, a, current_id(c, a), "fake").json()
        assert "feedback" not in r and all("truth" not in i for i in r["items"] if not i["calibration"])
    assert r["scored_answered"] == 10 and study.progress()[a.id] == (10, 10)
    assert len(study.answers_frame()) == 10 and set(study.answers_frame().image_id) == set(key(study))


def test_every_served_image_has_the_same_bytes_size_and_headers(tmp_path):
    """A classifier on (byte size, dimensions, headers) cannot beat chance: every feature is the same for
    every image. The same images compressed as ordinary PNGs would give the key away (checked, so that this
    test can fail)."""
    rng = np.random.default_rng(0)
    smooth = np.repeat(np.repeat(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), 8, 0), 8, 1)
    real_dir, fake_dir = tmp_path / "real", tmp_path / "fake"
    for folder, noisy in ((real_dir, True), (fake_dir, False)):
        folder.mkdir()
        for i in range(12):  # real: noisy photographs; fake: smooth, very compressible images
            img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) if noisy else np.roll(smooth, i, 0)
            Image.fromarray(img).save(folder / f"{folder.name}_{i}.png")
    study = create_study(tmp_path / "s.sqlite", real=str(real_dir), fake=str(fake_dir), n_real=10, n_fake=10,
                         min_display_ms=0)
    (a,) = study.add_raters("lay", 1)
    c = client(study, [a])
    truth = key(study)
    features, labels, compressed = [], [], []
    for _ in range(20):
        image_id = current_id(c, a)
        r = c.get(f"/api/{a.token}/image/{image_id}")
        headers = tuple(sorted((k, v) for k, v in r.headers.items() if k != "date"))
        w, h = Image.open(io.BytesIO(r.content)).size
        features.append((len(r.content), w, h, hash(headers)))
        labels.append(truth[image_id])
        buf = io.BytesIO()
        Image.open(io.BytesIO(r.content)).save(buf, format="PNG", optimize=True)
        compressed.append(len(buf.getvalue()))
        answer(c, a, image_id)
    x = np.array(features, dtype=float)
    assert (x == x[0]).all() and w == h == 64  # one value per feature: nothing to learn from
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    scores = cross_val_predict(LogisticRegression(), x, labels, cv=cv, method="predict_proba")[:, 1]
    assert roc_auc_score(labels, scores) == 0.5
    leak = cross_val_predict(LogisticRegression(), np.array(compressed, float)[:, None] / 1e4, labels, cv=cv,
                             method="predict_proba")[:, 1]
    assert roc_auc_score(labels, leak) > 0.9  # what a compressed PNG's size would have told


def test_study_file_is_private(tmp_path):
    os.umask(0o022)
    study = make_study(tmp_path / "s.sqlite")
    study.add_raters("lay", 1)
    for path in tmp_path.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name  # the file, its WAL and shared memory


def test_cross_site_and_non_json_posts_are_refused(plain):
    study, a, _ = plain
    c = client(study, [a])
    image_id = current_id(c, a)
    c.get(f"/api/{a.token}/image/{image_id}")
    body = json.dumps({"image": image_id, "answer": "real"})
    url = f"/api/{a.token}/answer"
    r = c.post(url, content=body, headers={"content-type": "text/plain"})
    assert r.status_code == 415
    r = c.post(url, content=body, headers={"content-type": "application/json", "origin": "https://evil.example"})
    assert r.status_code == 403
    r = c.post(url, content=body, headers={"content-type": "application/json", "sec-fetch-site": "cross-site"})
    assert r.status_code == 403
    assert study.log_frame().empty
    r = c.post(url, content=body, headers={"content-type": "application/json", "origin": "http://testserver",
                                           "sec-fetch-site": "same-origin"})
    assert r.status_code == 200


def test_body_limit_is_enforced_while_streaming_and_after_the_token(plain):
    """A chunked body without Content-Length: refused (413) after at most MAX_BODY bytes were read, and an
    unknown token before a single body byte was read."""
    study, a, _ = plain
    app = create_app(study.path)

    async def post(token: str, chunks: int, chunk: bytes = b"x" * 1024) -> tuple[int, int]:
        pulled = 0
        status = None

        async def receive():
            nonlocal pulled
            pulled += 1
            return {"type": "http.request", "body": chunk, "more_body": pulled < chunks}

        async def send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        scope = {"type": "http", "method": "POST", "path": f"/api/{token}/answer", "raw_path": b"",
                 "query_string": b"", "headers": [(b"content-type", b"application/json"), (b"host", b"testserver"),
                                                  (b"transfer-encoding", b"chunked")],
                 "scheme": "http", "server": ("testserver", 80), "client": ("127.0.0.1", 1), "root_path": "",
                 "http_version": "1.1", "asgi": {"version": "3.0"}}
        await app(scope, receive, send)
        return status, pulled

    status, pulled = asyncio.run(post(a.token, chunks=200_000))  # a 200 MB body
    assert status == 413 and pulled <= server_module.MAX_BODY // 1024 + 1
    status, pulled = asyncio.run(post("x" * 24, chunks=200_000))
    assert status == 404 and pulled == 0
