"""Random streams named by integers, so that no sampler or trainer carries generator state.

Every random draw in training and sampling comes from a generator seeded by a tuple such as
(seed, step, sample index) or (seed, image index). Consequences: a resumed run draws exactly what an
uninterrupted one would; the same training batch gives the same noise whether it runs on one process
or is split across several; and an image's randomness does not depend on the batch it was sampled in.
"""

from __future__ import annotations

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
    generator = torch.Generator(device=device)
    generator.manual_seed(derive_seed(*parts))
    return generator
