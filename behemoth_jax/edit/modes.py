"""Execution modes of an edit method, and the before/after measurement of each edit.

- Independent: F single-fact edits, each its own delta trained from the same frozen model on its own rows
  (its fact plus `retain_per_edit` retain rows), and each evaluated with its own delta. One jitted program
  vmapped over the edits of a chunk; with a mesh, the chunk is sharded along its `facts` axis.
- Batch: all n facts of the edit set in one delta, trained on the builder's mix (weighted minibatches),
  evaluated once on every evaluation split.
- Sequential: the edits one after another, each delta trained on the model with all previous deltas
  applied (composed), evaluated after each edit (its own fact and every earlier one) and after all.

Measurement: `edit_metrics.row_metrics` per fact (greedy exact match of the whole answer against the
post-edit answer `exact_match` and the pre-edit one `exact_match_old`, both answers' log-probabilities,
efficacy, teacher-forced token accuracy, rank among the relationship's values), from one teacher-forced
pass per answer form (equal to greedy decoding, see evaluate.py) with the head at the answer positions only.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from behemoth_jax.edit import edit_rows, methods
from behemoth_jax.evaluate import edit_metrics
from behemoth_jax.model import deltas, model

FACTS_AXIS = "facts"


def make_exact_match(cfg: model.ModelConfig) -> Callable:
  """`(params, delta, prompt [N, P], answer [N, A]) -> bool[N]`, not jitted (callers jit/vmap it)."""

  def exact_match(params, delta, prompt_NxP, answer_NxA):
    P_, A = prompt_NxP.shape[1], answer_NxA.shape[1]
    tokens = jnp.concatenate([prompt_NxP, answer_NxA[:, :-1]], 1)
    positions = jnp.broadcast_to(jnp.arange(P_ - 1, P_ + A - 1, dtype=jnp.int32), answer_NxA.shape)
    logits = model.apply(params, tokens, cfg, delta=delta, head_positions=positions, prune_to_head=True).logits
    return jnp.all(jnp.argmax(logits, -1) == answer_NxA, -1)

  return exact_match


def bucket(n: int, least: int = 16) -> int:
  """The smallest power of two >= max(n, least): row counts padded to it compile one program per bucket
  (the rows added are copies, dropped after the call)."""
  return 1 << (max(int(n), least) - 1).bit_length()


@dataclasses.dataclass
class Evaluator:
  """Exact match of every evaluation split, for the frozen model and under deltas (jitted once per shape)."""

  cfg: model.ModelConfig
  chunk: int = 1024
  # split key -> (candidates bool[G, V], group int32[N]) for the rank metric (edit_metrics.value_candidates);
  # a split without an entry gets rank NaN.
  candidates: dict = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    em = make_exact_match(self.cfg)
    self._plain = jax.jit(em)
    # Many edits, each its own delta and its own rows: [F, M, P] prompts.
    self._per_edit = jax.jit(jax.vmap(em, in_axes=(None, 0, 0, 0)))
    rm = lambda p, d, np_, na, op, oa, c, g: edit_metrics.row_metrics(p, d, (np_, na), (op, oa), self.cfg, c, g)
    self._scores = jax.jit(rm)
    self._scores_per_edit = jax.jit(jax.vmap(rm, in_axes=(None, 0, 0, 0, 0, 0, None, 0)))
    self._groups = bucket(max([len(c) for c, _ in self.candidates.values()], default=1))

  def _cands(self, split):
    """(candidates bool[G', V], group int32[N]) with G' = G rounded up to a power of two (unused all-False
    rows, G' = the largest split's G rounded up): splits of relationships with different value counts
    then share one compiled program."""
    if split.key not in self.candidates:
      return np.zeros((1, self.cfg.vocab_size), bool), np.zeros(len(split), np.int32)
    cand, group = self.candidates[split.key]
    G = len(cand)
    return np.concatenate([cand, np.zeros((self._groups - G, cand.shape[1]), bool)]), group

  @staticmethod
  def _host(metrics: dict) -> dict:
    out = {k: np.asarray(v).astype(np.float64) for k, v in metrics.items()}
    out["rank"] = np.where(out["rank"] < 1, np.nan, out["rank"])  # -1: the answer holds no value (refusal)
    return out

  def scores(self, params, delta, split) -> dict:
    """{metric: float64[N]} of `split` (an EvalSplit) under one delta, in fixed-size chunks (NaN: undefined)."""
    N = len(split)
    (new_p, new_a), (old_p, old_a) = split.probes["exact_match"], split.probes["exact_match_old"]
    cand, group = self._cands(split)
    size = min(self.chunk, bucket(N))  # a power of two: one program serves splits of similar size
    parts = []
    for start in range(0, N, size):
      idx = np.minimum(np.arange(start, start + size), N - 1)  # the last chunk repeats its last row
      got = self._host(self._scores(params, delta, new_p[idx], new_a[idx], old_p[idx], old_a[idx], cand, group[idx]))
      parts.append({k: v[:min(size, N - start)] for k, v in got.items()})
    if not parts:
      return {m: np.zeros(0) for m in edit_metrics.METRICS}
    return {m: np.concatenate([p[m] for p in parts]) for m in edit_metrics.METRICS}

  def scores_per_edit(self, params, deltas_F, split, index_FxM) -> dict:
    """{metric: float64[F, M]}: rows index_FxM[f] of `split` under edit f's delta."""
    (new_p, new_a), (old_p, old_a) = split.probes["exact_match"], split.probes["exact_match_old"]
    cand, group = self._cands(split)
    M = index_FxM.shape[1]
    # Columns padded to a power of two with copies of the last (dropped again below): one program per bucket.
    i = np.concatenate([index_FxM, np.repeat(index_FxM[:, -1:], bucket(M) - M, axis=1)], axis=1)
    got = self._host(self._scores_per_edit(params, deltas_F, new_p[i], new_a[i], old_p[i], old_a[i], cand,
                                           group[i]))
    return {k: v[:, :M] for k, v in got.items()}

  def correct(self, params, delta, prompt_NxP, answer_NxA) -> np.ndarray:
    """bool[N] under one delta (None: the frozen model), in fixed-size chunks (one compile per shape)."""
    N = len(prompt_NxP)
    out = np.zeros(N, bool)
    size = min(self.chunk, bucket(N))
    for start in range(0, N, size):
      stop = min(start + size, N)
      idx = np.minimum(np.arange(start, start + size), N - 1)  # the last chunk repeats its last row
      got = self._plain(params, delta, prompt_NxP[idx], answer_NxA[idx])
      out[start:stop] = np.asarray(got)[:stop - start]
    return out

  def correct_per_edit(self, params, deltas_F, prompt_FxMxP, answer_FxMxA) -> np.ndarray:
    return np.asarray(self._per_edit(params, deltas_F, prompt_FxMxP, answer_FxMxA))


# ---- independent ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class IndependentPlan:
  """Everything an independent run needs, as host arrays: training rows per edit, linked eval rows."""

  rows: edit_rows.Rows  # [F, E + R, ...]
  is_edit: np.ndarray  # [E + R]
  head: np.ndarray  # [F] one per distinct edit
  relationship: np.ndarray
  after: np.ndarray
  links: dict  # split key -> (index [F, M], mask [F, M])
  # Per-edit arrays [F, ...] a method needs beside the rows (rome: subject token, KL prompts).
  extra: dict = dataclasses.field(default_factory=dict)

  @property
  def num_edits(self) -> int:
    return self.rows.inputs_NxL.shape[0]


def plan_independent(ts: edit_rows.TrainSet, evals: list[edit_rows.EvalSplit], retain_per_edit: int,
                     eval_shared: int, seed: int) -> IndependentPlan:
  rows, is_edit, groups = edit_rows.independent_rows(ts, retain_per_edit, seed)
  first = np.array([g[0] for g in groups])
  head, rel, after = ts.edit_head[first], ts.edit_relationship[first], ts.edit_after[first]
  links = {s.key: edit_rows.linked_rows(s, head, rel, after, eval_shared, seed) for s in evals}
  return IndependentPlan(rows, is_edit, head, rel, after, links)


def batch_of(rows: edit_rows.Rows, is_edit: np.ndarray) -> dict:
  F, N = rows.inputs_NxL.shape[:2]
  return {**{k: jnp.asarray(v) for k, v in rows.arrays().items()},
          "is_edit": jnp.broadcast_to(jnp.asarray(is_edit), (F, N)), "weight": jnp.ones((F, N), jnp.float32)}


def make_independent_trainer(cfg, hp: methods.EditHParams, paths: list[str],
                             mesh: Mesh | None = None) -> Callable:
  """jitted `(frozen, batch [F, ...], keys [F]) -> (deltas [F, ...], losses [F, steps])`, vmapped over
  edits; the frozen parameters are an argument (not a constant folded into the program)."""
  train = jax.vmap(lambda fz, b, k: methods.train_delta(fz, b, k, hp, cfg, paths), in_axes=(None, 0, 0))
  if mesh is None:
    return jax.jit(train)
  facts, rep = NamedSharding(mesh, P(FACTS_AXIS)), NamedSharding(mesh, P())
  return jax.jit(train, in_shardings=(rep, facts, facts), out_shardings=(facts, facts))


def facts_mesh(devices=None) -> Mesh:
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (FACTS_AXIS,))


def edit_keys(seed: int, edit_index: np.ndarray) -> jax.Array:
  base = jax.random.key(seed)
  return jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.asarray(edit_index, jnp.uint32))


