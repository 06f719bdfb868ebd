"""Paired comparisons between branches of finished metrics jobs: how a default is re-chosen on the validation
prompts (README, "Which defaults were chosen on what").

A branch is named by the common prefix of what its metrics job wrote, e.g.
`results/world-validation/metrics/clip-vqdiffusion/default` for `default.csv`, `default.units.csv` and
`default.features.safetensors`. Each candidate is compared with the reference on every metric asked for by
the paired bootstrap the report uses against CLIP-VQDiffusion (`clipvqd.evaluation.uncertainty.compare_branches`):
the same training seeds and the same resampled prompts (alignment metrics) or distribution-set images (FID,
KID, precision, recall, CMMD) for both, so the branches must have been measured on the same prompt table and
sampling seeds (two runs of one tuning overlay that differ in a scalar key are). A sweep point of one run and
a branch of another run compare the same way.

    python benchmarks/compare_variants.py --reference results/world-validation/metrics/clip-vqdiffusion/default \\
        results/world-validation/metrics/clip-vqdiffusion/alpha=0.5,cfg=true,s=1.2,r=0.85,steps=10,purity=false

prints one row per (candidate, metric): both values with their 95% intervals (from the metrics tables),
candidate − reference with its paired 95% interval and two-sided p-value, and which side the interval
favours ("neither" when it contains zero). `--csv FILE` also writes the rows.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from clipvqd.evaluation.bootstrap import BootstrapSettings, PairedComparison  # noqa: E402
from clipvqd.evaluation.table import favoured  # noqa: E402
from clipvqd.evaluation.uncertainty import BranchData, compare_branches  # noqa: E402

DEFAULT_METRICS = ("attr_acc", "attr_acc_ood", "clipscore_judge_mean", "clipscore_mean", "fid", "precision",
                   "recall", "cmmd", "within_prompt_diversity")


def branch(prefix: str) -> tuple[BranchData, pd.DataFrame]:
    """The branch's units and features for comparisons, and its metrics table (value and interval)."""
    base = Path(prefix)
    table, units, features = (base.parent / f"{base.name}{suffix}" for suffix in
                              (".csv", ".units.csv", ".features.safetensors"))
    for path in (table, units, features):
        if not path.is_file():
            raise SystemExit(f"branch {prefix}: {path} does not exist (a finished metrics job writes it)")
    return BranchData.read(str(base), units, features), pd.read_csv(table)


def favours(metric: str, comparison: PairedComparison) -> str:
    if not comparison.excludes_zero:
        return "neither"
    return favoured(metric, comparison.difference, "candidate", "reference")


def value_text(table: pd.DataFrame, metric: str) -> str:
    row = table[table["metric"] == metric]
    if row.empty:
        return "not measured"
    record = row.iloc[0]
    text = f"{record['value']:.4f}"
    if pd.notna(record.get("ci_low")):
        text += f" [{record['ci_low']:.4f}, {record['ci_high']:.4f}]"
    return text


def compare(reference: str, candidates: list[str], metrics: list[str], settings: BootstrapSettings) -> pd.DataFrame:
    base, base_table = branch(reference)
    rows = []
    for candidate in candidates:
        other, other_table = branch(candidate)
        for metric in metrics:
            outcome = compare_branches(metric, other, base, settings)
            row = {"candidate": candidate, "reference": reference, "metric": metric,
                   "candidate_value": value_text(other_table, metric),
                   "reference_value": value_text(base_table, metric)}
            if isinstance(outcome, PairedComparison):
                row.update(difference=outcome.difference, ci_low=outcome.ci_low, ci_high=outcome.ci_high,
                           p_value=outcome.p_value, favours=favours(metric, outcome))
            else:
                row.update(difference=None, ci_low=None, ci_high=None, p_value=None, favours=f"no comparison: {outcome}")
            rows.append(row)
    return pd.DataFrame(rows)


def short_name(prefix: str) -> str:
    """results/<run>/metrics/<method>/<variant> -> <run>/<method>/<variant> (for the printed table)."""
    parts = Path(prefix).parts
    return "/".join(parts[-4:-3] + parts[-2:]) if len(parts) >= 4 and parts[-3] == "metrics" else prefix


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", required=True, help="the branch every candidate is compared with")
    parser.add_argument("candidates", nargs="+", help="branches to compare with the reference")
    parser.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS))
    parser.add_argument("--replicates", type=int, default=1000, help="bootstrap resamples (evaluation.bootstrap)")
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=0, help="the bootstrap's own seed")
    parser.add_argument("--csv", type=Path, help="also write the rows to this file")
    args = parser.parse_args(argv)
    table = compare(args.reference, args.candidates, args.metrics,
                    BootstrapSettings(args.replicates, args.confidence, args.seed))
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.csv, index=False, float_format="%.6g")
    with pd.option_context("display.max_rows", None, "display.max_columns", None, "display.width", 250,
                           "display.max_colwidth", 60, "display.float_format", "{:.4f}".format):
        shown = table.assign(candidate=[short_name(c) for c in table["candidate"]],
                             reference=[short_name(r) for r in table["reference"]])
        print(shown.to_string(index=False))


if __name__ == "__main__":
    main()
