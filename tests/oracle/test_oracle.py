"""The retrain oracle's dataset: the edited world with the same seed and mixture otherwise."""

import numpy as np
import pytest

from behemoth_jax.train import pretraining
from data_gen.edit_sets.edited_graph import edited_dataset, edited_facts
from data_gen.edit_sets.edits import EditConfig, build_edit_set
from data_gen.world import dataset as dataset_lib
from experiments.configs import pretrain as pretrain_configs


@pytest.fixture(scope="module")
def tiny():
  ds = pretraining.load_dataset(pretrain_configs.get_config("tiny"))
  return ds, build_edit_set(ds.graph, EditConfig(num_ft_overrides=4), seed=0)


def _fact_docs(ds, tokens, head, rel):
  """Documents (one sentence each) that state (head, rel): they hold the subject's and the relation's token."""
  s_tok = ds.vocab.subjects.tokens(head)[:, 0]
  r_tok = ds.vocab.relationships.start + rel
  hit = np.zeros(len(tokens), bool)
  for s, r in zip(s_tok, r_tok):
    hit |= (tokens == s).any(1) & (tokens == r).any(1)
  return hit


def test_remove_drops_exactly_the_edited_facts_sentences(tiny, tmp_path):
  ds, es = tiny
  head, rel, _ = edited_facts(es)
  assert len(head) == 4
  gone = edited_dataset(ds, es, "remove")
  n = ds.num_documents
  assert gone.num_documents == n  # same layout and order: only the removed facts' documents are empty
  old, old_len = ds.documents(0, n)
  new, new_len = gone.documents(0, n)
  hit = _fact_docs(ds, old, head, rel)
  assert hit.sum() == 4 * ds.corpus.repeats  # every pass states each fact once
  assert (new_len[hit] == 0).all()
  np.testing.assert_array_equal(new[~hit], old[~hit])
  np.testing.assert_array_equal(new_len[~hit], old_len[~hit])
  # The native form keeps the removal (what the oracle's trainer loads with data.dir).
  gone.save_native(tmp_path)
  back = dataset_lib.load(tmp_path)
  np.testing.assert_array_equal(back.removed_SxR, gone.removed_SxR)
  np.testing.assert_array_equal(back.documents(0, 200)[0], new[:200])


def test_remap_states_the_new_values_and_changes_nothing_else(tiny):
  ds, es = tiny
  head, rel, after = edited_facts(es)
  moved = edited_dataset(ds, es, "remap")
  expected = ds.graph.objects_SxR.copy()
  expected[head, rel] = after
  np.testing.assert_array_equal(moved.graph.objects_SxR, expected)
  n = ds.num_documents
  old, _ = ds.documents(0, n)
  new, _ = moved.documents(0, n)
  hit = _fact_docs(ds, old, head, rel)
  np.testing.assert_array_equal(new[~hit], old[~hit])
  for h, r, a in zip(head, rel, after):
    docs = new[_fact_docs(ds, old, np.array([h]), np.array([r]))]
    value = ds.vocab.objects(int(r)).tokens(a)[0]
    assert (docs == value).any(1).all()  # every sentence of the fact says the new value


def test_unknown_mode_is_refused(tiny):
  with pytest.raises(ValueError, match="mode must be one of remap, remove"):
    edited_dataset(*tiny, "forget")


@pytest.mark.slow
def test_oracle_without_the_forgotten_facts_answers_them_at_chance_and_keeps_the_rest(tiny, tmp_path):
  """Tiny config (~1 min on 2 cores): pretrain, then retrain from scratch without 4 facts."""
  import json
  from behemoth_jax.oracle import retrain
  from data_gen.edit_sets import edit_files
  ds, es = tiny
  config = pretrain_configs.get_config("tiny")
  config.progress, config.total_steps, config.learning_rate = False, 300, 1e-2
  config.eval_every = config.checkpoint_every = 300
  pretraining.run(config, tmp_path / "w")
  edit_files.write_edit_set(tmp_path / "e", es, ds.vocab)
  summary = retrain.run(tmp_path / "w", tmp_path / "e", tmp_path / "o", "remove", [0], 300)
  chance = 1 / ds.graph.num_objects
  forget = summary["edited"]
  # Never seen: the old answers are not recalled (4 facts: 0 or 1 hit by luck; chance is 1/8).
  assert forget["oracle_exact_match_old"]["after"] <= 0.25
  assert forget["oracle_exact_match"]["after"] <= 0.5
  assert summary["reg_data"]["oracle_exact_match"]["after"] >= 0.9  # the other facts are kept
  assert summary["with_same_rel"]["oracle_exact_match"]["after"] >= 0.9
  fq = forget["forget_quality"]
  assert 0 <= fq["after"] <= 1 and fq["method"] == "exact" and fq["n"] == 4
  assert fq["perturbed"] == 5 and fq["paraphrase_template"] == "remapping" and "truth ratio" in fq["definition"]
  assert forget["forget_quality_logprob"]["n"] == 4 and "oracle_vs_oracle" not in fq  # one oracle seed
  run = json.loads((tmp_path / "o" / "run.json").read_text())
  assert run["pretrained_steps"] == run["oracle_steps"] == run["trained_steps"]["0"] == 300
  assert json.loads((tmp_path / "o" / "summary.json").read_text()) == summary
  assert chance == 0.125


