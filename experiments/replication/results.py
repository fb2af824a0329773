"""An experiment's results: pooled summary, rows, plots and its Markdown section; docs/results.md from the
sections.

Every number in a section comes from the experiment's summary.json, which pools the arm's edit runs over
seeds (behemoth_jax/evaluate/pooling.py: two-level bootstrap, seeds then edits or facts). The "what the numbers say"
lines are computed from those numbers by fixed rules (a difference counts only where the two 95% intervals
do not overlap), so rerunning an experiment rewrites its reading with its numbers.
"""

from __future__ import annotations

import json
import math
import pathlib
import shutil

import numpy as np

from behemoth_jax.evaluate import pooling, stats
from data_gen.common import atomic

# (summary key, metric, column title) per experiment; the first column is the edit itself.
_TAKES = ("edited", "exact_match", "edit takes")
_LOCALITY = [("reg_data", "exact_match", "unrelated facts"),
             ("same_edges_diff_rel", "exact_match", "subject's other facts"),
             ("with_same_rel", "exact_match", "same relationship, other subjects"),
             ("with_same_value", "exact_match", "other facts with the new value")]
_QUESTION = [("edited/question", "exact_match", "question form, asked subjects"),
             ("edited_new", "exact_match", "question form, never-asked subjects")]
COLUMNS = {
    "rank": [_TAKES] + _QUESTION + _LOCALITY,
    "blocks": [_TAKES] + _LOCALITY,
    "ripple": [_TAKES,
               ("same_subj_nested_obj_edges", "exact_match_conditioned", "nested ripple follows (conditioned)"),
               ("same_obj_nested_obj_edges", "exact_match", "old object's nested fact kept"),
               ("same_subject_second_rel_converted", "exact_match_conditioned",
                "correlated ripple follows (conditioned)"),
               ("same_subject_second_rel", "exact_match", "correlated fact kept")] + _LOCALITY[:2],
    "censor": [("censored", "exact_match", "censored facts"),
               ("implicitly_remapped", "exact_match", "held-out subjects follow"),
               ("reg_data", "exact_match", "unrelated facts"),
               ("same_edges_diff_rel", "exact_match", "subject's other facts")],
    "dissent_qa": [_TAKES] + _QUESTION + [
        ("edited/question", "exact_match_old", "question form, asked: old object"),
        ("edited_new", "exact_match_old", "question form, never asked: old object"),
        ("reg_data/question", "exact_match", "unrelated, question form, asked"),
        ("reg_data_new", "exact_match", "unrelated, question form, never asked"),
        ("reg_data", "exact_match", "unrelated facts")],
    "locate": [_TAKES] + _LOCALITY,
    "unlearning": [("edited", "exact_match_old", "still answers the forgotten fact"),
                   ("reg_data", "exact_match", "retain: unrelated facts"),
                   ("same_edges_diff_rel", "exact_match", "retain: subject's other facts"),
                   ("with_same_rel", "exact_match", "retain: same relationship")],
    "capacity": [_TAKES] + _LOCALITY,
}
QUESTIONS = {
    "rank": "Does low-rank fine-tuning (LoRA) beat full-rank fine-tuning of the same weights, for one fact at a "
            "time (independent) and for 10 or 100 facts at once (batch)? Efficacy, generalization to the question "
            "form, locality.",
    "blocks": "Does restricting which blocks are fine-tuned (MLP only, attention only, single layers, early "
              "against late layers) improve edits over fine-tuning every block?",
    "ripple": "Does an edit ripple to the facts that depend on it (a nested fact inherited from the edited "
              "object; a correlated relationship), scored only where the model knew the prerequisites?",
    "censor": "Censoring a relationship (every censored subject's fact moved to one value): is it learned, and "
              "does it generalize to subjects held out of the censoring?",
    "dissent_qa": "With dissenting facts (a minority object in a share p of a fact's sentences) and questions "
                  "in pretraining for half of the subjects: are statement-learned facts extractable as answers "
                  "for subjects never asked in pretraining, before and after an edit?",
    "locate": "Locate-then-edit: rank-one, least-squares and null-space edits against LoRA and fine-tuning on "
              "the same facts; does the causally traced layer predict the best layer to edit?",
    "unlearning": "Unlearning (gradient ascent, gradient difference, NPO, refusal) against the model retrained "
                  "without the facts: forget quality (KS p-value against the oracle) and retain accuracy.",
    "capacity": "How do edit success and locality change with exposures per fact in pretraining and with "
                "model width?",
}
TITLES = {"rank": "1. Rank: LoRA against full-rank fine-tuning", "blocks": "2. Blocks: which blocks to fine-tune",
          "ripple": "3. Ripple: nested and correlated facts", "censor": "4. Censoring a relationship",
          "dissent_qa": "5. Dissenting facts and question extraction",
          "locate": "6. Locate-then-edit", "unlearning": "7. Unlearning against the retrain oracle",
          "capacity": "8. Capacity: exposures and model width"}
