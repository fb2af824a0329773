"""Locate-then-edit updates of MLP down-projections in closed form (ROME-, MEMIT- and AlphaEdit-style).

Written from the update formulas (shared/reference/editing-methods.md), not from the authors' code.
Convention: the down-projection is y = k W + bias with W [F, D] (x @ W), k the MLP key (the GELU output,
`model.Outputs.mlp_key`), so a change dW moves the output at key k by k dW.

Rank-one edit (`rome_delta`, one fact, vmappable over facts):
  1. k* = the key at layer l at the subject's last token, averaged over the fact's training rows (every
     form the edit set trains it in).
  2. delta* = a vector added to the layer's MLP output at the subject's last token, optimised (Adam,
     `steps`) for the new answer's NLL plus `kl_weight` x KL(frozen || edited) of the next-token
     distribution after the subject's other facts' prompts (with the same vector at their subject token:
     the subject's other knowledge must survive the new value).
  3. dW = (C^-1 k*) delta*^T / (k*^T C^-1 k*): then k* dW = delta* exactly, and among all such changes
     it is the smallest in the C-weighted norm (keys the corpus uses often move least). Rank one; stored
     as deltas.LowRank(a = C^-1 k* / (k*^T C^-1 k*), b = delta*), never a dense [F, D] per fact.

Least-squares batch edit (`memit_solve`, many facts at once, float64 on the host):
  dW = (lambda C + K K^T)^-1 K R^T in our x @ W layout (the paper's R K^T (lambda C + K K^T)^-1, transposed),
  K [F, n] keys, R [D, n] residuals.
Null-space edit (`null_space_projector`, `alphaedit_solve`): the same update restricted to the null space
of preserved keys K0 (P projects onto the eigenvectors of K0 K0^T with eigenvalues below a threshold), so
K0^T dW = 0 and preserved facts' outputs do not move.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from behemoth_jax import deltas, losses, model


def down_path(layer: int) -> str:
  return f"layers/{layer}/mlp/down/kernel"


def subject_positions(inputs_NxL, subject_token):
  """The last position holding the subject's last token in each row ([N] int32; 0 where absent)."""
  L = inputs_NxL.shape[1]
  hit = inputs_NxL == subject_token
  return jnp.max(jnp.where(hit, jnp.arange(L, dtype=jnp.int32)[None, :], 0), axis=1)


def _one_hot_add(vec_D, pos_N, L):
  """[N, L, D]: vec at each row's position, zero elsewhere."""
  at = (jnp.arange(L)[None, :] == pos_N[:, None]).astype(vec_D.dtype)
  return at[..., None] * vec_D[None, None, :]


def edit_positions(batch, key_position: str = "subject"):
  """(edit rows' positions [N], KL prompts' positions [M]) where keys are read and values written: the
  subject's last token (ROME), or with key_position="last" the last prompt token (where causal tracing
  on models trained here finds the recall: WORKSPACE.md, "Locate-then-edit")."""
  if key_position == "last":
    M, P = batch["kl_inputs"].shape
    return batch["positions"][:, 0], jnp.full((M,), P - 1, jnp.int32)
  return (subject_positions(batch["inputs"], batch["subject_token"]),
          subject_positions(batch["kl_inputs"], batch["subject_token"]))


