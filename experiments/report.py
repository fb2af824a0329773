r"""A Markdown report with PNG plots from edit, oracle and pretraining work dirs.

  python -m experiments.report --results=E1,E2,O,W --output=REPORT_DIR

Each --results folder is recognised by what it holds: an edit run (run.json + summary.json, from
python -m experiments.edit), a retrain-oracle run (oracle.json + summary.json, experiments.oracle) or a
pretraining run (config.json + metrics.jsonl, experiments.pretrain). REPORT_DIR (created atomically; it must
not exist) gets report.md and the plots it embeds: per edit run a table per split (before and after with
their 95% bootstrap intervals and n), accuracy against LoRA rank and efficacy against locality across
runs, sequential-editing curves, pretraining curves, and the oracle's forget quality and agreement.
Not yet: per-layer/per-block heatmaps and causal-trace heatmaps (no results format for them yet).
Exit status 2: an invalid option (one line `error: --option: ...`, nothing written).
"""

from __future__ import annotations

import hashlib
import json
import math
import pathlib

from absl import app, flags

from experiments import config_cli

_RESULTS = flags.DEFINE_list("results", None, "Work dirs (edit, oracle or pretraining runs), comma-separated.")
_OUTPUT = flags.DEFINE_string("output", None, "Folder to create for report.md and its plots.")
flags.mark_flags_as_required(["results", "output"])

HEADLINE = ("exact_match", "exact_match_old", "efficacy", "logprob_new", "logprob_old",
            "token_accuracy_teacher_forced", "rank")


def kind_of(path: pathlib.Path) -> str | None:
  if (path / "oracle.json").is_file() and (path / "summary.json").is_file():
    return "oracle"
  if (path / "run.json").is_file() and (path / "summary.json").is_file():
    return "edit"
  if (path / "config.json").is_file() and (path / "metrics.jsonl").is_file():
    return "pretrain"
  return None


def _fmt(x, pct: bool) -> str:
  if x is None or (isinstance(x, float) and math.isnan(x)):
    return "n/a"
  return f"{100 * x:.1f}%" if pct else f"{x:.3g}"


def _ci(v: dict, key: str, pct: bool) -> str:
  ci = v.get(f"{key}_ci")
  if not ci or any(c is None or (isinstance(c, float) and math.isnan(c)) for c in ci):
    return ""
  return f" [{_fmt(ci[0], pct)}, {_fmt(ci[1], pct)}]"


def _is_pct(metric: str) -> bool:
  return not (metric.startswith("logprob") or metric.startswith("rank") or metric == "forget_quality")


def summary_tables(summary: dict) -> list[str]:
  lines = []
  for split, by_metric in summary.items():
    lines += [f"#### {split}", "", "| metric | before [95% CI] | after [95% CI] | n | resampled |", "|---|---|---|---|---|"]
    for metric, v in by_metric.items():
      pct = _is_pct(metric)
      extra = (f" ({v['qualified_edits']}/{v['edits']} edits qualified)" if "qualified_edits" in v else
               f" ({v['n']}/{v['of']} qualified)" if "of" in v else "")
      lines.append(f"| {metric}{extra} | {_fmt(v.get('before'), pct)}{_ci(v, 'before', pct)} | "
                   f"{_fmt(v.get('after'), pct)}{_ci(v, 'after', pct)} | {v.get('n', '')} | "
                   f"{v.get('ci_unit', '')} |")
    lines.append("")
  return lines


def _savefig(fig, path: pathlib.Path) -> None:
  fig.tight_layout()
  fig.savefig(path, dpi=90, metadata={"Software": None})  # no version string: same inputs, same bytes


