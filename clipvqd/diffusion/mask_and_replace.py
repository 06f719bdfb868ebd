"""VQ-Diffusion's mask-and-replace forward process and its posteriors, in log space.

State space: the K codes of the tokenizer plus one absorbing [MASK] state, stored last (index K).
Distributions are `(B, K+1, N)` log-probabilities: batch, state, token position.

One noising step keeps a code with probability alpha_t + beta_t, turns it into each other code with
probability beta_t and into [MASK] with probability gamma_t (alpha_t + K beta_t + gamma_t = 1); [MASK]
stays [MASK]. The cumulative keep probability falls linearly from 0.99999 to 0.000009 and the
cumulative mask probability rises linearly from 0.000009 to 0.99999 over steps 1..T (docs/design.md §4).

Counts and indices. Internally everything is written in *counts*: `n` = how many noising steps have
been applied (0 = clean x0, T = fully noised). The public per-step API uses the reference's *index*
convention: step index `i` in [0, T-1] is the (i+1)-th noising step, so `log_q_xt_given_x0(., i)` is
the distribution after i+1 steps and `log_q_posterior(., ., i)` the distribution after i steps.

One formula serves every transition. Composing mask-and-replace steps stays in the family: going from
count s to count t keeps with alpha = abar_t / abar_s, leaves unmasked with
1 - gamma = (1 - gbar_t) / (1 - gbar_s), and replaces with beta = (1 - alpha - gamma) / K. Per-step
values are (n, n+1), cumulative ones (0, n), and fast sampling's jumps (s, t) use the same function,
so a strided sampler uses the exact multi-step posterior rather than a one-step stand-in.

Coefficients are computed in float64 from the two cumulative arrays (differences such as
(1 - gbar) - abar are ~1e-6 at both ends of the schedule and would lose most of their digits in
float32) and only then cast to the dtype of the distribution they are applied to.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# log(0) stand-in: exp(-70) ~ 4e-31 is zero for every purpose here, and unlike -inf it never turns a
# subtraction or a product with zero into NaN. The reference implementation uses the same floor.
LOG_ZERO = -70.0

CUMULATIVE_KEEP_FIRST = 0.99999
CUMULATIVE_KEEP_LAST = 0.000009
CUMULATIVE_MASK_FIRST = 0.000009
CUMULATIVE_MASK_LAST = 0.99999


def safe_log(x: Tensor) -> Tensor:
    return torch.log(x.clamp(min=torch.finfo(x.dtype).tiny)).clamp(min=LOG_ZERO)


def index_to_log_onehot(tokens: Tensor, num_states: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """`(B, N)` int64 states -> `(B, num_states, N)` log one-hot (0 where set, LOG_ZERO elsewhere)."""
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= num_states):
        raise ValueError(
            f"token values must lie in [0, {num_states}), found [{int(tokens.min())}, {int(tokens.max())}]"
        )
    onehot = F.one_hot(tokens, num_states).movedim(-1, 1)
    return torch.where(onehot.bool(), 0.0, LOG_ZERO).to(dtype)


def log_onehot_to_index(log_x: Tensor) -> Tensor:
    return log_x.argmax(dim=1)


class TransitionLogCoefficients(NamedTuple):
    """Log-probabilities of one mask-and-replace transition (each shaped `(B, 1, 1)`)."""

    keep: Tensor  # log alpha: stays the same code (on top of the beta every code gets)
    replace: Tensor  # log beta: becomes one particular code (any code, including itself)
    mask: Tensor  # log gamma: becomes [MASK]
    not_mask: Tensor  # log (1 - gamma)


class MaskAndReplace(nn.Module):
    """The schedule of docs/design.md §4 as buffers, and every distribution the loss and the sampler need."""

    def __init__(self, num_codes: int, num_steps: int = 100):
        super().__init__()
        if num_codes < 2:
            raise ValueError(f"num_codes must be >= 2, got {num_codes}")
        if num_steps < 2:
            raise ValueError(f"num_steps must be >= 2, got {num_steps}")
        self.num_codes = int(num_codes)
        self.num_steps = int(num_steps)
        fraction = torch.arange(num_steps, dtype=torch.float64) / (num_steps - 1)
        keep = CUMULATIVE_KEEP_FIRST + fraction * (CUMULATIVE_KEEP_LAST - CUMULATIVE_KEEP_FIRST)
        mask = CUMULATIVE_MASK_FIRST + fraction * (CUMULATIVE_MASK_LAST - CUMULATIVE_MASK_FIRST)
        one = torch.ones(1, dtype=torch.float64)
        # Indexed by count n = 0..T; count 0 is the identity (nothing kept away, nothing masked).
        self.register_buffer("cumulative_keep", torch.cat([one, keep]), persistent=False)
        self.register_buffer("cumulative_not_mask", torch.cat([one, 1.0 - mask]), persistent=False)

    @property
    def mask_index(self) -> int:
        return self.num_codes

    @property
    def num_states(self) -> int:
        return self.num_codes + 1

    # ----------------------------------------------------------------------------------- coefficients
    def _counts(self, counts: Tensor | int, batch: int, device: torch.device) -> Tensor:
        counts = torch.as_tensor(counts, dtype=torch.int64, device=device)
        if counts.dim() == 0:
            counts = counts.expand(batch)
        if counts.shape != (batch,):
            raise ValueError(f"expected one step count per batch row ({batch}), got shape {tuple(counts.shape)}")
        if int(counts.min()) < 0 or int(counts.max()) > self.num_steps:
            raise ValueError(f"step counts must lie in [0, {self.num_steps}], got {counts.tolist()}")
        return counts

    def transition(self, from_count: Tensor, to_count: Tensor, dtype: torch.dtype) -> TransitionLogCoefficients:
        """Log coefficients of q(x_to | x_from) for counts `from_count <= to_count` (each `(B,)`)."""
        if bool((from_count > to_count).any()):
            raise ValueError("a forward transition needs from_count <= to_count")
        keep_cum = self.cumulative_keep.to(from_count.device)
        not_mask_cum = self.cumulative_not_mask.to(from_count.device)
        keep = keep_cum[to_count] / keep_cum[from_count]
        not_mask = not_mask_cum[to_count] / not_mask_cum[from_count]
        replace = (not_mask - keep).clamp(min=0.0) / self.num_codes
        mask = (1.0 - not_mask).clamp(min=0.0)

        def shaped(values: Tensor) -> Tensor:
            return safe_log(values).to(dtype).view(-1, 1, 1)

        return TransitionLogCoefficients(shaped(keep), shaped(replace), shaped(mask), shaped(not_mask))

    def _push(self, log_x: Tensor, coefficients: TransitionLogCoefficients) -> Tensor:
        """Push a distribution over the source state through a transition (any distribution, not only
        one-hot: the replace and mask terms are weighted by the source's total code probability)."""
        log_codes, log_masked = log_x[:, :-1], log_x[:, -1:]
        log_code_mass = torch.logsumexp(log_codes, dim=1, keepdim=True)
        codes = torch.logaddexp(log_codes + coefficients.keep, log_code_mass + coefficients.replace)
        masked = torch.logaddexp(log_code_mass + coefficients.mask, log_masked)
        return torch.cat([codes, masked], dim=1).clamp(LOG_ZERO, 0.0)

    def _check(self, log_x: Tensor, name: str) -> None:
        if log_x.dim() != 3 or log_x.shape[1] != self.num_states:
            raise ValueError(
                f"{name} must be (B, K+1={self.num_states}, N) log-probabilities, got {tuple(log_x.shape)}"
            )

    # ------------------------------------------------------------------------------ forward process
    def log_q_between(self, log_x_from: Tensor, from_count: Tensor | int, to_count: Tensor | int) -> Tensor:
        """log q(x_to | x_from) for any counts 0 <= from_count <= to_count <= T."""
        self._check(log_x_from, "log_x_from")
        batch, device = log_x_from.shape[0], log_x_from.device
        coefficients = self.transition(
            self._counts(from_count, batch, device), self._counts(to_count, batch, device), log_x_from.dtype
        )
        return self._push(log_x_from, coefficients)

    def log_q_xt_given_x0(self, log_x0: Tensor, t: Tensor) -> Tensor:
        """log q(x_t | x_0): the distribution after t+1 noising steps (t is a step index)."""
        return self.log_q_between(log_x0, 0, t + 1)

    def log_q_xt_given_xtm1(self, log_x_prev: Tensor, t: Tensor) -> Tensor:
        """log q(x_t | x_{t-1}): one noising step, the (t+1)-th (t is a step index)."""
        return self.log_q_between(log_x_prev, t, t + 1)

    def q_sample(self, x0: Tensor, t: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Draw x_t ~ q(x_t | x_0) for `(B, N)` code tokens, t a `(B,)` step index.

        Drawn per token from three outcomes instead of a (K+1)-way categorical: masked with gbar,
        kept with abar, otherwise replaced by a uniformly drawn code (which can be the same code, as
        the beta term allows). Random numbers are drawn on the generator's device and then moved.
        """
        if x0.dim() != 2:
            raise ValueError(f"x0 must be (B, N) tokens, got shape {tuple(x0.shape)}")
        gen_device = generator.device if generator is not None else x0.device
        uniform = torch.rand(x0.shape, generator=generator, device=gen_device, dtype=torch.float64)
        random_codes = torch.randint(self.num_codes, x0.shape, generator=generator, device=gen_device)
        return self.q_sample_from_draws(x0, t, uniform, random_codes)

    def q_sample_from_draws(self, x0: Tensor, t: Tensor, uniform: Tensor, random_codes: Tensor) -> Tensor:
        """`q_sample` with its random numbers given: `(B, N)` float64 uniforms in [0, 1) and `(B, N)` int64
        replacement codes in [0, K), as `q_sample` draws them (first the uniforms, then the codes)."""
        if x0.dim() != 2 or uniform.shape != x0.shape or random_codes.shape != x0.shape:
            raise ValueError(f"x0, uniform and random_codes must be (B, N) alike, got {tuple(x0.shape)}, "
                             f"{tuple(uniform.shape)}, {tuple(random_codes.shape)}")
        counts = self._counts(t + 1, x0.shape[0], x0.device)
        keep = self.cumulative_keep.to(x0.device)[counts].unsqueeze(1)
        masked = (1.0 - self.cumulative_not_mask.to(x0.device)[counts]).unsqueeze(1)
        uniform, random_codes = uniform.to(x0.device), random_codes.to(x0.device)
        xt = torch.where(uniform < keep, x0, random_codes)
        return torch.where(uniform >= 1.0 - masked, torch.full_like(x0, self.mask_index), xt)

    # ---------------------------------------------------------------------------------- posteriors
    def _observed_likelihood(self, xt: Tensor, coefficients: TransitionLogCoefficients) -> tuple[Tensor, Tensor, Tensor]:
        """log q(x_to = observed | x_from = j) as a function of the source state j, in three `(B, 1, N)`
        pieces instead of a full `(B, K+1, N)` tensor: the value for every code j other than the
        observed one (beta, or gamma when [MASK] is observed), the extra log-factor for j = the observed
        code (stay = alpha + beta over beta; 0 where [MASK] is observed) and the value for j = [MASK]
        (impossible unless [MASK] is observed, since [MASK] is absorbing)."""
        is_masked = (xt == self.mask_index).unsqueeze(1)
        other_code = torch.where(is_masked, coefficients.mask, coefficients.replace)
        stay = torch.logaddexp(coefficients.keep, coefficients.replace)
        same_code_extra = torch.where(is_masked, torch.zeros_like(other_code), stay - coefficients.replace)
        from_mask = torch.where(is_masked, torch.zeros_like(other_code), torch.full_like(other_code, LOG_ZERO))
        return other_code, same_code_extra, from_mask

    def log_q_posterior_from_tokens(
        self, log_x0: Tensor, xt: Tensor, from_count: Tensor | int, to_count: Tensor | int
    ) -> Tensor:
        """log sum_{x0} q(x_to | x_from, x0) p(x0), with 0 <= to_count < from_count <= T, for the
        observed `(B, N)` int64 states `xt` after `from_count` steps.

        `log_x0` `(B, K+1, N)` may be one-hot or any distribution over the codes; its [MASK] row is
        ignored, since x0 is never [MASK]. Bayes' rule per candidate x0,
            q(x_to | x_from, x0) = q(x_from | x_to) q(x_to | x0) / q(x_from | x0),
        summed against p(x0), is evaluated as
            q(x_from | x_to) * sum_{x0} q(x_to | x0) w(x0),   w(x0) = p(x0) / q(x_from | x0):
        the sum is the forward transition from count 0 to `to_count` applied to the unnormalised w.
        Likelihoods of the observation are built from three per-position pieces (see
        `_observed_likelihood`) and one scatter, so the cost is a dozen passes over (B, K+1, N).
        """
        self._check(log_x0, "log_x0")
        if xt.shape != (log_x0.shape[0], log_x0.shape[2]):
            raise ValueError(f"xt must be (B, N) = {(log_x0.shape[0], log_x0.shape[2])}, got {tuple(xt.shape)}")
        batch, device, dtype = log_x0.shape[0], log_x0.device, log_x0.dtype
        source = self._counts(from_count, batch, device)
        target = self._counts(to_count, batch, device)
        if bool((target >= source).any()):
            raise ValueError("a posterior needs to_count < from_count")
        zero = torch.zeros_like(source)
        K = self.num_codes
        observed_code = xt.clamp(max=K - 1).unsqueeze(1)  # a valid code index; its extra is 0 if masked

        # log w(x0) over the codes: log p(x0) - log q(x_from | x0)
        other, extra, _ = self._observed_likelihood(xt, self.transition(zero, source, dtype))
        log_weight = (log_x0[:, :K] - other).scatter_add(1, observed_code, -extra)
        log_weight_mass = torch.logsumexp(log_weight, dim=1, keepdim=True)

        # sum_{x0} q(x_to | x0) w(x0): keep alpha of each code, spread beta of the mass, mask gamma of it
        push = self.transition(zero, target, dtype)
        pushed_codes = torch.logaddexp(log_weight + push.keep, log_weight_mass + push.replace)
        pushed_mask = log_weight_mass + push.mask

        # times q(x_from | x_to) as a function of x_to
        other, extra, from_mask = self._observed_likelihood(xt, self.transition(target, source, dtype))
        codes = (pushed_codes + other).scatter_add(1, observed_code, extra)
        log_posterior = torch.cat([codes, pushed_mask + from_mask], dim=1)
        return log_posterior.clamp(LOG_ZERO, 0.0)

    def log_q_posterior_between(
        self, log_x0: Tensor, log_xt: Tensor, from_count: Tensor | int, to_count: Tensor | int
    ) -> Tensor:
        """`log_q_posterior_from_tokens` with the observation given as a `(B, K+1, N)` log one-hot."""
        self._check(log_xt, "log_xt")
        return self.log_q_posterior_from_tokens(log_x0, log_onehot_to_index(log_xt), from_count, to_count)

    def log_q_posterior(self, log_x0: Tensor, log_xt: Tensor, t: Tensor) -> Tensor:
        """log sum_{x0} q(x_{t-1} | x_t, x0) p(x0): the state after t steps given the state after t+1
        (t is a step index; for t = 0 the result is p(x0) itself)."""
        return self.log_q_posterior_between(log_x0, log_xt, t + 1, t)

    # ---------------------------------------------------------------------------------- inspection
    def step_coefficients(self) -> TransitionLogCoefficients:
        """Per-step log (alpha_t, beta_t, gamma_t, 1-gamma_t) for steps 1..T, each `(T,)`, float64."""
        counts = torch.arange(self.num_steps, device=self.cumulative_keep.device)
        c = self.transition(counts, counts + 1, torch.float64)
        return TransitionLogCoefficients(*(v.view(-1) for v in c))

    def cumulative_coefficients(self) -> TransitionLogCoefficients:
        """Cumulative log (abar_t, bbar_t, gbar_t, 1-gbar_t) for t = 1..T, each `(T,)`, float64."""
        counts = torch.arange(1, self.num_steps + 1, device=self.cumulative_keep.device)
        c = self.transition(torch.zeros_like(counts), counts, torch.float64)
        return TransitionLogCoefficients(*(v.view(-1) for v in c))

    def expected_masked_fraction(self, count: int) -> float:
        """gbar after `count` steps (0 for count 0): the purity-prior sampler's unmasking schedule."""
        return float(1.0 - self.cumulative_not_mask[count])
