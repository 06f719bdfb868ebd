"""One trainer per work folder: an exclusive lock with the holder's process id inside.

Two trainers writing the snapshots of one work folder would overwrite each other's state (a rerun
started while an orphaned trainer of the previous run still lives, or a job submitted twice). The lock is
an `flock` on `<work>/trainer.lock`: the kernel releases it when its holder exits, however it exits (kill
-9 included), so a lock left by a dead trainer is taken over by the next one without any cleanup, and a
live holder is named with its pid and host. The file itself is never deleted (deleting a locked file lets
two processes lock two different files); an idle lock is an empty file.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: no lock (the workflow runs on Linux and macOS)
    fcntl = None

LOCK_NAME = "trainer.lock"
# Locks this process holds, by lock file: a run object left behind by an exception (kept alive by its
# traceback) must not lock its own process out of a retry in the same folder.
_HELD: dict[str, "WorkFolderLock"] = {}


class WorkFolderBusy(RuntimeError):
    """Another live trainer holds the work folder."""


class WorkFolderLock:
    """`acquire()` takes `<work_dir>/trainer.lock` or raises WorkFolderBusy naming the holder; `release()`
    (or the process's end) gives it back. `previous` is the record a dead holder left, if any."""

    def __init__(self, work_dir: str | Path, owner: str = "trainer"):
        self.work_dir = Path(work_dir)
        self.path = self.work_dir / LOCK_NAME
        self.owner = owner
        self.previous: str | None = None
        self._handle = None

    @property
    def held(self) -> bool:
        return self._handle is not None

    def acquire(self) -> "WorkFolderLock":
        if self._handle is not None or fcntl is None:
            return self
        earlier = _HELD.get(os.path.realpath(self.path))
        if earlier is not None:
            earlier.release()
        try:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            handle = open(self.path, "a+")
        except OSError as error:
            raise OSError(f"work folder {self.work_dir} cannot be written ({error.strerror or error}); "
                          "nothing was computed") from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "a process that has not written its id yet"
            handle.close()
            raise WorkFolderBusy(
                f"work folder {self.work_dir} is in use by another {self.owner} ({holder}); two trainers would "
                "overwrite each other's snapshots. Wait for it to end, or stop it, then rerun") from None
        handle.seek(0)
        self.previous = handle.read().strip() or None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        self._handle = handle
        _HELD[os.path.realpath(self.path)] = self
        return self

    def release(self) -> None:
        """Empty the file (no holder) and unlock it."""
        if self._handle is None:
            return
        if _HELD.get(os.path.realpath(self.path)) is self:
            del _HELD[os.path.realpath(self.path)]
        try:
            self._handle.seek(0)
            self._handle.truncate()
            self._handle.flush()
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
        finally:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> "WorkFolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
