"""Confidence intervals and the two-sample Kolmogorov-Smirnov test, in numpy (no scipy dependency).

- `bootstrap_ci`: percentile bootstrap 95% interval of a (weighted) mean. The resampled unit is one entry
  of `values` (callers say what it is: an edit in independent mode, a fact in batch/sequential mode);
  units are drawn with replacement, B replicates, from `numpy.random.default_rng(seed)`: same inputs and
  seed, same interval.
- `hierarchical_bootstrap_ci`: the same interval pooled over several runs that differ only in their seeds
  (graph, pretraining, edit selection, method): a two-level percentile bootstrap that draws seeds with
  replacement, then units with replacement within each drawn seed, so the interval carries the spread
  between seeds as well as the spread between units of one seed.
- `ks_2samp`: D = sup_x |F_a(x) - F_b(x)| over the two empirical CDFs and its two-sided p-value
  P(D >= d_observed) under H0 (both samples from one continuous distribution). Exact by counting lattice
  paths (Hodges 1958) when n*m is small enough, otherwise Kolmogorov's limiting distribution at
  sqrt(n m / (n + m)) * D. Ties make the exact p-value conservative (the null assumes none).
Forget quality (TOFU) is `ks_2samp(unlearned, oracle).pvalue` on per-fact answer log-probabilities.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

# Exact p-values cost O(n*m) work; beyond this the asymptotic series is accurate to ~1e-3 or better.
EXACT_MAX_CELLS = 4_000_000


def bootstrap_ci(values, weights=None, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                 chunk: int = 64) -> tuple[float, float]:
  """Percentile bootstrap interval of sum(w v) / sum(w), resampling the entries (units) with replacement.

  NaN values and zero weights are dropped first (a unit with no measurement is not a unit). Returns
  (nan, nan) with no unit left. With weights, the statistic is the ratio estimator (e.g. per-edit
  accuracies weighted by their number of facts: the pooled accuracy), resampled by whole units.
  """
  v = np.asarray(values, np.float64).ravel()
  w = np.ones_like(v) if weights is None else np.asarray(weights, np.float64).ravel()
  keep = np.isfinite(v) & (w > 0)
  v, w = v[keep], w[keep]
  n = v.size
  if n == 0:
    return (math.nan, math.nan)
  rng = np.random.default_rng(seed)
  stats = np.empty(n_boot)
  wv = w * v
  # Replicates in chunks: [chunk, n] indices at a time bounds memory for 100k-fact splits.
  for start in range(0, n_boot, chunk):
    b = min(chunk, n_boot - start)
    idx = rng.integers(0, n, size=(b, n))
    stats[start:start + b] = wv[idx].sum(1) / w[idx].sum(1)
  alpha = (1.0 - level) / 2.0
  low, high = np.quantile(stats, [alpha, 1.0 - alpha])
  return (float(low), float(high))


def _units(values, weights):
  """(values, weights) as float64 with NaN values and non-positive weights dropped."""
  v = np.asarray(values, np.float64).ravel()
  w = np.ones_like(v) if weights is None else np.asarray(weights, np.float64).ravel()
  if w.shape != v.shape:
    raise ValueError(f"weights must have one entry per value, got {w.shape} for {v.shape}")
  keep = np.isfinite(v) & (w > 0)
  return v[keep], w[keep]


def hierarchical_bootstrap_ci(values_per_seed: Sequence[np.ndarray],
                              weights_per_seed: Sequence[np.ndarray] | None = None, *,
                              num_resamples: int = 1000, seed: int = 0,
                              level: float = 0.95) -> tuple[float, float, float]:
  """(pooled weighted mean, low, high): percentile bootstrap over seeds, then units within each seed.

  values_per_seed[k]: the per-unit values (edits or facts) of the run with the k-th seed; weights likewise
  (default 1). The statistic is the ratio sum(w v) / sum(w) over every unit of every seed: a replicate
  draws K of the K seeds with replacement and, for each draw independently, n_k of that seed's n_k units
  with replacement. NaN values and non-positive weights are dropped first; a seed with no unit left is not
  a seed. With one seed this is the ordinary unit bootstrap; (nan, nan, nan) with no unit at all. Same
  inputs and seed, same interval.
  """
  if weights_per_seed is not None and len(weights_per_seed) != len(values_per_seed):
    raise ValueError(f"weights_per_seed must have one array per seed ({len(values_per_seed)}), got "
                     f"{len(weights_per_seed)}")
  groups = [_units(v, None if weights_per_seed is None else weights_per_seed[k])
            for k, v in enumerate(values_per_seed)]
  groups = [(v, w) for v, w in groups if v.size]
  if not groups:
    return (math.nan, math.nan, math.nan)
  point = float(sum((w * v).sum() for v, w in groups) / sum(w.sum() for _, w in groups))
  K, B = len(groups), int(num_resamples)
  rng = np.random.default_rng(seed)
  drawn_BxK = rng.integers(0, K, size=(B, K))
  num_B, den_B = np.zeros(B), np.zeros(B)
  for k, (v, w) in enumerate(groups):
    # Every time seed k is drawn (in any replicate) gets its own resample of k's units.
    replicate_D = np.nonzero(drawn_BxK == k)[0]
    wv, n = w * v, v.size
    chunk = max(1, 2_000_000 // n)  # [chunk, n] indices at a time bounds memory for 100k-fact splits
    for start in range(0, replicate_D.size, chunk):
      rows = replicate_D[start:start + chunk]
      idx = rng.integers(0, n, size=(rows.size, n))
      np.add.at(num_B, rows, wv[idx].sum(1))
      np.add.at(den_B, rows, w[idx].sum(1))
  alpha = (1.0 - level) / 2.0
  low, high = np.quantile(num_B / den_B, [alpha, 1.0 - alpha])
  return (point, float(low), float(high))


@dataclasses.dataclass(frozen=True)
class KSResult:
  statistic: float
  pvalue: float
  method: str  # "exact" or "asymptotic"


def ks_statistic(a, b) -> float:
  """sup_x |F_a(x) - F_b(x)|: the CDFs are step functions, so the sup is attained at a sample point."""
  a, b = np.sort(np.asarray(a, np.float64)), np.sort(np.asarray(b, np.float64))
  x = np.concatenate([a, b])
  fa = np.searchsorted(a, x, side="right") / a.size
  fb = np.searchsorted(b, x, side="right") / b.size
  return float(np.max(np.abs(fa - fb)))


def kolmogorov_sf(lam: float, terms: int = 100) -> float:
  """P(K > lam) for Kolmogorov's limiting distribution: 2 sum_{k>=1} (-1)^(k-1) exp(-2 k^2 lam^2)."""
  if lam <= 0:
    return 1.0
  if lam < 0.2:  # the alternating series converges slowly there; the value is 1 to double precision
    return 1.0
  k = np.arange(1, terms + 1, dtype=np.float64)
  s = 2.0 * np.sum((-1.0) ** (k - 1) * np.exp(-2.0 * k * k * lam * lam))
  return float(min(max(s, 0.0), 1.0))


