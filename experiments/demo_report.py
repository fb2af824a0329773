r"""Writes RUN_DIR/report.md from what the demo's stages left in RUN_DIR (data, pretrain, edits, edit_lora).

  python -m experiments.demo_report --run_dir=runs/demo
"""

from __future__ import annotations

import json
import pathlib

from absl import app, flags

_RUN_DIR = flags.DEFINE_string("run_dir", "runs/demo", "Folder holding data/, pretrain/, edits/ and edit_lora/.")


def _load(path: pathlib.Path):
  return json.loads(path.read_text()) if path.exists() else None


def _value(metric: str, entry: dict, when: str) -> str:
  """A share as a percentage, anything else (log-probabilities, ranks) as a number; the CI when present."""
  x = entry[when]
  share = not metric.startswith(("logprob", "rank"))
  fmt = (lambda v: f"{100 * v:.1f}%") if share else (lambda v: f"{v:.2f}")
  text = "nan" if x is None or x != x else fmt(x)
  ci = entry.get(f"{when}_ci")
  if ci and None not in ci and all(c == c for c in ci):
    text += f" [{fmt(ci[0])}, {fmt(ci[1])}]"
  return text


def build_report(run_dir: pathlib.Path) -> str:
  meta = _load(run_dir / "data/metadata/metadata.json")
  summary = _load(run_dir / "pretrain/summary.json")
  edits = _load(run_dir / "edits/edit_set.json")
  lines = [f"# behemoth-jax demo report ({run_dir})", ""]
  if meta:
    lines += ["## Data", "",
              f"- {meta['num_subjects']} subjects x {meta['num_relationships']} relationships, "
              f"{meta['num_objects']} objects per relationship: {meta['num_facts']} facts",
              f"- vocabulary {meta['vocab_size']} ids; corpus {meta['num_documents']} documents, "
              f"{meta['total_tokens']} tokens (seed {meta['seed']})",
              f"- probe sets: {', '.join(sorted(meta['validation_sets'] or {}))}", ""]
  if summary:
    accuracies = {k[len("eval/"):-len("/accuracy")]: v for k, v in summary.items()
                  if k.startswith("eval/") and k.endswith("/accuracy") and "/rel" not in k}
    lines += ["## Pretraining", "", f"- steps: {summary.get('step')}, reached target: "
              f"{summary.get('reached_target')}", "", "| probe set | greedy exact-match accuracy |",
              "|---|---|"]
    lines += [f"| {name} | {100 * value:.2f}% |" for name, value in sorted(accuracies.items())]
    lines.append("")
  if edits:
    lines += ["## Edit set", "", "| file | role | facts | rows | changed by the edit |", "|---|---|---|---|---|"]
    lines += [f"| {f['file']} | {f['role']} | {f['facts']} | {f['rows']} | {f['changed']} |"
              for f in edits["files"]]
    lines.append("")
  edit_summary = _load(run_dir / "edit_lora/summary.json")
  edit_run = _load(run_dir / "edit_lora/run.json")
  if edit_summary:
    lines += ["## Edits (experiments.edit, config lora)", ""]
    if edit_run:
      lines += [f"- {edit_run['num_edits']} independent single-fact edits, method {edit_run['method']} "
                f"(rank {edit_run['rank']}) on {', '.join(edit_run['paths'])}; "
                f"{edit_run['wall_s']:.0f} s on {edit_run['device']}", ""]
    lines += ["Before and after each edit, mean over edits with its 95% bootstrap CI where measured. "
              "`exact_match`: the greedy answer is the post-edit answer; `exact_match_old`: the pre-edit one; "
              "log-probabilities and ranks are numbers, the rest shares. `edited` is the edit itself; every "
              "other split is a fact the edit should leave alone.", "",
              "| split | metric | before | after | facts |", "|---|---|---|---|---|"]
    for split, by_metric in edit_summary.items():
      for metric, v in by_metric.items():
        lines.append(f"| {split} | {metric} | {_value(metric, v, 'before')} | {_value(metric, v, 'after')} "
                     f"| {v['n']} |")
    lines.append("")
  return "\n".join(lines)


def main(argv):
  del argv
  run_dir = pathlib.Path(_RUN_DIR.value)
  report = build_report(run_dir)
  (run_dir / "report.md").write_text(report + "\n")
  print(report)
  print(f"report written to {run_dir / 'report.md'}")


if __name__ == "__main__":
  app.run(main)
