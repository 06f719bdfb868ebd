"""Known-answer tests of the evaluation protocol's statistics: CMMD against a hand computation, bootstrap
intervals whose width is known, the paired bootstrap's significance, and the resampling forms of FID, KID,
CMMD and precision/recall against the metrics they restate."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

from clipvqd.evaluation.bootstrap import (
    BootstrapSettings,
    bootstrap_interval,
    holm_adjust,
    joint_replicates,
    paired_comparison,
)
from clipvqd.evaluation.cmmd import cmmd, cmmd_estimates
from clipvqd.evaluation.resampled import (
    fid_statistic,
    mean_statistic,
    mmd_statistic,
    polynomial_gram,
    precision_recall_indicators,
    ratio_statistic,
)

# ------------------------------------------------------------------------------------------------
# CMMD
# ------------------------------------------------------------------------------------------------


def test_cmmd_equals_a_hand_computation():
    """Two unit vectors per set in 2-d; k(a, b) = exp(-|a - b|^2 / (2 * 10^2)), scaled by 1000."""
    x = [[1.0, 0.0], [0.0, 1.0]]
    y = [[1.0, 0.0], [0.6, 0.8]]
    k = lambda squared: math.exp(-squared / 200.0)  # noqa: E731
    # |x1-x2|^2 = 2, |y1-y2|^2 = 0.16 + 0.64 = 0.8; cross: |x1-y1|^2 = 0, |x1-y2|^2 = 0.8, |x2-y1|^2 = 2,
    # |x2-y2|^2 = 0.36 + 0.04 = 0.4.
    cross = (k(0) + k(0.8) + k(2) + k(0.4)) / 4
    unbiased = 1000 * (k(2) + k(0.8) - 2 * cross)  # within-set sums over i != j: one pair each, twice / 2
    biased = 1000 * ((2 + 2 * k(2)) / 4 + (2 + 2 * k(0.8)) / 4 - 2 * cross)
    assert cmmd(x, y) == pytest.approx(unbiased, rel=1e-12)
    assert cmmd(x, y, estimator="biased") == pytest.approx(biased, rel=1e-12)
    assert cmmd_estimates(x, y) == pytest.approx({"unbiased": unbiased, "biased": biased}, rel=1e-12)
    # Embeddings are L2-normalised first (the reference code's CLIP returns unit vectors): scale is irrelevant.
    assert cmmd(np.array(x) * 3.0, np.array(y) * 0.5) == pytest.approx(unbiased, rel=1e-12)
    assert cmmd(x, x) == pytest.approx(1000 * (k(2) + k(2) - 2 * (2 + 2 * k(2)) / 4), abs=1e-12)


def test_cmmd_grows_with_the_distance_between_sets_and_refuses_bad_input():
    rng = np.random.default_rng(0)
    base, same = rng.normal(size=(200, 16)), rng.normal(size=(200, 16))
    near, far = rng.normal(size=(200, 16)) + 0.3, rng.normal(size=(200, 16)) + 2.0
    assert abs(cmmd(base, same)) < cmmd(base, near) < cmmd(base, far)
    with pytest.raises(ValueError, match="embedding widths differ"):
        cmmd(base, base[:, :8])
    with pytest.raises(ValueError, match="estimator"):
        cmmd(base, near, estimator="median")


# ------------------------------------------------------------------------------------------------
# Bootstrap intervals
# ------------------------------------------------------------------------------------------------


def test_interval_of_a_bernoulli_mean_has_the_binomial_width():
    """n independent prompts, one Bernoulli(0.3) outcome each: the percentile interval's width is close to
    2 * 1.96 * sqrt(p (1 - p) / n), and it contains the estimate."""
    rng = np.random.default_rng(1)
    n = 400
    outcomes = (rng.random(n) < 0.3).astype(float)
    estimate = outcomes.mean()
    value, low, high = bootstrap_interval([mean_statistic(outcomes)], [n], BootstrapSettings(4000, 0.95, 0))
    expected = 2 * 1.959964 * math.sqrt(estimate * (1 - estimate) / n)
    assert value == pytest.approx(estimate)
    assert low < estimate < high
    assert high - low == pytest.approx(expected, rel=0.1)


def test_prompts_not_samples_are_resampled():
    """100 prompts of 4 identical samples each: the information is 100 outcomes, not 400, and the interval is
    as wide as the binomial interval for 100."""
    rng = np.random.default_rng(2)
    per_prompt = (rng.random(100) < 0.5).astype(float)
    statistic = ratio_statistic(4 * per_prompt, np.full(100, 4.0))
    estimate = per_prompt.mean()
    _, low, high = bootstrap_interval([statistic], [100], BootstrapSettings(4000, 0.95, 0))
    assert high - low == pytest.approx(2 * 1.959964 * math.sqrt(estimate * (1 - estimate) / 100), rel=0.1)


def test_two_levels_add_the_seed_spread():
    """Three seeds whose prompts all score 0.2, 0.5 and 0.8: the prompt level adds nothing, the seed level
    draws three seeds with replacement, so the 95% interval runs from all-0.2 (p = 1/27 > 2.5%) to all-0.8."""
    statistics = [ratio_statistic(np.full(50, m), np.ones(50)) for m in (0.2, 0.5, 0.8)]
    value, low, high = bootstrap_interval(statistics, [50, 50, 50], BootstrapSettings(2000, 0.95, 3))
    assert value == pytest.approx(0.5)
    assert (low, high) == pytest.approx((0.2, 0.8))
    # One seed and no prompt-to-prompt variation: no uncertainty at all.
    assert bootstrap_interval(statistics[:1], [50], BootstrapSettings(200, 0.95, 3))[1:] == pytest.approx((0.2, 0.2))


def test_the_bootstrap_is_reproducible_from_its_seed():
    statistic = [mean_statistic(np.random.default_rng(4).random(60))]
    first = joint_replicates([statistic], [60], BootstrapSettings(100, 0.95, 7))
    assert np.array_equal(first, joint_replicates([statistic], [60], BootstrapSettings(100, 0.95, 7)))
    assert not np.array_equal(first, joint_replicates([statistic], [60], BootstrapSettings(100, 0.95, 8)))


def test_kid_and_cmmd_resamples_hold_two_distinct_images_and_other_draws_are_unchanged(features):
    """Four images: 1 in 64 resamples draws one image four times, where the unbiased MMD has no pair of distinct
    draws. Those are drawn again for KID, so its 1000 replicates are finite; a statistic that needs no pair sees
    the unconditioned draws."""
    generated, reference = (f[:4] for f in features)
    grams = [polynomial_gram(a, b) for a, b in ((generated, generated), (reference, reference), (generated, reference))]
    kid = mmd_statistic(*grams)
    with np.errstate(invalid="ignore"):
        assert np.isnan(kid(np.array([[4.0, 0, 0, 0]])))[0]
    seen = []

    def recorded(statistic):
        @functools.wraps(statistic)  # keeps its min_distinct_units
        def record(counts):
            seen.append(np.array(counts))
            return statistic(counts)
        return record

    settings = BootstrapSettings(1000, 0.95, 0)
    mean = mean_statistic(np.arange(4.0))
    unconditioned = joint_replicates([[recorded(mean)]], [4], settings)
    assert any(((c > 0).sum(axis=1) == 1).any() for c in seen)  # this seed draws such resamples
    seen.clear()
    replicates = joint_replicates([[recorded(kid)], [mean]], [4], settings)
    assert all(((c > 0).sum(axis=1) >= 2).all() for c in seen) and np.isfinite(replicates).all()
    assert np.isfinite(bootstrap_interval([kid], [4], settings)).all()
    # No resample of 60 units falls short: the same draws as without the condition.
    statistic = [mean_statistic(np.random.default_rng(4).random(60))]
    pair = [mmd_statistic(np.eye(60), np.eye(60), np.zeros((60, 60)))]
    assert np.array_equal(joint_replicates([statistic, pair], [60], settings)[0],
                          joint_replicates([statistic], [60], settings)[0])
    assert not np.array_equal(replicates[1], unconditioned[0])


# ------------------------------------------------------------------------------------------------
# Paired comparisons
# ------------------------------------------------------------------------------------------------


def _prompt_scores(rng, difficulty, shift, noise=0.02):
    return difficulty + shift + noise * rng.normal(size=difficulty.shape)


def test_paired_bootstrap_finds_a_small_consistent_gap_that_unpaired_intervals_miss():
    """Prompts differ a lot in difficulty (sd 0.2) and method A beats B by 0.03 on every prompt: the paired
    difference is significant and its interval holds 0.03, while the two methods' own intervals overlap."""
    rng = np.random.default_rng(5)
    difficulty = rng.normal(0.5, 0.2, size=150)
    a, b = _prompt_scores(rng, difficulty, 0.03), _prompt_scores(rng, difficulty, 0.0)
    settings = BootstrapSettings(2000, 0.95, 0)
    comparison = paired_comparison([mean_statistic(a)], [mean_statistic(b)], [150], settings)
    assert comparison.excludes_zero and comparison.p_value < 0.01
    assert comparison.ci_low < 0.03 < comparison.ci_high
    assert comparison.difference == pytest.approx(a.mean() - b.mean())
    _, a_low, a_high = bootstrap_interval([mean_statistic(a)], [150], settings)
    _, b_low, b_high = bootstrap_interval([mean_statistic(b)], [150], settings)
    assert a_low < b_high and b_low < a_high  # unpaired: the intervals overlap


