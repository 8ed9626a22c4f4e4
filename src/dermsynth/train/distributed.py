"""Data-parallel training across processes (``torchrun --nproc_per_node N dermsynth-train ...``).

Every rank holds the same networks and optimizer state. Each step, every rank draws the *global* batch's
indices and noise from the same seeded generators and keeps its rows ``rank::world`` (strided, so that
PGAN's minibatch-stddev groups are exactly the single-process groups); after each backward the gradients
are averaged across ranks with one all-reduce, so every rank takes the same optimizer step and holds the
same weights and the same EMA generator. Nothing in the checkpoint depends on the number of ranks, so a run
resumes on any world size.

Why not the ``DistributedDataParallel`` wrapper: its reducer only works when gradients reach ``.grad`` via
``backward()`` on outputs of its own ``forward`` -- the DDP documentation says it "doesn't work with
torch.autograd.grad()" (WGAN-GP's double backward), and our steps call D several times per backward (reals,
fakes, interpolates), leave PGAN's not-yet-grown blocks unused and call LAPGAN's per-level methods rather than
``forward``. An explicit all-reduce of the flattened gradients does what DDP's reducer does, minus
overlapping communication with the backward pass.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from dermsynth.errors import DermsynthError


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job; ``world == 1`` is plain single-process training."""

    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def local_batch(self, global_batch: int) -> int:
        if global_batch % self.world:
            raise DermsynthError(f"the minibatch of {global_batch} does not split over {self.world} processes; "
                                 f"use a multiple of {self.world}")
        return global_batch // self.world

    def shard(self, x: torch.Tensor) -> torch.Tensor:
        """This rank's rows of a global-batch tensor."""
        return x[self.rank::self.world] if self.active else x

    def sync_grads(self, opt: torch.optim.Optimizer) -> None:
        """Average the gradients of ``opt``'s parameters over ranks (one flattened all-reduce)."""
        grads = [p.grad for group in opt.param_groups for p in group["params"] if p.grad is not None]
        _in_place(grads, lambda flat: (dist.all_reduce(flat), flat.div_(self.world)))

    def broadcast_state(self, *modules: nn.Module | None, buffers_only: bool = False) -> None:
        """Make rank 0's floating parameters and buffers every rank's (only the buffers with ``buffers_only``:
        batch-norm running statistics, computed per rank from its own rows, would otherwise drift apart and
        with them the EMA generators -- what DDP's ``broadcast_buffers`` does)."""
        tensors = [t for m in modules if m is not None
                   for t in (*(() if buffers_only else m.parameters()), *m.buffers()) if t.is_floating_point()]
        _in_place(tensors, lambda flat: dist.broadcast(flat, 0))

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank if ``flag`` is true on any (a host sync: call it only where one happens anyway)."""
        t = torch.tensor([float(flag)], device=device)
        dist.all_reduce(t)
        return bool(t.item())

    def mean(self, t: torch.Tensor) -> torch.Tensor:
        """Average of a tensor over ranks (logging only)."""
        if self.active:
            t = t.clone()
            dist.all_reduce(t)
            t.div_(self.world)
        return t


def _in_place(tensors: list[torch.Tensor], collective) -> None:
    """Run ``collective`` on all ``tensors`` flattened into one buffer (one message), then copy back."""
    if not tensors:
        return
    flat = torch.cat([t.detach().reshape(-1) for t in tensors])
    collective(flat)
    offset = 0
    with torch.no_grad():
        for t in tensors:
            t.copy_(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()


def init_distributed(device: str) -> DistInfo:
    """Join the job ``torchrun`` started (``WORLD_SIZE`` > 1 in the environment), else single-process.

    NCCL on CUDA, gloo on the CPU; under torchrun on CUDA, ``--device auto`` means this rank's
    ``cuda:LOCAL_RANK``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and not device.startswith("cpu")
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size())
