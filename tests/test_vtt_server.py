"""The real server process: answers survive a crash (SIGKILL) and restart; concurrent raters lose nothing;
no token reaches its log; a chunked oversized body is cut off."""

import socket
from concurrent.futures import ThreadPoolExecutor

import httpx2

from dermsynth.vtt.background import ServerProcess
from dermsynth.vtt.store import Study

from _vtt_study import make_study


def _answer_next(client: httpx2.Client, token: str, value: str) -> dict:
    state = client.get(f"/api/{token}/state").json()
    if not state["started"]:
        assert client.post(f"/api/{token}/start", json={}).status_code == 200
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


def test_no_token_in_the_log_and_links_only_on_request(tmp_path):
    study = make_study(tmp_path / "s.sqlite")
    raters = study.add_raters("lay", 2)
    with ServerProcess(study.path, log_level="info") as server, \
            httpx2.Client(base_url=server.url, timeout=30) as client:
        for rater in raters:
            assert client.get(f"/r/{rater.token}").status_code == 200
            _answer_next(client, rater.token, "real")
        assert client.get(f"/api/{raters[0].token[:-1]}x/state").status_code == 404
        server.stop()
        log = server.log()
    assert "GET /api/<token>/state 200" in log and "POST /api/<token>/answer 200" in log  # it does log, at info
    assert not any(r.token in log or r.token[:12] in log for r in raters)
    assert "/r/" + raters[0].token not in log and "vtt links" in log


def test_a_huge_chunked_body_is_cut_off(tmp_path):
    """200 MB sent chunked, without Content-Length: the server answers 413 long before the body is sent."""
    study = make_study(tmp_path / "s.sqlite")
    (rater,) = study.add_raters("lay", 1)
    with ServerProcess(study.path) as server:
        sent = 0
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(f"POST /api/{rater.token}/answer HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                         "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
            chunk = b"%x\r\n%s\r\n" % (65536, b" " * 65536)
            try:
                while sent < 200 * 2**20:
                    sock.sendall(chunk)
                    sent += 65536
                    sock.setblocking(False)
                    try:
                        if sock.recv(1, socket.MSG_PEEK):
                            break  # the server has answered
                    except BlockingIOError:
                        pass
                    finally:
                        sock.setblocking(True)
            except (BrokenPipeError, ConnectionResetError):
                pass
            sock.settimeout(30)
            reply = sock.recv(4096)
        assert reply.startswith(b"HTTP/1.1 413"), reply[:100]
        assert sent < 20 * 2**20  # stopped within the first 20 MB (socket buffers), not at 200 MB
