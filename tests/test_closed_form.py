"""Locate-then-edit: corpus key covariance, rank-one (ROME-style), least-squares (MEMIT-style) and
null-space (AlphaEdit-style) edits."""

import jax
import numpy as np
import pytest

from behemoth_jax import covariance, model, trainer
from experiments.configs import pretrain as pretrain_configs


@pytest.fixture(scope="module")
def tiny_random():
  """The tiny pretraining config's dataset and a randomly initialised model of its shape (covariance
  needs no trained weights)."""
  config = pretrain_configs.get_config("tiny")
  ds = trainer.load_dataset(config)
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
