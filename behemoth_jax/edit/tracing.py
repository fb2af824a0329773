"""Causal tracing (ROME's localisation): where along (layer, position) is a fact recalled?

For a prompt whose next token is the answer: run it clean; run it with Gaussian noise added to the
subject's token embeddings (scale = `noise` x the standard deviation of the embedding table's entries;
ROME uses 3), which destroys the answer; then, one (layer, position) at a time, put back the clean value
of one component there and record the answer's probability. Components: "residual" (the stream entering
the layer), "mlp" / "attn" (the layer's MLP / attention output; `window` layers restored around the layer,
ROME's code: 10, l - 5 .. l + 4; default here 1). Indirect effect = restored probability - corrupted
probability, each averaged over `samples` noise draws per probe (ROME's code: 10; default here 1).

Everything for one component runs in one jitted program: vmapped over positions (and probes), the layers
unrolled (each layer's patch is a different hook of the forward). The noise is drawn once per probe and is
the same for every restoration of that probe, so the effects are comparable across (layer, position).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from behemoth_jax.model import model

COMPONENTS = ("residual", "mlp", "attn")
_CAPTURE = {"residual": "residual", "mlp": "mlp_out", "attn": "attn_out"}


def embedding_std(params) -> float:
  return float(np.std(np.asarray(params["embed"]["embedding"])))


def window_layers(layer: int, window: int, num_layers: int) -> range:
  """The layers restored for `layer` with a window of `window` (ROME's trace_important_window)."""
  return range(max(0, layer - window // 2), min(num_layers, layer - (-window // 2)))


@functools.partial(jax.jit, static_argnames=("cfg", "component", "window"))
def trace(params, tokens_BxT, subject_BxT, answer_B, noise_BxTxD, cfg: model.ModelConfig,
          component: str = "residual", window: int = 1):
  """(clean p [B], corrupted p [B], restored p [B, L, T]): the answer's probability at the last position.

  subject_BxT: bool, the tokens whose embeddings are corrupted; noise_BxTxD: already scaled (it is masked
  to the subject here). window: for "mlp" / "attn", the layers restored together around each layer.
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
    layers = [layer] if component == "residual" else window_layers(layer, window, cfg.num_layers)
    iv = model.Interventions(embed_add=noise, patch={(component, l): (mask, captured[l]) for l in layers})
    return prob(model.apply(params, tokens_BxT, cfg, head_positions=last, interventions=iv))

  per_layer = [jax.vmap(functools.partial(restored_at, l))(jnp.arange(T)) for l in range(cfg.num_layers)]
  restored_BxLxT = jnp.stack(per_layer, 0).transpose(2, 0, 1)  # [L, T, B] -> [B, L, T]
  return prob(clean), prob(corrupted), restored_BxLxT


def draw_noise(key, shape, scale: float) -> jax.Array:
  return scale * jax.random.normal(key, shape, jnp.float32)


# ---- facts of a dataset: probes, effects, the layer to edit -------------------------------------------------


def fact_probes(dataset, split, answer: str = "before"):
  """(prompt int32[N, P], first answer token int32[N], subject bool[N, P], subject's last position int32[N])
  of an EditSplit's facts (heads are subjects: subject-object or subject-nested facts) in its template: the
  tokens tracing corrupts are the subject's, wherever they occur in the prompt."""
  prompt, ans = split.tokens(dataset, answer=answer)
  head_tokens = dataset.vocab.subjects.tokens(np.asarray(split.head)).reshape(len(prompt), -1)
  subject = (prompt[:, :, None] == head_tokens[:, None, :]).any(-1)
  last_subject = (prompt.shape[1] - 1 - np.argmax(subject[:, ::-1], axis=1)).astype(np.int32)
  return prompt.astype(np.int32), ans[:, 0].astype(np.int32), subject, last_subject


def known(params, cfg: model.ModelConfig, prompt_NxP, answer_N) -> np.ndarray:
  """bool[N]: the model's greedy next token after the prompt is the answer's first token."""
  return np.asarray(model.forward(params, prompt_NxP, cfg)[:, -1].argmax(-1)) == np.asarray(answer_N)


def mean_effects(params, cfg: model.ModelConfig, prompt_NxP, subject_NxP, answer_N, key, noise: float = 3.0,
                 components=COMPONENTS, samples: int = 1, window: int = 1) -> dict:
  """Per component, the indirect effect (restored - corrupted probability) averaged over the probes
  (float64 [L, P]) and its standard error; plus the clean and corrupted mean probabilities. Each probe's
  probabilities are averaged over `samples` noise draws (`noise` x the embedding table's standard
  deviation), the same draws for every restoration; "mlp" / "attn" restore `window` layers at once."""
  N, P = prompt_NxP.shape
  scale = noise * embedding_std(params)
  zs = [draw_noise(k, (N, P, cfg.width), scale) for k in jax.random.split(key, samples)] if samples > 1 else [
      draw_noise(key, (N, P, cfg.width), scale)]  # one draw: the key itself, as before samples existed
  out = {"num_probes": int(N), "noise_std": scale, "samples": int(samples), "window": int(window),
         "components": {}}
  for component in components:
    runs = [[np.asarray(x, np.float64) for x in trace(params, prompt_NxP, subject_NxP, answer_N, z, cfg,
                                                         component, window)] for z in zs]
    clean, corrupted, restored = (np.mean(parts, axis=0) for parts in zip(*runs))
    effect = restored - corrupted[:, None, None]  # [N, L, P]
    sem = effect.std(0, ddof=1) / np.sqrt(N) if N > 1 else np.zeros_like(effect[0])
    out["components"][component] = {"mean": effect.mean(0), "sem": sem}
    out["clean_p"], out["corrupted_p"] = float(clean.mean()), float(corrupted.mean())
  return out


def pick_layer(mlp_effect_LxP, position: int, span: int = 1) -> int:
  """The last layer of the `span` consecutive MLP layers whose restoration at `position` has the largest
  summed mean effect (span 1: the single most effective MLP), among windows that fit in the model."""
  e = np.asarray(mlp_effect_LxP, np.float64)[:, position]
  sums = np.convolve(e, np.ones(span), mode="valid")  # sums[i] = e[i] + ... + e[i + span - 1]
  return int(np.argmax(sums)) + span - 1
