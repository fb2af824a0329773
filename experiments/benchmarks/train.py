r"""Training-step speed: tokens/s, MFU against a measured matmul peak, compile time.

  python -m experiments.benchmarks.train            # every shape
  python -m experiments.benchmarks.train --quick    # the LitGPT comparison shape only
  python -m experiments.benchmarks.train --ablate   # where the time goes (naive vs this step), LitGPT shape
  python -m experiments.benchmarks.train --quick --torch_python=/tmp/torchvenv/bin/python
      # adds a same-machine PyTorch reference step (LitGPT's Pythia architecture, written out below;
      # needs a Python with torch, which this project does not depend on)

Each shape runs in a fresh subprocess (own XLA flags, no compilation cache shared with the caller).
Throughput (`tokens_per_s`) is the median over timed windows after warm-up, each ended by
block_until_ready; `tokens_per_s_max` is the best window (the machine is shared: the best window is the
least disturbed one). Tokens are the model's input positions (batch x sequence) per step, as LitGPT
counts them. MFU = tokens/s x model FLOPs per token / the best 2048^3 matmul measured in the same process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

# The LitGPT comparison shape (the original's stack measured ~10,800 tokens/s on the 2-core CPU).
LITGPT = dict(name="litgpt", width=128, layers=4, heads=4, vocab=2432, batch=64, seq=64)
SHAPES = [
    LITGPT,
    dict(name="pythia14m", width=128, layers=6, heads=4, vocab=2432, batch=64, seq=64),
    # auto: float32 on CPU, bfloat16 compute on GPU/TPU (the paper's model, for MFU on an accelerator).
    dict(name="pythia31m", width=256, layers=6, heads=8, vocab=2432, batch=64, seq=64, dtype="auto"),
]
# The flags a plain `python -m experiments.pretrain` runs with (none): the benchmark measures those.
DEFAULT_XLA_FLAGS = ""
ABLATION_FLAGS = ["", "--xla_cpu_multi_thread_eigen=false", "--xla_cpu_enable_fast_math=true"]
# Each variant changes one thing against "ours" (the shipped step).
ABLATIONS = ["ours", "plain_xent", "onehot_embed_grad", "dot_product_attention", "erf_gelu"]


# LitGPT's GPT with a Pythia config, reduced to the parts a training step runs: fused QKV with bias,
# rotary on 25% of each head, F.scaled_dot_product_attention(is_causal=True), parallel residual,
# LayerNorm, exact-GELU MLP, untied head, cross-entropy, AdamW (foreach), gradient clipping.
TORCH_REFERENCE = r"""
import json, sys, time
import torch, torch.nn as nn, torch.nn.functional as F
spec = json.loads(sys.argv[1])
torch.manual_seed(0)
D, L, H, V, B, T = (spec[k] for k in ("width", "layers", "heads", "vocab", "batch", "seq"))
hs = D // H
r = int(hs * 0.25)

