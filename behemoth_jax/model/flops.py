"""Model FLOP utilisation against a measured matmul peak of the device at hand."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp


def measure_matmul_peak(n: int = 2048, dtype=jnp.float32, repeats: int = 5) -> float:
  """FLOP/s of the best of `repeats` n^3 matmuls on the default device (warm-up excluded)."""
  a = jnp.ones((n, n), dtype)
  b = jnp.ones((n, n), dtype)
  f = jax.jit(lambda x, y: x @ y)
  f(a, b).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    f(a, b).block_until_ready()
    best = min(best, time.perf_counter() - t0)
  return 2.0 * n ** 3 / best


def mfu(tokens_per_s: float, flops_per_token: float, peak_flops: float) -> float:
  return tokens_per_s * flops_per_token / peak_flops if peak_flops > 0 else float("nan")
