"""One summary from several edit runs that differ only in their seeds, with two-level bootstrap intervals.

`pool_runs(run_dirs)` reads each run's `results.jsonl` (python -m experiments.edit) and returns the
editing engine's summary keys, split -> metric -> entry, with each entry
  before, after   the pooled weighted mean over every unit of every run (units as below)
  n               distinct facts, summed over the runs (each run's summary `n`)
  units           how many units were resampled, summed over the runs
  before_ci, after_ci   [low, high]: stats.hierarchical_bootstrap_ci (seeds drawn with replacement, then
                  units within each drawn seed), 1000 resamples, 95%; with fewer than
                  stats.MIN_SEEDS_TO_RESAMPLE (5) runs, units within each run only (every run kept once)
  ci_unit         what was resampled: "seed, then edit" (independent mode: one row per edit, weighted by
                  its linked rows, as the engine's own intervals), "seed, then fact" (batch/sequential
                  mode: one row per fact and metric; runs written before per-fact rows hold one row per
                  split, enough for 0/1 metrics), or "seed" (such older runs' continuous metrics: only
                  their per-split mean, so only the runs are resampled; each run weighs by its facts).
                  Fewer than 5 runs: "edit within each seed (2 seeds: too few to resample seeds)" (or
                  fact; "edit (1 seed)" for one run): the spread between seeds is then NOT in the
                  interval, which covers the mean over these seeds' units, not over seeds; with "seed"
                  units there is no level below, so the interval stays over the runs and says
                  "seed (2 seeds: too few for a reliable interval)"
  seeds           per run [graph seed, pretraining seed, edit-set seed, method seed] (`seed_fields`)
  runs            the run directories, in the order given
  per_run_after   each run's own `after`
Ripple metrics conditioned on prerequisites (`<metric>_conditioned`) are only in each run's summary.json,
not in results.jsonl, so they are not pooled.
Runs whose configs differ in anything but seed fields are refused with one line (ValueError).
"""

from __future__ import annotations

import json
import math
import os
import pathlib
from typing import Sequence

import numpy as np

from behemoth_jax.evaluate import stats

RESULTS_FILE, CONFIG_FILE, SUMMARY_FILE = "results.jsonl", "config.json", "summary.json"
SEED_FIELDS = ("graph", "pretraining", "edit_set", "method")
# Edit-config fields that are seeds (or name where a seed lives: the pretrained run, the edit-set folder,
# both compared below without their seeds), or do not change results (the progress bar).
_EDIT_SEED_KEYS = ("seed", "edit_set_seed", "pretrained", "edit_set_dir", "progress")
_PRETRAIN_SEED_KEYS = ("seed", "progress")
BINARY_METRICS = ("exact_match", "exact_match_old", "efficacy")
NUM_RESAMPLES = 1000


def _read_json(path: pathlib.Path):
  try:
    return json.loads(path.read_text())
  except (OSError, ValueError) as e:
    raise ValueError(f"{path.parent}: not a finished edit run ({path.name} unreadable: {e})") from e


