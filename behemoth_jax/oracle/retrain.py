"""The retrain oracle: the model retrained from scratch on the edited world, and what it says about an edit.

`run(pretrained_dir, edits_dir, workdir, mode, seeds, steps, unlearned_dir)` (what `python -m
experiments.oracle` calls; never reads flags):
  O/oracle.json      the options (a rerun with others is refused; the same ones resume; the compared run
                     is not one of them: one oracle serves every unlearned/edited run of its edit set)
  O/data/            the edited dataset (data_gen.edit_sets.edited_graph: facts remapped or removed), native form
  O/seed_<s>/        one pretraining work dir per training seed: W's pretraining config with data.dir = O/data
                     and seed = s (total_steps = `steps` when > 0), so it resumes like any pretraining run
  O/summary.json     the pretrained model W itself against the oracle (`before` = `after`: no edit), keyed
                     like the editing engine's summary (split, or split/template for a second template):
                     split -> metric -> {"after", "before", "n", ...}:
    forget_quality   (the forget set = the edited/censored split) TOFU's definition: the p-value of the
                     two-sample KS test between the per-fact log-probabilities of the pre-edit answer under
                     the compared model (`after`; `before`: the pretrained model itself) and under the
                     oracle; one p-value per oracle seed (`per_seed`), `after` their median
    oracle_agreement share of facts on which the greedy answer (decoded token by token) of the compared model
                     equals the oracle's (`after`; `before`: the pretrained model's), per split, with a
                     bootstrap CI over facts; `differ` = 1 - agreement
    oracle_exact_match_old / oracle_exact_match   the oracle's own accuracy on the pre-/post-edit answers
                     (removed facts: chance is 1 / number of values, `chance`)
  With `unlearned_dir` (an edit work dir in batch or sequential mode on the same pretrained run and edit
  set: an unlearning run against a remove oracle, an edit against a remap oracle), its delta is the compared
  model and its forget_quality / oracle_agreement entries are also written into unlearned_dir/summary.json
  under those metric names per split (atomically, every existing key kept; a rerun writes the same bytes).
"""

from __future__ import annotations

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from behemoth_jax.edit import edit_rows, modes
from behemoth_jax.evaluate import edit_metrics, stats
from behemoth_jax.model import deltas, model
from behemoth_jax.train import pretrained
from data_gen.common import atomic
from data_gen.edit_sets.edit_files import EDIT_SPLIT_NAMES, load_edit_set
from data_gen.edit_sets.edited_graph import MODES, edited_dataset, edited_facts

ORACLE_FILE = "oracle.json"
SUMMARY_FILE = "summary.json"
COMPARED_METRICS = ("forget_quality", "oracle_agreement")  # what goes into the compared run's summary


def _fail(option: str, message: str):
  raise ValueError(f"--{option}: {message}")


def _unlearned_delta_dir(path: pathlib.Path) -> pathlib.Path | None:
  for name in ("batch", "composed"):  # one delta for every fact: batch or sequential mode
    if (path / "deltas" / name).is_dir():
      return path / "deltas" / name
  return None


def _check_compared_layout(u: pathlib.Path) -> None:
  """The compared edit run must be finished and hold one delta (checked before any model is loaded)."""
  if not u.is_dir() or _unlearned_delta_dir(u) is None:
    _fail("unlearned", f"{u} is not an edit work dir with deltas/batch or deltas/composed (run python -m "
          "experiments.edit in batch or sequential mode with save_deltas)")
  if not (u / SUMMARY_FILE).is_file() or not (u / "config.json").is_file():
    _fail("unlearned", f"{u} is not a finished edit run (no summary.json / config.json)")


