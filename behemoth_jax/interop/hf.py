"""Hugging Face GPT-NeoX checkpoints <-> the project's parameters, so PyTorch tools run on our models.

`save` writes a folder that `transformers.GPTNeoXForCausalLM.from_pretrained` and `AutoTokenizer` load
(config.json, model.safetensors, tokenizer.json, tokenizer_config.json, generation_config.json);
`load_hf` reads such a folder, ours or any Pythia-shaped one, back into `model.init_params`'s layout.
Both need only numpy and `safetensors`, never torch: the files are plain float32 tensors.

Layout differences, each converted explicitly (and tested tensor by tensor):
- torch Linear weights are [out, in]; our kernels are [in, out]: every kernel is transposed.
- The fused QKV projection. Ours: column j*D + h*K + k holds (q|k|v = j, head h, dim k), i.e. [q | k | v]
  each D wide with heads contiguous. HF GPT-NeoX views its output as [heads, 3 * head_dim]: row
  h*3K + j*K + k, i.e. interleaved per head. Bias likewise.
- The output head: ours [D, V] (`head/kernel`), HF `embed_out.weight` [V, D].
"""

from __future__ import annotations

import json
import pathlib

import jax
import numpy as np

from behemoth_jax.model import model

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"
GENERATION_CONFIG_FILE = "generation_config.json"

# Activation names transformers' ACT2FN maps to exact (erf) or tanh GELU.
_EXACT_GELU = ("gelu",)
_TANH_GELU = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")
_EXPORT_ACT = {False: "gelu", True: "gelu_new"}
# Buffers that older transformers versions saved beside the weights; they carry no parameters.
_IGNORED_SUFFIXES = (".attention.bias", ".attention.masked_bias", ".attention.rotary_emb.inv_freq")
_PREFIX = "gpt_neox."


class HFCheckpointError(ValueError):
  """A folder is not a GPT-NeoX checkpoint this model can represent; `str()` is one line saying why."""


# ---------------------------------------------------------------------------------------------------
# Tensor layout.


def qkv_to_hf(kernel_Dx3D: np.ndarray, bias_3D: np.ndarray, num_heads: int):
  """Our fused QKV (kernel [D, 3D], bias [3D]) as HF `query_key_value` (weight [3D, D], bias [3D])."""
  D = kernel_Dx3D.shape[0]
  H, K = num_heads, D // num_heads
  w_DxHx3xK = kernel_Dx3D.reshape(D, 3, H, K).transpose(0, 2, 1, 3)
  b_Hx3xK = bias_3D.reshape(3, H, K).transpose(1, 0, 2)
  return np.ascontiguousarray(w_DxHx3xK.reshape(D, 3 * D).T), np.ascontiguousarray(b_Hx3xK.reshape(3 * D))


def qkv_from_hf(weight_3DxD: np.ndarray, bias_3D: np.ndarray, num_heads: int):
  """Inverse of `qkv_to_hf`."""
  D = weight_3DxD.shape[1]
  H, K = num_heads, D // num_heads
  k_Dx3xHxK = weight_3DxD.T.reshape(D, H, 3, K).transpose(0, 2, 1, 3)
  b_3xHxK = bias_3D.reshape(H, 3, K).transpose(1, 0, 2)
  return np.ascontiguousarray(k_Dx3xHxK.reshape(D, 3 * D)), np.ascontiguousarray(b_3xHxK.reshape(3 * D))


def _t(x: np.ndarray) -> np.ndarray:
  return np.ascontiguousarray(x.T)