ORDER = tuple(TITLES)


def pooled(run_dirs) -> dict:
  """pooling.pool_runs, plus what it leaves out (ripple's conditioned metrics): one run's own entry, or
  over several runs their fact-weighted mean with a bootstrap over runs."""
  out = pooling.pool_runs(run_dirs)
  summaries = [json.loads((pathlib.Path(d) / "summary.json").read_text()) for d in run_dirs]
  for split, by_metric in summaries[0].items():
    for metric, entry in by_metric.items():
      if metric in out.get(split, {}) or not all(metric in s.get(split, {}) for s in summaries):
        continue
      if len(summaries) == 1:
        out.setdefault(split, {})[metric] = dict(entry)
        continue
      v = {f: np.array([s[split][metric][f] for s in summaries], np.float64) for f in ("before", "after")}
      n = np.array([s[split][metric]["n"] for s in summaries], np.float64)
      e = {"n": int(n.sum()), "ci_unit": "run", "runs": len(summaries)}
      for f in ("before", "after"):
        point, lo, hi = stats.hierarchical_bootstrap_ci([v[f]], [n])
        e[f], e[f"{f}_ci"] = point, [lo, hi]
      out.setdefault(split, {})[metric] = e
  return out


def _oracle_numbers(run_dirs) -> dict:
  """forget_quality (TOFU: KS p of the per-fact truth ratios against the run's first oracle seed, one per run)
  and oracle_agreement on unrelated facts, as oracle.run merged them into each unlearning run's summary.json."""
  fq, fq_logprob, agree = [], [], []
  for d in run_dirs:
    s = json.loads((pathlib.Path(d) / "summary.json").read_text())
    for split in ("edited", "censored"):
      if "forget_quality" in s.get(split, {}):
        fq.append(s[split]["forget_quality"]["after"])
        if "forget_quality_logprob" in s[split]:  # KS p of per-fact log P(old answer) (the earlier forget_quality)
          fq_logprob.append(s[split]["forget_quality_logprob"]["after"])
        break
    if "oracle_agreement" in s.get("reg_data", {}):
      agree.append(s["reg_data"]["oracle_agreement"]["after"])
  return {"forget_quality": fq, "forget_quality_median": float(np.median(fq)) if fq else math.nan,
          "forget_quality_logprob": fq_logprob,
          "oracle_agreement_reg_data": agree}


def _entry(summary: dict, split: str, metric: str) -> dict | None:
  return summary.get(split, {}).get(metric)


def _pct(x) -> str:
  return "-" if x is None or not math.isfinite(x) else f"{100 * x:.1f}"


def _few_runs(tree) -> bool:
  """Whether any interval over runs (ci_unit "run") in `tree` rests on fewer than 5 runs."""
  if isinstance(tree, dict):
    if tree.get("ci_unit") == "run" and tree.get("runs", stats.MIN_SEEDS_TO_RESAMPLE) < stats.MIN_SEEDS_TO_RESAMPLE:
      return True
    return any(_few_runs(v) for v in tree.values())
  return False


