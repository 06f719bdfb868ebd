"""Run one function over many independent items in worker processes (image preparation is CPU-bound)."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterable, Sequence

from tqdm import tqdm


def parallel_map(function: Callable, items: Sequence, workers: int = 1, desc: str = "",
                 progress: bool = True, chunksize: int = 64) -> list:
    """`[function(item) for item in items]`, in order, over `workers` processes (1: in this process)."""
    bar = tqdm(total=len(items), desc=desc, disable=not progress, unit="img")
    results: list = []
    try:
        if workers <= 1 or len(items) < 2:
            for item in items:
                results.append(function(item))
                bar.update(1)
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for result in pool.map(function, items, chunksize=chunksize):
                    results.append(result)
                    bar.update(1)
    finally:
        bar.close()
    return results


def chunked(items: Iterable, size: int) -> list[list]:
    chunk, chunks = [], []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            chunks.append(chunk)
            chunk = []
    if chunk:
        chunks.append(chunk)
    return chunks
