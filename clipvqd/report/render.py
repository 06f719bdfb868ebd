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
    read_metrics_table,
)
from clipvqd.manifest import ManifestError, read_listed_bytes, read_manifest
from clipvqd.report import figures
from clipvqd.samples import SampleSetError, check_same_plan

STYLESHEET = "report.css"
PAPER_ROW_REQUIRED = ("method", "metric", "value", "source")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif"}

_METRIC_FORMATS = {"fid": "{:.2f}", "kid": "{:.4f}"}
_COLUMN_NOTES = {
    "clipscore_best16": "scored by the CLIP that conditioned the method (self-scoring can inflate it); n = prompts",
    "clipscore_mean": "scored by the CLIP that conditioned the method (self-scoring can inflate it)",
    "clipscore_judge_mean": "scored by a judge CLIP that conditioned no method",
    "attr_acc": "attribute oracle, in-distribution prompts",
    "attr_acc_ood": "attribute oracle, attribute combinations never seen in training",
}


class ReportError(ValueError):
    pass


def format_value(metric: str, value) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    base = "attr_acc" if metric.startswith(ATTRIBUTE_METRIC_PREFIX) else metric
    return _METRIC_FORMATS.get(base, "{:.3f}").format(float(value))


def _format_any(value) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_format_any(v) for v in value)
    if isinstance(value, Mapping):
        return "; ".join(f"{k}={_format_any(v)}" for k, v in value.items())
    return str(value)


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


def _metric_table(metrics: pd.DataFrame, protocol: ProtocolRecord, columns: Sequence[str],
                  footnotes: Footnotes) -> dict:
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
            cells.append({
                "text": format_value(metric, record["value"]),
                "n": record["n"],
                "protocol": record["protocol"],
                "approx": footnotes.number(entry.get("approximation")),
            })
        rows.append({"method": method, "variant": variant, "cells": cells})
    return {
        "columns": [{"metric": m, "label": figures.METRIC_LABELS.get(m, m), "note": _COLUMN_NOTES.get(m)}
                    for m in columns],
        "rows": rows,
    }


def comparison_tables(metrics: pd.DataFrame, protocol: ProtocolRecord) -> dict:
    """Headline (default variants), all variants, and per-attribute accuracy; shared footnotes."""
    footnotes = Footnotes()
    present = set(metrics["metric"])
    main_columns = [m for m in ALLOWED_METRICS if m in present]
    attribute_columns = sorted(m for m in present if m.startswith(ATTRIBUTE_METRIC_PREFIX))
    main = metrics[metrics["metric"].isin(main_columns)]
    headline = _metric_table(main[main["variant"] == DEFAULT_VARIANT], protocol, main_columns, footnotes)
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
# Protocol cards
# --------------------------------------------------------------------------------------------------


