"""Denoiser shapes, the training loss, timestep importance sampling, conditions, guidance, truncation
and the sampler."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from clipvqd.diffusion import (
    LOG_ZERO,
    Denoiser,
    DenoiserConfig,
    MaskAndReplace,
    NullCondition,
    TimestepSampler,
    diffusion_loss,
    guided_log_x0,
    noisy_image_condition,
    predict_log_x0,
    reverse_step_counts,
    sample,
    text_condition,
    truncate,
    truncation_keep_mask,
)

TINY = DenoiserConfig(num_codes=16, grid_height=4, grid_width=4, condition_dim=8, hidden_dim=32,
                      num_layers=2, num_heads=4, mlp_ratio=2, num_steps=20)


# Tiny tensors: one thread avoids intra-op synchronisation that dominates on a shared CPU.
pytestmark = pytest.mark.usefixtures("single_thread")


def tiny_model(seed: int = 0) -> Denoiser:
    torch.manual_seed(seed)
    return Denoiser(TINY).eval()


# --------------------------------------------------------------------------------------------- model
def test_world_default_shapes():
    config = DenoiserConfig()
    model = Denoiser(config)
    x = torch.randint(0, config.num_codes + 1, (3, config.grid_height, config.grid_width))
    logits = model(x, torch.tensor([0, 50, 99]), torch.randn(3, config.condition_dim))
    assert logits.shape == (3, config.num_codes, config.num_tokens)
    assert torch.isfinite(logits).all()


def test_paper_preset_and_paper_widths_forward():
    paper = DenoiserConfig.paper()
    assert (paper.num_layers, paper.hidden_dim, paper.num_heads) == (24, 512, 16)
    assert (paper.grid_height, paper.grid_width, paper.num_codes, paper.condition_dim) == (16, 16, 4096, 512)
    assert paper.mlp_ratio == 4 and paper.num_steps == 100
    # The full 24 layers hold 515M parameters (88% in the 3x3 ConvMLPs); two layers at the paper's
    # widths check every shape in seconds.
    reduced = dataclasses.replace(paper, num_layers=2)
    model = Denoiser(reduced)
    x = torch.randint(0, paper.num_codes + 1, (1, 16, 16))
    with torch.no_grad():
        logits = model(x, torch.tensor([99]), torch.randn(1, 512))
    assert logits.shape == (1, 4096, 256)


def test_condition_changes_the_output_only_through_adaln():
    model = tiny_model()
    x = torch.randint(0, 17, (2, 16))
    t = torch.tensor([3, 3])
    c = torch.randn(1, 8).expand(2, 8)
    with torch.no_grad():
        same = model(x[:1].expand(2, -1), t, c)
        different = model(x[:1].expand(2, -1), t, torch.randn(2, 8))
    assert torch.allclose(same[0], same[1], atol=1e-6)
    assert not torch.allclose(different[0], different[1], atol=1e-4)


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="num_heads"):
        DenoiserConfig(hidden_dim=30, num_heads=4)
    with pytest.raises(ValueError, match="unknown DenoiserConfig keys"):
        DenoiserConfig.from_dict({"width": 3})


# ---------------------------------------------------------------------------------------------- loss
def test_loss_is_finite_and_falls_when_overfitting():
    torch.manual_seed(0)
    model = Denoiser(TINY)
    schedule = MaskAndReplace(TINY.num_codes, TINY.num_steps)
    generator = torch.Generator().manual_seed(0)
    maps = torch.randint(0, TINY.num_codes, (4, 16), generator=generator)
    condition = torch.nn.functional.normalize(torch.randn(4, 8, generator=generator), dim=1)
    # A fixed evaluation set of (t, x_t) so that the comparison is not noise.
    eval_x0 = maps.repeat(10, 1)
    eval_t = torch.arange(40) % TINY.num_steps
    eval_xt = schedule.q_sample(eval_x0, eval_t, generator)
    eval_c = condition.repeat(10, 1)

    def evaluate() -> float:
        with torch.no_grad():
            logits = model(eval_xt, eval_t, eval_c)
            return float(diffusion_loss(schedule, logits, eval_x0, eval_xt, eval_t, torch.ones(40)).loss)

    before = evaluate()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(80):
        t = torch.randint(0, TINY.num_steps, (16,), generator=generator)
        x0 = maps.repeat(4, 1)
        xt = schedule.q_sample(x0, t, generator)
        terms = diffusion_loss(schedule, model(xt, t, condition.repeat(4, 1)), x0, xt, t, torch.ones(16))
        assert torch.isfinite(terms.loss)
        optimizer.zero_grad()
        terms.loss.backward()
        optimizer.step()
    after = evaluate()
    assert math.isfinite(before) and math.isfinite(after)
    assert after < 0.5 * before, (before, after)


def test_loss_terms_at_first_step_are_the_decoder_nll():
    model = tiny_model()
    schedule = MaskAndReplace(TINY.num_codes, TINY.num_steps)
    x0 = torch.randint(0, 16, (2, 16))
    xt = x0.clone()
    t = torch.zeros(2, dtype=torch.int64)
    logits = model(xt, t, torch.randn(2, 8))
    terms = diffusion_loss(schedule, logits, x0, xt, t, torch.ones(2), aux_weight=0.0)
    nll = -torch.log_softmax(logits, dim=1).gather(1, x0.unsqueeze(1)).sum(dim=(1, 2))
    assert torch.allclose(terms.vlb, nll, atol=1e-4)
    assert torch.allclose(terms.x0_nll, nll, atol=1e-4)
    # lambda (2 - t/T) weighting of the auxiliary term, and the importance weight multiplies all
    weighted = diffusion_loss(schedule, logits, x0, xt, t, torch.full((2,), 3.0), aux_weight=0.5)
    assert torch.allclose(weighted.weighted, 3.0 * (nll + 0.5 * 2.0 * nll), atol=1e-3)


# ------------------------------------------------------------------------------- importance sampling
def test_timestep_sampler_is_uniform_until_every_step_has_ten_samples():
    sampler = TimestepSampler(num_steps=5, min_samples_per_step=10)
    losses = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0])
    for _ in range(9):
        sampler.update(torch.arange(5), losses)
    sampler.update(torch.arange(1, 5), losses[1:])  # step 0 still has only 9
    assert sampler.is_uniform
    t, weight = sampler.sample(1000, torch.Generator().manual_seed(0))
    assert torch.allclose(weight, torch.ones(1000))
    assert torch.allclose(sampler.probabilities(), torch.full((5,), 0.2, dtype=torch.float64))

    sampler.update(torch.tensor([0]), losses[:1])
    assert not sampler.is_uniform
    p = sampler.probabilities()
    # proportional to sqrt(E[L^2]) = L (constant losses), the decoder step borrowing step 1's weight
    expected = torch.tensor([1.0, 1.0, 2.0, 3.0, 4.0], dtype=torch.float64) + 1e-4
    assert torch.allclose(p, expected / expected.sum(), atol=1e-9)
    t, weight = sampler.sample(20_000, torch.Generator().manual_seed(1))
    assert torch.allclose(weight, (1.0 / (p[t] * 5)).float())
    frequencies = torch.bincount(t, minlength=5).double() / t.numel()
    assert torch.allclose(frequencies, p, atol=0.015)
    # the weighted estimate stays unbiased for the uniform average of any per-step quantity
    quantity = torch.tensor([5.0, 1.0, 2.0, 7.0, 3.0])
    assert float((weight * quantity[t]).mean()) == pytest.approx(float(quantity.mean()), rel=0.05)


def test_timestep_sampler_state_round_trips():
    sampler = TimestepSampler(num_steps=4, min_samples_per_step=1)
    sampler.update(torch.tensor([0, 1, 2, 3, 3]), torch.tensor([1.0, 2.0, 3.0, 4.0, 8.0]))
    restored = TimestepSampler(num_steps=4, min_samples_per_step=1)
    restored.load_state_dict(sampler.state_dict())
    assert torch.equal(restored.probabilities(), sampler.probabilities())
    a = sampler.sample(50, torch.Generator().manual_seed(3))
    b = restored.sample(50, torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0])


# -------------------------------------------------------------------------------------- conditions
@pytest.mark.parametrize("alpha", [0.25, 0.5, 0.9])
def test_noisy_image_condition_has_unit_norm_and_expected_cosine(alpha):
    generator = torch.Generator().manual_seed(0)
    e = torch.randn(4000, 512, generator=generator) * 3.0
    c = noisy_image_condition(e, alpha, generator)
    assert torch.allclose(c.norm(dim=1), torch.ones(4000), atol=1e-5)
    cosine = (c * torch.nn.functional.normalize(e, dim=1)).sum(dim=1)
    # eps is nearly orthogonal to e in 512 dimensions: cos = 1 / sqrt(1 + alpha^2)
    assert float(cosine.mean()) == pytest.approx(1.0 / math.sqrt(1.0 + alpha**2), abs=0.005)
    assert torch.allclose(noisy_image_condition(e[:3], 0.0, generator), text_condition(e[:3]), atol=1e-6)


def test_null_condition_is_normalised():
    null = NullCondition(16)
    with torch.no_grad():
        null.vector.mul_(7.0)
    rows = null(3)
    assert rows.shape == (3, 16)
    assert torch.allclose(rows.norm(dim=1), torch.ones(3), atol=1e-6)


# -------------------------------------------------------------------------------------------- guidance
def test_guidance_scale_one_equals_the_conditional_model():
    model = tiny_model()
    xt = torch.randint(0, 17, (3, 16))
    t = torch.tensor([0, 5, 19])
    condition = text_condition(torch.randn(3, 8))
    null = NullCondition(8).normalized().detach()
    with torch.no_grad():
        conditional = torch.log_softmax(model(xt, t, condition), dim=1)
        unconditional = torch.log_softmax(model(xt, t, null.expand(3, -1)), dim=1)
        guided_one = predict_log_x0(model, xt, t, condition, guidance_scale=1.0, null_condition=null)
        guided_zero = predict_log_x0(model, xt, t, condition, guidance_scale=0.0, null_condition=null)
        guided_three = predict_log_x0(model, xt, t, condition, guidance_scale=3.0, null_condition=null)
    assert torch.allclose(guided_one, conditional, atol=1e-5)
    assert torch.allclose(guided_zero, unconditional, atol=1e-5)
    expected = torch.log_softmax(unconditional + 3.0 * (conditional - unconditional), dim=1)
    assert torch.allclose(guided_three, expected, atol=1e-5)
    assert torch.allclose(guided_three.exp().sum(dim=1), torch.ones(3, 16), atol=1e-5)
    assert torch.allclose(guided_log_x0(conditional, unconditional, 1.0), conditional, atol=1e-6)


# ------------------------------------------------------------------------------------------ truncation
def test_truncation_keeps_exactly_the_minimal_set():
    probs = torch.tensor([0.05, 0.5, 0.1, 0.3, 0.05]).view(1, 5, 1)
    keep = truncation_keep_mask(probs.log(), 0.85)[0, :, 0]
    assert keep.tolist() == [False, True, True, True, False]  # 0.5 + 0.3 = 0.8 < 0.85, + 0.1 reaches it
    keep = truncation_keep_mask(probs.log(), 0.79)[0, :, 0]
    assert keep.tolist() == [False, True, False, True, False]  # 0.5 + 0.3 reaches 0.79
    keep = truncation_keep_mask(probs.log(), 0.3)[0, :, 0]
    assert keep.tolist() == [False, True, False, False, False]  # the top code alone

    generator = torch.Generator().manual_seed(0)
    log_probs = torch.log_softmax(torch.randn(6, 40, 7, generator=generator) * 2, dim=1)
    for r in [0.1, 0.5, 0.85, 0.9, 0.999]:
        keep = truncation_keep_mask(log_probs, r)
        probs = log_probs.exp()
        for b in range(6):
            for n in range(7):
                p = probs[b, :, n]
                order = torch.argsort(p, descending=True)
                k = int((torch.cumsum(p[order], 0) < r).sum()) + 1  # smallest k whose top-k mass >= r
                expected = torch.zeros(40, dtype=torch.bool)
                expected[order[:k]] = True
                assert torch.equal(keep[b, :, n], expected), (r, b, n)
                assert p[keep[b, :, n]].sum() >= r - 1e-6
        truncated = truncate(log_probs, r).exp()
        assert torch.allclose(truncated.sum(dim=1), torch.ones(6, 7), atol=1e-5)
        assert (truncated[~keep] < 1e-20).all()
        assert torch.allclose(truncated[keep], (probs / (probs * keep).sum(1, keepdim=True))[keep], atol=1e-5)
    assert torch.equal(truncate(log_probs, 1.0), log_probs)


def test_truncation_equals_one_stable_sort_per_token_with_ties_and_long_tails():
    """The top-k shortcut must give the full stable sort's mask bit for bit: on peaked and flat distributions,
    many exact ties (quantised logits, floored log-probabilities), kept sets longer than the shortcut's k, and
    r near the partial sums."""
    from clipvqd.diffusion.sampler import _sorted_keep

    generator = torch.Generator().manual_seed(1)
    cases = [
        torch.randn(4, 124, 64, generator=generator) * 3,  # peaked: a few codes carry the mass
        torch.randn(4, 124, 64, generator=generator) * 0.3,  # flat: dozens of codes needed
        torch.randint(0, 4, (4, 124, 64), generator=generator).float(),  # four levels: ties everywhere
        torch.where(torch.rand(4, 124, 64, generator=generator) < 0.9, -200.0, 5.0),  # equal top codes, floor
    ]
    for logits in cases:
        log_probs = torch.log_softmax(logits, dim=1).clamp(min=LOG_ZERO)
        reference_rows = log_probs.movedim(1, -1).reshape(-1, 124)
        for r in [0.05, 0.5, 0.85, 0.9, 0.99, 1.0]:
            expected = _sorted_keep(reference_rows, r).view(4, 64, 124).movedim(-1, 1)
            assert torch.equal(truncation_keep_mask(log_probs, r), expected), r


# ---------------------------------------------------------------------------------------------- sampler
class OracleModel(nn.Module):
    """Predicts one fixed token map with certainty: every sampler path must return exactly it."""

    def __init__(self, target: torch.Tensor):
        super().__init__()
        self.config = TINY
        self.anchor = nn.Parameter(torch.zeros(()))
        self.register_buffer("target", target)

    def forward(self, x_t, t, condition):
        logits = torch.full((x_t.shape[0], TINY.num_codes, TINY.num_tokens), -30.0)
        return logits.scatter(1, self.target.view(1, 1, -1).expand(x_t.shape[0], 1, -1), 30.0)


@pytest.mark.parametrize("options", [{}, {"step_stride": 7}, {"num_steps": 3}, {"purity": True},
                                     {"purity": True, "num_steps": 5}])
def test_sampler_recovers_a_certain_prediction(options):
    target = torch.randint(0, TINY.num_codes, (16,), generator=torch.Generator().manual_seed(0))
    schedule = MaskAndReplace(TINY.num_codes, TINY.num_steps)
    out = sample(OracleModel(target), schedule, torch.zeros(3, 8), seed=0, **options)
    assert out.shape == (3, 4, 4) and out.dtype == torch.int64
    assert torch.equal(out, target.view(1, 4, 4).expand(3, -1, -1))


def test_sampler_is_deterministic_and_stateless():
    model = tiny_model()
    schedule = MaskAndReplace(TINY.num_codes, TINY.num_steps)
    condition = text_condition(torch.randn(5, 8, generator=torch.Generator().manual_seed(2)))
    null = NullCondition(8)
    options = dict(guidance_scale=2.0, null_condition=null, num_steps=10)
    first = sample(model, schedule, condition, seed=11, batch_size=5, truncation_r=1.0, **options)
    assert first.shape == (5, 4, 4)
    assert int(first.min()) >= 0 and int(first.max()) < TINY.num_codes
    again = sample(model, schedule, condition, seed=11, batch_size=2, truncation_r=1.0, **options)
    assert torch.equal(first, again), "same seed, other batch size: same images"
    other_seed = sample(model, schedule, condition, seed=12, batch_size=5, truncation_r=1.0, **options)
    assert not torch.equal(first, other_seed)
    # r = 0.85 first, then r = 1.0: identical to calling r = 1.0 first (nothing is carried over)
    truncated = sample(model, schedule, condition, seed=11, batch_size=5, truncation_r=0.85, **options)
    after = sample(model, schedule, condition, seed=11, batch_size=5, truncation_r=1.0, **options)
    assert torch.equal(after, first)
    assert not torch.equal(truncated, first)
    # image i depends on (seed, i) and its own condition only, not on the other images requested
    prefix = sample(model, schedule, condition[:3], seed=11, truncation_r=1.0, **options)
    assert torch.equal(prefix, first[:3])
    with pytest.raises(ValueError, match="null_condition"):
        sample(model, schedule, condition, guidance_scale=2.0)


def test_reverse_step_counts():
    assert reverse_step_counts(100) == list(range(100, -1, -1))
    assert reverse_step_counts(100, step_stride=30) == [100, 70, 40, 10, 0]
    assert reverse_step_counts(100, num_steps=4) == [100, 75, 50, 25, 0]
    with pytest.raises(ValueError, match="not both"):
        reverse_step_counts(100, num_steps=4, step_stride=2)


# ------------------------------------------------------------------- fidelity options (docs/deviations.md)
def test_loss_over_steps_sum_is_exactly_T_times_mean():
    """"sum" is the released scale (kl_loss / pt): T times "mean" (kl_loss / (pt T)) for the same draw; the
    per-sample bound terms the timestep sampler learns from do not change."""
    model = tiny_model()
    schedule = MaskAndReplace(TINY.num_codes, TINY.num_steps)
    generator = torch.Generator().manual_seed(4)
    x0 = torch.randint(0, TINY.num_codes, (6, 16), generator=generator)
    t = torch.tensor([0, 1, 5, 10, 18, 19])
    xt = schedule.q_sample(x0, t, generator)
    weight = torch.tensor([1.0, 0.5, 2.0, 1.5, 0.8, 1.2])
    with torch.no_grad():
        logits = model(xt, t, torch.randn(6, 8, generator=generator))
    mean = diffusion_loss(schedule, logits, x0, xt, t, weight)
    total = diffusion_loss(schedule, logits, x0, xt, t, weight, loss_over_steps="sum")
    assert float(total.loss) == pytest.approx(TINY.num_steps * float(mean.loss), rel=1e-6)
    assert torch.allclose(total.weighted, TINY.num_steps * mean.weighted, rtol=1e-6)
    assert torch.equal(total.vlb, mean.vlb) and torch.equal(total.x0_nll, mean.x0_nll)
    with pytest.raises(ValueError, match="loss_over_steps"):
        diffusion_loss(schedule, logits, x0, xt, t, weight, loss_over_steps="total")


def test_train_config_checks_loss_over_steps():
    from clipvqd.diffusion import DiffusionTrainConfig

    assert DiffusionTrainConfig().loss_over_steps == "mean"
    assert DiffusionTrainConfig.from_dict({"loss_over_steps": "sum"}).loss_over_steps == "sum"
    with pytest.raises(ValueError, match="loss_over_steps='total'"):
        DiffusionTrainConfig(loss_over_steps="total")


class RecordingModel(nn.Module):
    """The tiny denoiser, remembering every condition batch it was given."""

    def __init__(self):
        super().__init__()
        self.inner = tiny_model()
        self.config = TINY
        self.conditions: list[torch.Tensor] = []

    def forward(self, x_t, t, condition):
        self.conditions.append(condition.detach().clone())
        return self.inner(x_t, t, condition)


@pytest.mark.parametrize("form", ["normalized", "raw"])
def test_guidance_feeds_the_null_vector_raw_or_normalised(form):
    null = NullCondition(8)
    with torch.no_grad():
        null.vector.copy_(torch.nn.functional.normalize(null.vector, dim=0) * 5.0)  # |vector| = 5
    model = RecordingModel()
    schedule = MaskAndReplace(TINY.num_codes, TINY.num_steps)
    condition = text_condition(torch.randn(3, 8, generator=torch.Generator().manual_seed(5)))
    sample(model, schedule, condition, guidance_scale=2.0, null_condition=null, null_condition_form=form,
           num_steps=2, seed=0)
    assert len(model.conditions) == 2  # one batched conditional + null forward per reverse step
    for batch in model.conditions:
        assert torch.allclose(batch[:3], condition, atol=1e-6)
        expected = null.vector.detach() if form == "raw" else null.vector.detach() / 5.0
        assert torch.allclose(batch[3:], expected.expand(3, -1), atol=1e-6)
        assert torch.allclose(batch[3:].norm(dim=1), torch.full((3,), 5.0 if form == "raw" else 1.0), atol=1e-5)


class LinearConditionModel(nn.Module):
    """Logits linear in the condition, the same at every position: the null vector's scale shows directly."""

    def __init__(self):
        super().__init__()
        self.config = TINY
        self.project = nn.Linear(8, TINY.num_codes, bias=False)
        torch.nn.init.normal_(self.project.weight, generator=torch.Generator().manual_seed(7))

    def forward(self, x_t, t, condition):
        return self.project(condition).unsqueeze(2).expand(-1, -1, TINY.num_tokens)


