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


def _paired_arms(rng, reps, seeds, units, diff, seed_sd=1.0, diff_seed_sd=0.3):
  """reps draws of two arms on the same units: a unit's difficulty (sd 2) and its seed's level (sd seed_sd)
  are shared by both arms; the seed's own difference is N(diff, diff_seed_sd); arms add their noise (sd 0.5)."""
  shared = rng.normal(0.0, seed_sd, (reps, seeds, 1)) + rng.normal(0.0, 2.0, (reps, seeds, units))
  seed_diff = rng.normal(diff, diff_seed_sd, (reps, seeds, 1))
  a = shared + seed_diff + rng.normal(0.0, 0.5, (reps, seeds, units))
  b = shared + rng.normal(0.0, 0.5, (reps, seeds, units))
  return a, b


def test_paired_diff_covers_the_true_difference_about_95_percent_across_seeds():
  """20 seeds x 20 shared facts, arms correlated through the facts and seeds, each seed's difference off
  the true one (sd 0.3): the paired two-level interval covers the true difference about 95% of the time."""
  rng = np.random.default_rng(5)
  diff, reps = 0.3, 300
  a, b = _paired_arms(rng, reps, 20, 20, diff)
  hits = 0
  for r in range(reps):
    ci = stats.paired_diff_ci(a[r], b[r], num_resamples=300, seed=r)
    assert ci.interval_units == stats.SEEDS_THEN_UNITS
    hits += ci.low <= diff <= ci.high
  assert ci.point == pytest.approx((a[-1] - b[-1]).mean())
  assert 0.90 <= hits / reps <= 0.99, hits / reps


def test_pairing_makes_the_interval_much_narrower_when_arms_are_correlated():
  """The same 8 seeds x 50 facts in both arms: facts (sd 2) shared, arm noise 0.5, seeds alike (so only
  the facts' pairing is at stake). The paired interval is a fraction of the one that resamples each arm on
  its own (what comparing two intervals amounts to; sd 0.7 against 2.9 per fact), and still covers the
  truth. Differences of facts taken out of order (shuffled within each seed) fail this."""
  rng = np.random.default_rng(6)
  a, b = _paired_arms(rng, 1, 8, 50, 0.3, seed_sd=0.0, diff_seed_sd=0.0)
  ci = stats.paired_diff_ci(a[0], b[0], num_resamples=2000, seed=0)
  assert ci.low <= 0.3 <= ci.high
  _, low_a, high_a = stats.hierarchical_bootstrap_ci(list(a[0]), num_resamples=2000, seed=1)
  _, low_b, high_b = stats.hierarchical_bootstrap_ci(list(b[0]), num_resamples=2000, seed=2)
  unpaired_width = math.hypot(high_a - low_a, high_b - low_b)  # independent arms: widths add in quadrature
  assert (ci.high - ci.low) < 0.4 * unpaired_width, (ci.high - ci.low, unpaired_width)


def test_paired_diff_layouts_missing_units_weights_and_seeding():
  rng = np.random.default_rng(7)
  a_SxN, b_SxN = rng.random((6, 10)), rng.random((6, 10))
  got = stats.paired_diff_ci(a_SxN, b_SxN, seed=3)
  assert got == stats.paired_diff_ci(list(a_SxN), list(b_SxN), seed=3)  # 2-D array = list of seeds
  assert got == stats.paired_diff_ci(a_SxN, b_SxN, seed=3) and got.point == pytest.approx((a_SxN - b_SxN).mean())
  assert got == stats.hierarchical_bootstrap_ci(list(a_SxN - b_SxN), seed=3)  # the bootstrap of the differences
  one = stats.paired_diff_ci(a_SxN[0], b_SxN[0], seed=3)  # 1-D: one seed
  assert one.interval_units == stats.units_within_seeds(1) and one.point == pytest.approx((a_SxN[0] - b_SxN[0]).mean())
  # A unit missing in either arm is dropped from both; ragged seeds; weights shared by the arms.
  a = [np.array([1.0, np.nan, 0.0]), np.array([1.0, 1.0])]
  b = [np.array([0.0, 0.0, np.nan]), np.array([0.0, 1.0])]
  w = [np.array([2.0, 1.0, 1.0]), np.array([1.0, 3.0])]
  point, low, high = stats.paired_diff_ci(a, b, w, seed=0)
  assert point == pytest.approx((2 * 1 + 1 * 1 + 3 * 0) / 6) and low <= point <= high
  with pytest.raises(ValueError, match="same units"):
    stats.paired_diff_ci(a_SxN, b_SxN[:, :9])
  with pytest.raises(ValueError, match="one entry per unit"):
    stats.paired_diff_ci(a, b, [np.ones(3), np.ones(3)])


def test_with_two_seeds_units_are_resampled_within_each_seed_and_the_result_says_so():
  """Two seeds cannot estimate the spread between seeds. Seed means N(mu, 1), 2 seeds x 20 units N(seed
  mean, 2) (the two-level test's world with 2 seeds, 50 units each): drawing the 2 seeds with replacement
  covers mu far less than 95% (70% of these 400 draws); resampling units within each seed covers the mean
  of these two seeds' own means (what it claims, `interval_units`) about 95% (92% here, 94% over 1,500
  draws: the percentile bootstrap's small-sample shortfall), and mu as often when seeds do not differ
  systematically (92%); it does not cover mu when they do (38%: the caveat, the spread between seeds is
  not in the interval). With seeds that do not differ the two-level scheme covers mu too (97%, wider): it
  fails where the seeds differ, which two seeds cannot tell."""
  rng = np.random.default_rng(8)
  mu, reps = 0.5, 400
  seed_means = rng.normal(mu, 1.0, (reps, 2, 1))
  noise = rng.normal(0.0, 2.0, (reps, 2, 50))
  x, same = seed_means + noise, mu + noise  # seeds that differ; seeds that do not
  hits = {"two_level_mu": 0, "within_own": 0, "within_mu": 0, "within_same_mu": 0}
  for r in range(reps):
    _, lo, hi = stats.hierarchical_bootstrap_ci(list(x[r]), num_resamples=300, seed=r, min_seeds=1)
    hits["two_level_mu"] += lo <= mu <= hi
    ci = stats.hierarchical_bootstrap_ci(list(x[r]), num_resamples=300, seed=r)
    assert ci.interval_units == stats.units_within_seeds(2) == "units within each seed (2 seeds: too few to resample)"
    hits["within_own"] += ci.low <= seed_means[r].mean() <= ci.high
    hits["within_mu"] += ci.low <= mu <= ci.high
    ci = stats.hierarchical_bootstrap_ci(list(same[r]), num_resamples=300, seed=r)
    hits["within_same_mu"] += ci.low <= mu <= ci.high
  cov = {k: v / reps for k, v in hits.items()}
  assert cov["two_level_mu"] < 0.85, cov
  assert 0.90 <= cov["within_own"] <= 0.99, cov
  assert 0.90 <= cov["within_same_mu"] <= 0.99, cov
  assert cov["within_mu"] < 0.6, cov
  # Five seeds or more: seeds are resampled.
  assert stats.hierarchical_bootstrap_ci(list(x[0]) * 3, seed=0).interval_units == stats.SEEDS_THEN_UNITS
