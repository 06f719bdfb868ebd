"""Within-prompt diversity (clipvqd.evaluation.diversity): known answers for the distance, its per-prompt units
(in-distribution prompts, first k samples), and the report's figure from the units."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from clipvqd.evaluation.diversity import (
    DIVERSITY_METRIC,
    DiversityError,
    diversity_units,
    mean_pairwise_distance,
    within_prompt_diversity,
)


def test_identical_samples_have_no_diversity():
    row = torch.tensor([[0.3, -1.2, 0.5]])
    assert mean_pairwise_distance(row.repeat(5, 1)) == pytest.approx(0.0, abs=1e-12)
    # Rows differing only in length are the same direction: distances are between L2-normalised embeddings.
    assert mean_pairwise_distance(torch.cat([row, 3 * row])) == pytest.approx(0.0, abs=1e-12)


def test_known_distances():
    assert mean_pairwise_distance(torch.tensor([[1.0, 0.0], [0.0, 1.0]])) == pytest.approx(math.sqrt(2))
    assert mean_pairwise_distance(torch.tensor([[2.0, 0.0], [-5.0, 0.0]])) == pytest.approx(2.0)  # opposite
    # Three samples: pairs at sqrt(2), 2 and sqrt(2); the mean over the 3 unordered pairs.
    three = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    assert mean_pairwise_distance(three) == pytest.approx((2 + 2 * math.sqrt(2)) / 3)


def test_mean_over_prompts_weighs_every_prompt_the_same():
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0],  # prompt a: sqrt(2)
                             [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])  # prompt b: 0, three samples
    groups = np.array(["a", "a", "b", "b", "b"])
    assert within_prompt_diversity(features, groups) == pytest.approx(math.sqrt(2) / 2)


def test_a_single_sample_or_mismatched_labels_are_refused():
    with pytest.raises(DiversityError, match="at least 2 samples"):
        mean_pairwise_distance(torch.ones(1, 4))
    with pytest.raises(DiversityError, match="3 group labels for 2"):
        within_prompt_diversity(torch.ones(2, 4), np.array(["a", "a", "b"]))


def _samples(prompt_ids, per_prompt):
    return pd.DataFrame([{"prompt_id": p, "sample_index": i} for p in prompt_ids for i in range(per_prompt)])


def test_units_are_the_in_distribution_prompts_first_k_samples():
    prompts = pd.DataFrame({"prompt_id": ["p0", "p1", "p2"], "ood": ["0", "0", "1"]})
    samples = _samples(["p0", "p1", "p2"], 3)
    embeddings = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0],  # p0: k=2 keeps the first two: sqrt(2)
                               [0.0, 1.0], [0.0, 1.0], [1.0, 0.0],  # p1: first two identical: 0
                               [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])  # p2: held-out combination, left out
    units = diversity_units(samples, embeddings, prompts, k=2)
    assert [u["unit"] for u in units] == ["p0", "p1"]
    assert {u["metric"] for u in units} == {DIVERSITY_METRIC}
    assert units[0]["numerator"] == pytest.approx(math.sqrt(2)) and units[1]["numerator"] == pytest.approx(0.0)
    assert all(u["denominator"] == 1.0 and u["n"] == 2 for u in units)
    # k = 3 uses every sample of p0.
    assert diversity_units(samples, embeddings, prompts, k=3)[0]["numerator"] == pytest.approx(
        (2 + 2 * math.sqrt(2)) / 3)
    # One sample per prompt has no pair: no units (the metric is then not measured).
    assert diversity_units(samples, embeddings, prompts, k=1) == []
    with pytest.raises(DiversityError, match="9 samples but 8 embeddings"):
        diversity_units(samples, embeddings[:8], prompts, k=2)


def test_report_figure_reads_the_units_and_notes_its_absence(tmp_path):
    from clipvqd.evaluation.uncertainty import BranchData
    from clipvqd.report.diversity_figure import diversity_figure, per_prompt_diversity

    def branch(values):
        units = pd.DataFrame([{"seed": s, "metric": DIVERSITY_METRIC, "unit": f"p{i}", "numerator": v,
                               "denominator": 1.0, "n": 4} for s in (0, 1) for i, v in enumerate(values)]
                             + [{"seed": 0, "metric": "attr_acc", "unit": "p0", "numerator": 3.0,
                                 "denominator": 4.0, "n": 4}])
        return BranchData("x", units, None)

    frame = per_prompt_diversity({("clip-vqdiffusion", "default"): branch([0.5, 0.6, 0.7]),
                                  ("clip2latent", "default"): branch([0.05, 0.1, 0.02]),
                                  ("lafite", "default"): BranchData("no units", None, None)})
    assert len(frame) == 12 and set(frame["method"]) == {"clip-vqdiffusion", "clip2latent"}
    assert frame.loc[frame["method"] == "clip2latent", "diversity"].max() == pytest.approx(0.1)
    result = diversity_figure(frame, tmp_path)
    assert result.drawn and (tmp_path / result.path).stat().st_size > 0
    assert "near 0 means near-identical samples" in result.note
    missing = diversity_figure(per_prompt_diversity({}), tmp_path)
    assert not missing.drawn and "no within-prompt diversity" in missing.note
