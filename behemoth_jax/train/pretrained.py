"""Start from a pretraining run: its parameters, model config and dataset, without the optimizer state.

big_vision's `model_init`: `load_pretrained(workdir)` reads `workdir/config.json` (the resolved config the
trainer wrote) and the latest checkpoint's params only (orbax partial restore).
"""

from __future__ import annotations

import json
import pathlib

import jax
import ml_collections
import orbax.checkpoint as ocp

from behemoth_jax.model import model
from behemoth_jax.train import pretraining


class PretrainedError(ValueError):
  """A work dir that is not a finished-enough pretraining run; the message names what is missing."""


def read_config(workdir) -> ml_collections.ConfigDict:
  path = pathlib.Path(workdir, pretraining.CONFIG_FILE)
  if not path.is_file():
    raise PretrainedError(f"{workdir} is not a pretraining work dir (no {pretraining.CONFIG_FILE})")
  raw = json.loads(path.read_text())
  raw.pop("resolved", None)
  return ml_collections.ConfigDict(raw)


def latest_step(workdir) -> int | None:
  root = pathlib.Path(workdir, "checkpoints")
  steps = [int(p.name) for p in root.iterdir() if p.name.isdigit()] if root.is_dir() else []
  return max(steps) if steps else None


def model_config_of(workdir, config=None) -> model.ModelConfig:
  """The model config the run trained with (its resolved compute dtype, not this machine's default)."""
  config = config or read_config(workdir)
  resolved = json.loads(pathlib.Path(workdir, pretraining.CONFIG_FILE).read_text()).get("resolved", {})
  m = config.model.to_dict()
  if m["compute_dtype"] == "auto":
    m["compute_dtype"] = resolved.get("compute_dtype") or (
        "float32" if jax.default_backend() == "cpu" else "bfloat16")
  return model.ModelConfig(vocab_size=resolved["vocab_size"], **m)


def load_params(workdir, cfg: model.ModelConfig, step: int | None = None) -> dict:
  step = latest_step(workdir) if step is None else step
  if step is None:
    raise PretrainedError(f"{workdir} has no checkpoint (train it first: python -m experiments.pretrain)")
  abstract = jax.eval_shape(lambda: model.init_params(jax.random.key(0), cfg))
  target = {"params": jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype), abstract)}
  path = pathlib.Path(workdir, "checkpoints", str(step), "default").absolute()
  sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  restore_args = jax.tree.map(lambda _: ocp.ArrayRestoreArgs(sharding=sharding), target)
  with ocp.PyTreeCheckpointer() as ckptr:
    restored = ckptr.restore(path, args=ocp.args.PyTreeRestore(
        item=target, restore_args=restore_args, partial_restore=True))
  return restored["params"]


def load_pretrained(workdir, step: int | None = None):
  """(params, model config, dataset) of a pretraining work dir, at its latest (or a given) checkpoint."""
  config = read_config(workdir)
  cfg = model_config_of(workdir, config)
  params = load_params(workdir, cfg, step)
  return params, cfg, pretraining.load_dataset(config)
