"""The mask-and-replace schedule and its posteriors, checked against explicit transition matrices."""

from __future__ import annotations

import pytest
import torch

from clipvqd.diffusion.mask_and_replace import LOG_ZERO, MaskAndReplace, index_to_log_onehot

K, T = 5, 100


@pytest.fixture(scope="module")
def schedule() -> MaskAndReplace:
    return MaskAndReplace(K, T)


def transition_matrix(schedule: MaskAndReplace, from_count: int, to_count: int) -> torch.Tensor:
    """Q[to_state, from_state] built entry by entry from the definition (alpha, beta, gamma)."""
    keep, replace, mask, _ = (v.exp().item() for v in schedule.transition(
        torch.tensor([from_count]), torch.tensor([to_count]), torch.float64))
    q = torch.zeros(K + 1, K + 1, dtype=torch.float64)
    for source in range(K):
        for target in range(K):
            q[target, source] = replace + (keep if target == source else 0.0)
        q[K, source] = mask
    q[K, K] = 1.0
    return q


def brute_force_posterior(schedule: MaskAndReplace, p_x0: torch.Tensor, xt: int, t: int) -> torch.Tensor:
    """sum_x0 q(x_{t-1} | x_t, x0) p(x0) by Bayes' rule with explicit matrices (t a step index)."""
    step = transition_matrix(schedule, t, t + 1)  # q(x_t | x_{t-1})
    before = transition_matrix(schedule, 0, t)  # q(x_{t-1} | x0)
    after = transition_matrix(schedule, 0, t + 1)  # q(x_t | x0)
    result = torch.zeros(K + 1, dtype=torch.float64)
    for x0 in range(K):
        if p_x0[x0] == 0:
            continue
        result += step[xt, :] * before[:, x0] / after[xt, x0] * p_x0[x0]
    return result


def as_log(p: torch.Tensor) -> torch.Tensor:
    return torch.log(p.clamp(min=1e-300)).clamp(min=LOG_ZERO)


def test_every_transition_column_sums_to_one(schedule):
    for from_count, to_count in [(0, 1), (0, 37), (0, T), (36, 37), (T - 1, T), (10, 90)]:
        q = transition_matrix(schedule, from_count, to_count)
        assert torch.allclose(q.sum(dim=0), torch.ones(K + 1, dtype=torch.float64), atol=1e-12)
        assert (q >= 0).all()
    step = schedule.step_coefficients()
    total = step.keep.exp() + K * step.replace.exp() + step.mask.exp()
    assert torch.allclose(total, torch.ones(T, dtype=torch.float64), atol=1e-12)


def test_cumulative_schedule_matches_design(schedule):
    cumulative = schedule.cumulative_coefficients()
    keep, mask = cumulative.keep.exp(), cumulative.mask.exp()
    assert (keep[1:] < keep[:-1]).all(), "abar must decrease"
    assert (mask[1:] > mask[:-1]).all(), "gbar must increase"
    assert keep[0].item() == pytest.approx(0.99999, abs=1e-12)
    assert keep[-1].item() == pytest.approx(0.000009, abs=1e-12)
    assert mask[0].item() == pytest.approx(0.000009, abs=1e-12)
    assert mask[-1].item() == pytest.approx(0.99999, abs=1e-12)
    # linear in t, and bbar = (1 - abar - gbar) / K
    assert torch.allclose(keep[1:] - keep[:-1], (keep[1] - keep[0]).expand(T - 1), atol=1e-12)
    assert torch.allclose(cumulative.replace.exp(), (1 - keep - mask) / K, atol=1e-15)
    # per-step values compose to the cumulative ones
    step = schedule.step_coefficients()
    assert torch.allclose(step.keep.cumsum(0), cumulative.keep, atol=1e-9)
    assert torch.allclose(step.not_mask.cumsum(0), cumulative.not_mask, atol=1e-9)


def test_cumulative_equals_product_of_step_matrices(schedule):
    product = torch.eye(K + 1, dtype=torch.float64)
    for step in range(T):
        product = transition_matrix(schedule, step, step + 1) @ product
        if step in (0, 1, 49, T - 1):
            assert torch.allclose(product, transition_matrix(schedule, 0, step + 1), atol=1e-12)


def test_fully_noised_state_is_all_mask(schedule):
    x0 = torch.arange(K).view(1, K)
    log_xt = schedule.log_q_xt_given_x0(index_to_log_onehot(x0, K + 1, torch.float64), torch.tensor([T - 1]))
    assert torch.all(log_xt[:, K].exp() > 0.9999)


def test_log_q_xt_given_x0_and_one_step_match_matrices(schedule):
    p = torch.rand(3, K + 1, 4, dtype=torch.float64)
    p[:, K] = 0  # x0 never [MASK] ...
    p[1, :, 2] = 0
    p[1, K, 2] = 1  # ... but a one-step transition may start from [MASK]
    p = p / p.sum(dim=1, keepdim=True)
    t = torch.tensor([0, 42, T - 1])
    cumulative = schedule.log_q_xt_given_x0(as_log(p), t).exp()
    one_step = schedule.log_q_xt_given_xtm1(as_log(p), t).exp()
    for row in range(3):
        step = int(t[row])
        assert torch.allclose(cumulative[row], transition_matrix(schedule, 0, step + 1) @ p[row], atol=1e-12)
        assert torch.allclose(one_step[row], transition_matrix(schedule, step, step + 1) @ p[row], atol=1e-12)


