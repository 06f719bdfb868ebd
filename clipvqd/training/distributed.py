"""Where a training process stands among the processes of a torchrun job (or alone).

Under torchrun (WORLD_SIZE > 1 in the environment) the process group is created here, with NCCL on
CUDA and gloo on CPU; a group the caller made already is used as it is. Rank 0 writes every file; the
barriers keep the other ranks from reading what it has not finished writing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass
class Distributed:
    rank: int
    world_size: int
    device: torch.device
    created_group: bool
    """True when `from_environment` created the process group (so `close` destroys it)."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def single(cls, device: str | torch.device = "cpu") -> "Distributed":
        """One process, no process group."""
        return cls(0, 1, torch.device(device), False)

    @classmethod
    def from_environment(cls, device: str | torch.device) -> "Distributed":
        device = torch.device(device)
        if dist.is_available() and dist.is_initialized():
            created = False
        elif int(os.environ.get("WORLD_SIZE", "1")) > 1:
            backend = "nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(backend=backend, init_method="env://")
            created = True
        else:
            return cls.single(device)
        rank, world_size = dist.get_rank(), dist.get_world_size()
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank % max(torch.cuda.device_count(), 1))))
        if device.type == "cuda":
            torch.cuda.set_device(device)
        return cls(rank, world_size, device, created)

    def gather_rows(self, rows: Tensor) -> Tensor:
        """Concatenate each process's `(b, k)` rows in rank order (identical result on every rank)."""
        if self.world_size == 1:
            return rows
        parts = [torch.empty_like(rows) for _ in range(self.world_size)]
        dist.all_gather(parts, rows.contiguous())
        return torch.cat(parts)

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def close(self) -> None:
        """Destroy the process group if this object created it."""
        if self.created_group:
            dist.destroy_process_group()
            self.created_group = False
