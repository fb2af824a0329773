"""Training: golden one step, determinism, checkpoints, kill-and-resume, data parallelism, the binary."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from behemoth_jax.evaluate import knowledge
from behemoth_jax.model import model
from behemoth_jax.train import checkpoint, data, metrics_log, optim, pretraining, train_step
from experiments.configs import pretrain as pretrain_configs

REPO = pathlib.Path(__file__).resolve().parents[2]
CFG = model.ModelConfig(vocab_size=64, num_layers=2, width=32, num_heads=4, max_len=32)
OPT = optim.OptimConfig(learning_rate=1e-2, warmup_steps=2, total_steps=20)
# Subprocesses: same fast-compile setting as this process, no accelerator probing.
SUBPROCESS_ENV = {**os.environ, "JAX_DISABLE_MOST_OPTIMIZATIONS": "true", "JAX_PLATFORMS": "cpu",
                  "PYTHONPATH": str(REPO)}


def _batch(seed=0, B=4, T=17):
  rng = np.random.default_rng(seed)
  return {"tokens": jnp.asarray(rng.integers(0, CFG.vocab_size, (B, T)), jnp.int32),
          "loss_mask": jnp.asarray(rng.random((B, T)) < 0.9),
          "answer_mask": jnp.asarray(rng.random((B, T)) < 0.2)}


def _setup(seed=0, devices=None):
  mesh = train_step.make_mesh(devices or jax.devices()[:1])
  opt = optim.make_optimizer(OPT)
  state = train_step.init_state(jax.random.key(seed), CFG, opt, mesh)
  return mesh, opt, state, train_step.make_train_step(CFG, opt, mesh)


def _curve(seed, steps=4):
  _, _, state, step = _setup(seed)
  out = []
  for i in range(steps):
    state, m = step(state, _batch(i))
    out.append((float(m["loss"]), float(m["grad_norm"])))
  return out, state


# Recorded from this implementation (jax 0.10.2, CPU, float32). A change to the model, the loss, the
# initialisation or the optimizer moves these; update them only for an intended change.
# Last moved by the Flax module (Linen's per-module initialisation keys draw other weights; the forward is
# bit-identical under jit to the previous pure-function one on the same weights).
GOLDEN_LOSS = 4.15450382232666
GOLDEN_GRAD_NORM = 2.0287368297576904
GOLDEN_LOSS_AFTER = 4.1540632247924805


def test_golden_one_step():
  (first, second), _ = _curve(seed=0, steps=2)
  assert first[0] == pytest.approx(GOLDEN_LOSS, rel=1e-5)
  assert first[1] == pytest.approx(GOLDEN_GRAD_NORM, rel=1e-4)
  assert second[0] == pytest.approx(GOLDEN_LOSS_AFTER, rel=1e-5)


def test_initial_loss_is_uniform_over_the_vocabulary():
  (first,), _ = _curve(seed=0, steps=1)
  assert first[0] == pytest.approx(np.log(CFG.vocab_size), rel=0.02)


def test_same_seed_same_loss_curve_and_weights():
  a, state_a = _curve(seed=3)
  b, state_b = _curve(seed=3)
  c, _ = _curve(seed=4)
  assert a == b
  for x, y in zip(jax.tree.leaves(state_a), jax.tree.leaves(state_b)):
    np.testing.assert_array_equal(x, y)
  assert a != c


def test_training_reduces_loss_on_a_repeated_batch():
  _, _, state, step = _setup()
  losses = []
  for _ in range(15):
    state, m = step(state, _batch(0))
    losses.append(float(m["loss"]))
  assert losses[-1] < 0.5 * losses[0]


def test_schedule_warms_up_then_decays():
  lr = optim.schedule(OPT)
  assert float(lr(0)) == 0.0
  assert float(lr(2)) == pytest.approx(OPT.learning_rate)
  assert float(lr(20)) == pytest.approx(OPT.learning_rate * OPT.min_lr_ratio, rel=1e-4)
  assert float(lr(10)) < OPT.learning_rate


def test_checkpoint_round_trip(tmp_path):
  mesh, opt, state, step = _setup()
  state, _ = step(state, _batch(0))
  manager = checkpoint.make_manager(tmp_path, keep=2, every=1)
  checkpoint.save(manager, 1, state)
  manager.wait_until_finished()
  restored, at = checkpoint.restore_latest(manager, train_step.abstract_state(CFG, opt, mesh))
  assert at == 1
  assert jax.tree.structure(restored) == jax.tree.structure(state)
  for x, y in zip(jax.tree.leaves(state), jax.tree.leaves(restored)):
    np.testing.assert_array_equal(x, y)
  # The restored state trains on exactly as the original does.
  _, m1 = step(state, _batch(1))
  _, m2 = step(restored, _batch(1))
  assert float(m1["loss"]) == float(m2["loss"])
  empty = checkpoint.make_manager(tmp_path / "other", keep=1, every=1)
  assert checkpoint.restore_latest(empty, train_step.abstract_state(CFG, opt, mesh)) == (None, 0)


def test_teacher_forced_exact_match_equals_greedy_decoding():
  params = model.init_params(jax.random.key(5), CFG)
  rng = np.random.default_rng(0)
  prompt = rng.integers(0, CFG.vocab_size, (6, 5)).astype(np.int32)
  tokens = jnp.asarray(prompt)
  for _ in range(2):  # greedy decode two answer tokens
    nxt = jnp.argmax(model.forward(params, tokens, CFG)[:, -1], -1)
    tokens = jnp.concatenate([tokens, nxt[:, None].astype(jnp.int32)], 1)
  answer = np.array(tokens[:, 5:])
  answer[2, 0] = (answer[2, 0] + 1) % CFG.vocab_size  # wrong first token
  answer[4, 1] = (answer[4, 1] + 1) % CFG.vocab_size  # wrong second token
  correct = np.asarray(knowledge.make_exact_match_fn(CFG)(params, prompt, answer))
  np.testing.assert_array_equal(correct, [True, True, False, True, False, True])


def test_evaluate_reports_sets_relationships_and_kinds():
  params = model.init_params(jax.random.key(5), CFG)

  class Probe:
    def __init__(self, prompt, answer, rel, kind=0):
      self.prompt_NxP, self.answer_NxA, self.relationship_N, self.kind = prompt, answer, rel, kind

    def __len__(self):
      return len(self.prompt_NxP)

  fn = knowledge.make_exact_match_fn(CFG)
  prompt = np.random.default_rng(1).integers(0, CFG.vocab_size, (5, 4)).astype(np.int32)
  greedy = np.asarray(jnp.argmax(model.forward(params, prompt, CFG)[:, -1], -1))[:, None].astype(np.int32)
  wrong = (greedy + 1) % CFG.vocab_size
  answer = np.where(np.arange(5)[:, None] < 3, greedy, wrong)
  rel = np.array([0, 1, 0, 1, 1], np.int32)
  result = knowledge.evaluate(fn, params, {"sro": Probe(prompt, answer, rel),
                                          "sro_dissenting_minority": Probe(prompt, wrong, rel)}, chunk=2)
  assert result["eval/sro/accuracy"] == pytest.approx(0.6)
  assert result["eval/sro/rel0/accuracy"] == 1.0
  assert result["eval/sro/rel1/accuracy"] == pytest.approx(1 / 3)
  assert result["eval/sro_dissenting_minority/accuracy"] == 0.0
  assert result["eval/kind/subject_object/accuracy"] == pytest.approx(0.6)  # minority sets excluded


def test_stream_sampler_is_a_pure_function_of_the_step():
  stream = np.arange(100, dtype=np.int32)
  sample = data.stream_sampler(stream, batch_size=2, seq_len=10)
  b = sample(jnp.int32(4))
  np.testing.assert_array_equal(b["tokens"], [np.arange(80, 90), np.arange(90, 100)])
  np.testing.assert_array_equal(sample(jnp.int32(5))["tokens"][0], np.arange(0, 10))  # wraps around
  assert b["loss_mask"].all() and not b["answer_mask"].any()


def test_metrics_truncate_after_drops_lines_past_the_checkpoint(tmp_path):
  path = tmp_path / "m.jsonl"
  w = metrics_log.JsonlWriter(path)
  for s in (5, 10, 15):
    w.write({"step": s, "loss": 1.0})
  w.close()
  with open(path, "a") as f:
    f.write('{"step": 20, "lo')  # a line cut by a hard kill
  metrics_log.truncate_after(path, 10)
  assert [r["step"] for r in metrics_log.read_jsonl(path)] == [5, 10]


def test_four_fake_devices_match_one_device():
  script = textwrap.dedent("""
      import jax, numpy as np
      from tests.train import test_train as t
      assert len(jax.devices()) == 4
      out = []
      for devices in (jax.devices()[:1], jax.devices()):
        mesh, opt, state, step = t._setup(devices=devices)
        batch = jax.device_put(t._batch(0, B=8), t.train_step.batch_sharding(mesh))
        state, m = step(state, batch)
        state, m2 = step(state, jax.device_put(t._batch(1, B=8), t.train_step.batch_sharding(mesh)))
        out.append((float(m["loss"]), float(m["grad_norm"]), float(m2["loss"]),
                    np.asarray(state["params"]["head"]["kernel"])))
      (a, b) = out
      np.testing.assert_allclose(a[:3], b[:3], rtol=1e-5)
      np.testing.assert_allclose(a[3], b[3], rtol=1e-4, atol=1e-6)
      print("ok", a[:3], b[:3], len(b[3].devices()) if hasattr(b[3], "devices") else "")
  """)
  env = {**SUBPROCESS_ENV, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
  r = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True, text=True,
                     timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "ok" in r.stdout


def test_batch_is_sharded_over_the_mesh():
  script = textwrap.dedent("""
      import jax, jax.numpy as jnp
      from behemoth_jax.train import data, train_step
      mesh = train_step.make_mesh()
      sample = data.sharded_sampler(data.stream_sampler(jnp.arange(400), 8, 10), train_step.batch_sharding(mesh))
      b = sample(0)["tokens"]
      print(sorted(s.data.shape for s in b.addressable_shards))
  """)
  env = {**SUBPROCESS_ENV, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
  r = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True, text=True,
                     timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]
  assert r.stdout.strip() == "[(2, 10), (2, 10), (2, 10), (2, 10)]"


# ---------------------------------------------------------------------------------------------------
# The binary and the trainer loop on the `tiny` config.


def _tiny(**overrides):
  c = pretrain_configs.get_config("tiny")
  c.progress = False
  for k, v in overrides.items():
    c[k] = v
  return c


def _pretrain_cmd(workdir, *overrides):
  return [sys.executable, "-m", "experiments.pretrain",
          "--config=experiments/configs/pretrain.py:tiny", f"--workdir={workdir}",
          "--config.progress=False", *overrides]


def _final_params(workdir, config):
  ds = pretraining.load_dataset(config)
  cfg = pretraining.model_config(config, ds.vocab.size)
  opt = optim.make_optimizer(pretraining.optim_config(config))
  mesh = train_step.make_mesh(jax.devices()[:1])
  manager = checkpoint.make_manager(workdir, 2, 1)
  state, step = checkpoint.restore_latest(manager, train_step.abstract_state(cfg, opt, mesh))
  manager.close()
  return step, state


def test_trainer_writes_metrics_evals_config_and_resumes_finished(tmp_path):
  summary = pretraining.run(_tiny(), tmp_path)
  records = metrics_log.read_jsonl(tmp_path / "metrics.jsonl")
  train_lines = [r for r in records if "loss" in r]
  assert [r["step"] for r in train_lines] == list(range(5, 41, 5))
  for r in train_lines:
    assert {"loss", "learning_rate", "grad_norm", "tokens_per_s", "mfu"} <= set(r)
  assert "compile_s" in train_lines[0]
  evals = [r for r in records if "eval/sro/accuracy" in r]
  assert [r["step"] for r in evals] == [20, 40]
  assert 0.0 <= evals[-1]["eval/sro/accuracy"] <= 1.0
  assert "eval/sro/rel1/accuracy" in evals[-1]
  assert json.loads((tmp_path / "config.json").read_text())["resolved"]["vocab_size"] > 0
  assert summary["step"] == 40
  assert pretraining.run(_tiny(), tmp_path) == summary  # finished: a restart does nothing
  assert len(metrics_log.read_jsonl(tmp_path / "metrics.jsonl")) == len(records)


def test_target_accuracy_stops_the_run(tmp_path):
  summary = pretraining.run(_tiny(target_accuracy=0.001, stop_metrics="eval/sro/accuracy",
                              eval_every=5, learning_rate=1e-2, total_steps=400), tmp_path)
  # The first evaluation that reaches the target ends the run, with a checkpoint there.
  assert summary["reached_target"] and summary["step"] < 400
  assert summary["step"] % 5 == 0
  assert (tmp_path / "checkpoints" / str(summary["step"])).exists()


def test_nonfinite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
  make = train_step.make_train_step

  def poisoned(*args, **kwargs):
    step = make(*args, **kwargs)

    def run(state, batch):
      new, m = step(state, batch)
      bad = new["step"] >= 13
      return new, {**m, "loss": jnp.where(bad, jnp.nan, m["loss"])}

    return run

  monkeypatch.setattr(train_step, "make_train_step", poisoned)
  with pytest.raises(pretraining.NonFiniteLossError, match="step 13.*last good checkpoint is step 10"):
    pretraining.run(_tiny(checkpoint_every=5, keep_checkpoints=5), tmp_path)
  steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
  assert steps == [5, 10]


def test_invalid_option_is_one_line_naming_it(tmp_path):
  r = subprocess.run(_pretrain_cmd(tmp_path / "run", "--config.seq_len=1"), cwd=REPO, env=SUBPROCESS_ENV,
                     capture_output=True, text=True, timeout=300)
  assert r.returncode != 0
  assert r.stderr.strip().splitlines()[-1] == "error: --config.seq_len: must be >= 2, got 1"
  assert not tmp_path.joinpath("run").exists()


def test_unparsable_flag_is_one_line(tmp_path):
  r = subprocess.run(_pretrain_cmd(tmp_path / "run", "--config.batch_size=abc"), cwd=REPO, env=SUBPROCESS_ENV,
                     capture_output=True, text=True, timeout=300)
  assert r.returncode != 0
  lines = r.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: flag --config.batch_size=abc")
  assert not tmp_path.joinpath("run").exists()


@pytest.mark.parametrize("field,value,option", [
    ("num_subjects", 0, "--config.data.graph.num_subjects"),
    ("questions_entity_frac", 1.5, "--config.data.graph.questions_entity_frac"),
])
def test_invalid_data_option_names_the_config_field(tmp_path, field, value, option):
  config = _tiny()
  config.data.graph[field] = value
  with pytest.raises(ValueError) as e:
    pretraining.run(config, tmp_path / "run")
  assert str(e.value).startswith(option + ":") and "\n" not in str(e.value)
  assert not (tmp_path / "run").exists()


def test_invalid_corpus_option_names_the_config_field(tmp_path):
  config = _tiny()
  config.data.corpus.repeats = 0
  with pytest.raises(ValueError, match=r"^--config\.data\.corpus\.repeats: must be an integer >= 1"):
    pretraining.run(config, tmp_path / "run")


def test_biography_rows_must_hold_a_whole_biography(tmp_path):
  config = _tiny()
  config.data.corpus.shuffle = False
  config.data.graph.num_relationships = 4  # 4 sentences of 12 tokens + end-of-text > seq_len 33
  with pytest.raises(ValueError, match=r"^--config\.seq_len: must be >= \d+ in biography mode"):
    pretraining.run(config, tmp_path / "run")
  assert not (tmp_path / "run").exists()


def test_invalid_model_option_leaves_no_work_dir(tmp_path):
  config = _tiny()
  config.model.num_heads = 3
  with pytest.raises(ValueError, match="num_heads=3"):
    pretraining.run(config, tmp_path / "run")
  assert not (tmp_path / "run").exists()


def test_sigkill_and_restart_gives_the_same_weights(tmp_path):
  overrides = ["--config.total_steps=400", "--config.checkpoint_every=25", "--config.eval_every=1000",
               "--config.log_every=25", "--config.warmup_steps=20"]
  config = _tiny(total_steps=400, checkpoint_every=25, eval_every=1000, log_every=25, warmup_steps=20)

  killed = tmp_path / "killed"
  p = subprocess.Popen(_pretrain_cmd(killed, *overrides), cwd=REPO, env=SUBPROCESS_ENV,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 240
  ckpt = killed / "checkpoints"
  while time.time() < deadline and p.poll() is None:
    done = [d for d in ckpt.iterdir() if d.name.isdigit()] if ckpt.exists() else []
    if done:
      break
    time.sleep(0.01)
  p.send_signal(signal.SIGKILL)
  assert p.wait() == -signal.SIGKILL  # really killed mid-run, not finished
  killed_at = max(int(d.name) for d in ckpt.iterdir() if d.name.isdigit())
  assert killed_at < 400

  r = subprocess.run(_pretrain_cmd(killed, *overrides), cwd=REPO, env=SUBPROCESS_ENV,
                     capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]
  straight = tmp_path / "straight"
  r = subprocess.run(_pretrain_cmd(straight, *overrides), cwd=REPO, env=SUBPROCESS_ENV,
                     capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]

  (step_a, a), (step_b, b) = _final_params(killed, config), _final_params(straight, config)
  assert step_a == step_b == 400
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
  losses_a = {r["step"]: r["loss"] for r in metrics_log.read_jsonl(killed / "metrics.jsonl") if "loss" in r}
  losses_b = {r["step"]: r["loss"] for r in metrics_log.read_jsonl(straight / "metrics.jsonl") if "loss" in r}
  assert losses_a == losses_b


def test_trains_from_a_generated_dataset_and_its_text_corpus(tmp_path):
  data_dir = tmp_path / "data"
  r = subprocess.run([sys.executable, "-m", "data_gen.generate", f"--output_dir={data_dir}",
                      "--subjects=20", "--relationships=2", "--objects=4", "--repeats=5", "--seed=1"],
                     cwd=REPO, env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]
  config = _tiny(total_steps=6, eval_every=6, checkpoint_every=6, log_every=3)
  config.data.dir = str(data_dir)
  config.data.corpus_dir = str(data_dir)
  summary = pretraining.run(config, tmp_path / "run")
  assert summary["step"] == 6
  resolved = json.loads((tmp_path / "run" / "config.json").read_text())
  assert resolved["data"]["corpus_dir"] == str(data_dir)
  # The vocabulary comes from the generated dataset, not from the config's graph defaults.
  from data_gen.world import dataset
  assert resolved["resolved"]["vocab_size"] == dataset.load(data_dir).vocab.size
  losses = [r["loss"] for r in metrics_log.read_jsonl(tmp_path / "run" / "metrics.jsonl") if "loss" in r]
  assert len(losses) == 2 and all(np.isfinite(losses))


@pytest.mark.parametrize("graph,corpus,expected", [
    # Q/A as the original: questions_frac (default 0) sets how many questions a Q/A subject's facts get.
    (dict(minority_position_entity_frac=0.25, questions_entity_frac=0.5), dict(questions_frac=0.5),
     ["sro", "sro_dissenting_majority", "sro_dissenting_minority", "question_trained", "question_heldout",
      "kind/subject_object"]),
    (dict(num_nested_objects=4), {}, ["sro", "sro_subject_nested", "sro_object_nested", "kind/subject_nested",
                                      "kind/object_nested"]),
])
def test_every_probe_kind_is_evaluated(tmp_path, graph, corpus, expected):
  config = _tiny(total_steps=2, warmup_steps=1, eval_every=2, checkpoint_every=2, log_every=1)
  for k, v in graph.items():
    config.data.graph[k] = v
  for k, v in corpus.items():
    config.data.corpus[k] = v
  summary = pretraining.run(config, tmp_path)
  for name in expected:
    assert f"eval/{name}/accuracy" in summary, sorted(summary)


@pytest.mark.slow
def test_small_config_learns_its_facts(tmp_path):
  """The README claim: the small config reaches 99% exact match on its training facts (CPU, minutes)."""
  config = pretrain_configs.get_config("small")
  config.progress = False
  summary = pretraining.run(config, tmp_path)
  assert summary["reached_target"]
  assert summary["eval/sro/accuracy"] >= 0.99
