r"""A Markdown report with PNG plots from edit, oracle and pretraining work dirs.

  python -m experiments.report --results=E1,E2,O,W --output=REPORT_DIR

Each --results folder is recognised by what it holds: an edit run (run.json + summary.json, from
python -m experiments.edit), a retrain-oracle run (oracle.json + summary.json, experiments.oracle), a
causal trace (trace.json, experiments.trace) or a pretraining run (config.json + metrics.jsonl,
experiments.pretrain). REPORT_DIR (created atomically; it must not exist) gets report.md and the plots it
embeds: per edit run a table per split (before and after with their 95% bootstrap intervals and n); edit
runs that differ only in seeds pooled into one table (behemoth_jax/evaluate/pooling.py: intervals over seeds, then
edits or facts); forget quality and retain accuracy per unlearning run and agreement with the oracle per
split (from the runs' summary.json, written by experiments.oracle --unlearned); accuracy against LoRA rank
and efficacy against locality across runs; per-layer and per-block heatmaps (split x edited parameters, exact
match after) for runs that differ only in --config.targets; sequential-editing curves; causal-trace heatmaps
(layer x position per component); pretraining curves; the oracle's forget quality.
Exit status 2: an invalid option (one line `error: --option: ...`, nothing written).
"""

from __future__ import annotations

import pathlib

from absl import app, flags

from experiments.configs import config_cli
from experiments.reporting.markdown import build, kind_of

_RESULTS = flags.DEFINE_list("results", None, "Work dirs (edit, oracle or pretraining runs), comma-separated.")
_OUTPUT = flags.DEFINE_string("output", None, "Folder to create for report.md and its plots.")
flags.mark_flags_as_required(["results", "output"])


def main(argv):
  if len(argv) > 1:
    config_cli.fail(f"unexpected positional arguments {argv[1:]}: options are --results=DIR,... --output=DIR")
  results = [pathlib.Path(r) for r in _RESULTS.value if r]
  if not results:
    config_cli.fail("--results: give at least one work dir, got none")
  for r in results:
    if not r.is_dir() or kind_of(r) is None:
      config_cli.fail(f"--results: {r} is not an edit, retrain-oracle, causal-trace or pretraining work dir (no "
                      "run.json, oracle.json or metrics.jsonl beside summary.json/config.json, nor trace.json)")
  out = pathlib.Path(_OUTPUT.value)
  if out.exists():
    config_cli.fail(f"--output: {out} already exists; choose a new folder")
  from data_gen.common import atomic  # pylint: disable=g-import-not-at-top
  from data_gen.common.errors import OptionError  # pylint: disable=g-import-not-at-top
  try:
    with atomic.atomic_directory(out, option="output") as tmp:
      text = build(results, tmp)
      (tmp / "report.md").write_text(text)
  except OptionError as e:
    config_cli.fail(str(e))
  print(out / "report.md")


if __name__ == "__main__":
  app.run(main, flags_parser=config_cli.parse_flags)
