"""Machine-speed calibration: a small fixed torch workload on one thread, timed, so that a run's times can be
read against the machine that produced them (`python -m clipvqd calibrate`; `make run` prints it first, the
workflow's `calibrate_machine` rule records it for the report).

The workload is what the default run's trainers spend their time on, at fixed shapes and seeds: a float32
matrix product, a small convolutional network's forward and backward pass, and many small operations (a small
MLP's training steps with Adam, where per-operation overhead dominates, as in the CPU-sized models). One
repeat runs all three; a warm-up repeat is dropped, and the median over `repeats` is reported.

Two clocks: wall seconds, and the process's CPU seconds. On a shared machine the wall time grows with the
load while the CPU time stays close to the machine's own speed; their ratio (`cpu_share`) says how much of a
core the workload had. Compare machines by `cpu_seconds`; a `cpu_share` well below 1 means the wall time was
measured under load.
"""

from __future__ import annotations

import os
import platform
import statistics
import time

WORKLOAD_VERSION = 1  # bump when the workload changes: calibrations of different versions do not compare
WORKLOAD = {
    "version": WORKLOAD_VERSION,
    "matmul": "float32 (384 x 384) @ (384 x 384), 120 products",
    "conv": "float32 conv 3->32->32 (3x3, ReLU) on a batch of 32 at 32x32 px, forward and backward, 12 steps",
    "small_ops": "float32 MLP 64-128-64 on a batch of 32, forward, backward and an Adam step, 300 steps",
    "threads": 1,
}
DEFAULT_REPEATS = 5

# The calibration of the machine on which the README's run times were measured (the `calibrate_machine` job of
# the default run the README's "Result of the default run" quotes, results/default/calibration.json). Compare by
# cpu_seconds: that run shared the machine with other jobs (load average 5.3 at the start, 70% of a core), so
# its wall time is inflated and its CPU time is close to the machine's own speed.
README_REFERENCE: dict | None = {"cpu_seconds": 0.8091, "seconds": 1.2558, "cpu_share": 0.695, "workload_version": 1,
                                 "measured": "2026-11-29, commit 03aa503, the README's default run"}


class CalibrationError(ValueError):
    pass


def _parts():
    """The three fixed parts as {name: callable}, their inputs made once from a fixed seed."""
    import torch

    generator = torch.Generator().manual_seed(0)
    a = torch.randn(384, 384, generator=generator)
    b = torch.randn(384, 384, generator=generator)

    def matmul():
        out = a
        for _ in range(120):
            out = torch.tanh(out @ b * 0.05)  # tanh keeps the values bounded, so every product costs the same
        return float(out[0, 0])

    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(32, 32, 3, padding=1), torch.nn.ReLU())
    images = torch.randn(32, 3, 32, 32, generator=generator)

    def conv_steps():
        for _ in range(12):
            conv.zero_grad(set_to_none=True)
            conv(images).square().mean().backward()
        return float(conv[0].weight.grad.abs().sum())

    mlp = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.GELU(), torch.nn.Linear(128, 64))
    optimiser = torch.optim.Adam(mlp.parameters(), lr=1e-3)
    inputs = torch.randn(32, 64, generator=generator)

    def small_ops():
        for _ in range(300):
            optimiser.zero_grad(set_to_none=True)
            (mlp(inputs) - inputs).square().mean().backward()
            optimiser.step()
        return float(mlp[0].weight.detach()[0, 0])

    return {"matmul": matmul, "conv": conv_steps, "small_ops": small_ops}


def _timed(function) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    return time.perf_counter() - wall, time.process_time() - cpu


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def calibrate(repeats: int = DEFAULT_REPEATS) -> dict:
    """Time the fixed workload `repeats` times (after one warm-up) on one torch thread; return the record:
    `seconds` and `cpu_seconds` (medians of one repeat of all parts), per part, every repeat, `cpu_share`,
    the load average before it ran, and what machine and torch it ran on."""
    import torch

    if repeats < 1:
        raise CalibrationError(f"repeats must be at least 1, got {repeats}")
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    from clipvqd.device import torch_threads  # torch only when the workload runs (the report imports this module)

    with torch_threads(1):
        parts = _parts()
        for function in parts.values():  # warm-up: first-call allocation and kernel selection
            function()
        runs = []
        for _ in range(repeats):
            runs.append({name: _timed(function) for name, function in parts.items()})
    totals = [(sum(w for w, _ in run.values()), sum(c for _, c in run.values())) for run in runs]
    seconds = statistics.median(w for w, _ in totals)
    cpu_seconds = statistics.median(c for _, c in totals)
    return {
        "seconds": round(seconds, 4),
        "cpu_seconds": round(cpu_seconds, 4),
        "cpu_share": round(sum(c for _, c in totals) / sum(w for w, _ in totals), 3),
        "parts": {name: {"seconds": round(statistics.median(run[name][0] for run in runs), 4),
                         "cpu_seconds": round(statistics.median(run[name][1] for run in runs), 4)}
                  for name in runs[0]},
        "repeats": repeats,
        "all_seconds": [round(w, 4) for w, _ in totals],
        "all_cpu_seconds": [round(c, 4) for _, c in totals],
        "workload": WORKLOAD,
        "load_average_before": [round(v, 2) for v in load_before] if load_before else None,
        "machine": {"cpu": _cpu_model(), "logical_cpus": os.cpu_count(), "system": platform.system(),
                    "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _reference_text(record: dict, reference: dict | None) -> str:
    if not reference:
        return "the README's times were measured before this calibration existed (no reference recorded)"
    if reference.get("workload_version", WORKLOAD_VERSION) != record["workload"]["version"]:
        return "the README's reference was measured with another version of the workload (not comparable)"
    ratio = record["cpu_seconds"] / reference["cpu_seconds"]
    return (f"the README's times were measured at {reference['cpu_seconds']:.2f} CPU-s: expect about {ratio:.2f}x "
            "their CPU-seconds here")


def summary_line(record: dict, reference: dict | None = None) -> str:
    """One line for a terminal: this machine's calibration and, when known, the README's."""
    return (f"machine-speed calibration: {record['cpu_seconds']:.2f} CPU-s per repeat (wall {record['seconds']:.2f} s, "
            f"{record['cpu_share']:.0%} of a core; median of {record['repeats']}, 1 thread); "
            + _reference_text(record, README_REFERENCE if reference is None else reference))


def design_entry(record: dict) -> dict:
    """protocol.json's design.machine_speed: this run's calibration and the README's reference."""
    return {"this_run": record, "readme_reference": README_REFERENCE,
            "compare_by": "cpu_seconds (the process's CPU time: close to the machine's own speed under load; "
                          "seconds is wall time, and cpu_share their ratio)"}


def report_sentence(entry: dict | None) -> str | None:
    """The run-time section's line, from design.machine_speed (None when the run recorded no calibration)."""
    if not entry:
        return None
    record = entry["this_run"]
    return (f"This machine: calibration {record['cpu_seconds']:.2f} CPU-s (wall {record['seconds']:.2f} s, "
            f"{record['cpu_share']:.0%} of a core; a fixed one-thread torch workload, median of {record['repeats']} "
            f"repeats, measured at the start of the run); " + _reference_text(record, entry.get("readme_reference"))
            + ".")
