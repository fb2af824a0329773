"""A GPT-NeoX/Pythia-style decoder as a Flax Linen module, applied as a pure function of a param dict.

Pythia's choices, kept because the paper's model had them: rotary position on a fraction of each head
(`rotary_pct`, NeoX rotate-half layout), parallel attention + MLP residual (x + attn(ln1 x) + mlp(ln2 x)),
LayerNorm with bias, GELU MLP of width 4D, untied output head. Matches LitGPT's Pythia GPT parameter for
parameter (1,415,936 at width 128, 4 layers, vocab 2432).

Parameters are nested dicts with readable paths (`layers/3/mlp/down/kernel`) so that edits select them
by regex (`deltas.target_mask`). Hot paths call `apply(params, ...)` under jax.jit/grad/vmap: Linen's
`Module.apply` over a plain dict, no module state (WORKSPACE.md, "Model and training": measured equal to
the previous pure-function forward).

One forward serves pretraining, evaluation, fine-tuning and every edit method. Beside the logits it can
- apply a weight delta (`deltas.py`: dense, or low-rank factors applied as x W + s (x A) B, so a vmap over
  F edits never materialises F kernels),
- skip the output head, or compute it only at chosen positions (`head_positions`),
- return the residual stream entering each layer and the MLP down-projection's input (the "key" of
  locate-then-edit methods), and the MLP and attention outputs,
- add vectors to the embeddings or to an MLP output, or overwrite a layer's residual/MLP/attention output
  where a mask is set (`Interventions`: the hooks of value optimisation and causal tracing),
- start at a given layer from a residual stream computed earlier, optionally with that layer's attention
  output and MLP key too (edits recompute nothing below the first edited parameter).
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from behemoth_jax.model import deltas as deltas_lib


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  vocab_size: int
  num_layers: int = 6
  width: int = 256
  num_heads: int = 8
  max_len: int = 128
  mlp_ratio: int = 4
  rotary_pct: float = 0.25
  rotary_base: float = 10000.0
  layer_norm_eps: float = 1e-5
  # Pythia uses exact (erf) GELU; the tanh form differs by < 1e-3 and made the whole train step ~9%
  # faster on the 2-core CPU, so it is the default for models trained here from scratch.
  gelu_approximate: bool = True
  # Parameters stay float32; matmuls run in this dtype (bfloat16 on GPU/TPU, float32 on CPU).
  compute_dtype: str = "float32"

  def validate(self) -> None:
    # Ranges first: a negative width must be reported as such, not as a heads mismatch.
    for name in ("vocab_size", "num_layers", "width", "num_heads", "max_len", "mlp_ratio"):
      if getattr(self, name) < 1:
        raise ValueError(f"--config.model.{name}: must be >= 1, got {getattr(self, name)}")
    if self.width % self.num_heads:
      raise ValueError(f"--config.model.width: must be a multiple of num_heads={self.num_heads}, "
                       f"got {self.width}")
    if not 0.0 <= self.rotary_pct <= 1.0:
      raise ValueError(f"--config.model.rotary_pct: must be in [0, 1], got {self.rotary_pct}")
    if not (math.isfinite(self.rotary_base) and self.rotary_base > 1.0):
      raise ValueError(f"--config.model.rotary_base: must be a finite number > 1, got {self.rotary_base}")
    if not (math.isfinite(self.layer_norm_eps) and self.layer_norm_eps > 0.0):
      raise ValueError(f"--config.model.layer_norm_eps: must be a finite number > 0, got {self.layer_norm_eps}")
    if self.compute_dtype not in ("float32", "bfloat16"):
      raise ValueError(f"--config.model.compute_dtype: must be float32 or bfloat16, "
                       f"got {self.compute_dtype}")

  @property
  def head_dim(self) -> int:
    return self.width // self.num_heads

  @property
  def mlp_width(self) -> int:
    return self.width * self.mlp_ratio

  @property
  def rotary_dim(self) -> int:
    # Even, as rotate-half needs pairs (Pythia: 0.25 * 32 = 8 of each 32-wide head).
    return int(self.head_dim * self.rotary_pct) // 2 * 2


class Interventions(NamedTuple):
  """Changes to the forward's activations, keyed by layer index; any field may be left empty.

  embed_add: [B, T, D] added to the token embeddings (causal tracing's noise on the subject).
  mlp_add: {layer: [B, T, D]} added to that layer's MLP output (the value vector of rank-one edits).
  patch: {(component, layer): (mask [B, T] bool, value [B, T, D])}: where the mask is set, the component's
    output is replaced by the value (causal tracing's restoration). component: "residual" (the stream
    entering the layer), "mlp" or "attn" (the layer's MLP / attention output).
  """

  embed_add: Any = None
  mlp_add: Any = None
  patch: Any = None


class Outputs(NamedTuple):
  """logits: [B, T, V] float32, or [B, K, V] at `head_positions`, or None with head=False.
  hidden: final-norm hidden states [B, T, D]. Per layer l (lists indexed by layer, None below the start
  layer): residual[l] the stream entering layer l [B, T, D], mlp_key[l] the MLP down-projection's input
  [B, T, F], mlp_out[l] / attn_out[l] the layer's MLP / attention output [B, T, D]. residual[L] is the
  stream after the last layer (before the final norm). Under jit, whatever the caller ignores is never
  computed.
  """

  logits: Any
  hidden: Any
  residual: list
  mlp_key: list
  mlp_out: list
  attn_out: list


# ---------------------------------------------------------------------------------------------------
# Building blocks (pure functions, used by the modules below).


def embed_lookup(table_VxD: jax.Array, tokens_BxT: jax.Array) -> jax.Array:
  # A plain gather: its scatter-add gradient measured faster on this CPU than a one-hot matmul
  # custom_vjp (WORKSPACE.md, "Where the time goes").
  return table_VxD[tokens_BxT]


def layer_norm_fn(x, scale, bias, eps):
  x32 = x.astype(jnp.float32)
  mean = x32.mean(-1, keepdims=True)
  var = jnp.square(x32 - mean).mean(-1, keepdims=True)
  y = (x32 - mean) * jax.lax.rsqrt(var + eps)
  return (y * scale + bias).astype(x.dtype)


def rotary_tables(cfg: ModelConfig, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
  """cos/sin [T, rotary_dim] in NeoX's rotate-half layout; numpy, so they fold into the program."""
  r = cfg.rotary_dim
  inv_freq = 1.0 / (cfg.rotary_base ** (np.arange(0, r, 2, dtype=np.float64) / r))
  angles_TxR2 = np.arange(seq_len, dtype=np.float64)[:, None] * inv_freq[None, :]
  angles_TxR = np.concatenate([angles_TxR2, angles_TxR2], -1)
  return np.cos(angles_TxR).astype(np.float32), np.sin(angles_TxR).astype(np.float32)


def apply_rotary(x_BxTxHxK, cos_TxR, sin_TxR):
  r = cos_TxR.shape[-1]
  if r == 0:
    return x_BxTxHxK
  rot, keep = x_BxTxHxK[..., :r], x_BxTxHxK[..., r:]
  x1, x2 = rot[..., : r // 2], rot[..., r // 2:]
  rotated = jnp.concatenate([-x2, x1], -1)
  cos = cos_TxR[None, :, None, :].astype(x_BxTxHxK.dtype)
  sin = sin_TxR[None, :, None, :].astype(x_BxTxHxK.dtype)
  return jnp.concatenate([rot * cos + rotated * sin, keep], -1)


def take_positions(x_BxTx_, positions_BxK):
  """x at the given positions of each row: [B, K, ...]."""
  index = positions_BxK.astype(jnp.int32).reshape(positions_BxK.shape + (1,) * (x_BxTx_.ndim - 2))
  return jnp.take_along_axis(x_BxTx_, index, axis=1)


def causal_attention_at(q_BxKxHxK, positions_BxK, k_BxTxHxK, v_BxTxHxK):
  """Attention for queries at chosen positions only (each sees the keys at or before its position)."""
  T, K = k_BxTxHxK.shape[1], q_BxKxHxK.shape[-1]
  q_BxKxHxK = q_BxKxHxK * jnp.asarray(1.0 / math.sqrt(K), q_BxKxHxK.dtype)
  s_BxHxKxT = jnp.einsum("bqhk,bshk->bhqs", q_BxKxHxK, k_BxTxHxK, preferred_element_type=jnp.float32)
  mask_BxKxT = jnp.arange(T)[None, None, :] <= positions_BxK[:, :, None]
  s_BxHxKxT = jnp.where(mask_BxKxT[:, None], s_BxHxKxT, np.float32(-1e30))
  p_BxHxKxT = jax.nn.softmax(s_BxHxKxT, axis=-1).astype(v_BxTxHxK.dtype)
  return jnp.einsum("bhqs,bshk->bqhk", p_BxHxKxT, v_BxTxHxK)


def causal_attention(q_BxTxHxK, k_BxTxHxK, v_BxTxHxK):
  """Softmax attention with a constant causal mask (folded at trace time)."""
  T, K = q_BxTxHxK.shape[1], q_BxTxHxK.shape[-1]
  q_BxTxHxK = q_BxTxHxK * jnp.asarray(1.0 / math.sqrt(K), q_BxTxHxK.dtype)
  s_BxHxTxS = jnp.einsum("bthk,bshk->bhts", q_BxTxHxK, k_BxTxHxK,
                         preferred_element_type=jnp.float32)
  mask_TxS = np.tril(np.ones((T, T), bool))
  s_BxHxTxS = jnp.where(mask_TxS, s_BxHxTxS, np.float32(-1e30))
  p_BxHxTxS = jax.nn.softmax(s_BxHxTxS, axis=-1).astype(v_BxTxHxK.dtype)
  return jnp.einsum("bhts,bshk->bthk", p_BxHxTxS, v_BxTxHxK)


def _patch(x_BxTxD, patch):
  if patch is None:
    return x_BxTxD
  mask_BxT, value_BxTxD = patch
  return jnp.where(mask_BxT[..., None], value_BxTxD.astype(x_BxTxD.dtype), x_BxTxD)


# ---------------------------------------------------------------------------------------------------
# Modules. Each takes the slice of the delta pytree that mirrors its own parameters.

_normal = nn.initializers.normal


class LayerNorm(nn.Module):
  eps: float

  @nn.compact
  def __call__(self, x_BxTxD, delta=None):
    delta = delta or {}
    D = x_BxTxD.shape[-1]
    scale = deltas_lib.add_dense(self.param("scale", nn.initializers.ones, (D,)), delta.get("scale"))
    bias = deltas_lib.add_dense(self.param("bias", nn.initializers.zeros, (D,)), delta.get("bias"))
    return layer_norm_fn(x_BxTxD, scale, bias, self.eps)


class Dense(nn.Module):
  features: int
  std: float
  dtype: Any
  use_bias: bool = True

  @nn.compact
  def __call__(self, x, delta=None):
    delta = delta or {}
    kernel = self.param("kernel", _normal(self.std), (x.shape[-1], self.features))
    y = deltas_lib.matmul(x, kernel, delta.get("kernel"), self.dtype)
    if self.use_bias:
      bias = self.param("bias", nn.initializers.zeros, (self.features,))
      y = y + deltas_lib.add_dense(bias, delta.get("bias")).astype(self.dtype)
    return y


class Attention(nn.Module):
  cfg: ModelConfig
  out_std: float

  @nn.compact
  def __call__(self, h_BxTxD, cos_TxR, sin_TxR, delta=None, query_positions=None):
    """[B, T, D], or with query_positions [B, K] the output at those positions only."""
    cfg, delta = self.cfg, delta or {}
    dtype = jnp.dtype(cfg.compute_dtype)
    B, T, D = h_BxTxD.shape
    H, K = cfg.num_heads, cfg.head_dim
    # One fused QKV matmul, column layout [q | k | v], each D wide with heads contiguous.
    qkv_BxTx3D = Dense(3 * D, 0.02, dtype, name="qkv")(h_BxTxD, delta.get("qkv"))
    # jnp.split: its gradient is one concatenate (three index slices' would be pads + adds).
    q_BxTxHxK, k_BxTxHxK, v_BxTxHxK = (
        t[:, :, 0] for t in jnp.split(qkv_BxTx3D.reshape(B, T, 3, H, K), 3, axis=2))
    q_BxTxHxK = apply_rotary(q_BxTxHxK, cos_TxR, sin_TxR)
    k_BxTxHxK = apply_rotary(k_BxTxHxK, cos_TxR, sin_TxR)
    if query_positions is None:
      o_BxTxD = causal_attention(q_BxTxHxK, k_BxTxHxK, v_BxTxHxK).reshape(B, T, D)
    else:
      q_BxKxHxK = take_positions(q_BxTxHxK, query_positions)
      o_BxTxD = causal_attention_at(q_BxKxHxK, query_positions, k_BxTxHxK, v_BxTxHxK).reshape(
          B, query_positions.shape[1], D)
    return Dense(D, self.out_std, dtype, name="out")(o_BxTxD, delta.get("out"))


class Mlp(nn.Module):
  cfg: ModelConfig
  out_std: float

  @nn.compact
  def __call__(self, h_BxTxD, delta=None, key_cached=None):
    """(output [B, T, D], the down-projection's input [B, T, F]); with key_cached, only the down-projection
    runs (h_BxTxD is then unused)."""
    cfg, delta = self.cfg, delta or {}
    dtype = jnp.dtype(cfg.compute_dtype)
    if key_cached is None:
      up_BxTxF = Dense(cfg.mlp_width, 0.02, dtype, name="up")(h_BxTxD, delta.get("up"))
      key_BxTxF = jax.nn.gelu(up_BxTxF, approximate=cfg.gelu_approximate)
    else:
      key_BxTxF = key_cached
    return Dense(cfg.width, self.out_std, dtype, name="down")(key_BxTxF, delta.get("down")), key_BxTxF


class Block(nn.Module):
  """x + attn(ln_attn(x)) + mlp(ln_mlp(x)) (GPT-NeoX's parallel residual)."""

  cfg: ModelConfig

  @nn.compact
  def __call__(self, x_BxTxD, cos_TxR, sin_TxR, delta=None, mlp_add=None, patch_attn=None,
               patch_mlp=None, cached=None, query_positions=None):
    """cached: (attention output, MLP key) computed earlier by a model with the same weights below them
    (either may be None): that part is not recomputed. query_positions [B, K]: the block's output only at
    those positions (keys and values still come from every position); everything returned is [B, K, ...]."""
    cfg, delta = self.cfg, delta or {}
    attn_cached, key_cached = cached or (None, None)
    out_std = 0.02 / math.sqrt(2 * cfg.num_layers)  # GPT-NeoX: output projections scaled by 1/sqrt(2L)
    if query_positions is not None:
      at = lambda x: None if x is None else take_positions(x, query_positions)
      attn_cached, key_cached, mlp_add = at(attn_cached), at(key_cached), at(mlp_add)
      patch_attn = None if patch_attn is None else (at(patch_attn[0]), at(patch_attn[1]))
      patch_mlp = None if patch_mlp is None else (at(patch_mlp[0]), at(patch_mlp[1]))
    if attn_cached is None:
      h_BxTxD = LayerNorm(cfg.layer_norm_eps, name="ln_attn")(x_BxTxD, delta.get("ln_attn"))
      attn_BxTxD = Attention(cfg, out_std, name="attn")(h_BxTxD, cos_TxR, sin_TxR, delta.get("attn"),
                                                        query_positions)
    else:
      attn_BxTxD = attn_cached
    if query_positions is not None:
      x_BxTxD = take_positions(x_BxTxD, query_positions)
    h_BxTxD = None
    if key_cached is None:
      h_BxTxD = LayerNorm(cfg.layer_norm_eps, name="ln_mlp")(x_BxTxD, delta.get("ln_mlp"))
    mlp_BxTxD, key_BxTxF = Mlp(cfg, out_std, name="mlp")(h_BxTxD, delta.get("mlp"), key_cached)
    if mlp_add is not None:
      mlp_BxTxD = mlp_BxTxD + mlp_add.astype(mlp_BxTxD.dtype)
    attn_BxTxD, mlp_BxTxD = _patch(attn_BxTxD, patch_attn), _patch(mlp_BxTxD, patch_mlp)
    y_BxTxD = x_BxTxD + (attn_BxTxD + mlp_BxTxD).astype(x_BxTxD.dtype)
    return y_BxTxD, key_BxTxF, mlp_BxTxD, attn_BxTxD


class Layers(nn.Module):
  """The blocks, named "0".."L-1" so that paths read `layers/3/mlp/down/kernel`."""

  cfg: ModelConfig

  @nn.compact
  def __call__(self, x_BxTxD, cos_TxR, sin_TxR, delta, iv: Interventions, start_layer: int, start_cached=None,
               last_positions=None):
    delta, L = delta or {}, self.cfg.num_layers
    mlp_add, patch = iv.mlp_add or {}, iv.patch or {}
    out = Outputs(None, None, [None] * (L + 1), [None] * L, [None] * L, [None] * L)
    for i in range(L):
      block = Block(self.cfg, name=str(i))
      if i < start_layer:
        continue
      x_BxTxD = _patch(x_BxTxD, patch.get(("residual", i)))
      out.residual[i] = x_BxTxD
      x_BxTxD, out.mlp_key[i], out.mlp_out[i], out.attn_out[i] = block(
          x_BxTxD, cos_TxR, sin_TxR, delta.get(str(i)), mlp_add.get(i), patch.get(("attn", i)),
          patch.get(("mlp", i)), start_cached if i == start_layer else None,
          last_positions if i == L - 1 else None)
    out.residual[L] = x_BxTxD
    return out


class Transformer(nn.Module):
  cfg: ModelConfig

  @nn.compact
  def __call__(self, tokens_BxT, delta=None, interventions: Interventions | None = None, head: bool = True,
               head_positions=None, start_layer: int = 0, residual_BxTxD=None, start_cached=None,
               prune_to_head: bool = False) -> Outputs:
    cfg, delta = self.cfg, delta or {}
    iv = interventions or Interventions()
    T = tokens_BxT.shape[1]
    if T > cfg.max_len:
      raise ValueError(f"sequence length {T} exceeds --config.model.max_len={cfg.max_len}")
    cos_TxR, sin_TxR = rotary_tables(cfg, T)
    embed = Embed(cfg.vocab_size, cfg.width, name="embed")
    if start_layer == 0:
      x_BxTxD = embed(tokens_BxT, delta.get("embed"))
      if iv.embed_add is not None:
        x_BxTxD = x_BxTxD + iv.embed_add.astype(x_BxTxD.dtype)
    else:
      if residual_BxTxD is None:
        raise ValueError("start_layer > 0 needs the residual stream entering that layer")
      x_BxTxD = residual_BxTxD
    # The last layer only at the head positions: the loss never reads its other positions' outputs.
    pruned = prune_to_head and head_positions is not None and start_layer < cfg.num_layers
    out = Layers(cfg, name="layers")(x_BxTxD, cos_TxR, sin_TxR, delta.get("layers"), iv, start_layer,
                                     start_cached, head_positions if pruned else None)
    hidden_BxTxD = LayerNorm(cfg.layer_norm_eps, name="final_norm")(out.residual[-1], delta.get("final_norm"))
    logits = None
    if head:
      h = hidden_BxTxD
      if head_positions is not None and not pruned:  # [B, K]: the head only where a loss or metric reads it
        h = jnp.take_along_axis(h, head_positions[..., None].astype(jnp.int32), axis=1)
      dtype = jnp.dtype(cfg.compute_dtype)
      # On rows [B*T, D]: the [B, T, V] form's gradient layout measured ~20% slower for the train step.
      logits = Dense(cfg.vocab_size, 0.02, dtype, use_bias=False, name="head")(
          h.reshape(-1, h.shape[-1]), delta.get("head"))
      logits = logits.astype(jnp.float32).reshape(h.shape[:-1] + (cfg.vocab_size,))
    return out._replace(logits=logits, hidden=hidden_BxTxD)


class Embed(nn.Module):
  num_embeddings: int
  features: int

  @nn.compact
  def __call__(self, tokens_BxT, delta=None):
    delta = delta or {}
    table_VxD = self.param("embedding", _normal(0.02), (self.num_embeddings, self.features))
    return embed_lookup(deltas_lib.add_dense(table_VxD, delta.get("embedding")), tokens_BxT)


# ---------------------------------------------------------------------------------------------------
# The functional interface every caller uses.


def init_params(key: jax.Array, cfg: ModelConfig) -> dict:
  """GPT-NeoX initialisation: normal(0.02) everywhere, output projections scaled by 1/sqrt(2 L)."""
  cfg.validate()
  tokens = jnp.zeros((1, 1), jnp.int32)
  return Transformer(cfg).init(key, tokens)["params"]


def apply(params: dict, tokens_BxT: jax.Array, cfg: ModelConfig, **kwargs) -> Outputs:
  """The one forward; keyword arguments as `Transformer.__call__` (delta, interventions, head,
  head_positions, start_layer, residual_BxTxD, start_cached: (attention output, MLP key) of the start
  layer when the delta leaves what produces them frozen, prune_to_head: with head_positions, the last layer
  runs at those positions only, so `hidden` and the last layer's captures are [B, K, ...] too)."""
  return Transformer(cfg).apply({"params": params}, tokens_BxT, **kwargs)


def forward(params: dict, tokens_BxT: jax.Array, cfg: ModelConfig, delta=None) -> jax.Array:
  """Logits [B, T, V] in float32."""
  return apply(params, tokens_BxT, cfg, delta=delta).logits


def num_params(params) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))


def layer_names(params: dict) -> list[str]:
  return sorted(params["layers"], key=int)


def flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
  """Training FLOPs per token (PaLM appendix B): 6 N_matmul + 12 L T D for attention scores/values.

  N_matmul counts the weights that multiply every token (all but the embedding gather).
  """
  D, F, L, V = cfg.width, cfg.width * cfg.mlp_ratio, cfg.num_layers, cfg.vocab_size
  n_matmul = L * (3 * D * D + D * D + 2 * D * F) + D * V
  return 6.0 * n_matmul + 12.0 * L * seq_len * D


# Parameter paths are spelled once, in deltas.py ("layers/3/mlp/down/kernel"); re-exported for callers of
# the model alone.
path_name = deltas_lib.path_name
param_paths = deltas_lib.flatten


def path_mask(params: dict, pattern: str) -> dict:
  """A bool pytree like `params`: True where the path fully matches the regex `pattern`."""
  regex = re.compile(pattern)
  return jax.tree_util.tree_map_with_path(lambda path, _: bool(regex.fullmatch(path_name(path))), params)