def _cell(e: dict | None, field: str = "after") -> str:
  if not e:
    return "-"
  lo, hi = e.get(f"{field}_ci", [math.nan, math.nan])
  mark = "†" if e.get("ci_unit") == "run" else ""
  return f"{_pct(e[field])} [{_pct(lo)}, {_pct(hi)}]{mark}"


def _score(summary: dict, experiment: str) -> float:
  """The tuning score of an arm: mean of the edit's success and unrelated facts' exact match."""
  first, *_ = COLUMNS[experiment]
  e = _entry(summary, first[0], first[1])
  reg = _entry(summary, "reg_data", "exact_match")
  if not e or not reg:
    return math.nan
  take = 1.0 - e["after"] if experiment == "unlearning" else e["after"]
  return 0.5 * (take + reg["after"])


def _separated(a: dict, b: dict) -> bool:
  """The two entries' 95% intervals of `after` do not overlap."""
  (alo, ahi), (blo, bhi) = a["after_ci"], b["after_ci"]
  return all(map(math.isfinite, (alo, ahi, blo, bhi))) and (alo > bhi or blo > ahi)


def _compare(name_a, a, name_b, b, what) -> str:
  if not a or not b:
    return ""
  if _separated(a, b):
    better = name_a if a["after"] > b["after"] else name_b
    return (f"{what}: {name_a} {_pct(a['after'])}% vs {name_b} {_pct(b['after'])}%, {better} higher "
            "(intervals apart).")
  return f"{what}: {name_a} {_pct(a['after'])}% vs {name_b} {_pct(b['after'])}%, not distinguishable (intervals overlap)."


def _ranking(by: dict, experiment: str, first: str, name=lambda a: a) -> str:
  """The arms by score (the mean of the first column, `first`, and unrelated facts), best first."""
  ranked = sorted(by, key=lambda a: -_score(by[a], experiment))
  return (f"By score (mean of {first} and unrelated facts): " +
          ", ".join(f"{name(a)} {_pct(_score(by[a], experiment))}" for a in ranked) + ".")


