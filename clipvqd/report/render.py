"""The HTML comparison report, `reports/<run>/index.html`.

Self-contained: figures, sample images, the stylesheet, metrics.csv and protocol.json are copied into
the report folder and linked relatively, so the page works from file:// with no network (no CDN, no
web fonts, no scripts). Every number in the comparison table links to the protocol entry it was
measured under, and approximations (e.g. FID on an offline CLIP image tower instead of Inception) are
marked on the number itself with the explanation directly under the table.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from clipvqd.evaluation.protocol import ProtocolRecord
from clipvqd.evaluation.table import (
    ALLOWED_METHODS,
    ALLOWED_METRICS,
    ATTRIBUTE_METRIC_PREFIX,
    DEFAULT_VARIANT,
    NO_BETTER_DIRECTION,
    read_metrics_table,
)
from clipvqd.report import compute_curve as compute_curve_module
from clipvqd.report import figures
from clipvqd.report.errors import ReportError
from clipvqd.report.protocol_cards import format_any, protocol_facts
from clipvqd.report.sample_grids import sample_grids_context
from clipvqd.report.significance import REFERENCE_METHOD

STYLESHEET = "report.css"
PAPER_ROW_REQUIRED = ("method", "metric", "value", "source")

_METRIC_FORMATS = {"fid": "{:.3f}", "kid": "{:.4f}", "cmmd": "{:.3f}"}
_COLUMN_NOTES = {
    "clipscore_best16": "scored by the CLIP that conditioned the method (self-scoring can inflate it); n = prompts",
    "clipscore_mean": "scored by the CLIP that conditioned the method (self-scoring can inflate it)",
    "clipscore_judge_mean": "scored by a judge CLIP that conditioned no method",
    "attr_acc": "attribute oracle, in-distribution prompts",
    "attr_acc_ood": "attribute oracle, attribute combinations never seen in training",
    "fid": "distribution set: one sample per reference image, prompted with its caption",
    "kid": "distribution set: one sample per reference image, prompted with its caption",
    "precision": "distribution set: generated images inside the reference manifold",
    "recall": "distribution set: reference images inside the generated manifold",
    "cmmd": "distribution set; MMD on the judge CLIP's image embeddings, RBF sigma 10, x1000 (Jayasumana et al. 2024)",
    "within_prompt_diversity": "mean pairwise distance of the judge CLIP's image embeddings of a prompt's samples, "
                               "in-distribution prompts; near 0: near-identical samples; higher is not better by itself",
}
_MARKS = {"better": ("▲", "significantly better than CLIP-VQDiffusion (paired bootstrap, Holm-adjusted)"),
          "worse": ("▼", "significantly worse than CLIP-VQDiffusion (paired bootstrap, Holm-adjusted)"),
          "tie": ("", "not significantly different from CLIP-VQDiffusion"),
          "point": ("◦", "reference point, not a rival: it ignores its prompts and models the marginal distribution"),
          "different": ("≠", "significantly different from CLIP-VQDiffusion (paired bootstrap, Holm-adjusted) on a "
                             "metric with no better direction")}


def format_value(metric: str, value) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    base = "attr_acc" if metric.startswith(ATTRIBUTE_METRIC_PREFIX) else metric
    return _METRIC_FORMATS.get(base, "{:.3f}").format(float(value))


# --------------------------------------------------------------------------------------------------
# Comparison tables
# --------------------------------------------------------------------------------------------------


@dataclass
class Footnotes:
    """Approximation notes, numbered in order of first use."""

    texts: list[str] = field(default_factory=list)

    def number(self, text: str | None) -> int | None:
        if not text:
            return None
        if text not in self.texts:
            self.texts.append(text)
        return self.texts.index(text) + 1


def _mark(significance: pd.DataFrame | None, method: str, variant: str, metric: str) -> tuple[str, str] | None:
    if significance is None or significance.empty:
        return None
    row = significance[(significance["method"] == method) & (significance["variant"] == variant)
                       & (significance["metric"] == metric)]
    if row.empty:
        return None
    record = row.iloc[0]
    if str(record.get("note", "")).startswith("reference point"):
        return _MARKS["point"]
    if pd.isna(record["p_value"]):
        return None
    if not bool(record["significant"]):
        return _MARKS["tie"]
    if metric in NO_BETTER_DIRECTION:
        return _MARKS["different"]
    return _MARKS["better"] if record["favours"] == method else _MARKS["worse"]


def _metric_table(metrics: pd.DataFrame, protocol: ProtocolRecord, columns: Sequence[str],
                  footnotes: Footnotes, significance: pd.DataFrame | None = None) -> dict:
    rows = []
    for (method, variant), group in metrics.groupby(["method", "variant"], sort=False):
        by_metric = {r["metric"]: r for r in group.to_dict("records")}
        cells = []
        for metric in columns:
            record = by_metric.get(metric)
            if record is None:
                cells.append(None)
                continue
            entry = protocol[record["protocol"]]
            has_interval = pd.notna(record.get("ci_low"))
            mark = _mark(significance, method, variant, metric)
            cells.append({
                "text": format_value(metric, record["value"]),
                "ci": (f"[{format_value(metric, record['ci_low'])}, {format_value(metric, record['ci_high'])}]"
                       if has_interval else None),
                "n": record["n"],
                "protocol": record["protocol"],
                "approx": footnotes.number(entry.get("approximation")),
                "mark": mark[0] if mark else "",
                "mark_title": mark[1] if mark else "",
            })
        rows.append({"method": method, "variant": variant, "cells": cells})
    return {
        "columns": [{"metric": m, "label": figures.METRIC_LABELS.get(m, m), "note": _COLUMN_NOTES.get(m)}
                    for m in columns],
        "rows": rows,
    }


def _stage_cost_text(stage: Mapping) -> str:
    """One training stage's CPU-seconds for the cost cell's tooltip, saying where a benchmark file gave them."""
    shared = " (shared)" if stage["shared"] else ""
    source = " (benchmark file: its last sample)" if stage.get("cpu_source") == "benchmark" else ""
    return f"{stage['stage']}{shared} {stage['cpu_s']:,.0f} s{source}"


def _add_training_cost(table: dict, costs: Mapping | None) -> None:
    """Each headline row gains its method's training cost (protocol.json's design.training_cost) and, beside
    its CPU-seconds, their ratio to CLIP-VQDiffusion's: the headline's budget is equal training CPU-seconds,
    so how far a rival's spend is from it is shown, not left to arithmetic."""
    table["cost"] = bool(costs)
    reference = (costs or {}).get(REFERENCE_METHOD)
    for row in table["rows"]:
        cost = (costs or {}).get(row["method"])
        ratio = None
        if cost is not None and reference and reference.get("cpu_s") and row["method"] != REFERENCE_METHOD:
            ratio = f"{cost['cpu_s'] / reference['cpu_s']:.2f}×"
        row["cost"] = None if cost is None else {
            "cpu": f"{cost['cpu_s']:,.0f}",
            "ratio": ratio,
            "examples": f"{cost['examples']:,.0f}",
            "parameters": "—" if cost.get("parameters") is None else f"{cost['parameters'] / 1e6:.2f}M",
            "stages": "; ".join(_stage_cost_text(stage) for stage in cost["stages"]),
        }


