"""The report's figures, drawn with seaborn onto Agg canvases (no display, no pyplot global state).

Every builder returns `FigureResult`s: a PNG path relative to the report folder, or, when the data for a
figure is absent, no path and a note saying what was missing, so the report can show the gap instead of
failing or silently leaving the section out.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from clipvqd.evaluation.table import ALLOWED_METHODS, DEFAULT_VARIANT, parse_variant
from clipvqd.report.plotting import METHOD_PALETTE as _METHOD_PALETTE
from clipvqd.report.plotting import METRIC_LABELS, FigureResult  # noqa: F401  (METRIC_LABELS: the report's labels)
from clipvqd.report.plotting import new_figure as _new_figure
from clipvqd.report.plotting import save_figure as _save
from clipvqd.report.plotting import styled as _styled

SWEEP_KEYS = ("alpha", "s", "r", "steps")
SWEEP_LABELS = {"alpha": "condition noise α", "s": "guidance scale s", "r": "truncation r", "steps": "sampling steps"}
SWEEP_METRICS = ("attr_acc", "clipscore_best16", "clipscore_mean", "clipscore_judge_mean", "fid")
# What the fast-sampling figure weighs the speed-up against (issue #8, target 3), in panel order.
SPEED_COST_METRICS = ("attr_acc", "clipscore_mean", "clipscore_judge_mean")
# The trade-off plot's alignment axis, in order of preference: the judge did not condition any method.
TRADEOFF_ALIGNMENT_METRICS = ("clipscore_judge_mean", "clipscore_mean", "clipscore_best16")
BENCHMARK_REQUIRED_COLUMNS = ("s",)
MAX_RUNTIME_BARS = 40


# --------------------------------------------------------------------------------------------------
# Sweeps
# --------------------------------------------------------------------------------------------------


def _settings_from_protocol(entry: Mapping | None) -> dict:
    """Sampling settings recorded in a protocol entry (lets the `default` variant sit on sweep curves)."""
    if not entry:
        return {}
    for sampling in (entry.get("sampling"), (entry.get("generated") or {}).get("sampling")):
        if isinstance(sampling, Mapping) and isinstance(sampling.get("settings"), Mapping):
            return dict(sampling["settings"])
    return {}


def sweep_points(metrics: pd.DataFrame, protocol_entries: Mapping[str, Mapping] | None = None) -> pd.DataFrame:
    """One row per (method, variant, metric) with numeric sweep settings as columns.

    Settings come from the variant name, or for `default` from its protocol entry. A default whose
    settings equal an explicit sweep variant's is dropped (the same point would be drawn twice).
    """
    records = []
    for row in metrics.to_dict("records"):
        if row["metric"] not in SWEEP_METRICS:
            continue
        if row["variant"] == DEFAULT_VARIANT:
            settings = _settings_from_protocol((protocol_entries or {}).get(row["protocol"]))
        else:
            settings = parse_variant(row["variant"])
        numeric = {k: float(v) for k, v in settings.items()
                   if k in SWEEP_KEYS and isinstance(v, (int, float)) and not isinstance(v, bool)}
        records.append({**row, **numeric})
    frame = pd.DataFrame(records)
    for key in SWEEP_KEYS:
        if key not in frame.columns:
            frame[key] = np.nan
    if frame.empty:
        return frame
    frame["_explicit"] = frame["variant"] != DEFAULT_VARIANT
    frame = frame.sort_values("_explicit", ascending=False, kind="stable")
    frame = frame.drop_duplicates(["method", "metric", *SWEEP_KEYS], keep="first").drop(columns="_explicit")
    return frame.reset_index(drop=True)


def _sweep_line(points: pd.DataFrame, key: str) -> tuple[pd.DataFrame, str] | None:
    """Of one method's points for one metric, the one-at-a-time sweep along `key`: the group of points
    whose other settings agree and that covers the most distinct values of `key` (at least two)."""
    points = points.dropna(subset=[key])
    others = [k for k in SWEEP_KEYS if k != key]
    best = None
    for fixed, group in points.groupby([points[k].fillna(-math.inf) for k in others], dropna=False, sort=True):
        distinct = group[key].nunique()
        if distinct >= 2 and (best is None or distinct > best[0]):
            label = ", ".join(f"{k}={v:g}" for k, v in zip(others, fixed) if v != -math.inf)
            best = (distinct, group.sort_values(key), label)
    return None if best is None else (best[1], best[2])


def sweep_figures(metrics: pd.DataFrame, out_dir: str | Path,
                  protocol_entries: Mapping[str, Mapping] | None = None) -> list[FigureResult]:
    """One figure per sweep key (α, s, r, steps): a panel per metric (attribute accuracy where an oracle
    scored the samples, CLIPscore variants, FID), a line per method; the settings held fixed are named in
    the legend."""
    sns, style = _styled()
    out_dir = Path(out_dir)
    points = sweep_points(metrics, protocol_entries)
    results = []
    for key in SWEEP_KEYS:
        title = f"Alignment and FID vs {SWEEP_LABELS[key]}"
        panels = []
        if not points.empty:
            for metric in SWEEP_METRICS:
                lines = []
                for method in ALLOWED_METHODS:
                    subset = points[(points["metric"] == metric) & (points["method"] == method)]
                    line = _sweep_line(subset, key)
                    if line is not None:
                        lines.append((method, *line))
                if lines:
                    panels.append((metric, lines))
        if not panels:
            results.append(FigureResult(f"sweep-{key}", title, note=(
                f"no sweep over {key}: fewer than two values of {key} with the other settings held fixed "
                "were measured for any method")))
            continue
        with style:
            figure = _new_figure(3.6 * len(panels), 3.5)
            axes = figure.subplots(1, len(panels), squeeze=False)[0]
            for ax, (metric, lines) in zip(axes, panels):
                _method_lines(sns, ax, lines, key, "value")
                ax.set_xlabel(SWEEP_LABELS[key])
                ax.set_ylabel(METRIC_LABELS.get(metric, metric))
            _legend_below(figure, axes)
            results.append(FigureResult(f"sweep-{key}", title, path=_save(figure, out_dir, f"sweep_{key}")))
    return results


def _method_lines(sns, ax, lines, x: str, y: str) -> None:
    """One line per (method, points, fixed-settings label), in the method's colour."""
    for method, line, fixed_label in lines:
        label = f"{method} ({fixed_label})" if fixed_label else method
        sns.lineplot(data=line, x=x, y=y, marker="o", ax=ax, label=label, color=_METHOD_PALETTE.get(method))


