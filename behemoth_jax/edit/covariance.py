"""Exact second moments of MLP keys over the training corpus: C_l = E[k k^T] at layer l.

Locate-then-edit methods (ROME, MEMIT, AlphaEdit) weigh their update by C^-1, the second moment of the
down-projection's inputs ("keys") over the text the model was trained on. The papers estimate it from a
sample of Wikipedia; here every training sentence is known, so the expectation is a finite sum.

What is averaged: every document of the corpus run on its own from position 0 (training packs several
documents into a row, so a document's later tokens also saw earlier documents; a document alone is the
sentence-level distribution the edit prompts come from), every non-padding token of it, equal weight per
token. The corpus repeats passes; a pass of each kind (the first long pass when questions make the first
passes longer, and the first short pass) is computed and weighted by how many documents of that kind the
corpus holds. That equals the full sum when every pass of a kind renders the same documents in another
order (true of the shuffled corpora here; tests/edit/test_closed_form.py checks it against a brute-force sum
over every document of the tiny corpus).

Sums run on device in float32 per chunk of documents and accumulate on the host in float64.
"""

from __future__ import annotations

import hashlib
import io
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from behemoth_jax.model import model
from data_gen.common import atomic


def _sums_fn(cfg: model.ModelConfig, layers: tuple[int, ...]):
  @jax.jit
  def sums(params, tokens_NxT, lengths_N):
    out = model.apply(params, tokens_NxT, cfg, head=False)
    valid_NxT = (jnp.arange(tokens_NxT.shape[1])[None, :] < lengths_N[:, None]).astype(jnp.float32)
    res = []
    for l in layers:
      k_NTxF = (out.mlp_key[l] * valid_NxT[..., None]).reshape(-1, cfg.mlp_width).astype(jnp.float32)
      res.append(k_NTxF.T @ k_NTxF)
    return res

  return sums


def key_moments(params, cfg: model.ModelConfig, documents, layers, chunk: int = 512) -> tuple[list, int]:
  """(list of sum_k k k^T [F, F] float64 per layer, token count) over `documents` = (tokens [N, T], lengths
  [N]) as `Dataset.documents` returns them (left-aligned, padded after)."""
  layers = tuple(layers)
  tokens, lengths = documents
  fn = _sums_fn(cfg, layers)
  total = [np.zeros((cfg.mlp_width, cfg.mlp_width), np.float64) for _ in layers]
  N = len(tokens)
  for start in range(0, N, chunk):
    idx = np.arange(start, start + chunk)
    # The last chunk repeats padding rows of length 0 (one compile for every chunk; they add nothing).
    t = np.asarray(tokens)[np.minimum(idx, N - 1)]
    n = np.where(idx < N, np.asarray(lengths)[np.minimum(idx, N - 1)], 0).astype(np.int32)
    for i, s in enumerate(fn(params, jnp.asarray(t, jnp.int32), jnp.asarray(n))):
      total[i] += np.asarray(s, np.float64)
  return total, int(np.asarray(lengths).sum())


def pass_ranges(dataset) -> list[tuple[int, int, int]]:
  """(start, stop, how many passes like it) for one pass of each kind of the corpus."""
  lay = dataset.tables.layout
  h = lay.num_long_passes
  out = []
  if h:
    out.append((0, lay.long_pass, h))
  short0 = h * lay.long_pass
  if lay.repeats > h:
    out.append((short0, short0 + lay.short_pass, lay.repeats - h))
  return out


def corpus_covariance(params, cfg: model.ModelConfig, dataset, layers, chunk: int = 512) -> dict[int, np.ndarray]:
  """{layer: C [F, F] float64} = the mean of k k^T over every token of the corpus (module docstring)."""
  layers = tuple(layers)
  acc = [np.zeros((cfg.mlp_width, cfg.mlp_width), np.float64) for _ in layers]
  count = 0
  for start, stop, times in pass_ranges(dataset):
    sums, n = key_moments(params, cfg, dataset.documents(start, stop), layers, chunk)
    for a, s in zip(acc, sums):
      a += times * s
    count += times * n
  return {l: a / count for l, a in zip(layers, acc)}


def fact_prompts(dataset, template: str = "remapping", heads=None, relationships=None) -> np.ndarray:
  """Every fact of the graph (S x R subject-object facts), or the facts (heads, relationships), as its
  prompt in `template` (int32 [n, P]): the text up to where the answer is recalled."""
  from data_gen.edit_sets.edits import EVAL, EditSplit  # pylint: disable=g-import-not-at-top
  from data_gen.world.corpus import SUBJECT_OBJECT  # pylint: disable=g-import-not-at-top
  objects = np.asarray(dataset.graph.objects_SxR)
  S, R = objects.shape
  if heads is None:
    head = np.repeat(np.arange(S, dtype=np.int32), R)
    rel = np.tile(np.arange(R, dtype=np.int32), S)
  else:
    head, rel = np.asarray(heads, np.int32), np.asarray(relationships, np.int32)
  tail = objects[head, rel].astype(np.int32)
  split = EditSplit("facts", EVAL, SUBJECT_OBJECT, template, head, rel, tail, tail, np.ones_like(tail))
  return split.tokens(dataset)[0].astype(np.int32)


