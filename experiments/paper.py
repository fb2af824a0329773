r"""Runs one of the paper's experiments (or one beyond it) and writes its results and its section.

  python -m experiments.paper --config=experiments/configs/paper.py:rank,cpu --output=results

An experiment is a set of arms (a method with its options: a LoRA rank, fine-tuned blocks, an edited
layer, ...), each run over the config's pretraining seeds and edit seeds through the same binaries'
libraries a researcher would call (`pretraining.run`, `runner.run`, `retrain.run`). Writes:
  OUTPUT/pretrain/<config name>_<hash>_s<seed>/   pretraining work dirs, shared by every experiment with
                                                  the same pretraining config (and resumed)
  OUTPUT/<experiment>/tune/<arm>/lr<lr>/          learning-rate tuning runs (held-out edit set)
  OUTPUT/<experiment>/runs/<arm>/s<seed>_e<edit seed>/   edit work dirs (each resumes)
  OUTPUT/<experiment>/results.jsonl               every run's rows, with its arm
  OUTPUT/<experiment>/summary.json                arm -> split -> metric -> pooled before/after, CIs, n
  OUTPUT/<experiment>/<experiment>_*.png, section.md, run.json
A killed run resumes where it stopped (finished work dirs are read back, not redone).
Exit status: 2 an invalid option (nothing written), 3 a non-finite loss, 4 a failure at run time.
"""

import pathlib
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from experiments.configs import config_cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (path:name), e.g. "
                                          "experiments/configs/paper.py:rank,cpu.")
_OUTPUT = flags.DEFINE_string("output", "results", "Root folder of every experiment's results.")
_DOCS = flags.DEFINE_string("docs", "", "If set, the docs/results.md to (re)assemble from every finished "
                            "section under --output after this experiment.")
flags.mark_flags_as_required(["config"])


def main(argv):
  if len(argv) > 1:
    config_cli.fail(f"unexpected positional arguments {argv[1:]}: options are --config=FILE:NAME, "
                    "--output=DIR, --docs=FILE, --config.<field>=VALUE")
  try:
    config = _CONFIG.value
  except OSError:
    config_cli.fail(config_cli.missing_config_file(sys.argv))
  logging.set_verbosity(logging.WARNING)
  root = pathlib.Path(_OUTPUT.value)
  import jax  # pylint: disable=g-import-not-at-top
  # An experiment runs dozens of edit runs whose evaluation (and often training) programs are identical:
  # a persistent compilation cache under the output serves them from disk (halves a tiny run's time).
  jax.config.update("jax_compilation_cache_dir", str(root.absolute() / ".jax_cache"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  from experiments.replication import results, runs  # pylint: disable=g-import-not-at-top
  out = config_cli.run_work(lambda: runs.run_experiment(config, root),
                            lambda: f"{root / config.experiment} keeps every finished run; the same command "
                                    "resumes")
  print(f"{config.experiment}: {out / 'section.md'}")
  if _DOCS.value:
    print(results.assemble_docs(root, pathlib.Path(_DOCS.value)))


if __name__ == "__main__":
  app.run(main, flags_parser=config_cli.parse_flags)
