"""Every metric of the table as a function of resampling counts, for the bootstrap (`bootstrap.py`).

A statistic takes a `(m, units)` matrix of counts (row r: how often each unit is in resample r) and
returns the metric of each resample `(m,)`; a row of ones gives the metric as measured. The functions are
exact reformulations, tested against the metrics themselves:

* alignment metrics (`ratio_statistic`): sums over a prompt's scores divided by its number of scores, so a
  resample is a ratio of weighted sums (attr_acc pools (image, attribute) pairs, CLIPscore pools samples,
  best-of-16 has one value per prompt);
* FID (`fid_statistic`): frequency-weighted means and covariances of both feature sets, then torch-fidelity's
  formula (trace of the square root through the eigenvalues of the covariance product, or, with fewer
  images than feature dimensions, the singular values of the images' n x n cross product); the generated
  image and its reference share a unit (image i of the distribution set was prompted with reference i's
  caption), so both sets are resampled with the same counts;
* KID and CMMD (`mmd_statistic`): the unbiased MMD^2 from precomputed Gram matrices; within a set, pairs
  of copies of the same image are left out as the unbiased estimator leaves out i = j (a bootstrap that
  kept them would inflate the within-set similarity by duplicates). At counts of ones this is exactly
  torch-fidelity's KID when its subset size is the set size, and exactly CMMD;
* precision and recall (`mean_statistic` of per-image indicators): precision is the share of generated
  images inside the reference manifold and is resampled over generated images with the reference fixed;
  recall the share of reference images inside the generated manifold, resampled over reference images
  with the generated set fixed. A resample with replacement cannot be fed to the k-NN radii themselves:
  a duplicated image is its own nearest neighbour and its radius collapses.
"""

from __future__ import annotations

import numpy as np
import torch

from clipvqd.device import torch_threads
from clipvqd.evaluation.bootstrap import Statistic


def ratio_statistic(numerators, denominators) -> Statistic:
    """sum(count * numerator) / sum(count * denominator) over the units of each resample."""
    numerators = np.asarray(numerators, dtype=np.float64)
    denominators = np.asarray(denominators, dtype=np.float64)
    if numerators.shape != denominators.shape or numerators.ndim != 1:
        raise ValueError(f"numerators {numerators.shape} and denominators {denominators.shape} must be equal 1-d")
    if (denominators <= 0).any():
        raise ValueError("every unit needs a positive denominator (a count of scores)")

    def statistic(counts: np.ndarray) -> np.ndarray:
        counts = np.asarray(counts, dtype=np.float64)
        return (counts @ numerators) / (counts @ denominators)

    return statistic


def mean_statistic(values) -> Statistic:
    values = np.asarray(values, dtype=np.float64)
    return ratio_statistic(values, np.ones_like(values))


