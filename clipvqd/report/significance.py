"""Which differences from CLIP-VQDiffusion are significant, and the headline sentences written from them.

Every other method's default variant is compared with CLIP-VQDiffusion's default variant on every main
metric by a paired bootstrap (`clipvqd.evaluation.uncertainty.compare_branches`: the same seeds and the
same resampled prompts, or distribution-set images, for both). The p-values of the methods compared on one
metric are Holm-adjusted; a difference is significant when the adjusted p-value is below the level. The
headline sentences are generated from this table, never written by hand.
"""

from __future__ import annotations

from typing import Mapping

import pandas as pd

from clipvqd.evaluation.bootstrap import BootstrapSettings, PairedComparison, holm_adjust
from clipvqd.evaluation.table import (
    ALLOWED_METRICS,
    DEFAULT_VARIANT,
    DISTRIBUTION_METRICS,
    favoured,
)
from clipvqd.evaluation.uncertainty import BranchData, compare_branches

REFERENCE_METHOD = "clip-vqdiffusion"
SIGNIFICANCE_COLUMNS = ("method", "variant", "metric", "reference_method", "difference", "ci_low", "ci_high",
                        "p_value", "p_holm", "significant", "favours", "note")
# The unconditional control ignores its prompt: on the distribution set it models the marginal distribution,
# so its distribution metrics are a reference point, not a rival.
REFERENCE_POINTS = {"unconditional": DISTRIBUTION_METRICS}

METHOD_NAMES = {"clip-vqdiffusion": "CLIP-VQDiffusion", "lafite": "LAFITE", "clip2latent": "clip2latent",
                "paired": "the paired-caption control", "unconditional": "the unconditional control"}
METRIC_PHRASES = {
    "attr_acc": "attribute accuracy (in-distribution prompts)",
    "attr_acc_ood": "attribute accuracy on held-out attribute combinations",
    "clipscore_judge_mean": "the judge CLIP's score",
    "clipscore_mean": "the conditioner CLIP's score",
    "clipscore_best16": "best-of-16 CLIPscore (conditioner)",
    "fid": "FID on the distribution set",
    "kid": "KID on the distribution set",
    "cmmd": "CMMD on the distribution set",
    "precision": "precision on the distribution set",
    "recall": "recall on the distribution set",
    "within_prompt_diversity": "within-prompt diversity (judge CLIP image features)",
}
HEADLINE_METRICS = ("attr_acc", "attr_acc_ood", "clipscore_judge_mean", "fid", "cmmd")


def significance_table(metrics: pd.DataFrame, branches: Mapping[tuple[str, str], BranchData],
                       settings: BootstrapSettings, level: float = 0.05) -> pd.DataFrame:
    """One row per (other method's default variant, metric): the paired difference method − CLIP-VQDiffusion,
    its interval, raw and Holm-adjusted p-values, whether it is significant, and which method it favours."""
    reference = branches.get((REFERENCE_METHOD, DEFAULT_VARIANT))
    defaults = metrics[metrics["variant"] == DEFAULT_VARIANT]
    rows = []
    if reference is not None:
        for metric in [m for m in ALLOWED_METRICS if m in set(defaults["metric"])]:
            measured = set(defaults.loc[defaults["metric"] == metric, "method"])
            if REFERENCE_METHOD not in measured:
                continue
            for method in sorted(measured - {REFERENCE_METHOD}, key=list(METHOD_NAMES).index):
                other = branches.get((method, DEFAULT_VARIANT))
                outcome = (compare_branches(metric, other, reference, settings) if other is not None
                           else "no units or features for this branch")
                row = {"method": method, "variant": DEFAULT_VARIANT, "metric": metric,
                       "reference_method": REFERENCE_METHOD, "note": ""}
                if isinstance(outcome, PairedComparison):
                    row.update(difference=outcome.difference, ci_low=outcome.ci_low, ci_high=outcome.ci_high,
                               p_value=outcome.p_value)
                else:
                    row.update(difference=None, ci_low=None, ci_high=None, p_value=None, note=outcome)
                if metric in REFERENCE_POINTS.get(method, ()):
                    row["note"] = ("reference point, not a rival: it ignores its prompts and models the marginal "
                                   "distribution")
                rows.append(row)
    table = pd.DataFrame(rows, columns=[c for c in SIGNIFICANCE_COLUMNS if c not in ("p_holm", "significant",
                                                                                     "favours")])
    table["p_holm"] = None
    for metric, group in table[table["p_value"].notna()].groupby("metric"):
        table.loc[group.index, "p_holm"] = holm_adjust(group["p_value"].astype(float).tolist())
    table["significant"] = [bool(p is not None and pd.notna(p) and p < level) for p in table["p_holm"]]
    table["favours"] = [_favours(row) for row in table.to_dict("records")]
    return table[list(SIGNIFICANCE_COLUMNS)]


