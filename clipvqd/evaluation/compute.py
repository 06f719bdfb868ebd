"""What each method's training cost, from the files its training jobs leave: the trainers' sidecars (CPU-seconds,
optimiser steps and batch), Snakemake's benchmark TSVs (wall-seconds, and CPU-seconds where a stage's sidecar has
none) and the weights (parameters).

A stage's CPU-seconds are its trainer's own record (`cpu_s` in the sidecar: the process's CPU time, summed over
resumed calls; clipvqd.training.run) where it has one. Snakemake's `cpu_time` is the job's CPU time at the last
of its samples, taken every half second for the first 15 s and then every 30 s, so it misses up to 30 s of a
job's end: a one-thread job of 15 to 45 s reads about 15 (a 22 CPU-s fine-tune read 15.2). It is used only for
stages whose trainer records nothing (clip2latent's latent pairs, sidecars of an older clipvqd); each stage says
which (`cpu_source`).

A method's training is a list of stages (e.g. CLIP-VQDiffusion: tokenizer, pretraining, CFG fine-tune). A stage
shared with other methods (the tokenizer of the three diffusion methods) is counted in each of them and marked
shared; the CLIPs, the embedding cache and the data, used by every method alike, are not counted. A stage that
trains nothing (clip2latent's latent sampling) has a benchmark but no sidecar or weights. With several training
seeds, each seed's cost is measured and the mean is reported (the cost of one training run).
"""

from __future__ import annotations

import csv
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence


class ComputeCostError(ValueError):
    """A benchmark, sidecar or weights file that cannot say what a stage cost."""


@dataclass(frozen=True)
class TrainingStage:
    """One training job of a method: its label, its Snakemake benchmark file, its sidecar and weights."""

    label: str
    benchmark: Path
    sidecar: Path | None = None
    weights: Path | None = None
    shared: bool = False
    """True when other methods count the same job (the tokenizer)."""
    sampled: bool = False
    """True for the model(s) sampling uses (clip2latent: generator and prior); their parameters are the method's."""

    @classmethod
    def from_dict(cls, label: str, values: Mapping[str, Any]) -> "TrainingStage":
        if "benchmark" not in values:
            raise ComputeCostError(f"training stage '{label}' lacks its benchmark file")
        optional = {key: Path(values[key]) if values.get(key) else None for key in ("sidecar", "weights")}
        return cls(label, Path(values["benchmark"]), shared=bool(values.get("shared", False)),
                   sampled=bool(values.get("sampled", False)), **optional)


def benchmark_seconds(path: str | Path) -> tuple[float, float]:
    """(cpu_time, wall s) of a Snakemake benchmark TSV, averaged over its repeats."""
    path = Path(path)
    try:
        rows = list(csv.DictReader(path.open(newline=""), delimiter="\t"))
    except OSError as error:
        raise ComputeCostError(f"benchmark file {path}: {error.strerror}") from None
    try:
        cpu = [float(row["cpu_time"]) for row in rows]
        wall = [float(row["s"]) for row in rows]
    except (KeyError, TypeError, ValueError):
        raise ComputeCostError(f"benchmark file {path} has no numeric 's' and 'cpu_time' columns") from None
    if not rows:
        raise ComputeCostError(f"benchmark file {path} has no rows")
    return sum(cpu) / len(cpu), sum(wall) / len(wall)


def optimiser_samples(sidecar: str | Path, meta: Mapping[str, Any] | None = None) -> tuple[int, int]:
    """(optimiser steps, training examples seen = steps x global batch) recorded in a trainer's sidecar (`meta`:
    its contents, where the caller has read it already)."""
    meta = read_sidecar(sidecar) if meta is None else meta
    try:
        steps = int(meta["step"])
        batch = int(meta["train_config"]["batch_size"])
    except (ValueError, KeyError, TypeError):
        raise ComputeCostError(f"sidecar {sidecar} records no step and train_config.batch_size") from None
    return steps, steps * batch


