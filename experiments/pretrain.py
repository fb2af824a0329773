r"""Pretrains a Pythia-style model on a synthetic fact graph; restarting the same command resumes.

  python -m experiments.pretrain --config=experiments/configs/pretrain.py:small --workdir=runs/small

Writes DIR/config.json (resolved config), DIR/metrics.jsonl (one JSON object per logging step and per
evaluation), DIR/checkpoints/ (orbax) and DIR/summary.json (final accuracies).

Exit status: 2 an invalid option (one line `error: --option: ...` on stderr, checked before DIR is
created or changed), 3 a non-finite loss, 4 a failure at run time (disk full, interrupted): DIR keeps
every checkpoint it finished and the same command resumes from the latest.
"""

import pathlib
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from experiments.configs import config_cli

_fail = config_cli.fail

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (path:name).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Work directory (created; resumed when it has checkpoints).")
_MULTIHOST = flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() first (one process per "
                                "host; the mesh then spans every host's devices).")
flags.mark_flags_as_required(["config", "workdir"])


def _where(workdir: pathlib.Path) -> str:
  """Where an interrupted run stands: its latest finished checkpoint, which a rerun resumes from."""
  if not workdir.is_dir():
    return "nothing was written"
  steps = [int(p.name) for p in (workdir / "checkpoints").glob("*") if p.name.isdigit()]
  if not steps:
    return f"{workdir} holds no checkpoint yet; the same command starts again"
  return f"{workdir} keeps checkpoint step {max(steps)}; the same command resumes from it"


def main(argv):
  if len(argv) > 1:
    _fail(f"unexpected positional arguments {argv[1:]}: options are --config=FILE:NAME, --workdir=DIR, "
          "--config.<field>=VALUE")
  try:
    config = _CONFIG.value
    multihost = _MULTIHOST.value or config.multihost
  except OSError:  # ml_collections defers a config file it could not load to the first access
    _fail(config_cli.missing_config_file(sys.argv))
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  import jax  # pylint: disable=g-import-not-at-top
  if multihost:
    jax.distributed.initialize()
  from behemoth_jax.train import pretraining  # pylint: disable=g-import-not-at-top
  workdir = pathlib.Path(_WORKDIR.value)
  summary = config_cli.run_work(lambda: pretraining.run(config, workdir), lambda: _where(workdir))
  if jax.process_index() == 0:
    print(f"step {summary['step']}: knowledge accuracy (greedy exact match)")
    print(pretraining.accuracy_table(summary))


if __name__ == "__main__":
  app.run(main, flags_parser=config_cli.parse_flags)