def _favours(row: Mapping) -> str:
    if not row["significant"]:
        return "neither"
    return favoured(row["metric"], row["difference"], row["method"], row["reference_method"])


def _value_text(metrics: pd.DataFrame, method: str, metric: str) -> str:
    row = metrics[(metrics["method"] == method) & (metrics["variant"] == DEFAULT_VARIANT)
                  & (metrics["metric"] == metric)]
    if row.empty:
        return "not measured"
    record = row.iloc[0]
    digits = "{:.4f}" if metric in ("kid",) else "{:.3f}"
    text = digits.format(record["value"])
    if pd.notna(record["ci_low"]):
        text += f" [{digits.format(record['ci_low'])}, {digits.format(record['ci_high'])}]"
    return text


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def headline_sentences(metrics: pd.DataFrame, significance: pd.DataFrame, level: float = 0.05,
                       seeds: int | None = None) -> list[str]:
    """One sentence per headline metric, written from the significance table."""
    sentences = []
    for metric in HEADLINE_METRICS:
        rows = significance[significance["metric"] == metric]
        if rows.empty:
            continue
        ours = _value_text(metrics, REFERENCE_METHOD, metric)
        ahead, behind, tied, points = [], [], [], []
        for row in rows.to_dict("records"):
            name = f"{METHOD_NAMES[row['method']]} ({_value_text(metrics, row['method'], metric)})"
            if row["method"] in REFERENCE_POINTS and metric in REFERENCE_POINTS[row["method"]]:
                points.append(name)
            elif row["favours"] == REFERENCE_METHOD:
                ahead.append(name)
            elif row["favours"] == row["method"]:
                behind.append(name)
            else:
                tied.append(name)
        parts = []
        if ahead:
            parts.append(f"significantly better than {_join(ahead)}")
        if tied:
            parts.append(f"not significantly different from {_join(tied)}")
        if behind:
            parts.append(f"significantly worse than {_join(behind)}")
        sentence = f"On {METRIC_PHRASES[metric]}, CLIP-VQDiffusion ({ours}) is " + ("; ".join(parts) or
                                                                                    "compared with no other method")
        if points:
            sentence += (f"; {_join(points)} ignores its prompts and is a reference point for the marginal "
                         "distribution, not a rival")
        sentences.append(sentence + ".")
    claim = claim_sentence(significance)
    if claim:
        sentences.insert(0, claim)
    if sentences:
        note = (f"Paired bootstrap over prompts (alignment metrics) or distribution-set images (FID, CMMD)"
                f"{f' and {seeds} training seed(s)' if seeds else ''}; Holm-adjusted p < {level:g}; values are "
                "the mean over seeds with 95% intervals.")
        sentences.append(note)
    return sentences


def claim_sentence(significance: pd.DataFrame) -> str | None:
    """The paper's claim, language-free CLIP-VQDiffusion ahead of both language-free baselines, per metric."""
    baselines = [m for m in ("lafite", "clip2latent") if m in set(significance["method"])]
    if not baselines:
        return None
    held, not_held = [], []
    for metric in HEADLINE_METRICS:
        rows = significance[(significance["metric"] == metric) & significance["method"].isin(baselines)]
        if len(rows) != len(baselines):
            continue
        (held if (rows["favours"] == REFERENCE_METHOD).all() else not_held).append(METRIC_PHRASES[metric])
    if not held and not not_held:
        return None
    names = _join([METHOD_NAMES[m] for m in baselines])
    text = f"The paper's claim, language-free CLIP-VQDiffusion ahead of {names}: "
    if held:
        text += f"significant on {_join(held)}"
    if not_held:
        text += ("; " if held else "") + f"not established on {_join(not_held)}"
    return text + "."