def reading(experiment: str, arms: list, summary: dict, info: dict) -> list[str]:
  """Statements computed from the numbers (see the module docstring)."""
  lines = []
  by = {a.name: summary[a.name]["splits"] for a in arms if a.name in summary}
  lab = {a.name: a.labels for a in arms}
  if experiment == "rank":
    for mode in dict.fromkeys(lab[a]["mode"] for a in by):
      names = [a for a in by if lab[a]["mode"] == mode]
      full = next((a for a in names if lab[a]["rank"] == "full"), None)
      lora = [a for a in names if a != full]
      if not full or not lora:
        continue
      best = max(lora, key=lambda a: _score(by[a], experiment))
      higher = sum(_score(by[a], experiment) > _score(by[full], experiment) for a in lora)
      lines.append(f"**{mode}**: {higher} of {len(lora)} LoRA ranks score above full rank (mean of edit takes and "
                   f"unrelated facts); the best is r={lab[best]['rank']}.")
      for key, metric, title in COLUMNS["rank"]:
        line = _compare(f"r={lab[best]['rank']}", _entry(by[best], key, metric), "full", _entry(by[full], key, metric),
                        title)
        if line:
          lines.append("- " + line)
  elif experiment == "blocks":
    names = {lab[a]["targets"]: a for a in by}
    lines.append(_ranking(by, experiment, "edit takes", lambda a: lab[a]["targets"]))
    for a, b in (("mlp", "blocks"), ("attn", "blocks"), ("mlp", "attn"), ("layer:0-1", "layer:2-3")):
      if a in names and b in names:
        for key, metric, title in COLUMNS["blocks"][:3]:
          lines.append("- " + _compare(a, _entry(by[names[a]], key, metric), b, _entry(by[names[b]], key, metric), title))
  elif experiment == "locate":
    for seed, t in sorted(info.get("trace", {}).items()):
      mlp = np.asarray(t["components"]["mlp"]["mean_indirect_effect"])
      rome = {lab[a]["layer"]: by[a] for a in by if lab[a]["method"] == "rome" and isinstance(lab[a]["layer"], int)}
      if rome:
        # The best layer to edit: the highest score (edit takes and unrelated facts kept); ties: the lower layer.
        best = max(rome, key=lambda l: (_score(rome[l], experiment), -l))
        lines.append(f"Seed {seed}: the MLP with the largest indirect effect at the last prompt token is layer "
                     f"{int(mlp[:, -1].argmax())} (at the subject's last token: layer {t['traced_layer']}); the "
                     f"rank-one edit scores best at layer {best} (takes {_pct(rome[best]['edited']['exact_match']['after'])}%, "
                     f"keeps {_pct(rome[best]['reg_data']['exact_match']['after'])}% of unrelated facts).")
    for a in by:
      if lab[a].get("layer") == "traced":
        picked = sorted({_traced_layer(d) for d in summary[a]["runs"]} - {None})
        lines.append(f"{a}: tracing picked layer {', '.join(map(str, picked)) or '?'}; the edit takes "
                     f"{_pct(_entry(by[a], 'edited', 'exact_match')['after'])}%.")
    lines.append(_ranking(by, experiment, "edit takes"))
  elif experiment == "unlearning":
    for a in by:
      o = summary[a].get("oracle", {})
      lines.append(f"{a}: still answers {_pct(_entry(by[a], 'edited', 'exact_match_old')['after'])}% of the forgotten "
                   f"facts; forget quality (KS p of truth ratios against the oracle) median {o.get('forget_quality_median', math.nan):.3g}"
                   f" over {len(o.get('forget_quality', []))} run(s); retains {_pct(_entry(by[a], 'reg_data', 'exact_match')['after'])}%"
                   " of unrelated facts.")
  elif experiment == "capacity":
    lines.append(_ranking(by, experiment, "edit takes"))
    # Variants are e<exposures>_w<width>: one factor moves at a time, per method.
    cell = {(*lab[a]["pretraining"].split("_"), lab[a]["method"]): a for a in by}
    num = lambda tag: int(tag[1:])  # noqa: E731
    for (e, w, m), a in sorted(cell.items()):
      for key, metric, title in COLUMNS["capacity"][:2]:
        pairs = [(f"{m}, width {num(w)}", f"{num(e)} exposures", cell[k], f"{num(k[0])} exposures")
                 for k in cell if k[1:] == (w, m) and num(k[0]) > num(e)]
        pairs += [(f"{m}, {num(e)} exposures", f"width {num(w)}", cell[k], f"width {num(k[1])}")
                  for k in cell if (k[0], k[2]) == (e, m) and num(k[1]) > num(w)]
        for where, name_a, b, name_b in pairs:
          line = _compare(name_a, _entry(by[a], key, metric), name_b, _entry(by[b], key, metric), title)
          if line:
            lines.append(f"- {where}: {line}")
  else:
    lines.append(_ranking(by, experiment, "the first column"))
    if experiment == "dissent_qa":
      for a in by:
        for key, metric, title in _QUESTION:
          new, old = _entry(by[a], key, metric), _entry(by[a], key, "exact_match_old")
          if new and old:
            lines.append(f"- {a}, {title}: before the edit {_pct(old['before'])}% answer with the old object "
                         f"(extractable from statements), after it {_pct(new['after'])}% with the new one.")
  return [l for l in lines if l]


def _traced_layer(run_dir) -> int | None:
  """The layer a closed-form run with layer -1 took from causal tracing (its run.json)."""
  path = pathlib.Path(run_dir) / "run.json"
  traced = json.loads(path.read_text()).get("traced") if path.is_file() else None
  return traced.get("layer") if isinstance(traced, dict) else None