def to_hf_state(params: dict, cfg: model.ModelConfig) -> dict[str, np.ndarray]:
  """HF GPT-NeoX state dict (float32 numpy) of our parameters."""
  p = jax.tree.map(lambda x: np.asarray(jax.device_get(x), np.float32), params)
  out = {"gpt_neox.embed_in.weight": p["embed"]["embedding"]}
  for name in model.layer_names(p):
    layer, pre = p["layers"][name], f"gpt_neox.layers.{name}."
    qkv_w, qkv_b = qkv_to_hf(layer["attn"]["qkv"]["kernel"], layer["attn"]["qkv"]["bias"], cfg.num_heads)
    out.update({
        pre + "input_layernorm.weight": layer["ln_attn"]["scale"],
        pre + "input_layernorm.bias": layer["ln_attn"]["bias"],
        pre + "post_attention_layernorm.weight": layer["ln_mlp"]["scale"],
        pre + "post_attention_layernorm.bias": layer["ln_mlp"]["bias"],
        pre + "attention.query_key_value.weight": qkv_w,
        pre + "attention.query_key_value.bias": qkv_b,
        pre + "attention.dense.weight": _t(layer["attn"]["out"]["kernel"]),
        pre + "attention.dense.bias": layer["attn"]["out"]["bias"],
        pre + "mlp.dense_h_to_4h.weight": _t(layer["mlp"]["up"]["kernel"]),
        pre + "mlp.dense_h_to_4h.bias": layer["mlp"]["up"]["bias"],
        pre + "mlp.dense_4h_to_h.weight": _t(layer["mlp"]["down"]["kernel"]),
        pre + "mlp.dense_4h_to_h.bias": layer["mlp"]["down"]["bias"],
    })
  out["gpt_neox.final_layer_norm.weight"] = p["final_norm"]["scale"]
  out["gpt_neox.final_layer_norm.bias"] = p["final_norm"]["bias"]
  out["embed_out.weight"] = _t(p["head"]["kernel"])
  return {k: np.ascontiguousarray(v) for k, v in out.items()}


def expected_shapes(cfg: model.ModelConfig, tied: bool = False) -> dict[str, tuple[int, ...]]:
  """Every tensor name of an HF GPT-NeoX checkpoint of this shape, with its shape."""
  D, F, V = cfg.width, cfg.width * cfg.mlp_ratio, cfg.vocab_size
  shapes = {"gpt_neox.embed_in.weight": (V, D)}
  for i in range(cfg.num_layers):
    pre = f"gpt_neox.layers.{i}."
    for norm in ("input_layernorm", "post_attention_layernorm"):
      shapes[pre + norm + ".weight"] = shapes[pre + norm + ".bias"] = (D,)
    shapes.update({pre + "attention.query_key_value.weight": (3 * D, D),
                   pre + "attention.query_key_value.bias": (3 * D,),
                   pre + "attention.dense.weight": (D, D), pre + "attention.dense.bias": (D,),
                   pre + "mlp.dense_h_to_4h.weight": (F, D), pre + "mlp.dense_h_to_4h.bias": (F,),
                   pre + "mlp.dense_4h_to_h.weight": (D, F), pre + "mlp.dense_4h_to_h.bias": (D,)})
  shapes["gpt_neox.final_layer_norm.weight"] = shapes["gpt_neox.final_layer_norm.bias"] = (D,)
  if not tied:
    shapes["embed_out.weight"] = (V, D)
  return shapes


def from_hf_state(tensors: dict[str, np.ndarray], cfg: model.ModelConfig, tied: bool = False) -> dict:
  """Our parameters (float32 jax arrays) from an HF GPT-NeoX state dict; shapes checked first."""
  tensors = {(k if k.startswith(_PREFIX) or k == "embed_out.weight" else _PREFIX + k): v
             for k, v in tensors.items() if not k.endswith(_IGNORED_SUFFIXES)}
  want = expected_shapes(cfg, tied)
  missing = sorted(set(want) - set(tensors))
  if missing:
    raise HFCheckpointError(f"tensor {missing[0]} missing ({len(missing)} of {len(want)} absent)")
  unknown = sorted(set(tensors) - set(want))
  if unknown:
    raise HFCheckpointError(f"unexpected tensor {unknown[0]} ({len(unknown)} not in a GPT-NeoX model "
                            f"of this config)")
  for name, shape in want.items():
    if tuple(tensors[name].shape) != shape:
      raise HFCheckpointError(f"tensor {name} has shape {tuple(tensors[name].shape)}, config.json says "
                              f"{shape}")
  t = {k: np.asarray(v).astype(np.float32, copy=False) for k, v in tensors.items()}

  def norm(name):
    return {"scale": t[name + ".weight"], "bias": t[name + ".bias"]}

  def dense(name):
    return {"kernel": _t(t[name + ".weight"]), "bias": t[name + ".bias"]}

  params = {"embed": {"embedding": t["gpt_neox.embed_in.weight"]}, "layers": {}}
  for i in range(cfg.num_layers):
    pre = f"gpt_neox.layers.{i}."
    kernel, bias = qkv_from_hf(t[pre + "attention.query_key_value.weight"],
                               t[pre + "attention.query_key_value.bias"], cfg.num_heads)
    params["layers"][str(i)] = {
        "ln_attn": norm(pre + "input_layernorm"),
        "ln_mlp": norm(pre + "post_attention_layernorm"),
        "attn": {"qkv": {"kernel": kernel, "bias": bias}, "out": dense(pre + "attention.dense")},
        "mlp": {"up": dense(pre + "mlp.dense_h_to_4h"), "down": dense(pre + "mlp.dense_4h_to_h")},
    }
  params["final_norm"] = norm("gpt_neox.final_layer_norm")
  head = t["gpt_neox.embed_in.weight"] if tied else t["embed_out.weight"]
  params["head"] = {"kernel": _t(head)}
  return jax.tree.map(lambda x: jax.numpy.asarray(np.ascontiguousarray(x)), params)


