"""What experiments/report.py writes, as a library: `build(results, out) -> report.md's text` (its plots
written into `out`) and `kind_of(folder)`. The binary only parses flags; tests and other binaries
(experiments.paper, demo) call this module, which defines no flags.
"""

from __future__ import annotations

import json
import math
import pathlib

from data_gen.common import digest

HEADLINE = ("exact_match", "exact_match_old", "efficacy", "logprob_new", "logprob_old",
            "token_accuracy_teacher_forced", "rank")


def kind_of(path: pathlib.Path) -> str | None:
  if (path / "oracle.json").is_file() and (path / "summary.json").is_file():
    return "oracle"
  if (path / "trace.json").is_file():
    return "trace"
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
  return not (metric.startswith("logprob") or metric.startswith("rank") or metric.startswith("forget_quality"))


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


def _signature(path: pathlib.Path) -> str:
  """The run's config without seed fields, as a string: runs with equal signatures differ only in seeds."""
  from behemoth_jax.evaluate import pooling  # pylint: disable=g-import-not-at-top
  try:
    return json.dumps(pooling.seedless_signature(path), sort_keys=True, default=str)
  except (ValueError, OSError):
    return f"unreadable:{path}"


def _edit_units(edits: list) -> list[dict]:
  """One unit per group of edit runs that differ only in seeds: the pooled summary when there are several
  (and their results.jsonl can be pooled), else the run itself."""
  from behemoth_jax.evaluate import pooling  # pylint: disable=g-import-not-at-top
  groups: dict = {}
  for e in edits:
    groups.setdefault(_signature(e["path"]), []).append(e)
  units = []
  for members in groups.values():
    if len(members) > 1:
      try:
        pooled = pooling.pool_runs([m["path"] for m in members])
      except (ValueError, OSError, KeyError):
        pooled = None
      if pooled:
        head = members[0]
        units.append({**head, "summary": pooled, "members": members,
                      "label": f"{head['path'].name} +{len(members) - 1} (pooled over seeds)"})
        continue
    units += [{**m, "members": [m], "label": m["path"].name} for m in members]
  return units


def _point(summary, split, metric):
  v = summary.get(split, {}).get(metric)
  if not v or v.get("after") is None or (isinstance(v["after"], float) and math.isnan(v["after"])):
    return None
  lo, hi = v.get("after_ci") or [v["after"], v["after"]]
  return v["after"], v["after"] - lo, hi - v["after"]


def _oracle_lines(units: list) -> list[str]:
  """Forget quality and retain accuracy per unlearning run, agreement with the oracle per split."""
  fq_rows, agree_rows = [], []
  for u in units:
    s = u["summary"]
    for split, by_metric in s.items():
      if "forget_quality" in by_metric:
        fq = by_metric["forget_quality"]
        keep = [(k, _point(s, k, "exact_match")) for k in ("reg_data", "same_edges_diff_rel", "with_same_rel")]
        old = _point(s, split, "exact_match_old")
        odir = pathlib.Path(fq.get("oracle") or "")
        omode = (json.loads((odir / "oracle.json").read_text()).get("mode", "?")
                 if fq.get("oracle") and (odir / "oracle.json").is_file() else "?")
        fq_rows.append(
            f"| {u['label']} | {u['info'].get('method')} | {omode} | {_fmt(fq.get('before'), False)} | "
            f"{_fmt(fq.get('after'), False)} | {fq.get('n')} | {_fmt(old[0], True) if old else 'n/a'} | " +
            " | ".join(f"{_fmt(p[0], True)} [{_fmt(p[0] - p[1], True)}, {_fmt(p[0] + p[2], True)}]" if p else "n/a"
                       for _, p in keep) + " |")
      if "oracle_agreement" in by_metric:
        a = by_metric["oracle_agreement"]
        agree_rows.append(f"| {u['label']} | {split} | {_fmt(a.get('before'), True)}{_ci(a, 'before', True)} | "
                          f"{_fmt(a.get('after'), True)}{_ci(a, 'after', True)} | {_fmt(a.get('differ'), True)} | "
                          f"{a.get('n')} |")
  lines = []
  if fq_rows:
    lines += ["## Forget quality and retain accuracy against the retrain oracle", "",
              "forget quality (TOFU's): p-value of the two-sample KS test between the per-fact truth ratios "
              "(mean over perturbed answers of P(perturbed)^(1/len) / P(paraphrased answer)^(1/len)) of the "
              "edited facts under the model and under the oracle (remove: retrained without those facts, high = "
              "indistinguishable from never having seen them; remap: retrained with the new values); against the "
              "first oracle seed (summary.json lists every seed's p and, with two seeds, oracle vs oracle); "
              "before = the pretrained model. "
              "Retain: greedy exact match after, on facts that must be kept [95% CI].", "",
              "| run | method | oracle | forget quality before | forget quality after | n | edited facts: old answer "
              "after | retain reg_data | retain same subject, other relationships | retain same relationship |",
              "|---|---|---|---|---|---|---|---|---|---|", *fq_rows, ""]
  if agree_rows:
    lines += ["## Agreement with the retrain oracle", "",
              "Share of facts on which the model's greedy answer equals the oracle's (before: the pretrained "
              "model; differ = 1 - agreement after), per split [95% CI over facts].", "",
              "| run | split | before | after | differ | n |", "|---|---|---|---|---|---|", *agree_rows, ""]
  return lines