def comparison_tables(metrics: pd.DataFrame, protocol: ProtocolRecord, significance: pd.DataFrame | None = None) -> dict:
    """Headline (default variants), all variants, and per-attribute accuracy; shared footnotes. Headline cells of
    other methods carry a mark when they differ significantly from CLIP-VQDiffusion."""
    footnotes = Footnotes()
    present = set(metrics["metric"])
    main_columns = [m for m in ALLOWED_METRICS if m in present]
    attribute_columns = sorted(m for m in present if m.startswith(ATTRIBUTE_METRIC_PREFIX))
    main = metrics[metrics["metric"].isin(main_columns)]
    headline = _metric_table(main[main["variant"] == DEFAULT_VARIANT], protocol, main_columns, footnotes,
                             significance)
    variants = _metric_table(main[main["variant"] != DEFAULT_VARIANT], protocol, main_columns, footnotes)
    attributes = _metric_table(metrics[metrics["metric"].isin(attribute_columns)], protocol,
                               attribute_columns, footnotes)
    for column in attributes["columns"]:
        column["label"] = column["metric"][len(ATTRIBUTE_METRIC_PREFIX):]
    return {"headline": headline, "variants": variants, "attributes": attributes, "footnotes": footnotes.texts}


def check_paper_rows(paper_rows: Sequence[Mapping] | None) -> list[dict]:
    """Paper-reported numbers are shown only with a source; refuse rows without one, naming them."""
    checked = []
    for index, row in enumerate(paper_rows or []):
        missing = [key for key in PAPER_ROW_REQUIRED if row.get(key) in (None, "")]
        if missing:
            raise ReportError(f"paper_rows[{index}] lacks {', '.join(missing)} (every cited number needs a source)")
        checked.append({
            "method": str(row["method"]),
            "metric": str(row["metric"]),
            "metric_label": figures.METRIC_LABELS.get(str(row["metric"]), str(row["metric"])),
            "value": format_value(str(row["metric"]), row["value"]),
            "dataset": str(row.get("dataset", "")),
            "source": str(row["source"]),
            "note": str(row.get("note", "")),
        })
    return checked


# --------------------------------------------------------------------------------------------------
# Significance and the oracle's calibration
# --------------------------------------------------------------------------------------------------


