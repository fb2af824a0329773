"""The training state and the one jitted, donated train step (data-parallel over a mesh)."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from behemoth_jax.model import losses, model

DATA_AXIS = "data"


def make_mesh(devices=None) -> Mesh:
  """A 1-D data-parallel mesh over all (global) devices."""
  devices = jax.devices() if devices is None else devices
  return Mesh(devices, (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def init_state(key: jax.Array, cfg: model.ModelConfig, optimizer: optax.GradientTransformation,
               mesh: Mesh) -> dict:
  """{"params", "opt_state", "step"}, replicated over the mesh."""

  def init():
    params = model.init_params(key, cfg)
    return {"params": params, "opt_state": optimizer.init(params), "step": jnp.zeros((), jnp.int32)}

  return jax.jit(init, out_shardings=replicated(mesh))()


def abstract_state(cfg: model.ModelConfig, optimizer: optax.GradientTransformation, mesh: Mesh):
  """Shapes, dtypes and shardings of `init_state` without computing it (the checkpoint restore target)."""
  shapes = jax.eval_shape(lambda: init_state(jax.random.key(0), cfg, optimizer, mesh))
  rep = replicated(mesh)
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=rep), shapes)


def make_train_step(cfg: model.ModelConfig, optimizer: optax.GradientTransformation, mesh: Mesh,
                    answer_only: bool = False, loss_fn: Callable | None = None
                    ) -> Callable[[dict, dict], tuple[dict, dict]]:
  """Returns jitted `step(state, batch) -> (state, metrics)`; `state` is donated.

  loss_fn(params, batch) -> (loss, num_tokens); default: `losses.lm_loss` over all tokens or, with
  answer_only, the answer tokens. The batch is sharded along the mesh's data axis and parameters are
  replicated, so XLA inserts the gradient all-reduce; the loss is a mean over all masked tokens of the
  global batch.
  """
  if loss_fn is None:
    loss_fn = lambda params, batch: losses.lm_loss(params, batch, cfg, answer_only)

  def step(state, batch):
    (loss, count), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"], batch)
    updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), "tokens": count}
    return {"params": params, "opt_state": opt_state, "step": state["step"] + 1}, metrics

  rep = replicated(mesh)
  return jax.jit(step, in_shardings=(rep, batch_sharding(mesh)), out_shardings=(rep, rep),
                 donate_argnums=(0,))
