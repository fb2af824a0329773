"""Locate-then-edit: corpus key covariance, rank-one (ROME-style), least-squares (MEMIT-style) and
null-space (AlphaEdit-style) edits."""

import dataclasses
import pathlib
import types

import jax
import numpy as np
import pytest

from behemoth_jax.edit import closed_form, covariance, runner
from behemoth_jax.model import deltas, model
from behemoth_jax.train import pretrained, pretraining
from experiments.configs import edit as edit_configs, pretrain as pretrain_configs

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_random():
  """The tiny pretraining config's dataset and a randomly initialised model of its shape (covariance
  needs no trained weights)."""
  config = pretrain_configs.get_config("tiny")
  ds = pretraining.load_dataset(config)
  m = config.model.to_dict()
  m["compute_dtype"] = "float32"
  cfg = model.ModelConfig(vocab_size=ds.vocab.size, **m)
  return model.init_params(jax.random.key(0), cfg), cfg, ds


def test_covariance_equals_a_brute_force_sum_over_every_document(tiny_random, tmp_path):
  params, cfg, ds = tiny_random
  # Brute force: every document of the corpus (not one pass per kind), keys from one forward, the sum of
  # outer products in float64 numpy.
  tokens, lengths = ds.documents(0, ds.num_documents)
  keys = np.asarray(jax.jit(lambda p, t: model.apply(p, t, cfg, head=False).mlp_key)(params, tokens)[1],
                    np.float64)
  valid = np.arange(tokens.shape[1])[None, :] < lengths[:, None]
  k = keys[valid]
  want = k.T @ k / len(k)
  got = covariance.corpus_covariance(params, cfg, ds, [1], chunk=256)[1]
  assert got.dtype == np.float64 and got.shape == (cfg.mlp_width, cfg.mlp_width)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())  # float32 keys
  # The cache returns the same matrix and is keyed by the weights.
  c1 = covariance.cached_covariance(params, cfg, ds, [1], tmp_path, chunk=256)[1]
  assert len(list(tmp_path.glob("cov_*_layer1.npy"))) == 1
  np.testing.assert_array_equal(covariance.cached_covariance(params, cfg, ds, [1], tmp_path)[1], c1)
  np.testing.assert_array_equal(c1, got)  # same chunks: the same float32 partial sums


def test_fact_covariance_is_the_mean_over_every_facts_recall_key(tiny_random):
  params, cfg, ds = tiny_random
  prompts = covariance.fact_prompts(ds)
  S, R = ds.graph.objects_SxR.shape
  assert prompts.shape[0] == S * R
  k = np.asarray(model.apply(params, prompts, cfg, head=False).mlp_key[1][:, -1], np.float64)
  got = covariance.fact_covariance(params, cfg, ds, [1], chunk=24)[1]  # 64 facts: a padded last chunk
  np.testing.assert_allclose(got, k.T @ k / len(k), rtol=1e-5, atol=1e-6 * np.abs(got).max())


def test_other_facts_covariance_is_the_mean_over_the_facts_not_edited(tiny_random):
  params, cfg, ds = tiny_random
  S, R = ds.graph.objects_SxR.shape
  prompts = covariance.fact_prompts(ds)
  k = np.asarray(model.apply(params, prompts, cfg, head=False).mlp_key[1][:, -1], np.float64)
  heads, rels = np.array([0, 3, 5]), np.array([1, 0, 1])
  edited = heads * R + rels  # fact_prompts' order: subject-major
  keys = covariance.fact_keys(params, cfg, ds, [1], heads, rels)[1]
  np.testing.assert_allclose(keys, k[edited], rtol=1e-5, atol=1e-6)
  full = covariance.fact_covariance(params, cfg, ds, [1])[1]
  others = np.delete(k, edited, axis=0)
  got = covariance.without_facts(full, keys, S * R)
  np.testing.assert_allclose(got, others.T @ others / len(others), rtol=1e-4, atol=1e-6 * np.abs(got).max())
  with pytest.raises(ValueError, match="other_facts"):
    covariance.without_facts(full, k, S * R)


