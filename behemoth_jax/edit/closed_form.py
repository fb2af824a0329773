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

import dataclasses

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
  """(positions [N] where keys are read and values written, KL positions [N]): the subject's last token
  (ROME), or with key_position="last" the last prompt token (where causal tracing on models trained here
  finds the recall: WORKSPACE.md, "Locate-then-edit"). The KL term is read at the subject's last token in
  both cases: the reference's "{subject} is a" prompt ends there, and so does every row cut after its
  subject (the model is causal). key_position="last" needs one answer position per row (runner.validate
  refuses it with loss_on=sentence)."""
  sub = subject_positions(batch["inputs"], batch["subject_token"])
  if key_position == "last":
    return batch["positions"][:, 0], sub
  return sub, sub


@dataclasses.dataclass(frozen=True)
class ValueOptions:
  """How the target value is optimised (ROME's compute_v / MEMIT's compute_z; defaults: the reference's
  hparams for GPT-2 XL, WORKSPACE.md "Locate-then-edit").

  steps, learning_rate: Adam on the added vector (v_num_grad_steps, v_lr); at most steps - 1 updates, as in
  the reference (its last iteration only evaluates). kl_weight: KL(edited || frozen) of the next-token
  distribution at the subject's last token (kl_factor). clamp_norm_factor: after every step the vector is
  projected onto the ball of radius factor x ||v_init|| (0: no clamp); v_init is the MLP output at the
  write position (clamp_on="mlp_out", ROME: factor 4) or the stream after the block (clamp_on="block_out",
  MEMIT: 0.75). weight_decay: + weight_decay x ||delta|| / ||v_init||^2 in the loss (v_weight_decay).
  early_stop: stop once the loss (before the update) is below it (0: never; the reference's 5e-2).
  """
  steps: int = 20
  learning_rate: float = 0.5
  kl_weight: float = 0.0625
  key_position: str = "subject"
  clamp_norm_factor: float = 4.0
  clamp_on: str = "mlp_out"
  weight_decay: float = 0.5
  early_stop: float = 5e-2


def value_options(hp, clamp_on: str) -> ValueOptions:
  """The value optimisation of an edit's hyperparameters (methods.EditHParams)."""
  return ValueOptions(steps=hp.v_steps, learning_rate=hp.v_lr, kl_weight=hp.kl_weight,
                      key_position=hp.key_position, clamp_norm_factor=hp.clamp_norm_factor, clamp_on=clamp_on,
                      weight_decay=hp.v_weight_decay, early_stop=hp.v_early_stop)


def optimize_value(frozen, batch, cfg: model.ModelConfig, layer: int, opts: ValueOptions):
  """One fact's target: (delta* [D] added to layer `layer`'s MLP output at the key position, k* [F] the key
  there averaged over the fact's edit rows, loss per step [steps]: after an early stop, the loss it stopped
  at, so the last entry is always the final loss).

  batch: the independent plan's rows for one edit (inputs [N, L], positions/targets/mask [N, K], is_edit
  [N]: only edit rows are used) and subject_token (scalar). The KL rows are the same edit rows read at the
  subject's last token, except rows whose answer is predicted there (e.g. relationship-subject-object
  templates): no scored fact's answer distribution is constrained (the KL set is disjoint from every split).
  """
  inputs, is_edit = batch["inputs"], batch["is_edit"]
  N, L = inputs.shape
  pos_N, sub_N = edit_positions(batch, opts.key_position)
  clean = model.apply(frozen, inputs, cfg, head=False)
  residual, attn, key = clean.residual[layer], clean.attn_out[layer], clean.mlp_key[layer]
  w_N = (is_edit & batch["mask"].any(-1)).astype(jnp.float32)
  k_NxF = jnp.take_along_axis(key, pos_N[:, None, None], axis=1)[:, 0]
  k_star = (k_NxF * w_N[:, None]).sum(0) / jnp.maximum(w_N.sum(), 1.0)
  ref_BxTxD = clean.mlp_out[layer] if opts.clamp_on == "mlp_out" else clean.residual[layer + 1]
  v_init_N = jnp.linalg.norm(jnp.take_along_axis(ref_BxTxD, pos_N[:, None, None], axis=1)[:, 0], axis=-1)
  v_init = (v_init_N * w_N).sum() / jnp.maximum(w_N.sum(), 1.0)

  answers_at_sub = ((batch["positions"] == sub_N[:, None]) & batch["mask"]).any(-1)
  kl_w = w_N * (~answers_at_sub).astype(jnp.float32)
  kl_ref = jax.nn.log_softmax(model.apply(frozen, inputs, cfg, head_positions=sub_N[:, None]).logits[:, 0])
  same = opts.key_position != "last"  # the KL reads the same forward as the NLL

  def edited_logits(vec, write_N, head_NxK):
    # Only the edited layer and those above it run: the stream below is the frozen model's.
    iv = model.Interventions(mlp_add={layer: _one_hot_add(vec, write_N, L)})
    return model.apply(frozen, inputs, cfg, interventions=iv, start_layer=layer, residual_BxTxD=residual,
                       start_cached=(attn, key), head_positions=head_NxK, prune_to_head=True).logits

  def loss_fn(vec):
    K = batch["positions"].shape[1]
    heads = jnp.concatenate([batch["positions"], sub_N[:, None]], axis=1) if same else batch["positions"]
    logits = edited_logits(vec, pos_N, heads)
    V = logits.shape[-1]
    nll = losses.token_nll(logits[:, :K].reshape(N * K, V), batch["targets"].reshape(-1)).reshape(N, K)
    mask = batch["mask"].astype(jnp.float32) * w_N[:, None]
    edit_term = (nll * mask).sum() / jnp.maximum(mask.sum(), 1.0)
    kl_logits = logits[:, K] if same else edited_logits(vec, sub_N, sub_N[:, None])[:, 0]
    kl_log = jax.nn.log_softmax(kl_logits)
    kl_N = (jnp.exp(kl_log) * (kl_log - kl_ref)).sum(-1)  # KL(edited || frozen), the reference's direction
    kl_term = (kl_N * kl_w).sum() / jnp.maximum(kl_w.sum(), 1.0)
    # ||delta|| with a zero gradient at 0 (the optimisation starts there; jnp.linalg.norm's is NaN)
    norm = jnp.sqrt(jnp.maximum(jnp.sum(vec * vec), 1e-30))
    decay = opts.weight_decay * norm / jnp.maximum(v_init, 1e-12) ** 2 if opts.weight_decay else 0.0
    return edit_term + opts.kl_weight * kl_term + decay

  opt = optax.adam(opts.learning_rate)
  vec0 = jnp.zeros((cfg.width,), jnp.float32)
  max_norm = opts.clamp_norm_factor * v_init

  def step(carry, i):
    vec, state, done, last = carry
    loss, g = jax.value_and_grad(loss_fn)(vec)
    loss = jnp.where(done, last, loss)
    # The reference breaks before the update once the loss is small, and its last iteration only evaluates.
    stop = done | (loss < opts.early_stop) | (i == opts.steps - 1)
    updates, new_state = opt.update(g, state, vec)
    new = optax.apply_updates(vec, updates)
    if opts.clamp_norm_factor > 0:
      norm = jnp.linalg.norm(new)
      new = jnp.where(norm > max_norm, new * max_norm / jnp.maximum(norm, 1e-12), new)
    keep = lambda old, upd: jax.tree.map(lambda o, u: jnp.where(stop, o, u), old, upd)
    return (keep(vec, new), keep(state, new_state), stop, loss), loss

  init = (vec0, opt.init(vec0), jnp.zeros((), bool), jnp.zeros((), jnp.float32))
  (vec, _, _, _), loss = jax.lax.scan(step, init, jnp.arange(opts.steps))
  return vec, k_star, loss


