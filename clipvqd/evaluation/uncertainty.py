"""Intervals of one branch's metrics and paired comparisons between branches, from what each metrics job
writes besides its table (docs/design.md §6):

* the **units table** (`<variant>.units.csv`, UNITS_COLUMNS): for every seed and alignment metric, one row
  per prompt with the sum of its scores (`numerator`), how many scores that is (`denominator`) and what
  the table's `n` counts (`n`: images; prompts for best-of-16). A metric is sum(numerator) /
  sum(denominator) over its prompts;
* the **distribution features** (`<variant>.features.safetensors`): the distribution set's features in
  prompt order (image i was prompted with reference i's caption) for every seed, and the reference's, in
  the FID extractor's space (`fid/...`) and in the judge CLIP's (`clip/...`, for CMMD).

The metrics job turns them into intervals (`branch_intervals`), the report into paired comparisons with
CLIP-VQDiffusion (`compare_branches`): the same seeds, the same resampled prompts or images for both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from clipvqd.evaluation.bootstrap import (
    BootstrapSettings,
    PairedComparison,
    Statistic,
    interval,
    joint_replicates,
    paired_comparison,
    point_estimate,
)
from clipvqd.evaluation.resampled import (
    fid_statistic,
    mean_statistic,
    mmd_statistic,
    polynomial_gram,
    precision_recall_indicators,
    ratio_statistic,
)

UNITS_COLUMNS = ("seed", "metric", "unit", "numerator", "denominator", "n")
FEATURE_SPACES = ("fid", "clip")
# Bootstrap cost caps (a paper-scale set would not fit): KID and CMMD hold three n x n Gram matrices, FID
# forms B weighted d x d covariances of n images. Above them the interval is left out and the protocol says so.
MAX_GRAM_UNITS = 5000
MAX_FID_INTERVAL_COST = 5e8  # n * d^2; the default run's distribution set (1000 images, 128-d) is 1.6e7
# FID is a plug-in statistic: a resample holds about 63% distinct images, which shifts its replicates upwards
# (on the default run the percentile interval of the paired control's FID 0.016 was [0.015, 0.023]); its
# interval is the estimate -/+ z bootstrap standard errors. Every other metric gets the percentile interval.
INTERVAL_KIND = {"fid": "normal"}
# A normal interval can reach below what the metric can take; FID is a squared distance, so its lower end
# stops at 0 (a small FID with a wide interval, e.g. 20 images, would otherwise report a negative bound).
LOWER_BOUNDS = {"fid": 0.0}


def interval_kind(metric: str) -> str:
    return INTERVAL_KIND.get(metric, "percentile")


class UncertaintyError(ValueError):
    pass


# --------------------------------------------------------------------------------------------------
# What the metrics job writes
# --------------------------------------------------------------------------------------------------


def write_units(frame: pd.DataFrame, path: str | Path) -> Path:
    missing = [c for c in UNITS_COLUMNS if c not in frame.columns]
    if missing:
        raise UncertaintyError(f"units table lacks column(s) {', '.join(missing)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame[list(UNITS_COLUMNS)].sort_values(["metric", "seed", "unit"], kind="stable").to_csv(
        path, index=False, float_format="%.12g")
    return path


def read_units(path: str | Path) -> pd.DataFrame:
    frame = pd.read_csv(path, dtype={"unit": str, "metric": str})
    missing = [c for c in UNITS_COLUMNS if c not in frame.columns]
    if missing:
        raise UncertaintyError(f"units table {path} lacks column(s) {', '.join(missing)}")
    return frame


@dataclass
class DistributionFeatures:
    """The distribution set's features of one branch: {space: {"reference": (n, d), "generated": {seed: (n, d)}}},
    rows in the order of `prompt_ids`; `neighborhood` is precision/recall's k."""

    prompt_ids: list[str]
    spaces: dict[str, dict] = field(default_factory=dict)
    neighborhood: int = 3
    identities: dict[str, str] = field(default_factory=dict)

    @property
    def seeds(self) -> list[int]:
        space = next(iter(self.spaces.values()), {"generated": {}})
        return sorted(space["generated"])

    def write(self, path: str | Path) -> Path:
        from safetensors.torch import save_file

        tensors = {}
        for space, content in self.spaces.items():
            tensors[f"{space}/reference"] = content["reference"].to(torch.float32).contiguous().clone()
            for seed, generated in content["generated"].items():
                tensors[f"{space}/generated/seed={seed}"] = generated.to(torch.float32).contiguous().clone()
        metadata = {"prompt_ids": json.dumps(self.prompt_ids), "neighborhood": str(self.neighborhood),
                    "identities": json.dumps(self.identities, sort_keys=True)}
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(path), metadata=metadata)
        return path

    @classmethod
    def read(cls, path: str | Path) -> "DistributionFeatures":
        from safetensors import safe_open

        spaces: dict[str, dict] = {}
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            for key in handle.keys():
                space, rest = key.split("/", 1)
                content = spaces.setdefault(space, {"reference": None, "generated": {}})
                if rest == "reference":
                    content["reference"] = handle.get_tensor(key)
                else:
                    content["generated"][int(rest.split("seed=", 1)[1])] = handle.get_tensor(key)
        return cls(prompt_ids=json.loads(metadata.get("prompt_ids", "[]")), spaces=spaces,
                   neighborhood=int(metadata.get("neighborhood", 3)),
                   identities=json.loads(metadata.get("identities", "{}")))


