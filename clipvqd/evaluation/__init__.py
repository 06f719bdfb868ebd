"""Evaluation: image-set metrics (FID/KID/precision-recall), CLIPscore, the tidy table and the protocol.

Every function here takes a method's samples as a manifest (PNGs + `manifest.csv`), so metrics never
know which method made the images (docs/design.md §3). Heavy imports (torch-fidelity, clean-fid) stay
inside the submodules that need them; `evaluate_branch` is the whole metrics job of one branch.
"""

from clipvqd.evaluation.branch import evaluate_branch
from clipvqd.evaluation.table import (
    ALLOWED_METHODS,
    ALLOWED_METRICS,
    METRICS_COLUMNS,
    MetricsTableError,
    merge_metrics_tables,
    metric_row,
    parse_variant,
    read_metrics_table,
    validate_metrics_table,
    variant_name,
    write_metrics_table,
)

__all__ = [
    "ALLOWED_METHODS",
    "ALLOWED_METRICS",
    "METRICS_COLUMNS",
    "MetricsTableError",
    "merge_metrics_tables",
    "metric_row",
    "parse_variant",
    "read_metrics_table",
    "validate_metrics_table",
    "variant_name",
    "write_metrics_table",
]


def merge_results(metrics_paths, protocol_paths, out_metrics, out_protocol, by_seed_paths=(), out_by_seed=None,
                  design=None):
    """Join per-branch metrics tables (and per-seed tables) and protocol records into the run's metrics.csv,
    metrics_by_seed.csv and protocol.json (with the run's `design`); every row must point at an entry of the
    merged protocol."""
    from clipvqd.evaluation.protocol import merge_protocol_files
    from clipvqd.evaluation.table import BY_SEED_COLUMNS

    record = merge_protocol_files(protocol_paths, out_protocol, design=design)
    merged = merge_metrics_tables(metrics_paths, out_metrics, protocol_ids=record.ids())
    if out_by_seed is not None:
        merge_metrics_tables(by_seed_paths, out_by_seed, protocol_ids=record.ids(), columns=BY_SEED_COLUMNS)
    return merged, record


__all__ += ["evaluate_branch", "merge_results"]