def _plot(exp: pathlib.Path, experiment: str, arms: list, summary: dict, info: dict) -> list[str]:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  plt.rcParams["svg.hashsalt"] = "behemoth"
  cols = [c for c in COLUMNS[experiment] if any(_entry(summary[a.name]["splits"], c[0], c[1]) for a in arms
                                                 if a.name in summary)]
  names = [a.name for a in arms if a.name in summary]
  files = []
  if experiment == "rank":
    fig, axes = plt.subplots(1, len(cols), figsize=(3.2 * len(cols), 3.2), squeeze=False)
    modes = list(dict.fromkeys(a.labels["mode"] for a in arms))
    ranks = list(dict.fromkeys(a.labels["rank"] for a in arms))
    for ax, (key, metric, title) in zip(axes[0], cols):
      for mode in modes:
        xs, ys, lo, hi = [], [], [], []
        for a in arms:
          e = _entry(summary[a.name]["splits"], key, metric) if a.labels["mode"] == mode else None
          if e:
            xs.append(ranks.index(a.labels["rank"]))
            ys.append(100 * e["after"])
            lo.append(100 * (e["after"] - e["after_ci"][0]))
            hi.append(100 * (e["after_ci"][1] - e["after"]))
        ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=2, label=mode)
      ax.set_xticks(range(len(ranks)), [str(r) for r in ranks])
      ax.set_xlabel("LoRA rank")
      ax.set_title(title, fontsize=9)
      ax.set_ylim(-5, 105)
    axes[0][0].set_ylabel("exact match after the edit (%)")
    axes[0][0].legend(fontsize=7)
  else:
    fig, axes = plt.subplots(1, len(cols), figsize=(3.0 * len(cols), 0.35 * len(names) + 1.4), squeeze=False)
    for ax, (key, metric, title) in zip(axes[0], cols):
      ys, lo, hi, b = [], [], [], []
      for a in names:
        e = _entry(summary[a]["splits"], key, metric)
        ys.append(100 * e["after"] if e else np.nan)
        b.append(100 * e["before"] if e else np.nan)
        lo.append(100 * (e["after"] - e["after_ci"][0]) if e else 0)
        hi.append(100 * (e["after_ci"][1] - e["after"]) if e else 0)
      pos = np.arange(len(names))
      ax.barh(pos, ys, xerr=[np.nan_to_num(lo), np.nan_to_num(hi)], capsize=2, color="tab:blue")
      ax.plot(b, pos, "k|", markersize=10, label="before")
      ax.set_yticks(pos, names if ax is axes[0][0] else [""] * len(names), fontsize=7)
      ax.set_xlim(0, 100)
      ax.set_title(title, fontsize=8)
      ax.invert_yaxis()
    axes[0][0].legend(fontsize=7)
  fig.suptitle(f"{experiment}: exact match after (bars: 95% CI; |: before)", fontsize=9)
  fig.tight_layout()
  path = exp / f"{experiment}_exact_match.png"
  fig.savefig(path, dpi=90, metadata={"Software": None})
  plt.close(fig)
  files.append(path.name)
  if experiment == "locate" and info.get("trace"):
    t = next(iter(info["trace"].values()))
    mlp = np.asarray(t["components"]["mlp"]["mean_indirect_effect"])
    fig, ax = plt.subplots(figsize=(4.5, 3))
    layers = np.arange(mlp.shape[0])
    ax.plot(layers, mlp[:, -1], "o-", label="MLP indirect effect, last token")
    rome = {a.labels["layer"]: _entry(summary[a.name]["splits"], "edited", "exact_match") for a in arms
            if a.labels.get("method") == "rome" and isinstance(a.labels["layer"], int) and a.name in summary}
    ax.plot(sorted(rome), [rome[l]["after"] if rome[l] else np.nan for l in sorted(rome)], "s--",
            label="rank-one edit takes")
    ax.set_xlabel("layer")
    ax.set_xticks(layers)
    ax.legend(fontsize=7)
    ax.set_title("traced layer against the best layer to edit", fontsize=9)
    fig.tight_layout()
    path = exp / "locate_trace_vs_edit.png"
    fig.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(fig)
    files.append(path.name)
  return files