def test_paired_bootstrap_does_not_call_noise_a_difference():
    rng = np.random.default_rng(6)
    difficulty = rng.normal(0.5, 0.2, size=150)
    a, b = _prompt_scores(rng, difficulty, 0.0), _prompt_scores(rng, difficulty, 0.0)
    comparison = paired_comparison([mean_statistic(a)], [mean_statistic(b)], [150], BootstrapSettings(2000, 0.95, 0))
    assert not comparison.excludes_zero and comparison.p_value > 0.05


def test_holm_adjustment():
    assert holm_adjust([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm_adjust([0.5]) == [0.5]


# ------------------------------------------------------------------------------------------------
# The resampling forms restate the metrics (a row of ones is the metric as measured)
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def features():
    generator = torch.Generator().manual_seed(0)
    generated = torch.nn.functional.normalize(torch.randn(120, 12, generator=generator), dim=1)
    reference = torch.nn.functional.normalize(torch.randn(120, 12, generator=generator) + 0.3, dim=1)
    return generated, reference


def test_resampled_fid_kid_cmmd_and_precision_recall_restate_the_metrics(features):
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_kid import kid_features_to_metric
    from torch_fidelity.metric_prc import prc_features_to_metric

    generated, reference = features
    ones = np.ones((1, len(generated)))
    fid = fid_statistics_to_metric(fid_features_to_statistics(generated), fid_features_to_statistics(reference),
                                   False)["frechet_inception_distance"]
    assert fid_statistic(generated, reference)(ones)[0] == pytest.approx(fid, rel=1e-5)
    # KID with one subset of the whole set is the unbiased MMD^2 of the full sets.
    kid = kid_features_to_metric(generated, reference, kid_subsets=2, kid_subset_size=len(generated),
                                 verbose=False)["kernel_inception_distance_mean"]
    grams = [polynomial_gram(a, b) for a, b in ((generated, generated), (reference, reference), (generated, reference))]
    assert mmd_statistic(*grams)(ones)[0] == pytest.approx(kid, rel=1e-4)
    from clipvqd.evaluation.cmmd import normalise, rbf_gram

    x, y = normalise(generated), normalise(reference)
    cmmd_grams = (rbf_gram(x, x), rbf_gram(y, y), rbf_gram(x, y))
    assert mmd_statistic(*cmmd_grams, scale=1000)(ones)[0] == pytest.approx(cmmd(generated, reference), rel=1e-9)
    prc = prc_features_to_metric(generated, reference, prc_neighborhood=3, prc_batch_size=10000, save_cpu_ram=False,
                                 verbose=False)
    precision, recall = precision_recall_indicators(generated, reference, 3)
    assert precision.mean() == pytest.approx(prc["precision"]) and recall.mean() == pytest.approx(prc["recall"])


@pytest.mark.parametrize("images, dimensions", [(6, 40), (60, 8)])
def test_a_resampled_fid_is_the_fid_of_the_sets_with_each_image_repeated_as_drawn(images, dimensions):
    """Both routes to tr sqrt(A B): fewer images than feature dimensions (the n x n cross product of the
    images) and more (the d x d covariances), against FID computed from the repeated images directly."""
    rng = np.random.default_rng(0)
    generated = rng.normal(size=(images, dimensions))
    reference = rng.normal(size=(images, dimensions)) + 0.2
    counts = np.vstack([np.ones(images), rng.multinomial(images, np.full(images, 1 / images), size=3)])

    def fid_of_repeated(row):
        g, r = (np.repeat(x, row.astype(int), axis=0) for x in (generated, reference))
        cov_g, cov_r = np.cov(g, rowvar=False), np.cov(r, rowvar=False)
        root_trace = np.sqrt(np.linalg.eigvals(cov_g @ cov_r).real.clip(min=0)).sum()
        return ((g.mean(0) - r.mean(0)) ** 2).sum() + np.trace(cov_g) + np.trace(cov_r) - 2 * root_trace

    expected = [fid_of_repeated(row) for row in counts]
    assert fid_statistic(generated, reference)(counts) == pytest.approx(expected, rel=1e-6)


def test_a_resample_with_duplicates_leaves_copies_out_of_the_within_set_pairs(features):
    """Unit 0 drawn twice and unit 1 once: the within-set sum pairs distinct draws that are not copies of one
    image, i.e. (0, 1) twice each way, never (0, 0)."""
    generated, reference = features
    grams = [polynomial_gram(a, b).numpy()[:2, :2] for a, b in
             ((generated, generated), (reference, reference), (generated, reference))]
    value = mmd_statistic(*grams)(np.array([[2.0, 1.0]]))[0]
    k_xx, k_yy, k_xy = grams
    cross = (4 * k_xy[0, 0] + 2 * k_xy[0, 1] + 2 * k_xy[1, 0] + k_xy[1, 1]) / 9
    assert value == pytest.approx((4 * k_xx[0, 1]) / 4 + (4 * k_yy[0, 1]) / 4 - 2 * cross)


def test_fid_gets_a_normal_interval_around_its_estimate(features):
    """FID's replicates sit above the estimate (a resample has ~63% distinct images); its interval is the
    estimate -/+ 1.96 bootstrap standard errors, so it is centred on the number it qualifies."""
    from clipvqd.evaluation.bootstrap import percentile_interval

    generated, reference = features
    statistic = [fid_statistic(generated, reference)]
    settings = BootstrapSettings(200, 0.95, 0)
    replicates = joint_replicates([statistic], [len(generated)], settings)[0]
    value, low, high = bootstrap_interval(statistic, [len(generated)], settings, kind="normal")
    assert np.mean(replicates) > value  # the resampling bias the normal interval sidesteps
    assert (low + high) / 2 == pytest.approx(value)
    assert high - low == pytest.approx(2 * 1.959964 * np.std(replicates, ddof=1), rel=1e-6)
    assert percentile_interval(replicates, 0.95)[0] > low


def test_fid_interval_stops_at_zero():
    """A normal interval around a small FID would reach below zero, which no squared distance can: the lower
    end is 0, the upper end is the normal one."""
    from clipvqd.evaluation.uncertainty import DistributionFeatures, branch_intervals

    generator = torch.Generator().manual_seed(3)
    reference = torch.nn.functional.normalize(torch.randn(20, 6, generator=generator), dim=1)
    generated = reference[torch.randperm(20, generator=generator)]  # the same images in another order: FID ~ 0
    features = DistributionFeatures([f"d{i:06d}" for i in range(20)],
                                    {space: {"reference": reference, "generated": {0: generated}}
                                     for space in ("fid", "clip")})
    settings = BootstrapSettings(200, 0.95, 0)
    value, unclipped_low, high = bootstrap_interval([fid_statistic(generated, reference)], [20], settings,
                                                    kind="normal")
    assert abs(value) < 1e-6 and unclipped_low < 0
    assert branch_intervals(["fid"], None, features, settings)["fid"] == pytest.approx((0.0, high))
