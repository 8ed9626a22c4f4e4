"""benchmarks/gpu_suite --quick: every part of the GPU suite runs end to end on the CPU (tiny sizes)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_suite_quick_runs_every_part(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_suite"), "--quick", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=1500)
    suite = json.loads((tmp_path / "gpu_suite.json").read_text())
    assert proc.returncode == 0, {k: (v["status"], (tmp_path / f"{k}.log").read_text()[-500:])
                                  for k, v in suite["parts"].items() if v["status"] != "ok"}
    assert {"dcgan64", "pgan", "metrics", "diffusion", "ham64"} <= set(suite["parts"])
    assert all(p["status"] == "ok" for p in suite["parts"].values())
    assert suite["parts"]["dcgan64"]["result"]["rows"][0]["img_per_s"] > 0
    last = suite["parts"]["ham64"]["result"]["metrics"][-1]  # the real-data training, scored while it trains
    assert float(last["swd"]) > 0 and float(last["fid"]) >= 0 and int(last["step"]) == 30