def write_experiment(exp: pathlib.Path, config, arms: list, info: dict) -> None:
  """summary.json, results.jsonl, plots, section.md and run.json of a finished experiment."""
  runs_of: dict = {}
  for r in info["runs"]:
    runs_of.setdefault(r["arm"], []).append(r)
  summary = {}
  for a in arms:
    runs = runs_of.get(a.name, [])
    if not runs:
      continue
    summary[a.name] = {"label": a.labels, "method": a.method, "overrides": dict(a.overrides),
                       "learning_rate": info["tuned"].get(a.name, {}).get("learning_rate"),
                       "tuning_scores": info["tuned"].get(a.name, {}).get("scores", {}),
                       "runs": [r["dir"] for r in runs], "splits": pooled([r["dir"] for r in runs])}
    if any("oracle" in r for r in runs):
      summary[a.name]["oracle"] = _oracle_numbers([r["dir"] for r in runs])
  lines = []
  for r in info["runs"]:
    for row in (pathlib.Path(r["dir"]) / "results.jsonl").read_text().splitlines():
      if row.strip():
        lines.append(json.dumps({"arm": r["arm"], "pretrain_seed": r["seed"], **json.loads(row)}, allow_nan=True))
  atomic.write_text_atomic(exp / "results.jsonl", "\n".join(lines) + "\n")
  atomic.write_json_atomic(exp / "summary.json", summary, allow_nan=True)
  plots = _plot(exp, config.experiment, arms, summary, info)
  atomic.write_text_atomic(exp / "section.md", section(config, arms, summary, info, plots))
  atomic.write_json_atomic(exp / "run.json", {k: v for k, v in info.items() if k != "trace"}, allow_nan=True)


_KNOWN = (("eval/kind/subject_object/accuracy", "facts"), ("eval/question_trained/accuracy", "questions asked"),
          ("eval/question_heldout/accuracy", "questions never asked"))


def _pretrained_line(info) -> str:
  """What each pretrained model knew when its pretraining stopped (its summary.json), so that edit numbers
  can be read against prior knowledge."""
  parts = []
  for name, path in info["pretrained"].items():
    f = pathlib.Path(path) / "summary.json"
    if not f.is_file():
      continue
    s = json.loads(f.read_text())
    known = ", ".join(f"{label} {100 * s[k]:.1f}%" for k, label in _KNOWN if isinstance(s.get(k), (int, float)))
    parts.append(f"`{name}` step {s.get('step')}: {known}")
  return "**Pretrained models** (greedy accuracy when pretraining stopped). " + "; ".join(parts) + "."