def _heatmap(plt, grid, rows, cols, title, path, cmap="viridis", vmin=0.0, vmax=1.0, pct=True, xlabel="",
             ylabel=""):
  import numpy as np  # pylint: disable=g-import-not-at-top
  grid = np.asarray(grid, np.float64)
  fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(cols) + 2.5), max(2.5, 0.4 * len(rows) + 1.5)))
  im = ax.imshow(grid, aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax)
  ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right", fontsize=7)
  ax.set_yticks(range(len(rows)), rows, fontsize=7)
  if pct and grid.size <= 400:
    for (i, j), x in np.ndenumerate(grid):
      if np.isfinite(x):
        ax.text(j, i, f"{100 * x:.0f}", ha="center", va="center", fontsize=6,
                color="w" if x < 0.5 * (vmin + vmax) else "k")
  ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
  fig.colorbar(im)
  _savefig(fig, path)
  plt.close(fig)


def _target_lines(plt, units: list, out: pathlib.Path) -> list[str]:
  """Per-layer and per-block heatmaps: units that differ only in --config.targets (and seeds)."""
  groups: dict = {}
  for u in units:
    text = _signature(u["path"])
    sig = None if text.startswith("unreadable") else json.loads(text)
    if sig is None or "edit.targets" not in sig:
      continue
    sig.pop("edit.targets")
    groups.setdefault(json.dumps(sig, sort_keys=True, default=str), []).append(u)
  lines, index = [], 0
  for members in groups.values():
    targets = [u["config"].get("targets") for u in members]
    if len(set(targets)) < 2:
      continue
    per_layer = [u for u in members if "layer:" in str(u["config"].get("targets"))]
    per_block = [u for u in members if u not in per_layer]
    method = members[0]["info"].get("method")
    for kind, chosen in (("per-layer", per_layer), ("per-block", per_block)):
      if not chosen:
        continue
      splits = []
      for u in chosen:
        splits += [k for k, v in u["summary"].items() if "exact_match" in v and k not in splits]
      grid = [[(_point(u["summary"], k, "exact_match") or (float("nan"),))[0] for u in chosen] for k in splits]
      cols = [str(u["config"].get("targets")) for u in chosen]
      name = f"targets_{kind}_{index}.png"
      _heatmap(plt, grid, splits, cols, f"{kind}: exact match after ({method})", out / name,
               xlabel="edited parameters (--config.targets)", ylabel="split")
      table = ["| targets | runs | efficacy: edited exact match after | locality: reg_data exact match after |",
               "|---|---|---|---|"]
      for u, col in zip(chosen, cols):
        e, l = _point(u["summary"], "edited", "exact_match"), _point(u["summary"], "reg_data", "exact_match")
        cell = lambda p: f"{_fmt(p[0], True)} [{_fmt(p[0] - p[1], True)}, {_fmt(p[0] + p[2], True)}]" if p else "n/a"  # noqa: E731
        table.append(f"| `{col}` | {', '.join(m['path'].name for m in u['members'])} | {cell(e)} | {cell(l)} |")
      lines += [f"### {kind.capitalize()} heatmap ({method}, {len(chosen)} target sets)", "",
                "Greedy exact match after the edit, per evaluation split (rows) and edited parameters (columns; "
                "cells in %): the edited split is efficacy, the others locality.", "", f"![{kind} heatmap]({name})",
                "", *table, ""]
      index += 1
  return lines