def run_independent_chunk(plan: IndependentPlan, start: int, stop: int, chunk: int, trainer: Callable,
                          evaluator: Evaluator, frozen, evals: list[edit_rows.EvalSplit], seed: int,
                          before: dict) -> dict:
  """Edits [start, stop) padded to `chunk` (one compile for every chunk). Returns host arrays:
  deltas [n, ...], loss [n, steps], and per split key and metric (before, after, count) [n] each."""
  n = stop - start
  idx = np.minimum(np.arange(start, start + chunk), stop - 1)
  batch = batch_of(plan.rows.take(idx), plan.is_edit)
  batch.update({k: jnp.asarray(v[idx]) for k, v in plan.extra.items()})
  deltas_F, loss_FxS = trainer(frozen, batch, edit_keys(seed, idx))
  out = {"loss": np.asarray(loss_FxS)[:n], "metrics": {}}
  for s in evals:
    index_FxM, mask_FxM = plan.links[s.key]
    index_FxM, mask_FxM = index_FxM[idx], mask_FxM[idx]
    count = mask_FxM.sum(1)
    after_all = evaluator.scores_per_edit(frozen, deltas_F, s, index_FxM)
    for metric, after in after_all.items():
      was = before[s.key][metric][index_FxM]
      out["metrics"][(s.key, metric)] = (masked_mean(was, mask_FxM)[:n], masked_mean(after, mask_FxM)[:n], count[:n])
    if s.name != "edited" and "exact_match" in after_all:  # locality of what the model knew
      known = mask_FxM & (before[s.key]["exact_match"][index_FxM] == 1)
      out["metrics"][(s.key, KEPT)] = (masked_mean(np.ones_like(known, float), known)[:n],
                                       masked_mean(after_all["exact_match"], known)[:n], known.sum(1)[:n])
  out["deltas"] = jax.tree.map(lambda x: np.asarray(x)[:n], deltas_F)
  return out