# --------------------------------------------------------------------------------------------------
# Statistics per metric
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricStatistics:
    """One metric of one branch, ready to bootstrap: a statistic per seed over `units` shared units."""

    seeds: tuple[int, ...]
    unit_ids: tuple[str, ...]
    per_seed: tuple[Statistic, ...]

    @property
    def units(self) -> list[int]:
        return [len(self.unit_ids)] * len(self.seeds)


def alignment_statistics(units: pd.DataFrame, metric: str) -> MetricStatistics | None:
    rows = units[units["metric"] == metric]
    if rows.empty:
        return None
    seeds, per_seed, ids = sorted(int(s) for s in rows["seed"].unique()), [], None
    for seed in seeds:
        part = rows[rows["seed"] == seed].sort_values("unit", kind="stable")
        if ids is None:
            ids = tuple(part["unit"].astype(str))
        elif tuple(part["unit"].astype(str)) != ids:
            raise UncertaintyError(f"metric {metric}: seed {seed} was measured on other prompts than seed {seeds[0]}")
        per_seed.append(ratio_statistic(part["numerator"], part["denominator"]))
    return MetricStatistics(tuple(seeds), ids, tuple(per_seed))


def distribution_statistics(features: DistributionFeatures, metric: str) -> tuple[MetricStatistics | None, str | None]:
    """(statistics, None), or (None, why the interval is left out)."""
    space = "clip" if metric == "cmmd" else "fid"
    if space not in features.spaces:
        return None, f"no {space} features were written"
    content = features.spaces[space]
    reference = content["reference"]
    n, d = reference.shape
    seeds = tuple(sorted(content["generated"]))
    ids = tuple(features.prompt_ids)
    if metric in ("kid", "cmmd") and n > MAX_GRAM_UNITS:
        return None, f"left out: {n} images exceed the {MAX_GRAM_UNITS} whose Gram matrices the bootstrap holds"
    if metric == "fid" and n * d * d > MAX_FID_INTERVAL_COST:
        return None, f"left out: {n} images of width {d} exceed the bootstrap's cost cap (n d^2 <= {MAX_FID_INTERVAL_COST:g})"
    per_seed = []
    for seed in seeds:
        generated = content["generated"][seed]
        if metric == "fid":
            per_seed.append(fid_statistic(generated, reference))
        elif metric == "kid":
            per_seed.append(mmd_statistic(polynomial_gram(generated, generated), polynomial_gram(reference, reference),
                                          polynomial_gram(generated, reference)))
        elif metric == "cmmd":
            from clipvqd.evaluation.cmmd import CMMD_SCALE, normalise, rbf_gram

            x, y = normalise(generated), normalise(reference)
            per_seed.append(mmd_statistic(rbf_gram(x, x), rbf_gram(y, y), rbf_gram(x, y), scale=CMMD_SCALE))
        elif metric in ("precision", "recall"):
            precision, recall = precision_recall_indicators(generated, reference, features.neighborhood)
            per_seed.append(mean_statistic(precision if metric == "precision" else recall))
        else:
            raise UncertaintyError(f"{metric} is not a distribution metric")
    return MetricStatistics(seeds, ids, tuple(per_seed)), None


