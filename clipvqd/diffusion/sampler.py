"""Reverse diffusion: token maps from conditions (docs/design.md §4 "Classifier-free guidance", "Sampling").

Every option is an explicit argument of `sample`; nothing is kept between calls. Each image i draws its
randomness from its own generator seeded by (seed, i), so the output depends on neither `batch_size`
nor which other images share its batch.

One reverse step from count n (state after n noising steps) to count m < n:
 1. x~0 = p(x0 | x_n, c) from the denoiser; with guidance, the conditional and null-condition passes
    run as one batched forward and combine as log p = log p_u + s (log p_c - log p_u), renormalised;
 2. truncation r keeps, per token, the smallest set of codes whose probability reaches r, renormalised;
 3. x_m ~ sum_x0 q(x_m | x_n, x0) x~0(x0) (`MaskAndReplace.log_q_posterior_from_tokens`). With a stride
    m = n - stride, and this is the exact multi-step posterior of the forward process (the composed
    transition from count m to n is again mask-and-replace), not the one-step posterior evaluated at a
    shifted index that the reference's fast sampler uses. At m = 0 the posterior is x~0 itself.
With `purity=True` (Improved VQ-Diffusion's purity prior) step 3 is replaced, for m > 0, by: unmask
exactly as many tokens as the schedule expects to become unmasked between n and m
(round(N gbar_n) - round(N gbar_m)), choosing positions among the masked ones with probability
proportional to their purity (the largest probability of x~0 at that position, so confident
positions go first) and filling them with draws from x~0; unmasked tokens stay. The last step (m = 0)
is the ordinary one. The paper's additional sharpening of x~0 by purity is not implemented.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clipvqd.training.seeding import generator_for

from .condition import NullCondition
from .transformer import NULL_CONDITION_FORMS
from .mask_and_replace import LOG_ZERO, MaskAndReplace


def reverse_step_counts(total_steps: int, num_steps: int | None = None, step_stride: int | None = None) -> list[int]:
    """Visited step counts, from `total_steps` (all [MASK]) down to 0 (clean).

    Default: every step. `step_stride=k`: T, T-k, T-2k, ..., then 0. `num_steps=S`: S reverse steps with
    counts round(T j / S), j = S..0 (evenly spread).
    """
    if num_steps is not None and step_stride is not None:
        raise ValueError("give num_steps or step_stride, not both")
    if step_stride is not None:
        if not 1 <= step_stride <= total_steps:
            raise ValueError(f"step_stride must be in [1, {total_steps}], got {step_stride}")
        return list(range(total_steps, 0, -step_stride)) + [0]
    if num_steps is not None:
        if not 1 <= num_steps <= total_steps:
            raise ValueError(f"num_steps must be in [1, {total_steps}], got {num_steps}")
        return [round(total_steps * j / num_steps) for j in range(num_steps, -1, -1)]
    return list(range(total_steps, -1, -1))


def guided_log_x0(log_x0_conditional: Tensor, log_x0_null: Tensor, guidance_scale: float) -> Tensor:
    """Classifier-free guidance on log p(x0): log p_u + s (log p_c - log p_u), renormalised over dim 1."""
    combined = log_x0_null + guidance_scale * (log_x0_conditional - log_x0_null)
    return F.log_softmax(combined, dim=1)


def truncation_keep_mask(log_probs: Tensor, truncation_r: float) -> Tensor:
    """Bool mask of the smallest set of codes per token whose probabilities sum to at least r.

    Codes sorted by probability are kept while the mass of the codes before them is below r, so the
    most likely code is always kept and the code that crosses r is included. Ties are broken by code
    index (stable sort), so the result is deterministic.

    Computed on the few most likely codes of each token first (`torch.topk`), which settles almost every
    token: the kept set's masses and sums are the first terms of the full sort's, bit for bit. A token goes
    through the full stable sort when that is not certain: its top codes do not clearly reach r, every one
    of them is kept, or equal probabilities straddle the cut (where the sort's order by code index decides).
    """
    if not 0.0 < truncation_r <= 1.0:
        raise ValueError(f"truncation_r must be in (0, 1], got {truncation_r}")
    # Codes last, contiguous: sorting and summing along the strided code axis of (B, K, N) is several times slower.
    by_token = log_probs.movedim(1, -1).contiguous()
    rows = by_token.reshape(-1, by_token.shape[-1])
    top = min(_TRUNCATION_TOP, rows.shape[-1] - 1)
    if top < 2:
        keep = _sorted_keep(rows, truncation_r)
    else:
        values, order = torch.topk(rows, top, dim=-1, largest=True, sorted=True)
        probabilities = values.exp()
        cumulative = probabilities.cumsum(dim=-1)
        keep_top = cumulative - probabilities < truncation_r
        kept = keep_top.sum(dim=-1)
        # Settled: the top codes' total exceeds r by more than the rounding of any later partial sum (so every
        # other code is dropped), the kept codes are a prefix ending inside them, and the codes on either side
        # of the cut differ (equal ones would be ordered by code index, which topk does not promise).
        prefix = keep_top == (torch.arange(top, device=rows.device) < kept.unsqueeze(-1))
        boundary = values.gather(-1, kept.clamp(max=top - 1).unsqueeze(-1)).squeeze(-1)
        last_kept = values.gather(-1, (kept - 1).clamp(min=0).unsqueeze(-1)).squeeze(-1)
        settled = ((cumulative[:, -1] >= truncation_r + _TRUNCATION_MARGIN) & (kept < top) & (boundary != last_kept)
                   & prefix.all(dim=-1))
        keep = torch.zeros_like(rows, dtype=torch.bool).scatter_(-1, order, keep_top)
        unsettled = (~settled).nonzero().squeeze(-1)
        if unsettled.numel():
            keep[unsettled] = _sorted_keep(rows[unsettled], truncation_r)
    return keep.view(by_token.shape).movedim(-1, 1)


# Codes examined per token before falling back to the full sort: at the default run's r = 0.85 a token keeps
# 2.6 codes on average and more than 16 for about 0.6% of tokens.
_TRUNCATION_TOP = 16
# Partial sums of probabilities below 1 in float32 round by less than 1e-7 each step; a top-k total this far
# above r cannot be followed by a later code whose mass-before falls back under r.
_TRUNCATION_MARGIN = 1e-5


def _sorted_keep(rows: Tensor, truncation_r: float) -> Tensor:
    """`truncation_keep_mask` for `(M, K)` log-probabilities by one stable sort per row (the reference)."""
    sorted_log, order = torch.sort(rows, dim=-1, descending=True, stable=True)
    probabilities = sorted_log.exp()
    keep_sorted = probabilities.cumsum(dim=-1) - probabilities < truncation_r
    return torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)


def truncate(log_probs: Tensor, truncation_r: float) -> Tensor:
    """Keep the minimal set reaching r (see `truncation_keep_mask`) and renormalise; r = 1 is a no-op
    (a cumulative sum that rounds to 1 early must not drop the tail)."""
    if truncation_r >= 1.0:
        return log_probs
    keep = truncation_keep_mask(log_probs, truncation_r)
    kept = log_probs.masked_fill(~keep, float("-inf"))
    return F.log_softmax(kept, dim=1).clamp(min=LOG_ZERO)


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _autocast(device: torch.device):
    # bf16 on CUDA for speed; CPU sampling stays in float32 so results are exactly reproducible there.
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def predict_log_x0(
    model: nn.Module,
    xt: Tensor,
    t: Tensor,
    condition: Tensor,
    *,
    guidance_scale: float = 1.0,
    null_condition: Tensor | None = None,
) -> Tensor:
    """log p(x0 | x_t, c) over the K codes, `(B, K, N)` float32; guided when `null_condition` is given
    (one forward on the concatenated conditional and null batches)."""
    with _autocast(xt.device):
        if null_condition is None:
            return F.log_softmax(model(xt, t, condition).float(), dim=1)
        batch = xt.shape[0]
        null_rows = null_condition.to(condition).view(1, -1).expand(batch, -1)
        logits = model(torch.cat([xt, xt]), torch.cat([t, t]), torch.cat([condition, null_rows]))
    log_conditional, log_null = F.log_softmax(logits.float(), dim=1).split(batch)
    return guided_log_x0(log_conditional, log_null, guidance_scale)


def _draw_categorical(log_probs: Tensor, generators: Sequence[torch.Generator]) -> Tensor:
    """One draw per token from `(B, C, N)` log-probabilities (Gumbel-max), row b using generators[b]."""
    uniform = torch.empty(log_probs.shape, device=log_probs.device)
    for row, generator in enumerate(generators):
        torch.rand(log_probs.shape[1:], generator=generator, device=log_probs.device, out=uniform[row])
    exponential = -torch.log(uniform.clamp(min=1e-20))
    gumbel = -torch.log(exponential.clamp(min=1e-20))
    return (log_probs + gumbel).argmax(dim=1)


def _purity_step(
    log_x0: Tensor, xt: Tensor, target_masked: int, mask_index: int, generators: Sequence[torch.Generator]
) -> Tensor:
    masked = xt == mask_index
    candidates = _draw_categorical(log_x0, generators)
    purity = log_x0.exp().amax(dim=1)
    xt = xt.clone()
    for row, generator in enumerate(generators):
        reveal = int(masked[row].sum()) - target_masked
        if reveal <= 0:
            continue
        weights = torch.where(masked[row], purity[row], torch.zeros_like(purity[row]))
        chosen = torch.multinomial(weights, reveal, replacement=False, generator=generator)
        xt[row, chosen] = candidates[row, chosen]
    return xt


def _null_vector(null_condition: Tensor | NullCondition | None, form: str = "normalized") -> Tensor | None:
    """The vector the guidance branch feeds: a `NullCondition`'s normalised vector, or its raw parameter
    (`form="raw"`, the release's behaviour); a tensor is taken as given."""
    if form not in NULL_CONDITION_FORMS:
        raise ValueError(f"null_condition_form must be one of {NULL_CONDITION_FORMS}, got {form!r}")
    if isinstance(null_condition, NullCondition):
        return (null_condition.normalized() if form == "normalized" else null_condition.vector).detach()
    return null_condition


@torch.no_grad()
def sample(
    model: nn.Module,
    schedule: MaskAndReplace,
    condition: Tensor,
    *,
    guidance_scale: float = 1.0,
    truncation_r: float = 1.0,
    num_steps: int | None = None,
    step_stride: int | None = None,
    purity: bool = False,
    seed: int = 0,
    batch_size: int = 16,
    null_condition: Tensor | NullCondition | None = None,
    null_condition_form: str = "normalized",
    progress: bool = False,
) -> Tensor:
    """Generate one token map per row of `condition` `(num_images, D)`; returns `(num_images, H, W)`
    int64 codes in [0, K), on CPU.

    condition: already-prepared condition vectors, e.g. `text_condition(text_embedding)`; for the
      unconditional control pass the normalised null vector repeated.
    guidance_scale: s of classifier-free guidance; needs `null_condition` unless s = 1 (at s = 1 the
      null pass is skipped: it would not change the result).
    truncation_r: keep per token the smallest code set reaching probability r (1 = no truncation).
    num_steps / step_stride: fast sampling (see `reverse_step_counts`); default: all T steps.
    purity: Improved VQ-Diffusion's purity-prior unmasking order instead of posterior sampling.
    seed: image i draws from a generator seeded by (seed, i).
    batch_size: images per forward pass (memory only; results do not depend on it).
    null_condition: the learnable null vector (a `NullCondition`, or the `(D,)` tensor to feed as it is).
    null_condition_form: for a `NullCondition`, feed its normalised vector ("normalized", as in training)
      or its raw parameter ("raw", as the release's clip_vqdiffusion.py does).
    """
    device = _model_device(model)
    config = getattr(model, "config", None)
    if condition.dim() != 2:
        raise ValueError(f"condition must be (num_images, D), got shape {tuple(condition.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    null_vector = _null_vector(null_condition, null_condition_form)
    if guidance_scale != 1.0 and null_vector is None:
        raise ValueError(f"guidance_scale={guidance_scale} needs null_condition (the model's learnable null vector)")
    if guidance_scale == 1.0:
        null_vector = None
    if null_vector is not None:
        null_vector = null_vector.to(device=device, dtype=torch.float32)
    if config is None:
        raise ValueError("the model must carry its DenoiserConfig as .config (it gives the grid size)")
    if config.num_codes != schedule.num_codes or config.num_steps != schedule.num_steps:
        raise ValueError(
            f"model (K={config.num_codes}, T={config.num_steps}) and schedule "
            f"(K={schedule.num_codes}, T={schedule.num_steps}) disagree"
        )
    counts = reverse_step_counts(schedule.num_steps, num_steps, step_stride)
    grid, num_tokens, mask_index = (config.grid_height, config.grid_width), config.num_tokens, schedule.mask_index

    outputs = []
    starts = range(0, condition.shape[0], batch_size)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(starts) * (len(counts) - 1), desc="sampling", unit="step")
    for start in starts:
        chunk = condition[start : start + batch_size].to(device=device, dtype=torch.float32)
        rows = chunk.shape[0]
        generators = [generator_for(seed, start + row, device=device) for row in range(rows)]
        xt = torch.full((rows, num_tokens), mask_index, dtype=torch.int64, device=device)
        for from_count, to_count in zip(counts[:-1], counts[1:]):
            t = torch.full((rows,), from_count - 1, dtype=torch.int64, device=device)
            log_x0 = predict_log_x0(model, xt, t, chunk, guidance_scale=guidance_scale, null_condition=null_vector)
            log_x0 = truncate(log_x0.clamp(min=LOG_ZERO), truncation_r)
            if to_count == 0:
                xt = _draw_categorical(log_x0, generators)
            elif purity:
                target_masked = round(num_tokens * schedule.expected_masked_fraction(to_count))
                xt = _purity_step(log_x0, xt, target_masked, mask_index, generators)
            else:
                log_x0_states = torch.cat([log_x0, torch.full_like(log_x0[:, :1], LOG_ZERO)], dim=1)
                log_next = schedule.log_q_posterior_from_tokens(log_x0_states, xt, from_count, to_count)
                xt = _draw_categorical(log_next, generators)
            if bar is not None:
                bar.update(1)
        outputs.append(xt.view(rows, *grid).cpu())
    if bar is not None:
        bar.close()
    return torch.cat(outputs) if outputs else torch.zeros((0, *grid), dtype=torch.int64)