def test_raw_and_normalised_null_differ_only_off_the_unit_sphere():
    model = LinearConditionModel()
    schedule = MaskAndReplace(TINY.num_codes, TINY.num_steps)
    condition = text_condition(torch.randn(4, 8, generator=torch.Generator().manual_seed(6)))
    null = NullCondition(8)

    def draw(form):
        return sample(model, schedule, condition, guidance_scale=3.0, null_condition=null, null_condition_form=form,
                      num_steps=5, seed=3)

    with torch.no_grad():
        null.vector.copy_(torch.nn.functional.normalize(null.vector, dim=0))
    assert torch.equal(draw("raw"), draw("normalized"))  # a unit vector is its own normalisation
    with torch.no_grad():
        null.vector.mul_(20.0)
    assert not torch.equal(draw("raw"), draw("normalized"))
    with pytest.raises(ValueError, match="null_condition_form"):
        sample(model, schedule, condition, guidance_scale=3.0, null_condition=null, null_condition_form="scaled")


def test_generate_images_feeds_the_null_vector_as_the_model_config_says(monkeypatch):
    from clipvqd.diffusion import generate

    seen = {}

    def fake_sample(model, schedule, condition, **options):
        seen.update(options, condition=condition)
        return torch.zeros(condition.shape[0], TINY.grid_height, TINY.grid_width, dtype=torch.int64)

    class Tokenizer:
        def decode_codes(self, codes):
            return torch.zeros(codes.shape[0], 3, 8, 8)

    class Mapping:
        vocab_size = TINY.num_codes

        def expand(self, codes):
            return codes

    monkeypatch.setattr(generate, "sample", fake_sample)
    null = NullCondition(8)
    prompts = torch.randn(2, 8)
    denoiser = Denoiser(TINY)
    for form in ("normalized", "raw"):
        generate.generate_images(denoiser, null, Tokenizer(), Mapping(), prompts,
                                 generate.SamplingSettings(guidance_scale=1.2, null_condition=form), seed=0,
                                 progress=False)
        assert seen["null_condition_form"] == form and seen["guidance_scale"] == 1.2
    # the unconditional control is always conditioned on the normalised vector it was trained with
    generate.generate_images(denoiser, null, Tokenizer(), Mapping(), prompts,
                             generate.SamplingSettings(unconditional=True), seed=0, progress=False)
    assert torch.allclose(seen["condition"], null.normalized().detach().expand(2, -1))
    assert seen["guidance_scale"] == 1.0


