r"""Edits (or unlearns) facts of a pretrained model; restarting the same command resumes.

  python -m experiments.edit --config=experiments/configs/edit.py:lora --pretrained=runs/small \
      --workdir=runs/edit_lora [--config.num_edits=100 --config.mode=independent ...]

Writes WORKDIR/config.json, deltas/, results.jsonl (one row per edit, split, template and metric: before
and after), summary.json (split -> metric -> {before, after, n}) and run.json (timings, device). What each
mode and method does: behemoth_jax/edit/modes.py and behemoth_jax/edit/methods.py.

Exit status: 2 an invalid option (one line `error: --option: ...`, checked before WORKDIR is created),
3 a non-finite loss, 4 a failure at run time (WORKDIR keeps every finished chunk; the same command resumes).
"""

import pathlib
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from experiments.configs import config_cli

_fail = config_cli.fail

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (path:name), e.g. "
                                          "experiments/configs/edit.py:lora.")
_PRETRAINED = flags.DEFINE_string("pretrained", None, "Pretraining work dir (python -m experiments.pretrain).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Work directory (created; resumed when it holds this run).")
flags.mark_flags_as_required(["config", "pretrained", "workdir"])


def _where(workdir: pathlib.Path) -> str:
  chunks = sorted((workdir / "chunks").glob("*.npz")) if workdir.is_dir() else []
  if not workdir.is_dir():
    return "nothing was written"
  return f"{workdir} keeps {len(chunks)} finished chunk(s); the same command resumes"


def main(argv):
  if len(argv) > 1:
    _fail(f"unexpected positional arguments {argv[1:]}: options are --config=FILE:NAME, --pretrained=DIR, "
          "--workdir=DIR, --config.<field>=VALUE")
  try:
    config = _CONFIG.value
  except OSError:  # ml_collections defers a config file it could not load to the first access
    _fail(config_cli.missing_config_file(sys.argv))
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  from behemoth_jax.edit import runner  # pylint: disable=g-import-not-at-top
  workdir = pathlib.Path(_WORKDIR.value)
  summary = config_cli.run_work(lambda: runner.run(config, _PRETRAINED.value, workdir),
                                lambda: _where(workdir))
  print(f"{config.method} ({config.mode}, {config.num_edits} edits): greedy exact match before -> after")
  print(runner.summary_table(summary))


if __name__ == "__main__":
  app.run(main, flags_parser=config_cli.parse_flags)
