"""Data parallelism for the trainer: ``torchrun --nproc_per_node=P -m cli.main train ...``.

Scheme (exactly equivalent to one process on the same global batch, up to float rounding):

- every rank draws the same global prompts from the data cursor; rank r samples the responses of its
  contiguous block of groups (per-row sampling seeds make a row's tokens independent of who samples it);
  the blocks are all-gathered so every rank holds the whole rollout batch (token ids are cheap);
- re-scoring (π_old, entropy) is sharded the same way and all-gathered;
- each optimizer mini-batch is split into contiguous per-rank blocks; Clip-Cov/KL-Cov statistics are
  computed on the all-gathered current log-probs of the *whole* mini-batch; losses use whole-mini-batch
  denominators, so per-rank gradients are partial sums and are all-reduced with SUM (not averaged);
- metrics are all-reduced; only rank 0 validates, logs and writes checkpoints.

Backend: gloo on CPU, nccl on CUDA (``cuda:LOCAL_RANK``). With ``WORLD_SIZE`` unset everything here is a
no-op and the trainer runs as a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Rank, world size and local rank of this process (0, 1, 0 when not distributed)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """True when more than one process takes part."""
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the process that logs and writes files)."""
        return self.rank == 0

    def block(self, n: int) -> tuple[int, int]:
        """``[start, stop)`` of this rank's contiguous block when ``n`` items are split over ranks
        (``torch.tensor_split`` sizes: the first ``n % world`` ranks get one more)."""
        q, r = divmod(n, self.world)
        start = self.rank * q + min(self.rank, r)
        return start, start + q + (1 if self.rank < r else 0)


def init_distributed(device: str) -> DistInfo:
    """Initialise the default process group from torchrun's environment (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``); gloo for CPU devices, nccl for CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", os.environ["RANK"]))
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=world)
    if use_cuda:
        torch.cuda.set_device(local)
    return DistInfo(rank, world, local)


def shutdown_distributed() -> None:
    """Tear the default process group down (after a barrier) if one is up. Call it before the process
    exits: leaving it to interpreter shutdown can abort a rank ("terminate called without an active
    exception") while gloo's threads are still live."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def gather_objects(obj, info: DistInfo) -> list:
    """``[obj from rank 0, obj from rank 1, ...]`` (just ``[obj]`` when not distributed)."""
    if not info.enabled:
        return [obj]
    out = [None] * info.world
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum_(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """In-place SUM all-reduce (no-op when not distributed)."""
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_grads_(params, info: DistInfo) -> None:
    """SUM all-reduce of every parameter gradient (missing gradients count as zeros)."""
    if not info.enabled:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
