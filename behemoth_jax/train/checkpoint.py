"""Orbax checkpointing of the training state: periodic, atomic, keep-last-N, resume from the work dir."""

from __future__ import annotations

import pathlib

import orbax.checkpoint as ocp


def make_manager(workdir, keep: int, every: int) -> ocp.CheckpointManager:
  """Saves under workdir/checkpoints every `every` steps (and when forced), keeping the last `keep`.

  Orbax writes each step to a temporary directory and renames it when complete, so a run killed
  mid-save leaves the previous checkpoint as the latest one.
  """
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, save_interval_steps=every, create=True)
  return ocp.CheckpointManager(pathlib.Path(workdir, "checkpoints").absolute(), options=options)


def save(manager: ocp.CheckpointManager, step: int, state, force: bool = False) -> bool:
  return manager.save(step, args=ocp.args.StandardSave(state), force=force)


def restore_latest(manager: ocp.CheckpointManager, abstract_state):
  """(state, step) of the latest complete checkpoint, or (None, 0) when there is none."""
  step = manager.latest_step()
  if step is None:
    return None, 0
  state = manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
  return state, step
