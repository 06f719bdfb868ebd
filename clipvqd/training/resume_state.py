"""Resume state of a training run: models, EMA, optimisers, schedulers, step and RNG states.

It lives in a work folder that is *not* a Snakemake output (Snakemake deletes the outputs of a failed
job), so a killed job continues where it stopped when the workflow is rerun. Files are written
atomically and the previous state is kept, so a crash while saving never loses the last good state.
Loading uses `torch.load(weights_only=True)`: no pickled code is ever executed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping

import torch

_STATE_NAME = re.compile(r"^state-(\d{9})\.pt$")


class CorruptResumeState(RuntimeError):
    """A snapshot that cannot be read, or that another trainer wrote."""


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

    def newest_step(self) -> int:
        """The step of the newest snapshot (from its name), 0 when there is none."""
        snapshots = self.snapshots()
        return int(_STATE_NAME.match(snapshots[-1].name).group(1)) if snapshots else 0

    def newest_extra(self) -> dict[str, Any] | None:
        """The `extra` stored with the newest snapshot (where a run keeps its settings fingerprint); None
        when there is no snapshot, or it is unreadable (which `restore` then reports properly)."""
        snapshots = self.snapshots()
        if not snapshots:
            return None
        try:
            payload = torch.load(snapshots[-1], map_location="cpu", weights_only=True)
        except Exception:
            return None
        return dict(payload.get("extra", {}))

    def clear(self) -> None:
        """Delete every snapshot."""
        for path in self.snapshots():
            path.unlink()

