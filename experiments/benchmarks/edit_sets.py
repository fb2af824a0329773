r"""Edit-set speed at the original's graph size (S=100,000, R=6, O=400): building, and writing the files.

  python -m experiments.benchmarks.edit_sets [--quick]

`run(quick)` is what `experiments/bench.py --suite=edits` calls. Building is pure numpy selection (the
original scanned Python lists once per edit); writing renders every row's tokens and spells them.
Timings are the best of `repeats` runs, in seconds.
"""

from __future__ import annotations

import sys
import tempfile
import time

from data_gen.edit_sets.edit_files import write_edit_set
from data_gen.edit_sets.edits import EditConfig, build_edit_set
from data_gen.world.graph import GraphConfig, make_graph
from data_gen.world.vocab import make_vocab
from experiments.benchmarks import harness

GRAPH = GraphConfig(num_subjects=100_000, num_relationships=6, num_objects=400)
NESTED_GRAPH = GraphConfig(num_subjects=100_000, num_relationships=6, num_objects=400, num_nested_objects=20)


def _best(fn, repeats: int) -> tuple[float, object]:
  best, out = float("inf"), None
  for _ in range(repeats):
    start = time.perf_counter()
    out = fn()
    best = min(best, time.perf_counter() - start)
  return best, out


def run(quick: bool) -> list[dict]:
  repeats = 1 if quick else 3
  graphs = {"flat": make_graph(GRAPH, 0)}
  cases = [("remap_n1000_nodistinct", "flat", EditConfig(num_ft_overrides=1000, distinct_values=False)),
           ("remap_n200_distinct", "flat", EditConfig(num_ft_overrides=200)),
           ("censor_all", "flat", EditConfig(single_ft_value=True))]
  if not quick:
    graphs["nested"] = make_graph(NESTED_GRAPH, 0)
    cases += [("all_same_n100", "flat", EditConfig(num_ft_overrides=100, all_same_remapping=True)),
              ("remap_n10_nested_ripple", "nested", EditConfig(num_ft_overrides=10)),
              ("remap_object_nested_n10", "nested",
               EditConfig(num_ft_overrides=10, remap_object_nested_object_edges=True))]
  results = []
  for name, graph_name, config in cases:
    graph = graphs[graph_name]
    seconds, edit_set = _best(lambda: build_edit_set(graph, config, 0), repeats)  # noqa: B023
    results.append({"name": f"edits/build/{name}", "seconds": round(seconds, 4),
                    "subjects": graph.num_subjects, "relationships": graph.num_relationships,
                    "objects": graph.num_objects, "train_rows": sum(s.num_rows for s in edit_set.train),
                    "eval_facts": sum(len(s) for s in edit_set.eval)})
  # Writing the largest set: every file of the layout (n = 1000 edits x 250 repeats + regularization).
  write_cases = [("remap_n100_nodistinct", EditConfig(num_ft_overrides=100, distinct_values=False))]
  if not quick:
    write_cases.append(("remap_n1000_nodistinct", EditConfig(num_ft_overrides=1000, distinct_values=False)))
  vocab = make_vocab(GRAPH)
  for name, config in write_cases:
    edit_set = build_edit_set(graphs["flat"], config, 0)

    def write():
      with tempfile.TemporaryDirectory() as d:
        return write_edit_set(d, edit_set, vocab)

    seconds, manifest = _best(write, 1)
    results.append({"name": f"edits/write/{name}", "seconds": round(seconds, 4),
                    "train_rows": manifest["train_rows"],
                    "rows_per_second": round(manifest["train_rows"] / seconds)})
  return results


if __name__ == "__main__":
  sys.exit(harness.script_main(run, sys.argv[1:]))
