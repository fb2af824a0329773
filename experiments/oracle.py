r"""Retrains the model from scratch on the edited world (the retrain oracle) and compares an edit with it.

  python -m experiments.oracle --pretrained=W --edits=E --workdir=O [--mode=remove|remap] [--seeds=0,1]
      [--steps=N] [--unlearned=EDIT_WORKDIR]

W: a pretraining work dir (its config is the oracle's, with data.dir = the edited dataset and seed = each
of --seeds; each oracle trains the steps W trained, on W's learning-rate schedule, without early stop,
unless --steps says how many); E: an edit-set folder (python -m data_gen.make_edits); --unlearned: an edit
work dir in batch or sequential mode, on W and E (--config.edit_set_dir=E), whose delta is compared with the
oracle: an unlearning run against a remove oracle, an edit against a remap oracle.
Writes O/oracle.json, O/data/, O/seed_<s>/ (pretraining work dirs; a rerun resumes), O/run.json (the steps
W trained and each oracle's) and O/summary.json (W itself against the oracle: forget_quality (TOFU: KS p of
per-fact truth ratios), forget_quality_logprob (KS p of per-fact log P(old answer)), oracle_agreement, the
oracle's own accuracies; see behemoth_jax/oracle/retrain.py). With --unlearned=U, U/summary.json also gets
forget_quality, forget_quality_logprob and oracle_agreement per split (every existing key kept); the oracle is
trained once and reused for every U of its edit set.
Exit status 2: an invalid option (one line `error: --option: ...`, nothing written).
"""

import json
import pathlib
import sys

from absl import app, flags, logging

from experiments.configs import config_cli

_PRETRAINED = flags.DEFINE_string("pretrained", None, "Pretraining work dir whose config is retrained.")
_EDITS = flags.DEFINE_string("edits", None, "Edit-set folder (python -m data_gen.make_edits).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Work dir to create (or resume).")
_MODE = flags.DEFINE_string("mode", "remove", "remove: the edited facts never appear (forgetting); remap: "
                            "they appear with their new values (editing).")
_SEEDS = flags.DEFINE_string("seeds", "0", "Comma-separated training seeds of the oracle.")
_STEPS = flags.DEFINE_integer("steps", 0, "Training steps of each oracle (0: the steps the pretrained run "
                               "trained); the learning-rate schedule is the pretrained run's either way.")
_UNLEARNED = flags.DEFINE_string("unlearned", "", "Edit work dir (batch/sequential, same W and edit set) of the "
                                 "model to compare; its summary.json gets forget_quality(_logprob) and "
                                 "oracle_agreement.")
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
  run_file = pathlib.Path(_WORKDIR.value, retrain.RUN_FILE)
  if run_file.is_file():
    plan = json.loads(run_file.read_text())
    print(f"oracle: {plan['oracle_steps']} steps per seed (the pretrained run trained {plan['pretrained_steps']}), "
          f"learning-rate schedule over {plan['lr_schedule_total_steps']}, no early stop")
  for split, by_metric in summary.items():
    for metric, v in by_metric.items():
      print(f"{split:<40s} {metric:<24s} after {v['after']:.4g}  before {v.get('before', float('nan')):.4g}  "
            f"n {v['n']}" + (f"  oracle vs oracle {v['oracle_vs_oracle']:.4g}" if "oracle_vs_oracle" in v else ""))


if __name__ == "__main__":
  app.run(main, flags_parser=config_cli.parse_flags)