def protocol_facts(entry: Mapping) -> list[tuple[str, str]]:
    """The few lines of an entry a reader needs, in words; the full entry is shown as JSON beside them."""
    facts: list[tuple[str, str]] = []

    def add(label: str, value) -> None:
        if value not in (None, "", [], {}):
            facts.append((label, _format_any(value)))

    library = entry.get("library") or {}
    if library:
        add("library", f"{library.get('name')} {library.get('version')}")
    add("metrics", entry.get("metrics"))
    add("definition", entry.get("definition"))
    extractor = entry.get("feature_extractor") or {}
    if extractor:
        add("feature extractor", f"{extractor.get('description')} [{extractor.get('name')}], layer {extractor.get('feature_layer')}")
        add("extractor weights sha256", extractor.get("weights_sha256"))
        add("preprocessing", extractor.get("preprocessing"))
    add("approximation", entry.get("approximation"))
    add("mode", entry.get("mode"))
    clip = entry.get("clip") or {}
    if clip:
        add("CLIP", f"{clip.get('label')} (weights sha256 {clip.get('weights_sha256')})")
        if not extractor:
            add("preprocessing", entry.get("preprocessing"))
    add("role", entry.get("note"))
    add("best of N", entry.get("best_of"))
    generated = entry.get("generated") or {}
    sampling = entry.get("sampling") or generated.get("sampling") or {}
    if generated:
        add("generated set", f"{generated.get('n')} images, {generated.get('resolution', ['?'])[0]}px, "
                             f"content sha256 {str(generated.get('content_sha256'))[:16]}…")
    reference = entry.get("reference") or {}
    if reference:
        add("reference set", f"{reference.get('name') or reference.get('label')}: {reference.get('n')} images, "
                             f"content sha256 {str(reference.get('content_sha256'))[:16]}…")
    add("resolution", entry.get("resolution"))
    if sampling:
        add("samples", sampling.get("n_samples"))
        prompt_set = sampling.get("prompt_set") or {}
        if prompt_set:
            add("prompt set", f"{prompt_set.get('n_prompts')} prompts, sha256 {str(prompt_set.get('sha256'))[:16]}…")
        add("samples per prompt", sampling.get("samples_per_prompt"))
        add("seeds", sampling.get("seeds"))
        add("sampling settings", sampling.get("settings"))
    add("metric settings", entry.get("settings"))
    cross = entry.get("cross_check") or {}
    if cross:
        outcome = (f"FID = {cross['fid']:.4g}" if cross.get("fid") is not None
                   else cross.get("error") or "no value")
        if cross.get("relative_difference") is not None:
            outcome += f", relative difference to torch-fidelity {cross['relative_difference']:.2g}"
        add("cross-check", f"{cross.get('library')} {cross.get('version')}: {outcome} (resize: {cross.get('resize')})")
    versions = entry.get("versions") or {}
    add("versions", versions)
    # Entries of other kinds (e.g. the attribute oracle's): show their remaining plain fields.
    shown = {"kind", "library", "metrics", "definition", "feature_extractor", "approximation", "mode", "clip",
             "note", "best_of", "generated", "sampling", "reference", "resolution", "settings", "cross_check",
             "versions", "preprocessing"}
    for key, value in entry.items():
        if key not in shown:
            add(key.replace("_", " "), value)
    return facts


# --------------------------------------------------------------------------------------------------
# Sample grids
# --------------------------------------------------------------------------------------------------


def _copy_asset(source: Path, out_dir: Path, relative: Path) -> str:
    if not source.is_file():
        raise ReportError(f"report asset {source} does not exist")
    target = out_dir / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return relative.as_posix()


def _copy_listed(manifest: Path, record: Mapping, out_dir: Path, relative: Path) -> str:
    """Copy one image a sample manifest lists into the report: its path must stay inside the manifest's
    folder and its bytes must have the recorded sha256 (the same rule as every reader of a manifest)."""
    try:
        data = read_listed_bytes(manifest, record["path"], record["sha256"])
    except ManifestError as error:
        raise ReportError(str(error)) from None
    target = out_dir / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return relative.as_posix()


def sample_grids_context(sample_grids: Mapping[str, str | Path] | None, out_dir: Path, max_prompts: int,
                         max_samples: int, plan=None) -> dict:
    """Sample manifests become per-prompt rows of every method's first samples; ready-made grid images are
    shown as they are. The manifests must hold the same (prompt, sample index, seed) rows, and each exactly
    `plan` (a `clipvqd.samples.SamplePlan`) when given; every copied image must have its recorded sha256."""
    manifests, images = {}, []
    for label, source in (sample_grids or {}).items():
        source = Path(source)
        if source.suffix.lower() == ".csv":
            try:
                frame = read_manifest(source, verify=False)  # paths checked here, each copied file's hash below
            except ManifestError as error:
                raise ReportError(str(error)) from None
            missing = [c for c in ("prompt_id", "prompt", "sample_index") if c not in frame.columns]
            if missing:
                raise ReportError(f"sample manifest {source} (grid {label!r}) lacks column(s) {', '.join(missing)}")
            manifests[label] = (source, frame)
        elif source.suffix.lower() in IMAGE_SUFFIXES:
            slug = figures.slug(label)
            images.append({"label": label, "path": _copy_asset(source, out_dir,
                                                               Path("assets", "grids", f"{slug}{source.suffix.lower()}"))})
        else:
            raise ReportError(f"sample grid {label!r}: {source} is neither a manifest (.csv) nor an image")
    try:
        for source, frame in manifests.values():
            if plan is not None:
                plan.check(frame, source)
        check_same_plan(manifests)
    except SampleSetError as error:
        raise ReportError(str(error)) from None
    prompt_order: dict[str, str] = {}
    for _, frame in manifests.values():
        for pid, prompt in frame.sort_values("prompt_id", kind="stable")[["prompt_id", "prompt"]].itertuples(index=False):
            prompt_order.setdefault(str(pid), str(prompt))
    prompts = []
    for prompt_index, (pid, prompt) in enumerate(list(prompt_order.items())[:max_prompts]):
        rows = []
        for label, (source, frame) in manifests.items():
            subset = frame[frame["prompt_id"].astype(str) == pid].sort_values("sample_index").head(max_samples)
            cells = []
            for record in subset.to_dict("records"):
                suffix = Path(record["path"]).suffix.lower()
                if suffix not in IMAGE_SUFFIXES:
                    raise ReportError(f"sample manifest {source} lists {record['path']!r}, which is not an image")
                relative = Path("assets", "samples", figures.slug(label),
                                f"p{prompt_index:03d}_s{int(record['sample_index']):03d}{suffix}")
                cells.append({"path": _copy_listed(source, record, out_dir, relative),
                              "caption": f"sample {record['sample_index']}"
                                         + (f", seed {record['seed']}" if "seed" in record else "")})
            rows.append({"label": label, "cells": cells})
        prompts.append({"prompt_id": pid, "prompt": prompt, "rows": rows})
    return {"prompts": prompts, "images": images, "n_prompts_total": len(prompt_order),
            "max_prompts": max_prompts, "max_samples": max_samples}


