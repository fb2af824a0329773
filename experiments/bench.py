r"""Every benchmark suite; one JSON object per measurement on stdout, all of them in --output.

  python -m experiments.bench --suite=all --output=runs/bench.json
  python -m experiments.bench --suite=train [--quick]

Suites: data (corpus writer, on-device sampler), train (training step tokens/s, MFU, compile time),
edits (edit-set builder), edit (independent LoRA edits: vmapped engine, naive vmap, Python loop; rank-one
edits per second vmapped and one least-squares edit of 1,000 facts with its covariance), eval
(facts scored per second on a 100,000-fact graph; one oracle retrain of the small config). Speed
claims live here, never in tests.
"""

from __future__ import annotations

import importlib
import json
import os
import pathlib
import platform
import time

from absl import flags

from data_gen.common import atomic, cli
from data_gen.common.errors import OptionError, require

SUITES = {"data": "experiments.benchmarks.data", "train": "experiments.benchmarks.train",
          "edits": "experiments.benchmarks.edit_sets", "edit": "experiments.benchmarks.editing",
          "eval": "experiments.benchmarks.evaluation"}

_SUITE = flags.DEFINE_enum("suite", "all", ["all", *SUITES], "Which suite to run.")
_QUICK = flags.DEFINE_bool("quick", False, "Smaller shapes and fewer steps (a smoke run).")
_OUTPUT = flags.DEFINE_string("output", None, "Also write all results to this JSON file.")


def check_output(path) -> pathlib.Path:
  """--output as a path to write at the end: refused now (OptionError) rather than after the suites."""
  out = pathlib.Path(path)
  require(not out.is_dir(), "output", f"{out} is a folder; give a file path such as runs/bench.json")
  parent = next(p for p in out.absolute().parents if p.exists())
  require(parent.is_dir() and os.access(parent, os.W_OK | os.X_OK), "output",
          f"cannot create {out}: {parent} is " + ("not a writable folder" if parent.is_dir() else "a file"))
  return out


def main(argv):
  if len(argv) > 1:
    raise OptionError("suite", f"unexpected positional arguments {argv[1:]}; options: --suite, --quick, --output")
  out = check_output(_OUTPUT.value) if _OUTPUT.value else None
  names = list(SUITES) if _SUITE.value == "all" else [_SUITE.value]
  results = []
  for name in names:
    for row in importlib.import_module(SUITES[name]).run(_QUICK.value):
      row = {"suite": name, **row}
      print(json.dumps(row), flush=True)
      results.append(row)
  if out:
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"machine": platform.platform(), "processor": platform.processor(), "cpu_count": os.cpu_count(),
           "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "quick": _QUICK.value, "results": results}
    atomic.write_text_atomic(out, json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
  cli.run(main)  # flag errors: one line, exit 1
