"""Shared helpers of the benchmark scripts: the run's environment, timing, and the JSON result file.

Every result file carries enough context to judge a number: the device, torch version, thread count,
git revision, and the machine's load average before and after the run (a benchmark taken while other
work ran on the same cores is marked `contended`, and its absolute numbers should not be quoted; the
ratios measured inside one run are what the scripts are for).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

REPO = Path(__file__).resolve().parents[1]


def set_threads(threads: int) -> int:
    """Fix torch's intra-op thread count (and OpenMP's, for libraries that read it later)."""
    import torch

    if threads < 1:
        raise SystemExit(f"--threads must be >= 1, got {threads}")
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
    return torch.get_num_threads()


def _git_revision() -> str | None:
    try:
        result = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"], cwd=REPO,
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def environment(device: str) -> dict[str, Any]:
    """What ran the benchmark. Call at the start; `finish` adds the end-of-run load."""
    import torch

    info: dict[str, Any] = {
        "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": device,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "git": _git_revision(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "loadavg_start": loadavg(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        index = torch.device(device).index or 0
        props = torch.cuda.get_device_properties(index)
        info.update({"gpu": torch.cuda.get_device_name(index), "gpu_memory_gib": round(props.total_memory / 2**30, 1),
                     "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()})
    return info


def finish(env: dict[str, Any], threads: int) -> dict[str, Any]:
    """Add the end-of-run load and a `contended` flag: the 1-minute load average exceeded the cores left
    over by this run's own threads at the start or the end (only meaningful on CPU)."""
    env["loadavg_end"] = loadavg()
    cores = os.cpu_count() or 1
    loads = [x[0] for x in (env.get("loadavg_start"), env["loadavg_end"]) if x]
    # Our own threads add up to `threads` to the load; anything beyond that competed with us.
    env["contended"] = bool(loads) and max(loads) > threads + 0.5 and max(loads) > 0.5 * cores
    env["finished_utc"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return env


def timed(fn: Callable[[], Any], sync: Callable[[], None] | None = None) -> tuple[float, Any]:
    """Wall seconds of one call (with `sync` before and after, e.g. torch.cuda.synchronize)."""
    if sync:
        sync()
    start = time.perf_counter()
    value = fn()
    if sync:
        sync()
    return time.perf_counter() - start, value


def summary(times: list[float]) -> dict[str, Any]:
    return {"median_s": round(statistics.median(times), 6), "min_s": round(min(times), 6),
            "max_s": round(max(times), 6), "runs_s": [round(t, 6) for t in times]}


def ratio(a: float | None, b: float | None, digits: int = 3) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, digits)


def tensors_sha256(tensors: Iterable[Any]) -> str:
    """sha256 of the tensors' bytes in the given order (contiguous, on the CPU): two forms of a step left the
    same weights exactly when their digests agree."""
    h = hashlib.sha256()
    for tensor in tensors:
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def state_sha256(*states: dict[str, Any]) -> str:
    """tensors_sha256 of state dicts, each in its sorted key order."""
    return tensors_sha256(state[key] for state in states for key in sorted(state))


def check_out(path: str | Path) -> Path:
    """Refuse an output path inside the workflow's results/ (call before measuring, to fail fast)."""
    path = Path(path)
    resolved = path.resolve()
    results = (REPO / "results").resolve()
    if resolved == results or results in resolved.parents:
        raise SystemExit(f"refusing to write {path}: results/ belongs to the workflow; use benchmarks/results/")
    return path


def write_json(path: str | Path, payload: dict[str, Any]) -> Path:
    path = check_out(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    return path


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """A plain fixed-width table on stdout."""
    cells = [[_fmt(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)))


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    return str(value)
