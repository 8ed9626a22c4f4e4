"""Data-parallel training on 2 CPU processes (gloo): identical weights on every rank, equal to a single-process
run with the same global batch, and checkpoints that resume on another number of processes."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from dermsynth.train import TrainConfig, train
from dermsynth.train import trainer as trainer_module

# PGAN crossing phases (64-image phases; 16 px at global minibatch 8 = 4 per rank), conditional, with EMA.
CFG = dict(model="pgan", size=16, width=2, z_dim=8, stable_kimg=0.064, fade_kimg=0.064,
           batch_schedule="4:16,8:16,16:8", conditional=True, ema_beta=0.9, log_every=3, sample_every=100,
           checkpoint_every=100, device="cpu")
PARTS = ("generator", "discriminator", "generator_ema")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, cfg: dict, dataset, resume: bool, dump: str) -> None:
    """One rank: train, then dump this rank's in-memory networks (rank 0 alone writes checkpoints)."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    nets = {}
    build, ema = trainer_module.build_networks, trainer_module.update_ema

    def capture_build(*args, **kwargs):
        nets.update(build(*args, **kwargs))
        return dict(nets)

    def capture_ema(g_ema, g, beta):
        nets["generator_ema"] = g_ema
        ema(g_ema, g, beta)

    trainer_module.build_networks, trainer_module.update_ema = capture_build, capture_ema
    try:
        train(TrainConfig(**cfg), dataset=dataset, resume=resume, progress=False)
        torch.save({k: v.state_dict() for k, v in nets.items()}, f"{dump}.rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _run_ranks(world: int, cfg: dict, dataset, dump, resume: bool = False) -> list[dict]:
    mp.spawn(_worker, args=(world, _free_port(), cfg, dataset, resume, str(dump)), nprocs=world, join=True)
    return [torch.load(f"{dump}.rank{r}.pt", weights_only=True) for r in range(world)]


def _by_part(state: dict) -> dict:
    """A rank's dump, or a checkpoint's networks and EMA copy under the same names."""
    if "networks" not in state:
        return state
    return {**state["networks"], "generator_ema": state["ema"]["generator"]}


def _compare(a: dict, b: dict, exact: bool, adam_restart_lr: float | None = None, steps_after: int = 1) -> None:
    """Equal (bit for bit, or up to float summation order). With ``adam_restart_lr``: two runs that entered a new
    PGAN phase (Adam restarted) from checkpoints that already differed in the last bits; Adam's first steps are
    about lr * sign(gradient), so an element whose gradient is ~0 may step +-lr in one run and not the other:
    allow that (at most 2 lr per step since the restart) as long as the typical element still agrees closely (median difference)."""
    a, b = _by_part(a), _by_part(b)
    for part in PARTS:
        for name, x in a[part].items():
            y = b[part][name]
            if not isinstance(x, torch.Tensor):
                assert x == y
            elif exact:
                assert torch.equal(x, y), f"{part}.{name} differs"
            elif adam_restart_lr is None:
                torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5, msg=f"{part}.{name}")
            else:
                diff = (x - y).abs()
                assert diff.max() <= 2 * adam_restart_lr * steps_after, f"{part}.{name}: {diff.max():.2e}"
                assert diff.median() <= adam_restart_lr / 10, f"{part}.{name}: median {diff.median():.2e}"


def test_two_ranks_match_each_other_a_single_process_and_resume_across_world_sizes(tmp_path, noise_dataset):
    # 2 ranks, 14 steps: through the 8 px fade-in and stable phases into the 16 px fade-in.
    ranks = _run_ranks(2, {**CFG, "out": str(tmp_path / "ddp"), "steps": 14}, noise_dataset, tmp_path / "w")
    _compare(ranks[0], ranks[1], exact=True)  # same averaged gradients, same Adam: the same bits everywhere
    train(TrainConfig(**CFG, out=str(tmp_path / "single"), steps=14), dataset=noise_dataset, progress=False)
    single = torch.load(tmp_path / "single" / "latest.pt", weights_only=True)
    ddp = torch.load(tmp_path / "ddp" / "latest.pt", weights_only=True)  # written by rank 0 only
    assert ddp["images_seen"] == single["images_seen"] == 12 * 16 + 2 * 8
    assert ddp["sampler"] == single["sampler"] and torch.equal(ddp["noise_rng"], single["noise_rng"])
    assert not (tmp_path / "ddp" / "latest.pt.rank1").exists()
    _compare(ddp, single, exact=False)  # the same global batch: equal up to float summation order
    _compare(ranks[1], single, exact=False)
    # The 2-rank checkpoint resumes in one process exactly like the single-process run goes on.
    train(TrainConfig(**CFG, out=str(tmp_path / "ddp"), steps=18), dataset=noise_dataset, progress=False,
          resume=True)
    train(TrainConfig(**CFG, out=str(tmp_path / "single"), steps=18), dataset=noise_dataset, progress=False,
          resume=True)
    _compare(torch.load(tmp_path / "ddp" / "latest.pt", weights_only=True),
             torch.load(tmp_path / "single" / "latest.pt", weights_only=True), exact=False)
    # ... and a single-process checkpoint resumes on 2 ranks (into the final 16 px stable phase).
    ranks = _run_ranks(2, {**CFG, "out": str(tmp_path / "single"), "steps": 22}, noise_dataset, tmp_path / "w2",
                       resume=True)
    _compare(ranks[0], ranks[1], exact=True)
    train(TrainConfig(**CFG, out=str(tmp_path / "ddp"), steps=22), dataset=noise_dataset, progress=False,
          resume=True)
    _compare(torch.load(tmp_path / "single" / "latest.pt", weights_only=True),
             torch.load(tmp_path / "ddp" / "latest.pt", weights_only=True), exact=False, adam_restart_lr=1e-3,
             steps_after=4)
