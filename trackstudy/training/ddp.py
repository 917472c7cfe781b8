"""Multi-process training with torch.distributed (DistributedDataParallel).

Under ``torchrun --nproc-per-node K`` the environment holds RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR and MASTER_PORT; :func:`init_distributed` then joins the process group (NCCL on CUDA,
each process on ``cuda:LOCAL_RANK``; gloo on the CPU) and the trainer wraps the model in
DistributedDataParallel, shards the batches by rank and lets only rank 0 write files. Without
those variables everything here is a no-op on a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from trackstudy.device import resolve_device
from trackstudy.errors import ConfigError

__all__ = ["DistInfo", "all_reduce", "barrier", "cleanup", "init_distributed", "max_param_difference"]


@dataclass
class DistInfo:
    """rank / world_size of this process (0 / 1 without torch.distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    comm_backend: str = ""  # torch.distributed's communication backend (nccl, gloo), not an attention backend
    owns_group: bool = False  # True when init_distributed created the process group

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r}: expected an integer") from None


def init_distributed(device: str = "auto") -> tuple[DistInfo, torch.device]:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); returns the process's
    DistInfo and its device (``cuda:LOCAL_RANK`` on CUDA)."""
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return DistInfo(), resolve_device(device)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
        comm_backend = "nccl"
    elif dev.type == "cpu":
        comm_backend = "gloo"
    else:
        raise ConfigError(f"distributed training supports CUDA (nccl) and CPU (gloo), not {dev.type!r}")
    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend=comm_backend, rank=rank, world_size=world,
                                device_id=dev if dev.type == "cuda" else None)
        owns = True
    return DistInfo(rank, world, local_rank, dist.get_backend(), owns), dev


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_reduce(values: list[float], info: DistInfo, device: torch.device, op: str = "sum") -> list[float]:
    """Element-wise sum or max of a list of floats over the ranks (identity on one process)."""
    if not info.enabled:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return t.tolist()


def max_param_difference(model: torch.nn.Module, info: DistInfo) -> float:
    """Largest absolute difference between this rank's parameters and rank 0's, over all ranks
    (0.0 when the replicas are identical, as DDP guarantees)."""
    if not info.enabled:
        return 0.0
    worst = torch.zeros((), dtype=torch.float64, device=next(model.parameters()).device)
    for p in model.parameters():
        ref = p.detach().clone()
        dist.broadcast(ref, src=0)
        worst = torch.maximum(worst, (p.detach() - ref).abs().max().double())
    dist.all_reduce(worst, op=dist.ReduceOp.MAX)
    return float(worst)


def cleanup(info: DistInfo) -> None:
    """Leave the process group if :func:`init_distributed` created it."""
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()
