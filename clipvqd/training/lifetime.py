"""A job does not outlive the Snakemake that started it.

Snakemake runs each job as `sh -c "<command>"`; when Snakemake itself is killed (`kill -9`, an
out-of-memory kill, a closed terminal without a signal to the process group), the shell and the job keep
running as orphans, and a rerun would start a second trainer on the same work folder while the first one
still writes it. The workflow therefore exports its own process id (`CLIPVQD_STOP_WITH_PID`, set by
workflow/rules/common.smk when Snakemake reads the Snakefile), and `stop_with_workflow` (called by every
`python -m clipvqd` command and by every TrainingRun) watches it from a daemon thread: once that process
is gone, or is another process under a reused id, the job stops itself with SIGTERM. A trainer loses at
most the steps since its last snapshot, which a rerun resumes from. On Linux the job also asks the
kernel for SIGTERM when its own parent (the job's shell, or torchrun's agent) dies (PR_SET_PDEATHSIG).

Outside Snakemake (the variable unset) nothing is watched: a command started by hand with nohup keeps
running after its terminal closes.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

ENVIRONMENT_VARIABLE = "CLIPVQD_STOP_WITH_PID"
POLL_SECONDS = 1.0
_PR_SET_PDEATHSIG = 1
_guarded = False


def process_identity(pid: int) -> str | None:
    """An id for the running process `pid` that changes when the id is reused (its start time), or None
    when no such process runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return None
    except OSError:  # no /proc (macOS): existence only
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return "alive"
    state, start_time = fields[0], fields[19]
    return None if state in ("Z", "X") else start_time


def _set_parent_death_signal() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _stop(reason: str) -> None:
    print(f"clipvqd: {reason}; stopping this job (a trainer resumes from its last snapshot when the "
          "workflow is rerun)", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(10)  # a SIGTERM handler (e.g. torch's elastic agent) had its chance to end the process
    os._exit(128 + signal.SIGTERM)


def _watch(pid: int, identity: str) -> None:
    while True:
        time.sleep(POLL_SECONDS)
        if process_identity(pid) != identity:
            _stop(f"the Snakemake process {pid} that started this job has ended")


def stop_with_workflow() -> int | None:
    """Start watching the process named by CLIPVQD_STOP_WITH_PID (once per process); return its pid, or
    None when there is nothing to watch."""
    global _guarded
    value = os.environ.get(ENVIRONMENT_VARIABLE, "").strip()
    if _guarded or not value.isdigit() or int(value) == os.getpid():
        return None
    _guarded = True
    pid = int(value)
    _set_parent_death_signal()
    identity = process_identity(pid)
    if identity is None:  # not visible from here (another pid namespace, e.g. a container): nothing to watch
        return None
    threading.Thread(target=_watch, args=(pid, identity), name="clipvqd-stop-with-workflow", daemon=True).start()
    return pid