def _legend_below(figure: Figure, axes) -> None:
    """One legend under all panels, so no panel's curve hides behind it."""
    handles = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    figure.legend(list(handles.values()), list(handles), loc="outside lower center",
                  ncols=min(3, len(handles)), fontsize=8, frameon=False)


# --------------------------------------------------------------------------------------------------
# Fast sampling: what striding through fewer steps buys and costs
# --------------------------------------------------------------------------------------------------


def sample_job_seconds(benchmarks: pd.DataFrame) -> dict[tuple[str, str], float]:
    """(method, variant) -> wall seconds of its alignment-set sample job (the mean over seeds), from the
    benchmark stages the sample rule names `[seed=<s>/<set>/]sample_<method>_<variant>`; the distribution
    set's jobs (another prompt table) are left out."""
    seconds: dict[tuple[str, str], list[float]] = {}
    for row in benchmarks.to_dict("records"):
        parts = str(row["stage"]).split("/")
        name = parts[-1]
        if not name.startswith("sample_") or pd.isna(row["seconds"]) or "distribution" in parts[:-1]:
            continue
        rest = name[len("sample_"):]
        for method in ALLOWED_METHODS:
            if rest.startswith(method + "_"):
                seconds.setdefault((method, rest[len(method) + 1:]), []).append(float(row["seconds"]))
    return {key: float(np.mean(values)) for key, values in seconds.items()}