def test_other_facts_covariance_of_a_run_takes_its_edited_facts_out(tiny_run):
  params, cfg, ds = pretrained.load_pretrained(tiny_run)
  c = edit_configs.get_config("memit,tiny")
  c.covariance = "other_facts"
  plan = types.SimpleNamespace(head=np.array([0, 1]), relationship=np.array([0, 0]))
  got = runner._key_covariances(c, params, cfg, ds, [0], tiny_run, plan)[0]
  full = covariance.cached_covariance(params, cfg, ds, [0], tiny_run / "key_covariance", kind="facts")[0]
  keys = covariance.fact_keys(params, cfg, ds, [0], plan.head, plan.relationship)[0]
  np.testing.assert_array_equal(got, covariance.without_facts(full, keys, ds.graph.objects_SxR.size))


# ---- rank-one edits on a model that knows its facts ----------------------------------------------------------


def _rome_config(**overrides):
  c = edit_configs.get_config("rome,tiny")
  c.save_deltas = True
  for k, v in overrides.items():
    c[k] = v
  return c


def test_rome_edits_are_rank_one_at_their_layer_and_take(tiny_run, tmp_path):
  summary = runner.run(_rome_config(), tiny_run, tmp_path / "w")
  assert summary["edited"]["exact_match"]["before"] == 0
  assert summary["edited"]["exact_match"]["after"] >= 0.75, summary["edited"]
  d = deltas.load(tmp_path / "w" / "deltas" / "chunk_000000")
  flat = deltas.flatten(d)
  assert list(flat) == ["layers/0/mlp/down/kernel"]  # the tiny config's layer 0: only its down kernel
  params, cfg, _ = pretrained.load_pretrained(tiny_run)
  leaf = flat["layers/0/mlp/down/kernel"]
  for f in range(leaf.a.shape[0]):
    dense = np.asarray(leaf.a[f] @ leaf.b[f], np.float64)
    s = np.linalg.svd(dense, compute_uv=False)
    assert s[0] > 0 and s[1] <= 1e-6 * s[0]  # rank exactly one
    one = deltas.unflatten({"layers/0/mlp/down/kernel": deltas.LowRank(a=leaf.a[f], b=leaf.b[f])})
    merged = deltas.merge(params, one)
    for p, old in deltas.flatten(params).items():
      assert (p == "layers/0/mlp/down/kernel") != bool(np.array_equal(old, deltas.flatten(merged)[p])), p
  # The corpus covariance was cached beside the pretrained run.
  assert list((tiny_run / "key_covariance").glob("cov_*_layer0.npy"))


@pytest.mark.slow  # a subprocess with 4 devices and a one-device run: ~30 s on 2 idle cores
def test_rome_edits_sharded_over_four_fake_devices_match_one(tiny_run, tmp_path):
  """Independent rank-one edits split along a `facts` mesh axis (4 fake CPU devices in a subprocess: the
  device count is fixed at jax's start) decide every greedy answer as one device does."""
  import json, os, subprocess, sys, textwrap  # pylint: disable=g-import-not-at-top,multiple-imports
  script = textwrap.dedent(f"""
      import jax
      from behemoth_jax.edit import runner
      from experiments.configs import edit as ec
      assert len(jax.devices()) == 4
      c = ec.get_config("rome,tiny"); c.save_deltas = False
      runner.run(c, {str(tiny_run)!r}, {str(tmp_path / 'four')!r})
  """)
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_DISABLE_MOST_OPTIMIZATIONS": "true", "PYTHONPATH": str(REPO),
         "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
  r = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]
  assert json.loads((tmp_path / "four" / "run.json").read_text())["sharded_over_devices"] == 4
  one = runner.run(_rome_config(save_deltas=False), tiny_run, tmp_path / "one")
  four = json.loads((tmp_path / "four" / "summary.json").read_text())
  assert one.keys() == four.keys()
  for split in one:
    for metric in ("exact_match", "exact_match_old"):
      assert one[split][metric] == four[split][metric], (split, metric)
    np.testing.assert_allclose(one[split]["logprob_new"]["after"], four[split]["logprob_new"]["after"],
                               rtol=1e-3, atol=1e-3)  # float reassociation across devices


