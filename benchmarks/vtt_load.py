"""Load on the visual Turing test server: N raters answering as fast as they can, all at once.

The server is the real `dermsynth vtt serve` (uvicorn, one process) on 127.0.0.1 only; the raters are
asyncio HTTP clients in this process, each doing what the rating page does: load the page and the state,
press Start, then per image fetch it and post the answer (as fast as they can: the study is made with
``min_display_ms=0``, since the default 500 ms minimum display time would make every rater wait). Bounded
by the study size and ``--max-seconds``. Afterwards the study file is checked: every accepted answer stored
exactly once, equal to what was sent, nothing else.

    python benchmarks/vtt_load.py                 # 50 raters x 80 images (Baur et al.'s study size)
    python benchmarks/vtt_load.py --quick         # 10 raters x 10 images
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

import httpx2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import record  # noqa: E402

from dermsynth.vtt.background import ServerProcess  # noqa: E402
from dermsynth.vtt.create import create_study  # noqa: E402
from dermsynth.vtt.store import Study  # noqa: E402


async def rater(client: httpx2.AsyncClient, token: str, seed: int, deadline: float, timings: list, sent: dict,
                errors: list) -> None:
    rng = random.Random(seed)

    async def call(kind: str, method: str, url: str, **kw):
        t0 = time.perf_counter()
        r = await client.request(method, url, **kw)
        timings.append((kind, time.perf_counter() - t0))
        if r.status_code != 200:
            errors.append((kind, r.status_code, r.text[:200]))
        return r

    await call("page", "GET", f"/r/{token}")
    await call("state", "GET", f"/api/{token}/state")
    state = (await call("start", "POST", f"/api/{token}/start", json={})).json()
    while state["current"] < state["n"] and time.perf_counter() < deadline:
        image_id = state["items"][state["current"]]["id"]
        await call("image", "GET", f"/api/{token}/image/{image_id}")
        value = rng.choice(("real", "fake"))
        r = await call("answer", "POST", f"/api/{token}/answer", json={"image": image_id, "answer": value})
        if r.status_code != 200:
            return
        sent[(token, image_id)] = value
        state = r.json()


async def load(url: str, tokens: list[str], max_seconds: float):
    timings: list = []
    sent: dict = {}
    errors: list = []
    limits = httpx2.Limits(max_connections=len(tokens), max_keepalive_connections=len(tokens))
    async with httpx2.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(rater(client, t, i, t0 + max_seconds, timings, sent, errors)
                               for i, t in enumerate(tokens)))
        wall = time.perf_counter() - t0
    return timings, sent, errors, wall


def verify(study: Study, sent: dict) -> dict:
    """Stored answers against the ones the server accepted: none lost, none duplicated, none altered."""
    rows = study.conn.execute("SELECT r.token, a.image_id, a.called_real FROM answers a "
                              "JOIN raters r ON r.id = a.rater_id").fetchall()
    stored = {(t, i): "real" if c else "fake" for t, i, c in rows}
    log_rows = study.conn.execute(
        "SELECT COUNT(*), COUNT(DISTINCT rater_id || ' ' || image_id) FROM answer_log").fetchone()
    return {"accepted": len(sent), "stored": len(rows), "distinct_stored": len(stored), "log_rows": log_rows[0],
            "log_distinct": log_rows[1], "lost": len(set(sent) - set(stored)),
            "unexpected": len(set(stored) - set(sent)),
            "altered": sum(stored[k] != v for k, v in sent.items() if k in stored)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raters", type=int, default=50)
    ap.add_argument("--n-real", type=int, default=50)
    ap.add_argument("--n-fake", type=int, default=30)
    ap.add_argument("--size", type=int, default=64, help="Image side (64 px uncompressed PNGs: 12.4 KB each).")
    ap.add_argument("--max-seconds", type=float, default=120.0, help="Stop issuing answers after this long.")
    ap.add_argument("--quick", action="store_true", help="10 raters x 10 images.")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "vtt_load.json"))
    args = ap.parse_args()
    if args.quick:
        args.raters, args.n_real, args.n_fake = 10, 6, 4
    load_before = round(os.getloadavg()[0], 2)  # other jobs on the machine: the figures are pessimistic under load
    with tempfile.TemporaryDirectory() as tmp:
        study = create_study(Path(tmp) / "load.sqlite", real=f"phantom:{args.n_real}", fake=f"phantom:{args.n_fake}",
                             n_real=args.n_real, n_fake=args.n_fake, size=args.size, min_display_ms=0)
        tokens = [r.token for r in study.add_raters("load", args.raters)]
        client_cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        with ServerProcess(study.path) as server:
            timings, sent, errors, wall = asyncio.run(load(server.url, tokens, args.max_seconds))
        client_cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        server_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)  # the server, after it exited (includes start-up)
        check = verify(study, sent)
    cpu = {"client_cpu_s": round(client_cpu1.ru_utime + client_cpu1.ru_stime - client_cpu0.ru_utime
                                 - client_cpu0.ru_stime, 2),
           "server_cpu_s_including_startup": round(server_cpu.ru_utime + server_cpu.ru_stime, 2)}
    lat = np.array([t for _, t in timings]) * 1000
    per_kind = {k: {"requests": int(sum(1 for kk, _ in timings if kk == k)),
                    "p50_ms": round(float(np.percentile([t * 1000 for kk, t in timings if kk == k], 50)), 1),
                    "p95_ms": round(float(np.percentile([t * 1000 for kk, t in timings if kk == k], 95)), 1)}
                for k in ("page", "state", "start", "image", "answer")}
    expected = args.raters * (args.n_real + args.n_fake)
    result = record("vtt_load", torch.device("cpu"), args.out, cpu_cores=os.cpu_count(),
                    load_average_before=load_before, raters=args.raters, images=args.n_real + args.n_fake,
                    size=args.size, max_seconds=args.max_seconds, wall_s=round(wall, 2), requests=len(timings),
                    requests_per_s=round(len(timings) / wall, 1), answers_per_s=round(len(sent) / wall, 1),
                    p50_ms=round(float(np.percentile(lat, 50)), 1), p95_ms=round(float(np.percentile(lat, 95)), 1),
                    p99_ms=round(float(np.percentile(lat, 99)), 1), max_ms=round(float(lat.max()), 1),
                    per_endpoint=per_kind, errors=len(errors), error_examples=errors[:5], expected_answers=expected,
                    complete=len(sent) == expected, check=check, **cpu)
    print(f"{args.raters} raters x {args.n_real + args.n_fake} images: {len(timings)} requests in {wall:.1f} s = "
          f"{result['requests_per_s']} req/s ({result['answers_per_s']} answers/s); latency p50 {result['p50_ms']} ms, "
          f"p95 {result['p95_ms']} ms, p99 {result['p99_ms']} ms, max {result['max_ms']} ms; errors {len(errors)}")
    for k, v in per_kind.items():
        print(f"  {k:<6} {v['requests']:>6} requests  p50 {v['p50_ms']:.1f} ms  p95 {v['p95_ms']:.1f} ms")
    print(f"check: {check}\ncpu: {cpu}")
    ok = (not errors and check["lost"] == check["unexpected"] == check["altered"] == 0
          and check["stored"] == check["distinct_stored"] == check["log_rows"] == check["log_distinct"] == len(sent))
    print("no lost, duplicated or altered answers" if ok else "ANSWERS LOST, DUPLICATED OR ALTERED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
