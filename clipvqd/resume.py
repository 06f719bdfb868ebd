"""Resume state for every trainer: models, EMA, optimisers, schedulers, step and RNG states.

It lives in a work folder that is *not* a Snakemake output (Snakemake deletes the outputs of a failed
job), so a killed job continues where it stopped when the workflow is rerun. Files are written
atomically and the previous state is kept, so a crash while saving never loses the last good state.
Loading uses `torch.load(weights_only=True)`: no pickled code is ever executed.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Mapping

import torch

_STATE_NAME = re.compile(r"^state-(\d{9})\.pt$")


class CorruptResumeState(RuntimeError):
    pass


def settings_fingerprint(payload: Mapping[str, Any]) -> str:
    """A stable hash of a run's data and settings, stored with each snapshot so that a rerun with other
    data or settings never continues from it."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def tensor_sha256(tensor: torch.Tensor | None) -> str | None:
    if tensor is None:
        return None
    return hashlib.sha256(tensor.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def write_curve_csv(path: str | Path, rows: list[Mapping[str, Any]], fields: list[str] | tuple[str, ...]) -> None:
    """Write a whole loss curve atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fields))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def _capture(obj: Any) -> Any:
    if isinstance(obj, torch.Generator):
        return obj.get_state()
    return obj.state_dict()


def _restore(obj: Any, state: Any) -> None:
    if isinstance(obj, torch.Generator):
        obj.set_state(state)
    else:
        obj.load_state_dict(state)


class ResumeState:
    """Periodic snapshots of a training run in `work_dir`; keeps the newest `keep` of them."""

    def __init__(self, work_dir: str | Path, keep: int = 2):
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.work_dir = Path(work_dir)
        self.keep = keep

    def snapshots(self) -> list[Path]:
        if not self.work_dir.is_dir():
            return []
        found = [p for p in self.work_dir.iterdir() if _STATE_NAME.match(p.name)]
        return sorted(found, key=lambda p: int(_STATE_NAME.match(p.name).group(1)))

    def save(self, step: int, objects: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> Path:
        """Snapshot `objects` (modules, optimisers, schedulers, torch.Generators) at `step`."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        payload = {
            "step": int(step),
            "objects": {name: _capture(obj) for name, obj in objects.items()},
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "extra": dict(extra or {}),
        }
        path = self.work_dir / f"state-{int(step):09d}.pt"
        tmp = path.with_name(path.name + ".tmp")
        torch.save(payload, tmp)
        os.replace(tmp, path)
        for old in self.snapshots()[: -self.keep]:
            old.unlink()
        return path

    def restore(self, objects: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        """Load the newest snapshot into `objects`; return (step, extra), or (0, {}) with none saved."""
        snapshots = self.snapshots()
        if not snapshots:
            return 0, {}
        path = snapshots[-1]
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            previous = f" The previous snapshot {snapshots[-2]} is intact; delete the damaged file to resume from it." if len(snapshots) > 1 else ""
            raise CorruptResumeState(f"resume state {path} is damaged and cannot be loaded ({error}).{previous}") from error
        missing = sorted(set(objects) - set(payload["objects"]))
        if missing:
            raise CorruptResumeState(f"resume state {path} lacks {missing}; it was written by another trainer")
        for name, obj in objects.items():
            _restore(obj, payload["objects"][name])
        torch.set_rng_state(payload["torch_rng"])
        if payload["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(payload["cuda_rng"])
        return payload["step"], payload["extra"]

    def newest_fingerprint(self) -> str | None:
        """The settings fingerprint stored with the newest snapshot; None when there is none (or it is
        unreadable, which `restore` then reports properly)."""
        snapshots = self.snapshots()
        if not snapshots:
            return None
        try:
            payload = torch.load(snapshots[-1], map_location="cpu", weights_only=True)
        except Exception:
            return None
        return payload.get("extra", {}).get("fingerprint")

    def clear(self) -> None:
        for path in self.snapshots():
            path.unlink()


def resume_training(work_dir: str | Path, objects: Mapping[str, Any], curve_csv: str | Path,
                    curve_header: str) -> tuple[ResumeState, int]:
    """Restore `objects` from `work_dir` if a snapshot exists; (re)start the loss curve on a fresh run.

    Returns the state (to save snapshots into) and the step to continue from.
    """
    state = ResumeState(work_dir)
    step, _ = state.restore(objects)
    curve_csv = Path(curve_csv)
    curve_csv.parent.mkdir(parents=True, exist_ok=True)
    if step == 0 or not curve_csv.exists():
        curve_csv.write_text(curve_header.rstrip("\n") + "\n")
    return state, step