def optimize_value(frozen, batch, cfg: model.ModelConfig, layer: int, steps: int, learning_rate: float,
                   kl_weight: float, key_position: str = "subject"):
  """One fact's target: (delta* [D] added to layer `layer`'s MLP output at the subject's last token,
  k* [F] the key there averaged over the fact's rows, loss per step).

  batch: the independent plan's rows for one edit (inputs [N, L], positions/targets/mask [N, K],
  is_edit [N]: only edit rows are used), subject_token (scalar), and the KL prompts kl_inputs [M, P],
  kl_valid [M] (the subject's other facts; their next token is predicted at position P - 1).
  """
  inputs, is_edit = batch["inputs"], batch["is_edit"]
  N, L = inputs.shape
  pos_N, kl_pos = edit_positions(batch, key_position)
  clean = model.apply(frozen, inputs, cfg, head=False)
  residual, attn, key = clean.residual[layer], clean.attn_out[layer], clean.mlp_key[layer]
  w_N = (is_edit & batch["mask"].any(-1)).astype(jnp.float32)
  k_NxF = jnp.take_along_axis(key, pos_N[:, None, None], axis=1)[:, 0]
  k_star = (k_NxF * w_N[:, None]).sum(0) / jnp.maximum(w_N.sum(), 1.0)

  kl_inputs = batch["kl_inputs"]
  M, P = kl_inputs.shape
  kl_clean = model.apply(frozen, kl_inputs, cfg, head=False)
  kl_last = jnp.full((M, 1), P - 1, jnp.int32)
  kl_ref = jax.nn.log_softmax(model.apply(frozen, kl_inputs, cfg, head_positions=kl_last).logits[:, 0])
  kl_w = batch["kl_valid"].astype(jnp.float32)

  def edited_logits(vec, toks, res, at, ky, sub_pos, head_pos):
    # Only the edited layer and those above it run: the stream below is the frozen model's.
    iv = model.Interventions(mlp_add={layer: _one_hot_add(vec, sub_pos, toks.shape[1])})
    return model.apply(frozen, toks, cfg, interventions=iv, start_layer=layer, residual_BxTxD=res,
                       start_cached=(at, ky), head_positions=head_pos, prune_to_head=True).logits

  def loss_fn(vec):
    logits = edited_logits(vec, inputs, residual, attn, key, pos_N, batch["positions"])
    K, V = logits.shape[1], logits.shape[2]
    nll = losses.token_nll(logits.reshape(N * K, V), batch["targets"].reshape(-1)).reshape(N, K)
    mask = batch["mask"].astype(jnp.float32) * w_N[:, None]
    edit_term = (nll * mask).sum() / jnp.maximum(mask.sum(), 1.0)
    kl_logits = edited_logits(vec, kl_inputs, kl_clean.residual[layer], kl_clean.attn_out[layer],
                              kl_clean.mlp_key[layer], kl_pos, kl_last)[:, 0]
    kl_N = (jnp.exp(kl_ref) * (kl_ref - jax.nn.log_softmax(kl_logits))).sum(-1)
    kl_term = (kl_N * kl_w).sum() / jnp.maximum(kl_w.sum(), 1.0)
    return edit_term + kl_weight * kl_term

  opt = optax.adam(learning_rate)
  vec0 = jnp.zeros((cfg.width,), jnp.float32)

  def step(carry, _):
    vec, state = carry
    loss, g = jax.value_and_grad(loss_fn)(vec)
    updates, state = opt.update(g, state, vec)
    return (optax.apply_updates(vec, updates), state), loss

  (vec, _), loss = jax.lax.scan(step, (vec0, opt.init(vec0)), None, length=steps)
  return vec, k_star, loss


def rome_delta(frozen, batch, cov_inv_FxF, cfg: model.ModelConfig, layer: int, steps: int,
               learning_rate: float, kl_weight: float, key_position: str = "subject"):
  """One fact's rank-one edit of layers/<layer>/mlp/down/kernel (batch: as `optimize_value`). Returns
  (delta, loss per step)."""
  vec, k_star, loss = optimize_value(frozen, batch, cfg, layer, steps, learning_rate, kl_weight, key_position)
  u = cov_inv_FxF.astype(jnp.float32) @ k_star
  a = u / jnp.dot(u, k_star)
  delta = deltas.unflatten({down_path(layer): deltas.LowRank(a=a[:, None], b=vec[None, :], scale=1.0)})
  return delta, loss


def inverse_covariance(cov_FxF: np.ndarray, ridge: float = 1e-6) -> np.ndarray:
  """C^-1 in float64 with a small ridge relative to C's mean diagonal (GELU keys can leave directions
  the corpus never uses, where C is singular)."""
  c = np.asarray(cov_FxF, np.float64)
  return np.linalg.inv(c + ridge * np.trace(c) / len(c) * np.eye(len(c)))


# ---- least squares (host, float64) --------------------------------------------------------------------


