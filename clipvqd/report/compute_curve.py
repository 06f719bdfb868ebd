"""The report's quality-versus-training-compute figure and table (the overlay evaluation.compute_curve).

One figure, a panel per metric of clipvqd.evaluation.compute_curve.CURVE_METRICS, each method a line through
its snapshots (fractions of its training budget) with 95% intervals as error bars, against the CPU seconds its
training had spent; and the same points as a table. Drawn only when the overlay produced points.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from clipvqd.evaluation.compute_curve import CURVE_METRICS
from clipvqd.report.plotting import METHOD_PALETTE, METRIC_LABELS, FigureResult, new_figure, save_figure, styled

TITLE = "Quality versus training compute"
KEY = "compute-curve"


def compute_curve_figure(points: pd.DataFrame | None, out_dir: str | Path) -> FigureResult | None:
    """The three-panel figure, or None when there are no points (the overlay was off)."""
    if points is None or points.empty:
        return None
    sns, style = styled()
    out_dir = Path(out_dir)
    with style:
        figure = new_figure(4.0 * len(CURVE_METRICS), 3.8)
        axes = figure.subplots(1, len(CURVE_METRICS), squeeze=False)[0]
        for ax, metric in zip(axes, CURVE_METRICS):
            for method, line in points.groupby("method", sort=False):
                line = line.dropna(subset=[metric]).sort_values("cpu_s")
                if line.empty:
                    continue
                low = (line[metric] - line[f"{metric}_ci_low"]).clip(lower=0).fillna(0)
                high = (line[f"{metric}_ci_high"] - line[metric]).clip(lower=0).fillna(0)
                ax.errorbar(line["cpu_s"], line[metric], yerr=[low, high], marker="o", markersize=4, capsize=2,
                            linewidth=1.4, color=METHOD_PALETTE.get(method), label=method)
                last = line.iloc[-1]
                ax.plot([last["cpu_s"]], [last[metric]], marker="*", markersize=11, linestyle="none",
                        color=METHOD_PALETTE.get(method))
            ax.set_xscale("log")
            ax.set_xlabel("training CPU-seconds (log)")
            ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        handles, labels = axes[0].get_legend_handles_labels()
        if handles:
            figure.legend(handles, labels, loc="outside lower center", ncols=min(5, len(labels)), frameon=False,
                          fontsize=8)
    fractions = ", ".join(f"{f:g}" for f in sorted(points["fraction"].unique()))
    note = (f"snapshots at fractions {fractions} of each method's training budget (★: the whole budget, the "
            "headline model); error bars: 95% intervals; cost: CPU-seconds of the training that made the model")
    return FigureResult(KEY, TITLE, path=save_figure(figure, out_dir, KEY), note=note)


def compute_curve_rows(points: pd.DataFrame | None) -> list[dict]:
    """The figure's points as table rows (strings), method by method in budget order."""
    if points is None or points.empty:
        return []
    rows = []
    for point in points.to_dict("records"):
        cells = {metric: _interval(point, metric) for metric in CURVE_METRICS}
        rows.append({"method": point["method"], "fraction": f"{point['fraction']:g}", "cpu": f"{point['cpu_s']:,.0f}",
                     "steps": f"{point['steps']:,.0f}", **cells})
    return rows


def _interval(point: dict, metric: str) -> str:
    value = point[metric]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    low, high = point[f"{metric}_ci_low"], point[f"{metric}_ci_high"]
    if any(isinstance(v, float) and math.isnan(v) for v in (low, high)):
        return f"{value:.3f}"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"