@pytest.mark.parametrize("overrides,option", [
    ({"layer": 2}, "--config.layer"),  # the tiny model has 2 layers
    ({"layer": -2}, "--config.layer"),
    ({"lam": 0.0}, "--config.lam"),
    ({"kl_weight": -1.0}, "--config.kl_weight"),
    ({"span": 2}, "--config.span"),  # the tiny config's layer 0: no room below it
    ({"layer": -1, "span": 3}, "--config.span"),  # traced: a window of 3 in a 2-layer model
    ({"mode": "batch"}, "--config.mode"),
    ({"key_position": "last", "loss_on": "sentence"}, "--config.key_position"),
    ({"clamp_norm_factor": -1.0}, "--config.clamp_norm_factor"),
    ({"v_steps": 0}, "--config.v_steps"),
    ({"v_lr": 0.0}, "--config.v_lr"),
    ({"v_weight_decay": float("nan")}, "--config.v_weight_decay"),
    ({"v_early_stop": -1.0}, "--config.v_early_stop"),
    ({"nullspace_rule": "both"}, "--config.nullspace_rule"),
    ({"context_prefixes": -1}, "--config.context_prefixes"),
])
def test_invalid_closed_form_options_leave_no_workdir(tiny_run, tmp_path, overrides, option):
  with pytest.raises(ValueError) as e:
    runner.run(_rome_config(**overrides), tiny_run, tmp_path / "w")
  assert str(e.value).startswith(option + ":") and "\n" not in str(e.value), str(e.value)
  assert not (tmp_path / "w").exists()


# ---- the value optimisation (the reference's compute_v / compute_z) ---------------------------------------


def _value_batch(cfg, seed=0, N=3, L=10):
  """One fact's rows of random tokens: subject token at position 2, the answer predicted at L - 2."""
  rng = np.random.default_rng(seed)
  inputs = rng.integers(8, cfg.vocab_size, (N, L)).astype(np.int32)
  subject = np.int32(5)
  inputs[:, 2] = subject
  inputs[:, 3:] = np.where(inputs[:, 3:] == subject, subject + 1, inputs[:, 3:])
  return {"inputs": inputs, "positions": np.full((N, 1), L - 2, np.int32),
          "targets": np.full((N, 1), 7, np.int32), "mask": np.ones((N, 1), bool),
          "is_edit": np.ones(N, bool), "subject_token": subject}


def _value(tiny_random, **kw):
  params, cfg, _ = tiny_random
  opts = closed_form.ValueOptions(**{"steps": 12, "learning_rate": 0.5, "kl_weight": 0.0625,
                                     "key_position": "last", "clamp_norm_factor": 0.0, "weight_decay": 0.0,
                                     "early_stop": 0.0, **kw})
  vec, k_star, loss = jax.jit(lambda b: closed_form.optimize_value(params, b, cfg, 1, opts))(
      _value_batch(cfg))
  clean = model.apply(params, _value_batch(cfg)["inputs"], cfg, head=False)
  ref = clean.mlp_out[1] if opts.clamp_on == "mlp_out" else clean.residual[2]
  v_init = float(np.mean(np.linalg.norm(np.asarray(ref)[:, 8], axis=-1)))
  return np.asarray(vec), np.asarray(loss), v_init


def test_value_clamp_keeps_the_vector_inside_factor_times_the_initial_norm(tiny_random):
  free, _, v_init = _value(tiny_random)
  assert np.linalg.norm(free) > 0.5 * v_init  # unclamped, the vector grows past the ball tested below
  for clamp_on in ("mlp_out", "block_out"):
    vec, _, v_init = _value(tiny_random, clamp_norm_factor=0.25, clamp_on=clamp_on)
    assert np.linalg.norm(vec) <= 0.25 * v_init * (1 + 1e-5)
    assert np.linalg.norm(vec) > 0.2 * v_init  # the clamp binds, it does not zero the vector


def test_value_weight_decay_shrinks_the_vector(tiny_random):
  free, _, _ = _value(tiny_random)
  decayed, loss, _ = _value(tiny_random, weight_decay=1e3)
  assert np.linalg.norm(decayed) < 0.5 * np.linalg.norm(free)