def memit_solve(cov_FxF, keys_nxF, resid_nxD, lam: float) -> np.ndarray:
  """dW [F, D] minimising sum_i |k_i dW - r_i|^2 + lam * tr(dW^T C dW): (lam C + K^T K)^-1 K^T R, in
  float64 numpy on the host (an [F, F] solve; F = 4 D)."""
  C = np.asarray(cov_FxF, np.float64)
  K = np.asarray(keys_nxF, np.float64)
  R = np.asarray(resid_nxD, np.float64)
  return np.linalg.solve(lam * C + K.T @ K, K.T @ R)


def null_space_projector(second_moment_FxF, threshold: float = 1e-2) -> np.ndarray:
  """P [F, F] onto the eigenvectors of K0^T K0 (or of the corpus covariance C, AlphaEdit's stand-in for
  all preserved knowledge) whose eigenvalues are below `threshold` x the largest: the directions
  preserved keys do not use. float64."""
  w, V = np.linalg.eigh(np.asarray(second_moment_FxF, np.float64))
  small = w < threshold * max(w.max(), 1e-300)
  Vs = V[:, small]
  return Vs @ Vs.T


def alphaedit_solve(P_FxF, keys_nxF, resid_nxD, prev_keys_pxF=None, reg: float = 1.0) -> np.ndarray:
  """The AlphaEdit update in our x @ W layout: dW = P X minimising |K1 P X - R|^2 + |Kp P X|^2 + reg |P X|^2
  (K1 the new keys, Kp earlier edits' keys, P the null-space projector). Normal equations:
  (P (K1^T K1 + Kp^T Kp) P + reg I) X = P K1^T R; their solution already lies in P's range (apply I - P to
  both sides), so dW = X and any preserved key with k0 P = 0 gets k0 dW = 0. float64 numpy."""
  P = np.asarray(P_FxF, np.float64)
  K1 = np.asarray(keys_nxF, np.float64)
  R = np.asarray(resid_nxD, np.float64)
  M = K1.T @ K1
  if prev_keys_pxF is not None and len(prev_keys_pxF):
    Kp = np.asarray(prev_keys_pxF, np.float64)
    M = M + Kp.T @ Kp
  return np.linalg.solve(P @ M @ P + reg * np.eye(len(P)), P @ K1.T @ R)


# ---- glue for the execution modes (host side) ----------------------------------------------------------


def default_layer(hp_layer: int, num_layers: int) -> int:
  """hp.layer, or with -1 the middle layer (L - 1) // 2 (causal tracing on `small` is in WORKSPACE.md)."""
  return (num_layers - 1) // 2 if hp_layer < 0 else hp_layer


def kl_prompts(edit_set, dataset, heads, relationships) -> tuple[np.ndarray, np.ndarray]:
  """Per edit, the prompts of its subject's other facts (every other relationship, in the edit's training
  template): (tokens [F, R - 1, P], valid [F, R - 1]); one invalid dummy row when R = 1."""
  import dataclasses  # pylint: disable=g-import-not-at-top
  from data_gen.edit_files import EDIT_SPLIT_NAMES  # pylint: disable=g-import-not-at-top
  split = next(s for s in edit_set.train if s.name in EDIT_SPLIT_NAMES)
  objects = dataset.graph.objects_SxR
  R = objects.shape[1]
  heads, relationships = np.asarray(heads), np.asarray(relationships)
  F = len(heads)
  if R == 1:
    prompt, _ = split.tokens(dataset)
    return np.broadcast_to(prompt[:1], (F, 1, prompt.shape[1])).copy(), np.zeros((F, 1), bool)
  other = np.stack([np.delete(np.arange(R), r) for r in relationships])  # [F, R - 1]
  h = np.repeat(heads, R - 1)
  o = other.reshape(-1)
  tail = objects[h, o].astype(np.int32)
  fake = dataclasses.replace(split, head=h.astype(np.int32), relationship=o.astype(np.int32), before=tail,
                             after=tail, weight=np.ones_like(tail))
  prompt, _ = fake.tokens(dataset)
  return prompt.reshape(F, R - 1, -1), np.ones((F, R - 1), bool)


def rome_extras(plan, edit_set, dataset) -> dict:
  """What `rome_delta` needs beside the plan's rows, per edit: the subject's last token and KL prompts."""
  sub = dataset.vocab.subjects.tokens(np.asarray(plan.head))[..., -1].astype(np.int32)
  kl, valid = kl_prompts(edit_set, dataset, plan.head, plan.relationship)
  return {"subject_token": sub, "kl_inputs": kl.astype(np.int32), "kl_valid": valid}


