"""Training beside a busy CPU (issue 14, item 7): wall-clock of one `dermsynth train` run, quiet and beside one
busy process (``python -c 'while True: pass'``), for one or more code versions run back to back.

    python benchmarks/busy_cpu.py [--steps 300] [--variant NAME=SRC_DIR[,ENV=VALUE...]] ...

Each ``--variant`` runs a checkout's ``src`` folder through PYTHONPATH (e.g. ``git archive HEAD src | tar -x -C
/tmp/before``; ``.`` = the installed dermsynth) with optional environment settings. The variants are
interleaved (all quiet, then all beside the busy process), so that they see the same load; the 1-minute load
average before each run is printed too (on a shared machine, others' work is part of "quiet").
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed_train(steps: int, env: dict[str, str]) -> float:
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "dermsynth.cli", "train", "--data", "phantom:2048", "--size", "32",
               "--steps", str(steps), "--out", str(Path(out) / "run"), "--quiet"]
        start = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"train failed:\n{proc.stderr[-2000:]}")
    return seconds


def variant_env(spec: str) -> tuple[str, dict[str, str]]:
    name, _, rest = spec.partition("=")
    src, *settings = rest.split(",")
    env = dict(os.environ)
    if src and src != ".":
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(src).resolve()), env.get("PYTHONPATH", "")) if p)
    for item in settings:
        key, _, value = item.partition("=")
        env[key] = value
    return name, env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--variant", action="append", default=[], help="NAME=SRC_DIR[,ENV=VALUE...]")
    args = parser.parse_args()
    variants = [variant_env(v) for v in (args.variant or ["installed=."])]
    times: dict[tuple[str, str], tuple[float, float]] = {}
    for condition in ("quiet", "busy"):
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if condition == "busy" else None
        try:
            if busy is not None:
                time.sleep(1.0)
            for name, env in variants:
                load = os.getloadavg()[0]
                times[name, condition] = (timed_train(args.steps, env), load)
                print(f"{name:>12} {condition:>5}: {times[name, condition][0]:7.1f} s  (load {load:.2f})", flush=True)
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
    for name, _ in variants:
        quiet, busy_t = times[name, "quiet"][0], times[name, "busy"][0]
        print(f"{name}: {args.steps} steps quiet {quiet:.1f} s, beside one busy process {busy_t:.1f} s, "
              f"ratio {busy_t / quiet:.2f}")


if __name__ == "__main__":
    main()