def _check_compared_run(u: pathlib.Path, pretrained_dir: pathlib.Path, ds, edit_set, mode: str) -> None:
  """The compared edit run must edit this pretrained run's facts of this edit set (else its forget quality
  would measure something else): the same (subject, relationship) pairs, and under remap the same new values
  (a refusal or unlearning run of those facts compares with a remove oracle whatever its `after`)."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  from behemoth_jax.edit import runner  # pylint: disable=g-import-not-at-top
  config = json.loads((u / "config.json").read_text())
  if pathlib.Path(config.get("pretrained", "")).absolute() != pretrained_dir.absolute():
    _fail("unlearned", f"{u} edited {config.get('pretrained')}, not --pretrained={pretrained_dir}")
  try:
    theirs = edited_facts(runner.edit_set_of(ml_collections.ConfigDict(config), ds))
  except ValueError as e:
    _fail("unlearned", f"{u}: its edit set cannot be rebuilt ({e})")
  ours = edited_facts(edit_set)
  compared = 3 if mode == "remap" else 2
  if any(a.shape != b.shape or (a != b).any() for a, b in zip(theirs[:compared], ours[:compared])):
    _fail("unlearned", f"{u} edited other facts than --edits (use the same edit set: its "
          "--config.edit_set_dir=the --edits folder)")


def summary_keys(evals) -> dict:
  """EvalSplit.key -> the editing engine's summary key: the split's name in the first template it is
  measured in, `<name>/<template>` in any other (edit/runner.py keys its summary.json so)."""
  primary, out = {}, {}
  for s in evals:
    first = primary.setdefault(s.name, s.key)
    out[s.key] = s.name if first == s.key else s.key
  return out


def merge_into_summary(path: pathlib.Path, compared: dict, oracle_dir) -> dict:
  """Adds forget_quality / oracle_agreement of `compared` (engine keys) to the summary.json at `path`,
  keeping every other key; the entries name the oracle. Atomic; the same inputs write the same bytes."""
  summary = json.loads(path.read_text())
  for split, by_metric in compared.items():
    for metric in COMPARED_METRICS:
      if metric in by_metric:
        summary.setdefault(split, {})[metric] = {**by_metric[metric], "oracle": str(pathlib.Path(oracle_dir).absolute())}
  atomic.write_json_atomic(path, summary, allow_nan=True)
  return summary


def validate(pretrained_dir, edits_dir, workdir, mode, seeds, steps, unlearned_dir):
  """Every check before anything is written; returns (pretrained config, dataset, edit set)."""
  if mode not in MODES:
    _fail("mode", f"must be one of {', '.join(MODES)}, got {mode!r}")
  if not seeds or any(int(s) != s or s < 0 for s in seeds):
    _fail("seeds", f"must be comma-separated integers >= 0, got {list(seeds)}")
  if int(steps) != steps or steps < 0:
    _fail("steps", f"must be an integer >= 0 (0: the pretrained run's total_steps), got {steps}")
  if unlearned_dir:
    _check_compared_layout(pathlib.Path(unlearned_dir))
  w = pathlib.Path(pretrained_dir)
  if not w.is_dir():
    _fail("pretrained", f"{w} is not a directory (a pretraining work dir is needed)")
  try:
    config = pretrained.read_config(w)
    if pretrained.latest_step(w) is None:
      raise pretrained.PretrainedError(f"{w} has no checkpoint (train it first: python -m experiments.pretrain)")
    from behemoth_jax.train import pretraining  # pylint: disable=g-import-not-at-top
    ds = pretraining.load_dataset(config)
  except (pretrained.PretrainedError, ValueError, KeyError) as e:
    _fail("pretrained", str(e).replace("--config.", "config."))
  e = pathlib.Path(edits_dir)
  if not (e / "edit_set.json").is_file():
    _fail("edits", f"{e} is not an edit-set folder (no edit_set.json; write one with python -m data_gen.make_edits)")
  edit_set = load_edit_set(e)
  try:
    edit_rows.check_matches_graph(edit_set, ds.graph)
    edited_facts(edit_set)
    edited_dataset(ds, edit_set, mode)
  except ValueError as err:
    _fail("edits", str(err))
  if unlearned_dir:
    _check_compared_run(pathlib.Path(unlearned_dir), w, ds, edit_set, mode)
  o = pathlib.Path(workdir)
  if o.exists():
    if not o.is_dir():
      _fail("workdir", f"{o} is a file, not a folder")
    old = o / ORACLE_FILE
    if any(o.iterdir()) and not old.is_file():
      _fail("workdir", f"{o} is a non-empty folder that holds no oracle run; choose a new work dir")
  return config, ds, edit_set


def _greedy(cfg, A: int):
  """Greedy decoding of A tokens (token by token, each from the model's own previous tokens)."""

  def decode(params, delta, prompt_NxP):
    P_ = prompt_NxP.shape[1]
    gen = prompt_NxP
    for k in range(A):
      pos = jnp.full((prompt_NxP.shape[0], 1), P_ + k - 1, jnp.int32)
      logits = model.apply(params, gen, cfg, delta=delta, head_positions=pos, prune_to_head=True).logits[:, 0]
      gen = jnp.concatenate([gen, jnp.argmax(logits, -1).astype(gen.dtype)[:, None]], 1)
    return gen[:, P_:]

  return jax.jit(decode)


def _decode_all(fn, params, delta, prompt, A, chunk=1024):
  out = [np.asarray(fn(params, delta, jnp.asarray(prompt[i:i + chunk]))) for i in range(0, len(prompt), chunk)]
  return np.concatenate(out) if out else np.zeros((0, A), np.int32)


def evaluate(cfg, oracle_params: list, params, delta, evals, candidates, seed: int = 0,
             compiled: dict | None = None) -> dict:
  """summary entries (see the module docstring) from loaded models; `delta` is the edited/unlearned one.
  `compiled`: a dict that keeps the jitted evaluator and decoders for a later call (empty at first)."""
  compiled = {} if compiled is None else compiled
  if "evaluator" not in compiled:
    compiled["evaluator"] = modes.Evaluator(cfg, candidates=candidates)
  ev = compiled["evaluator"]
  summary = {}
  forget = next((s for s in evals if s.name in EDIT_SPLIT_NAMES), None)
  keys = summary_keys(evals)
  decoders = compiled.setdefault("decoders", {})
  for s in evals:
    if not len(s):
      continue
    entry = summary.setdefault(keys[s.key], {})
    edited_scores = ev.scores(params, delta, s)
    base_scores = ev.scores(params, None, s)
    oracle_scores = [ev.scores(p, None, s) for p in oracle_params]
    for name, metric in (("oracle_exact_match", "exact_match"), ("oracle_exact_match_old", "exact_match_old")):
      vals = np.mean([o[metric] for o in oracle_scores], 0)
      entry[name] = {"after": float(vals.mean()), "after_ci": list(stats.bootstrap_ci(vals, seed=seed)),
                     "n": len(s), "ci_unit": "fact"}
    if s is forget:
      pv = [stats.ks_2samp(edited_scores["logprob_old"], o["logprob_old"]) for o in oracle_scores]
      pb = [stats.ks_2samp(base_scores["logprob_old"], o["logprob_old"]) for o in oracle_scores]
      entry["forget_quality"] = {
          "after": float(np.median([r.pvalue for r in pv])), "before": float(np.median([r.pvalue for r in pb])),
          "per_seed": [r.pvalue for r in pv], "per_seed_before": [r.pvalue for r in pb],
          "ks_statistic": [r.statistic for r in pv], "method": pv[0].method, "n": len(s),
          "statistic": "per-fact log-probability of the pre-edit answer"}
    prompt, answer = s.probes["exact_match"]
    A = answer.shape[1]
    if A not in decoders:  # one jitted decoder per answer length, compiled once for every model
      decoders[A] = _greedy(cfg, A)
    fn = decoders[A]
    mine = _decode_all(fn, params, delta, prompt, A)
    base = _decode_all(fn, params, None, prompt, A)
    oracle_answers = [_decode_all(fn, p, None, prompt, A) for p in oracle_params]
    agree = [np.all(mine == o, 1) for o in oracle_answers]
    agree_base = [np.all(base == o, 1) for o in oracle_answers]
    a, b = np.mean(agree, 0), np.mean(agree_base, 0)
    entry["oracle_agreement"] = {"after": float(a.mean()), "before": float(b.mean()), "differ": float(1 - a.mean()),
                                 "after_ci": list(stats.bootstrap_ci(a, seed=seed)),
                                 "before_ci": list(stats.bootstrap_ci(b, seed=seed)), "n": len(s),
                                 "ci_unit": "fact"}
  return summary


def run(pretrained_dir, edits_dir, workdir, mode: str = "remove", seeds=(0,), steps: int = 0,
        unlearned_dir=None, progress: bool = False) -> dict:
  """Trains (or resumes) the oracle; returns O/summary.json's content, or with `unlearned_dir` the compared
  run's entries (also merged into its summary.json)."""
  config, ds, edit_set = validate(pretrained_dir, edits_dir, workdir, mode, list(seeds), steps, unlearned_dir)
  options = {"pretrained": str(pathlib.Path(pretrained_dir).absolute()),
             "edits": str(pathlib.Path(edits_dir).absolute()), "mode": mode, "seeds": list(seeds),
             "steps": steps}
  o = pathlib.Path(workdir)
  if (o / ORACLE_FILE).is_file():
    old = json.loads((o / ORACLE_FILE).read_text())
    old.pop("unlearned", None)  # written by earlier versions; not an option of the oracle itself
    if old != options:
      _fail("workdir", f"{o} holds an oracle run with other options; choose a new work dir")
  o.mkdir(parents=True, exist_ok=True)
  if (o / SUMMARY_FILE).is_file() and not unlearned_dir:
    return json.loads((o / SUMMARY_FILE).read_text())
  if not (o / ORACLE_FILE).is_file():
    atomic.write_json_atomic(o / ORACLE_FILE, options)
  if not (o / "data").is_dir():
    with atomic.atomic_directory(o / "data", option="workdir") as tmp:
      edited_dataset(ds, edit_set, mode).save_native(tmp)
  from behemoth_jax.train import pretraining  # pylint: disable=g-import-not-at-top
  oracle_params = []
  cfg = pretrained.model_config_of(pretrained_dir, config)
  for s in seeds:
    c = pretrained.read_config(pretrained_dir)
    c.data.dir, c.data.corpus_dir, c.seed, c.progress = str((o / "data").absolute()), "", int(s), progress
    if steps:
      c.total_steps = int(steps)
      c.eval_every = min(c.eval_every, c.total_steps)
      c.checkpoint_every = min(c.checkpoint_every, c.total_steps)
    pretraining.run(c, o / f"seed_{s}")  # a finished seed returns at once
    oracle_params.append(pretrained.load_params(o / f"seed_{s}", cfg))
  params = pretrained.load_params(pretrained_dir, cfg)
  evals = edit_rows.eval_splits(edit_set, ds)
  candidates = edit_metrics.split_candidates(edit_set, ds)
  compiled = {}
  if not (o / SUMMARY_FILE).is_file():
    summary = evaluate(cfg, oracle_params, params, None, evals, candidates, compiled=compiled)
    atomic.write_json_atomic(o / SUMMARY_FILE, summary, allow_nan=True)
  if not unlearned_dir:
    return json.loads((o / SUMMARY_FILE).read_text())
  u = pathlib.Path(unlearned_dir)
  compared = evaluate(cfg, oracle_params, params, deltas.load(_unlearned_delta_dir(u)), evals, candidates,
                      compiled=compiled)
  compared = {split: {m: v for m, v in by_metric.items() if m in COMPARED_METRICS}
              for split, by_metric in compared.items()}
  merge_into_summary(u / SUMMARY_FILE, compared, o)
  return compared
