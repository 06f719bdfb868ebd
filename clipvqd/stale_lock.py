"""`python -m clipvqd.stale_lock [folder]`: clear the lock an interrupted Snakemake left, when it is safe.

Snakemake locks its working folder (`.snakemake/locks/`) while it runs, so that two runs cannot write the
same outputs. A run that is killed (`kill -9`, a lost session, an out-of-memory kill) leaves the lock
behind, and the next `snakemake` refuses to start until someone runs `snakemake --unlock`. `make run`
calls this module first: if the folder is locked and no Snakemake process of this folder is alive, the
lock is stale, and it is removed with Snakemake's own `--unlock`, saying so; if one is alive, nothing is
touched and the message names it. (`make run` then passes `--rerun-incomplete`, so the jobs the
interrupted run left half done run again, trainers resuming from their snapshots.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _is_snakemake(argv: list[str]) -> bool:
    """Whether a command line runs Snakemake itself (not a job it started)."""
    for index, arg in enumerate(argv[:3]):
        name = os.path.basename(arg)
        if name == "snakemake" or (name == "-m" and index + 1 < len(argv) and argv[index + 1] == "snakemake"):
            return True
        if name.startswith("python") and index + 2 < len(argv) and argv[index + 1:index + 3] == ["-m", "snakemake"]:
            return True
    return False


def live_snakemake(folder: str | Path) -> list[int] | None:
    """Process ids of the Snakemake processes working in `folder` (other than this process), or None when
    that cannot be known (no /proc)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    real = os.path.realpath(folder)
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            if not _is_snakemake(argv) or os.path.realpath(entry / "cwd") != real:
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # ended meanwhile, or another user's process
            continue
        if state not in ("Z", "X"):
            found.append(int(entry.name))
    return sorted(found)


def locks(folder: str | Path) -> list[Path]:
    directory = Path(folder) / ".snakemake" / "locks"
    return sorted(directory.glob("*.lock")) if directory.is_dir() else []


def unlock_if_stale(folder: str | Path = ".", snakemake: list[str] | None = None) -> str:
    """Remove a stale Snakemake lock of `folder`; return what was done, in a sentence. Raises SystemExit
    when the folder is locked by a live Snakemake (or liveness cannot be checked)."""
    if not locks(folder):
        return "no Snakemake lock in this folder"
    alive = live_snakemake(folder)
    if alive is None:
        raise SystemExit(f"{Path(folder).resolve()} is locked by Snakemake and this system cannot tell whether that "
                         "run is still alive; if it is not, run `snakemake --unlock` and start again")
    if alive:
        raise SystemExit(f"another Snakemake (pid {', '.join(map(str, alive))}) is running in "
                         f"{Path(folder).resolve()}; wait for it to end or stop it, then start again")
    command = snakemake or [sys.executable, "-m", "snakemake"]
    result = subprocess.run([*command, "--unlock", "--cores", "1"], cwd=folder, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"`snakemake --unlock` failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return ("the previous run in this folder was interrupted and left its lock behind (no Snakemake of this folder "
            "is alive): unlocked. Jobs it left unfinished run again; trainers resume from their last snapshot")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    print(f"clipvqd: {unlock_if_stale(argv[0] if argv else '.')}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
