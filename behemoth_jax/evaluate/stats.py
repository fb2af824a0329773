"""Confidence intervals and the two-sample Kolmogorov-Smirnov test, in numpy (no scipy dependency).

- `bootstrap_ci`: percentile bootstrap 95% interval of a (weighted) mean. The resampled unit is one entry
  of `values` (callers say what it is: an edit in independent mode, a fact in batch/sequential mode);
  units are drawn with replacement, B replicates, from `numpy.random.default_rng(seed)`: same inputs and
  seed, same interval.
- `hierarchical_bootstrap_ci`: the same interval pooled over several runs that differ only in their seeds
  (graph, pretraining, edit selection, method): a two-level percentile bootstrap that draws seeds with
  replacement, then units with replacement within each drawn seed, so the interval carries the spread
  between seeds as well as the spread between units of one seed. With fewer than `MIN_SEEDS_TO_RESAMPLE`
  (5) seeds it resamples units within each seed only (every seed kept once): two seeds cannot estimate
  the spread between seeds (the two-level interval covered 57-78% of 95% there), so the interval is
  then one over units given these seeds, and the result's `interval_units` says so.
- `paired_diff_ci`: the mean difference of two arms measured on the same units (facts or edits, per seed),
  with the same bootstrap applied to the per-unit differences, so the pairing is kept.
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


# Fewer seeds than this: seeds are not resampled (see hierarchical_bootstrap_ci).
MIN_SEEDS_TO_RESAMPLE = 5
SEEDS_THEN_UNITS = "seeds, then units"


def units_within_seeds(num_seeds: int) -> str:
  """The `interval_units` of an interval that resampled units within each of `num_seeds` seeds only."""
  return f"units within each seed ({num_seeds} seed{'' if num_seeds == 1 else 's'}: too few to resample)"


class PooledInterval(tuple):
  """(point, low, high) as a plain 3-tuple (unpacks and compares as one), plus `interval_units`: what the
  bootstrap resampled, SEEDS_THEN_UNITS or units_within_seeds(K)."""

  def __new__(cls, point: float, low: float, high: float, interval_units: str):
    self = super().__new__(cls, (point, low, high))
    self.interval_units = interval_units
    return self

  def __getnewargs__(self):
    return (*self, self.interval_units)

  point = property(lambda self: self[0])
  low = property(lambda self: self[1])
  high = property(lambda self: self[2])

  def __repr__(self):
    return f"PooledInterval({self[0]!r}, {self[1]!r}, {self[2]!r}, interval_units={self.interval_units!r})"


def hierarchical_bootstrap_ci(values_per_seed: Sequence[np.ndarray],
                              weights_per_seed: Sequence[np.ndarray] | None = None, *,
                              num_resamples: int = 1000, seed=0, level: float = 0.95,
                              min_seeds: int = MIN_SEEDS_TO_RESAMPLE) -> PooledInterval:
  """(pooled weighted mean, low, high): percentile bootstrap over seeds, then units within each seed.

  values_per_seed[k]: the per-unit values (edits or facts) of the run with the k-th seed; weights likewise
  (default 1). The statistic is the ratio sum(w v) / sum(w) over every unit of every seed: a replicate
  draws K of the K seeds with replacement and, for each draw independently, n_k of that seed's n_k units
  with replacement. NaN values and non-positive weights are dropped first; a seed with no unit left is not
  a seed. With one seed this is the ordinary unit bootstrap; (nan, nan, nan) with no unit at all. Same
  inputs and seed (an int or a numpy Generator), same interval.

  With fewer than `min_seeds` seeds (default 5) the seeds are not drawn: every replicate keeps each seed
  once and resamples its n_k units (a bootstrap stratified by seed). Caveat: the spread between seeds is
  then NOT in the interval; it is an interval for the mean over these seeds' units (it covers the mean of
  these seeds' own means at the nominal rate, and a mean over all seeds only when the seeds do not differ
  systematically). Two-level resampling of 2 seeds covers neither (tests/evaluate/test_stats.py).
  The result is a 3-tuple whose `interval_units` says which scheme ran: SEEDS_THEN_UNITS or
  units_within_seeds(K). min_seeds=1 always resamples seeds (the scheme before the fallback).
  """
  if weights_per_seed is not None and len(weights_per_seed) != len(values_per_seed):
    raise ValueError(f"weights_per_seed must have one array per seed ({len(values_per_seed)}), got "
                     f"{len(weights_per_seed)}")
  groups = [_units(v, None if weights_per_seed is None else weights_per_seed[k])
            for k, v in enumerate(values_per_seed)]
  groups = [(v, w) for v, w in groups if v.size]
  if not groups:
    return PooledInterval(math.nan, math.nan, math.nan, units_within_seeds(0))
  point = float(sum((w * v).sum() for v, w in groups) / sum(w.sum() for _, w in groups))
  K, B = len(groups), int(num_resamples)
  rng = np.random.default_rng(seed)
  drawn_BxK = rng.integers(0, K, size=(B, K))  # drawn in both schemes: one seed gives the same numbers
  resample_seeds = K >= min_seeds
  if not resample_seeds:
    drawn_BxK = np.broadcast_to(np.arange(K), (B, K))  # every seed once per replicate
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
  return PooledInterval(point, float(low), float(high),
                        SEEDS_THEN_UNITS if resample_seeds else units_within_seeds(K))


def _per_seed(x) -> list[np.ndarray]:
  """A 1-D array (one seed), a 2-D array [seeds, units] or a sequence of 1-D arrays, as a list of 1-D."""
  if isinstance(x, np.ndarray) or (isinstance(x, Sequence) and x and np.isscalar(x[0])):
    arr = np.asarray(x, np.float64)
    if arr.ndim == 1:
      return [arr]
    if arr.ndim == 2:
      return list(arr)
    raise ValueError(f"expected one value per unit, per seed (1-D or 2-D), got shape {arr.shape}")
  return [np.asarray(v, np.float64).ravel() for v in x]


def paired_diff_ci(a_per_seed, b_per_seed, weights_per_seed=None, *, num_resamples: int = 1000, seed=0,
                   level: float = 0.95, min_seeds: int = MIN_SEEDS_TO_RESAMPLE) -> PooledInterval:
  """(mean of a - b, low, high): arms A and B measured on the same units, compared unit by unit.

  a_per_seed, b_per_seed: arm A's and arm B's per-unit values, aligned: a_N (one seed), a_SxN (S seeds,
  N units each) or a list of S arrays a_N_s (seeds with different numbers of units); entry [s][i] of both
  arms is the same fact (or edit) of seed s. weights_per_seed: per-unit weights shared by both arms
  (e.g. an edit's linked rows), same layout, default 1. A unit missing (NaN) in either arm is dropped
  from both. The statistic is sum(w (a - b)) / sum(w); the interval is hierarchical_bootstrap_ci of the
  per-unit differences d = a - b: seeds drawn with replacement, then units within each drawn seed, each
  draw taking a unit's A and B together (the pairing kept: what both arms share, such as how hard a fact
  is, cancels in d instead of widening the interval). Fewer than `min_seeds` seeds: units within each
  seed only, as there (result's `interval_units`). Deterministic given `seed` (an int or a Generator).
  """
  a_S, b_S = _per_seed(a_per_seed), _per_seed(b_per_seed)
  w_S = None if weights_per_seed is None else _per_seed(weights_per_seed)
  if len(a_S) != len(b_S) or any(a.shape != b.shape for a, b in zip(a_S, b_S)):
    raise ValueError(f"paired_diff_ci: both arms need the same units per seed, got "
                     f"{[a.size for a in a_S]} and {[b.size for b in b_S]}")
  if w_S is not None and (len(w_S) != len(a_S) or any(w.shape != a.shape for w, a in zip(w_S, a_S))):
    raise ValueError(f"paired_diff_ci: weights need one entry per unit per seed, got {[w.size for w in w_S]} "
                     f"for {[a.size for a in a_S]}")
  d_S = [a - b for a, b in zip(a_S, b_S)]  # NaN in either arm -> NaN -> dropped with its weight
  return hierarchical_bootstrap_ci(d_S, w_S, num_resamples=num_resamples, seed=seed, level=level,
                                   min_seeds=min_seeds)


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
