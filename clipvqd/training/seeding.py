"""Random streams named by integers, so that no sampler or trainer carries generator state.

Every random draw in training and sampling comes from a generator seeded by a tuple such as
(seed, stream, step, sample index) or (seed, stream, image index). Consequences: a resumed run draws
exactly what an uninterrupted one would; the same training batch gives the same noise whether it runs on
one process or is split across several; and an image's randomness does not depend on the batch it was
sampled in.

Each trainer and sampler names its streams by small module constants (`_STREAM_*`): diffusion 1-3,
LAFITE 11-13 and 21 (sampling), clip2latent 31 (pairs), 41-43 (prior) and 51 (sampling), tokenizer
61-63, oracle 71-73, stand-in CLIP 81-82. The diffusion sampler seeds by (seed, image index) alone.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

_MASK64 = (1 << 64) - 1


def _splitmix64(value: int) -> int:
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def derive_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (distinct tuples give unrelated streams)."""
    state = 0
    for part in parts:
        state = _splitmix64(state ^ (int(part) & _MASK64))
    return state & ((1 << 63) - 1)


def generator_for(*parts: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh generator on `device` seeded with `derive_seed(*parts)`."""
    generator = torch.Generator(device=device)
    generator.manual_seed(derive_seed(*parts))
    return generator


@contextmanager
def seeded_global_rng(*parts: int) -> Iterator[None]:
    """Inside the block, the global CPU generator is seeded with `derive_seed(*parts)`; afterwards it is
    back where it was. For code that draws from the global generator, such as `nn.Module` initialisation:
    a network's initial weights then depend on the run's seed alone, not on what the caller drew before."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(*parts))
        yield
