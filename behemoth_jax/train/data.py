"""Training batches as pure functions of the step: the generator's on-device sampler, or a token stream
read from a corpus the generator wrote to disk. Either way a resumed run sees exactly the same data.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

Sampler = Callable[[jax.Array], dict]


def stream_sampler(stream: np.ndarray, batch_size: int, seq_len: int) -> Sampler:
  """Batches of contiguous windows of a token stream, row (step * B + b) mod the number of windows.

  A stream carries no answer positions, so answer_mask is all False (answer-only loss needs the
  on-device sampler).
  """
  num_windows = len(stream) // seq_len
  if num_windows < 1:
    raise ValueError(f"--config.seq_len={seq_len} is longer than the whole corpus ({len(stream)} tokens)")
  windows_NxT = jnp.asarray(stream[:num_windows * seq_len].reshape(num_windows, seq_len), jnp.int32)

  def sample(step):
    rows = (jnp.asarray(step, jnp.int32) * batch_size + jnp.arange(batch_size, dtype=jnp.int32)) % num_windows
    tokens = windows_NxT[rows]
    return {"tokens": tokens, "loss_mask": jnp.ones(tokens.shape, bool),
            "answer_mask": jnp.zeros(tokens.shape, bool)}

  return sample


def sharded_sampler(sample: Sampler, sharding) -> Callable[[int], dict]:
  """jit the sampler so each device generates its own shard of the batch."""
  f = jax.jit(sample, out_shardings=sharding)
  return lambda step: f(jnp.asarray(step, jnp.int32))