def _exact_sf(n: int, m: int, d_int: int) -> float:
  """P(D >= d) with d = d_int / (n m) exactly: 1 - P(every lattice path point has |i m - j n| < d_int).

  A uniformly random path from (0, 0) to (n, m) (i steps of the first sample, j of the second, all
  C(n+m, n) interleavings equally likely under H0) is a Markov chain stepping i with probability
  (n - i) / (n - i + m - j); the mass that stays inside the band is propagated one anti-diagonal
  (i + j = k) at a time, so no binomial coefficient ever overflows.
  """
  i_all = np.arange(n + 1)
  prob = np.zeros(n + 1)  # mass at (i, k - i) on the current anti-diagonal
  prob[0] = 1.0
  left_band = 0.0
  for k in range(1, n + m + 1):
    i_prev = i_all
    j_prev = (k - 1) - i_prev
    valid = (j_prev >= 0) & (j_prev <= m)
    left = np.where(valid, n - i_prev, 0).astype(np.float64)
    total = np.where(valid, (n - i_prev) + (m - j_prev), 1).astype(np.float64)
    p_i = np.where(valid, left / np.maximum(total, 1), 0.0)  # step in the first sample
    new = np.zeros(n + 1)
    new[1:] += prob[:-1] * p_i[:-1]
    new += prob * np.where(valid, 1.0 - p_i, 0.0)
    j_new = k - i_all
    on_lattice = (j_new >= 0) & (j_new <= m)
    inside = on_lattice & (np.abs(i_all * m - j_new * n) < d_int)
    # The mass leaving the band is summed as it leaves (not 1 - what stays inside), so p-values far below
    # double precision's 1e-16 keep their digits.
    left_band += float(np.sum(np.where(on_lattice & ~inside, new, 0.0)))
    prob = np.where(inside, new, 0.0)
  return float(min(max(left_band, 0.0), 1.0))


def ks_2samp(a, b, method: str = "auto") -> KSResult:
  """Two-sided two-sample KS test. method: "exact", "asymptotic" or "auto" (exact if n*m is small)."""
  a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
  if a.size == 0 or b.size == 0:
    raise ValueError("ks_2samp needs two non-empty samples")
  if method not in ("auto", "exact", "asymptotic"):
    raise ValueError(f"method must be auto, exact or asymptotic, got {method!r}")
  n, m = a.size, b.size
  d = ks_statistic(a, b)
  if method == "auto":
    method = "exact" if n * m <= EXACT_MAX_CELLS else "asymptotic"
  if method == "exact":
    d_int = int(round(d * n * m))  # D is (integer) / (n m): compare integers, no float tolerance
    return KSResult(d, _exact_sf(n, m, d_int), "exact")
  return KSResult(d, kolmogorov_sf(math.sqrt(n * m / (n + m)) * d), "asymptotic")