def sampling_speed_figure(metrics: pd.DataFrame, benchmarks: pd.DataFrame, out_dir: str | Path,
                          protocol_entries: Mapping[str, Mapping] | None = None) -> FigureResult:
    """Per method with at least two step counts measured (the others settings fixed): the sample job's
    speed-up over its most-steps point, and attribute accuracy / CLIPscore at each step count."""
    sns, style = _styled()
    title = "Fast sampling: speed-up of fewer steps and what it costs"
    points = sweep_points(metrics, protocol_entries)
    seconds = sample_job_seconds(benchmarks)
    speed_lines, cost_panels = [], {}
    for method in ALLOWED_METHODS if not points.empty else ():
        for metric in SPEED_COST_METRICS:
            line = _sweep_line(points[(points["metric"] == metric) & (points["method"] == method)], "steps")
            if line is not None:
                cost_panels.setdefault(metric, []).append((method, *line))
        # Any one metric's line names the method's sample jobs along the steps sweep.
        method_lines = [(l, f) for lines in cost_panels.values() for m, l, f in lines if m == method]
        if method_lines:
            line, fixed_label = method_lines[0]
            timed = line.assign(seconds=[seconds.get((method, v)) for v in line["variant"]]).dropna(subset=["seconds"])
            if timed["steps"].nunique() >= 2:
                reference = timed.loc[timed["steps"].idxmax(), "seconds"]
                speed_lines.append((method, timed.assign(speedup=reference / timed["seconds"]), fixed_label))
    if not cost_panels:
        return FigureResult("sampling-speed", title, note=(
            "one step count measured: add values to sampling.steps (e.g. [50, 25, 100]) to see what fewer "
            "steps buy and cost"))
    panels = ([("speedup", speed_lines)] if speed_lines else []) + list(cost_panels.items())
    with style:
        figure = _new_figure(3.6 * len(panels), 3.5)
        axes = figure.subplots(1, len(panels), squeeze=False)[0]
        for ax, (metric, lines) in zip(axes, panels):
            _method_lines(sns, ax, lines, "steps", "speedup" if metric == "speedup" else "value")
            ax.set_xlabel(SWEEP_LABELS["steps"])
            ax.set_ylabel("speed-up of the sample job (×)" if metric == "speedup"
                          else METRIC_LABELS.get(metric, metric))
        _legend_below(figure, axes)
    note = None if speed_lines else "no sample-job benchmark files for these points, so no speed-up panel"
    return FigureResult("sampling-speed", title, path=_save(figure, out_dir, "sampling_speed"), note=note)


# --------------------------------------------------------------------------------------------------
# The oracle on degraded renders
# --------------------------------------------------------------------------------------------------

_FAMILY_LABELS = {"gaussian_blur": "Gaussian blur (sigma, px)", "noise": "additive noise (std)",
                  "jpeg": "JPEG (100 - quality)", "down_up": "down-and-up sampling (factor)"}


def oracle_calibration_figure(calibration: Mapping, out_dir: str | Path) -> FigureResult:
    """The oracle's worst and mean per-attribute accuracy against each degradation's level, with its clean and
    tokenizer-reconstruction accuracy as horizontal references and the retraining threshold."""
    sns, style = _styled()
    title = "Attribute oracle on degraded held-out renders (worst attribute solid, mean dashed)"
    levels = pd.DataFrame(calibration.get("levels", []))
    families = [f for f in _FAMILY_LABELS if not levels.empty and f in set(levels["family"])]
    if not families:
        return FigureResult("oracle-calibration", title, note="no degradation levels measured")
    references = {row["label"]: row["min"] for row in calibration["levels"] if row["family"] in ("clean", "tokenizer")}
    with style:
        figure = _new_figure(3.3 * len(families), 3.3)
        axes = figure.subplots(1, len(families), squeeze=False, sharey=True)[0]
        for ax, family in zip(axes, families):
            part = levels[levels["family"] == family].sort_values("level")
            x = 100 - part["level"] if family == "jpeg" else part["level"]
            ax.plot(x, part["min"], marker="o", color="#1b6ca8", label="worst attribute")
            ax.plot(x, part["mean"], marker="o", linestyle="--", color="#1b6ca8", alpha=0.6, label="mean")
            for (label, value), colour in zip(references.items(), ("#00798c", "#d1495b")):
                ax.axhline(value, color=colour, linewidth=1, label=f"{label} (worst)")
            ax.axhline(calibration.get("threshold", 0.9), color="#6c757d", linestyle=":", linewidth=1,
                       label="threshold")
            ax.set_xlabel(_FAMILY_LABELS[family])
            ax.set_ylim(0, 1.02)
        axes[0].set_ylabel("oracle accuracy")
        _legend_below(figure, axes)
    return FigureResult("oracle-calibration", title, path=_save(figure, out_dir, "oracle_calibration"))


# --------------------------------------------------------------------------------------------------
# Quality-alignment trade-off
# --------------------------------------------------------------------------------------------------


