"""pooling.pool_runs: several edit runs that differ only in seeds, one summary with two-level intervals."""

import json
import shutil

import numpy as np
import pytest

from behemoth_jax.edit import runner
from behemoth_jax.evaluate import pooling, stats
from experiments.configs import edit as edit_configs


def _tiny_edit(tiny_run, workdir, **overrides):
  c = edit_configs.get_config("lora,tiny")
  c.save_deltas, c.num_edits, c.chunk = False, 3, 3
  for k, v in overrides.items():
    c[k] = v
  runner.run(c, tiny_run, workdir)
  return workdir


@pytest.mark.slow
def test_two_tiny_runs_with_other_seeds_pool_into_one_summary(tiny_run, tmp_path):
  """Two real tiny edit runs (~1 min on 2 busy cores; the fast tests below use the same row format)."""
  a = _tiny_edit(tiny_run, tmp_path / "a", seed=0, edit_set_seed=0)
  b = _tiny_edit(tiny_run, tmp_path / "b", seed=1, edit_set_seed=1)
  pooled = pooling.pool_runs([a, b])
  sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
  assert set(pooled) == set(sa)  # the engine's split keys
  e = pooled["edited"]["exact_match"]
  rows = [json.loads(l) for d in (a, b) for l in (d / "results.jsonl").read_text().splitlines()]
  mine = [r for r in rows if r["split"] == "edited" and r["metric"] == "exact_match" and r["template"] == "sro"]
  assert len(mine) == 6  # 3 edits per run
  w = np.array([r["n"] for r in mine], float)
  assert e["after"] == pytest.approx(np.dot(w, [r["after"] for r in mine]) / w.sum())
  assert e["n"] == sa["edited"]["exact_match"]["n"] + sb["edited"]["exact_match"]["n"]
  assert e["ci_unit"] == "edit within each seed (2 seeds: too few to resample seeds)" and e["units"] == 6
  assert e["after_ci"][0] <= e["after"] <= e["after_ci"][1]
  assert e["seeds"][0][2:] == [0, 0] and e["seeds"][1][2:] == [1, 1]  # edit-set and method seeds
  assert e["seeds"][0][:2] == e["seeds"][1][:2] == [0, 0]  # one pretrained run: same graph/pretraining seed
  assert e["runs"] == [str(a), str(b)]
  assert e["per_run_after"] == [pytest.approx(sa["edited"]["exact_match"]["after"]),
                                pytest.approx(sb["edited"]["exact_match"]["after"])]
  assert pooling.pool_runs([a, b]) == pooled  # seeded: same runs, same intervals
  # A run whose config differs in anything but seeds is refused, naming the field.
  c = tmp_path / "c"
  shutil.copytree(b, c)
  config = json.loads((c / "config.json").read_text())
  config["learning_rate"] = 0.5
  (c / "config.json").write_text(json.dumps(config))
  with pytest.raises(ValueError, match=r"differs from .* in edit.learning_rate \(only seed fields may differ"):
    pooling.pool_runs([a, c])


