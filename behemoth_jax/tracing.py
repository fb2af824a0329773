"""Causal tracing (ROME's localisation): where along (layer, position) is a fact recalled?

For a prompt whose next token is the answer: run it clean; run it with Gaussian noise added to the
subject's token embeddings (scale = `noise` x the standard deviation of the embedding table's entries;
ROME uses 3), which destroys the answer; then, one (layer, position) at a time, put back the clean value
of one component there and record the answer's probability. Components: "residual" (the stream entering
the layer), "mlp" / "attn" (the layer's MLP / attention output; ROME restores a window of ~10 layers for
those, here one layer). Indirect effect = restored probability - corrupted probability.

Everything for one component runs in one jitted program: vmapped over positions (and probes), the layers
unrolled (each layer's patch is a different hook of the forward). The noise is drawn once per probe and is
the same for every restoration of that probe, so the effects are comparable across (layer, position).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from behemoth_jax import model

COMPONENTS = ("residual", "mlp", "attn")
_CAPTURE = {"residual": "residual", "mlp": "mlp_out", "attn": "attn_out"}


def embedding_std(params) -> float:
  return float(np.std(np.asarray(params["embed"]["embedding"])))


@functools.partial(jax.jit, static_argnames=("cfg", "component"))
def trace(params, tokens_BxT, subject_BxT, answer_B, noise_BxTxD, cfg: model.ModelConfig,
          component: str = "residual"):
  """(clean p [B], corrupted p [B], restored p [B, L, T]): the answer's probability at the last position.

  subject_BxT: bool, the tokens whose embeddings are corrupted; noise_BxTxD: already scaled (it is masked
  to the subject here).
  """
  B, T = tokens_BxT.shape
  last = jnp.full((B, 1), T - 1, jnp.int32)

  def prob(out):
    return jax.nn.softmax(out.logits[:, 0], -1)[jnp.arange(B), answer_B]

  clean = model.apply(params, tokens_BxT, cfg, head_positions=last)
  noise = noise_BxTxD * subject_BxT[..., None]
  corrupted = model.apply(params, tokens_BxT, cfg, head_positions=last,
                          interventions=model.Interventions(embed_add=noise))
  captured = getattr(clean, _CAPTURE[component])

  def restored_at(layer, position):
    mask = jnp.broadcast_to(jnp.arange(T)[None, :] == position, (B, T))
    iv = model.Interventions(embed_add=noise, patch={(component, layer): (mask, captured[layer])})
    return prob(model.apply(params, tokens_BxT, cfg, head_positions=last, interventions=iv))

  per_layer = [jax.vmap(functools.partial(restored_at, l))(jnp.arange(T)) for l in range(cfg.num_layers)]
  restored_BxLxT = jnp.stack(per_layer, 0).transpose(2, 0, 1)  # [L, T, B] -> [B, L, T]
  return prob(clean), prob(corrupted), restored_BxLxT


def draw_noise(key, shape, scale: float) -> jax.Array:
  return scale * jax.random.normal(key, shape, jnp.float32)
