r"""Pretrains a Pythia-style model on a synthetic fact graph; restarting the same command resumes.

  python -m experiments.pretrain --config=experiments/configs/pretrain.py:small --workdir=runs/small

Writes DIR/config.json (resolved config), DIR/metrics.jsonl (one JSON object per logging step and per
evaluation), DIR/checkpoints/ (orbax) and DIR/summary.json (final accuracies).
"""

import sys

from absl import flags, logging
from ml_collections import config_flags

from data_gen import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (path:name).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Work directory (created; resumed when it has checkpoints).")
_MULTIHOST = flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() first (one process per "
                                "host; the mesh then spans every host's devices).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  config = _CONFIG.value
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  import jax
  if _MULTIHOST.value or config.multihost:
    jax.distributed.initialize()
  from behemoth_jax import trainer
  try:
    summary = trainer.run(config, _WORKDIR.value)
  except ValueError as e:  # invalid options: one line naming the option, non-zero exit
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  except trainer.NonFiniteLossError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(3)
  if jax.process_index() == 0:
    print(f"step {summary['step']}: knowledge accuracy (greedy exact match)")
    print(trainer.accuracy_table(summary))


if __name__ == "__main__":
  cli.run(main)  # flag errors: one line, exit 1