def make_rome_trainer(cfg: model.ModelConfig, layer: int, steps: int, learning_rate: float, kl_weight: float,
                      cov_inv_FxF: np.ndarray, key_position: str = "subject"):
  """`(frozen, batch [F, ...], keys [F]) -> (deltas [F, ...], losses [F, steps])` like
  editing.make_independent_trainer (keys unused: the edit is deterministic)."""
  fn = jax.jit(jax.vmap(lambda fz, b, ci: rome_delta(fz, b, ci, cfg, layer, steps, learning_rate, kl_weight,
                                                     key_position), in_axes=(None, 0, None)))
  cov_inv = jnp.asarray(cov_inv_FxF, jnp.float32)
  return lambda frozen, batch, keys: fn(frozen, batch, cov_inv)


def _mean_over_rows(x_NxL_, pos_N, w_N):
  at = jnp.take_along_axis(x_NxL_, pos_N[:, None, None], axis=1)[:, 0]
  return (at * w_N[:, None]).sum(0) / jnp.maximum(w_N.sum(), 1.0)


def make_state_probe(cfg: model.ModelConfig, layers: tuple[int, ...], last: int, key_position: str = "subject"):
  """jitted `(params, delta, batch [F, ...]) -> (keys {layer: [F, Fk]}, out [F, D])`: per fact, the MLP keys
  at `layers` and the stream after block `last`, at the subject's last token, averaged over its edit rows."""

  def one(params, delta, b):
    pos = edit_positions(b, key_position)[0]
    w = (b["is_edit"] & b["mask"].any(-1)).astype(jnp.float32)
    out = model.apply(params, b["inputs"], cfg, delta=delta, head=False)
    return ({l: _mean_over_rows(out.mlp_key[l], pos, w) for l in layers},
            _mean_over_rows(out.residual[last + 1], pos, w))

  return jax.jit(jax.vmap(one, in_axes=(None, None, 0)))


def least_squares_delta(params, cfg: model.ModelConfig, batch, layers: list[int], covs: dict, hp,
                        null_space: bool = False, threshold: float = 1e-2):
  """Every fact of `batch` ([F, ...]: the independent plan's rows plus rome_extras) in one update of the
  down-projections of `layers` (MEMIT's spread; AlphaEdit with null_space=True). Returns (delta with
  LowRank factors of rank F per layer, value-optimisation loss [F, steps]).

  Targets: delta*_i optimised at the last layer as for rank-one edits; z_i = the stream after the last
  layer + delta*_i. Layers in ascending order: keys under the model edited so far, the residual
  (z_i - current stream) / (layers left) solved for with memit_solve (or alphaedit_solve on the null space
  of C), float64 on the host."""
  last = layers[-1]
  values = jax.jit(jax.vmap(lambda fz, b: optimize_value(fz, b, cfg, last, hp.steps, hp.learning_rate,
                                                         hp.kl_weight, hp.key_position), in_axes=(None, 0)))
  vec_FxD, _, loss = values(params, batch)
  probe = make_state_probe(cfg, tuple(layers), last, hp.key_position)
  _, out0 = probe(params, None, batch)
  z = np.asarray(out0, np.float64) + np.asarray(vec_FxD, np.float64)
  flat = {}
  for i, l in enumerate(layers):
    keys, cur = probe(params, deltas.unflatten(flat) if flat else None, batch)
    K = np.asarray(keys[l], np.float64)
    R = (z - np.asarray(cur, np.float64)) / (len(layers) - i)
    if null_space:
      P = null_space_projector(covs[l], threshold)
      A = np.linalg.solve(P @ (K.T @ K) @ P + hp.lam * np.eye(len(P)), P @ K.T)  # dW = A R
    else:
      A = np.linalg.solve(hp.lam * np.asarray(covs[l], np.float64) + K.T @ K, K.T)
    # dW = A R with A [F, n], R [n, D]: stored as factors (rank <= n), never as a dense kernel per fact.
    flat[down_path(l)] = deltas.LowRank(a=jnp.asarray(A, jnp.float32), b=jnp.asarray(R, jnp.float32), scale=1.0)
  return deltas.unflatten(flat), loss
