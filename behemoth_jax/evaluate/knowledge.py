"""Knowledge evaluation: greedy exact-match accuracy of whole answers on probe sets, inside jit.

Greedy decoding of an A-token answer is exact-match iff the argmax at every answer position, fed the
gold prefix, equals the gold token (if the first k tokens match, greedy decoding saw the same prefix).
So one teacher-forced forward pass over prompt + answer[:-1] decides exact match, with no decode loop.
"""

from __future__ import annotations

import collections
from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from behemoth_jax.model import model
from data_gen.world.corpus import KIND_NAMES


def make_exact_match_fn(cfg: model.ModelConfig, mesh=None) -> Callable:
  """jitted `(params, prompt_NxP, answer_NxA) -> bool[N]` (the answer is produced greedily).

  With a mesh the result is replicated, so every process of a multi-host run can read all of it.
  """

  def exact_match(params, prompt_NxP, answer_NxA):
    P, A = prompt_NxP.shape[1], answer_NxA.shape[1]
    tokens_NxL = jnp.concatenate([prompt_NxP, answer_NxA[:, :-1]], axis=1)
    logits = model.forward(params, tokens_NxL, cfg)[:, P - 1:P - 1 + A]
    return jnp.all(jnp.argmax(logits, -1) == answer_NxA, axis=-1)

  if mesh is None:
    return jax.jit(exact_match)
  from jax.sharding import NamedSharding, PartitionSpec
  return jax.jit(exact_match, out_shardings=NamedSharding(mesh, PartitionSpec()))


def _chunks(n: int, size: int):
  for start in range(0, n, size):
    yield start, min(start + size, n)


def probe_correct(exact_match: Callable, params, probe, chunk: int) -> np.ndarray:
  """bool[N] for one probe set, in fixed-size chunks (the last one padded) so each set compiles once."""
  n = len(probe)
  out = np.zeros(n, bool)
  for start, stop in _chunks(n, chunk):
    prompt = probe.prompt_NxP[start:stop]
    answer = probe.answer_NxA[start:stop]
    pad = chunk - (stop - start)
    if pad:
      prompt = np.concatenate([prompt, np.repeat(prompt[-1:], pad, 0)])
      answer = np.concatenate([answer, np.repeat(answer[-1:], pad, 0)])
    out[start:stop] = np.asarray(exact_match(params, prompt, answer))[:stop - start]
  return out


def evaluate(exact_match: Callable, params, probes: Mapping, chunk: int = 512) -> dict[str, float]:
  """Accuracy per probe set (`eval/<set>/accuracy`), per set and relationship
  (`eval/<set>/rel<r>/accuracy`) and per fact kind over sets of that kind (`eval/kind/<kind>/accuracy`,
  excluding dissenting-minority and held-out sets, whose answers the corpus does not state as written).
  """
  metrics: dict[str, float] = {}
  by_kind: dict[str, list[np.ndarray]] = collections.defaultdict(list)
  for name, probe in probes.items():
    if len(probe) == 0:
      continue
    correct = probe_correct(exact_match, params, probe, min(chunk, len(probe)))
    metrics[f"eval/{name}/accuracy"] = float(correct.mean())
    metrics[f"eval/{name}/count"] = int(len(correct))
    for r in np.unique(probe.relationship_N):
      metrics[f"eval/{name}/rel{int(r)}/accuracy"] = float(correct[probe.relationship_N == r].mean())
    if not any(tag in name for tag in ("minority", "heldout")):
      by_kind[KIND_NAMES[probe.kind]].append(correct)
  for kind, parts in by_kind.items():
    metrics[f"eval/kind/{kind}/accuracy"] = float(np.concatenate(parts).mean())
  return metrics