# --------------------------------------------------------------------------------------------------
# Quality numbers
# --------------------------------------------------------------------------------------------------


def quality_context(quality_numbers: Mapping | None) -> list[dict]:
    """{group: {name: value}} (or a flat {name: value}) -> cards; these qualify every other number."""
    groups = []
    flat = {}
    for name, value in (quality_numbers or {}).items():
        if isinstance(value, Mapping):
            groups.append({"title": str(name), "entries": [(str(k), _format_any(v)) for k, v in value.items()]})
        else:
            flat[str(name)] = _format_any(value)
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


def render_report(out_dir: str | Path, metrics_csv: str | Path, protocol_json: str | Path,
                  sample_grids: Mapping[str, str | Path] | None = None,
                  training_curves: Mapping[str, str | Path] | None = None,
                  benchmark_files: Sequence[str | Path] | None = None,
                  quality_numbers: Mapping | None = None, paper_rows: Sequence[Mapping] | None = None,
                  *, title: str = "clipvqd comparison report", run_name: str | None = None,
                  max_prompts: int = 6, max_samples_per_prompt: int = 4, plan=None) -> Path:
    """Write `out_dir/index.html` with its figures and assets; return its path.

    sample_grids: {label: sample manifest.csv (grids are built from it) or a ready-made grid image}.
    training_curves: {model name: CSV with a `step` column}. benchmark_files: Snakemake benchmark TSVs.
    quality_numbers: {group (e.g. "stand-in CLIP"): {name: value}}. paper_rows: cited numbers, each
    with method, metric, value, source (and optionally dataset, note); shown apart from measured rows.
    plan: the `clipvqd.samples.SamplePlan` every sample manifest of `sample_grids` must hold.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    protocol = ProtocolRecord.read(protocol_json)
    metrics = read_metrics_table(metrics_csv, protocol_ids=protocol.ids())
    paper = check_paper_rows(paper_rows)

    # Figures and assets from earlier renders of this report would otherwise linger, stale.
    for stale in ("figures", "assets"):
        shutil.rmtree(out_dir / stale, ignore_errors=True)

    tables = comparison_tables(metrics, protocol)
    sweep = figures.sweep_figures(metrics, out_dir, protocol.entries)
    tradeoff = figures.tradeoff_figure(metrics, out_dir)
    training = figures.training_curve_figures(training_curves, out_dir)
    benchmarks, benchmark_notes = figures.read_benchmarks(benchmark_files or [])
    runtime = figures.runtime_figure(benchmarks, out_dir)
    sampling_speed = figures.sampling_speed_figure(metrics, benchmarks, out_dir, protocol.entries)
    samples = sample_grids_context(sample_grids, out_dir, max_prompts, max_samples_per_prompt, plan)

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
        "protocol_cards": cards,
        "quality": quality_context(quality_numbers),
        "metrics_link": _copy_alongside(Path(metrics_csv), out_dir, "metrics.csv"),
        "protocol_link": _copy_alongside(Path(protocol_json), out_dir, "protocol.json"),
        "stylesheet": STYLESHEET,
    }
    html = _environment().get_template("index.html.j2").render(**context)
    index = out_dir / "index.html"
    index.write_text(html, encoding="utf-8")
    return index
