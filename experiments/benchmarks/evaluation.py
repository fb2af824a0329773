r"""Evaluation speed: facts scored per second on a 100,000-fact graph, and the cost of one oracle retrain.

  python -m experiments.benchmarks.evaluation [--quick] [--eval_only]

`run(quick)` is what `experiments/bench.py --suite=eval` calls.
- eval_exact_match / eval_scores: every fact of a 100,000-fact graph (S=16,667 x R=6, O=400) in the
  statement form, scored by the small model's shape (width 128, 4 layers; random weights: speed does not
  depend on them) in jitted chunks of 4096 rows: greedy exact match alone (editing.make_exact_match), and
  exact match + answer log-probability + teacher-forced token accuracy (edit_metrics.answer_scores), both
  a host loop over jitted chunks; eval_scores_one_call: the same scores for every fact in one jitted call
  (edit_metrics.make_all_facts_scores, lax.map over chunks). Compile excluded; best of `repeats`.
- eval_shared_cost: seconds the locality sets add to 100 independent edits at eval_shared 32 (the old
  default) and 500 (the default since issue 19: a 99% figure's 95% interval within about +-1 point),
  derived from eval_scores' rate in the same run (the edit binary scores under each edit's delta).
- oracle_retrain_small: wall time of one from-scratch retrain of the `small` config (the oracle's
  training; its evaluation is a few seconds more), on the dataset with 100 facts removed.
"""

from __future__ import annotations

import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from behemoth_jax.edit import modes
from behemoth_jax.evaluate import edit_metrics
from behemoth_jax.model import model
from data_gen.world import dataset as dataset_lib
from data_gen.world.corpus import CorpusConfig
from data_gen.world.graph import GraphConfig
from experiments.benchmarks import harness

CHUNK = 4096


def _facts_per_s(fn, prompt, answer, repeats: int) -> float:
  jax.block_until_ready(fn(prompt[:CHUNK], answer[:CHUNK]))  # compile
  n = (len(prompt) // CHUNK) * CHUNK
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    for i in range(0, n, CHUNK):
      out = fn(prompt[i:i + CHUNK], answer[i:i + CHUNK])
    jax.block_until_ready(out)
    best = min(best, time.perf_counter() - t0)
  return n / best


def run(quick: bool, eval_only: bool = False) -> list[dict]:
  S = 2_000 if quick else 16_667
  graph = GraphConfig(num_subjects=S, num_relationships=6, num_objects=400)
  ds = dataset_lib.build(graph, CorpusConfig(repeats=1), seed=0)
  probes = ds.probes()["sro"]
  prompt, answer = jnp.asarray(probes.prompt_NxP), jnp.asarray(probes.answer_NxA)
  cfg = model.ModelConfig(vocab_size=ds.vocab.size, num_layers=4, width=128, num_heads=4, max_len=64)
  params = model.init_params(jax.random.key(0), cfg)
  em = jax.jit(lambda p, a: modes.make_exact_match(cfg)(params, None, p, a))
  scores = jax.jit(lambda p, a: edit_metrics.answer_scores(params, None, p, a, cfg))
  repeats = 1 if quick else 3
  rows = []
  for name, fn in (("eval_exact_match", em), ("eval_scores", scores)):
    rows.append({"name": name, "facts": int(len(prompt)), "chunk": CHUNK, "backend": jax.default_backend(),
                 "facts_per_s": _facts_per_s(fn, prompt, answer, repeats)})
  # Every fact in one jitted call (lax.map over chunks inside the program).
  one = edit_metrics.make_all_facts_scores(cfg, CHUNK)
  jax.block_until_ready(one(params, None, prompt, answer))  # compile
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(one(params, None, prompt, answer))
    best = min(best, time.perf_counter() - t0)
  rows.append({"name": "eval_scores_one_call", "facts": int(len(prompt)), "chunk": CHUNK,
               "backend": jax.default_backend(), "facts_per_s": len(prompt) / best})
  # What the locality sets cost an independent edit (every unlinked split scores eval_shared rows under the
  # edit's own delta): derived from this run's eval_scores rate, for the old and the new default.
  rate = rows[1]["facts_per_s"]
  unlinked = 3  # reg_data, with_same_rel, with_same_value (same_edges_diff_rel is linked: the subject's own)
  rows.append({"name": "eval_shared_cost", "derived_from": "eval_scores facts_per_s of this run",
               "unlinked_splits": unlinked,
               **{f"s_per_100_edits_eval_shared_{n}": round(100 * n * unlinked / rate, 3) for n in (32, 500)}})
  if eval_only:
    return rows
  # One oracle retrain (small config; quick: tiny with 100 steps).
  from behemoth_jax.train import pretraining  # pylint: disable=g-import-not-at-top
  from experiments.configs import pretrain as pretrain_configs  # pylint: disable=g-import-not-at-top
  c = pretrain_configs.get_config("tiny" if quick else "small")
  c.progress = False
  if quick:
    c.total_steps = c.eval_every = c.checkpoint_every = 100
  base = pretraining.load_dataset(c)
  removed = np.zeros(base.graph.objects_SxR.shape, bool)
  removed.ravel()[np.random.default_rng(0).choice(removed.size, size=min(100, removed.size // 4), replace=False)] = True
  with tempfile.TemporaryDirectory() as tmp:
    import dataclasses  # pylint: disable=g-import-not-at-top
    dataclasses.replace(base, removed_SxR=removed).save_native(tmp + "/data")
    c.data.dir = tmp + "/data"
    t0 = time.perf_counter()
    pretraining.run(c, tmp + "/w")
    rows.append({"name": "oracle_retrain_" + ("tiny" if quick else "small"), "steps": int(c.total_steps),
                 "wall_s": time.perf_counter() - t0, "removed_facts": int(removed.sum())})
  return rows


if __name__ == "__main__":
  sys.exit(harness.script_main(run, sys.argv[1:], ("--quick", "--eval_only")))  # --eval_only: no oracle retrain