def test_value_early_stop_and_the_last_step_that_only_evaluates(tiny_random):
  # A loss below the threshold at the first evaluation: no update at all (the reference breaks first).
  vec, loss, _ = _value(tiny_random, early_stop=1e9)
  assert not np.any(vec) and np.all(loss == loss[0])
  # One step: the reference evaluates once and never updates.
  vec, _, _ = _value(tiny_random, steps=1)
  assert not np.any(vec)
  # Never stopped early: steps - 1 updates, and each logged loss is the loss before that step's update.
  vec, loss, _ = _value(tiny_random, steps=6)
  assert np.any(vec) and len(loss) == 6 and len(set(np.round(loss, 6))) > 1
  # Stopped once the loss is below a threshold met mid-way: later entries repeat the loss it stopped at.
  _, free_loss, _ = _value(tiny_random)
  thr = float(free_loss[4]) + 1e-6
  _, loss, _ = _value(tiny_random, early_stop=thr)
  stop = int(np.argmax(loss < thr))
  assert 0 < stop < len(loss) - 1 and np.all(loss[stop:] == loss[stop])


def test_kl_rows_read_the_subject_token_and_skip_rows_that_answer_there(tiny_random):
  params, cfg, _ = tiny_random
  b = _value_batch(cfg)
  pos, kl_pos = closed_form.edit_positions(b, "last")
  assert np.all(np.asarray(kl_pos) == 2) and np.all(np.asarray(pos) == 8)
  # Every row predicts its answer right after the subject: no row is left for the KL term, so its weight
  # changes nothing (the KL never constrains a scored answer's distribution).
  b["positions"][:] = 2
  one = lambda w: np.asarray(closed_form.optimize_value(params, b, cfg, 1, closed_form.ValueOptions(
      steps=5, kl_weight=w, key_position="subject", clamp_norm_factor=0.0))[0])
  np.testing.assert_array_equal(one(0.0), one(10.0))
  b["positions"][:] = 8  # answers after the subject: now the KL term acts
  assert not np.array_equal(one(0.0), one(10.0))


def test_kl_rows_of_a_real_edit_set_predict_no_answer(tiny_run):
  """The KL term reads each edit row at the subject's last token; in the edit set's training rows the token
  that follows is never the row's answer, and never any fact's object token (so no scored split's answer
  distribution is trained)."""
  from behemoth_jax.edit import edit_rows, modes  # pylint: disable=g-import-not-at-top
  config = _rome_config()
  hp = runner.hparams(config)
  params, cfg, ds = runner.load_pretrained_checked(tiny_run)
  edit_set = runner.edit_set_of(config, ds)
  ts = edit_rows.train_set(edit_set, ds, config.loss_on, forget=hp.forget)
  evals = edit_rows.eval_splits(edit_set, ds)
  plan = modes.plan_independent(ts, evals, 0, config.eval_shared, config.seed)
  extra = closed_form.rome_extras(plan, ds)
  R = np.asarray(ds.graph.objects_SxR).shape[1]
  objects = {int(t) for r in range(R) for t in np.asarray(ds.vocab.objects(r).tokens(
      np.arange(ds.vocab.objects(r).count))).reshape(-1)}
  inputs, is_edit = np.asarray(plan.rows.inputs_NxL), np.broadcast_to(np.asarray(plan.is_edit),
                                                                       plan.rows.inputs_NxL.shape[:2])
  checked = 0
  for f in range(plan.num_edits):
    for n in np.flatnonzero(is_edit[f]):
      sub = np.flatnonzero(inputs[f, n] == extra["subject_token"][f])
      assert len(sub), "every edit row holds its subject"
      nxt = inputs[f, n, sub[-1] + 1]
      assert nxt not in objects
      checked += 1
  assert checked >= plan.num_edits


