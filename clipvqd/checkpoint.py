"""Final weights as safetensors plus a JSON sidecar (config, step, anything else worth keeping).

Loading is strict: a checkpoint written for another configuration is refused with the keys and shapes
that differ, never partially loaded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors.torch import load_file, save_file


class CheckpointMismatch(ValueError):
    pass


def sidecar_path(path: str | Path) -> Path:
    return Path(path).with_suffix(".json")


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_weights(path: str | Path, state_dict: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
    """Write `state_dict` to `path` (safetensors) and `meta` to the sidecar JSON, each atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # safetensors refuses shared storage and non-contiguous views; clone makes each tensor its own.
    tensors = {key: value.detach().cpu().contiguous().clone() for key, value in state_dict.items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, path)
    _atomic_write_text(sidecar_path(path), json.dumps(dict(meta), indent=2, sort_keys=True, default=str))


def load_meta(path: str | Path) -> dict[str, Any]:
    side = sidecar_path(path)
    if not side.is_file():
        raise FileNotFoundError(f"checkpoint metadata {side} is missing (written beside {path})")
    try:
        return json.loads(side.read_text())
    except json.JSONDecodeError as error:  # truncated or overwritten: say which file, not just where in it
        raise CheckpointMismatch(f"checkpoint metadata {side} is damaged (not valid JSON: {error})") from error


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return load_file(str(path))
    except Exception as error:  # safetensors raises several types for a damaged file
        raise CheckpointMismatch(f"checkpoint {path} cannot be read as safetensors: {error}") from error


def check_compatible(
    expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor], source: str
) -> None:
    """Raise naming every missing, unexpected or differently-shaped key."""
    problems = []
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if missing:
        problems.append(f"missing keys {missing[:8]}{' ...' if len(missing) > 8 else ''}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}")
    for key in sorted(set(expected) & set(found)):
        if tuple(expected[key].shape) != tuple(found[key].shape):
            problems.append(
                f"key '{key}' has shape {tuple(found[key].shape)} in the checkpoint but "
                f"{tuple(expected[key].shape)} in the model"
            )
    if problems:
        raise CheckpointMismatch(
            f"checkpoint {source} does not match this model's configuration: " + "; ".join(problems)
        )


def load_weights(path: str | Path, module: torch.nn.Module) -> dict[str, Any]:
    """Strictly load `path` into `module`; return the sidecar metadata."""
    state = load_state_dict(path)
    check_compatible(module.state_dict(), state, str(path))
    module.load_state_dict(state, strict=True)
    return load_meta(path)
