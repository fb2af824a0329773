"""Counter-based randomness and a keyed permutation, in uint32 arithmetic.

Each function takes `xp`: numpy (default: the text writer and probes, no compilation) or jax.numpy
(traceable, for the on-device sampler); both give the same bits. jax is imported only on that path, so
writing text never pays for it.

Every random choice of a sentence is a hash of (seed, pass, position, draw): any sentence of the corpus can
be rendered alone, in any order, on any device, and the on-device sampler and the text writer produce the
same corpus. A 4-round Feistel network with cycle-walking permutes [0, n) without materialising it, so a
pass over the corpus is shuffled while every unit still appears exactly once.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = 0x9E3779B9


def mix32(x, xp=np):
  """A bijective avalanche mix of uint32 values (the 'lowbias32' constants)."""
  if xp is np:
    with np.errstate(over="ignore"):  # uint32 arithmetic wraps by design
      return _mix32(x, np)
  return _mix32(x, xp)


def _mix32(x, xp):
  x = xp.asarray(x)
  if x.dtype != xp.uint32:  # astype would copy even a uint32 array: ~10% of the permutation's time
    x = x.astype(xp.uint32)
  x = x ^ (x >> 16)
  x = x * xp.uint32(0x7FEB352D)
  x = x ^ (x >> 15)
  x = x * xp.uint32(0x846CA68B)
  return x ^ (x >> 16)


def hash_words(*words, xp=np):
  """Hash of a tuple of uint32 words (broadcasting)."""
  h = xp.asarray(_GOLDEN, dtype=xp.uint32)
  for w in words:
    if isinstance(w, int):  # Python ints may exceed int32, jax's default integer
      w = np.uint32(w & 0xFFFFFFFF)
    with np.errstate(over="ignore"):
      h = mix32(h ^ xp.asarray(w).astype(xp.uint32), xp) + xp.uint32(_GOLDEN)
  return mix32(h, xp)


def uniforms(h, num: int, xp=np):
  """float32[..., num] in [0, 1), the draws 0..num-1 of the stream named by hash `h`."""
  draws = xp.arange(num, dtype=xp.uint32) * xp.uint32(_GOLDEN)
  bits = mix32(h[..., None] ^ mix32(draws + xp.uint32(1), xp), xp)
  return (bits >> 8).astype(xp.float32) * xp.float32(2.0 ** -24)


def seed_word(seed: int, purpose: int) -> np.uint32:
  """A uint32 key from a Python seed of any size and a purpose tag."""
  return np.uint32(hash_words(seed & 0xFFFFFFFF, seed >> 32 & 0xFFFFFFFF, purpose, xp=np))


_ROUNDS = 4


def _feistel(x, round_keys, half_bits: int, xp):
  mask = xp.uint32((1 << half_bits) - 1)
  left, right = x >> half_bits, x & mask
  for k in round_keys:
    left, right = right, left ^ (mix32(right ^ k, xp) & mask)
  return (left << half_bits) | right


def permute(x, n: int, key, xp=np, limit=None):
  """A permutation of [0, n) keyed by `key` (uint32, broadcastable to x), applied to x in [0, n).

  `limit` (uint32, broadcastable to x, each <= n) permutes [0, limit) instead, per element: domains of
  several sizes under one static bit width (passes of unequal length)."""
  if n >= 2 ** 32:
    raise ValueError(f"permutation domain {n} exceeds 2^32")
  x = xp.asarray(x).astype(xp.uint32)
  if n <= 1:
    return xp.zeros_like(x)
  bits = max(2, int(n - 1).bit_length())
  half = (bits + 1) // 2
  key = xp.asarray(key).astype(xp.uint32)
  if key.ndim:  # a scalar key stays scalar: its round keys are hashed once
    key = xp.broadcast_to(key, x.shape)
  bound = n if limit is None else xp.broadcast_to(xp.asarray(limit).astype(xp.uint32), x.shape)
  round_keys = tuple(hash_words(key, r, xp=xp) for r in range(_ROUNDS))
  y = _feistel(x, round_keys, half, xp)
  # Cycle-walking: the domain 4^half < 4n, so a few rounds bring every value back into [0, bound).
  if xp is np:
    outside = np.flatnonzero(y >= bound)
    while outside.size:
      y[outside] = _feistel(y[outside], tuple(k if not k.ndim else k[outside] for k in round_keys), half, np)
      outside = outside[y[outside] >= (bound if limit is None else bound[outside])]
    return y
  import jax  # pylint: disable=g-import-not-at-top
  return jax.lax.while_loop(lambda y: xp.any(y >= bound),
                            lambda y: xp.where(y >= bound, _feistel(y, round_keys, half, xp), y), y)