def _fake_batch_run(root, name, seed, edited_after, logprob_after):
  """A batch-mode run as the engine leaves it (one whole-split row per split and metric)."""
  d = root / name
  d.mkdir()
  (d / "config.json").write_text(json.dumps({"seed": seed, "edit_set_seed": 0, "mode": "batch", "pretrained": "W"}))
  rows = [{"edit": "batch", "split": "edited", "template": "sro", "metric": "exact_match", "before": 0.0,
           "after": edited_after, "n": 10},
          {"edit": "batch", "split": "edited", "template": "sro", "metric": "logprob_new", "before": -5.0,
           "after": logprob_after, "n": 10},
          {"edit": "batch", "split": "edited", "template": "qa", "metric": "exact_match", "before": 0.0,
           "after": 0.5, "n": 10}]
  (d / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  (d / "summary.json").write_text(json.dumps({"edited": {"exact_match": {"n": 10}, "logprob_new": {"n": 10}},
                                              "edited/qa": {"exact_match": {"n": 10}}}))
  return d


def test_batch_runs_pool_facts_of_01_metrics_and_only_seeds_of_continuous_ones(tmp_path):
  a = _fake_batch_run(tmp_path, "a", 0, 0.7, -1.0)
  b = _fake_batch_run(tmp_path, "b", 1, 0.9, -2.0)
  pooled = pooling.pool_runs([a, b])
  em = pooled["edited"]["exact_match"]
  assert em["after"] == pytest.approx(0.8) and em["units"] == 20
  assert em["ci_unit"] == "fact within each seed (2 seeds: too few to resample seeds)"
  # The 0/1 facts rebuilt from the counts give the interval a direct bootstrap gives (2 seeds: facts only).
  want = stats.hierarchical_bootstrap_ci([np.r_[np.ones(7), np.zeros(3)], np.r_[np.ones(9), np.zeros(1)]],
                                         num_resamples=pooling.NUM_RESAMPLES, seed=0)
  assert (em["after"], *em["after_ci"]) == pytest.approx(want)
  lp = pooled["edited"]["logprob_new"]
  # Only the runs' means: no level below, so the 2 runs are resampled and the label says it is unreliable.
  assert lp["ci_unit"] == "seed (2 seeds: too few for a reliable interval)"
  assert lp["after"] == pytest.approx(-1.5) and lp["units"] == 2
  assert -2.0 <= lp["after_ci"][0] <= lp["after_ci"][1] <= -1.0
  assert pooled["edited/qa"]["exact_match"]["after"] == pytest.approx(0.5)  # second template keyed as the engine does


def test_independent_runs_pool_edits_weighted_by_their_rows(tmp_path):
  runs = []
  for seed, afters in ((0, [1.0, 0.5]), (1, [0.0, 1.0, 1.0])):
    d = tmp_path / f"r{seed}"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"seed": seed, "edit_set_seed": seed, "mode": "independent",
                                               "pretrained": "W"}))
    rows = [{"edit": i, "split": "reg_data", "template": "sro", "metric": "exact_match", "before": 1.0,
             "after": a, "n": 2 + i} for i, a in enumerate(afters)]
    (d / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "summary.json").write_text(json.dumps({"reg_data": {"exact_match": {"n": 4}}}))
    runs.append(d)
  e = pooling.pool_runs(runs)["reg_data"]["exact_match"]
  # weights 2, 3 | 2, 3, 4: (2*1 + 3*0.5 + 0 + 3 + 4) / 14
  assert e["after"] == pytest.approx(10.5 / 14) and e["before"] == 1.0 and e["before_ci"] == [1.0, 1.0]
  assert e["ci_unit"] == "edit within each seed (2 seeds: too few to resample seeds)"
  assert e["units"] == 5 and e["n"] == 8
  assert e["seeds"] == [[None, None, 0, 0], [None, None, 1, 1]]  # no readable pretrained run here
  assert e["per_run_after"] == [pytest.approx(3.5 / 5), pytest.approx(7 / 9)]
  assert e["after_ci"][0] < e["after"] < e["after_ci"][1]


def _independent_run(root, seed, afters):
  d = root / f"r{seed}"
  d.mkdir()
  (d / "config.json").write_text(json.dumps({"seed": seed, "edit_set_seed": seed, "mode": "independent",
                                             "pretrained": "W"}))
  rows = [{"edit": i, "split": "edited", "template": "sro", "metric": "exact_match", "before": 0.0,
           "after": a, "n": 1} for i, a in enumerate(afters)]
  (d / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  (d / "summary.json").write_text(json.dumps({"edited": {"exact_match": {"n": len(afters)}}}))
  return d


def test_seeds_are_resampled_from_five_runs_and_edits_within_each_run_below(tmp_path):
  """5 runs: seeds, then edits; 2 runs: edits within each run only (the interval a two-level bootstrap of
  2 seeds gives is not it), and ci_unit says which."""
  rng = np.random.default_rng(0)
  afters = [(rng.random(8) < p).astype(float) for p in (0.2, 0.9, 0.5, 0.6, 0.3)]
  runs = [_independent_run(tmp_path, k, a) for k, a in enumerate(afters)]
  e5 = pooling.pool_runs(runs)["edited"]["exact_match"]
  assert e5["ci_unit"] == "seed, then edit"
  want = stats.hierarchical_bootstrap_ci(afters, [np.ones(8)] * 5, num_resamples=pooling.NUM_RESAMPLES, seed=0)
  assert want.interval_units == stats.SEEDS_THEN_UNITS and e5["after_ci"] == pytest.approx(want[1:])
  e2 = pooling.pool_runs(runs[:2])["edited"]["exact_match"]
  assert e2["ci_unit"] == "edit within each seed (2 seeds: too few to resample seeds)"
  within = stats.hierarchical_bootstrap_ci(afters[:2], num_resamples=pooling.NUM_RESAMPLES, seed=0)
  two_level = stats.hierarchical_bootstrap_ci(afters[:2], num_resamples=pooling.NUM_RESAMPLES, seed=0, min_seeds=1)
  assert within.interval_units == stats.units_within_seeds(2)
  assert e2["after_ci"] == pytest.approx(within[1:]) and e2["after_ci"] != pytest.approx(two_level[1:])
  assert pooling.pool_runs(runs[:1])["edited"]["exact_match"]["ci_unit"] == "edit (1 seed)"


def test_nothing_to_pool_and_unreadable_runs_are_refused(tmp_path):
  with pytest.raises(ValueError, match="at least one"):
    pooling.pool_runs([])
  (tmp_path / "x").mkdir()
  with pytest.raises(ValueError, match="not a finished edit run"):
    pooling.pool_runs([tmp_path / "x"])