def _fake_runs(root):
  """An edit run, an oracle run and a pretraining run as their binaries leave them (only what report reads)."""
  import json
  entry = lambda b, a, unit: {"before": b, "after": a, "n": 4, "before_ci": [b, b], "after_ci": [a - 0.1, a],  # noqa: E731
                              "ci_unit": unit}
  runs = []
  for i, rank in enumerate((1, 4)):
    e = root / f"edit{i}"
    e.mkdir()
    (e / "config.json").write_text(json.dumps({"seed": 0, "edit_set_seed": 0, "rank": rank}))
    (e / "run.json").write_text(json.dumps({"method": "lora", "mode": "independent", "rank": rank, "targets": "mlp_down",
                                            "num_edits": 4, "wall_s": 1.0, "device": "cpu"}))
    (e / "summary.json").write_text(json.dumps({"edited": {"exact_match": entry(0.0, 0.5 + 0.1 * i, "edit")},
                                                "reg_data": {"exact_match": entry(0.9, 0.8, "edit")}}))
    runs.append(e)
  o = root / "oracle"
  o.mkdir()
  (o / "oracle.json").write_text(json.dumps({"mode": "remove", "seeds": [0], "unlearned": ""}))
  (o / "summary.json").write_text(json.dumps({"edited/sro": {"forget_quality": {
      "after": 0.03, "before": 0.03, "per_seed": [0.03], "per_seed_before": [0.03], "n": 4}}}))
  w = root / "pretrain"
  w.mkdir()
  (w / "config.json").write_text("{}")
  (w / "metrics.jsonl").write_text('{"step": 5, "loss": 3.0}\n{"step": 10, "loss": 1.0}\n'
                                   '{"step": 10, "eval/sro/accuracy": 0.9}\n')
  return runs + [o, w]


