"""The identity of a training run's data and settings, stored with each snapshot.

A rerun continues from a snapshot only when its fingerprint is the same; a run with other data or
settings (Snakemake reruns a job when either changes) starts over instead of mixing the two.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

import torch

# Settings that change only what is written along the way, never the trained weights: changing them
# keeps a run resumable.
BOOKKEEPING_KEYS = ("snapshot_every", "log_every")


def settings_fingerprint(payload: Mapping[str, Any]) -> str:
    """A stable sha256 of a JSON-able description of the run (keys sorted; other objects by `str`)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def tensor_sha256(tensor: torch.Tensor | None) -> str | None:
    """sha256 of a tensor's bytes (on CPU, contiguous), None for None: identifies training data."""
    if tensor is None:
        return None
    return hashlib.sha256(tensor.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def without_bookkeeping(settings: Mapping[str, Any]) -> dict[str, Any]:
    """`settings` less the keys of BOOKKEEPING_KEYS, for the fingerprint."""
    return {key: value for key, value in settings.items() if key not in BOOKKEEPING_KEYS}
