"""Bootstrap confidence intervals and paired comparisons (docs/design.md §6).

A metric is measured on *units*: the prompts of the alignment set (the samples of one prompt share its
text and are correlated, so prompts are resampled, never single samples) or the images of the distribution
set (image i of every method was prompted with the caption of reference image i, so the generated image and
its reference are resampled together). A resample is a vector of counts over the units (a multinomial
draw), and each metric is written as a function of a `(replicates, units)` count matrix
(`clipvqd.evaluation.resampled`), so a thousand resamples cost a few matrix products.

Two levels when a branch has several training seeds: each replicate draws S seeds with replacement from
the S seeds, resamples the units of each drawn seed, computes the metric on each, and averages over the
drawn seeds. The interval then holds the seed-to-seed spread and the prompt (or image) sampling. With one
seed it is the ordinary bootstrap over units. A statistic that is undefined on a resample of fewer than k
distinct units says so (`min_distinct_units`, e.g. 2 for the unbiased MMD of KID and CMMD, which has no pair
of distinct images in a resample that drew one image n times) and such resamples are drawn again: the
bootstrap conditioned on k distinct units. It matters only for tiny sets (n^(1-n) of the resamples of n
units hold one distinct unit: 1 in 64 at n = 4, 1 in 2 million at n = 8); where no resample falls
short, the draws are the unconditioned ones. Intervals are percentile intervals of the replicates, except
for statistics whose replicates are shifted by the resampling itself (`normal`: FID, a plug-in statistic
whose bias grows as a resample's number of distinct images falls to about 63%; its percentile interval can
sit beside the estimate): those get the estimate plus or minus z bootstrap standard errors.

A paired comparison applies the same draws (the same seeds, the same resampled units) to two methods
measured on the same units, and looks at the replicates of their difference: the prompt-to-prompt
variation they share cancels, which is what makes a small but consistent gap detectable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

# counts (m, units) -> metric of each of the m resamples (m,)
Statistic = Callable[[np.ndarray], np.ndarray]

_CHUNK = 256  # resamples evaluated at once (bounds the memory of a (chunk, units) count matrix)


class BootstrapError(ValueError):
    pass


@dataclass(frozen=True)
class BootstrapSettings:
    """How intervals are drawn; recorded in protocol.json.

    replicates: resamples per interval (B). confidence: coverage of the two-sided percentile interval.
    seed: seed of the bootstrap's own random generator (independent of every other draw of the run).
    """

    replicates: int = 1000
    confidence: float = 0.95
    seed: int = 0

    def __post_init__(self):
        if self.replicates < 10:
            raise BootstrapError(f"evaluation.bootstrap.replicates must be at least 10, got {self.replicates}")
        if not 0 < self.confidence < 1:
            raise BootstrapError(f"evaluation.bootstrap.confidence must lie in (0, 1), got {self.confidence}")

    def describe(self, units: str, kinds: dict | None = None) -> dict:
        """What protocol.json records; `kinds` names the metrics whose interval is not the percentile one."""
        return {
            **asdict(self),
            "interval": "percentile" + "".join(f"; {metric}: {kind} (estimate -/+ z bootstrap standard errors)"
                                               for metric, kind in sorted((kinds or {}).items())),
            "levels": ["training seeds (with replacement)", f"{units} of each drawn seed (with replacement)"],
            "units": units,
        }


def _check(statistics: Sequence[Sequence[Statistic]], units: Sequence[int]) -> None:
    if not statistics or not units:
        raise BootstrapError("bootstrap needs at least one statistic and one seed")
    for index, per_seed in enumerate(statistics):
        if len(per_seed) != len(units):
            raise BootstrapError(f"statistic {index} has {len(per_seed)} seed(s), the units {len(units)}")
    for seed_index, count in enumerate(units):
        if count < 1:
            raise BootstrapError(f"seed {seed_index} has no units to resample")


def min_distinct_units(statistic: Statistic) -> int:
    """The fewest distinct units a resample needs for `statistic` to be defined (its attribute, else 1)."""
    return getattr(statistic, "min_distinct_units", 1)


def _resample(rng: np.random.Generator, n_units: int, size: int, needed: int) -> np.ndarray:
    """`size` multinomial resamples of `n_units` units, those with fewer than `needed` distinct units drawn again."""
    probabilities = np.full(n_units, 1.0 / n_units)
    counts = rng.multinomial(n_units, probabilities, size=size)
    while (short := (counts > 0).sum(axis=1) < needed).any():
        counts[short] = rng.multinomial(n_units, probabilities, size=int(short.sum()))
    return counts


def joint_replicates(statistics: Sequence[Sequence[Statistic]], units: Sequence[int],
                     settings: BootstrapSettings) -> np.ndarray:
    """Replicates `(K, B)` of K statistics under the same two-level draws.

    `statistics[k][s]` is statistic k on seed s (a function of a count matrix over that seed's units);
    `units[s]` is how many units seed s has. Statistics that share draws are paired: statistic 0 and 1 of
    replicate b saw the same seeds and the same resampled units. Every resample holds at least the
    `min_distinct_units` of each statistic.
    """
    _check(statistics, units)
    needed = max(min_distinct_units(statistic) for per_seed in statistics for statistic in per_seed)
    for seed_index, count in enumerate(units):
        if count < needed:
            raise BootstrapError(f"seed {seed_index} has {count} unit(s); the statistic needs {needed} distinct ones")
    rng = np.random.default_rng([settings.seed, 0x5EED])
    n_seeds, replicates = len(units), settings.replicates
    drawn = rng.integers(0, n_seeds, size=(replicates, n_seeds)) if n_seeds > 1 else np.zeros((replicates, 1), int)
    values = np.empty((len(statistics), replicates, n_seeds))
    for seed_index in range(n_seeds):
        rows, columns = np.nonzero(drawn == seed_index)
        n_units = units[seed_index]
        for start in range(0, len(rows), _CHUNK):
            stop = min(start + _CHUNK, len(rows))
            counts = _resample(rng, n_units, stop - start, needed)
            for k, per_seed in enumerate(statistics):
                result = np.asarray(per_seed[seed_index](counts), dtype=np.float64)
                if result.shape != (stop - start,):
                    raise BootstrapError(f"statistic {k} returned shape {result.shape} for {stop - start} resamples")
                values[k, rows[start:stop], columns[start:stop]] = result
    return values.mean(axis=2)


def point_estimate(per_seed: Sequence[Statistic], units: Sequence[int]) -> float:
    """The metric on the data as measured: each seed's value on all of its units, averaged over seeds."""
    return float(np.mean([statistic(np.ones((1, count)))[0] for statistic, count in zip(per_seed, units)]))


def percentile_interval(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    finite = replicates[np.isfinite(replicates)]
    if len(finite) < len(replicates):
        raise BootstrapError(f"{len(replicates) - len(finite)} bootstrap replicate(s) are not finite")
    tail = (1 - confidence) / 2
    low, high = np.quantile(finite, [tail, 1 - tail])
    return float(low), float(high)


INTERVAL_KINDS = ("percentile", "normal")


def normal_interval(replicates: np.ndarray, estimate: float, confidence: float) -> tuple[float, float]:
    """estimate -/+ z * the replicates' standard deviation (z of the two-sided `confidence`)."""
    from statistics import NormalDist

    if not np.isfinite(replicates).all():
        raise BootstrapError(f"{int((~np.isfinite(replicates)).sum())} bootstrap replicate(s) are not finite")
    half = NormalDist().inv_cdf(0.5 + confidence / 2) * float(np.std(replicates, ddof=1))
    return estimate - half, estimate + half


def interval(replicates: np.ndarray, estimate: float, confidence: float, kind: str = "percentile") -> tuple[float, float]:
    if kind == "percentile":
        return percentile_interval(replicates, confidence)
    if kind == "normal":
        return normal_interval(replicates, estimate, confidence)
    raise BootstrapError(f"interval kind must be one of {INTERVAL_KINDS}, got {kind!r}")


def bootstrap_interval(per_seed: Sequence[Statistic], units: Sequence[int],
                       settings: BootstrapSettings, kind: str = "percentile") -> tuple[float, float, float]:
    """(value, ci_low, ci_high) of one metric: the value is `point_estimate`, the interval the two-level
    percentile interval (or the normal one, `kind`)."""
    replicates = joint_replicates([per_seed], units, settings)[0]
    value = point_estimate(per_seed, units)
    return (value, *interval(replicates, value, settings.confidence, kind))


@dataclass(frozen=True)
class PairedComparison:
    """`difference` = a − b (point estimates); its interval and two-sided bootstrap p-value."""

    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    replicates: int

    @property
    def excludes_zero(self) -> bool:
        return self.ci_low > 0 or self.ci_high < 0


def paired_comparison(per_seed_a: Sequence[Statistic], per_seed_b: Sequence[Statistic], units: Sequence[int],
                      settings: BootstrapSettings, kind: str = "percentile") -> PairedComparison:
    """Compare two methods measured on the same units and seeds with the same resamples for both.

    percentile: the p-value is the two-sided bootstrap p-value of "no difference", twice the smaller share
    of replicates of a − b on either side of zero, with the usual +1 so it is never exactly 0. normal: the
    interval is the difference -/+ z standard errors of its replicates, the p-value the normal one.
    """
    from statistics import NormalDist

    replicates = joint_replicates([per_seed_a, per_seed_b], units, settings)
    differences = replicates[0] - replicates[1]
    difference = point_estimate(per_seed_a, units) - point_estimate(per_seed_b, units)
    low, high = interval(differences, difference, settings.confidence, kind)
    if kind == "normal":
        spread = float(np.std(differences, ddof=1))
        p_value = 2 * (1 - NormalDist().cdf(abs(difference) / spread)) if spread > 0 else float(difference == 0)
    else:
        below = (np.sum(differences <= 0) + 1) / (len(differences) + 1)
        above = (np.sum(differences >= 0) + 1) / (len(differences) + 1)
        p_value = 2 * min(below, above)
    return PairedComparison(difference=difference, ci_low=low, ci_high=high, p_value=float(min(1.0, p_value)),
                            replicates=len(differences))


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (controls the family-wise error rate)."""
    order = np.argsort(p_values)
    adjusted = np.empty(len(p_values))
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted.tolist()


__all__ = [
    "BootstrapError",
    "BootstrapSettings",
    "PairedComparison",
    "bootstrap_interval",
    "holm_adjust",
    "interval",
    "joint_replicates",
    "normal_interval",
    "paired_comparison",
    "percentile_interval",
    "point_estimate",
]