def rome_delta(frozen, batch, cov_inv_FxF, cfg: model.ModelConfig, layer: int, opts: ValueOptions):
  """One fact's rank-one edit of layers/<layer>/mlp/down/kernel (batch: as `optimize_value`), all on the
  device in float32 (jittable). Returns (delta, loss per step). The runner's trainers factor on the host in
  float64 instead (rank_one_factors): C^-1 of GELU keys is ill-conditioned, and float32 products with it
  depend on summation order (one device against several gave different edits)."""
  vec, k_star, loss = optimize_value(frozen, batch, cfg, layer, opts)
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


NULLSPACE_RULES = ("absolute", "relative")


def null_space_projector(second_moment_FxF, threshold: float = 2e-2, rule: str = "absolute") -> np.ndarray:
  """P [F, F] onto the eigenvectors of K0^T K0 (or of the corpus covariance C, AlphaEdit's stand-in for
  all preserved knowledge) whose eigenvalues are below the threshold: the directions preserved keys do not
  use. rule "absolute": eigenvalue < threshold (AlphaEdit's code: 2e-2 on the token-normalised C);
  "relative": eigenvalue < threshold x the largest. float64."""
  w, V = np.linalg.eigh(np.asarray(second_moment_FxF, np.float64))
  cut = threshold if rule == "absolute" else threshold * max(w.max(), 1e-300)
  Vs = V[:, w < cut]
  return Vs @ Vs.T


def protected_directions(second_moment_FxF, threshold: float, rule: str) -> int:
  """How many directions a null-space projector keeps fixed (eigenvalues at or above its cut)."""
  F = len(second_moment_FxF)
  return int(F - round(np.trace(null_space_projector(second_moment_FxF, threshold, rule))))


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


def rome_extras(plan, dataset) -> dict:
  """What `rome_delta` needs beside the plan's rows, per edit: the subject's last token."""
  sub = dataset.vocab.subjects.tokens(np.asarray(plan.head))[..., -1].astype(np.int32)
  return {"subject_token": sub}


def make_rome_trainer(cfg: model.ModelConfig, layer: int, opts: ValueOptions, cov_inv_FxF: np.ndarray,
                      mesh=None):
  """`(frozen, batch [F, ...], keys [F]) -> (deltas [F, ...], losses [F, steps])` like
  editing.make_independent_trainer (keys unused: the edit is deterministic): the value optimisation
  vmapped over facts in one jitted program, the rank-one factors on the host in float64
  (rank_one_factors). With a mesh, the facts are split along its `facts` axis (each device optimises its
  share; the frozen model on every device)."""
  values = jax.vmap(lambda fz, b: optimize_value(fz, b, cfg, layer, opts), in_axes=(None, 0))
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
                              chunk: int = 64):
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
  opts = value_options(hp, clamp_on="block_out")
  values = jax.jit(jax.vmap(lambda fz, b: optimize_value(fz, b, cfg, last, opts)[::2], in_axes=(None, 0)))
  probe = make_state_probe(cfg, tuple(layers), last, hp.key_position)
  projectors = ({l: null_space_projector(covs[l], hp.nullspace_threshold, hp.nullspace_rule) for l in layers}
                if null_space else {})

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
                        null_space: bool = False, chunk: int = 64):
  """One least-squares update of every fact of `batch` (make_least_squares_editor, no earlier edits):
  (delta, value-optimisation loss [F, steps])."""
  delta, loss, _ = make_least_squares_editor(cfg, layers, covs, hp, null_space, chunk)(params, batch)
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
