"""The report's inputs besides the metrics: quality numbers of the tools, benchmark files, cited numbers,
each read and shaped for `render_report`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping

from clipvqd.report.errors import ReportError


def _with_chance(value, chance) -> str:
    return f"{value:.4g} (chance {chance:.4g})"


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def flatten_numbers(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested quality JSON -> {"a.b.c": leaf}, one line per number in the report. A number and its chance
    level ({"accuracy": a, "chance": c}, or "x" beside "x_chance") become one line "a (chance c)"."""
    if not isinstance(value, dict):
        return {prefix or "value": value}
    if set(value) == {"accuracy", "chance"} and all(_is_number(v) for v in value.values()):
        return {prefix or "accuracy": _with_chance(value["accuracy"], value["chance"])}
    flat = {}
    for key, item in value.items():
        key = str(key)
        base = key[:-len("_chance")] if key.endswith("_chance") else None
        if base and _is_number(item) and _is_number(value.get(base)):
            continue  # shown with its number
        name = f"{prefix}.{key}" if prefix else key
        if _is_number(item) and _is_number(value.get(f"{key}_chance")):
            flat[name] = _with_chance(item, value[f"{key}_chance"])
        else:
            flat.update(flatten_numbers(item, name))
    return flat


def read_quality_numbers(files: Mapping[str, str | Path]) -> dict[str, dict[str, Any]]:
    """{group label: metrics.json} -> {group label: flattened numbers}; an unreadable file is named."""
    quality = {}
    for label, path in files.items():
        try:
            quality[label] = flatten_numbers(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as error:
            raise ReportError(f"quality numbers '{label}': cannot read {path}: {error}") from error
    return quality


def collect_benchmark_files(files: Iterable[str | Path] = (), folders: Iterable[str | Path] = ()) -> list[str]:
    """The given benchmark TSVs plus every *.tsv under `folders` as they are now (Snakemake writes a
    benchmark file after each job, so a report job reads the folder rather than declaring each file)."""
    found = [str(path) for path in files]
    for folder in folders:
        found += sorted(str(path) for path in Path(folder).rglob("*.tsv"))
    return found


def read_paper_rows(path: str | Path | None) -> list[dict] | None:
    """Cited numbers (a JSON list of {method, metric, value, source[, dataset, note]}), or None."""
    if not path:
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ReportError(f"paper rows: cannot read {path}: {error}") from error


def read_oracle_calibration(path: str | Path | None) -> dict | None:
    """The oracle's accuracy on degraded renders (`python -m clipvqd oracle calibrate`), or None."""
    if not path:
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ReportError(f"oracle calibration: cannot read {path}: {error}") from error


def read_machine_speed(path: str | Path) -> dict:
    """The run's machine-speed calibration (`python -m clipvqd calibrate --out`); an unreadable or incomplete
    file is named."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ReportError(f"machine-speed calibration: cannot read {path}: {error}") from error
    missing = [key for key in ("seconds", "cpu_seconds", "cpu_share", "repeats", "workload") if key not in record]
    if missing:
        raise ReportError(f"machine-speed calibration {path} lacks {', '.join(missing)}; run "
                          "`python -m clipvqd calibrate --out` again")
    return record


def check_branch_files(protocol_path: str | Path, **given: str | Path | None) -> None:
    """Refuse a branch's units table or feature file (`units=...`, `features=...`) that is not the file its
    protocol record lists: the same path (kept inside the record's folder) and the recorded sha256. The
    significance tests read these files, so a swapped or damaged one is named instead of compared."""
    from clipvqd.evaluation.protocol import ProtocolError, ProtocolRecord
    from clipvqd.manifest import ManifestError, read_listed_bytes, resolve_listed

    try:
        files = ProtocolRecord.read(protocol_path).files or {}
    except ProtocolError as error:
        raise ReportError(str(error)) from None
    for role, path in given.items():
        if path is None:
            continue
        listed = files.get(role)
        if listed is None:
            raise ReportError(f"{protocol_path} lists no {role} file with its sha256, so {path} cannot be checked; "
                              "rerun the branch's metrics job")
        try:
            recorded = resolve_listed(protocol_path, listed["path"])
            if recorded.resolve() != Path(path).resolve():
                raise ReportError(f"{path} is not the {role} file of {protocol_path}, which lists {recorded}")
            read_listed_bytes(protocol_path, listed["path"], listed["sha256"])
        except ManifestError as error:
            raise ReportError(str(error)) from None


def sample_sharpness(sample_grids: Mapping[str, str | Path] | None) -> dict[str, float]:
    """{label: sharpness of its sample set} for the sample manifests among `sample_grids` (the mean absolute
    Laplacian, the scale the oracle calibration puts its degradation levels on)."""
    import torch

    from clipvqd.manifest import ManifestError, ManifestImages
    from clipvqd.oracle_calibration import sharpness

    found = {}
    for label, source in (sample_grids or {}).items():
        if Path(source).suffix.lower() != ".csv":
            continue
        try:  # paths kept in the manifest's folder, each file hashed as it is read
            dataset = ManifestImages(source, verify_on_read=True)
            found[label] = sharpness(torch.stack([dataset.uint8(i) for i in range(len(dataset))]))
        except ManifestError as error:
            raise ReportError(str(error)) from None
    return found