def flatten_config(d, prefix: str = "") -> dict:
  """{"a.b.c": leaf} of a nested mapping (a dict or a ConfigDict)."""
  out = {}
  for k, v in d.items():
    if hasattr(v, "items"):
      out.update(flatten_config(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def _edit_set_manifest(config: dict) -> dict | None:
  path = pathlib.Path(config.get("edit_set_dir") or "") / "edit_set.json"
  return json.loads(path.read_text()) if config.get("edit_set_dir") and path.is_file() else None


def _pretrained_config(config: dict) -> dict | None:
  path = pathlib.Path(config.get("pretrained", "")) / CONFIG_FILE
  return json.loads(path.read_text()) if path.is_file() else None


def seedless_signature(run_dir) -> dict:
  """What must be equal for two runs to be pooled: the edit config without its seed fields, the pretrained
  run's config without its seeds (or its path, when unreadable) and the edit set's options without its seed."""
  config = _read_json(pathlib.Path(run_dir) / CONFIG_FILE)
  sig = {f"edit.{k}": v for k, v in flatten_config(config).items() if k.split(".")[0] not in _EDIT_SEED_KEYS}
  pre = _pretrained_config(config)
  if pre is None:
    sig["pretrained"] = config.get("pretrained")
  else:
    sig.update({f"pretrained.{k}": v for k, v in flatten_config(pre).items()
                if k not in _PRETRAIN_SEED_KEYS and k != "data.seed"})
  if config.get("edit_set_dir"):
    manifest = _edit_set_manifest(config)
    if manifest is None:
      sig["edit_set_dir"] = config["edit_set_dir"]
    else:
      # The folder's own options apply (the config's edit_set.* and num_edits are ignored by the engine).
      sig = {k: v for k, v in sig.items() if not (k.startswith("edit.edit_set.") or k == "edit.num_edits")}
      sig.update({f"edit_set_dir.{k}": v for k, v in flatten_config(manifest.get("config", {})).items()})
  return sig


def seeds_of(run_dir) -> list:
  """[graph seed, pretraining seed, edit-set seed, method seed] of one edit run (None where unknown)."""
  config = _read_json(pathlib.Path(run_dir) / CONFIG_FILE)
  pre = _pretrained_config(config) or {}
  manifest = _edit_set_manifest(config)
  edit_set_seed = manifest.get("seed") if manifest else config.get("edit_set_seed")
  return [pre.get("data", {}).get("seed"), pre.get("seed"), edit_set_seed, config.get("seed")]


def _units_of(rows: list[dict], metric: str, field: str, summary_n: int):
  """(values, weights, unit) of one run, split and metric from its result rows."""
  if all(isinstance(r["edit"], int) for r in rows):  # independent: a row per edit, weighted by its rows
    return (np.array([r[field] for r in rows], np.float64), np.array([r["n"] for r in rows], np.float64),
            "edit")
  if all("fact" in r for r in rows):  # batch/sequential: a row per fact (one delta for all of them)
    return np.array([r[field] for r in rows], np.float64), np.ones(len(rows)), "fact"
  (row,) = rows  # batch/sequential runs written before per-fact rows: one row for the whole split
  mean, n = row[field], int(row["n"])
  count = mean * n if math.isfinite(mean) else math.nan
  if metric in BINARY_METRICS and abs(count - round(count)) < 1e-6 * max(n, 1):
    ones = int(round(count))
    return np.r_[np.ones(ones), np.zeros(n - ones)], np.ones(n), "fact"
  return np.array([mean]), np.array([float(summary_n or n)]), None


def ci_unit(unit: str | None, num_seeds: int) -> str:
  """What the pooled interval of `num_seeds` runs resampled, for units `unit` ("edit", "fact" or None:
  one mean per run), as stats.hierarchical_bootstrap_ci does it (see the module docstring)."""
  enough = num_seeds >= stats.MIN_SEEDS_TO_RESAMPLE
  if unit is None:
    return "seed" if enough else f"seed ({num_seeds} seed{'s' if num_seeds > 1 else ''}: too few for a reliable interval)"
  if enough:
    return f"seed, then {unit}"
  return f"{unit} (1 seed)" if num_seeds == 1 else f"{unit} within each seed ({num_seeds} seeds: too few to resample seeds)"


def pool_runs(run_dirs: Sequence[str | os.PathLike]) -> dict:
  """split -> metric -> pooled entry (see the module docstring) over the edit runs in `run_dirs`."""
  dirs = [pathlib.Path(d) for d in run_dirs]
  if not dirs:
    raise ValueError("pool_runs: give at least one edit run directory, got none")
  first = seedless_signature(dirs[0])
  for d in dirs[1:]:
    sig = seedless_signature(d)
    # A field only one run has is one the engine gained between the runs (its default then applied to both).
    differ = sorted(k for k in set(first) & set(sig) if first[k] != sig[k])
    if differ:
      raise ValueError(f"{d}: differs from {dirs[0]} in {', '.join(differ[:6])}{' ...' if len(differ) > 6 else ''}"
                       f" (only seed fields may differ: {', '.join(SEED_FIELDS)})")
  per_run = []  # (summary key, metric) -> rows, per run; and the run's summary
  order: list[tuple[str, str]] = []
  for d in dirs:
    summary = _read_json(d / SUMMARY_FILE)
    try:
      lines = (d / RESULTS_FILE).read_text().splitlines()
    except OSError as e:
      raise ValueError(f"{d}: not a finished edit run ({RESULTS_FILE} unreadable: {e})") from e
    grouped: dict = {}
    primary: dict = {}
    for line in lines:
      if not line.strip():
        continue
      r = json.loads(line)
      # The engine keys a split by its name in the first template it was measured in, else name/template.
      tag = primary.setdefault(r["split"], r["template"])
      key = (r["split"] if tag == r["template"] else f"{r['split']}/{r['template']}", r["metric"])
      if key not in grouped and key not in order:
        order.append(key)
      grouped.setdefault(key, []).append(r)
    per_run.append((grouped, summary))
  seeds = [seeds_of(d) for d in dirs]
  out: dict = {}
  for split, metric in order:
    present = [(g[(split, metric)], s) for g, s in per_run if (split, metric) in g]
    if len(present) != len(dirs):
      continue  # measured in some runs only: nothing to pool
    entry: dict = {}
    n_facts = sum(int(s.get(split, {}).get(metric, {}).get("n", 0)) for _, s in present)
    for field in ("before", "after"):
      parts = [_units_of(rows, metric, field, s.get(split, {}).get(metric, {}).get("n", 0)) for rows, s in present]
      unit = parts[0][2]
      # Only per-run means (unit None): no level below the runs, so the runs are always resampled.
      ci = stats.hierarchical_bootstrap_ci([v for v, _, _ in parts], [w for _, w, _ in parts],
                                           num_resamples=NUM_RESAMPLES, seed=0, min_seeds=1 if unit is None else
                                           stats.MIN_SEEDS_TO_RESAMPLE)
      entry[field], entry[f"{field}_ci"] = ci[0], [ci[1], ci[2]]
      seeds_with_units = sum(bool((np.isfinite(v) & (w > 0)).any()) for v, w, _ in parts)
      entry["ci_unit"] = ci_unit(unit, seeds_with_units)
      entry["units"] = int(sum(v.size for v, _, _ in parts)) if unit else len(parts)
    entry["n"] = n_facts or entry["units"]
    entry["per_run_after"] = [_weighted_nanmean(*_units_of(rows, metric, "after", 0)[:2]) for rows, _ in present]
    entry.update(seeds=seeds, seed_fields=list(SEED_FIELDS), runs=[str(d) for d in dirs])
    out.setdefault(split, {})[metric] = entry
  return out


def _weighted_nanmean(v: np.ndarray, w: np.ndarray) -> float:
  keep = np.isfinite(v) & (w > 0)
  return float((v[keep] * w[keep]).sum() / w[keep].sum()) if keep.any() else math.nan
