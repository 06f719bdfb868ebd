"""The tidy results table, `reports/<run>/metrics.csv`: one row per (method, variant, metric).

Columns, exactly and in this order: `method, variant, metric, value, n, ci_low, ci_high, protocol`.

* `method`: one of ALLOWED_METHODS.
* `variant`: `default` for the config's headline settings, else `key=value` pairs joined by commas
  (`alpha=0.25,s=1.2,r=0.85,steps=100`), written by `variant_name` in a fixed key order.
* `metric`: one of ALLOWED_METRICS, or `attr_acc/<attribute>` for a per-attribute accuracy.
* `value`: a finite number (a metric that could not be measured has no row, never a NaN): the mean over
  the branch's training seeds of the per-seed values.
* `n`: how many samples (or prompts, for best-of-N) the value is computed over, per seed.
* `ci_low`, `ci_high`: the 95% interval (the two-level bootstrap over seeds and prompts or images,
  `bootstrap.py`; its settings are in protocol.json), both empty for a metric without one (the entry says
  why); never one without the other, and ci_low <= ci_high.
* `protocol`: the id of the entry in `protocol.json` that says how the number was measured.

Each metrics job writes a partial table for its branch; `merge_metrics_tables` joins them and refuses
two different values for the same (method, variant, metric). The per-seed values are a second table,
`metrics_by_seed.csv`, with the columns `method, variant, seed, metric, value, n, protocol`
(BY_SEED_COLUMNS), validated and merged the same way.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd

METRICS_COLUMNS = ("method", "variant", "metric", "value", "n", "ci_low", "ci_high", "protocol")
BY_SEED_COLUMNS = ("method", "variant", "seed", "metric", "value", "n", "protocol")
ALLOWED_METHODS = ("clip-vqdiffusion", "lafite", "clip2latent", "paired", "unconditional")
ALLOWED_METRICS = (
    "fid", "kid", "precision", "recall",
    "cmmd",
    "clipscore_best16", "clipscore_mean", "clipscore_judge_mean",
    "attr_acc", "attr_acc_ood",
    "within_prompt_diversity",
)
# Measured on the distribution set (one sample per reference image, prompted with its caption); every other
# metric on the alignment set (the prompt table).
DISTRIBUTION_METRICS = ("fid", "kid", "precision", "recall", "cmmd")
# Which direction is better, for the report's comparisons; a metric with no better direction (more diverse
# samples are not better by themselves: noise is diverse) is compared, never called better or worse.
LOWER_IS_BETTER = ("fid", "kid", "cmmd")
NO_BETTER_DIRECTION = ("within_prompt_diversity",)
# How `favoured` names the higher side of a significant difference on a metric without a better direction.
HIGHER = "higher: "
ATTRIBUTE_METRIC_PREFIX = "attr_acc/"
DEFAULT_VARIANT = "default"

# Sweep keys first in the order the paper discusses them; any other key follows alphabetically.
VARIANT_KEY_ORDER = ("alpha", "s", "r", "steps", "purity", "cfg")

_ATTRIBUTE_NAME = re.compile(r"^[a-z0-9][a-z0-9_]*$")
_VARIANT_KEY = re.compile(r"^[a-z][a-z0-9_]*$")
_VARIANT_VALUE = re.compile(r"^[A-Za-z0-9_.+-]+$")

# Values outside these ranges are a bug upstream, not a result.
_UNIT_INTERVAL = (0.0, 1.0)
_VALUE_RANGES = {
    "precision": _UNIT_INTERVAL, "recall": _UNIT_INTERVAL,
    "attr_acc": _UNIT_INTERVAL, "attr_acc_ood": _UNIT_INTERVAL,
    "clipscore_best16": (-1.0, 1.0), "clipscore_mean": (-1.0, 1.0), "clipscore_judge_mean": (-1.0, 1.0),
    # FID of a set against itself comes out a hair below zero in floating point.
    "fid": (-1e-3, math.inf),
    # A mean distance between unit vectors.
    "within_prompt_diversity": (0.0, 2.0),
}


class MetricsTableError(ValueError):
    pass


def is_allowed_metric(metric: str) -> bool:
    if metric in ALLOWED_METRICS:
        return True
    if metric.startswith(ATTRIBUTE_METRIC_PREFIX):
        return bool(_ATTRIBUTE_NAME.match(metric[len(ATTRIBUTE_METRIC_PREFIX):]))
    return False


def _format_variant_value(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return format(value, "g")
    return str(value)


def variant_name(settings: Mapping | None = None) -> str:
    """`default` for None/empty, else `alpha=0.25,s=1.2,...` in a stable key order."""
    if not settings:
        return DEFAULT_VARIANT
    order = {key: index for index, key in enumerate(VARIANT_KEY_ORDER)}
    keys = sorted(settings, key=lambda key: (order.get(key, len(order)), key))
    parts = []
    for key in keys:
        text = _format_variant_value(settings[key])
        if not _VARIANT_KEY.match(key) or not _VARIANT_VALUE.match(text):
            raise MetricsTableError(f"variant setting {key}={text!r} cannot be written into a variant name")
        parts.append(f"{key}={text}")
    return ",".join(parts)


def _parse_scalar(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_variant(variant: str) -> dict:
    """Inverse of `variant_name`: `default` -> {}; numbers come back as int/float, the rest as strings."""
    if variant == DEFAULT_VARIANT:
        return {}
    settings = {}
    for part in variant.split(","):
        key, sep, value = part.partition("=")
        if not sep or not _VARIANT_KEY.match(key) or not _VARIANT_VALUE.match(value):
            raise MetricsTableError(
                f"variant {variant!r}: part {part!r} is not key=value (expected 'default' or e.g. "
                "'alpha=0.25,s=1.2,r=0.85,steps=100')"
            )
        if key in settings:
            raise MetricsTableError(f"variant {variant!r} sets {key!r} twice")
        settings[key] = _parse_scalar(value)
    return settings


def _number(row: Mapping, column: str, where: str, metric: str) -> float:
    try:
        value = float(row[column])
    except (TypeError, ValueError):
        raise MetricsTableError(f"{where}: column '{column}' has {row[column]!r}, not a number") from None
    if not math.isfinite(value):
        raise MetricsTableError(f"{where}: column '{column}' is {value} for metric {metric!r}; drop the row instead")
    base_metric = "attr_acc" if metric.startswith(ATTRIBUTE_METRIC_PREFIX) else metric
    low, high = _VALUE_RANGES.get(base_metric, (-math.inf, math.inf))
    if not low <= value <= high:
        raise MetricsTableError(f"{where}: column '{column}' has {value} for metric {metric!r}, outside [{low}, {high}]")
    return value


def _blank(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str)
                                                                                 and not value.strip())


def _check_row(row: Mapping, where: str, protocol_ids: set | None, columns=METRICS_COLUMNS) -> dict:
    method, variant, metric = row["method"], row["variant"], row["metric"]
    if method not in ALLOWED_METHODS:
        raise MetricsTableError(f"{where}: column 'method' has {method!r}; allowed: {', '.join(ALLOWED_METHODS)}")
    if not isinstance(variant, str) or not variant:
        raise MetricsTableError(f"{where}: column 'variant' is empty")
    try:
        parse_variant(variant)
    except MetricsTableError as error:
        raise MetricsTableError(f"{where}: column 'variant': {error}") from None
    if not isinstance(metric, str) or not is_allowed_metric(metric):
        raise MetricsTableError(
            f"{where}: column 'metric' has {metric!r}; allowed: {', '.join(ALLOWED_METRICS)} "
            f"or {ATTRIBUTE_METRIC_PREFIX}<attribute>"
        )
    value = _number(row, "value", where, metric)
    n_raw = row["n"]
    try:
        n_float = float(n_raw)
    except (TypeError, ValueError):
        n_float = math.nan
    if not (math.isfinite(n_float) and n_float.is_integer()):
        raise MetricsTableError(f"{where}: column 'n' has {n_raw!r}, not a whole number")
    n = int(n_float)
    if n <= 0:
        raise MetricsTableError(f"{where}: column 'n' has {n}; it must be positive")
    protocol = row["protocol"]
    if not isinstance(protocol, str) or not protocol:
        raise MetricsTableError(f"{where}: column 'protocol' is empty")
    if protocol_ids is not None and protocol not in protocol_ids:
        raise MetricsTableError(f"{where}: column 'protocol' has {protocol!r}, which protocol.json does not define")
    clean = {"method": method, "variant": variant, "metric": metric, "value": value, "n": n, "protocol": protocol}
    if "seed" in columns:
        seed = str(row["seed"])
        if not seed.isdigit():
            raise MetricsTableError(f"{where}: column 'seed' has {row['seed']!r}, not a non-negative whole number")
        clean["seed"] = int(seed)
    if "ci_low" in columns:
        low, high = row.get("ci_low"), row.get("ci_high")
        if _blank(low) and _blank(high):
            clean["ci_low"] = clean["ci_high"] = math.nan
        elif _blank(low) or _blank(high):
            raise MetricsTableError(f"{where}: one of 'ci_low' and 'ci_high' is empty; an interval needs both ends")
        else:
            clean["ci_low"] = _number(row, "ci_low", where, metric)
            clean["ci_high"] = _number(row, "ci_high", where, metric)
            if clean["ci_low"] > clean["ci_high"]:
                raise MetricsTableError(f"{where}: ci_low {clean['ci_low']} is above ci_high {clean['ci_high']}")
    return {column: clean[column] for column in columns}


def metric_row(method: str, variant: str, metric: str, value: float, n: int, protocol: str,
               ci_low: float | None = None, ci_high: float | None = None) -> dict:
    """One validated row (an interval is optional: both ends or neither)."""
    row = dict(method=method, variant=variant, metric=metric, value=value, n=n, ci_low=ci_low, ci_high=ci_high,
               protocol=protocol)
    return _check_row(row, f"row {method}/{variant}/{metric}", None)


def seed_row(method: str, variant: str, seed: int, metric: str, value: float, n: int, protocol: str) -> dict:
    """One validated row of the per-seed table."""
    row = dict(method=method, variant=variant, seed=seed, metric=metric, value=value, n=n, protocol=protocol)
    return _check_row(row, f"row {method}/{variant}/seed={seed}/{metric}", None, BY_SEED_COLUMNS)


def validate_metrics_table(frame: pd.DataFrame, source: str = "metrics table",
                           protocol_ids: Iterable[str] | None = None, columns=METRICS_COLUMNS) -> pd.DataFrame:
    """Check columns, names, values and uniqueness; return a clean, sorted copy. Errors name the
    source, the row (1-based, as in a spreadsheet after the header), the column and the value.
    `columns` is METRICS_COLUMNS (metrics.csv) or BY_SEED_COLUMNS (metrics_by_seed.csv)."""
    columns = tuple(columns)
    present = tuple(frame.columns)
    if present != columns:
        missing = [c for c in columns if c not in present]
        extra = [c for c in present if c not in columns]
        details = []
        if missing:
            details.append(f"missing column(s) {', '.join(map(repr, missing))}")
        if extra:
            details.append(f"unexpected column(s) {', '.join(map(repr, extra))}")
        if not details:
            details.append(f"columns in order {', '.join(present)}")
        raise MetricsTableError(
            f"{source}: {'; '.join(details)}; expected exactly {', '.join(columns)}"
        )
    known = set(protocol_ids) if protocol_ids is not None else None
    rows = [
        _check_row(record, f"{source} row {index + 1}", known, columns)
        for index, record in enumerate(frame.to_dict("records"))
    ]
    clean = pd.DataFrame(rows, columns=list(columns))
    key = _row_key(columns)
    duplicated = clean.duplicated(key, keep=False)
    if duplicated.any():
        first = clean[duplicated].iloc[0]
        raise MetricsTableError(f"{source}: ({', '.join(str(first[k]) for k in key)}) appears more than once")
    return sort_metrics_table(clean)


def _row_key(columns) -> list[str]:
    return ["method", "variant", "seed", "metric"] if "seed" in columns else ["method", "variant", "metric"]


def sort_metrics_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Methods in the canonical order, `default` first, metrics in the canonical order."""
    method_rank = {m: i for i, m in enumerate(ALLOWED_METHODS)}
    metric_rank = {m: i for i, m in enumerate(ALLOWED_METRICS)}
    keyed = frame.assign(
        _method=frame["method"].map(method_rank),
        _default=frame["variant"] != DEFAULT_VARIANT,
        _metric=frame["metric"].map(lambda m: metric_rank.get(m, len(metric_rank))),
    )
    order = ["_method", "_default", "variant"] + (["seed"] if "seed" in frame.columns else []) + ["_metric", "metric"]
    keyed = keyed.sort_values(order, kind="stable")
    return keyed.drop(columns=["_method", "_default", "_metric"]).reset_index(drop=True)


