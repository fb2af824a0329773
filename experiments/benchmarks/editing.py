r"""Independent-edit throughput: the engine's vmapped LoRA edits against a naive vmap and a Python loop.

  python -m experiments.bench --suite=edit [--quick]
  python -m experiments.benchmarks.editing [--quick]

The fixed workload (issue 7): 256 independent single-fact rank-4 LoRA edits on every MLP down-projection
of the width-128, 4-layer, vocab-2432 model; 20 Adam steps each; each step on the edited sentence plus 7
retain sentences of 12 tokens; loss on the answer token. Three implementations, measured in the same
process on the same machine (medians of `repeats` timed runs after a compile run):
- ours: `editing.make_independent_trainer` (gradients for the LoRA factors only, the output head at the
  answer position only, factors applied as x W + s (x A) B),
- naive: a vmap of the textbook form: the LoRA product merged into a per-edit copy of each kernel, full
  logits at every position, the loss masked to the answer,
- loop: a Python loop of our jitted single edit.
The row also gives the FLOPs our program needs per edit and the share of the measured matmul peak.
"""

from __future__ import annotations

import os
import sys
import time

from experiments.benchmarks import closed_form, harness

WORKLOAD = {"edits": 256, "width": 128, "layers": 4, "heads": 4, "vocab": 2432, "rank": 4,
            "targets": "mlp_down", "steps": 20, "rows_per_step": 8, "tokens_per_row": 12,
            "loss_on": "answer"}
QUICK = {**WORKLOAD, "edits": 32, "steps": 5}


def _workload_arrays(w: dict):
  import numpy as np  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  F, N, T = w["edits"], w["rows_per_step"], w["tokens_per_row"]
  tokens = rng.integers(8, w["vocab"], (F, N, T)).astype(np.int32)
  return {"inputs": tokens[..., :-1], "positions": np.full((F, N, 1), T - 2, np.int32),
          "targets": tokens[..., -1:], "mask": np.ones((F, N, 1), bool),
          "is_edit": np.broadcast_to(np.arange(N) == 0, (F, N)).copy(), "weight": np.ones((F, N), np.float32)}


def flops_per_edit(w: dict) -> float:
  """Matmul FLOPs our program needs for one edit of this workload (LoRA on every mlp_down, answer = the
  last of T input positions): layer 0's attention and MLP key are frozen (computed once, not per step),
  so layer 0 runs only its down-projection; the last layer runs its MLP, output projection and query at
  the answer position only (keys/values everywhere); the head at the answer position; the backward pass
  computes input gradients of the frozen matmuls and the LoRA factors' gradients, no weight gradients."""
  D, L, V, r, T = w["width"], w["layers"], w["vocab"], w["rank"], w["tokens_per_row"] - 1
  F_ = 4 * D
  full = 3 * D * D + D * D + 2 * D * F_ + 2 * T * D  # multiply-adds per token of a whole layer
  last = T * 2 * D * D + (D * D + D * D + 2 * D * F_ + 2 * T * D)  # k, v everywhere; the rest at one position
  lora = L * T * (F_ * r + r * D)
  fwd = T * D * F_ + (L - 2) * T * full + (T * D * D + last) + D * V + lora
  bwd = (L - 2) * T * full + last + D * V + 2 * lora
  return 2.0 * w["steps"] * w["rows_per_step"] * (fwd + bwd)