def section(config, arms, summary, info, plots) -> str:
  e = config.experiment
  cols = [c for c in COLUMNS[e] if any(_entry(summary[a.name]["splits"], c[0], c[1]) for a in arms if a.name in summary)]
  label_cols = list(dict.fromkeys(k for a in arms for k in a.labels))
  m = info["machine"]
  out = [f"## {TITLES[e]}", "", f"**Question.** {QUESTIONS[e]}", "",
         f"**Command.** `{info['command']}` (size `{config.size}`; `make paper-cpu` runs every experiment).", "",
         f"**Machine.** {m['cpu']}, {m['cores']} cores, backend {m['backend']} ({m['device']}); "
         f"its tuning and edit runs took {info['edit_s'] / 60:.1f} min (the sum of their run.json wall times), "
         f"pretraining the models it uses {info['pretrain_s'] / 60:.1f} min (shared with every experiment on "
         "the same pretraining).", "",
         f"**Config.** pretraining `{config.pretrain}` seeds {list(config.seeds)}; edit seeds "
         f"{list(config.edit_seeds)}; {config.num_edits} edited facts per run unless an arm says otherwise "
         "(independent mode: one delta per fact; batch: one delta for all); "
         f"learning rates tuned per arm on a held-out edit set (seed {config.tune_edit_seed}, "
         f"{config.tune_edits} edits) where more than one was tried. Cells: exact match after the edit in %, "
         "[95% CI]; CIs resample seeds, then edits (independent) or facts (batch).", ""]
  out += [_pretrained_line(info), ""]
  head = label_cols + ["lr"] + [t for _, _, t in cols] + ["n (first column)"]
  out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for a in arms:
    if a.name not in summary:
      continue
    s = summary[a.name]
    first = _entry(s["splits"], cols[0][0], cols[0][1]) if cols else None
    lr = s.get("learning_rate")
    row = [str(a.labels.get(k, "")) for k in label_cols] + ["-" if lr is None else f"{lr:g}"]
    row += [_cell(_entry(s["splits"], k, mt)) for k, mt, _ in cols] + [str(first["n"]) if first else "-"]
    out.append("| " + " | ".join(row) + " |")
  befores = [c for c in cols if any((_entry(summary[a.name]["splits"], c[0], c[1]) or {}).get("before") is not None
                                    for a in arms if a.name in summary)]
  if e in ("dissent_qa", "ripple") and befores:
    out += ["", "Before the edit: the same columns on the unedited model (edited facts: does it already give "
                "the new object, or, in the old-object columns, the old one; ripple: the post-edit answer; other "
                "facts: their own object):", "",
            "| arm | " + " | ".join(t for _, _, t in befores) + " |", "|---|" + "---|" * len(befores)]
    for a in arms:
      if a.name in summary:
        out.append(f"| {a.name} | " + " | ".join(_cell(_entry(summary[a.name]['splits'], k, mt), 'before')
                                                for k, mt, _ in befores) + " |")
  if e == "unlearning":
    out += ["", "| method | forget quality per run (KS p of truth ratios vs oracle) | median over runs |", "|---|---|---|"]
    for a in arms:
      o = summary.get(a.name, {}).get("oracle")
      if o:
        out.append(f"| {a.name} | {', '.join(f'{p:.3g}' for p in o['forget_quality'])} | "
                   f"{o['forget_quality_median']:.3g} |")
  if any("†" in line for line in out):
    out += ["", "† an interval over the runs only: per-edit values of this metric are not in the runs' "
                "results.jsonl (conditioned ripple metrics), so edits could not be resampled"
                + ("; over fewer than 5 runs such an interval is not reliable (stats.MIN_SEEDS_TO_RESAMPLE)."
                   if _few_runs(summary) else ".")]
  out += ["", "**What the numbers say** (computed from the table by fixed rules):", ""]
  out += [l if l.startswith("- ") else f"- {l}" for l in reading(e, arms, summary, info)]
  out += [""] + [f"![{p}](figures/{p})" for p in plots] + [""]
  return "\n".join(out)


def assemble_docs(root: pathlib.Path, docs: pathlib.Path) -> pathlib.Path:
  """docs/results.md from every finished experiment's section.md (and its plots into docs/figures/); the
  reading written by hand beside it (docs/results_reading.md), when present, goes first."""
  parts = ["# Results", "",
           "Every number below was measured by experiments/paper.py, one experiment at a time as `make paper-cpu` "
           "runs them (each section names its command, size, machine and time), and is rewritten with the "
           "section when the experiment is rerun.", ""]
  reading_path = docs.parent / "results_reading.md"
  if reading_path.is_file():
    parts += [reading_path.read_text().strip(), ""]
  figures = docs.parent / "figures"
  figures.mkdir(parents=True, exist_ok=True)
  for e in ORDER:
    sec = root / e / "section.md"
    if sec.is_file():
      parts.append(sec.read_text())
      for png in sorted((root / e).glob("*.png")):
        shutil.copyfile(png, figures / png.name)
    else:
      parts += [f"## {TITLES[e]}", "", "Not run yet: `python -m experiments.paper "
                f"--config=experiments/configs/paper.py:{e},cpu --output={root}`.", ""]
  atomic.write_text_atomic(docs, "\n".join(parts))
  return docs
