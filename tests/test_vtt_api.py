"""The rating web app through Starlette's test client: tokens, ids, order, revising, confidence, time limits,
isolation between raters, resuming, and that nothing a rater can reach tells real from fake."""

import io
import json
import re
import time

import pytest
from PIL import Image
from starlette.testclient import TestClient

from dermsynth.vtt import store as store_module
from dermsynth.vtt.report import write_report
from dermsynth.vtt.server import create_app
from dermsynth.vtt.store import Study

from _vtt_study import key, make_study


@pytest.fixture
def plain(tmp_path):
    study = make_study(tmp_path / "plain.sqlite")
    a, b = study.add_raters("dermatologist", 2)
    return study, a, b


def client(study) -> TestClient:
    return TestClient(create_app(study.path), raise_server_exceptions=False)


def answer(c, rater, image_id, value="real", **extra):
    return c.post(f"/api/{rater.token}/answer", json={"image": image_id, "answer": value, **extra})


def current_id(c, rater) -> str:
    state = c.get(f"/api/{rater.token}/state").json()
    return state["items"][state["current"]]["id"]


def test_page_state_and_images_never_reveal_the_key(plain):
    study, a, _ = plain
    c = client(study)
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
        assert set(item) == {"position", "id", "answer", "confidence"}
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
    c = client(study)
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
    c = client(study)
    state = c.get(f"/api/{a.token}/state").json()
    assert len(state["items"]) == 1  # nothing ahead of the current image is listed
    order = [r[0] for r in study.conn.execute(
        "SELECT image_id FROM rater_items WHERE rater_id = ? ORDER BY position", (a.id,))]
    made_up = "A" * 16
    assert c.get(f"/api/{a.token}/image/{made_up}").status_code == 403
    assert answer(c, a, made_up).status_code == 403
    assert answer(c, a, "../../etc/passwd").status_code == 403
    assert c.get(f"/api/{a.token}/image/{order[3]}").status_code == 409   # ahead of the current one
    assert answer(c, a, order[3]).status_code == 409
    assert answer(c, a, order[0]).status_code == 200
    assert answer(c, a, order[0], "fake").status_code == 409               # no revising in this study
    assert c.get(f"/api/{a.token}/image/{order[0]}").status_code == 409
    assert study.log_frame().shape[0] == 1 and study.answers_frame().called_real.tolist() == [1]


def test_bad_bodies(plain):
    study, a, _ = plain
    c = client(study)
    image_id = current_id(c, a)
    url = f"/api/{a.token}/answer"
    assert c.post(url, content=b"not json", headers={"content-type": "application/json"}).status_code == 400
    assert c.post(url, json=["real"]).status_code == 400
    assert c.post(url, json={"image": image_id, "answer": "maybe"}).status_code == 422
    assert c.post(url, json={"image": image_id, "answer": "real", "confidence": 3}).status_code == 422
    assert c.post(url, json={"image": image_id, "answer": "real", "elapsed_ms": -5}).status_code == 422
    assert c.post(url, json={"image": [image_id], "answer": "real"}).status_code == 403
    assert c.post(url, content=json.dumps({"image": image_id, "answer": "real", "pad": "x" * 5000})).status_code == 413
    assert study.log_frame().empty


def test_raters_are_isolated_and_share_one_order(plain):
    study, a, b = plain
    c = client(study)
    first = current_id(c, a)
    assert current_id(c, b) == first  # the same order for everyone by default
    answer(c, a, first, "real")
    sb = c.get(f"/api/{b.token}/state").json()
    assert sb["answered"] == 0 and sb["items"][0]["answer"] is None and sb["rater"] == b.name
    assert answer(c, b, first, "fake").status_code == 200  # a's answer does not block or show for b
    ans = study.answers_frame().set_index("rater").called_real.to_dict()
    assert ans == {a.name: 1, b.name: 0}


def test_per_rater_orders_differ(tmp_path):
    study = make_study(tmp_path / "s.sqlite", per_rater_order=True)
    raters = study.add_raters("lay", 3)
    orders = [tuple(r[0] for r in study.conn.execute(
        "SELECT image_id FROM rater_items WHERE rater_id = ? ORDER BY position", (r.id,))) for r in raters]
    assert len(set(orders)) == 3 and all(sorted(o) == sorted(orders[0]) for o in orders)


def test_revise_confidence_and_resume_after_restart(tmp_path):
    study = make_study(tmp_path / "s.sqlite", allow_revise=True, confidence=True)
    (a,) = study.add_raters("ML expert", 1)
    c = client(study)
    ids = []
    for value in ("real", "fake", "real"):
        ids.append(current_id(c, a))
        assert answer(c, a, ids[-1], value).status_code == 422  # confidence is required
        assert answer(c, a, ids[-1], value, confidence=0).status_code == 422
        assert answer(c, a, ids[-1], value, confidence=4).status_code == 200
    r = answer(c, a, ids[0], "fake", confidence=2)           # go back and revise
    assert r.status_code == 200 and r.json()["items"][0] == {"position": 0, "id": ids[0], "answer": "fake",
                                                           "confidence": 2}
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
    c = client(study)
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
    c = client(study)
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
    lists = {r.name: [row[0] for row in study.conn.execute(
        "SELECT image_id FROM rater_items WHERE rater_id = ? ORDER BY position", (r.id,))] for r in raters}
    for ids in lists.values():
        assert len(ids) == len(set(ids)) == 5 and sum(truth[i] for i in ids) == 3  # stratified: 3 real, 2 fake
    assert len({tuple(sorted(v)) for v in lists.values()}) > 1  # 4 raters, C(6,3)*C(4,2) = 120 possible subsets
    c = client(study)
    a = raters[0]
    outside = next(i for i in truth if i not in lists[a.name])  # a real image id of the study, not in a's list
    assert c.get(f"/api/{a.token}/image/{outside}").status_code == 403
    assert answer(c, a, outside).status_code == 403
    for r in raters:
        for image_id in lists[r.name]:
            assert answer(c, r, image_id, "real" if truth[image_id] else "fake").status_code == 200
    state = c.get(f"/api/{a.token}/state").json()
    assert state["n"] == state["answered"] == 5
    rep = write_report(study, tmp_path / "rep")
    assert all(r["n"] == 5 and r["complete"] and r["accuracy"] == 1.0 for r in rep.numbers["raters"])
    per_image = {row["image_id"]: row["answers"] for row in rep.numbers["images"]}
    assert sum(per_image.values()) == 20
    assert rep.numbers["study"]["images_per_rater"] == 5
    cell = rep.numbers["fleiss_kappa"]["lay"]["all"]  # kappa only over the images every rater saw
    assert cell["images"] == len(set.intersection(*map(set, lists.values())))
