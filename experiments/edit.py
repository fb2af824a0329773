r"""Edits (or unlearns) facts of a pretrained model; restarting the same command resumes.

  python -m experiments.edit --config=experiments/configs/edit.py:lora --pretrained=runs/small \
      --workdir=runs/edit_lora [--config.num_edits=100 --config.mode=independent ...]

Writes WORKDIR/config.json, deltas/, results.jsonl (one row per edit, split, template and metric: before
and after), summary.json (split -> metric -> {before, after, n}) and run.json (timings, device). What each
mode and method does: behemoth_jax/editing.py and behemoth_jax/edit_methods.py.
"""

import sys

from absl import flags, logging
from ml_collections import config_flags

from data_gen import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (path:name), e.g. "
                                          "experiments/configs/edit.py:lora.")
_PRETRAINED = flags.DEFINE_string("pretrained", None, "Pretraining work dir (python -m experiments.pretrain).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Work directory (created; resumed when it holds this run).")
flags.mark_flags_as_required(["config", "pretrained", "workdir"])


def main(argv):
  if len(argv) > 1:
    print(f"error: unexpected positional arguments {argv[1:]}", file=sys.stderr)
    sys.exit(2)
  config = _CONFIG.value
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  from behemoth_jax import edit_runner, loop  # pylint: disable=g-import-not-at-top
  try:
    summary = edit_runner.run(config, _PRETRAINED.value, _WORKDIR.value)
  except ValueError as e:  # invalid options: one line naming the option, non-zero exit
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  except loop.NonFiniteLossError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(3)
  print(f"{config.method} ({config.mode}, {config.num_edits} edits): greedy exact match before -> after")
  print(edit_runner.summary_table(summary))


if __name__ == "__main__":
  cli.run(main)  # flag errors: one line, exit 1
