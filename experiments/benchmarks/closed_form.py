r"""Closed-form edit speed (issue 10): rank-one edits per second, and one least-squares edit of 1,000 facts.

  python -m experiments.bench --suite=edit [--quick]
  python -m experiments.benchmarks.closed_form [--quick]

- `edit/rome_vmapped`: independent rank-one edits (closed_form.make_rome_trainer: the value vector's Adam
  steps with the KL term, then the rank-one factors) vmapped over the edits of one jitted program, on the
  LoRA workload's model shape (width 128, 4 layers, vocab 2432; editing.WORKLOAD), 20 value steps, one
  edit row of 12 tokens and 5 KL prompts of 11 tokens per edit, layer 2, key at the last prompt token.
  Same-run reference: a Python loop of the jitted single edit. Medians of `repeats` timed runs after a
  compile run.
- `edit/memit_1000`: seconds for one least-squares update of 1,000 facts over 2 layers
  (closed_form.least_squares_delta, chunks of 64 facts), including the exact corpus covariance of both
  layers (covariance.corpus_covariance over the `small` pretraining config's corpus: 500 subjects x 4
  relationships, every document of one pass of each kind), on a model of the small config's shape with
  random weights (speed does not depend on what the weights know). Facts are random token rows of the
  same shapes as the rank-one workload. Median of `repeats` after a compile run; compile time apart.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

from experiments.benchmarks import harness

ROME = {"edits": 256, "width": 128, "layers": 4, "heads": 4, "vocab": 2432, "layer": 2, "key_position": "last",
        "steps": 20, "edit_rows": 1, "tokens_per_row": 12, "early_stop": 0.0}
ROME_QUICK = {**ROME, "edits": 32, "steps": 5}
MEMIT = {"facts": 1000, "layers_edited": [2, 3], "steps": 20, "lam": 1.5e4, "chunk": 64,
         "pretrain_config": "small"}
MEMIT_QUICK = {**MEMIT, "facts": 100, "steps": 5}


def _fact_batch(F: int, vocab: int, w: dict):
  """Per fact: edit rows (inputs, answer position/target) and a subject token; random tokens. The KL term
  reads the same rows at the subject token (as the reference's "{subject} is a" prompt)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  N, T = w["edit_rows"], w["tokens_per_row"]
  tokens = rng.integers(8, vocab, (F, N, T)).astype(np.int32)
  return {"inputs": tokens[..., :-1], "positions": np.full((F, N, 1), T - 2, np.int32),
          "targets": tokens[..., -1:], "mask": np.ones((F, N, 1), bool), "is_edit": np.ones((F, N), bool),
          "weight": np.ones((F, N), np.float32), "subject_token": tokens[:, 0, 1].copy()}


def measure_rome(w: dict, repeats: int, loop_edits: int) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  from behemoth_jax.edit import closed_form  # pylint: disable=g-import-not-at-top
  from behemoth_jax.model import model  # pylint: disable=g-import-not-at-top

  cfg = model.ModelConfig(vocab_size=w["vocab"], num_layers=w["layers"], width=w["width"], num_heads=w["heads"],
                          max_len=64)
  params = model.init_params(jax.random.key(0), cfg)
  cov_inv = np.eye(cfg.mlp_width)  # its value does not change the cost (one [F, F] matvec per edit)
  batch = {k: jnp.asarray(v) for k, v in _fact_batch(w["edits"], w["vocab"], w).items()}
  # A fixed workload: every edit runs all its steps (no early stop; the reference's clamp and decay).
  opts = closed_form.ValueOptions(steps=w["steps"], learning_rate=0.5, kl_weight=1.0, key_position=w["key_position"],
                                  early_stop=w["early_stop"])
  vmapped = closed_form.make_rome_trainer(cfg, w["layer"], opts, cov_inv)
  single = jax.jit(lambda fz, b: closed_form.rome_delta(fz, b, jnp.asarray(cov_inv, jnp.float32), cfg, w["layer"],
                                                        opts))
  one = [jax.tree.map(lambda x: x[f], batch) for f in range(loop_edits)]  # noqa: B023

  def run_vmapped():
    jax.block_until_ready(vmapped(params, batch, None))

  def run_loop():
    out = None
    for b in one:
      out = single(params, b)
    jax.block_until_ready(out)

  compile_s = {}
  for name, fn in (("vmapped", run_vmapped), ("loop", run_loop)):
    t0 = time.perf_counter()
    fn()
    compile_s[name] = round(time.perf_counter() - t0, 2)
  t_v, all_v = harness.median_time(run_vmapped, repeats)
  t_l, all_l = harness.median_time(run_loop, repeats)
  return {"name": "edit/rome_vmapped", "workload": w, "cpu": harness.cpu_model(), "cpu_count": os.cpu_count(),
          "device": jax.devices()[0].device_kind, "backend": jax.default_backend(),
          "vmap_edits_per_s": round(w["edits"] / t_v, 2), "loop_edits_per_s": round(loop_edits / t_l, 2),
          "loop_edits_timed": loop_edits, "speedup_vs_loop": round((w["edits"] / t_v) / (loop_edits / t_l), 2),
          "times_s": {"vmapped": [round(t, 3) for t in all_v], "loop": [round(t, 3) for t in all_l]},
          "compile_and_first_run_s": compile_s}


def measure_memit(w: dict, repeats: int) -> dict:
  import dataclasses  # pylint: disable=g-import-not-at-top

  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  from behemoth_jax.edit import closed_form, covariance, methods  # pylint: disable=g-import-not-at-top
  from behemoth_jax.model import model  # pylint: disable=g-import-not-at-top
  from behemoth_jax.train import pretraining  # pylint: disable=g-import-not-at-top
  from experiments.configs import pretrain as pretrain_configs  # pylint: disable=g-import-not-at-top

  config = pretrain_configs.get_config(w["pretrain_config"])
  ds = pretraining.load_dataset(config)
  m = config.model.to_dict()
  m["compute_dtype"] = "float32"
  cfg = model.ModelConfig(vocab_size=ds.vocab.size, **m)
  params = model.init_params(jax.random.key(0), cfg)
  layers = list(w["layers_edited"])
  hp = dataclasses.replace(methods.EditHParams(method="memit"), v_steps=w["steps"], v_lr=0.5, v_early_stop=0.0,
                           kl_weight=1.0, lam=w["lam"], key_position="last", layer=layers[-1], span=len(layers))
  batch = {k: jnp.asarray(v) for k, v in _fact_batch(w["facts"], ds.vocab.size, ROME).items()}

  def run():
    t0 = time.perf_counter()
    covs = covariance.corpus_covariance(params, cfg, ds, layers)
    t1 = time.perf_counter()
    delta, _ = closed_form.least_squares_delta(params, cfg, batch, layers, covs, hp, chunk=w["chunk"])
    jax.block_until_ready(delta)
    return t1 - t0, time.perf_counter() - t1

  t0 = time.perf_counter()
  run()
  first = time.perf_counter() - t0
  parts = [run() for _ in range(repeats)]
  total = [a + b for a, b in parts]
  return {"name": "edit/memit_1000" if w["facts"] == 1000 else f"edit/memit_{w['facts']}", "workload": w,
          "model": {"width": cfg.width, "layers": cfg.num_layers, "vocab": cfg.vocab_size},
          "corpus_documents_per_pass_kind": [stop - start for start, stop, _ in covariance.pass_ranges(ds)],
          "cpu": harness.cpu_model(), "cpu_count": os.cpu_count(), "device": jax.devices()[0].device_kind,
          "backend": jax.default_backend(), "seconds": round(statistics.median(total), 2),
          "covariance_s": round(statistics.median(a for a, _ in parts), 2),
          "solve_and_values_s": round(statistics.median(b for _, b in parts), 2),
          "times_s": [round(t, 2) for t in total], "compile_and_first_run_s": round(first, 2)}


def run(quick: bool = False) -> list[dict]:
  repeats = 1 if quick else 3
  return [measure_rome(ROME_QUICK if quick else ROME, repeats, loop_edits=4 if quick else 32),
          measure_memit(MEMIT_QUICK if quick else MEMIT, repeats)]


if __name__ == "__main__":
  sys.exit(harness.script_main(run, sys.argv[1:]))