def build(results: list[pathlib.Path], out: pathlib.Path) -> str:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  runs = [(p, kind_of(p)) for p in results]
  lines = ["# behemoth-jax results", "",
           "Every number: the point estimate, then its percentile bootstrap 95% interval in brackets, and n "
           "(distinct facts). `resampled` says what the bootstrap drew with replacement: edits (independent mode, "
           "each its own delta) or facts (batch/sequential: one delta). exact_match is greedy decoding of the whole "
           "answer (the headline); token_accuracy_teacher_forced gives partial credit and is not the headline.", ""]
  edits = []
  for path, kind in runs:
    if kind != "edit":
      continue
    config = json.loads((path / "config.json").read_text()) if (path / "config.json").is_file() else {}
    info = json.loads((path / "run.json").read_text())
    summary = json.loads((path / "summary.json").read_text())
    edits.append((path, config, info, summary))
    digest = hashlib.sha256((path / "config.json").read_bytes()).hexdigest()[:12] if config else "?"
    lines += [f"## Edit run `{path.name}`", "",
              f"method {info.get('method')}, mode {info.get('mode')}, targets {info.get('targets')}, rank "
              f"{info.get('rank')}, {info.get('num_edits')} edits; seeds: config {config.get('seed')}, edit set "
              f"{config.get('edit_set_seed')}; config hash {digest}; wall {info.get('wall_s', float('nan')):.1f} s "
              f"on {info.get('device')}", ""]
    lines += summary_tables(summary)
    seq = path / "sequential.jsonl"
    if seq.is_file():
      recs = [json.loads(l) for l in seq.read_text().splitlines() if l.strip()]
      fig, ax = plt.subplots(figsize=(5, 3))
      ax.plot([r["edit"] + 1 for r in recs], [r.get("edits_so_far", float("nan")) for r in recs], marker=".")
      ax.set(xlabel="edits applied", ylabel="exact match of edits so far", ylim=(-0.05, 1.05),
             title=f"sequential editing: {path.name}")
      name = f"sequential_{len(edits)}.png"
      _savefig(fig, out / name)
      plt.close(fig)
      lines += [f"![sequential editing]({name})", ""]
  if edits:
    def point(summary, split, metric):
      v = summary.get(split, {}).get(metric)
      if not v:
        return None
      lo, hi = v.get("after_ci") or [v["after"], v["after"]]
      return v["after"], v["after"] - lo, hi - v["after"]

    # Efficacy against locality: one point per run.
    fig, ax = plt.subplots(figsize=(5, 4))
    for path, _, info, summary in edits:
      e, l = point(summary, "edited", "exact_match"), point(summary, "reg_data", "exact_match")
      if e and l:
        ax.errorbar(l[0], e[0], xerr=[[l[1]], [l[2]]], yerr=[[e[1]], [e[2]]], fmt="o", capsize=3,
                    label=f"{path.name} ({info.get('method')})")
    ax.set(xlabel="locality: reg_data exact match after", ylabel="efficacy: edited exact match after",
           xlim=(-0.05, 1.05), ylim=(-0.05, 1.05), title="efficacy against locality (95% CI)")
    ax.legend(fontsize=6)
    _savefig(fig, out / "efficacy_locality.png")
    plt.close(fig)
    lines += ["## Across runs", "", "![efficacy against locality](efficacy_locality.png)", ""]
    lora = sorted(((info.get("rank"), summary) for _, _, info, summary in edits
                   if info.get("method") == "lora" and info.get("rank")), key=lambda t: t[0])
    if lora:
      fig, ax = plt.subplots(figsize=(5, 3))
      for split in ("edited", "reg_data"):
        pts = [(r, point(s, split, "exact_match")) for r, s in lora if point(s, split, "exact_match")]
        if pts:
          ax.errorbar([r for r, _ in pts], [p[0] for _, p in pts], yerr=[[p[1] for _, p in pts], [p[2] for _, p in pts]],
                      marker="o", capsize=3, label=split)
      ax.set(xscale="log", xlabel="LoRA rank", ylabel="exact match after", ylim=(-0.05, 1.05),
             title="accuracy against LoRA rank (95% CI)")
      ax.legend()
      _savefig(fig, out / "accuracy_rank.png")
      plt.close(fig)
      lines += ["![accuracy against LoRA rank](accuracy_rank.png)", ""]
  for i, (path, kind) in enumerate(runs):
    if kind == "oracle":
      options = json.loads((path / "oracle.json").read_text())
      summary = json.loads((path / "summary.json").read_text())
      lines += [f"## Retrain oracle `{path.name}`", "",
                f"mode {options['mode']} (the edited facts {'removed from' if options['mode'] == 'remove' else 'remapped in'} "
                f"the corpus), training seeds {options['seeds']}, compared model: "
                f"{options.get('unlearned') or 'the pretrained model itself (no edit)'}. forget_quality = p-value of the "
                "two-sample KS test between per-fact log-probabilities of the pre-edit answer under the compared "
                "model and under the oracle (TOFU; high = indistinguishable from never having seen the facts); "
                "`before` = the pretrained model.", ""]
      lines += summary_tables(summary)
      fq = [(k, v["forget_quality"]) for k, v in summary.items() if "forget_quality" in v]
      if fq:
        fig, ax = plt.subplots(figsize=(5, 3))
        k, v = fq[0]
        ax.bar(range(len(v["per_seed"])), v["per_seed"], label="compared model")
        ax.bar(range(len(v["per_seed_before"])), v["per_seed_before"], alpha=0.5, label="pretrained")
        ax.axhline(0.05, color="k", lw=0.5)
        ax.set(yscale="log", xlabel="oracle seed", ylabel="KS p-value", title=f"forget quality ({k})")
        ax.legend()
        _savefig(fig, out / f"forget_quality_{i}.png")
        plt.close(fig)
        lines += [f"![forget quality](forget_quality_{i}.png)", ""]
    elif kind == "pretrain":
      recs = [json.loads(l) for l in (path / "metrics.jsonl").read_text().splitlines() if l.strip()]
      train = [r for r in recs if "loss" in r]
      evals = [r for r in recs if any(k.startswith("eval/") and k.endswith("/accuracy") for k in r)]
      fig, ax = plt.subplots(figsize=(5, 3))
      ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss")
      ax.set(xlabel="step", ylabel="loss", yscale="log", title=f"pretraining: {path.name}")
      if evals:
        ax2 = ax.twinx()
        keys = sorted({k for r in evals for k in r if k.startswith("eval/") and k.count("/") == 2
                       and k.endswith("/accuracy")})
        for k in keys:
          ax2.plot([r["step"] for r in evals if k in r], [r[k] for r in evals if k in r], "o-", label=k)
        ax2.set(ylabel="exact match", ylim=(-0.05, 1.05))
        ax2.legend(fontsize=6, loc="center right")
      _savefig(fig, out / f"pretraining_{i}.png")
      plt.close(fig)
      last = evals[-1] if evals else {}
      lines += [f"## Pretraining `{path.name}`", "", f"{len(train)} logged steps; final evaluation: " +
                ", ".join(f"{k} {100 * v:.1f}%" for k, v in sorted(last.items()) if k.endswith("/accuracy")), "",
                f"![pretraining curves](pretraining_{i}.png)", ""]
  return "\n".join(lines) + "\n"


def main(argv):
  if len(argv) > 1:
    config_cli.fail(f"unexpected positional arguments {argv[1:]}: options are --results=DIR,... --output=DIR")
  results = [pathlib.Path(r) for r in _RESULTS.value if r]
  if not results:
    config_cli.fail("--results: give at least one work dir, got none")
  for r in results:
    if not r.is_dir() or kind_of(r) is None:
      config_cli.fail(f"--results: {r} is not an edit, retrain-oracle or pretraining work dir (no run.json, "
                      "oracle.json or metrics.jsonl beside summary.json/config.json)")
  out = pathlib.Path(_OUTPUT.value)
  if out.exists():
    config_cli.fail(f"--output: {out} already exists; choose a new folder")
  from data_gen import cli  # pylint: disable=g-import-not-at-top
  from data_gen.errors import OptionError  # pylint: disable=g-import-not-at-top
  try:
    with cli.atomic_directory(out, option="output") as tmp:
      text = build(results, tmp)
      (tmp / "report.md").write_text(text)
  except OptionError as e:
    config_cli.fail(str(e))
  print(out / "report.md")


if __name__ == "__main__":
  app.run(main, flags_parser=config_cli.parse_flags)
