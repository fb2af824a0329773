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
  compared = retrain.run(tiny_run, tmp_path / "e", tmp_path / "o", "remove", [0], 10, tmp_path / "u")
  after = json.loads((tmp_path / "u" / "summary.json").read_text())
  assert set(after) == set(before)  # the engine's split keys, nothing renamed
  for split, by_metric in before.items():
    for metric, v in by_metric.items():
      assert after[split][metric] == v  # every existing entry kept as it was
    assert after[split]["oracle_agreement"] == {**compared[split]["oracle_agreement"],
                                                "oracle": str((tmp_path / "o").absolute())}
    assert 0 <= after[split]["oracle_agreement"]["after"] <= 1
  fq = after["edited"]["forget_quality"]
  assert 0 <= fq["after"] <= 1 and fq["n"] == 4 and len(fq["per_seed"]) == 1
  assert "forget_quality" not in after["reg_data"]  # only the forget set has one
  first = (tmp_path / "u" / "summary.json").read_bytes()
  retrain.run(tiny_run, tmp_path / "e", tmp_path / "o", "remove", [0], 10, tmp_path / "u")
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