def test_context_prefixes_put_corpus_documents_before_every_edit_row(tiny_run, tmp_path):
  from behemoth_jax.edit import contexts, edit_rows, modes  # pylint: disable=g-import-not-at-top
  from data_gen.world.vocab import EOT, PAD  # pylint: disable=g-import-not-at-top
  config = _rome_config()
  params, cfg, ds = runner.load_pretrained_checked(tiny_run)
  edit_set = runner.edit_set_of(config, ds)
  ts = edit_rows.train_set(edit_set, ds, config.loss_on)
  plan = modes.plan_independent(ts, edit_rows.eval_splits(edit_set, ds), 2, config.eval_shared, config.seed)
  sub = closed_form.rome_extras(plan, ds)["subject_token"]
  out = contexts.with_context_prefixes(plan, ds, 3, seed=0, subject_token=sub)
  F, N, L = plan.rows.inputs_NxL.shape
  E = int(np.sum(plan.is_edit))
  assert out.rows.inputs_NxL.shape[:2] == (F, N + 3 * E) and out.is_edit.sum() == 4 * E
  np.testing.assert_array_equal(out.rows.inputs_NxL[:, :N, :L], plan.rows.inputs_NxL)  # bare rows unchanged
  src = np.tile(np.flatnonzero(plan.is_edit), 3)
  for f in range(F):
    for j, n in enumerate(src):
      row, new = plan.rows.inputs_NxL[f, n], out.rows.inputs_NxL[f, N + j]
      k = int(np.flatnonzero(new == EOT)[0]) + 1  # the document: tokens up to its end-of-text
      assert k > 2 and PAD not in new[:k] and sub[f] not in new[:k]
      body = row[row != PAD]
      np.testing.assert_array_equal(new[k:k + len(body)], body)
      m = plan.rows.mask_NxK[f, n]
      np.testing.assert_array_equal(out.rows.positions_NxK[f, N + j][m], plan.rows.positions_NxK[f, n][m] + k)
      np.testing.assert_array_equal(new[out.rows.positions_NxK[f, N + j][m]], row[plan.rows.positions_NxK[f, n][m]])
  summary = runner.run(_rome_config(context_prefixes=2, save_deltas=False), tiny_run, tmp_path / "w")
  assert summary["edited"]["exact_match"]["after"] >= 0.5


def test_null_space_rules_and_the_directions_they_protect():
  C = np.diag([10.0, 1.0, 0.05, 0.01, 1e-4])
  assert closed_form.protected_directions(C, 2e-2, "absolute") == 3  # eigenvalues >= 2e-2
  assert closed_form.protected_directions(C, 1e-2, "relative") == 2  # >= 1e-2 x 10
  P = closed_form.null_space_projector(C, 2e-2, "absolute")
  np.testing.assert_allclose(np.diag(P), [0, 0, 0, 1, 1], atol=1e-12)


# ---- least squares and null space ----------------------------------------------------------------------


def _random_problem(seed=0, F=24, D=8, n=5, m=10):
  rng = np.random.default_rng(seed)
  K0 = rng.normal(size=(m, F))  # preserved keys: m < F, so they leave a null space
  C = K0.T @ K0 / m + 1e-3 * np.eye(F)
  return rng, C, K0, rng.normal(size=(n, F)), rng.normal(size=(n, D))


def test_least_squares_solve_equals_numpy_float64_lstsq():
  _, C, _, K, R = _random_problem()
  lam = 2.5
  got = closed_form.memit_solve(C, K, R, lam)
  # The same objective |K dW - R|^2 + lam tr(dW^T C dW) as one stacked least-squares problem.
  L = np.linalg.cholesky(C)
  A = np.concatenate([K, np.sqrt(lam) * L.T])
  b = np.concatenate([R, np.zeros((len(C), R.shape[1]))])
  want = np.linalg.lstsq(A, b, rcond=None)[0]
  assert got.dtype == np.float64
  np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_null_space_update_leaves_preserved_keys_outputs_unchanged():
  _, _, K0, K, R = _random_problem(1)
  P = closed_form.null_space_projector(K0.T @ K0, threshold=1e-8)
  assert np.linalg.matrix_rank(P) == K0.shape[1] - K0.shape[0]
  dW = closed_form.alphaedit_solve(P, K, R, reg=1e-6)
  np.testing.assert_allclose(K0 @ dW, 0, atol=1e-8)  # preserved facts' outputs do not move
  # The new keys still get (their projection of) the residual: the edit is not empty.
  assert np.linalg.norm(K @ dW - R) < 0.5 * np.linalg.norm(R)