def tradeoff_figure(metrics: pd.DataFrame, out_dir: str | Path) -> FigureResult:
    """FID (quality, lower is better) against CLIPscore (alignment) for every method and variant."""
    sns, style = _styled()
    title = "Quality–alignment trade-off"
    wide = metrics.pivot_table(index=["method", "variant"], columns="metric", values="value", aggfunc="first")
    if "fid" not in wide.columns:
        return FigureResult("tradeoff", title, note="no FID was measured, so there is no quality axis")
    alignment = next((m for m in TRADEOFF_ALIGNMENT_METRICS
                      if m in wide.columns and wide[["fid", m]].dropna().shape[0] > 0), None)
    if alignment is None:
        return FigureResult("tradeoff", title, note="no method has both FID and a CLIPscore")
    points = wide[["fid", alignment]].dropna().reset_index()
    points["setting"] = np.where(points["variant"] == DEFAULT_VARIANT, "default", "sweep point")
    labels = _short_variant_labels(points)
    with style:
        figure = _new_figure(6.8, 4.6)
        ax = figure.subplots()
        # Sweep points first and small, defaults on top as large stars: the headline comparison stands out.
        sns.scatterplot(data=points, x="fid", y=alignment, hue="method", style="setting", size="setting",
                        style_order=["default", "sweep point"], markers={"default": "*", "sweep point": "o"},
                        sizes={"default": 320, "sweep point": 45}, size_order=["default", "sweep point"],
                        palette={m: c for m, c in _METHOD_PALETTE.items() if m in set(points["method"])},
                        edgecolor="white", linewidth=0.6, alpha=0.9, ax=ax)
        for row, label in zip(points.itertuples(), labels):
            if label:
                ax.annotate(label, (row.fid, getattr(row, alignment)), fontsize=6.5, alpha=0.8,
                            xytext=(4, -3), textcoords="offset points")
        ax.set_xlabel(METRIC_LABELS["fid"])
        ax.set_ylabel(METRIC_LABELS.get(alignment, alignment))
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1), fontsize=8, frameon=False)
        for handle in ax.get_legend().legend_handles:  # hue entries would inherit the tiny sweep-point size
            if hasattr(handle, "set_sizes"):
                handle.set_sizes([60])
    note = None if alignment == "clipscore_judge_mean" else (
        f"alignment axis is {alignment}: no judge CLIPscore was measured, so each method is scored by the CLIP "
        "that conditioned it")
    return FigureResult("tradeoff", title, path=_save(figure, out_dir, "tradeoff"), note=note)


def _short_variant_labels(points: pd.DataFrame) -> list[str]:
    """Per sweep point, only the settings that differ from its method's most common value
    (`alpha=0.25` rather than the whole `alpha=0.25,s=1.2,r=0.85,steps=100`)."""
    parsed = [parse_variant(v) if v != DEFAULT_VARIANT else None for v in points["variant"]]
    typical: dict[str, dict] = {}
    for method in set(points["method"]):
        settings = [p for p, m in zip(parsed, points["method"]) if m == method and p]
        keys = {k for p in settings for k in p}
        typical[method] = {k: pd.Series([p.get(k) for p in settings]).mode().iloc[0] for k in keys}
    labels = []
    for settings, method in zip(parsed, points["method"]):
        if settings is None:
            labels.append("")
            continue
        differing = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in settings.items() if typical[method].get(k) != v]
        labels.append(",".join(differing))
    return labels


# --------------------------------------------------------------------------------------------------
# Training curves
# --------------------------------------------------------------------------------------------------


