"""Final weights as safetensors plus a JSON sidecar (config, step, anything else worth keeping).

The sidecar records `weights_sha256`, the sha256 of the very bytes written beside it (hashed from the
temporary file before it is renamed into place), and trainers add the fingerprint and settings that
produced them. Loading is strict: the file's bytes must have the recorded hash (a checkpoint copied over
another is named, not silently used under the other's sidecar), and a checkpoint written for another
configuration is refused with the keys and shapes that differ, never partially loaded. The bytes that
are hashed are the bytes that are loaded (read once).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

import torch
from safetensors.torch import load as load_bytes
from safetensors.torch import save_file

from clipvqd.hashing import sha256_bytes, sha256_file

WEIGHTS_HASH_KEY = "weights_sha256"
M = TypeVar("M", bound=torch.nn.Module)


class CheckpointMismatch(ValueError):
    pass


def sidecar_path(path: str | Path) -> Path:
    return Path(path).with_suffix(".json")


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_weights(path: str | Path, state_dict: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> str:
    """Write `state_dict` to `path` (safetensors) and `meta`, with the weights' sha256, to the sidecar
    JSON, each atomically; return that sha256. A crash between the two renames leaves weights whose hash
    the old sidecar does not record: refused on loading, never mistaken for the old weights."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # safetensors refuses shared storage and non-contiguous views; clone makes each tensor its own.
    tensors = {key: value.detach().cpu().contiguous().clone() for key, value in state_dict.items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp))
    digest = sha256_file(tmp)  # the bytes that are renamed into place, not a second serialisation
    os.replace(tmp, path)
    _atomic_write_text(sidecar_path(path), json.dumps({**dict(meta), WEIGHTS_HASH_KEY: digest}, indent=2,
                                                      sort_keys=True, default=str))
    return digest


def load_meta(path: str | Path) -> dict[str, Any]:
    side = sidecar_path(path)
    if not side.is_file():
        raise FileNotFoundError(f"checkpoint metadata {side} is missing (written beside {path})")
    try:
        return json.loads(side.read_text())
    except json.JSONDecodeError as error:  # truncated or overwritten: say which file, not just where in it
        raise CheckpointMismatch(f"checkpoint metadata {side} is damaged (not valid JSON: {error})") from error


def recorded_sha256(path: str | Path, meta: Mapping[str, Any]) -> str:
    """The weights' sha256 the sidecar records (CLIP files written before `weights_sha256` existed kept it
    under `sha256`); a sidecar without one is refused, naming it."""
    recorded = meta.get(WEIGHTS_HASH_KEY) or meta.get("sha256")
    if not isinstance(recorded, str) or len(recorded) != 64:
        raise CheckpointMismatch(f"checkpoint metadata {sidecar_path(path)} records no {WEIGHTS_HASH_KEY} of "
                                 f"{path} (written by an older clipvqd?); delete both files and rerun the rule "
                                 "that makes them")
    return recorded


def load_state_dict(path: str | Path, expected_sha256: str | None = None) -> dict[str, torch.Tensor]:
    """The tensors of `path`; with `expected_sha256`, only if the file's bytes have that hash."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    data = path.read_bytes()
    if expected_sha256 is not None:
        actual = sha256_bytes(data)
        if actual != expected_sha256:
            raise CheckpointMismatch(
                f"checkpoint {path} has sha256 {actual}, but its sidecar {sidecar_path(path)} records "
                f"{expected_sha256}: the file was replaced or damaged after it was written")
    try:
        return load_bytes(data)
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
    """Strictly load `path` into `module`, after checking its bytes against the sha256 its sidecar records;
    return the sidecar metadata (with `weights_sha256`, the checked hash)."""
    meta = load_meta(path)
    expected = recorded_sha256(path, meta)
    state = load_state_dict(path, expected_sha256=expected)
    check_compatible(module.state_dict(), state, str(path))
    module.load_state_dict(state, strict=True)
    return {**meta, WEIGHTS_HASH_KEY: expected}


def build_with_weights(path: str | Path, build: Callable[[], M]) -> tuple[M, dict[str, Any]]:
    """`build()`'s module with the weights of `path` (strictly loaded, as `load_weights`), on the CPU, and
    the sidecar metadata. The module is built on the meta device and given uninitialised memory before the
    load, so its random initialisation, which the load would overwrite, is never computed: for the paper's
    24x512 denoiser that initialisation costs more than reading the 2 GB of weights. The result is the module
    `build()` followed by `load_weights` would give, value for value and in the same memory layout (empty
    memory is laid out like the parameter it replaces), and the global random generator is not drawn from.
    A module holding a buffer its state dict leaves out (a non-persistent buffer, computed at construction)
    is refused: the load would leave it uninitialised."""
    with torch.device("meta"):
        module = build()
    saved = set(module.state_dict())
    computed = [name for name, _ in module.named_buffers() if name not in saved]
    if computed:
        raise ValueError(f"{type(module).__name__} has buffers outside its state dict ({', '.join(computed)}): "
                         "build it with its initialisation and use load_weights")
    module.to_empty(device="cpu")
    return module, load_weights(path, module)