@pytest.mark.slow  # ~12 s each on 2 cores
@pytest.mark.parametrize("method", ["memit", "alphaedit", "memit_other_facts"])
def test_least_squares_batch_edit_of_every_fact_takes(tiny_run, tmp_path, method):
  method, _, cov = method.partition("_")
  c = edit_configs.get_config(f"{method},tiny")
  c.covariance = cov or c.covariance
  summary = runner.run(c, tiny_run, tmp_path / "w")
  assert summary["edited"]["exact_match"]["before"] == 0
  # memit takes on the tiny model; alphaedit's null space of the tiny corpus's covariance leaves its keys
  # little room (measured: 1-3 of 4 edits take), so only that it moves them is asserted.
  assert summary["edited"]["exact_match"]["after"] >= (0.75 if method == "memit" else 0.25), summary["edited"]
  d = deltas.flatten(deltas.load(tmp_path / "w" / "deltas" / "batch"))
  leaf = d["layers/0/mlp/down/kernel"]
  assert list(d) == ["layers/0/mlp/down/kernel"] and leaf.a.shape[1] == c.num_edits  # rank <= one per fact
  if method == "alphaedit":  # keys along C's used directions (eigenvalue >= 2e-2: the absolute rule) do not move
    params, cfg, ds = pretrained.load_pretrained(tiny_run)
    C = covariance.cached_covariance(params, cfg, ds, [0], tiny_run / "key_covariance")[0]
    w, V = np.linalg.eigh(C)
    assert c.nullspace_rule == "absolute"
    used = V[:, w >= c.nullspace_threshold]
    dW = np.asarray(leaf.a, np.float64) @ np.asarray(leaf.b, np.float64)
    assert np.abs(used.T @ dW).max() <= 1e-4 * np.abs(dW).max()


def test_factored_solves_equal_the_dense_ones():
  """What the editors store (A with dW = A R) is memit_solve / alphaedit_solve's dW, earlier keys included."""
  rng, C, K0, K, R = _random_problem(2)
  np.testing.assert_allclose(closed_form.least_squares_factors(C, K, 3.0) @ R, closed_form.memit_solve(C, K, R, 3.0),
                             rtol=1e-9, atol=1e-12)
  P = closed_form.null_space_projector(K0.T @ K0, threshold=1e-8)
  Kp = rng.normal(size=(3, K.shape[1]))
  want = closed_form.alphaedit_solve(P, K, R, prev_keys_pxF=Kp, reg=0.5)
  np.testing.assert_allclose(closed_form.least_squares_factors(C, K, 0.5, P, Kp) @ R, want, rtol=1e-9, atol=1e-12)
  # The earlier keys' term binds: without it the update moves them more.
  free = closed_form.least_squares_factors(C, K, 0.5, P) @ R
  assert np.linalg.norm(Kp @ want) < np.linalg.norm(Kp @ free)


def test_solve_size_check_refuses_more_keys_than_the_budget_holds(tiny_run, tmp_path):
  dims = dict(mlp_width=512, width=128, layers=2, eval_tokens=1024 * 64)
  budget = 50 * 2**20
  most = closed_form.max_keys(budget, **dims)
  assert most > 0 and closed_form.solve_bytes(most, **dims) <= budget < closed_form.solve_bytes(most + 1, **dims)
  assert closed_form.max_keys(closed_form.solve_bytes(0, **dims) - 1, **dims) == 0
  c = edit_configs.get_config("memit,tiny")
  c.solve_memory_bytes = closed_form.solve_bytes(c.num_edits - 1, mlp_width=128, width=32, layers=1,
                                                 eval_tokens=c.eval_chunk * 64)  # the tiny model's shape
  with pytest.raises(ValueError) as e:
    runner.run(c, tiny_run, tmp_path / "w")
  msg = str(e.value)
  assert msg.startswith("--config.num_edits: at most 3 keys") and "--config.solve_memory_bytes" in msg, msg
  assert "\n" not in msg and not (tmp_path / "w").exists()


def test_layer_minus_one_is_the_traced_mlp(tiny_run):
  """layer -1: causal tracing of the pretrained model on the edited facts picks the MLP (or window of MLPs)
  with the largest mean indirect effect at the key position, and says what it measured."""
  config = edit_configs.get_config("memit,tiny")
  config.layer, config.span = -1, 1
  hp = runner.hparams(config)
  params, cfg, ds = pretrained.load_pretrained(tiny_run)
  edit_set = runner.edit_set_of(config, ds)
  traced, info = runner.traced_layer(config, hp, params, cfg, edit_set, ds)
  effect = np.asarray(info["mlp_indirect_effect_by_layer"])
  assert effect.shape == (cfg.num_layers,) and 0 < info["num_probes"] <= info["num_edited_facts"]
  assert traced.layer == info["layer"] == int(np.argmax(effect)) and info["layers"] == [traced.layer]
  assert info["clean_p"] > info["corrupted_p"]
  two = runner.traced_layer(config, dataclasses.replace(hp, span=2), params, cfg, edit_set, ds)[0]
  assert two.layer == 1  # a window of 2 in a 2-layer model ends at layer 1