def test_report_writes_markdown_and_plots_and_the_same_bytes_twice(tmp_path):
  import subprocess
  import sys
  runs = _fake_runs(tmp_path)
  outs = []
  for name in ("r1", "r2"):
    r = subprocess.run([sys.executable, "-m", "experiments.report", "--results=" + ",".join(map(str, runs)),
                        f"--output={tmp_path / name}"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    outs.append(tmp_path / name)
  text = (outs[0] / "report.md").read_text()
  assert "| exact_match | 0.0% [0.0%, 0.0%] | 50.0% [40.0%, 50.0%] | 4 | edit |" in text
  assert "forget_quality" in text and "0.03" in text
  for png in ("efficacy_locality.png", "accuracy_rank.png", "forget_quality_2.png", "pretraining_3.png"):
    assert f"]({png})" in text
    assert (outs[0] / png).read_bytes() == (outs[1] / png).read_bytes()
  assert (outs[1] / "report.md").read_text() == text


@pytest.mark.slow
def test_oracle_writes_forget_quality_and_agreement_into_the_unlearned_runs_summary(tiny_run, tmp_path):
  """(~1 min on 2 busy cores) A tiny unlearning run (batch) and a tiny oracle (a few steps: its quality does not matter here) on one
  edit set: the run's summary.json gains the two metrics per split, keeps every key, and a rerun (which
  reuses the trained oracle) writes the same bytes."""
  import json
  from behemoth_jax.edit import runner
  from behemoth_jax.oracle import retrain
  from behemoth_jax.train import pretrained
  from data_gen.edit_sets import edit_files
  from experiments.configs import edit as edit_configs
  ds = pretraining.load_dataset(pretrained.read_config(tiny_run))
  es = build_edit_set(ds.graph, EditConfig(num_ft_overrides=4), seed=0)
  edit_files.write_edit_set(tmp_path / "e", es, ds.vocab)
  c = edit_configs.get_config("ga,tiny")
  c.mode, c.steps, c.edit_set_dir = "batch", 5, str(tmp_path / "e")
  runner.run(c, tiny_run, tmp_path / "u")
  before = json.loads((tmp_path / "u" / "summary.json").read_text())
  compared = retrain.run(tiny_run, tmp_path / "e", tmp_path / "o", "remove", [0, 1], 10, tmp_path / "u")
  after = json.loads((tmp_path / "u" / "summary.json").read_text())
  assert set(after) == set(before)  # the engine's split keys, nothing renamed
  for split, by_metric in before.items():
    for metric, v in by_metric.items():
      assert after[split][metric] == v  # every existing entry kept as it was
    assert after[split]["oracle_agreement"] == {**compared[split]["oracle_agreement"],
                                                "oracle": str((tmp_path / "o").absolute())}
    assert 0 <= after[split]["oracle_agreement"]["after"] <= 1
  for metric in ("forget_quality", "forget_quality_logprob"):
    fq = after["edited"][metric]
    assert fq == {**compared["edited"][metric], "oracle": str((tmp_path / "o").absolute())}
    assert 0 <= fq["after"] <= 1 and fq["n"] == 4 and len(fq["per_seed"]) == 2 and fq["after"] == fq["per_seed"][0]
    assert 0 <= fq["oracle_vs_oracle"] <= 1 and fq["oracle_vs_oracle_seeds"] == [0, 1] and fq["definition"]
    assert metric not in after["reg_data"]  # only the forget set has one
  run = json.loads((tmp_path / "o" / "run.json").read_text())
  assert run["oracle_steps"] == 10 and run["steps_option"] == 10 and run["pretrained_steps"] == 300
  assert run["lr_schedule_total_steps"] == 300 and run["trained_steps"] == {"0": 10, "1": 10}
  first = (tmp_path / "u" / "summary.json").read_bytes()
  retrain.run(tiny_run, tmp_path / "e", tmp_path / "o", "remove", [0, 1], 10, tmp_path / "u")
  assert (tmp_path / "u" / "summary.json").read_bytes() == first
  # The oracle's own summary (the pretrained model itself) uses the same keys.
  own = json.loads((tmp_path / "o" / "summary.json").read_text())
  assert set(own) == set(before) and own["edited"]["forget_quality"]["after"] == own["edited"]["forget_quality"]["before"]
  # A run on another edit set is refused, naming the option.
  other = build_edit_set(ds.graph, EditConfig(num_ft_overrides=4), seed=1)
  edit_files.write_edit_set(tmp_path / "e1", other, ds.vocab)
  with pytest.raises(ValueError, match="--unlearned: .* edited other facts than --edits"):
    retrain.run(tiny_run, tmp_path / "e1", tmp_path / "o1", "remove", [0], 10, tmp_path / "u")
  assert not (tmp_path / "o1").exists()


def test_truth_ratio_is_tofus_mean_perturbed_over_paraphrase_length_normalised():
  """R = mean_k P(perturbed_k)^(1/len) / P(paraphrase)^(1/len), by hand: fact 0 (2-token answers):
  perturbed 0.04, 0.16 -> 0.2, 0.4, mean 0.3; paraphrase 0.36 -> 0.6; R = 0.5. Fact 1: perturbed 0.25, 0.01
  -> 0.5, 0.1, mean 0.3; paraphrase 0.09 -> 0.3; R = 1."""
  from behemoth_jax.oracle import retrain
  r = retrain.truth_ratios(np.log([[0.04, 0.16], [0.25, 0.01]]), 2, np.log([0.36, 0.09]), 2)
  np.testing.assert_allclose(r, [0.5, 1.0], rtol=1e-12)
  # Lengths normalise each probability separately: a 1-token paraphrase of P 0.6 gives the same 0.5.
  np.testing.assert_allclose(retrain.truth_ratios(np.log([[0.04, 0.16]]), 2, np.log([0.6]), 1), [0.5], rtol=1e-12)
  # Far-apart log-probabilities stay finite (log space).
  assert np.isfinite(retrain.truth_ratios([[-2000.0, -2002.0]], 1, [-1990.0], 1)).all()


def test_perturbed_values_are_other_values_of_the_fact_relationship(tiny):
  from behemoth_jax.oracle import retrain
  v = retrain.perturbed_values([0, 7, 3], [8, 8, 8])
  np.testing.assert_array_equal(v, [[1, 2, 3, 5, 6], [0, 1, 2, 4, 5], [4, 5, 6, 0, 1]])
  assert retrain.perturbed_values([0, 1], [3, 2]).shape == (2, 1)  # K <= the smallest relationship's count - 1
  ds, es = tiny
  forget = next(s for s in es.eval if s.name == "edited")
  probes = retrain.truth_ratio_probes(forget, ds)
  N, K = len(forget), probes["k"]
  assert K == 5 and probes["template"] == "remapping"  # tiny's corpus: statements only, no questions, no inversion
  prompt = probes["prompt"].reshape(K + 1, N, -1)
  answer = probes["answer"].reshape(K + 1, N, -1)
  assert (prompt == prompt[:1]).all()  # every answer is scored after the same prompt
  np.testing.assert_array_equal(answer[0], forget.tokens(ds, answer="before")[1])  # the paraphrase: the true value
  for j in range(K):
    vals = probes["values"][:, j]
    assert (vals != forget.before).all()
    for i, (r, x) in enumerate(zip(forget.relationship, vals)):
      assert (answer[j + 1, i] == ds.vocab.objects(int(r)).tokens(int(x))[0]).any()  # row i says value x
      assert not (answer[j + 1, i] == ds.vocab.objects(int(r)).tokens(int(forget.before[i]))[0]).any()


def test_forget_quality_reports_each_oracle_seed_and_oracle_vs_oracle():
  """`after` is one KS p-value (against the first oracle seed), never the median of several."""
  from behemoth_jax.evaluate import stats
  from behemoth_jax.oracle import retrain
  compared = np.arange(10.0)
  oracles = [np.arange(10.0) + 100, np.arange(10.0) + 0.5, np.arange(10.0) + 5]
  e = retrain.ks_entry(compared, compared + 100, oracles, [3, 7, 9])
  expected = [stats.ks_2samp(compared, o).pvalue for o in oracles]
  assert e["per_seed"] == expected and e["after"] == expected[0] and e["oracle_seeds"] == [3, 7, 9]
  assert e["after"] != float(np.median(expected))
  assert e["per_seed_before"] == [stats.ks_2samp(compared + 100, o).pvalue for o in oracles]
  assert e["oracle_vs_oracle"] == stats.ks_2samp(oracles[0], oracles[1]).pvalue and e["oracle_vs_oracle_seeds"] == [3, 7]
  assert e["oracle_vs_oracle"] < 1e-4 and e["n"] == 10  # these two oracles differ
  one = retrain.ks_entry(compared, compared, oracles[:1], [0])
  assert "oracle_vs_oracle" not in one and one["per_seed"] == [one["after"]]


def test_oracle_trains_the_steps_the_pretrained_run_trained_on_its_schedule(tmp_path):
  """(tiny) A pretrained run that stops early (target accuracy reached at step 10 of 40): the default oracle
  trains 10 steps, not 40, on the 40-step learning-rate schedule, and run.json records both counts."""
  import json
  from behemoth_jax.oracle import retrain
  from behemoth_jax.train import pretrained
  from data_gen.edit_sets import edit_files
  config = pretrain_configs.get_config("tiny")
  config.progress, config.learning_rate, config.target_accuracy = False, 1e-2, 1e-3
  config.eval_every = config.checkpoint_every = config.log_every = 10
  summary = pretraining.run(config, tmp_path / "w")
  assert summary["reached_target"] and summary["step"] == 10 < config.total_steps
  ds = pretraining.load_dataset(config)
  edit_files.write_edit_set(tmp_path / "e", build_edit_set(ds.graph, EditConfig(num_ft_overrides=4), seed=0), ds.vocab)
  out = retrain.run(tmp_path / "w", tmp_path / "e", tmp_path / "o", "remove", [0], 0)
  run = json.loads((tmp_path / "o" / "run.json").read_text())
  assert run["pretrained_steps"] == run["oracle_steps"] == 10 == pretrained.latest_step(tmp_path / "o" / "seed_0")
  assert run["lr_schedule_total_steps"] == run["pretrained_total_steps"] == 40 and run["early_stop"] is False
  assert run["trained_steps"] == {"0": 10}
  lr = lambda d: {r["step"]: r["learning_rate"] for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines())  # noqa: E731
                  if "learning_rate" in r}
  assert lr(tmp_path / "o" / "seed_0") == lr(tmp_path / "w")  # the same schedule (a 10-step one decays sooner)
  fq = out["edited"]["forget_quality"]
  assert "truth ratio" in fq["definition"] and "log P" in out["edited"]["forget_quality_logprob"]["definition"]
