"""stats.py against values computed independently here: brute-force KS over every threshold, the exact
null distribution by enumerating every split of the pooled sample, the Kolmogorov series in its other
(theta-function) form; bootstrap coverage on a known distribution."""

import itertools
import math

import numpy as np
import pytest

from behemoth_jax.evaluate import stats


def _brute_ks(a, b):
  # Every threshold t in the pooled sample and between: the CDFs only change at sample points.
  best = 0.0
  for t in np.concatenate([a, b, [-np.inf]]):
    best = max(best, abs(np.mean(a <= t) - np.mean(b <= t)))
  return best


@pytest.mark.parametrize("seed", range(5))
def test_ks_statistic_equals_brute_force_over_all_thresholds(seed):
  rng = np.random.default_rng(seed)
  a = rng.normal(size=rng.integers(1, 30))
  b = rng.normal(0.5, 1.3, size=rng.integers(1, 30))
  if seed == 4:  # ties inside and across the samples
    a, b = np.round(a), np.round(b)
  assert stats.ks_statistic(a, b) == pytest.approx(_brute_ks(a, b), abs=1e-12)


def _enumerated_pvalue(a, b):
  """P(D >= d_obs) over all C(n+m, n) equally likely assignments of the pooled values to the samples."""
  pooled = np.concatenate([a, b])
  n = len(a)
  d_obs = _brute_ks(a, b)
  hits = total = 0
  for pick in itertools.combinations(range(len(pooled)), n):
    mask = np.zeros(len(pooled), bool)
    mask[list(pick)] = True
    hits += _brute_ks(pooled[mask], pooled[~mask]) >= d_obs - 1e-12
    total += 1
  return hits / total


@pytest.mark.parametrize("n,m,shift", [(5, 4, 0.0), (6, 6, 1.0), (3, 8, 0.5), (7, 5, 2.0), (1, 4, 0.0)])
def test_exact_pvalue_equals_enumeration_of_every_split(n, m, shift):
  rng = np.random.default_rng(n * 10 + m)
  a, b = rng.normal(size=n), rng.normal(shift, 1, size=m)
  got = stats.ks_2samp(a, b, method="exact")
  assert got.method == "exact"
  assert got.pvalue == pytest.approx(_enumerated_pvalue(a, b), abs=1e-12)


def _kolmogorov_theta_form(lam):
  # The same limiting CDF, written as a Jacobi theta series (converges fast for small lam).
  cdf = math.sqrt(2 * math.pi) / lam * sum(math.exp(-(2 * k - 1) ** 2 * math.pi ** 2 / (8 * lam ** 2))
                                           for k in range(1, 50))
  return 1.0 - cdf


@pytest.mark.parametrize("lam", [0.3, 0.5, 0.8, 1.0, 1.36, 2.0, 3.0])
def test_asymptotic_series_equals_the_theta_form(lam):
  assert stats.kolmogorov_sf(lam) == pytest.approx(_kolmogorov_theta_form(lam), abs=1e-10)


def test_asymptotic_pvalue_is_close_to_exact_for_large_samples():
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=300), rng.normal(0.2, 1, size=250)
  exact, asym = stats.ks_2samp(a, b, "exact"), stats.ks_2samp(a, b, "asymptotic")
  assert exact.statistic == asym.statistic
  assert asym.pvalue == pytest.approx(exact.pvalue, abs=0.02)
  assert stats.ks_2samp(a, b).method == "exact"  # auto picks exact at this size


def test_ks_pvalue_is_uniform_ish_under_the_null_and_small_under_a_shift():
  rng = np.random.default_rng(1)
  ps = np.array([stats.ks_2samp(rng.normal(size=40), rng.normal(size=40)).pvalue for _ in range(200)])
  assert 0.02 <= np.mean(ps < 0.05) <= 0.09  # level 5% (discrete test: at most 5% plus sampling noise)
  assert stats.ks_2samp(rng.normal(size=40), rng.normal(1.5, 1, size=40)).pvalue < 1e-4