class Block(nn.Module):
  def __init__(self):
    super().__init__()
    self.norm_1, self.norm_2 = nn.LayerNorm(D), nn.LayerNorm(D)
    self.qkv, self.proj = nn.Linear(D, 3 * D), nn.Linear(D, D)
    self.fc, self.mlp_proj = nn.Linear(D, 4 * D), nn.Linear(4 * D, D)

  def forward(self, x, cos, sin):
    q, k, v = self.qkv(self.norm_1(x)).view(B, T, 3, H, hs).permute(2, 0, 3, 1, 4)
    def rope(t):
      t1, t2 = t[..., : r // 2], t[..., r // 2: r]
      rot = torch.cat((-t2, t1), -1)
      return torch.cat((t[..., :r] * cos + rot * sin, t[..., r:]), -1)
    y = F.scaled_dot_product_attention(rope(q), rope(k), v, is_causal=True)
    attn = self.proj(y.transpose(1, 2).reshape(B, T, D))
    mlp = self.mlp_proj(F.gelu(self.fc(self.norm_2(x))))
    return x + attn + mlp

class GPT(nn.Module):
  def __init__(self):
    super().__init__()
    self.wte = nn.Embedding(V, D)
    self.h = nn.ModuleList(Block() for _ in range(L))
    self.ln_f = nn.LayerNorm(D)
    self.lm_head = nn.Linear(D, V, bias=False)
    inv = 1.0 / (10000 ** (torch.arange(0, r, 2).float() / r))
    ang = torch.outer(torch.arange(T).float(), inv).repeat(1, 2)
    self.cos, self.sin = ang.cos(), ang.sin()

  def forward(self, idx):
    x = self.wte(idx)
    for b in self.h:
      x = b(x, self.cos, self.sin)
    return self.lm_head(self.ln_f(x))

torch.set_num_threads(2)
model = GPT()
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
g = torch.Generator().manual_seed(0)
tokens = torch.randint(0, V, (B, T + 1), generator=g)
def step():
  logits = model(tokens[:, :-1])
  loss = F.cross_entropy(logits.reshape(-1, V), tokens[:, 1:].reshape(-1))
  opt.zero_grad(set_to_none=True)
  loss.backward()
  torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
  opt.step()
  return loss
t0 = time.perf_counter(); step(); compile_s = time.perf_counter() - t0
for _ in range(spec["warmup"]): step()
tps = []
for _ in range(spec["windows"]):
  t0 = time.perf_counter()
  for _ in range(spec["steps"]): loss = step()
  float(loss)
  tps.append(spec["steps"] * B * T / (time.perf_counter() - t0))
tps.sort()
print(json.dumps({"tokens_per_s": tps[len(tps) // 2], "tokens_per_s_min": tps[0], "tokens_per_s_max": tps[-1],
                  "compile_s": compile_s, "params": sum(p.numel() for p in model.parameters()),
                  "torch": torch.__version__}))
"""


def measure_torch(torch_python: str, spec: dict, quick: bool = False) -> dict:
  spec = {"warmup": 3, "windows": 3 if quick else 5, "steps": 5 if quick else 10, **spec}
  r = subprocess.run([torch_python, "-c", TORCH_REFERENCE, json.dumps(spec)], capture_output=True,
                     text=True, timeout=1800)
  if r.returncode:
    raise RuntimeError(f"torch reference failed:\n{r.stderr[-3000:]}")
  out = json.loads(r.stdout.strip().splitlines()[-1])
  B, T = spec["batch"], spec["seq"]
  return {"suite": "train", "shape": spec["name"], "variant": "torch_reference",
          **{k: spec[k] for k in ("width", "layers", "heads", "vocab", "batch", "seq")}, "dtype": "float32",
          **{k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()},
          "step_ms": round(1e3 * B * T / out["tokens_per_s"], 2)}


def _worker(spec: dict) -> dict:
  import jax
  import jax.numpy as jnp
  import numpy as np

  from behemoth_jax.model import flops, losses, model
  from behemoth_jax.train import optim, train_step

  variant = spec.get("variant", "ours")
  if variant == "onehot_embed_grad":  # embedding gradient as a one-hot matmul instead of scatter-add
    @jax.custom_vjp
    def lookup(table, tokens):
      return table[tokens]

    def bwd(res, g):
      tokens, vocab = res
      onehot = jax.nn.one_hot(tokens.reshape(-1), vocab, dtype=g.dtype)
      return onehot.T @ g.reshape(-1, g.shape[-1]), None

    lookup.defvjp(lambda table, tokens: (table[tokens], (tokens, table.shape[0])), bwd)
    model.embed_lookup = lookup
  if variant == "dot_product_attention":
    model.causal_attention = lambda q, k, v: jax.nn.dot_product_attention(q, k, v, is_causal=True)

  dtype = spec.get("dtype", "float32")
  if dtype == "auto":
    dtype = "float32" if jax.default_backend() == "cpu" else "bfloat16"
  cfg = model.ModelConfig(vocab_size=spec["vocab"], num_layers=spec["layers"], width=spec["width"],
                          num_heads=spec["heads"], max_len=max(spec["seq"], 8), compute_dtype=dtype,
                          gelu_approximate=variant != "erf_gelu")
  opt = optim.make_optimizer(optim.OptimConfig(total_steps=10_000, warmup_steps=10))
  mesh = train_step.make_mesh()
  state = train_step.init_state(jax.random.key(0), cfg, opt, mesh)
  loss_fn = None
  if variant == "plain_xent":  # autodiff of log-softmax instead of the fused custom_vjp
    loss_fn = lambda params, batch: losses.lm_loss(params, batch, cfg, nll=losses.plain_token_nll)
  step = train_step.make_train_step(cfg, opt, mesh, loss_fn=loss_fn)
  B, T = spec["batch"], spec["seq"]
  rng = np.random.default_rng(0)
  batch = jax.device_put({"tokens": jnp.asarray(rng.integers(0, cfg.vocab_size, (B, T + 1)), jnp.int32),
                          "loss_mask": jnp.ones((B, T + 1), bool),
                          "answer_mask": jnp.zeros((B, T + 1), bool)}, train_step.batch_sharding(mesh))

  t0 = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  compile_s = time.perf_counter() - t0
  for _ in range(spec["warmup"]):
    state, m = compiled(state, batch)
  jax.block_until_ready(m)
  window_tps = []
  for _ in range(spec["windows"]):
    t0 = time.perf_counter()
    for _ in range(spec["steps"]):
      state, m = compiled(state, batch)
    jax.block_until_ready(m)
    window_tps.append(spec["steps"] * B * T / (time.perf_counter() - t0))
  if not np.isfinite(float(m["loss"])):
    raise RuntimeError("non-finite loss in the benchmark")
  tps = float(np.median(window_tps))
  peak = flops.measure_matmul_peak(dtype=jnp.float32 if dtype == "float32" else jnp.bfloat16)
  fpt = model.flops_per_token(cfg, T)
  return {"suite": "train", "shape": spec["name"], "variant": variant, "width": cfg.width,
          "layers": cfg.num_layers, "heads": cfg.num_heads, "vocab": cfg.vocab_size, "batch": B, "seq": T,
          "dtype": dtype, "params": model.num_params(state["params"]),
          "tokens_per_s": round(tps, 1), "tokens_per_s_min": round(min(window_tps), 1),
          "tokens_per_s_max": round(max(window_tps), 1), "step_ms": round(1e3 * B * T / tps, 2),
          "mfu": round(flops.mfu(tps, fpt, peak), 4), "peak_gflops": round(peak / 1e9, 1),
          "model_gflop_per_step": round(fpt * B * T / 1e9, 3), "compile_s": round(compile_s, 3),
          "backend": jax.default_backend(), "device": jax.devices()[0].device_kind,
          "num_devices": len(jax.devices()), "xla_flags": os.environ.get("XLA_FLAGS", "")}


def measure(spec: dict, xla_flags: str = DEFAULT_XLA_FLAGS, quick: bool = False) -> dict:
  """Runs one shape in a fresh process and returns its JSON record."""
  spec = {"warmup": 3, "windows": 3 if quick else 5, "steps": 5 if quick else 10, **spec}
  env = {**os.environ, "XLA_FLAGS": xla_flags}
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
  r = subprocess.run([sys.executable, "-m", "experiments.benchmarks.train", "--worker", json.dumps(spec)],
                     env=env, cwd=root, capture_output=True, text=True, timeout=1800)
  if r.returncode:
    raise RuntimeError(f"benchmark worker failed for {spec['name']}:\n{r.stderr[-3000:]}")
  return json.loads(r.stdout.strip().splitlines()[-1])


def run(quick: bool) -> list[dict]:
  """One record per measured shape (`quick`: the LitGPT shape only, fewer steps)."""
  shapes = [LITGPT] if quick else SHAPES
  return [measure(s, quick=quick) for s in shapes]


def ablate(quick: bool = False) -> list[dict]:
  """Naive vs optimised step variants and XLA flags at the LitGPT shape."""
  out = []
  for variant in ABLATIONS:
    for flags in (ABLATION_FLAGS if variant == "ours" else [DEFAULT_XLA_FLAGS]):
      out.append(measure({**LITGPT, "variant": variant}, xla_flags=flags, quick=quick))
  return out


def main(argv: list[str]) -> int:
  if len(argv) == 2 and argv[0] == "--worker":
    print(json.dumps(_worker(json.loads(argv[1]))))
    return 0
  known = {"--quick", "--ablate"}
  torch_python = [a.split("=", 1)[1] for a in argv if a.startswith("--torch_python=")]
  unknown = [a for a in argv if a not in known and not a.startswith("--torch_python=")]
  if unknown:
    print(f"error: unknown option {unknown[0]}; allowed: --quick, --ablate, --torch_python=PATH",
          file=sys.stderr)
    return 2
  quick = "--quick" in argv
  for record in (ablate(quick) if "--ablate" in argv else run(quick)):
    print(json.dumps(record), flush=True)
  if torch_python:
    print(json.dumps(measure_torch(torch_python[0], LITGPT, quick)), flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
