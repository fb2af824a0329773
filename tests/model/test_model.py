"""Model: parameter layout, causality, rotary, the fused cross-entropy gradient against autodiff."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from behemoth_jax.model import losses, model

CFG = model.ModelConfig(vocab_size=61, num_layers=2, width=32, num_heads=4, max_len=32)


@pytest.fixture(scope="module")
def params():
  return model.init_params(jax.random.key(0), CFG)


def _tokens(seed, B=3, T=12, V=CFG.vocab_size):
  return jnp.asarray(np.random.default_rng(seed).integers(0, V, (B, T)), jnp.int32)


def test_parameter_paths_are_readable_and_selectable():
  cfg = model.ModelConfig(vocab_size=17, num_layers=4, width=16, num_heads=2)
  p = model.init_params(jax.random.key(1), cfg)
  paths = model.param_paths(p)
  assert "layers/3/mlp/down/kernel" in paths
  assert paths["layers/3/mlp/down/kernel"].shape == (64, 16)
  assert paths["head/kernel"].shape == (16, 17)
  assert paths["embed/embedding"].shape == (17, 16)
  mask = model.param_paths(model.path_mask(p, r"layers/(1|3)/mlp/.*"))
  assert sorted(k for k, v in mask.items() if v) == [
      f"layers/{i}/mlp/{m}/{w}" for i in (1, 3) for m in ("down", "up") for w in ("bias", "kernel")]
  assert model.num_params(p) == sum(x.size for x in paths.values())


def test_head_is_untied(params):
  assert params["head"]["kernel"].shape == params["embed"]["embedding"].shape[::-1]
  assert not np.allclose(params["head"]["kernel"].T, params["embed"]["embedding"])


def test_future_tokens_do_not_change_past_logits(params):
  tokens = _tokens(0)
  t = 5
  changed = tokens.at[:, t + 1:].set((tokens[:, t + 1:] + 7) % CFG.vocab_size)
  a = model.forward(params, tokens, CFG)
  b = model.forward(params, changed, CFG)
  np.testing.assert_allclose(a[:, :t + 1], b[:, :t + 1], atol=1e-6)
  assert not np.allclose(a[:, t + 1:], b[:, t + 1:], atol=1e-3)  # the change is visible where it may be


def test_no_gradient_from_future_positions(params):
  # Distinct tokens, so an embedding row's gradient belongs to exactly one position.
  tokens = jnp.asarray(np.random.default_rng(1).permutation(CFG.vocab_size)[:12][None], jnp.int32)
  t = 4

  def logit_at_t(table):
    p = {**params, "embed": {"embedding": table}}
    return model.forward(p, tokens, CFG)[0, t].sum()

  g = jax.grad(logit_at_t)(params["embed"]["embedding"])
  row_norm = np.linalg.norm(np.asarray(g)[np.asarray(tokens[0])], axis=-1)
  assert np.all(row_norm[:t + 1] > 0)
  np.testing.assert_array_equal(row_norm[t + 1:], 0.0)


def test_rotary_scores_depend_on_relative_position_only():
  cfg = model.ModelConfig(vocab_size=5, num_layers=1, width=16, num_heads=1, rotary_pct=1.0)
  cos, sin = model.rotary_tables(cfg, 20)
  rng = np.random.default_rng(0)
  q = jnp.asarray(rng.normal(size=(1, 1, 1, 16)), jnp.float32)
  k = jnp.asarray(rng.normal(size=(1, 1, 1, 16)), jnp.float32)

  def score(i, j):
    qi = model.apply_rotary(q, cos[i:i + 1], sin[i:i + 1])
    kj = model.apply_rotary(k, cos[j:j + 1], sin[j:j + 1])
    return float((qi * kj).sum())

  assert score(7, 3) == pytest.approx(score(14, 10), rel=1e-4)
  assert score(7, 3) != pytest.approx(score(7, 5), rel=1e-2)


def test_partial_rotary_leaves_the_rest_of_the_head_alone():
  assert CFG.rotary_dim == 2  # 0.25 of an 8-wide head
  cos, sin = model.rotary_tables(CFG, 6)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 6, 4, 8)), jnp.float32)
  y = model.apply_rotary(x, cos, sin)
  np.testing.assert_array_equal(y[..., 2:], x[..., 2:])
  assert not np.allclose(y[:, 1:, :, :2], x[:, 1:, :, :2])


def test_fused_cross_entropy_gradient_matches_plain_autodiff(params):
  rng = np.random.default_rng(2)
  batch = {"tokens": _tokens(3, B=4, T=10), "loss_mask": jnp.asarray(rng.random((4, 10)) < 0.8),
           "answer_mask": jnp.asarray(rng.random((4, 10)) < 0.3)}
  fast_loss, fast = jax.value_and_grad(lambda p: losses.lm_loss(p, batch, CFG)[0])(params)
  plain_loss, plain = jax.value_and_grad(
      lambda p: losses.lm_loss(p, batch, CFG, nll=losses.plain_token_nll)[0])(params)
  assert float(fast_loss) == pytest.approx(float(plain_loss), rel=1e-6)
  for a, b in zip(jax.tree.leaves(fast), jax.tree.leaves(plain)):
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-4)


def test_loss_masks_select_positions(params):
  tokens = _tokens(4, B=2, T=9)
  nll = losses.token_nll(model.forward(params, tokens[:, :-1], CFG).reshape(-1, CFG.vocab_size),
                         tokens[:, 1:].reshape(-1)).reshape(2, 8)
  answer = np.zeros((2, 9), bool)
  answer[0, 3] = answer[1, 6] = True
  batch = {"tokens": tokens, "loss_mask": jnp.ones((2, 9), bool), "answer_mask": jnp.asarray(answer)}
  full, n_full = losses.lm_loss(params, batch, CFG)
  only, n_only = losses.lm_loss(params, batch, CFG, answer_only=True)
  assert (float(n_full), float(n_only)) == (16.0, 2.0)
  assert float(full) == pytest.approx(float(nll.mean()), rel=1e-5)
  assert float(only) == pytest.approx(float((nll[0, 2] + nll[1, 5]) / 2), rel=1e-5)


def test_flops_per_token_counts_matmul_weights():
  cfg = model.ModelConfig(vocab_size=100, num_layers=2, width=16, num_heads=2)
  p = model.init_params(jax.random.key(0), cfg)
  kernels = sum(x.size for k, x in model.param_paths(p).items() if k.endswith("kernel"))
  assert model.flops_per_token(cfg, 10) == 6 * kernels + 12 * 2 * 10 * 16


@pytest.mark.parametrize("field,value,option", [("width", 30, "width"), ("rotary_pct", 1.5, "rotary_pct"),
                                                ("compute_dtype", "float16", "compute_dtype")])
def test_invalid_model_options_name_the_option(field, value, option):
  cfg = model.ModelConfig(vocab_size=10, width=32, num_heads=4)
  bad = model.ModelConfig(**{**cfg.__dict__, field: value})
  with pytest.raises(ValueError, match=option):
    bad.validate()


def test_bfloat16_compute_tracks_float32(params):
  # The accelerator path: float32 parameters, bfloat16 matmuls, float32 logits and loss.
  import dataclasses
  bf16 = dataclasses.replace(CFG, compute_dtype="bfloat16")
  tokens = _tokens(6)
  a = model.forward(params, tokens, CFG)
  b = model.forward(params, tokens, bf16)
  assert b.dtype == jnp.float32
  np.testing.assert_allclose(a, b, atol=0.05)
  assert not np.array_equal(a, b)  # the matmuls really ran in bfloat16
  batch = {"tokens": tokens, "loss_mask": jnp.ones(tokens.shape, bool),
           "answer_mask": jnp.ones(tokens.shape, bool)}
  grads = jax.grad(lambda p: losses.lm_loss(p, batch, bf16)[0])(params)
  assert all(g.dtype == jnp.float32 and bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grads))
