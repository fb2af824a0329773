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
     as deltas.LowRank(a = C^-1 k* / (k*^T C^-1 k*), b = delta*), never a dense [F, D] per fact; the
     runner forms `a` on the host in float64 (rank_one_factors).

Least-squares batch edit (`memit_solve`, many facts at once, float64 on the host):
  dW = (lambda C + K K^T)^-1 K R^T in our x @ W layout (the paper's R K^T (lambda C + K K^T)^-1, transposed),
  K [F, n] keys, R [D, n] residuals.
Null-space edit (`null_space_projector`, `alphaedit_solve`): the same update restricted to the null space
of preserved keys K0 (P projects onto the eigenvectors of K0 K0^T with eigenvalues below a threshold), so
K0^T dW = 0 and preserved facts' outputs do not move; sequentially, earlier edits' keys Kp also enter the
solve. The execution modes use `make_least_squares_editor` (factors A with dW = A R, built once);
`solve_bytes` / `max_keys` size what the solve holds for n keys.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from behemoth_jax.model import deltas, losses, model


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
  """One fact's rank-one edit of layers/<layer>/mlp/down/kernel (batch: as `optimize_value`), all on the
  device in float32 (jittable). Returns (delta, loss per step). The runner's trainers factor on the host in
  float64 instead (rank_one_factors): C^-1 of GELU keys is ill-conditioned, and float32 products with it
  depend on summation order (one device against several gave different edits)."""
  vec, k_star, loss = optimize_value(frozen, batch, cfg, layer, steps, learning_rate, kl_weight, key_position)
  u = cov_inv_FxF.astype(jnp.float32) @ k_star
  a = u / jnp.dot(u, k_star)
  delta = deltas.unflatten({down_path(layer): deltas.LowRank(a=a[:, None], b=vec[None, :], scale=1.0)})
  return delta, loss


def rank_one_factors(vec_NxD, k_star_NxF, cov_inv_FxF, layer: int):
  """Per fact the rank-one delta (host, float64 products): a = C^-1 k* / (k*^T C^-1 k*), b = delta*, so
  k* dW = delta* exactly. Leading axis N (facts): LowRank(a [N, F, 1], b [N, 1, D])."""
  K = np.asarray(k_star_NxF, np.float64)
  U = K @ np.asarray(cov_inv_FxF, np.float64)  # C^-1 is symmetric
  a = U / np.sum(U * K, axis=-1, keepdims=True)
  vec = np.asarray(vec_NxD, np.float32)
  return deltas.unflatten({down_path(layer): deltas.LowRank(a=a.astype(np.float32)[:, :, None],
                                                            b=vec[:, None, :], scale=1.0)})


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


def kl_prompts(edit_set, dataset, heads, relationships) -> tuple[np.ndarray, np.ndarray]:
  """Per edit, the prompts of its subject's other facts (every other relationship, in the edit's training
  template): (tokens [F, R - 1, P], valid [F, R - 1]); one invalid dummy row when R = 1."""
  import dataclasses  # pylint: disable=g-import-not-at-top
  from data_gen.edit_sets.edit_files import EDIT_SPLIT_NAMES  # pylint: disable=g-import-not-at-top
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
                      cov_inv_FxF: np.ndarray, key_position: str = "subject", mesh=None):
  """`(frozen, batch [F, ...], keys [F]) -> (deltas [F, ...], losses [F, steps])` like
  editing.make_independent_trainer (keys unused: the edit is deterministic): the value optimisation
  vmapped over facts in one jitted program, the rank-one factors on the host in float64
  (rank_one_factors). With a mesh, the facts are split along its `facts` axis (each device optimises its
  share; the frozen model on every device)."""
  values = jax.vmap(lambda fz, b: optimize_value(fz, b, cfg, layer, steps, learning_rate, kl_weight,
                                                 key_position), in_axes=(None, 0))
  if mesh is None:
    fn = jax.jit(values)
  else:
    from jax.sharding import NamedSharding, PartitionSpec  # pylint: disable=g-import-not-at-top
    facts, rep = NamedSharding(mesh, PartitionSpec(mesh.axis_names[0])), NamedSharding(mesh, PartitionSpec())
    fn = jax.jit(values, in_shardings=(rep, facts), out_shardings=(facts, facts, facts))

  def train(frozen, batch, keys):
    del keys
    vec, k_star, loss = fn(frozen, batch)
    return rank_one_factors(vec, k_star, cov_inv_FxF, layer), loss

  return train


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


def map_fact_chunks(fn, batch, chunk: int):
  """fn over `batch` ([F, ...] arrays) in chunks of `chunk` facts (the last padded by repeating its last
  fact: one compile for every chunk), outputs concatenated on the host and cut back to F. Device memory
  then grows with the chunk, not with F."""
  F = next(iter(jax.tree.leaves(batch))).shape[0]
  size = max(1, min(chunk, F))
  parts = []
  for start in range(0, F, size):
    idx = np.minimum(np.arange(start, start + size), F - 1)
    out = fn(jax.tree.map(lambda x: x[idx], batch))
    parts.append(jax.tree.map(lambda x: np.asarray(x)[:min(size, F - start)], out))
  return jax.tree.map(lambda *xs: np.concatenate(xs), *parts)