def test_convmlp_activation_options():
    from clipvqd.diffusion.transformer import ConvMLP, quick_gelu

    x = torch.linspace(-4, 4, 101)
    assert torch.allclose(quick_gelu(x), x * torch.sigmoid(1.702 * x))
    assert (quick_gelu(x) - torch.nn.functional.gelu(x)).abs().max() < 0.03  # an approximation of GELU
    torch.manual_seed(0)
    exact = ConvMLP(8, 2, 4, 4, "gelu")
    quick = ConvMLP(8, 2, 4, 4, "quick_gelu")
    quick.load_state_dict(exact.state_dict())
    tokens = torch.randn(2, 16, 8)
    grid = tokens.view(2, 4, 4, 8).permute(0, 3, 1, 2)
    expected = quick.contract(quick_gelu(quick.expand(grid))).permute(0, 2, 3, 1).reshape(2, 16, 8)
    assert torch.allclose(quick(tokens), expected, atol=1e-6)
    assert not torch.allclose(quick(tokens), exact(tokens), atol=1e-6)
    paper = DenoiserConfig.paper()
    assert paper.mlp_activation == "quick_gelu" and DenoiserConfig().mlp_activation == "gelu"
    with pytest.raises(ValueError, match="mlp_activation"):
        DenoiserConfig(mlp_activation="relu")
