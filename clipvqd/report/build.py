"""The comparison report from the branches' outputs: merge the per-branch tables and protocol records,
compare every method with CLIP-VQDiffusion, prepare the other inputs, render (the workflow's `report` rule)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping, Sequence

from clipvqd.report.inputs import (
    check_branch_files,
    collect_benchmark_files,
    read_machine_speed,
    read_oracle_calibration,
    read_paper_rows,
    read_quality_numbers,
)
from clipvqd.report.render import ReportError, render_report


def build_report(out_dir: str | Path, tables: Sequence[str | Path], protocols: Sequence[str | Path],
                 metrics_out: str | Path, protocol_out: str | Path, *,
                 by_seed: Sequence[str | Path] = (), by_seed_out: str | Path | None = None,
                 units: Sequence[str | Path] = (), features: Sequence[str | Path] = (),
                 significance_out: str | Path | None = None, design: Mapping | None = None,
                 bootstrap=None, significance_level: float = 0.05,
                 oracle_calibration: str | Path | None = None,
                 sample_grids: Mapping[str, str | Path] | None = None,
                 training_curves: Mapping[str, str | Path] | None = None,
                 quality_files: Mapping[str, str | Path] | None = None,
                 benchmark_files: Iterable[str | Path] = (), benchmark_dirs: Iterable[str | Path] = (),
                 paper_rows: str | Path | None = None, title: str = "clipvqd comparison report",
                 run_name: str | None = None, plan=None,
                 training_stages: Mapping[str, Sequence[Mapping]] | None = None,
                 machine_speed: str | Path | None = None,
                 compute_curve: Mapping[str, Sequence[Mapping]] | None = None) -> Path:
    """Write the merged metrics.csv, metrics_by_seed.csv, significance.csv and protocol.json, then
    `out_dir/index.html`; return its path.

    `tables`, `protocols` and (when given) `by_seed`, `units` and `features` are the branches' outputs, in the
    same order (each units table and feature file must have the sha256 its branch's protocol file records);
    `design` is protocol.json's description of the evaluation; `quality_files` maps a group label to a
    metrics.json of a tool (CLIP, oracle, tokenizer); `benchmark_dirs` are read as they are now; `plan` (a
    `clipvqd.samples.SamplePlan`) is what every sample manifest of `sample_grids` must hold; `training_stages`
    lists each method's training jobs (`clipvqd.evaluation.compute.methods_training_cost`): their cost goes
    into protocol.json's design and the main table; `machine_speed` is the run's calibration
    (`clipvqd.machine_speed`), recorded in the design beside the README's and shown with the run times.
    `compute_curve` lists each method's points of quality versus training compute
    (`clipvqd.evaluation.compute_curve.curve_points`): drawn, tabulated and written to compute_curve.csv
    when given.
    """

    from clipvqd.evaluation import merge_results
    from clipvqd.evaluation.bootstrap import BootstrapSettings
    from clipvqd.evaluation.table import read_metrics_table
    from clipvqd.evaluation.uncertainty import BranchData
    from clipvqd.report.diversity_figure import per_prompt_diversity
    from clipvqd.report.significance import headline_sentences, significance_table

    if len(tables) != len(protocols):
        raise ReportError(f"{len(tables)} metrics tables but {len(protocols)} protocol files; "
                          "give one protocol per table")
    for name, given in (("per-seed tables", by_seed), ("units tables", units), ("feature files", features)):
        if given and len(given) != len(tables):
            raise ReportError(f"{len(tables)} metrics tables but {len(given)} {name}; give one per table")
    quality = read_quality_numbers(quality_files or {})
    paper = read_paper_rows(paper_rows)
    calibration = read_oracle_calibration(oracle_calibration)
    if machine_speed:
        from clipvqd.machine_speed import design_entry

        design = dict(design or {}, machine_speed=design_entry(read_machine_speed(machine_speed)))
    if training_stages:
        from clipvqd.evaluation.compute import methods_training_cost

        design = dict(design or {}, training_cost=methods_training_cost(training_stages))
    curve = None
    if compute_curve:
        from clipvqd.evaluation.compute_curve import curve_points

        curve = curve_points(compute_curve)
    merged, record = merge_results(tables, protocols, metrics_out, protocol_out, by_seed_paths=by_seed,
                                   out_by_seed=by_seed_out if by_seed else None, design=design)
    settings = bootstrap or BootstrapSettings()
    branches = {}
    for index, table in enumerate(tables):
        frame = read_metrics_table(table)
        if frame.empty:
            continue
        key = (frame["method"].iloc[0], frame["variant"].iloc[0])
        check_branch_files(protocols[index], units=units[index] if units else None,
                           features=features[index] if features else None)
        branches[key] = BranchData.read(f"{key[0]}/{key[1]}", units[index] if units else None,
                                        features[index] if features else None)
    significance = significance_table(merged, branches, settings, significance_level)
    if significance_out is not None:
        Path(significance_out).parent.mkdir(parents=True, exist_ok=True)
        significance.to_csv(significance_out, index=False, float_format="%.6g")
    seeds = (record.design or {}).get("seeds", {}).get("values") if record.design else None
    headline = headline_sentences(merged, significance, significance_level, len(seeds) if seeds else None)
    index = render_report(out_dir, metrics_out, protocol_out, sample_grids=sample_grids,
                          training_curves=training_curves,
                          benchmark_files=collect_benchmark_files(benchmark_files, benchmark_dirs),
                          quality_numbers=quality, paper_rows=paper, title=title, run_name=run_name,
                          significance=significance, headline=headline, oracle_calibration=calibration,
                          by_seed_csv=by_seed_out if by_seed else None,
                          significance_csv=significance_out, plan=plan,
                          diversity=per_prompt_diversity(branches), compute_curve=curve)
    # Always present, so the workflow can declare it (empty when no figure could be drawn).
    (Path(out_dir) / "figures").mkdir(parents=True, exist_ok=True)
    return index