def _trace_lines(plt, path: pathlib.Path, i: int, out: pathlib.Path) -> list[str]:
  import numpy as np  # pylint: disable=g-import-not-at-top
  t = json.loads((path / "trace.json").read_text())
  comps = t.get("components", {})
  peak = t.get("mlp_peak") or {}
  lines = [f"## Causal trace `{path.name}`", "",
           f"{t.get('num_probes')} facts of relationship {t.get('relationship')} the model answers (of "
           f"{t.get('num_drawn')} drawn); subject corrupted with noise std {t.get('noise_std', float('nan')):.3g}; "
           f"clean p(answer) {t.get('clean_p', float('nan')):.3f}, corrupted {t.get('corrupted_p', float('nan')):.3f}. "
           "Each cell: mean indirect effect (restored - corrupted probability of the answer) of restoring that "
           f"component's clean output at one layer and position; the subject's last token is position "
           f"{t.get('subject_last_position')}. Traced layer (MLP at the subject's last token): "
           f"{t.get('traced_layer')}; strongest MLP effect: layer {peak.get('layer')}, position {peak.get('position')} "
           f"({peak.get('effect', float('nan')):.3g}).", ""]
  if comps:
    fig, axes = plt.subplots(1, len(comps), figsize=(4 * len(comps), 3), squeeze=False)
    grids = {c: np.asarray(v["mean_indirect_effect"], np.float64) for c, v in comps.items()}
    top = max(float(np.nanmax(g)) for g in grids.values()) if grids else 1.0
    for ax, (c, g) in zip(axes[0], grids.items()):
      im = ax.imshow(g, aspect="auto", cmap="Purples", vmin=min(0.0, float(np.nanmin(g))), vmax=max(top, 1e-9))
      ax.set(title=f"restore {c}", xlabel="position", ylabel="layer")
      fig.colorbar(im, ax=ax)
    name = f"trace_{i}.png"
    _savefig(fig, out / name)
    plt.close(fig)
    lines += [f"![causal trace: layer x position per component]({name})", ""]
  return lines