def parameter_count(weights: str | Path) -> int:
    """Number of values in a safetensors file, read from its header (no tensor is loaded)."""
    weights = Path(weights)
    try:
        with weights.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > weights.stat().st_size - 8:
                raise ValueError("header longer than the file")
            header = json.loads(handle.read(length))
    except OSError as error:
        raise ComputeCostError(f"weights {weights}: {error.strerror}") from None
    except (struct.error, ValueError):
        raise ComputeCostError(f"weights {weights} is not a safetensors file") from None
    total = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        count = 1
        for size in entry["shape"]:
            count *= int(size)
        total += count
    return total


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """A trainer's sidecar as a dict; a missing or malformed one raises ComputeCostError naming it."""
    path = Path(path)
    try:
        meta = json.loads(path.read_text())
    except OSError as error:
        raise ComputeCostError(f"sidecar {path}: {error.strerror}") from None
    except ValueError:
        raise ComputeCostError(f"sidecar {path} is not JSON") from None
    if not isinstance(meta, dict):
        raise ComputeCostError(f"sidecar {path} is not a JSON object")
    return meta


def stage_cpu_seconds(benchmark: str | Path | None, sidecar: str | Path | None,
                      meta: Mapping[str, Any] | None = None) -> tuple[float, str]:
    """(CPU seconds, where they come from: "sidecar" or "benchmark") of one training stage: its trainer's own
    `cpu_s` record where the sidecar has one, else the benchmark file's CPU time. `meta`: the sidecar's
    contents, where the caller has read it already."""
    if sidecar:
        meta = read_sidecar(sidecar) if meta is None else meta
        if "cpu_s" in meta:
            try:
                return float(meta["cpu_s"]), "sidecar"
            except (TypeError, ValueError):
                raise ComputeCostError(f"sidecar {sidecar}: cpu_s is not a number: {meta['cpu_s']!r}") from None
    if not benchmark:
        raise ComputeCostError(f"a training stage has neither a cpu_s record (sidecar {sidecar}) nor a benchmark file")
    return benchmark_seconds(benchmark)[0], "benchmark"


def training_cost(stages: Sequence[TrainingStage]) -> dict[str, Any]:
    """A method's cost summed over its stages, and each stage's own numbers.

    `parameters` counts the models sampling uses (the stages marked `sampled`; without marks, the last trained
    stage's model)."""
    if not stages:
        raise ComputeCostError("a method needs at least one training stage")
    rows = []
    for stage in stages:
        _, wall = benchmark_seconds(stage.benchmark)
        meta = read_sidecar(stage.sidecar) if stage.sidecar else None
        cpu, source = stage_cpu_seconds(stage.benchmark, stage.sidecar, meta)
        steps, examples = optimiser_samples(stage.sidecar, meta) if stage.sidecar else (0, 0)
        rows.append({"stage": stage.label, "shared": stage.shared, "cpu_s": cpu, "cpu_source": source,
                     "wall_s": wall, "steps": steps, "examples": examples,
                     "parameters": parameter_count(stage.weights) if stage.weights else None})
    trained = [row for row in rows if row["parameters"] is not None]
    sampled = [row["parameters"] for row, stage in zip(rows, stages) if stage.sampled and stage.weights]
    return {
        "cpu_s": sum(row["cpu_s"] for row in rows),
        "wall_s": sum(row["wall_s"] for row in rows),
        "steps": sum(row["steps"] for row in rows),
        "examples": sum(row["examples"] for row in rows),
        "parameters": sum(sampled) if sampled else (trained[-1]["parameters"] if trained else None),
        "stages": rows,
    }


def methods_training_cost(spec: Mapping[str, Sequence[Mapping[str, Mapping[str, Any]]]]) -> dict[str, dict[str, Any]]:
    """{method: [one {stage label: {benchmark[, sidecar, weights, shared]}} per training seed]} (stages in
    training order) -> each method's cost (training_cost), averaged over its seeds, with the per-seed CPU-s."""
    costs = {}
    for method, seeds in spec.items():
        if not seeds:
            raise ComputeCostError(f"method '{method}' has no training seed to measure")
        per_seed = [training_cost([TrainingStage.from_dict(label, values) for label, values in stages.items()])
                    for stages in seeds]
        mean = dict(per_seed[0])
        for key in ("cpu_s", "wall_s", "steps", "examples"):
            mean[key] = sum(cost[key] for cost in per_seed) / len(per_seed)
        mean["seeds"] = len(per_seed)
        mean["cpu_s_per_seed"] = [cost["cpu_s"] for cost in per_seed]
        costs[method] = mean
    return costs