def _significance_rows(significance: pd.DataFrame | None) -> list[dict]:
    rows = []
    for record in ([] if significance is None else significance.to_dict("records")):
        measured = pd.notna(record["p_value"])
        rows.append({
            "method": record["method"], "metric": figures.METRIC_LABELS.get(record["metric"], record["metric"]),
            "difference": f"{record['difference']:+.4g}" if measured else "—",
            "interval": f"[{record['ci_low']:+.4g}, {record['ci_high']:+.4g}]" if measured else "—",
            "p": f"{record['p_value']:.3g}" if measured else "—",
            "p_holm": f"{float(record['p_holm']):.3g}" if measured else "—",
            "significant": "yes" if record["significant"] else "no",
            "favours": record["favours"], "note": record["note"] or "",
        })
    return rows


def oracle_calibration_context(calibration: Mapping | None, sample_grids: Mapping | None, out_dir: Path) -> dict | None:
    """The accuracy-vs-degradation figure, and each method's samples placed on the blur scale: the level whose
    sharpness is closest, and the oracle's worst per-attribute accuracy there."""
    if not calibration:
        return None
    from clipvqd.oracle_calibration import resembling_level
    from clipvqd.report.inputs import sample_sharpness

    placed = []
    for label, value in sample_sharpness(sample_grids).items():
        level = resembling_level(calibration, value)
        placed.append({"method": label, "sharpness": f"{value:.4f}", "level": level["label"],
                       "level_sharpness": f"{level['sharpness']:.4f}", "oracle_min": f"{level['min']:.3f}",
                       "below": level["min"] < calibration["threshold"]})
    return {"figure": figures.oracle_calibration_figure(calibration, out_dir), "placed": placed,
            "threshold": calibration["threshold"], "below_threshold": calibration.get("below_threshold", []),
            "levels": [{"label": row["label"], "min": f"{row['min']:.3f}", "mean": f"{row['mean']:.3f}",
                        "sharpness": f"{row['sharpness']:.4f}"} for row in calibration["levels"]]}


# --------------------------------------------------------------------------------------------------
# Quality numbers
# --------------------------------------------------------------------------------------------------


def quality_context(quality_numbers: Mapping | None) -> list[dict]:
    """{group: {name: value}} (or a flat {name: value}) -> cards; these qualify every other number."""
    groups = []
    flat = {}
    for name, value in (quality_numbers or {}).items():
        if isinstance(value, Mapping):
            groups.append({"title": str(name), "entries": [(str(k), format_any(v)) for k, v in value.items()]})
        else:
            flat[str(name)] = format_any(value)
    if flat:
        groups.insert(0, {"title": "quality", "entries": list(flat.items())})
    return groups


# --------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------


def _environment() -> Environment:
    return Environment(loader=PackageLoader("clipvqd.report", "templates"),
                       autoescape=select_autoescape(["html", "j2"]), undefined=StrictUndefined,
                       trim_blocks=True, lstrip_blocks=True)


def _copy_alongside(source: Path, out_dir: Path, name: str) -> str:
    target = out_dir / name
    if source.resolve() != target.resolve():
        shutil.copyfile(source, target)
    return name


def _write_points(points: pd.DataFrame, out_dir: Path) -> str:
    """The quality-versus-compute points as compute_curve.csv beside the page; its name."""
    points.to_csv(out_dir / "compute_curve.csv", index=False, float_format="%.6g")
    return "compute_curve.csv"