def build(results: list[pathlib.Path], out: pathlib.Path) -> str:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  out = pathlib.Path(out)
  runs = [(pathlib.Path(p), kind_of(pathlib.Path(p))) for p in results]
  lines = ["# behemoth-jax results", "",
           "Every number: the point estimate, then its percentile bootstrap 95% interval in brackets, and n "
           "(distinct facts). `resampled` says what the bootstrap drew with replacement: edits (independent mode, "
           "each its own delta) or facts (batch/sequential: one delta); runs that differ only in seeds are pooled "
           "and resampled seeds first, then edits or facts within each drawn seed (fewer than 5 seeds: edits or "
           "facts within each seed only, as `resampled` says; the spread between seeds is then not in the "
           "interval). exact_match is greedy decoding "
           "of the whole answer (the headline); token_accuracy_teacher_forced gives partial credit and is not the "
           "headline.", ""]
  edits = []
  for path, kind in runs:
    if kind != "edit":
      continue
    config = json.loads((path / "config.json").read_text()) if (path / "config.json").is_file() else {}
    edits.append({"path": path, "config": config, "info": json.loads((path / "run.json").read_text()),
                  "summary": json.loads((path / "summary.json").read_text())})
  units = _edit_units(edits)
  for n_unit, u in enumerate(units, 1):
    path, config, info = u["path"], u["config"], u["info"]
    described = []
    for m in u["members"]:
      # the hash every row of its results.jsonl carries (config_hash): of the resolved config
      config_hash = digest.json_digest(m["config"], 16) if m["config"] else "?"
      described.append(f"`{m['path'].name}` (seeds: config {m['config'].get('seed')}, edit set "
                       f"{m['config'].get('edit_set_seed')}; config hash {config_hash}; wall "
                       f"{m['info'].get('wall_s', float('nan')):.1f} s on {m['info'].get('device')})")
    title = (f"## Edit runs pooled over {len(u['members'])} seeds: `{path.name}` ..." if len(u["members"]) > 1
             else f"## Edit run `{path.name}`")
    lines += [title, "",
              f"method {info.get('method')}, mode {info.get('mode')}, targets {info.get('targets')}, rank "
              f"{info.get('rank')}, {info.get('num_edits')} edits; " + "; ".join(described), ""]
    lines += summary_tables(u["summary"])
    for m in u["members"]:
      seq = m["path"] / "sequential.jsonl"
      if seq.is_file():
        recs = [json.loads(l) for l in seq.read_text().splitlines() if l.strip()]
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.plot([r["edit"] + 1 for r in recs], [r.get("edits_so_far", float("nan")) for r in recs], marker=".")
        ax.set(xlabel="edits applied", ylabel="exact match of edits so far", ylim=(-0.05, 1.05),
               title=f"sequential editing: {m['path'].name}")
        name = f"sequential_{n_unit}_{m['path'].name}.png"
        _savefig(fig, out / name)
        plt.close(fig)
        lines += [f"![sequential editing]({name})", ""]
  if units:
    lines += _oracle_lines(units)
    # Efficacy against locality: one point per run (or per pooled group).
    fig, ax = plt.subplots(figsize=(5, 4))
    for u in units:
      e, l = _point(u["summary"], "edited", "exact_match"), _point(u["summary"], "reg_data", "exact_match")
      if e and l:
        ax.errorbar(l[0], e[0], xerr=[[l[1]], [l[2]]], yerr=[[e[1]], [e[2]]], fmt="o", capsize=3,
                    label=f"{u['label']} ({u['info'].get('method')})")
    ax.set(xlabel="locality: reg_data exact match after", ylabel="efficacy: edited exact match after",
           xlim=(-0.05, 1.05), ylim=(-0.05, 1.05), title="efficacy against locality (95% CI)")
    ax.legend(fontsize=6)
    _savefig(fig, out / "efficacy_locality.png")
    plt.close(fig)
    lines += ["## Across runs", "", "![efficacy against locality](efficacy_locality.png)", ""]
    lora = sorted(((u["info"].get("rank"), u["summary"]) for u in units
                   if u["info"].get("method") == "lora" and u["info"].get("rank")), key=lambda t: t[0])
    if lora:
      fig, ax = plt.subplots(figsize=(5, 3))
      for split in ("edited", "reg_data"):
        pts = [(r, _point(s, split, "exact_match")) for r, s in lora if _point(s, split, "exact_match")]
        if pts:
          ax.errorbar([r for r, _ in pts], [p[0] for _, p in pts], yerr=[[p[1] for _, p in pts], [p[2] for _, p in pts]],
                      marker="o", capsize=3, label=split)
      ax.set(xscale="log", xlabel="LoRA rank", ylabel="exact match after", ylim=(-0.05, 1.05),
             title="accuracy against LoRA rank (95% CI)")
      ax.legend()
      _savefig(fig, out / "accuracy_rank.png")
      plt.close(fig)
      lines += ["![accuracy against LoRA rank](accuracy_rank.png)", ""]
    lines += _target_lines(plt, units, out)
  for i, (path, kind) in enumerate(runs):
    if kind == "oracle":
      options = json.loads((path / "oracle.json").read_text())
      summary = json.loads((path / "summary.json").read_text())
      lines += [f"## Retrain oracle `{path.name}`", "",
                f"mode {options['mode']} (the edited facts {'removed from' if options['mode'] == 'remove' else 'remapped in'} "
                f"the corpus), training seeds {options['seeds']}, compared model: "
                f"{options.get('unlearned') or 'the pretrained model itself (no edit; edit runs compared with this oracle carry their own forget_quality / oracle_agreement above)'}. "
                "forget_quality (TOFU) = p-value of the two-sample KS test between per-fact truth ratios (mean over "
                "perturbed answers of P(perturbed)^(1/len) / P(paraphrased answer)^(1/len)) under the compared model "
                "and under the oracle (high = indistinguishable from never having seen the facts); "
                "forget_quality_logprob = the same test on per-fact log P(pre-edit answer); `after` = against the "
                "first oracle seed, `before` = the pretrained model.", ""]
      lines += summary_tables(summary)
      fq = [(k, v["forget_quality"]) for k, v in summary.items() if "forget_quality" in v]
      if fq:
        fig, ax = plt.subplots(figsize=(5, 3))
        k, v = fq[0]
        ax.bar(range(len(v["per_seed"])), v["per_seed"], label="compared model")
        ax.bar(range(len(v["per_seed_before"])), v["per_seed_before"], alpha=0.5, label="pretrained")
        ax.axhline(0.05, color="k", lw=0.5)
        if "oracle_vs_oracle" in v:
          ax.axhline(v["oracle_vs_oracle"], color="g", ls="--", lw=0.8, label="oracle vs oracle")
        ax.set(yscale="log", xlabel="oracle seed", ylabel="KS p-value", title=f"forget quality ({k})")
        ax.legend()
        _savefig(fig, out / f"forget_quality_{i}.png")
        plt.close(fig)
        lines += [f"![forget quality](forget_quality_{i}.png)", ""]
    elif kind == "trace":
      lines += _trace_lines(plt, path, i, out)
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
