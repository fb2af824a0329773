r"""Retrains the model from scratch on the edited world (the retrain oracle) and compares an edit with it.

  python -m experiments.oracle --pretrained=W --edits=E --workdir=O [--mode=remove|remap] [--seeds=0,1]
      [--steps=N] [--unlearned=EDIT_WORKDIR]

W: a pretraining work dir (its config is the oracle's, with data.dir = the edited dataset and seed = each
of --seeds); E: an edit-set folder (python -m data_gen.make_edits); --unlearned: an edit work dir in batch or
sequential mode, on W and E (--config.edit_set_dir=E), whose delta is compared with the oracle: an unlearning
run against a remove oracle, an edit against a remap oracle.
Writes O/oracle.json, O/data/, O/seed_<s>/ (pretraining work dirs; a rerun resumes) and O/summary.json
(W itself against the oracle: forget_quality, oracle_agreement, the oracle's own accuracies; see
behemoth_jax/oracle/retrain.py). With --unlearned=U, U/summary.json also gets forget_quality and oracle_agreement
per split (every existing key kept); the oracle is trained once and reused for every U of its edit set.
Exit status 2: an invalid option (one line `error: --option: ...`, nothing written).
"""

import sys

from absl import app, flags, logging

from experiments.configs import config_cli

_PRETRAINED = flags.DEFINE_string("pretrained", None, "Pretraining work dir whose config is retrained.")
_EDITS = flags.DEFINE_string("edits", None, "Edit-set folder (python -m data_gen.make_edits).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Work dir to create (or resume).")
_MODE = flags.DEFINE_string("mode", "remove", "remove: the edited facts never appear (forgetting); remap: "
                            "they appear with their new values (editing).")
_SEEDS = flags.DEFINE_string("seeds", "0", "Comma-separated training seeds of the oracle.")
_STEPS = flags.DEFINE_integer("steps", 0, "Training steps of each oracle (0: the pretrained run's).")
_UNLEARNED = flags.DEFINE_string("unlearned", "", "Edit work dir (batch/sequential, same W and edit set) of the "
                                 "model to compare; its summary.json gets forget_quality and oracle_agreement.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Progress line while training.")
flags.mark_flags_as_required(["pretrained", "edits", "workdir"])


def main(argv):
  if len(argv) > 1:
    config_cli.fail(f"unexpected positional arguments {argv[1:]}: options are --pretrained, --edits, --workdir, "
                    "--mode, --seeds, --steps, --unlearned")
  try:
    seeds = [int(s) for s in _SEEDS.value.split(",")]
  except ValueError:
    config_cli.fail(f"--seeds: must be comma-separated integers >= 0, got {_SEEDS.value!r}")
  logging.set_verbosity(logging.WARNING)
  from behemoth_jax.oracle import retrain  # pylint: disable=g-import-not-at-top
  try:
    summary = retrain.run(_PRETRAINED.value, _EDITS.value, _WORKDIR.value, _MODE.value, seeds, _STEPS.value,
                         _UNLEARNED.value or None, progress=_PROGRESS.value)
  except ValueError as e:
    config_cli.fail(str(e))
  for split, by_metric in summary.items():
    for metric, v in by_metric.items():
      print(f"{split:<40s} {metric:<24s} after {v['after']:.4g}  before {v.get('before', float('nan')):.4g}  "
            f"n {v['n']}")


if __name__ == "__main__":
  app.run(main, flags_parser=config_cli.parse_flags)