def test_bootstrap_ci_covers_the_true_mean_about_95_percent():
  rng = np.random.default_rng(2)
  p, n, reps = 0.3, 100, 400
  hits = 0
  for r in range(reps):
    low, high = stats.bootstrap_ci(rng.random(n) < p, n_boot=400, seed=r)
    hits += low <= p <= high
  assert 0.91 <= hits / reps <= 0.985, hits / reps


def test_bootstrap_ci_is_seeded_weighted_and_drops_missing_units():
  v = np.array([1.0, 0.0, 0.5, np.nan, 1.0])
  w = np.array([2, 1, 4, 3, 0])
  assert stats.bootstrap_ci(v, w, seed=3) == stats.bootstrap_ci(v, w, seed=3)
  low, high = stats.bootstrap_ci(v, w, n_boot=2000, seed=3)
  point = (2 * 1 + 0 + 4 * 0.5) / 7
  assert low <= point <= high and 0 <= low and high <= 1
  assert stats.bootstrap_ci(np.ones(10)) == (1.0, 1.0)
  assert all(math.isnan(x) for x in stats.bootstrap_ci([np.nan]))


def test_hierarchical_bootstrap_covers_the_true_mean_about_95_percent_across_seeds():
  """Seed means spread around mu (sd 1) and units around their seed's mean (sd 2): an interval over units
  alone ignores the seed spread and covers far less (checked here too, so the test can tell them apart)."""
  rng = np.random.default_rng(0)
  mu, reps, hits, hits_units_only = 0.5, 200, 0, 0
  for r in range(reps):
    groups = [rng.normal(rng.normal(mu, 1.0), 2.0, size=20) for _ in range(20)]
    point, low, high = stats.hierarchical_bootstrap_ci(groups, num_resamples=300, seed=r)
    assert point == pytest.approx(np.concatenate(groups).mean())
    hits += low <= mu <= high
    low1, high1 = stats.bootstrap_ci(np.concatenate(groups), n_boot=300, seed=r)
    hits_units_only += low1 <= mu <= high1
  assert 0.90 <= hits / reps <= 0.99, hits / reps
  assert hits_units_only / reps < 0.8, hits_units_only / reps


def test_hierarchical_bootstrap_weights_missing_units_and_one_seed():
  v = [np.array([1.0, 0.0, np.nan]), np.array([0.5, 1.0])]
  w = [np.array([2.0, 1.0, 5.0]), np.array([4.0, 0.0])]
  point, low, high = stats.hierarchical_bootstrap_ci(v, w, seed=1)
  assert point == pytest.approx((2 * 1.0 + 0.0 + 4 * 0.5) / 7)  # NaN and zero-weight units dropped
  assert 0 <= low <= point <= high <= 1
  assert stats.hierarchical_bootstrap_ci(v, w, seed=1) == (point, low, high)  # seeded
  assert stats.hierarchical_bootstrap_ci([np.ones(5), np.ones(3)]) == (1.0, 1.0, 1.0)
  assert all(math.isnan(x) for x in stats.hierarchical_bootstrap_ci([np.array([np.nan]), np.zeros(0)]))
  # One seed: only units are resampled, so the interval is as wide as the ordinary bootstrap's.
  x = np.random.default_rng(3).random(200) < 0.4
  _, low1, high1 = stats.hierarchical_bootstrap_ci([x], num_resamples=2000, seed=0)
  low0, high0 = stats.bootstrap_ci(x, n_boot=2000, seed=0)
  assert abs((high1 - low1) - (high0 - low0)) < 0.02
  with pytest.raises(ValueError, match="one array per seed"):
    stats.hierarchical_bootstrap_ci(v, w[:1])


def test_exact_pvalue_keeps_its_digits_far_below_double_precision():
  # Completely separated samples: P(D >= 1) = 2 / C(n + m, n) exactly (the two extreme orderings).
  for n, m in ((100, 100), (30, 50)):
    got = stats.ks_2samp(np.arange(n), np.arange(m) + 1000.0, method="exact")
    assert got.statistic == 1.0
    assert got.pvalue == pytest.approx(2 / math.comb(n + m, n), rel=1e-9)