def measure(w: dict, repeats: int, loop_edits: int) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top

  from behemoth_jax.edit import methods, modes  # pylint: disable=g-import-not-at-top
  from behemoth_jax.model import deltas, flops, losses, model  # pylint: disable=g-import-not-at-top

  cfg = model.ModelConfig(vocab_size=w["vocab"], num_layers=w["layers"], width=w["width"],
                          num_heads=w["heads"], max_len=64)
  params = model.init_params(jax.random.key(0), cfg)
  hp = methods.EditHParams(method="lora", targets=w["targets"], rank=w["rank"], steps=w["steps"],
                                learning_rate=1e-2, retain_weight=1.0)
  paths = methods.resolve_paths(params, hp)
  batch = {k: jnp.asarray(v) for k, v in _workload_arrays(w).items()}
  keys = modes.edit_keys(0, np.arange(w["edits"]))

  ours = modes.make_independent_trainer(cfg, hp, paths)

  # The naive form: merged per-edit kernels, full logits at every position, mask to the answer.
  def naive_edit(frozen, b, key):
    lora = deltas.lora(key, frozen, paths, hp.rank)
    opt = optax.adam(hp.learning_rate, b1=hp.b1, b2=hp.b2)
    T = b["inputs"].shape[1]
    answer_mask = jnp.zeros((b["inputs"].shape[0], T), bool).at[:, -1].set(True)

    def loss(d):
      merged = deltas.merge(frozen, d)
      logits = model.forward(merged, b["inputs"], cfg)
      full_targets = jnp.concatenate([b["inputs"][:, 1:], b["targets"]], 1)
      nll = losses.token_nll(logits.reshape(-1, cfg.vocab_size), full_targets.reshape(-1)).reshape(logits.shape[:2])
      per_row = (nll * answer_mask).sum(1)
      return (per_row * b["is_edit"]).sum() + hp.retain_weight * (per_row * ~b["is_edit"]).sum() / 7.0

    def body(carry, _):
      d, s = carry
      g = jax.grad(loss)(d)
      u, s = opt.update(g, s, d)
      return (optax.apply_updates(d, u), s), None

    (d, _), _ = jax.lax.scan(body, (lora, opt.init(lora)), None, length=hp.steps)
    return d

  naive = jax.jit(jax.vmap(naive_edit, in_axes=(None, 0, 0)))
  single = jax.jit(lambda fz, b, k: methods.train_delta(fz, b, k, hp, cfg, paths))

  def run_ours():
    jax.block_until_ready(ours(params, batch, keys))

  def run_naive():
    jax.block_until_ready(naive(params, batch, keys))

  one = [jax.tree.map(lambda x: x[f], batch) for f in range(loop_edits)]

  def run_loop():
    out = None
    for f in range(loop_edits):
      out = single(params, one[f], keys[f])
    jax.block_until_ready(out)

  compile_s = {}
  for name, fn in (("ours", run_ours), ("naive", run_naive), ("loop", run_loop)):
    t0 = time.perf_counter()
    fn()  # compile + first run
    compile_s[name] = round(time.perf_counter() - t0, 2)
  t_ours, all_ours = harness.median_time(run_ours, repeats)
  t_naive, all_naive = harness.median_time(run_naive, repeats)
  t_loop, _ = harness.median_time(run_loop, repeats)
  peak = flops.measure_matmul_peak(dtype=np.float32)
  fpe = flops_per_edit(w)
  vmap_rate = w["edits"] / t_ours
  return {"name": "edit/independent_lora", "workload": w, "cpu": harness.cpu_model(), "cpu_count": os.cpu_count(),
          "device": jax.devices()[0].device_kind, "backend": jax.default_backend(),
          "vmap_edits_per_s": round(vmap_rate, 2), "naive_vmap_edits_per_s": round(w["edits"] / t_naive, 2),
          "loop_edits_per_s": round(loop_edits / t_loop, 2), "loop_edits_timed": loop_edits,
          "speedup_vs_naive": round(t_naive / t_ours, 2), "speedup_vs_loop": round(vmap_rate * t_loop / loop_edits, 2),
          "times_s": {"ours": [round(t, 3) for t in all_ours], "naive": [round(t, 3) for t in all_naive]},
          "model_gflop_per_edit": round(fpe / 1e9, 3), "matmul_peak_gflops": round(peak / 1e9, 1),
          "share_of_matmul_peak": round(vmap_rate * fpe / peak, 3), "compile_s": compile_s}


def run(quick: bool = False) -> list[dict]:
  """The edit suite: the LoRA workload, then the closed-form rows (experiments/benchmarks/closed_form.py)."""
  w = QUICK if quick else WORKLOAD
  return [measure(w, repeats=1 if quick else 3, loop_edits=8 if quick else 32), *closed_form.run(quick)]


if __name__ == "__main__":
  sys.exit(harness.script_main(run, sys.argv[1:]))