# ---- causal tracing ------------------------------------------------------------------------------------------


def test_causal_tracing_finds_the_position_made_to_matter(tiny_random):
  """Hand-built: the noise sits on one chosen token per prompt. Restoring the clean stream entering layer 0
  there undoes it exactly (restored = clean), anywhere else restores nothing (restored = corrupted), so
  tracing must single out that position; the MLP output at a position before it is unaffected by the
  noise, so restoring it there changes nothing."""
  from behemoth_jax.edit import tracing  # pylint: disable=g-import-not-at-top
  params, cfg, _ = tiny_random
  rng = np.random.default_rng(0)
  B, T = 3, 9
  tokens = rng.integers(0, cfg.vocab_size, (B, T)).astype(np.int32)
  where = np.array([2, 5, 7])  # the position made to matter in each prompt
  subject = np.arange(T)[None, :] == where[:, None]
  noise = tracing.draw_noise(jax.random.key(1), (B, T, cfg.width), 3 * tracing.embedding_std(params) * 30)
  answer = np.asarray(model.forward(params, tokens, cfg)[:, -1].argmax(-1))
  clean, corrupted, restored = tracing.trace(params, tokens, subject, answer, noise, cfg, "residual")
  restored = np.asarray(restored)
  assert restored.shape == (B, cfg.num_layers, T)
  assert np.all(np.abs(np.asarray(clean) - np.asarray(corrupted)) > 1e-3 * np.asarray(clean))  # noise matters
  for b in range(B):
    np.testing.assert_allclose(restored[b, 0, where[b]], clean[b], rtol=1e-5)
    others = np.delete(restored[b, 0], where[b])
    np.testing.assert_allclose(others, corrupted[b], rtol=1e-5)
    assert np.argmax(np.abs(restored[b, 0] - corrupted[b])) == where[b]
  _, corrupted_m, restored_m = tracing.trace(params, tokens, subject, answer, noise, cfg, "mlp")
  for b in range(B):
    np.testing.assert_allclose(np.asarray(restored_m)[b, :, :where[b]], corrupted_m[b], rtol=1e-5)


def test_tracing_window_and_noise_samples_as_the_reference(tiny_random):
  """window: ROME's trace_important_window range (l - w//2 .. l - (-w//2), cut at the edges); a window
  covering every layer restores every MLP at once, so every layer's effect is the same; samples: the
  probabilities are averaged over that many draws (1 draw: the key itself, as before the option)."""
  from behemoth_jax.edit import tracing  # pylint: disable=g-import-not-at-top
  assert list(tracing.window_layers(5, 10, 48)) == list(range(0, 10))
  assert list(tracing.window_layers(20, 10, 48)) == list(range(15, 25))
  assert list(tracing.window_layers(46, 10, 48)) == list(range(41, 48))
  assert list(tracing.window_layers(3, 1, 4)) == [3]
  params, cfg, _ = tiny_random
  rng = np.random.default_rng(0)
  tokens = rng.integers(0, cfg.vocab_size, (4, 7)).astype(np.int32)
  subject = np.zeros((4, 7), bool)
  subject[:, 2] = True
  answer = np.asarray(model.forward(params, tokens, cfg)[:, -1].argmax(-1))
  one = tracing.mean_effects(params, cfg, tokens, subject, answer, jax.random.key(0), components=("mlp",))
  again = tracing.mean_effects(params, cfg, tokens, subject, answer, jax.random.key(0), components=("mlp",),
                               samples=1, window=1)
  np.testing.assert_array_equal(one["components"]["mlp"]["mean"], again["components"]["mlp"]["mean"])
  every = tracing.mean_effects(params, cfg, tokens, subject, answer, jax.random.key(0), components=("mlp",),
                               window=2 * cfg.num_layers)["components"]["mlp"]["mean"]
  for l in range(1, cfg.num_layers):
    np.testing.assert_allclose(every[l], every[0], rtol=1e-6, atol=1e-9)
  ten = tracing.mean_effects(params, cfg, tokens, subject, answer, jax.random.key(0), components=("mlp",),
                             samples=10)
  z = [tracing.draw_noise(k, (4, 7, cfg.width), ten["noise_std"]) for k in jax.random.split(jax.random.key(0), 10)]
  corrupted = np.mean([np.asarray(tracing.trace(params, tokens, subject, answer, zi, cfg, "mlp")[1]) for zi in z], 0)
  assert ten["corrupted_p"] == pytest.approx(float(corrupted.mean()), rel=1e-6)