# ---------------------------------------------------------------------------------------------------
# config.json.


def _partial_rotary_factor(cfg: model.ModelConfig) -> float:
  """A factor f with int(head_dim * f) == cfg.rotary_dim, as transformers computes its rotary width.

  Our rotary width rounds down to an even number; transformers' does not, so a pct such as 0.3 of 32
  (9.6 -> ours 8, theirs 9) is exported as 8/32. The configured pct is kept whenever it already agrees.
  """
  K, r = cfg.head_dim, cfg.rotary_dim
  if int(K * cfg.rotary_pct) == r:
    return cfg.rotary_pct
  f = r / K
  while int(K * f) < r:  # r / K * K can land one ulp below r
    f = float(np.nextafter(f, 1.0))
  return f


def to_hf_config(cfg: model.ModelConfig, bos_id: int, eos_id: int, pad_id: int) -> dict:
  """GPT-NeoX config.json for this model; rotary settings both in transformers 5's `rope_parameters`
  and in the older top-level names, so that 4.x and 5.x read the same model."""
  factor = _partial_rotary_factor(cfg)
  return {
      "architectures": ["GPTNeoXForCausalLM"],
      "model_type": "gpt_neox",
      "vocab_size": cfg.vocab_size,
      "hidden_size": cfg.width,
      "num_hidden_layers": cfg.num_layers,
      "num_attention_heads": cfg.num_heads,
      "intermediate_size": cfg.width * cfg.mlp_ratio,
      "hidden_act": _EXPORT_ACT[cfg.gelu_approximate],
      "max_position_embeddings": cfg.max_len,
      "layer_norm_eps": cfg.layer_norm_eps,
      "use_parallel_residual": True,
      "attention_bias": True,
      "tie_word_embeddings": False,
      "rotary_pct": factor,
      "rotary_emb_base": cfg.rotary_base,
      "rope_scaling": None,
      "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rotary_base,
                          "partial_rotary_factor": factor},
      "attention_dropout": 0.0,
      "hidden_dropout": 0.0,
      "initializer_range": 0.02,
      "bos_token_id": bos_id,
      "eos_token_id": eos_id,
      "pad_token_id": pad_id,
      "use_cache": True,
      "torch_dtype": "float32",
      "dtype": "float32",
  }


