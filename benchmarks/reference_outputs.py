"""Reference outputs of every model's trainer: tiny seeded runs -> SHA-256 of the final weights (every network,
its EMA copy and every optimizer state), losses.csv (all but the img_per_s timing column) and each
preview PNG.

Used to show that a refactor of the trainer changes no output: record with the old code, compare with the new.

    python benchmarks/reference_outputs.py --out benchmarks/results/reference_outputs.json   # record
    python benchmarks/reference_outputs.py --check benchmarks/results/reference_outputs.json # compare

Weights are hashed by name and bytes of every tensor (CPU, one thread), so a renamed checkpoint key does
not matter, only the numbers: the checkpoint is read through ``dermsynth.checkpoint.load_checkpoint``
when it exposes the per-network layout, else through the pre-protocol keys.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
os.environ.setdefault("DERMSYNTH_CPU_BF16", "0")  # float32 on every CPU: hashes comparable across machines

from dermsynth.data.dataset import LesionDataset  # noqa: E402
from dermsynth.data.phantom import generate_phantom  # noqa: E402
from dermsynth.train import TrainConfig, train  # noqa: E402

COMMON = dict(log_every=2, sample_every=3, checkpoint_every=3, seed=3, device="cpu")
NOISE = dict(size=16, z_dim=16, conditional=True)
RUNS: dict[str, dict] = {
    "dcgan": dict(model="dcgan", width=8, batch_size=16, steps=6, ema_beta=0.9, **NOISE),
    "dcgan-ms-gp": dict(model="dcgan", width=8, batch_size=16, steps=6, d_scales=2, gp_weight=1.0,
                        augment="diffaugment", **{**NOISE, "size": 32}),
    "lapgan": dict(model="lapgan", width=8, batch_size=16, steps=6, **NOISE),
    "pgan": dict(model="pgan", width=2, steps=8, stable_kimg=0.032, fade_kimg=0.032, batch_schedule="4:16,8:16,16:8",
                 ema_beta=0.5, **NOISE),
    "stylegan2-ada": dict(model="stylegan2", width=4, batch_size=8, steps=6, pl_weight=2.0, style_mixing=0.9,
                          augment="ada", ada_kimg=0.05, r1_interval=2, pl_interval=2, size=16, conditional=True),
    "pix2pixhd": dict(model="pix2pixhd", size=32, width=8, g_downsample=2, g_blocks=1, d_layers=2, d_scales=2,
                      batch_size=4, steps=6),
    "unet-translator": dict(model="unet-translator", size=32, width=4, batch_size=4, steps=6),
    "cyclegan": dict(model="cyclegan", size=32, width=4, batch_size=4, steps=6, pool_size=3),
}


def _data(root: Path) -> dict[str, dict]:
    rng = np.random.default_rng(0)
    noise = LesionDataset(images=rng.integers(0, 256, (64, 16, 16, 3), dtype=np.uint8),
                          labels=rng.integers(0, 3, 64), class_names=["a", "b", "c"], ids=[str(i) for i in range(64)])
    noise32 = LesionDataset(images=rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8),
                            labels=rng.integers(0, 3, 64), class_names=["a", "b", "c"],
                            ids=[str(i) for i in range(64)])
    from _edit_data import phantom_patches

    healthy, lesion = phantom_patches(root, n=24)
    maps = generate_phantom(n=16, size=32, seed=1)
    return {"noise": {"dataset": noise}, "noise32": {"dataset": noise32}, "maps": {"dataset": maps},
            "patches": {"dataset": healthy, "dataset_b": lesion}}


def _which_data(name: str, options: dict) -> str:
    if options["model"] in ("unet-translator", "cyclegan"):
        return "patches"
    if options["model"] == "pix2pixhd":
        return "maps"
    return "noise32" if options["size"] == 32 else "noise"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _without_timing(csv_text: str) -> str:
    """losses.csv without its last column, img_per_s (wall-clock throughput, never reproducible)."""
    return "\n".join(line.rsplit(",", 1)[0] for line in csv_text.splitlines())


def _tensor_items(obj, prefix: str = ""):
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k in sorted(obj, key=str):
            yield from _tensor_items(obj[k], f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensor_items(v, f"{prefix}.{i}")


def _parts(state: dict) -> dict[str, object]:
    """Networks, EMA and optimizer states under stable names, whichever checkpoint layout wrote them."""
    if "networks" in state:
        parts = {f"network.{k}": v for k, v in state["networks"].items()}
        parts.update({f"ema.{k}": v for k, v in (state.get("ema") or {}).items()})
        parts.update({f"optimizer.{k}": v for k, v in state["optimizers"].items()})
        return parts
    parts = {"network.generator": state["generator"], "network.discriminator": state["discriminator"],
             "optimizer.generator": state["opt_g"], "optimizer.discriminator": state["opt_d"]}
    if state.get("generator_ema") is not None:
        parts["ema.generator"] = state["generator_ema"]
    return parts


def _hash_state(obj) -> str:
    h = hashlib.sha256()
    for name, t in _tensor_items(obj):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def record() -> dict[str, dict[str, str]]:
    torch.set_num_threads(1)
    result: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = _data(root / "data")
        for name, options in RUNS.items():
            out = root / name
            train(TrainConfig(out=str(out), **COMMON, **options), progress=False,
                  **data[_which_data(name, options)])
            state = torch.load(out / "latest.pt", weights_only=True)
            hashes = {k: _hash_state(v) for k, v in sorted(_parts(state).items())}
            hashes["step_state"] = _hash_state(state.get("step_state", {}))
            hashes["losses.csv"] = _sha(_without_timing((out / "losses.csv").read_text()).encode())
            for png in sorted((out / "samples").glob("*.png")):
                hashes[f"samples/{png.name}"] = _sha(png.read_bytes())
            result[name] = hashes
            print(name, hashes["losses.csv"][:12], flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="Write the hashes here.")
    parser.add_argument("--check", type=Path, help="Compare with the hashes recorded here (exit 1 on a difference).")
    args = parser.parse_args()
    now = record()
    if args.out:
        args.out.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
    if args.check:
        recorded = json.loads(args.check.read_text())
        diffs = [f"{run}: {key}" for run in recorded for key in recorded[run]
                 if now.get(run, {}).get(key) != recorded[run][key]]
        diffs += [f"{run}: {key} (new)" for run in now for key in now[run] if key not in recorded.get(run, {})]
        print("bit-identical" if not diffs else "DIFFERENT:\n" + "\n".join(diffs))
        sys.exit(1 if diffs else 0)


if __name__ == "__main__":
    main()