def polynomial_gram(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """KID's kernel as torch-fidelity computes it: (x . y / d + 1)^3."""
    x, y = x.to(torch.float64), y.to(torch.float64)
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd_statistic(k_xx, k_yy, k_xy, scale: float = 1.0) -> Statistic:
    """Unbiased MMD^2 (times `scale`) of resamples of paired units: unit i is (x_i, y_i)."""
    k_xx, k_yy, k_xy = (np.asarray(k, dtype=np.float64) for k in (k_xx, k_yy, k_xy))
    diag_x, diag_y = np.diagonal(k_xx), np.diagonal(k_yy)

    def statistic(counts: np.ndarray) -> np.ndarray:
        c = np.asarray(counts, dtype=np.float64)
        total, squares = c.sum(axis=1), (c * c).sum(axis=1)
        pairs = total ** 2 - squares  # ordered pairs of distinct draws that are not copies of one unit
        within_x = (((c @ k_xx) * c).sum(axis=1) - (c * c) @ diag_x) / pairs
        within_y = (((c @ k_yy) * c).sum(axis=1) - (c * c) @ diag_y) / pairs
        cross = ((c @ k_xy) * c).sum(axis=1) / total ** 2
        return scale * (within_x + within_y - 2.0 * cross)

    statistic.min_distinct_units = 2  # one image drawn n times has no pair of distinct draws (bootstrap.py)
    return statistic


_FID_CHUNK = 32  # resamples per batch: the (chunk, n, d) weighted copy of a feature set stays small


def _weighted_factors(features: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Frequency-weighted mean (m, d) and a factor F (m, n, d) of the covariance, F^T F = np.cov(fweights=counts)
    (which divides by sum - 1): the centred features, each row scaled by sqrt(count / (sum - 1))."""
    total = counts.sum(dim=1, keepdim=True)
    mean = counts @ features / total
    return mean, (features[None] - mean[:, None, :]) * (counts / (total - 1.0)).sqrt()[:, :, None]


def _trace_sqrt_product(factor_a: torch.Tensor, factor_b: torch.Tensor) -> torch.Tensor:
    """tr sqrt(A B) for the covariances A = Fa^T Fa and B = Fb^T Fb, from their (m, n, d) factors.

    n <= d (fewer images than feature dimensions, e.g. a few hundred 2048-d Inception features): the sum of
    the singular values of the n x n matrix Fa Fb^T, since the non-zero eigenvalues of A B are those of
    Fa Fb^T Fb Fa^T. Exact, and no d x d matrix is formed: with 2048-d Inception features of 4 images the
    d x d route took 2.2 CPU-seconds a resample (measured, one thread), so a metrics job's 1000-resample
    interval over half an hour of one core, this one under a millisecond. n > d: through the symmetric
    A^1/2 B A^1/2 (same eigenvalues as A B, which torch-fidelity decomposes directly; symmetric eigensolvers
    are several times cheaper). Eigenvalues that round below zero count as zero, as the real part of
    torch-fidelity's complex square root does."""
    if factor_a.shape[1] <= factor_a.shape[2]:
        return torch.linalg.svdvals(factor_a @ factor_b.transpose(1, 2)).sum(dim=1)
    cov_a, cov_b = (factor.transpose(1, 2) @ factor for factor in (factor_a, factor_b))
    values, vectors = torch.linalg.eigh(cov_a)
    root = (vectors * values.clamp_min(0).sqrt()[:, None, :]) @ vectors.transpose(1, 2)
    return torch.linalg.eigvalsh(root @ cov_b @ root).clamp_min(0).sqrt().sum(dim=1)


def fid_statistic(generated, reference) -> Statistic:
    """FID of resamples of paired units (generated_i, reference_i): torch-fidelity's formula in float64."""
    generated = torch.as_tensor(np.asarray(generated), dtype=torch.float64)
    reference = torch.as_tensor(np.asarray(reference), dtype=torch.float64)
    if generated.shape != reference.shape:
        raise ValueError(f"paired FID needs equal shapes, got {tuple(generated.shape)} and {tuple(reference.shape)}")

    def chunk(c: torch.Tensor) -> torch.Tensor:
        mean_g, factor_g = _weighted_factors(generated, c)
        mean_r, factor_r = _weighted_factors(reference, c)
        difference = ((mean_g - mean_r) ** 2).sum(dim=1)
        traces = factor_g.square().sum(dim=(1, 2)) + factor_r.square().sum(dim=(1, 2))  # tr F^T F
        return difference + traces - 2.0 * _trace_sqrt_product(factor_g, factor_r)

    def statistic(counts: np.ndarray) -> np.ndarray:
        c = torch.as_tensor(np.asarray(counts), dtype=torch.float64)
        # Batched small eigendecompositions on one thread: with two, torch spent 40x the CPU time (measured:
        # 256 FID resamples of 1000 x 128 features, 36 CPU-seconds on two threads, 0.9 on one).
        with torch_threads(1):
            return torch.cat([chunk(c[i:i + _FID_CHUNK]) for i in range(0, len(c), _FID_CHUNK)]).numpy()

    return statistic


def precision_recall_indicators(generated, reference, neighborhood: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Per-image indicators behind torch-fidelity's precision and recall (Kynkäänniemi et al. 2019):
    precision_i: generated image i lies within the k-NN radius of some reference image; recall_j:
    reference image j lies within the k-NN radius of some generated image. Their means are the metrics."""
    generated = torch.as_tensor(np.asarray(generated), dtype=torch.float32)
    reference = torch.as_tensor(np.asarray(reference), dtype=torch.float32)
    radius_generated = torch.cdist(generated, generated).kthvalue(neighborhood + 1, dim=1).values
    radius_reference = torch.cdist(reference, reference).kthvalue(neighborhood + 1, dim=1).values
    reference_to_generated = torch.cdist(reference, generated)
    recall = (reference_to_generated <= radius_generated[None, :]).any(dim=1)
    precision = (reference_to_generated.T <= radius_reference[None, :]).any(dim=1)
    return precision.numpy().astype(np.float64), recall.numpy().astype(np.float64)


__all__ = [
    "fid_statistic",
    "mean_statistic",
    "mmd_statistic",
    "polynomial_gram",
    "precision_recall_indicators",
    "ratio_statistic",
]