# Of a locality split's facts the model answered (greedy exact match) before the edit, the share it still
# answers after it: locality relative to what the model knew, with its own count.
KEPT = "kept_conditioned"


def masked_mean(x_FxM, mask_FxM) -> np.ndarray:
  """Per edit, the mean over its linked rows of the defined (finite) values; NaN where there is none."""
  x = np.asarray(x_FxM, np.float64)
  ok = mask_FxM & np.isfinite(x)
  c = ok.sum(1)
  return np.where(c > 0, np.where(ok, x, 0.0).sum(1) / np.maximum(c, 1), np.nan)


def frozen_scores(evaluator: Evaluator, frozen, evals: list[edit_rows.EvalSplit], delta=None) -> dict:
  """{split key: {metric: float64[N]}} of every edit_metrics metric for one model."""
  return {s.key: evaluator.scores(frozen, delta, s) for s in evals}


def frozen_correct(evaluator: Evaluator, frozen, evals: list[edit_rows.EvalSplit], delta=None) -> dict:
  """{split key: {metric: bool[N]}} for one model (the frozen one, or frozen + delta)."""
  return {s.key: {m: evaluator.correct(frozen, delta, p, a) for m, (p, a) in s.probes.items()} for s in evals}


# ---- batch and sequential ---------------------------------------------------------------------------------


