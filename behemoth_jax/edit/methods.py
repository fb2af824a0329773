"""Gradient-based edit and unlearning methods, each a pure function to a weight delta.

`train_delta(frozen, batch, key, hp, cfg, paths)` -> (delta, losses[steps]): an optax optimizer over the
delta only (the frozen weights get no gradient), all steps inside one `lax.scan`. vmap it over edits for
independent single-fact edits (`modes.py`).

Methods (`hp.method`):
- ft: fine-tune the target parameters (a dense delta), mean NLL of the edit rows.
- ft_l: ft with an L-infinity bound `hp.linf` on the change, projected after every step (FT-L).
- lora: ft through LoRA factors of rank `hp.rank` on the target kernels.
- ga: gradient ascent on the forget rows (the fact's pre-edit answer).
- graddiff: ga plus descent on the retain rows.
- npo: (2 / beta) log(1 + (pi / pi_ref)^beta) on the forget rows (pi_ref: the frozen model), plus retain.
- refusal: descent towards the refusal answers the edit set renders (finetuning_phrase_creator=refusal or
  qa_refusal).
Every method adds `hp.retain_weight` x the mean NLL of the retain rows (the builder's with_same_value,
with_same_rel and reg_data splits). ga, graddiff, npo and refusal train a dense delta, or LoRA factors
when hp.rank > 0.

A batch (from `edit_rows.Rows` plus flags): inputs [N, L], positions/targets/mask [N, K], is_edit [N] bool,
weight [N] (relative weight of a row in its term), optionally ref_logp [N] (NPO) and residual [N, L, D]
(the frozen residual stream entering the first edited layer: nothing below it is recomputed).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import optax

from behemoth_jax.model import deltas, losses, model

METHODS = ("ft", "ft_l", "lora", "ga", "graddiff", "npo", "refusal", "rome", "memit", "alphaedit")
# Closed-form locate-then-edit methods (closed_form.py): they write one MLP down-projection per layer.
CLOSED_FORM = ("rome", "memit", "alphaedit")
UNLEARNING = ("ga", "graddiff", "npo")
MODES = ("independent", "batch", "sequential")


@dataclasses.dataclass(frozen=True)
class EditHParams:
  method: str = "lora"
  targets: str = "mlp_down"
  rank: int = 4  # LoRA rank (method lora; ga/graddiff/npo/refusal use LoRA when > 0, a dense delta at 0)
  alpha: float = 0.0  # LoRA scale = alpha / rank; 0: alpha = rank (scale 1)
  learning_rate: float = 1e-2
  steps: int = 20
  retain_weight: float = 1.0
  linf: float = 5e-3  # ft_l's bound on each changed weight
  beta: float = 0.1  # NPO's inverse temperature
  b1: float = 0.9
  b2: float = 0.999
  batch_size: int = 32  # rows per step in batch mode (independent edits train on all their rows)
  # Closed-form methods (closed_form.py). layer: the edited MLP (memit/alphaedit: the last of `span`
  # layers); -1 = traced: the edit binary picks it by causal tracing (runner.traced_layer); a caller
  # that does not trace gets the middle layer (L - 1) // 2.
  layer: int = -1
  span: int = 1
  kl_weight: float = 0.0625  # KL(edited || frozen) at the subject's last token (the reference's kl_factor)
  lam: float = 1.0  # memit: lambda of (lambda C + K K^T); alphaedit: the ridge of its solve
  key_position: str = "subject"  # where keys are read / values written: subject (ROME) | last prompt token
  # The value optimisation (closed_form.ValueOptions; defaults: the reference code's ROME hparams): Adam
  # steps and rate, the clamp of ||delta|| to clamp_norm_factor x ||v_init|| (0: none), the weight decay
  # v_weight_decay x ||delta|| / ||v_init||^2, and the early stop once the loss is below v_early_stop (0: never).
  v_steps: int = 20
  v_lr: float = 0.5
  clamp_norm_factor: float = 4.0
  v_weight_decay: float = 0.5
  v_early_stop: float = 5e-2
  # alphaedit: the null space keeps the eigen-directions of C below the threshold; absolute (AlphaEdit's code:
  # eigenvalue < 2e-2) or relative (eigenvalue < threshold x the largest).
  nullspace_threshold: float = 2e-2
  nullspace_rule: str = "absolute"

  @property
  def low_rank(self) -> bool:
    return self.method == "lora" or (self.method in UNLEARNING + ("refusal",) and self.rank > 0)

  @property
  def forget(self) -> bool:
    """The edit rows carry the pre-edit answer (unlearning pushes it down)."""
    return self.method in UNLEARNING

  def validate(self, prefix: str = "--config.") -> None:
    def need(ok, name, allowed, value):
      if not ok:
        raise ValueError(f"{prefix}{name}: must be {allowed}, got {value!r}")
    need(self.method in METHODS, "method", f"one of {', '.join(METHODS)}", self.method)
    need(self.method != "lora" or self.rank >= 1, "rank", ">= 1 for method lora", self.rank)
    need(self.rank >= 0, "rank", ">= 0", self.rank)
    need(not (self.method in ("ft", "ft_l") and self.rank), "rank",
         "0 for methods ft/ft_l (use method=lora for low-rank fine-tuning)", self.rank)
    for name in ("learning_rate", "linf", "beta"):
      v = getattr(self, name)
      need(math.isfinite(v) and v > 0, name, "a finite number > 0", v)
    need(math.isfinite(self.alpha) and self.alpha >= 0, "alpha", "a finite number >= 0 (0: alpha = rank)",
         self.alpha)
    need(math.isfinite(self.retain_weight) and self.retain_weight >= 0, "retain_weight",
         "a finite number >= 0", self.retain_weight)
    need(self.steps >= 1, "steps", ">= 1", self.steps)
    need(self.batch_size >= 1, "batch_size", ">= 1", self.batch_size)
    need(0 <= self.b1 < 1 and 0 <= self.b2 < 1, "b1", "in [0, 1) (b2 too)", (self.b1, self.b2))
    need(math.isfinite(self.kl_weight) and self.kl_weight >= 0, "kl_weight", "a finite number >= 0",
         self.kl_weight)
    need(math.isfinite(self.lam) and self.lam > 0, "lam", "a finite number > 0", self.lam)
    need(self.span >= 1, "span", ">= 1", self.span)
    need(self.key_position in ("subject", "last"), "key_position", "subject or last", self.key_position)
    need(self.v_steps >= 1, "v_steps", ">= 1", self.v_steps)
    for name in ("v_lr",):
      need(math.isfinite(getattr(self, name)) and getattr(self, name) > 0, name, "a finite number > 0",
           getattr(self, name))
    for name in ("clamp_norm_factor", "v_weight_decay", "v_early_stop", "nullspace_threshold"):
      need(math.isfinite(getattr(self, name)) and getattr(self, name) >= 0, name, "a finite number >= 0",
           getattr(self, name))
    need(self.nullspace_rule in ("absolute", "relative"), "nullspace_rule", "absolute or relative",
         self.nullspace_rule)


def closed_form_layers(num_layers: int, hp: EditHParams) -> list[int]:
  """The MLP layers a closed-form method edits, or a ValueError naming --config.layer / --config.span."""
  if not -1 <= hp.layer < num_layers:
    raise ValueError(f"--config.layer: must be in [0, {num_layers - 1}] (or -1: traced), "
                     f"got {hp.layer}")
  last = (num_layers - 1) // 2 if hp.layer < 0 else hp.layer
  if hp.span > last + 1:
    raise ValueError(f"--config.span: must be in [1, {last + 1}] (layers ending at layer {last}), got {hp.span}")
  return list(range(last - hp.span + 1, last + 1))


def resolve_paths(params: dict, hp: EditHParams) -> list[str]:
  """Target parameter paths; a ValueError naming --config.targets (or --config.rank) if they cannot work."""
  if hp.method in CLOSED_FORM:  # targets ignored: the down-projections of the configured layers
    return [f"layers/{l}/mlp/down/kernel" for l in closed_form_layers(len(params["layers"]), hp)]
  try:
    paths = deltas.resolve_targets(params, hp.targets, kernels_only=hp.low_rank)
  except ValueError as e:
    raise ValueError(f"--config.targets: {e}") from e
  if hp.low_rank:
    full = min(deltas.full_rank(params, p) for p in paths)
    if not 1 <= hp.rank <= full:
      raise ValueError(f"--config.rank: must be in [1, {full}] (full rank of the smallest target kernel), "
                       f"got {hp.rank}")
  return paths


def init_delta(key, params: dict, paths: list[str], hp: EditHParams) -> dict:
  if hp.low_rank:
    return deltas.lora(key, params, paths, hp.rank, hp.alpha or None)
  return deltas.zeros(params, paths)


def optimizer(hp: EditHParams) -> optax.GradientTransformation:
  return optax.adam(hp.learning_rate, b1=hp.b1, b2=hp.b2)


def row_logprobs(frozen, delta, batch, cfg: model.ModelConfig, start_layer: int = 0):
  """(sum of log p over each row's scored tokens [N], number of scored tokens [N])."""
  cached = (batch.get("start_attn"), batch.get("start_key"))
  out = model.apply(frozen, batch["inputs"], cfg, delta=delta, head_positions=batch["positions"],
                    start_layer=start_layer, residual_BxTxD=batch.get("residual"),
                    start_cached=cached if any(c is not None for c in cached) else None, prune_to_head=True)
  N, K, V = out.logits.shape
  nll_NxK = losses.token_nll(out.logits.reshape(N * K, V), batch["targets"].reshape(-1)).reshape(N, K)
  mask = batch["mask"].astype(jnp.float32)
  return -(nll_NxK * mask).sum(-1), mask.sum(-1)


def _weighted_mean(x_N, w_N):
  return (x_N * w_N).sum() / jnp.maximum(w_N.sum(), 1e-9)


def loss_fn(delta, frozen, batch, hp: EditHParams, cfg: model.ModelConfig, start_layer: int = 0):
  """(loss, {"edit": term, "retain": term})."""
  logp_N, count_N = row_logprobs(frozen, delta, batch, cfg, start_layer)
  mean_nll_N = -logp_N / jnp.maximum(count_N, 1.0)
  w_N = batch["weight"].astype(jnp.float32)
  edit_w = jnp.where(batch["is_edit"], w_N, 0.0)
  retain_w = jnp.where(batch["is_edit"], 0.0, w_N)
  if hp.method in ("ga", "graddiff"):
    edit_term = -_weighted_mean(mean_nll_N, edit_w)
  elif hp.method == "npo":
    npo_N = (2.0 / hp.beta) * jax.nn.softplus(hp.beta * (logp_N - batch["ref_logp"]))
    edit_term = _weighted_mean(npo_N, edit_w)
  else:
    edit_term = _weighted_mean(mean_nll_N, edit_w)
  retain_term = _weighted_mean(mean_nll_N, retain_w)
  retain_weight = 0.0 if hp.method == "ga" else hp.retain_weight
  return edit_term + retain_weight * retain_term, {"edit": edit_term, "retain": retain_term}


def frozen_parts(paths: list[str], layer: int) -> tuple[bool, bool]:
  """Whether the attention output and the MLP key of `layer` are untouched by a delta on `paths` (they
  are then computed once per edit instead of at every step)."""
  prefix = f"layers/{layer}/"
  inside = [p[len(prefix):] for p in paths if p.startswith(prefix)]
  attn = not any(p.startswith(("ln_attn/", "attn/")) for p in inside)
  key = not any(p.startswith(("ln_mlp/", "mlp/up/")) for p in inside)
  return attn, key


def prepare(frozen, batch, hp: EditHParams, cfg: model.ModelConfig, start_layer: int, paths=()):
  """Adds what the frozen model contributes once per edit: the residual stream entering the first edited
  layer, that layer's attention output and MLP key where the delta leaves them frozen, and for NPO the
  reference log-probabilities."""
  batch = dict(batch)
  # Past the last layer (a delta on the final norm or head only) there is no layer to cache parts of.
  attn_frozen, key_frozen = (frozen_parts(list(paths), start_layer) if start_layer < cfg.num_layers
                             else (False, False))
  if start_layer > 0 or attn_frozen or key_frozen:
    out = model.apply(frozen, batch["inputs"], cfg, head=False)
    if start_layer > 0:
      batch["residual"] = out.residual[start_layer]
    if attn_frozen:
      batch["start_attn"] = out.attn_out[start_layer]
    if key_frozen:
      batch["start_key"] = out.mlp_key[start_layer]
  if hp.method == "npo":
    batch["ref_logp"] = jax.lax.stop_gradient(row_logprobs(frozen, None, batch, cfg, start_layer)[0])
  return batch


def make_step(frozen, hp: EditHParams, cfg: model.ModelConfig, start_layer: int):
  """`step((delta, opt_state), batch) -> ((delta, opt_state), (loss, terms))`: one optimizer step."""
  opt = optimizer(hp)

  def step(carry, batch):
    delta, opt_state = carry
    (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(delta, frozen, batch, hp, cfg,
                                                                     start_layer)
    updates, opt_state = opt.update(grads, opt_state, delta)
    delta = optax.apply_updates(delta, updates)
    if hp.method == "ft_l":
      delta = jax.tree.map(lambda d: jnp.clip(d, -hp.linf, hp.linf), delta)
    return (delta, opt_state), (loss, terms)

  return step


def minibatch(batch, key, size: int):
  """`size` rows drawn by weight with replacement (the builder's repeat weights are sampling odds); each
  drawn row then counts once in its term."""
  N = batch["inputs"].shape[0]
  idx = jax.random.choice(key, N, (size,), p=batch["weight"] / batch["weight"].sum())
  picked = jax.tree.map(lambda x: x[idx], batch)
  picked["weight"] = jnp.ones((size,), jnp.float32)
  return picked


def train_delta(frozen, batch, key, hp: EditHParams, cfg: model.ModelConfig, paths: list[str],
                sample: bool = False):
  """The edit: a delta on `paths` trained for hp.steps steps on `batch` (all rows every step, or with
  sample=True a weighted minibatch of hp.batch_size rows per step). Returns (delta, loss per step)."""
  start_layer = deltas.first_layer(paths, cfg.num_layers)
  init_key, data_key = jax.random.split(key)
  delta = init_delta(init_key, frozen, paths, hp)
  batch = prepare(frozen, batch, hp, cfg, start_layer, paths)
  step = make_step(frozen, hp, cfg, start_layer)

  def body(carry, step_key):
    b = minibatch(batch, step_key, hp.batch_size) if sample else batch
    return step(carry, b)

  (delta, _), (loss, _) = jax.lax.scan(body, (delta, optimizer(hp).init(delta)),
                                       jax.random.split(data_key, hp.steps))
  return delta, loss