@pytest.mark.slow
def test_trace_binary_writes_effects_heatmaps_and_a_layer(tiny_run, tmp_path):
  import json, os, subprocess, sys  # pylint: disable=g-import-not-at-top,multiple-imports
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)}
  run = lambda *a: subprocess.run([sys.executable, "-m", "experiments.trace", f"--pretrained={tiny_run}", *a],
                                  cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  r = run(f"--workdir={tmp_path / 'bad'}", "--relationship=7")
  assert r.returncode == 2 and r.stderr.strip().startswith("error: --relationship: must be in [0, 1]")
  assert not (tmp_path / "bad").exists()
  r = run(f"--workdir={tmp_path / 't'}", "--num_probes=8")
  assert r.returncode == 0, r.stderr[-2000:]
  out = json.loads((tmp_path / "t" / "trace.json").read_text())
  assert 0 <= out["traced_layer"] < 2 and out["clean_p"] > out["corrupted_p"]
  effect = np.asarray(out["components"]["residual"]["mean_indirect_effect"])
  assert effect.shape == (2, out["positions"])
  assert all((tmp_path / "t" / f"trace_{c}.png").stat().st_size > 0 for c in ("residual", "mlp", "attn"))


@pytest.mark.slow  # ~25 s each on 2 cores
@pytest.mark.parametrize("method", ["memit", "alphaedit"])
def test_sequential_least_squares_edits_compose(tiny_run, tmp_path, method):
  import json  # pylint: disable=g-import-not-at-top
  c = edit_configs.get_config(f"{method},tiny")
  c.mode = "sequential"
  runner.run(c, tiny_run, tmp_path / "w")
  records = [json.loads(l) for l in (tmp_path / "w" / "sequential.jsonl").read_text().splitlines()]
  assert [r["edit"] for r in records] == [0, 1, 2, 3] and all("unrelated" in r for r in records)
  assert max(r["this_edit"] for r in records) == 1.0  # at least one step's update takes
  leaf = deltas.flatten(deltas.load(tmp_path / "w" / "deltas" / "composed"))["layers/0/mlp/down/kernel"]
  assert leaf.a.shape[-1] == 4  # one least-squares update of one fact per step: ranks add
  if method == "alphaedit":  # every step's update lies in C's null space: preserved keys never move
    params, cfg, ds = pretrained.load_pretrained(tiny_run)
    C = covariance.cached_covariance(params, cfg, ds, [0], tiny_run / "key_covariance")[0]
    w, V = np.linalg.eigh(C)
    dW = np.asarray(leaf.a, np.float64) @ np.asarray(leaf.b, np.float64)
    assert np.abs(V[:, w >= 1e-2 * w.max()].T @ dW).max() <= 1e-4 * np.abs(dW).max()


@pytest.mark.slow
def test_sequential_rome_edits_compose_rank_one_updates(tiny_run, tmp_path):
  import json  # pylint: disable=g-import-not-at-top
  summary = runner.run(_rome_config(mode="sequential"), tiny_run, tmp_path / "w")
  records = [json.loads(l) for l in (tmp_path / "w" / "sequential.jsonl").read_text().splitlines()]
  assert [r["edit"] for r in records] == [0, 1, 2, 3] and all("unrelated" in r for r in records)
  assert summary["edited"]["exact_match"]["after"] >= 0.5
  composed = deltas.flatten(deltas.load(tmp_path / "w" / "deltas" / "composed"))
  assert composed["layers/0/mlp/down/kernel"].a.shape[-1] == 4  # ranks add: one per edit
