"""Counter-based randomness and a keyed permutation, in uint32 jax.numpy.

Every random choice of a sentence is a hash of (seed, pass, position, draw): any sentence of the corpus can
be rendered alone, in any order, on any device, and the on-device sampler and the text writer produce the
same corpus. A 4-round Feistel network with cycle-walking permutes [0, n) without materialising it, so a
pass over the corpus is shuffled while every unit still appears exactly once.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

_GOLDEN = 0x9E3779B9


def mix32(x: jax.Array) -> jax.Array:
  """A bijective avalanche mix of uint32 values (the 'lowbias32' constants)."""
  x = x.astype(jnp.uint32)
  x = x ^ (x >> 16)
  x = x * jnp.uint32(0x7FEB352D)
  x = x ^ (x >> 15)
  x = x * jnp.uint32(0x846CA68B)
  return x ^ (x >> 16)


def hash_words(*words) -> jax.Array:
  """Hash of a tuple of uint32 words (broadcasting)."""
  h = jnp.uint32(_GOLDEN)
  for w in words:
    if isinstance(w, int):  # Python ints may exceed int32, jax's default integer
      w = np.uint32(w & 0xFFFFFFFF)
    h = mix32(h ^ jnp.asarray(w).astype(jnp.uint32)) + jnp.uint32(_GOLDEN)
  return mix32(h)


def uniforms(h: jax.Array, num: int) -> jax.Array:
  """float32[..., num] in [0, 1), the draws 0..num-1 of the stream named by hash `h`."""
  draws = jnp.arange(num, dtype=jnp.uint32) * jnp.uint32(_GOLDEN)
  bits = mix32(h[..., None] ^ mix32(draws + jnp.uint32(1)))
  return (bits >> 8).astype(jnp.float32) * jnp.float32(2.0 ** -24)


def seed_word(seed: int, purpose: int) -> np.uint32:
  """A uint32 key from a Python seed of any size and a purpose tag."""
  h = np.uint64(seed) & np.uint64(0xFFFFFFFF)
  hi = np.uint64(seed >> 32 & 0xFFFFFFFF)
  return np.uint32(hash_words(np.uint32(h), np.uint32(hi), np.uint32(purpose)))


_ROUNDS = 4


def _feistel(x: jax.Array, round_keys: tuple[jax.Array, ...], half_bits: int) -> jax.Array:
  mask = jnp.uint32((1 << half_bits) - 1)
  left, right = x >> half_bits, x & mask
  for k in round_keys:
    left, right = right, left ^ (mix32(right ^ k) & mask)
  return (left << half_bits) | right


def permute(x: jax.Array, n: int, key: jax.Array) -> jax.Array:
  """A permutation of [0, n) keyed by `key` (uint32, broadcastable to x), applied to x in [0, n)."""
  if n >= 2 ** 32:
    raise ValueError(f"permutation domain {n} exceeds 2^32")
  if n <= 1:
    return jnp.zeros_like(jnp.asarray(x, jnp.uint32))
  bits = max(2, int(n - 1).bit_length())
  half = (bits + 1) // 2
  x = jnp.asarray(x).astype(jnp.uint32)
  key = jnp.broadcast_to(jnp.asarray(key, jnp.uint32), x.shape)
  round_keys = tuple(hash_words(key, r) for r in range(_ROUNDS))
  y = _feistel(x, round_keys, half)
  # Cycle-walking: the domain 4^half < 4n, so a few rounds at most bring every value back into [0, n).
  return jax.lax.while_loop(lambda y: jnp.any(y >= n),
                            lambda y: jnp.where(y >= n, _feistel(y, round_keys, half), y), y)
