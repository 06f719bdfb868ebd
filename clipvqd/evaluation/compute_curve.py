"""Quality versus training compute: each method's metrics at several points of its training, against the CPU
seconds spent to get there (the overlay `evaluation.compute_curve`; the report draws it).

A point is one (method, fraction of the training budget): its metrics table (the `metrics` rule's output for
the variant `budget=<fraction>`, or `default` for the whole budget) and, per training seed, the training stages
that made the sampled model, as {label: {benchmark, sidecar[, milestone]}}. At fraction f every stage of a
method's chain has had f of its steps: the first stage is the snapshot its trainer kept after f of its steps
(`milestone`: the run itself, whose benchmark covers the whole run), a second stage (CFG fine-tune, the
controls' second stage, clip2latent's pairs and prior) is its own run of f of its steps from that snapshot.

A stage's CPU seconds are those its trainer recorded in the sidecar (`cpu_s`: the process CPU time up to that
step, summed over resumed calls; clipvqd.training.run), else the CPU time of its Snakemake benchmark file
(clip2latent's pair sampling, and tokenizers trained before it recorded its own); a milestone must have its own
record. As in
clipvqd.evaluation.compute, the tokenizer shared by the three diffusion methods is counted in each of them,
and with several seeds the mean cost of one training run is reported.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import pandas as pd

from clipvqd.evaluation.compute import ComputeCostError, read_sidecar
from clipvqd.evaluation.compute import stage_cpu_seconds as cost_cpu_seconds

# The metrics the curve shows, one panel each: prompt alignment by the oracle and by the judge CLIP, and the
# distribution metric that needs no Inception.
CURVE_METRICS = ("attr_acc", "clipscore_judge_mean", "cmmd")
POINT_COLUMNS = ("method", "fraction", "variant", "cpu_s", "steps", "seeds")


def stage_cpu_seconds(label: str, stage: Mapping[str, Any]) -> tuple[float, int]:
    """(CPU seconds, optimiser steps) of one training stage: the sidecar's own record where it has one, else
    the benchmark file's CPU time (clipvqd.evaluation.compute.stage_cpu_seconds), and the sidecar's steps (0
    without a sidecar). A milestone's benchmark covers its whole run, so a milestone must have its own record."""
    try:
        meta = read_sidecar(stage["sidecar"]) if stage.get("sidecar") else {}
        if stage.get("milestone") and "cpu_s" not in meta:
            raise ComputeCostError(f"the snapshot sidecar {stage.get('sidecar')} records no cpu_s (written by an "
                                   "older clipvqd?); rerun its training rule")
        cpu, _ = cost_cpu_seconds(stage.get("benchmark"), stage.get("sidecar"), meta)
    except ComputeCostError as error:
        raise ComputeCostError(f"training stage '{label}': {error}") from None
    return cpu, int(meta.get("step", 0))


def point_cost(seeds: Sequence[Mapping[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """The mean over seeds of a point's CPU seconds and optimiser steps (summed over its stages)."""
    if not seeds:
        raise ComputeCostError("a curve point needs the training stages of at least one seed")
    per_seed = []
    for stages in seeds:
        costs = [stage_cpu_seconds(label, stage) for label, stage in stages.items()]
        per_seed.append((sum(cpu for cpu, _ in costs), sum(steps for _, steps in costs)))
    return {"cpu_s": sum(cpu for cpu, _ in per_seed) / len(per_seed),
            "steps": sum(steps for _, steps in per_seed) / len(per_seed), "seeds": len(per_seed),
            "cpu_s_per_seed": [cpu for cpu, _ in per_seed]}


def curve_points(spec: Mapping[str, Sequence[Mapping[str, Any]]]) -> pd.DataFrame:
    """{method: [{fraction, table, stages: [per seed {label: stage}]}]} -> one row per (method, fraction) with
    its cost and, for each of CURVE_METRICS, value / ci_low / ci_high (NaN where the table lacks the metric)."""
    from clipvqd.evaluation.table import read_metrics_table

    rows = []
    for method, points in spec.items():
        fractions = [float(point["fraction"]) for point in points]
        if len(set(fractions)) != len(fractions):
            raise ComputeCostError(f"compute curve of '{method}': fraction repeated in {fractions}")
        for point in points:
            table = read_metrics_table(point["table"])
            mine = table[table["method"] == method]
            if mine.empty:
                raise ComputeCostError(f"compute curve of '{method}': {point['table']} has no row of that method")
            row = {"method": method, "fraction": float(point["fraction"]), "variant": mine["variant"].iloc[0]}
            cost = point_cost(point["stages"])
            row.update(cpu_s=cost["cpu_s"], steps=cost["steps"], seeds=cost["seeds"])
            values = mine.set_index("metric")
            for metric in CURVE_METRICS:
                for column in ("value", "ci_low", "ci_high"):
                    row[f"{metric}_{column}" if column != "value" else metric] = (
                        float(values.at[metric, column]) if metric in values.index else float("nan"))
            rows.append(row)
    columns = list(POINT_COLUMNS) + [f"{m}{suffix}" for m in CURVE_METRICS for suffix in ("", "_ci_low", "_ci_high")]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values(["method", "fraction"], key=lambda c: c.map(_method_order) if c.name == "method" else c,
                             kind="stable").reset_index(drop=True)


def _method_order(method: str) -> int:
    from clipvqd.evaluation.table import ALLOWED_METHODS

    return ALLOWED_METHODS.index(method) if method in ALLOWED_METHODS else len(ALLOWED_METHODS)
