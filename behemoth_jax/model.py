"""A GPT-NeoX/Pythia-style decoder as pure functions over a plain parameter dict.

Pythia's choices, kept because the paper's model had them: rotary position on a fraction of each head
(`rotary_pct`, NeoX rotate-half layout), parallel attention + MLP residual (x + attn(ln1 x) + mlp(ln2 x)),
LayerNorm with bias, GELU MLP of width 4D, untied output head. Matches LitGPT's Pythia GPT parameter for
parameter (1,415,936 at width 128, 4 layers, vocab 2432).

Parameters are nested dicts with readable paths (`layers/3/mlp/down/kernel`) so that edits select them
by regex (`params.select`). No flax module state: the hot path is jax.jit/grad over this dict.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np


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
    if self.width % self.num_heads:
      raise ValueError(f"--config.model.width must be a multiple of num_heads={self.num_heads}, "
                       f"got {self.width}")
    for name in ("vocab_size", "num_layers", "width", "num_heads", "max_len", "mlp_ratio"):
      if getattr(self, name) < 1:
        raise ValueError(f"--config.model.{name} must be >= 1, got {getattr(self, name)}")
    if not 0.0 <= self.rotary_pct <= 1.0:
      raise ValueError(f"--config.model.rotary_pct must be in [0, 1], got {self.rotary_pct}")
    if self.compute_dtype not in ("float32", "bfloat16"):
      raise ValueError(f"--config.model.compute_dtype must be float32 or bfloat16, "
                       f"got {self.compute_dtype}")

  @property
  def head_dim(self) -> int:
    return self.width // self.num_heads

  @property
  def rotary_dim(self) -> int:
    # Even, as rotate-half needs pairs (Pythia: 0.25 * 32 = 8 of each 32-wide head).
    return int(self.head_dim * self.rotary_pct) // 2 * 2


def num_params(params) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))


def init_params(key: jax.Array, cfg: ModelConfig) -> dict:
  """GPT-NeoX initialisation: normal(0.02) everywhere, output projections scaled by 1/sqrt(2 L)."""
  cfg.validate()
  D, F, V, L = cfg.width, cfg.width * cfg.mlp_ratio, cfg.vocab_size, cfg.num_layers
  std = 0.02
  out_std = std / math.sqrt(2 * L)
  keys = iter(jax.random.split(key, 2 + 4 * L))

  def dense(k, n_in, n_out, s):
    return {"kernel": s * jax.random.normal(k, (n_in, n_out), jnp.float32),
            "bias": jnp.zeros((n_out,), jnp.float32)}

  def norm():
    return {"scale": jnp.ones((D,), jnp.float32), "bias": jnp.zeros((D,), jnp.float32)}

  params = {"embed": {"embedding": std * jax.random.normal(next(keys), (V, D), jnp.float32)},
            "layers": {}}
  for i in range(L):
    params["layers"][str(i)] = {
        "ln_attn": norm(),
        "ln_mlp": norm(),
        # One fused QKV matmul, column layout [q | k | v], each D wide with heads contiguous.
        "attn": {"qkv": dense(next(keys), D, 3 * D, std), "out": dense(next(keys), D, D, out_std)},
        "mlp": {"up": dense(next(keys), D, F, std), "down": dense(next(keys), F, D, out_std)},
    }
  params["final_norm"] = norm()
  params["head"] = {"kernel": std * jax.random.normal(next(keys), (D, V), jnp.float32)}
  return params


def layer_names(params: dict) -> list[str]:
  return sorted(params["layers"], key=int)


# ---------------------------------------------------------------------------------------------------
# Building blocks.


def embed_lookup(table_VxD: jax.Array, tokens_BxT: jax.Array) -> jax.Array:
  # A plain gather: its scatter-add gradient measured faster on this CPU than a one-hot matmul
  # custom_vjp (WORKSPACE.md, "Where the time goes").
  return table_VxD[tokens_BxT]


def layer_norm(x, p, eps):
  x32 = x.astype(jnp.float32)
  mean = x32.mean(-1, keepdims=True)
  var = jnp.square(x32 - mean).mean(-1, keepdims=True)
  y = (x32 - mean) * jax.lax.rsqrt(var + eps)
  return (y * p["scale"] + p["bias"]).astype(x.dtype)


def dense(x, p, dtype):
  y = x.astype(dtype) @ p["kernel"].astype(dtype)
  if "bias" in p:
    y = y + p["bias"].astype(dtype)
  return y


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


def block(x_BxTxD, p, cfg: ModelConfig, cos_TxR, sin_TxR):
  dtype = jnp.dtype(cfg.compute_dtype)
  B, T, D = x_BxTxD.shape
  H, K = cfg.num_heads, cfg.head_dim
  h = layer_norm(x_BxTxD, p["ln_attn"], cfg.layer_norm_eps)
  qkv_BxTx3D = dense(h, p["attn"]["qkv"], dtype)
  q, k, v = jnp.split(qkv_BxTx3D.reshape(B, T, 3, H, K), 3, axis=2)
  q, k, v = (t[:, :, 0] for t in (q, k, v))
  q = apply_rotary(q, cos_TxR, sin_TxR)
  k = apply_rotary(k, cos_TxR, sin_TxR)
  attn_BxTxD = dense(causal_attention(q, k, v).reshape(B, T, D), p["attn"]["out"], dtype)
  m = layer_norm(x_BxTxD, p["ln_mlp"], cfg.layer_norm_eps)
  m = jax.nn.gelu(dense(m, p["mlp"]["up"], dtype), approximate=cfg.gelu_approximate)
  mlp_BxTxD = dense(m, p["mlp"]["down"], dtype)
  return x_BxTxD + (attn_BxTxD + mlp_BxTxD).astype(x_BxTxD.dtype)


def hidden_states(params: dict, tokens_BxT: jax.Array, cfg: ModelConfig) -> jax.Array:
  """Final-norm hidden states [B, T, D] (float32 residual stream)."""
  T = tokens_BxT.shape[1]
  if T > cfg.max_len:
    raise ValueError(f"sequence length {T} exceeds --config.model.max_len={cfg.max_len}")
  cos_TxR, sin_TxR = rotary_tables(cfg, T)
  x_BxTxD = embed_lookup(params["embed"]["embedding"], tokens_BxT)
  for name in layer_names(params):
    x_BxTxD = block(x_BxTxD, params["layers"][name], cfg, cos_TxR, sin_TxR)
  return layer_norm(x_BxTxD, params["final_norm"], cfg.layer_norm_eps)


def forward(params: dict, tokens_BxT: jax.Array, cfg: ModelConfig) -> jax.Array:
  """Logits [B, T, V] in float32."""
  h_BxTxD = hidden_states(params, tokens_BxT, cfg)
  dtype = jnp.dtype(cfg.compute_dtype)
  return (h_BxTxD.astype(dtype) @ params["head"]["kernel"].astype(dtype)).astype(jnp.float32)


def flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
  """Training FLOPs per token (PaLM appendix B): 6 N_matmul + 12 L T D for attention scores/values.

  N_matmul counts the weights that multiply every token (all but the embedding gather).
  """
  D, F, L, V = cfg.width, cfg.width * cfg.mlp_ratio, cfg.num_layers, cfg.vocab_size
  n_matmul = L * (3 * D * D + D * D + 2 * D * F) + D * V
  return 6.0 * n_matmul + 12.0 * L * seq_len * D


def path_name(path) -> str:
  """A pytree key path as "layers/3/mlp/down/kernel"."""
  return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def param_paths(params: dict) -> dict[str, jax.Array]:
  """{"layers/3/mlp/down/kernel": array, ...}: the names edits select parameters by."""
  flat, _ = jax.tree_util.tree_flatten_with_path(params)
  return {path_name(path): x for path, x in flat}


def path_mask(params: dict, pattern: str) -> dict:
  """A bool pytree like `params`: True where the path fully matches the regex `pattern`."""
  import re
  regex = re.compile(pattern)
  return jax.tree_util.tree_map_with_path(lambda path, _: bool(regex.fullmatch(path_name(path))), params)