def slug(text: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_" else "-" for c in text.strip().lower())
    return "-".join(part for part in cleaned.split("-") if part) or "item"


def training_curve_figures(curves: Mapping[str, str | Path] | None, out_dir: str | Path,
                           max_panels: int = 6) -> list[FigureResult]:
    """For each model, every numeric column of its log CSV (which must have a `step` column) against step."""
    sns, style = _styled()
    out_dir = Path(out_dir)
    results = []
    for name, csv_path in (curves or {}).items():
        title = f"Training curves: {name}"
        key = f"training-{slug(name)}"
        csv_path = Path(csv_path)
        if not csv_path.is_file():
            results.append(FigureResult(key, title, note=f"training log {csv_path} not found"))
            continue
        frame = pd.read_csv(csv_path)
        if "step" not in frame.columns:
            results.append(FigureResult(key, title, note=f"training log {csv_path} has no 'step' column"))
            continue
        series = [c for c in frame.columns if c != "step" and pd.api.types.is_numeric_dtype(frame[c])
                  and frame[c].notna().any()]
        if frame.empty or not series:
            results.append(FigureResult(key, title, note=f"training log {csv_path} has no numeric values to plot"))
            continue
        shown = series[:max_panels]
        columns = min(3, len(shown))
        rows = math.ceil(len(shown) / columns)
        with style:
            figure = _new_figure(3.4 * columns, 2.6 * rows)
            axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
            for ax, column in zip(axes, shown):
                data = frame[["step", column]].dropna()
                sns.lineplot(data=data, x="step", y=column, ax=ax, linewidth=1)
                positive = (data[column] > 0).all()
                if positive and data[column].max() / max(data[column].min(), 1e-30) > 100:
                    ax.set_yscale("log")  # losses spanning orders of magnitude
                ax.set_title(column, fontsize=9)
                ax.set_ylabel("")
            for ax in axes[len(shown):]:
                ax.set_visible(False)
        note = None
        if len(series) > len(shown):
            note = f"{len(series) - len(shown)} more column(s) in {csv_path.name} not plotted: {', '.join(series[len(shown):])}"
        results.append(FigureResult(key, title, path=_save(figure, out_dir, key), note=note))
    return results


# --------------------------------------------------------------------------------------------------
# Run times from Snakemake benchmark files
# --------------------------------------------------------------------------------------------------


def _benchmark_labels(paths: list[Path]) -> list[str]:
    """Labels that tell the files apart: paths relative to their common folder, without '.tsv'."""
    if len(paths) == 1:
        return [paths[0].with_suffix("").name]
    common = Path(os.path.commonpath([str(p.resolve().parent) for p in paths]))
    return [p.resolve().relative_to(common).with_suffix("").as_posix() for p in paths]


def read_benchmarks(benchmark_files: Iterable[str | Path]) -> tuple[pd.DataFrame, list[str]]:
    """Snakemake `benchmark:` TSVs -> one row per stage (mean over repeats) and notes about bad files."""
    paths = [Path(p) for p in benchmark_files or []]
    notes, rows = [], []
    existing = []
    for path in paths:
        if path.is_file():
            existing.append(path)
        else:
            notes.append(f"benchmark file {path} not found")
    for path, label in zip(existing, _benchmark_labels(existing) if existing else []):
        frame = pd.read_csv(path, sep="\t")
        missing = [c for c in BENCHMARK_REQUIRED_COLUMNS if c not in frame.columns]
        if missing or frame.empty:
            notes.append(f"benchmark file {path} has no {', '.join(missing) or 'rows'}; skipped")
            continue
        seconds = pd.to_numeric(frame["s"], errors="coerce")
        rss = pd.to_numeric(frame["max_rss"], errors="coerce") if "max_rss" in frame.columns else pd.Series([np.nan])
        rows.append({
            "stage": label,
            "seconds": float(seconds.mean()),
            "max_rss_mb": float(rss.max()) if rss.notna().any() else None,
            "repeats": int(len(frame)),
            "file": str(path),
        })
    table = pd.DataFrame(rows, columns=["stage", "seconds", "max_rss_mb", "repeats", "file"])
    return table.sort_values("seconds", ascending=False, kind="stable").reset_index(drop=True), notes


def runtime_figure(benchmarks: pd.DataFrame, out_dir: str | Path) -> FigureResult:
    sns, style = _styled()
    title = "Stage run times (Snakemake benchmarks)"
    data = benchmarks.dropna(subset=["seconds"])
    if data.empty:
        return FigureResult("runtimes", title, note="no Snakemake benchmark files were given or readable")
    shown = data.head(MAX_RUNTIME_BARS)
    with style:
        figure = _new_figure(7.0, 0.8 + 0.28 * len(shown))
        ax = figure.subplots()
        sns.barplot(data=shown, y="stage", x="seconds", color="#1b6ca8", ax=ax)
        ax.set_xlabel("wall-clock seconds (mean over repeats)")
        ax.set_ylabel("")
        ax.tick_params(axis="y", labelsize=7)
    note = None if len(data) <= MAX_RUNTIME_BARS else f"the {MAX_RUNTIME_BARS} slowest of {len(data)} stages shown"
    return FigureResult("runtimes", title, path=_save(figure, out_dir, "runtimes"), note=note)