def read_metrics_table(path: str | Path, protocol_ids: Iterable[str] | None = None,
                       columns=METRICS_COLUMNS) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise MetricsTableError(f"metrics table not found: {path}")
    # Everything as text first, so 'n' = '3.5' or 'value' = 'abc' are reported rather than coerced.
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    return validate_metrics_table(frame, source=str(path), protocol_ids=protocol_ids, columns=columns)


def write_metrics_table(rows: pd.DataFrame | Iterable[Mapping], path: str | Path,
                        protocol_ids: Iterable[str] | None = None, columns=METRICS_COLUMNS) -> pd.DataFrame:
    """Validate and write; an empty table is written with its header (a branch may measure nothing)."""
    if isinstance(rows, pd.DataFrame):
        frame = rows
    else:
        records = [dict(row) for row in rows]
        if "ci_low" in columns:  # rows built without an interval have none
            for record in records:
                record.setdefault("ci_low", None)
                record.setdefault("ci_high", None)
        frame = pd.DataFrame(records, columns=list(columns))
    clean = validate_metrics_table(frame, source=str(path), protocol_ids=protocol_ids, columns=columns)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean.to_csv(path, index=False, float_format="%.10g")
    return clean


def merge_metrics_tables(paths: Iterable[str | Path], out_path: str | Path | None = None,
                         protocol_ids: Iterable[str] | None = None, columns=METRICS_COLUMNS) -> pd.DataFrame:
    """Join per-branch tables. The same row in two files is kept once if the values agree and refused,
    naming both files, if they differ."""
    seen: dict[tuple, tuple[dict, str]] = {}
    merged = []
    key_columns = _row_key(columns)
    for path in paths:
        frame = read_metrics_table(path, protocol_ids=protocol_ids, columns=columns)
        for record in frame.to_dict("records"):
            key = tuple(record[k] for k in key_columns)
            if key in seen:
                other, other_path = seen[key]
                if other["value"] != record["value"] or other["n"] != record["n"]:
                    raise MetricsTableError(
                        f"{key} is {other['value']} (n={other['n']}) in {other_path} but {record['value']} "
                        f"(n={record['n']}) in {path}"
                    )
                continue
            seen[key] = (record, str(path))
            merged.append(record)
    frame = pd.DataFrame(merged, columns=list(columns))
    if out_path is not None:
        return write_metrics_table(frame, out_path, protocol_ids=protocol_ids, columns=columns)
    return validate_metrics_table(frame, source="merged metrics", protocol_ids=protocol_ids, columns=columns)


def rows_from_metrics(method: str, variant: str, values: Mapping[str, tuple[float, int]], protocol: str) -> list[dict]:
    """Rows from {metric: (value, n)} for one method/variant measured under one protocol."""
    return [metric_row(method, variant, metric, value, n, protocol) for metric, (value, n) in values.items()]


def favoured(metric: str, difference: float, first: str, second: str) -> str:
    """The side a significant difference `first − second` on `metric` favours: `first` or `second` by the
    metric's better direction, or, where it has none, HIGHER + the higher side (compared, never called better)."""
    if metric in NO_BETTER_DIRECTION:
        return HIGHER + (first if difference > 0 else second)
    first_better = (difference < 0) if metric in LOWER_IS_BETTER else (difference > 0)
    return first if first_better else second