def least_squares_factors(cov_FxF, keys_nxF, lam: float, projector_FxF=None, prev_keys_pxF=None) -> np.ndarray:
  """A [F, n] with dW = A R for residuals R [n, D] (float64, host): MEMIT's (lam C + K^T K)^-1 K^T, or with
  a null-space projector P AlphaEdit's (P (K^T K + Kp^T Kp) P + lam I)^-1 P K^T (Kp: earlier edits' keys,
  whose outputs the update must also leave in place). Factors, so a layer's update stays rank <= n."""
  K = np.asarray(keys_nxF, np.float64)
  if projector_FxF is None:
    return np.linalg.solve(lam * np.asarray(cov_FxF, np.float64) + K.T @ K, K.T)
  P = np.asarray(projector_FxF, np.float64)
  M = K.T @ K
  if prev_keys_pxF is not None and len(prev_keys_pxF):
    Kp = np.asarray(prev_keys_pxF, np.float64)
    M = M + Kp.T @ Kp
  return np.linalg.solve(P @ M @ P + lam * np.eye(len(P)), P @ K.T)


def make_least_squares_editor(cfg: model.ModelConfig, layers: list[int], covs: dict, hp, null_space: bool = False,
                              threshold: float = 1e-2, chunk: int = 64):
  """`edit(params, batch [F, ...], prev_keys {layer: [p, Fk]} | None) -> (delta, value loss [F, steps],
  keys {layer: [F, Fk]})`: every fact of `batch` (the independent plan's rows plus rome_extras) in one
  update of the down-projections of `layers` (MEMIT's spread; AlphaEdit with null_space=True, whose
  projector comes from C and whose solve also keeps prev_keys' outputs). The jitted parts are built once
  here, so calling `edit` once per sequential step compiles nothing new.

  Targets: delta*_i optimised at the last layer as for rank-one edits; z_i = the stream after the last
  layer + delta*_i. Layers in ascending order: keys under the model edited so far, the residual
  (z_i - current stream) / (layers left), solved in float64 on the host (least_squares_factors) and stored
  as LowRank(a = A [Fk, F], b = R [F, D]) per layer (rank <= F), never as a dense kernel per fact."""
  last = layers[-1]
  values = jax.jit(jax.vmap(lambda fz, b: optimize_value(fz, b, cfg, last, hp.steps, hp.learning_rate,
                                                         hp.kl_weight, hp.key_position)[::2], in_axes=(None, 0)))
  probe = make_state_probe(cfg, tuple(layers), last, hp.key_position)
  projectors = {l: null_space_projector(covs[l], threshold) for l in layers} if null_space else {}

  def edit(params, batch, prev_keys=None):
    vec_FxD, loss = map_fact_chunks(lambda b: values(params, b), batch, chunk)
    _, out0 = map_fact_chunks(lambda b: probe(params, None, b), batch, chunk)
    z = np.asarray(out0, np.float64) + np.asarray(vec_FxD, np.float64)
    flat, used = {}, {}
    for i, l in enumerate(layers):
      current = deltas.unflatten(flat) if flat else None
      keys, cur = map_fact_chunks(lambda b, d=current: probe(params, d, b), batch, chunk)
      used[l] = np.asarray(keys[l], np.float64)
      R = (z - np.asarray(cur, np.float64)) / (len(layers) - i)
      A = least_squares_factors(covs[l], used[l], hp.lam, projectors.get(l),
                                None if prev_keys is None else prev_keys.get(l))
      flat[down_path(l)] = deltas.LowRank(a=jnp.asarray(A, jnp.float32), b=jnp.asarray(R, jnp.float32), scale=1.0)
    return deltas.unflatten(flat), loss, used

  return edit


def least_squares_delta(params, cfg: model.ModelConfig, batch, layers: list[int], covs: dict, hp,
                        null_space: bool = False, threshold: float = 1e-2, chunk: int = 64):
  """One least-squares update of every fact of `batch` (make_least_squares_editor, no earlier edits):
  (delta, value-optimisation loss [F, steps])."""
  delta, loss, _ = make_least_squares_editor(cfg, layers, covs, hp, null_space, threshold, chunk)(params, batch)
  return delta, loss


# ---- how many keys fit --------------------------------------------------------------------------------------


def solve_bytes(num_keys: int, mlp_width: int, width: int, layers: int, eval_tokens: int) -> int:
  """Bytes a least-squares edit of `num_keys` facts over `layers` down-projections holds at once: on the
  host in float64, each fact's target, stream and residual vectors (5 x [n, D]), its keys at every layer
  ([n, Fk] per layer, kept for alphaedit's later steps), the solve's right-hand side and factor
  ([Fk, n] twice) and the [Fk, Fk] matrices (C, K^T K, the projector, the system: 4); on the device in
  float32, the delta's factors (a [Fk, n], b [n, D] per layer) and, while scoring under it, one
  evaluation chunk's x a ([eval_tokens, n]). The value optimisation and key probes run in chunks of facts,
  so they do not grow with n."""
  n, Fk, D = int(num_keys), int(mlp_width), int(width)
  host = 8 * (5 * n * D + layers * n * Fk + 2 * Fk * n + 4 * Fk * Fk)
  device = 4 * (layers * (Fk * n + n * D) + eval_tokens * n)
  return host + device


def max_keys(budget_bytes: int, mlp_width: int, width: int, layers: int, eval_tokens: int) -> int:
  """The largest n with solve_bytes(n, ...) <= budget_bytes (0 when not even one fits)."""
  fixed = solve_bytes(0, mlp_width, width, layers, eval_tokens)
  per_key = solve_bytes(1, mlp_width, width, layers, eval_tokens) - fixed
  return max(0, (int(budget_bytes) - fixed) // per_key)


def available_bytes() -> int:
  """Memory the solve may use here: the host's available physical memory, and the accelerator's free
  memory where the backend reports it (the smaller of the two)."""
  import os  # pylint: disable=g-import-not-at-top
  avail = [os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")]
  stats = jax.devices()[0].memory_stats() or {}
  if "bytes_limit" in stats:
    avail.append(int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0)))
  return int(min(avail))
