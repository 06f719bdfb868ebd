"""The comparison report from the branches' outputs: merge the per-branch tables and protocol records,
prepare the other inputs, render (the workflow's `report` rule)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping, Sequence

from clipvqd.report.inputs import collect_benchmark_files, read_paper_rows, read_quality_numbers
from clipvqd.report.render import ReportError, render_report


def build_report(out_dir: str | Path, tables: Sequence[str | Path], protocols: Sequence[str | Path],
                 metrics_out: str | Path, protocol_out: str | Path, *,
                 sample_grids: Mapping[str, str | Path] | None = None,
                 training_curves: Mapping[str, str | Path] | None = None,
                 quality_files: Mapping[str, str | Path] | None = None,
                 benchmark_files: Iterable[str | Path] = (), benchmark_dirs: Iterable[str | Path] = (),
                 paper_rows: str | Path | None = None, title: str = "clipvqd comparison report",
                 run_name: str | None = None, plan=None) -> Path:
    """Write the merged metrics.csv and protocol.json, then `out_dir/index.html`; return its path.

    `tables` and `protocols` are the branches' outputs, in the same order; `quality_files` maps a group
    label to a metrics.json of a tool (CLIP, oracle, tokenizer); `benchmark_dirs` are read as they are now;
    `plan` (a `clipvqd.samples.SamplePlan`) is what every sample manifest of `sample_grids` must hold.
    """
    from clipvqd.evaluation import merge_results

    if len(tables) != len(protocols):
        raise ReportError(f"{len(tables)} metrics tables but {len(protocols)} protocol files; "
                          "give one protocol per table")
    quality = read_quality_numbers(quality_files or {})
    paper = read_paper_rows(paper_rows)
    merge_results(tables, protocols, metrics_out, protocol_out)
    index = render_report(out_dir, metrics_out, protocol_out, sample_grids=sample_grids,
                          training_curves=training_curves,
                          benchmark_files=collect_benchmark_files(benchmark_files, benchmark_dirs),
                          quality_numbers=quality, paper_rows=paper, title=title, run_name=run_name, plan=plan)
    # Always present, so the workflow can declare it (empty when no figure could be drawn).
    (Path(out_dir) / "figures").mkdir(parents=True, exist_ok=True)
    return index
