"""The real server process: answers survive a crash (SIGKILL) and restart; concurrent raters lose nothing."""

from concurrent.futures import ThreadPoolExecutor

import httpx2

from dermsynth.vtt.background import ServerProcess
from dermsynth.vtt.store import Study

from _vtt_study import make_study


def _answer_next(client: httpx2.Client, token: str, value: str) -> dict:
    state = client.get(f"/api/{token}/state").json()
    image_id = state["items"][state["current"]]["id"]
    assert client.get(f"/api/{token}/image/{image_id}").status_code == 200
    r = client.post(f"/api/{token}/answer", json={"image": image_id, "answer": value})
    assert r.status_code == 200, r.text
    return r.json()


def test_answers_survive_a_killed_server_and_concurrent_raters(tmp_path):
    study = make_study(tmp_path / "s.sqlite")
    raters = study.add_raters("lay", 6)
    server = ServerProcess(study.path).start()
    try:
        with httpx2.Client(base_url=server.url, timeout=30) as client:
            for value in ("real", "fake", "real"):
                _answer_next(client, raters[0].token, value)
        server.kill()  # no shutdown, no checkpoint: what was answered must already be on disk
    finally:
        server.stop()
    with ServerProcess(study.path) as server, httpx2.Client(base_url=server.url, timeout=30) as client:
        state = client.get(f"/api/{raters[0].token}/state").json()
        assert state["current"] == 3 and [i["answer"] for i in state["items"][:3]] == ["real", "fake", "real"]
        assert "is_real" not in str(state)

        def run(rater):  # every rater answers all 10 at the same time as the others
            with httpx2.Client(base_url=server.url, timeout=30) as c:
                while (s := _answer_next(c, rater.token, "fake"))["current"] < s["n"]:
                    pass
                return s

        with ThreadPoolExecutor(len(raters) - 1) as pool:
            finals = list(pool.map(run, raters[1:]))
    assert all(s["answered"] == 10 for s in finals)
    answers = Study(study.path).answers_frame()
    assert len(answers) == 3 + 5 * 10 and not answers.duplicated(["rater", "image_id"]).any()
    assert len(Study(study.path).log_frame()) == 3 + 5 * 10
