r"""Every benchmark suite; one JSON object per measurement on stdout, all of them in --output.

  python -m experiments.bench --suite=all --output=runs/bench.json
  python -m experiments.bench --suite=train [--quick]

Suites: data (corpus writer, on-device sampler), train (training step tokens/s, MFU, compile time),
edits (edit-set builder). Speed claims live here, never in tests.
"""

from __future__ import annotations

import importlib
import json
import pathlib
import platform
import time

from absl import flags

from data_gen import cli

SUITES = {"data": "experiments.bench_data", "train": "experiments.bench_train",
          "edits": "experiments.bench_edits"}

_SUITE = flags.DEFINE_enum("suite", "all", ["all", *SUITES], "Which suite to run.")
_QUICK = flags.DEFINE_bool("quick", False, "Smaller shapes and fewer steps (a smoke run).")
_OUTPUT = flags.DEFINE_string("output", None, "Also write all results to this JSON file.")


def main(argv):
  del argv
  names = list(SUITES) if _SUITE.value == "all" else [_SUITE.value]
  results = []
  for name in names:
    for row in importlib.import_module(SUITES[name]).run(_QUICK.value):
      row = {"suite": name, **row}
      print(json.dumps(row), flush=True)
      results.append(row)
  if _OUTPUT.value:
    out = pathlib.Path(_OUTPUT.value)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"machine": platform.platform(), "processor": platform.processor(), "cpu_count": __import__("os").cpu_count(),
           "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "quick": _QUICK.value, "results": results}
    cli.write_text_atomic(out, json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
  cli.run(main)  # flag errors: one line, exit 1