def batch_rows(ts: edit_rows.TrainSet) -> dict:
  """Every training row in one pool with the builder's weights: edit rows and retain rows."""
  rows = edit_rows.concat_rows([ts.edit, ts.retain])
  return {**{k: jnp.asarray(v) for k, v in rows.arrays().items()},
          "is_edit": jnp.asarray(np.arange(len(rows)) < len(ts.edit)),
          "weight": jnp.asarray(np.concatenate([ts.edit_weight, ts.retain_weight]).astype(np.float32))}


def train_batch(frozen, ts: edit_rows.TrainSet, hp: methods.EditHParams, cfg, paths, seed: int):
  """One delta for all the edit set's facts (weighted minibatches of hp.batch_size rows per step)."""
  fn = jax.jit(lambda fz, b, k: methods.train_delta(fz, b, k, hp, cfg, paths, sample=True))
  return fn(frozen, batch_rows(ts), jax.random.key(seed))


def run_sequential(params, plan: IndependentPlan, hp: methods.EditHParams, cfg, paths, seed: int,
                   evaluator: Evaluator, evals: list[edit_rows.EvalSplit], on_edit: Callable | None = None,
                   train: Callable | None = None, track_unrelated: int = 0):
  """Edits applied one after another. After edit i: exact match of each edit 0..i's own fact (the
  edited split's linked rows), and with track_unrelated > 0 of that many reg_data facts (`unrelated`).
  train: `(frozen, batch, key) -> (delta, loss)` in place of the gradient methods' (closed-form edits).
  Returns (composed delta, per-edit records)."""
  step = train or jax.jit(lambda frozen, b, k: methods.train_delta(frozen, b, k, hp, cfg, paths))
  unrelated = next((s for s in evals if s.name == "reg_data"), None) if track_unrelated else None
  composed = None
  records = []
  edited = next((s for s in evals if s.name in ("edited", "censored")), None)
  for i in range(plan.num_edits):
    frozen = deltas.merge(params, composed) if composed else params
    batch = jax.tree.map(lambda x: x[0], batch_of(plan.rows.take(np.array([i])), plan.is_edit))
    batch.update({k: jnp.asarray(v[i]) for k, v in plan.extra.items()})
    delta, loss = step(frozen, batch, edit_keys(seed, np.array([i]))[0])
    composed = deltas.compose(composed, delta) if composed else delta
    record = {"edit": i, "final_loss": float(loss[-1])}
    if edited is not None:
      index_FxM, mask_FxM = plan.links[edited.key]
      rows = np.unique(index_FxM[:i + 1][mask_FxM[:i + 1]])
      prompt, answer = edited.probes["exact_match"]
      ok = evaluator.correct(params, composed, prompt[rows], answer[rows])
      own = np.isin(rows, index_FxM[i][mask_FxM[i]])
      record.update(this_edit=float(ok[own].mean()) if own.any() else float("nan"),
                    edits_so_far=float(ok.mean()), facts_so_far=int(len(rows)))
    if unrelated is not None:
      prompt, answer = unrelated.probes["exact_match"]
      record["unrelated"] = float(evaluator.correct(params, composed, prompt[:track_unrelated],
                                                    answer[:track_unrelated]).mean())
    records.append(record)
    if on_edit:
      on_edit(record)
  return composed, records
