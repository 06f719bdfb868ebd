"""The `device` config key: cpu, cuda, or auto (cuda when the job can see a GPU); and which GPU a job takes.

Snakemake's `gpu` resource counts GPUs (`--resources gpu=N` lets at most N GPU jobs run at once) but does
not say which GPU a job gets. A scheduler does (SLURM sets CUDA_VISIBLE_DEVICES, torchrun sets LOCAL_RANK);
where neither did, on a workstation with several GPUs, `claim_gpu` makes the first GPU that no other
clipvqd job holds the job's current device, so N jobs spread over N GPUs instead of sharing the first.
"""

from __future__ import annotations

import fcntl
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch

GPU_LOCKS = "CLIPVQD_GPU_LOCKS"  # folder of the per-GPU lock files (default: one per user in the temp folder)
_CLAIMED: list = []  # open lock files: a claim lasts as long as the process (the kernel drops it on exit or kill)


@contextmanager
def torch_threads(count: int):
    """torch's intra-op thread count set to `count` inside the block, the caller's restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def resolve_device(name: str) -> str:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    elif name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device is 'cuda' but this job sees no GPU; use 'cpu' or 'auto'")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu, cuda or auto, got '{name}'")
    if name == "cuda":
        claim_gpu()
    return name


def claim_gpu() -> int | None:
    """Make a free GPU the current CUDA device and hold it until the process ends; return its index, or
    None where the GPU was already decided (CUDA_VISIBLE_DEVICES set, a torchrun worker, one GPU only).
    A claim is an exclusive flock on `gpu<index>.lock` in the GPU_LOCKS folder. When every GPU is held
    (more GPU jobs than GPUs: `--resources gpu=N` larger than the machine has), the job shares GPU 0 and
    says so."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None or "LOCAL_RANK" in os.environ:
        return None
    count = torch.cuda.device_count()
    if count < 2:
        return None
    folder = Path(os.environ.get(GPU_LOCKS) or Path(tempfile.gettempdir()) / f"clipvqd-gpu-locks-{os.getuid()}")
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        handle = open(folder / f"gpu{index}.lock", "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        _CLAIMED.append(handle)
        torch.cuda.set_device(index)
        return index
    print(f"every one of the {count} GPUs is held by another clipvqd job (lock files in {folder}); sharing GPU 0 "
          "(give Snakemake --resources gpu=<number of GPUs>)", file=sys.stderr)
    return None