def metric_statistics(metric: str, units: pd.DataFrame | None, features: DistributionFeatures | None):
    from clipvqd.evaluation.table import DISTRIBUTION_METRICS

    if metric in DISTRIBUTION_METRICS:
        if features is None:
            return None, "no distribution features"
        return distribution_statistics(features, metric)
    if units is None:
        return None, "no units table"
    statistics = alignment_statistics(units, metric)
    return statistics, (None if statistics is not None else "no units")


# --------------------------------------------------------------------------------------------------
# Intervals and comparisons
# --------------------------------------------------------------------------------------------------


def branch_intervals(metrics: Sequence[str], units: pd.DataFrame | None, features: DistributionFeatures | None,
                     settings: BootstrapSettings) -> dict[str, tuple[float, float] | str]:
    """{metric: (ci_low, ci_high)}, or {metric: why it has none}."""
    intervals: dict[str, tuple[float, float] | str] = {}
    for metric in metrics:
        statistics, reason = metric_statistics(metric, units, features)
        if statistics is None:
            intervals[metric] = reason or "no interval"
            continue
        replicates = joint_replicates([statistics.per_seed], statistics.units, settings)[0]
        estimate = point_estimate(statistics.per_seed, statistics.units)
        low, high = interval(replicates, estimate, settings.confidence, interval_kind(metric))
        intervals[metric] = (max(low, LOWER_BOUNDS.get(metric, low)), high)
    return intervals


@dataclass
class BranchData:
    """What the report reads of one branch for comparisons: its units table and distribution features."""

    label: str
    units: pd.DataFrame | None
    features: DistributionFeatures | None

    @classmethod
    def read(cls, label: str, units_path: str | Path | None, features_path: str | Path | None) -> "BranchData":
        return cls(label, read_units(units_path) if units_path else None,
                   DistributionFeatures.read(features_path) if features_path else None)


def compare_branches(metric: str, a: BranchData, b: BranchData,
                     settings: BootstrapSettings) -> PairedComparison | str:
    """Paired bootstrap of a − b on `metric`: the same seeds and the same resampled prompts (or distribution
    images) for both. Returns the comparison, or why there is none."""
    first, reason_a = metric_statistics(metric, a.units, a.features)
    second, reason_b = metric_statistics(metric, b.units, b.features)
    if first is None or second is None:
        return reason_a or reason_b or "not measured"
    if first.seeds != second.seeds:
        return f"{a.label} has seeds {list(first.seeds)}, {b.label} {list(second.seeds)}: not paired"
    if first.unit_ids != second.unit_ids:
        return f"{a.label} and {b.label} were measured on different prompts or images: not paired"
    from clipvqd.evaluation.table import DISTRIBUTION_METRICS

    if metric in DISTRIBUTION_METRICS:
        space = "clip" if metric == "cmmd" else "fid"
        if not torch.equal(a.features.spaces[space]["reference"], b.features.spaces[space]["reference"]):
            return f"{a.label} and {b.label} were measured against different reference features: not paired"
    return paired_comparison(first.per_seed, second.per_seed, first.units, settings, interval_kind(metric))


__all__ = [
    "BranchData",
    "DistributionFeatures",
    "MetricStatistics",
    "UNITS_COLUMNS",
    "UncertaintyError",
    "alignment_statistics",
    "branch_intervals",
    "compare_branches",
    "distribution_statistics",
    "read_units",
    "write_units",
]