def render_report(out_dir: str | Path, metrics_csv: str | Path, protocol_json: str | Path,
                  sample_grids: Mapping[str, str | Path] | None = None,
                  training_curves: Mapping[str, str | Path] | None = None,
                  benchmark_files: Sequence[str | Path] | None = None,
                  quality_numbers: Mapping | None = None, paper_rows: Sequence[Mapping] | None = None,
                  *, title: str = "clipvqd comparison report", run_name: str | None = None,
                  max_prompts: int = 6, max_samples_per_prompt: int = 4, significance: pd.DataFrame | None = None,
                  headline: Sequence[str] | None = None, oracle_calibration: Mapping | None = None,
                  by_seed_csv: str | Path | None = None, significance_csv: str | Path | None = None,
                  plan=None, diversity: pd.DataFrame | None = None,
                  compute_curve: pd.DataFrame | None = None) -> Path:
    """Write `out_dir/index.html` with its figures and assets; return its path.

    sample_grids: {label: sample manifest.csv (grids are built from it) or a ready-made grid image}.
    training_curves: {model name: CSV with a `step` column}. benchmark_files: Snakemake benchmark TSVs.
    quality_numbers: {group (e.g. "stand-in CLIP"): {name: value}}. paper_rows: cited numbers, each
    with method, metric, value, source (and optionally dataset, note); shown apart from measured rows.
    significance: the paired comparisons with CLIP-VQDiffusion (`significance.significance_table`); headline:
    the sentences written from them. oracle_calibration: the oracle's accuracy on degraded renders.
    plan: the `clipvqd.samples.SamplePlan` every sample manifest of `sample_grids` must hold. diversity: each
    prompt's within-prompt diversity per branch and seed (`diversity_figure.per_prompt_diversity`).
    compute_curve: the quality-versus-compute points (clipvqd.evaluation.compute_curve.curve_points), drawn
    when given.
    """
    from clipvqd.machine_speed import report_sentence as machine_speed_sentence
    from clipvqd.report.diversity_figure import diversity_figure

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    protocol = ProtocolRecord.read(protocol_json)
    metrics = read_metrics_table(metrics_csv, protocol_ids=protocol.ids())
    paper = check_paper_rows(paper_rows)

    # Figures and assets from earlier renders of this report would otherwise linger, stale.
    for stale in ("figures", "assets"):
        shutil.rmtree(out_dir / stale, ignore_errors=True)

    tables = comparison_tables(metrics, protocol, significance)
    _add_training_cost(tables["headline"], (protocol.design or {}).get("training_cost"))
    sweep = figures.sweep_figures(metrics, out_dir, protocol.entries)
    tradeoff = figures.tradeoff_figure(metrics, out_dir)
    diversity_result = diversity_figure(diversity, out_dir)
    training = figures.training_curve_figures(training_curves, out_dir)
    benchmarks, benchmark_notes = figures.read_benchmarks(benchmark_files or [])
    runtime = figures.runtime_figure(benchmarks, out_dir)
    sampling_speed = figures.sampling_speed_figure(metrics, benchmarks, out_dir, protocol.entries)
    samples = sample_grids_context(sample_grids, out_dir, max_prompts, max_samples_per_prompt, plan)
    calibration = oracle_calibration_context(oracle_calibration, sample_grids, out_dir)
    curve_figure = compute_curve_module.compute_curve_figure(compute_curve, out_dir)

    used = list(dict.fromkeys(metrics["protocol"]))
    cards = []
    for pid in used + sorted(protocol.ids() - set(used)):
        rows = metrics[metrics["protocol"] == pid]
        users = [f"{method} / {variant}: {', '.join(group['metric'])}"
                 for (method, variant), group in rows.groupby(["method", "variant"], sort=False)]
        cards.append({"id": pid, "kind": protocol[pid].get("kind"), "facts": protocol_facts(protocol[pid]),
                      "json": json.dumps(protocol[pid], indent=2, sort_keys=True), "used_by": len(rows),
                      "users": users})

    shutil.copyfile(Path(__file__).parent / "templates" / STYLESHEET, out_dir / STYLESHEET)
    context = {
        "title": title,
        "run_name": run_name or out_dir.resolve().name,
        "methods": [m for m in ALLOWED_METHODS if m in set(metrics["method"])],
        "n_rows": len(metrics),
        "tables": tables,
        "paper_rows": paper,
        "sweep_figures": sweep,
        "tradeoff": tradeoff,
        "diversity": diversity_result,
        "sampling_speed": sampling_speed,
        "samples": samples,
        "training_figures": training,
        "runtime": runtime,
        "runtime_rows": [
            {"stage": r["stage"], "seconds": f"{r['seconds']:.1f}",
             "max_rss": "—" if pd.isna(r["max_rss_mb"]) else f"{r['max_rss_mb']:.0f}", "repeats": r["repeats"]}
            for r in benchmarks.to_dict("records")
        ],
        "runtime_notes": benchmark_notes,
        "machine_speed": machine_speed_sentence((protocol.design or {}).get("machine_speed")),
        "protocol_cards": cards,
        "quality": quality_context(quality_numbers),
        "headline": list(headline or []),
        "significance_rows": _significance_rows(significance),
        "design": protocol.design,
        "data": (protocol.design or {}).get("data"),
        "validation_run": bool(protocol.design and protocol.design.get("prompts") == "validation"),
        "calibration": calibration,
        "compute_curve": None if curve_figure is None else {
            "figure": curve_figure, "rows": compute_curve_module.compute_curve_rows(compute_curve),
            "csv": _write_points(compute_curve, out_dir)},
        "by_seed_link": _copy_alongside(Path(by_seed_csv), out_dir, "metrics_by_seed.csv") if by_seed_csv else None,
        "significance_link": (_copy_alongside(Path(significance_csv), out_dir, "significance.csv")
                              if significance_csv else None),
        "metrics_link": _copy_alongside(Path(metrics_csv), out_dir, "metrics.csv"),
        "protocol_link": _copy_alongside(Path(protocol_json), out_dir, "protocol.json"),
        "stylesheet": STYLESHEET,
    }
    html = _environment().get_template("index.html.j2").render(**context)
    index = out_dir / "index.html"
    index.write_text(html, encoding="utf-8")
    return index
