"""One training run's bookkeeping, shared by every trainer; the trainer keeps only its model's step.

    run = TrainingRun("lafite", work_dir=..., curve_csv=..., curve_fields=[...], total_steps=...,
                      snapshot_every=..., settings={...}, state={"generator": g, "g_opt": opt, ...})
    for step in range(run.start(), run.stop_at):
        ...                                   # one optimiser step
        run.log({...})                        # now and then: a loss-curve row
        run.step_done(step + 1, loss=loss)    # progress bar, periodic snapshot
    run.finish(lambda: save_weights(out, ema.state_dict(), meta))

`start` compares the fingerprint of `settings` (the data and every setting that shapes the weights) with
the one stored in the newest snapshot of `work_dir`: the same, and the run continues from that snapshot
(every object of `state`, the global RNG, the loss curve and the elapsed time are restored); different,
and it says so and starts over (Snakemake reruns a job when its data or settings change, and the old
snapshots must never be mixed in). A damaged snapshot, or one whose tensors do not fit the model, stops
the run with an error naming the file.

Only one trainer at a time may write a work folder: `start` takes its lock (`work_lock`, with the pid of
the holder inside), refuses while another live trainer holds it, and takes over one a dead trainer left.
It also makes the run stop when the Snakemake that started it is gone (`lifetime`), so a killed
workflow leaves no orphan trainer behind to race the rerun.

The loss curve lives in the snapshots and is written whole and atomically to `curve_csv` at every
snapshot and at the end, so a resumed run's curve has neither gaps nor repeated rows. Under torchrun (a
`Distributed` with several processes) every process calls the same methods; only rank 0 writes.

Cost: `cpu_seconds()` is the CPU time (user + system, every thread) of the trainer's process since it
started, its data loading included, plus that of the earlier calls of a resumed run up to their last
snapshot; the work a killed call did after its last snapshot is redone and counted once. Under torchrun
it is rank 0's process only.

Milestones (the quality-versus-compute curve): `milestones={step: path}` keeps the weights of that step, as
they are after that optimiser step: `milestone_save(path, record)` writes them with a JSON sidecar beside
them (path.with_suffix(".json"), the trainer's own format, `record` merged into it). They are
written into the work folder as the step passes (so a killed run keeps them) and copied to `path` by
`finish`; each sidecar records the step and the CPU- and wall-seconds spent so far. A resume state past a
milestone whose weights the work folder lacks (a run started before the milestone was asked for) is
discarded: the run starts over, since those weights cannot be made any more.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar

from tqdm import tqdm

from .curve import write_curve_csv
from .distributed import Distributed
from .fingerprint import settings_fingerprint
from .lifetime import stop_with_workflow
from .resume_state import CorruptResumeState, ResumeState
from .work_lock import WorkFolderLock

T = TypeVar("T")
MilestoneSave = Callable[[Path, Mapping[str, Any]], Any]


class TrainingRun:
    def __init__(self, name: str, *, work_dir: str | Path, curve_csv: str | Path, curve_fields: Sequence[str],
                 total_steps: int, snapshot_every: int, settings: Mapping[str, Any], state: Mapping[str, Any],
                 distributed: Distributed | None = None, progress: bool = True,
                 stop_after_step: int | None = None, milestones: Mapping[int, str | Path] | None = None,
                 milestone_save: MilestoneSave | None = None, final_snapshot: bool = True):
        """name: how messages and the progress bar call the run. settings: JSON-able description of the data
        and settings (see `fingerprint`). state: what a snapshot holds, by name (modules, optimisers,
        schedulers, torch.Generators, anything with state_dict/load_state_dict). stop_after_step: end
        this call after that step with a snapshot and no final outputs (the next call continues).
        milestones: {step: weights path} to keep on the way (see the module docstring), each step in
        [1, total_steps); milestone_save(path, record) writes them (see the module docstring).
        final_snapshot: whether `finish` snapshots the last step before the final weights are written (so
        that a call killed while writing them resumes there, and an identical rerun trains nothing); False
        where the work folder is removed once the weights exist (the workflow's keep_final_snapshots: false),
        a kill during the final write then resumes from the last periodic snapshot."""
        if total_steps < 1 or snapshot_every < 1:
            raise ValueError(f"{name}: total_steps and snapshot_every must be >= 1, got {total_steps} and "
                             f"{snapshot_every}")
        self.milestones = {int(step): Path(path) for step, path in (milestones or {}).items()}
        outside = sorted(step for step in self.milestones if not 1 <= step < total_steps)
        if outside:
            raise ValueError(f"{name}: milestone steps {outside} are outside [1, {total_steps - 1}] (the last step's "
                             "weights are the run's own output)")
        if self.milestones and milestone_save is None:
            raise ValueError(f"{name}: milestones need milestone_save to write their weights")
        self._milestone_save = milestone_save
        self.name = name
        self.work_dir, self.curve_csv, self.curve_fields = Path(work_dir), Path(curve_csv), list(curve_fields)
        self.total_steps, self.snapshot_every = total_steps, snapshot_every
        self.settings = dict(settings)
        self.fingerprint = settings_fingerprint(settings)
        self.state = dict(state)
        self.distributed = distributed or Distributed.single()
        self.progress = progress
        self.stop_at = total_steps if stop_after_step is None else max(0, min(stop_after_step, total_steps))
        self.final_snapshot = final_snapshot
        self.start_step = 0
        self.curve: list[dict[str, Any]] = []
        self._snapshots = ResumeState(self.work_dir)
        self._lock = WorkFolderLock(self.work_dir, owner=f"{name} trainer")
        self._elapsed_before = 0.0
        self._cpu_before = 0.0
        self._started = time.monotonic()
        self._bar: tqdm | None = None

    # ---- start -------------------------------------------------------------------------------------------
    def start(self) -> int:
        """Resume from the newest snapshot of this run, or start over; return the first step to train."""
        stop_with_workflow()
        if self.distributed.is_main:
            self._lock.acquire()  # before any snapshot is read: the folder is ours from here on
            if self._lock.previous:
                self.say(f"taking over {self.work_dir} from a trainer that no longer runs ({self._lock.previous})")
        extra = self._snapshots.newest_extra()
        stale = extra is not None and extra.get("fingerprint") != self.fingerprint
        # Under torchrun every rank must read the snapshot before rank 0 may delete it; otherwise a late rank
        # finds no snapshot, skips the barrier below, and the ranks' collectives no longer line up (a hang).
        self.distributed.barrier()
        if stale:
            if self.distributed.is_main:
                self.say(f"the resume state in {self.work_dir} was written by a run with other data or settings; "
                         "starting over")
                self._snapshots.clear()
                self._clear_milestones()
            self.distributed.barrier()
        lost = [step for step in sorted(self.milestones) if step <= self._snapshots.newest_step()
                and not self._milestone_kept(step)]
        self.distributed.barrier()
        if lost:
            if self.distributed.is_main:
                self.say(f"the resume state in {self.work_dir} is past step {lost[0]}, whose weights were not kept "
                         "(milestones asked for after it passed); starting over")
                self._snapshots.clear()
            self.distributed.barrier()
        try:
            step, extra = self._snapshots.restore(self.state)
        except CorruptResumeState:
            raise
        except (RuntimeError, KeyError, ValueError) as error:  # e.g. tensors shaped for another model
            raise ValueError(f"resume state in {self.work_dir} does not fit this model ({error}); delete that "
                             "folder to start over") from error
        if step:
            self.say(f"resuming from the snapshot at step {step} of {self.total_steps} in {self.work_dir}")
        self.start_step = step
        self.curve = list(extra.get("curve", []))
        self._elapsed_before = float(extra.get("elapsed_s", 0.0))
        self._cpu_before = float(extra.get("cpu_s", 0.0))
        self._started = time.monotonic()
        if self.progress and self.distributed.is_main and step < self.stop_at:
            self._bar = tqdm(total=self.total_steps, initial=step, desc=self.name, unit="step", dynamic_ncols=True)
        return step

    # ---- during training ---------------------------------------------------------------------------------
    def elapsed(self) -> float:
        """Training wall time in seconds, summed over the resumed runs."""
        return self._elapsed_before + time.monotonic() - self._started

    def cpu_seconds(self) -> float:
        """CPU seconds of this process since it started, plus those of the earlier calls of a resumed run (up to
        their last snapshot)."""
        return self._cpu_before + time.process_time()

    def log(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """Append a loss-curve row; `elapsed_s` is filled in when it is a curve field the row lacks."""
        row = dict(row)
        if "elapsed_s" in self.curve_fields and "elapsed_s" not in row:
            row["elapsed_s"] = round(self.elapsed(), 3)
        self.curve.append(row)
        return row

    def step_done(self, done: int, **postfix: Any) -> None:
        """After optimiser step `done` (1-based): move the progress bar (showing `postfix`, numbers to four
        decimals), keep a milestone's weights, and snapshot every `snapshot_every` steps and at `stop_at` (the
        last step's snapshot is `finish`'s)."""
        if self._bar is not None:
            self._bar.update(1)
            if postfix:
                self._bar.set_postfix({key: _short(value) for key, value in postfix.items()}, refresh=False)
        if done in self.milestones:
            self._keep_milestone(done)
        if done < self.total_steps and (done % self.snapshot_every == 0 or done == self.stop_at):
            self.snapshot(done)

    def snapshot(self, step: int) -> None:
        """Save the state after `step` steps, with the fingerprint, the curve and the elapsed time, and
        write the curve CSV."""
        if self.distributed.is_main:
            self._snapshots.save(step, self.state, {"fingerprint": self.fingerprint, "curve": self.curve,
                                                    "elapsed_s": self.elapsed(), "cpu_s": self.cpu_seconds()})
            write_curve_csv(self.curve_csv, self.curve, self.curve_fields)
        self.distributed.barrier()

    # ---- the end -----------------------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        """Whether this call trains to the last step (False when stopped early by stop_after_step)."""
        return self.stop_at >= self.total_steps

    def close(self) -> None:
        """Close the progress bar and give the work folder back (for a run stopped early; `finish` calls
        it after the final weights are written)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._lock.release()

    def provenance(self) -> dict[str, Any]:
        """What produced the weights, for their sidecar: the fingerprint and the settings it hashes (the
        data by content hash, every setting that shapes the weights)."""
        settings = json.loads(json.dumps(self.settings, sort_keys=True, default=str))
        return {"fingerprint": self.fingerprint, "training_settings": _compact(settings)}

    def cost(self) -> dict[str, float]:
        """What the training has cost so far, for its sidecar: wall and CPU seconds summed over resumed calls
        (`elapsed_s`, `cpu_s`); the report counts `cpu_s` (clipvqd.evaluation.compute)."""
        return {"elapsed_s": round(self.elapsed(), 3), "cpu_s": round(self.cpu_seconds(), 3)}

    def finish(self, save: Callable[[], T]) -> T | None:
        """Snapshot the last step (if this call trained and final_snapshot is set), then on rank 0 call `save`
        (which writes the final weights, e.g. with clipvqd.checkpoint.save_weights) and write the curve CSV.
        Returns what `save` returned (None on the other ranks)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self.final_snapshot and self.start_step < self.total_steps:
            self.snapshot(self.total_steps)
        result = None
        if self.distributed.is_main:
            result = save()
            write_curve_csv(self.curve_csv, self.curve, self.curve_fields)
            for step, path in sorted(self.milestones.items()):
                self._deliver_milestone(step, path)
        self.distributed.barrier()
        self.close()
        return result

    # ---- milestones --------------------------------------------------------------------------------------
    def _milestone_file(self, step: int) -> Path:
        return self.work_dir / f"milestone-{step:09d}.safetensors"

    def _milestone_kept(self, step: int) -> bool:
        """Whether the work folder holds this run's weights of milestone `step` (same fingerprint)."""
        try:
            meta = json.loads(self._milestone_file(step).with_suffix(".json").read_text())
        except (OSError, ValueError):
            return False
        return meta.get("fingerprint") == self.fingerprint and self._milestone_file(step).is_file()

    def _clear_milestones(self) -> None:
        for path in self.work_dir.glob("milestone-*"):
            path.unlink()

    def _keep_milestone(self, step: int) -> None:
        if not self.distributed.is_main:
            return
        self._milestone_save(self._milestone_file(step), {
            **self.provenance(), "step": step,
            "milestone": {"step": step, "of_steps": self.total_steps, "fraction": step / self.total_steps},
            "elapsed_s": round(self.elapsed(), 3), "cpu_s": round(self.cpu_seconds(), 3)})

    def _deliver_milestone(self, step: int, path: Path) -> None:
        """Copy milestone `step`'s weights and sidecar from the work folder to `path` (each atomically)."""
        if not self._milestone_kept(step):
            raise RuntimeError(f"{self.name}: the weights of milestone step {step} are missing from {self.work_dir}; "
                               "delete that folder and rerun")
        path.parent.mkdir(parents=True, exist_ok=True)
        source = self._milestone_file(step)
        for source, target in ((source, path), (source.with_suffix(".json"), path.with_suffix(".json"))):
            tmp = target.with_name(target.name + ".tmp")
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)

    def say(self, message: str) -> None:
        """Print `message`, prefixed with the run's name, on rank 0."""
        if self.distributed.is_main:
            print(f"{self.name}: {message}", flush=True)


def _compact(value: Any, longest: int = 256) -> Any:
    """JSON `value` with every string longer than `longest` (e.g. a serialised table) replaced by its
    sha256: the sidecar names the input without copying it."""
    if isinstance(value, dict):
        return {key: _compact(item, longest) for key, item in value.items()}
    if isinstance(value, list):
        return [_compact(item, longest) for item in value]
    if isinstance(value, str) and len(value) > longest:
        return {"sha256": hashlib.sha256(value.encode()).hexdigest(), "chars": len(value)}
    return value


def _short(value: Any) -> str:
    if hasattr(value, "detach"):  # a loss tensor
        value = value.detach()
    try:
        return f"{float(value):.4f}"
    except (TypeError, ValueError):
        return str(value)