def fact_covariance(params, cfg: model.ModelConfig, dataset, layers, chunk: int = 512) -> dict[int, np.ndarray]:
  """{layer: C [F, F] float64} = the mean of k k^T over the keys where facts are recalled: the last prompt
  token of every fact's statement (fact_prompts), one key per fact. The least-squares edit's penalty
  lam tr(dW^T C dW) then weighs exactly the outputs other facts read, not every token of the corpus."""
  layers = tuple(layers)
  prompts = fact_prompts(dataset)
  N, P = prompts.shape

  @jax.jit
  def sums(p, tokens_NxP, valid_N):
    out = model.apply(p, tokens_NxP, cfg, head=False)
    res = []
    for l in layers:
      k_NxF = out.mlp_key[l][:, -1].astype(jnp.float32) * valid_N[:, None]
      res.append(k_NxF.T @ k_NxF)
    return res

  acc = [np.zeros((cfg.mlp_width, cfg.mlp_width), np.float64) for _ in layers]
  for start in range(0, N, chunk):
    idx = np.arange(start, start + chunk)
    valid = (idx < N).astype(np.float32)  # the last chunk repeats its last prompt with weight 0
    for a, s_ in zip(acc, sums(params, jnp.asarray(prompts[np.minimum(idx, N - 1)]), jnp.asarray(valid))):
      a += np.asarray(s_, np.float64)
  return {l: a / N for l, a in zip(layers, acc)}


def fact_keys(params, cfg: model.ModelConfig, dataset, layers, heads, relationships) -> dict[int, np.ndarray]:
  """{layer: [n, F] float64}: the keys fact_covariance sums, for the facts (heads, relationships)."""
  out = jax.jit(lambda p, t: model.apply(p, t, cfg, head=False).mlp_key)(
      params, jnp.asarray(fact_prompts(dataset, heads=heads, relationships=relationships)))
  return {l: np.asarray(out[l][:, -1], np.float64) for l in layers}


def without_facts(cov_FxF, keys_nxF, num_facts: int) -> np.ndarray:
  """A fact covariance (the mean over `num_facts` facts' keys) with the facts of `keys_nxF` taken out: the
  mean over the others. An edit solved against it holds every fact's output but the ones it rewrites; the
  full fact covariance also holds the edited facts' old outputs, with weight lam / num_facts each."""
  K = np.asarray(keys_nxF, np.float64)
  if len(K) >= num_facts:
    raise ValueError(f"--config.covariance: other_facts needs facts the edit leaves alone; the edit holds "
                     f"{len(K)} of the graph's {num_facts}")
  return (num_facts * np.asarray(cov_FxF, np.float64) - K.T @ K) / (num_facts - len(K))


KINDS = {"corpus": corpus_covariance, "facts": fact_covariance}
# Kinds built from a cached one per edit: "other_facts" = "facts" without the edited facts (without_facts).
DERIVED = {"other_facts": "facts"}


def params_digest(params) -> str:
  """A short hash of the weights: a cache entry is only reused for exactly these parameters."""
  h = hashlib.sha256()
  for x in jax.tree.leaves(params):
    h.update(np.ascontiguousarray(np.asarray(x)).tobytes())
  return h.hexdigest()[:16]


def cached_covariance(params, cfg, dataset, layers, cache_dir, chunk: int = 512,
                      kind: str = "corpus") -> dict[int, np.ndarray]:
  """corpus_covariance (kind "corpus") or fact_covariance ("facts"), read from / written to
  `cache_dir/cov_<weights hash>_layer<l>.npy` ("facts": `covfacts_...`; atomic writes); cache_dir None: no
  cache."""
  layers = tuple(sorted(set(layers)))
  compute = KINDS[kind]
  if cache_dir is None:
    return compute(params, cfg, dataset, layers, chunk)
  cache_dir = pathlib.Path(cache_dir)
  digest = params_digest(params)
  stem = "cov" if kind == "corpus" else f"cov{kind}"
  path = lambda l: cache_dir / f"{stem}_{digest}_layer{l}.npy"  # noqa: E731
  out = {l: np.load(path(l)) for l in layers if path(l).exists()}
  missing = [l for l in layers if l not in out]
  if missing:
    fresh = compute(params, cfg, dataset, missing, chunk)
    cache_dir.mkdir(parents=True, exist_ok=True)
    for l, c in fresh.items():
      buf = io.BytesIO()
      np.save(buf, c)
      atomic.write_bytes_atomic(path(l), buf.getvalue())
    (cache_dir / "README.json").write_text(json.dumps(
        {"what": "C = E[k k^T] of MLP keys over the training corpus (cov_*) or over the last prompt token of "
                 "every fact's statement (covfacts_*); behemoth_jax/edit/covariance.py"}) + "\n")
    out.update(fresh)
  return out
