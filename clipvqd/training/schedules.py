"""Learning-rate schedules, as multipliers of a peak learning rate."""

from __future__ import annotations

import math


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, final_fraction: float = 0.0) -> float:
    """The multiplier at optimiser step `step` (0-based) of `total_steps`.

    A linear warm-up, (step + 1) / warmup_steps over the first `warmup_steps` steps, then half a cosine from
    1 down to `final_fraction` at the last step (1.0 keeps the rate constant after warm-up). With
    warmup_steps = 0 it is a plain cosine decay that starts at 1. Used by the diffusion trainer (its
    final_lr_fraction), the stand-in CLIP (a warm-up share of the steps, decay to 0) and the oracle (no
    warm-up, decay to 0)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / decay_steps, 1.0)
    return final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + math.cos(math.pi * progress))
