"""Losses: next-token cross-entropy over a masked token batch, and per-row answer log-probabilities."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from behemoth_jax.model import model


@jax.custom_vjp
def _fused_token_nll(logits_NxV, targets_N):
  lse_N = jax.nn.logsumexp(logits_NxV, axis=-1)
  return lse_N - jnp.take_along_axis(logits_NxV, targets_N[:, None], -1)[:, 0]


def _fused_token_nll_fwd(logits_NxV, targets_N):
  # Keep softmax - onehot from the forward pass: the backward is then one scale, not a second
  # exp/log-sum-exp sweep over the [N, V] logits (the largest activation of a small model).
  lse_N = jax.nn.logsumexp(logits_NxV, axis=-1)
  nll_N = lse_N - jnp.take_along_axis(logits_NxV, targets_N[:, None], -1)[:, 0]
  onehot = jax.nn.one_hot(targets_N, logits_NxV.shape[-1], dtype=logits_NxV.dtype)
  dlogits_NxV = jnp.exp(logits_NxV - lse_N[:, None]) - onehot
  return nll_N, dlogits_NxV


def _fused_token_nll_bwd(dlogits_NxV, g_N):
  return g_N[:, None] * dlogits_NxV, None


_fused_token_nll.defvjp(_fused_token_nll_fwd, _fused_token_nll_bwd)


def plain_token_nll(logits_NxV: jax.Array, targets_N: jax.Array) -> jax.Array:
  """The same as `token_nll` by plain autodiff (the benchmark's ablation and the gradient test's reference)."""
  logits_NxV = logits_NxV.astype(jnp.float32)
  return (jax.nn.logsumexp(logits_NxV, -1)
          - jnp.take_along_axis(logits_NxV, targets_N.astype(jnp.int32)[:, None], -1)[:, 0])


def token_nll(logits_NxV: jax.Array, targets_N: jax.Array) -> jax.Array:
  """-log p(target) per row, float32."""
  return _fused_token_nll(logits_NxV.astype(jnp.float32), targets_N.astype(jnp.int32))


def lm_loss(params, batch: dict, cfg: model.ModelConfig, answer_only: bool = False, delta=None,
            nll=token_nll):
  """Mean next-token NLL over predicted positions. Returns (loss, num_tokens).

  Targets are tokens[:, 1:]; a target counts where loss_mask is set (all non-padding tokens, as in the
  paper), or with `answer_only` where answer_mask is set.
  """
  tokens_BxT = batch["tokens"]
  inputs_BxT, targets_BxT = tokens_BxT[:, :-1], tokens_BxT[:, 1:]
  mask_BxT = batch["answer_mask" if answer_only else "loss_mask"][:, 1:]
  logits_BxTxV = model.apply(params, inputs_BxT, cfg, delta=delta).logits
  nll_N = nll(logits_BxTxV.reshape(-1, logits_BxTxV.shape[-1]), targets_BxT.reshape(-1))
  w_N = mask_BxT.reshape(-1).astype(jnp.float32)
  count = w_N.sum()
  return (nll_N * w_N).sum() / jnp.maximum(count, 1.0), count
