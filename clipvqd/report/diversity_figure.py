"""The report's within-prompt diversity figure: per method (default variants), the distribution over prompts of
each prompt's diversity (`clipvqd.evaluation.diversity`), read from the branches' units tables."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import pandas as pd

from clipvqd.evaluation.diversity import DIVERSITY_METRIC
from clipvqd.evaluation.table import ALLOWED_METHODS, DEFAULT_VARIANT
from clipvqd.report.plotting import METHOD_PALETTE, METRIC_LABELS, FigureResult, new_figure, save_figure, styled

PER_PROMPT_COLUMNS = ("method", "variant", "seed", "prompt_id", "diversity")
TITLE = "Within-prompt diversity per prompt (judge CLIP image features; default settings)"
NOTE = ("each point is one in-distribution prompt: the mean pairwise distance between its samples' judge-CLIP "
        "image embeddings, averaged over training seeds; near 0 means near-identical samples of a prompt; a "
        "distance in the judge's feature space, and higher is not better by itself (noise is diverse)")


def per_prompt_diversity(branches: Mapping[tuple[str, str], object]) -> pd.DataFrame:
    """{(method, variant): BranchData} -> one row per (method, variant, seed, prompt) of its units table's
    within-prompt diversity (PER_PROMPT_COLUMNS); empty when no branch measured it."""
    frames = []
    for (method, variant), branch in branches.items():
        units = getattr(branch, "units", None)
        if units is None:
            continue
        rows = units[units["metric"] == DIVERSITY_METRIC]
        if rows.empty:
            continue
        frames.append(pd.DataFrame({"method": method, "variant": variant, "seed": rows["seed"].astype(int),
                                    "prompt_id": rows["unit"].astype(str),
                                    "diversity": rows["numerator"] / rows["denominator"]}))
    if not frames:
        return pd.DataFrame(columns=list(PER_PROMPT_COLUMNS))
    return pd.concat(frames, ignore_index=True)[list(PER_PROMPT_COLUMNS)]


def diversity_figure(per_prompt: pd.DataFrame | None, out_dir: str | Path) -> FigureResult:
    """A box per method (its prompts' spread) with every prompt drawn as a point, default variants only."""
    defaults = (per_prompt[per_prompt["variant"] == DEFAULT_VARIANT] if per_prompt is not None
                else pd.DataFrame(columns=list(PER_PROMPT_COLUMNS)))
    if defaults.empty:
        return FigureResult("diversity", TITLE, note="no within-prompt diversity was measured (it needs at least "
                                                     "2 samples of each in-distribution prompt)")
    points = defaults.groupby(["method", "prompt_id"], as_index=False)["diversity"].mean()
    order = [m for m in ALLOWED_METHODS if m in set(points["method"])]
    palette = {m: METHOD_PALETTE[m] for m in order}
    sns, style = styled()
    with style:
        figure = new_figure(1.2 + 1.3 * len(order), 3.8)
        ax = figure.subplots()
        sns.boxplot(data=points, x="method", y="diversity", hue="method", order=order, hue_order=order,
                    palette=palette, showfliers=False, width=0.55, boxprops={"alpha": 0.45}, legend=False, ax=ax)
        sns.stripplot(data=points, x="method", y="diversity", hue="method", order=order, hue_order=order,
                      palette=palette, size=2.5, jitter=0.22, alpha=0.8, legend=False, ax=ax)
        ax.set_xlabel("")
        ax.set_ylabel(METRIC_LABELS[DIVERSITY_METRIC])
        ax.set_ylim(bottom=0)
        ax.tick_params(axis="x", labelsize=8)
    return FigureResult("diversity", TITLE, path=save_figure(figure, Path(out_dir), "within_prompt_diversity"),
                        note=NOTE)