def from_hf_config(c: dict, compute_dtype: str = "float32") -> tuple[model.ModelConfig, bool]:
  """(our ModelConfig, tied embeddings) for a GPT-NeoX config.json, or HFCheckpointError saying what
  this model cannot represent."""

  def refuse(message):
    raise HFCheckpointError(f"config.json: {message}")

  if c.get("model_type") != "gpt_neox":
    refuse(f"model_type must be gpt_neox, got {c.get('model_type')!r}")
  if not c.get("use_parallel_residual", True):
    refuse("use_parallel_residual must be true (this model has a parallel residual only)")
  if not c.get("attention_bias", True):
    refuse("attention_bias must be true (this model's attention projections have biases)")
  act = c.get("hidden_act", "gelu")
  if act not in _EXACT_GELU + _TANH_GELU:
    refuse(f"hidden_act must be one of {', '.join(_EXACT_GELU + _TANH_GELU)}, got {act!r}")
  rope = dict(c.get("rope_parameters") or c.get("rope_scaling") or {})
  if rope.get("rope_type", rope.get("type", "default")) != "default":
    refuse(f"rope type must be default (no rope scaling), got {rope.get('rope_type', rope.get('type'))!r}")
  pct = float(rope.get("partial_rotary_factor", c.get("rotary_pct", 0.25)))
  base = float(rope.get("rope_theta", c.get("rotary_emb_base", 10000.0)))
  D, H, F = c.get("hidden_size"), c.get("num_attention_heads"), c.get("intermediate_size")
  if not all(isinstance(x, int) and x > 0 for x in (D, H, F)):
    refuse("hidden_size, num_attention_heads and intermediate_size must be positive integers")
  if D % H:
    refuse(f"hidden_size {D} must be a multiple of num_attention_heads {H}")
  if F % D:
    refuse(f"intermediate_size {F} must be a multiple of hidden_size {D} (this model's MLP is "
           f"mlp_ratio * width wide)")
  if int(D // H * pct) % 2:
    refuse(f"rotary width int({D // H} * {pct}) must be even (rotate-half pairs dimensions)")
  cfg = model.ModelConfig(
      vocab_size=c.get("vocab_size"), num_layers=c.get("num_hidden_layers"), width=D, num_heads=H,
      max_len=c.get("max_position_embeddings", 2048), mlp_ratio=F // D, rotary_pct=pct, rotary_base=base,
      layer_norm_eps=float(c.get("layer_norm_eps", 1e-5)), gelu_approximate=act in _TANH_GELU,
      compute_dtype=compute_dtype)
  try:
    cfg.validate()
  except (ValueError, TypeError) as e:
    refuse(str(e).replace("--config.model.", ""))
  return cfg, bool(c.get("tie_word_embeddings", False))


# ---------------------------------------------------------------------------------------------------
# Folders.


def save(directory, params: dict, cfg: model.ModelConfig, vocab=None, extra: dict | None = None) -> None:
  """Writes an HF GPT-NeoX checkpoint into the existing folder `directory` (callers make it atomic).

  `vocab` (a data_gen Vocab) adds tokenizer.json/tokenizer_config.json and sets the special-token ids;
  `extra` is written as behemoth.json (where the weights came from).
  """
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  from data_gen.world.vocab import EOT, PAD  # pylint: disable=g-import-not-at-top
  d = pathlib.Path(directory)
  hf_config = to_hf_config(cfg, bos_id=EOT, eos_id=EOT, pad_id=PAD)
  (d / CONFIG_FILE).write_text(json.dumps(hf_config, indent=1) + "\n")
  (d / GENERATION_CONFIG_FILE).write_text(json.dumps(
      {"bos_token_id": EOT, "eos_token_id": EOT, "pad_token_id": PAD, "do_sample": False}, indent=1) + "\n")
  # transformers refuses safetensors files whose metadata does not name a framework it knows.
  save_file(to_hf_state(params, cfg), str(d / WEIGHTS_FILE), metadata={"format": "pt"})
  if vocab is not None:
    from data_gen.export import tokenizer  # pylint: disable=g-import-not-at-top
    tokenizer.write_tokenizer(d, vocab)
  if extra is not None:
    (d / "behemoth.json").write_text(json.dumps(extra, indent=1, sort_keys=True) + "\n")


def _read_tensors(d: pathlib.Path) -> dict[str, np.ndarray]:
  from safetensors import safe_open  # pylint: disable=g-import-not-at-top
  if (d / WEIGHTS_FILE).exists():
    files = [d / WEIGHTS_FILE]
  elif (d / WEIGHTS_INDEX_FILE).exists():
    weight_map = json.loads((d / WEIGHTS_INDEX_FILE).read_text())["weight_map"]
    files = [d / f for f in sorted(set(weight_map.values()))]
  else:
    raise HFCheckpointError(f"{d} has neither {WEIGHTS_FILE} nor {WEIGHTS_INDEX_FILE} (only safetensors "
                            f"checkpoints are read)")
  out = {}
  for f in files:
    # The flax reader, unlike the numpy one, understands bfloat16 (Pythia's published dtype).
    with safe_open(str(f), framework="flax") as reader:
      for k in reader.keys():
        out[k] = np.asarray(reader.get_tensor(k))
  return out


def load_hf(path, compute_dtype: str = "float32") -> tuple[dict, model.ModelConfig]:
  """(params, model config) of a GPT-NeoX safetensors checkpoint folder; float32 parameters.

  Raises HFCheckpointError (one line) for a folder that is not one, or for a GPT-NeoX variant this model
  cannot represent (sequential residual, no attention biases, other activations, rope scaling).
  """
  d = pathlib.Path(path)
  if not (d / CONFIG_FILE).is_file():
    raise HFCheckpointError(f"{d} has no {CONFIG_FILE} (not a Hugging Face checkpoint folder)")
  try:
    hf_config = json.loads((d / CONFIG_FILE).read_text())
  except json.JSONDecodeError as e:
    raise HFCheckpointError(f"{d / CONFIG_FILE} is not JSON: {e}") from None
  cfg, tied = from_hf_config(hf_config, compute_dtype)
  return from_hf_state(_read_tensors(d), cfg, tied), cfg