@pytest.mark.parametrize("t", [0, 1, 17, 50, T - 2, T - 1])
def test_posterior_equals_bayes_rule(schedule, t):
    generator = torch.Generator().manual_seed(t)
    soft = torch.rand(K, generator=generator, dtype=torch.float64)
    soft /= soft.sum()
    candidates = {"one-hot": torch.nn.functional.one_hot(torch.tensor(2), K).double(), "soft": soft}
    for name, p_x0 in candidates.items():
        states = list(range(K + 1))  # every observed x_t, [MASK] included
        log_x0 = as_log(torch.cat([p_x0, torch.zeros(1, dtype=torch.float64)])).view(1, K + 1, 1)
        log_x0 = log_x0.expand(len(states), K + 1, 1)
        log_xt = index_to_log_onehot(torch.tensor(states).view(-1, 1), K + 1, torch.float64)
        got = schedule.log_q_posterior(log_x0, log_xt, torch.full((len(states),), t)).exp()
        for row, xt in enumerate(states):
            expected = brute_force_posterior(schedule, p_x0, xt, t)
            assert torch.allclose(got[row, :, 0], expected, atol=1e-10), (name, t, xt)
            # beta = (1 - gamma - alpha) / K is a difference of numbers ~1 that is ~1e-6 at both ends of
            # the schedule, so float64 rounding is amplified to ~1e-10 there.
            assert got[row, :, 0].sum().item() == pytest.approx(1.0, abs=1e-9)


def test_posterior_at_first_step_returns_x0_distribution(schedule):
    p = torch.softmax(torch.randn(2, K, 3, dtype=torch.float64), dim=1)
    log_x0 = as_log(torch.cat([p, torch.zeros(2, 1, 3, dtype=torch.float64)], dim=1))
    log_xt = index_to_log_onehot(torch.tensor([[K, 0, 3], [1, K, K]]), K + 1, torch.float64)
    got = schedule.log_q_posterior(log_x0, log_xt, torch.zeros(2, dtype=torch.int64)).exp()
    assert torch.allclose(got[:, :K], p, atol=1e-12)


@pytest.mark.parametrize("from_count,to_count", [(100, 96), (60, 30), (5, 0), (100, 0)])
def test_multi_step_posterior_equals_bayes_rule(schedule, from_count, to_count):
    """The fast sampler's jump: q(x_s | x_t, x0) with the composed transition from s to t."""
    p_x0 = torch.softmax(torch.randn(K, dtype=torch.float64), dim=0)
    jump = transition_matrix(schedule, to_count, from_count)
    before = transition_matrix(schedule, 0, to_count)
    after = transition_matrix(schedule, 0, from_count)
    log_x0 = as_log(torch.cat([p_x0, torch.zeros(1, dtype=torch.float64)])).view(1, K + 1, 1).expand(K + 1, -1, -1)
    log_xt = index_to_log_onehot(torch.arange(K + 1).view(-1, 1), K + 1, torch.float64)
    got = schedule.log_q_posterior_between(log_x0, log_xt, from_count, to_count).exp()
    for xt in range(K + 1):
        expected = sum(jump[xt, :] * before[:, x0] / after[xt, x0] * p_x0[x0] for x0 in range(K))
        assert torch.allclose(got[xt, :, 0], expected, atol=1e-10)


def test_float32_posterior_is_normalised_and_finite():
    schedule = MaskAndReplace(512, T)
    log_x0 = torch.log_softmax(torch.randn(4, 512, 16) * 5, dim=1)
    log_x0 = torch.cat([log_x0, torch.full((4, 1, 16), LOG_ZERO)], dim=1)
    xt = torch.randint(0, 513, (4, 16))
    for t in [0, 1, 50, T - 1]:
        out = schedule.log_q_posterior(log_x0, index_to_log_onehot(xt, 513), torch.full((4,), t))
        assert torch.isfinite(out).all()
        assert torch.allclose(out.exp().sum(dim=1), torch.ones(4, 16), atol=1e-4)


def test_q_sample_frequencies_match_q_xt_given_x0(schedule):
    generator = torch.Generator().manual_seed(0)
    x0 = torch.full((1, 200_000), 3)
    for t in [10, 70]:
        xt = schedule.q_sample(x0, torch.tensor([t]), generator)
        empirical = torch.bincount(xt.view(-1), minlength=K + 1).double() / xt.numel()
        expected = schedule.log_q_xt_given_x0(index_to_log_onehot(x0[:, :1], K + 1, torch.float64),
                                              torch.tensor([t])).exp().view(-1)
        assert torch.allclose(empirical, expected, atol=4e-3)


def test_bad_inputs_are_refused(schedule):
    with pytest.raises(ValueError, match="K\\+1"):
        schedule.log_q_xt_given_x0(torch.zeros(1, K, 3), torch.tensor([0]))
    with pytest.raises(ValueError, match="step counts"):
        schedule.log_q_xt_given_x0(torch.zeros(1, K + 1, 3), torch.tensor([T]))
    with pytest.raises(ValueError, match="token values"):
        index_to_log_onehot(torch.tensor([[K + 1]]), K + 1)
