"""The retrain oracle: the model retrained from scratch on the edited world, and what it says about an edit.

`run(pretrained_dir, edits_dir, workdir, mode, seeds, steps, unlearned_dir)` (what `python -m
experiments.oracle` calls; never reads flags):
  O/oracle.json      the options (a rerun with others is refused; the same ones resume; the compared run
                     is not one of them: one oracle serves every unlearned/edited run of its edit set)
  O/data/            the edited dataset (data_gen.edit_sets.edited_graph: facts remapped or removed), native form
  O/seed_<s>/        one pretraining work dir per training seed: W's pretraining config with data.dir = O/data
                     and seed = s, so it resumes like any pretraining run. It trains exactly the steps W
                     trained (W's latest checkpoint: an early-stopped W trained fewer than its total_steps;
                     `steps` > 0 overrides the count), on W's learning-rate schedule (total_steps of W's
                     config), early stop off: a model that never saw the removed facts cannot reach W's
                     accuracy target and would otherwise train the whole schedule
  O/run.json         pretrained_steps (W's latest checkpoint), pretrained_total_steps, pretrained_reached_target
                     (W's summary.json; null if absent), oracle_steps (each seed's), steps_option,
                     lr_schedule_total_steps, early_stop (false), trained_steps (seed -> its latest checkpoint)
  O/summary.json     the pretrained model W itself against the oracle (`before` = `after`: no edit), keyed
                     like the editing engine's summary (split, or split/template for a second template):
                     split -> metric -> {"after", "before", "n", "definition", ...}:
    forget_quality   (the forget set = the edited/censored split) TOFU's definition: the p-value of the
                     two-sample KS test between the per-fact truth ratios under the compared model and under
                     the oracle. Truth ratio of a fact (`truth_ratios`) = mean over its perturbed answers of
                     P(perturbed)^(1/len) / P(paraphrased answer)^(1/len): the paraphrase is the pre-edit
                     answer in another form of the fact (`paraphrase_template`: the corpus' question form
                     where it has one, else its inverted form, else the split's own), the perturbed answers
                     are up to NUM_PERTURBED other values of the relationship in that form
                     (`perturbed_values`). The KS test is run on log R (the same p as on R)
    forget_quality_logprob   the same KS test on the per-fact log-probability of the pre-edit answer (teacher-
                     forced, the split's own form): the earlier `forget_quality`
                     Both: `after` = the p-value against the first oracle seed (`before`: the pretrained model
                     against it), `per_seed` / `per_seed_before` one p per oracle seed (`oracle_seeds`),
                     and with >= 2 seeds `oracle_vs_oracle` = the p between the first two seeds' statistics
                     (`oracle_vs_oracle_seeds`): what "indistinguishable" gives here. No median over seeds
                     (a median of p-values is not a p-value)
    oracle_agreement share of facts on which the greedy answer (decoded token by token) of the compared model
                     equals the oracle's (`after`; `before`: the pretrained model's), per split, with a
                     bootstrap CI over facts; `differ` = 1 - agreement
    oracle_exact_match_old / oracle_exact_match   the oracle's own accuracy on the pre-/post-edit answers
                     (removed facts: chance is 1 / number of values, `chance`)
  With `unlearned_dir` (an edit work dir in batch or sequential mode on the same pretrained run and edit
  set: an unlearning run against a remove oracle, an edit against a remap oracle), its delta is the compared
  model and its forget_quality / forget_quality_logprob / oracle_agreement entries are also written into
  unlearned_dir/summary.json under those metric names per split (atomically, every existing key kept; a rerun writes the same bytes).
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
from behemoth_jax.train import pretrained, pretraining
from data_gen.common import atomic
from data_gen.edit_sets.edit_files import EDIT_SPLIT_NAMES, load_edit_set
from data_gen.edit_sets.edited_graph import MODES, edited_dataset, edited_facts

ORACLE_FILE = "oracle.json"
SUMMARY_FILE = "summary.json"
COMPARED_METRICS = ("forget_quality", "forget_quality_logprob", "oracle_agreement")  # into the compared run's summary
RUN_FILE = "run.json"
NUM_PERTURBED = 5  # perturbed answers per fact in the truth ratio (fewer when the relationship has fewer values)
DEFINITIONS = {
    "forget_quality": "TOFU forget quality: KS-test p-value between the per-fact truth ratios (mean over perturbed "
                      "answers of P(perturbed)^(1/len) / P(paraphrased answer)^(1/len)) under the compared model "
                      "and under the retrain oracle; high = indistinguishable from never having seen the facts",
    "forget_quality_logprob": "KS-test p-value between the per-fact log P(pre-edit answer) (teacher-forced) under "
                              "the compared model and under the retrain oracle",
}


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
  """Adds forget_quality(_logprob) / oracle_agreement of `compared` (engine keys) to the summary.json at `path`,
  keeping every other key; the entries name the oracle. Atomic; the same inputs write the same bytes."""
  summary = json.loads(path.read_text())
  for split, by_metric in compared.items():
    for metric in COMPARED_METRICS:
      if metric in by_metric:
        summary.setdefault(split, {})[metric] = {**by_metric[metric], "oracle": str(pathlib.Path(oracle_dir).absolute())}
  atomic.write_json_atomic(path, summary, allow_nan=True)
  return summary


def truth_ratios(logprob_perturbed_NxK, len_perturbed, logprob_para_N, len_para) -> np.ndarray:
  """TOFU's truth ratio per fact: mean_k P(perturbed_k)^(1/len_perturbed) / P(paraphrase)^(1/len_para), from
  summed log-probabilities (computed in log space: log-mean-exp of the per-token log-probabilities)."""
  lp = np.asarray(logprob_perturbed_NxK, np.float64) / np.asarray(len_perturbed, np.float64)
  top = lp.max(-1)
  log_mean = top + np.log(np.mean(np.exp(lp - top[:, None]), -1))
  return np.exp(log_mean - np.asarray(logprob_para_N, np.float64) / np.asarray(len_para, np.float64))


def perturbed_values(before_N, counts_N, k: int = NUM_PERTURBED) -> np.ndarray:
  """int[N, K], K = min(k, min(counts) - 1): other values of each fact's relationship, spread evenly over the
  value ids after the fact's own (offsets 1 + floor(j (count - 1) / K), j < K): distinct, never the fact's
  value, deterministic."""
  before_N, counts_N = np.asarray(before_N, np.int64), np.asarray(counts_N, np.int64)
  K = int(min(k, counts_N.min() - 1)) if len(counts_N) else 0
  if K < 1:
    raise ValueError("a truth ratio needs relationships with at least 2 values")
  offsets = 1 + (np.arange(K)[None, :] * (counts_N[:, None] - 1)) // K
  return (before_N[:, None] + offsets) % counts_N[:, None]


def paraphrase_template(dataset, template: str) -> str:
  """The form of the paraphrase: the corpus' question form if it holds questions, else its inverted form
  if it holds one, else the split's own answering form (the only form its facts were stated in)."""
  from data_gen.edit_sets import edits as edits_lib  # pylint: disable=g-import-not-at-top
  corpus = dataset.corpus
  if dataset.tables.layout.questions:
    return edits_lib.PRETRAINING_QUESTION
  if corpus.phrase_creator == "inverted" and corpus.inversion_frac > 0:
    return edits_lib.INVERTED_PROBE
  return edit_rows.answering_template(template)


def truth_ratio_probes(split, dataset, k: int = NUM_PERTURBED) -> dict:
  """The rows a truth ratio scores for an EditSplit's facts, in one array: (prompt [(K + 1) N, P], answer
  [(K + 1) N, A]), the paraphrase first (N rows), then perturbed value j of every fact (rows N (j + 1)...);
  plus `template`, `values` [N, K] and `k`."""
  import dataclasses  # pylint: disable=g-import-not-at-top
  from data_gen.world.corpus import SUBJECT_OBJECT  # pylint: disable=g-import-not-at-top
  vocab = dataset.vocab
  block = vocab.objects if split.kind == SUBJECT_OBJECT else vocab.nested_objects
  counts = np.array([block(int(r)).count for r in split.relationship], np.int64)
  values = perturbed_values(split.before, counts, k)
  own = edit_rows.answering_template(split.template)
  template = paraphrase_template(dataset, split.template)
  try:
    para = split.tokens(dataset, template=template, answer="before")
  except ValueError:  # a form these facts cannot be rendered in (e.g. nested facts): the split's own
    template = own
    para = split.tokens(dataset, template=template, answer="before")
  parts = [para] + [dataclasses.replace(split, before=values[:, j]).tokens(dataset, template=template, answer="before")
                    for j in range(values.shape[1])]
  return {"prompt": np.concatenate([p for p, _ in parts]), "answer": np.concatenate([a for _, a in parts]),
          "template": template, "values": values, "k": values.shape[1]}


def ks_entry(compared, base, oracles: list, seeds: list) -> dict:
  """KS p-values of one per-fact statistic: the compared model (`after`) and the pretrained one (`before`)
  against each oracle seed, and the first two oracle seeds against each other."""
  pv = [stats.ks_2samp(compared, o) for o in oracles]
  pb = [stats.ks_2samp(base, o) for o in oracles]
  e = {"after": pv[0].pvalue, "before": pb[0].pvalue, "per_seed": [r.pvalue for r in pv],
       "per_seed_before": [r.pvalue for r in pb], "oracle_seeds": [int(s) for s in seeds],
       "ks_statistic": [r.statistic for r in pv], "method": pv[0].method, "n": int(np.size(compared))}
  if len(oracles) >= 2:
    r = stats.ks_2samp(oracles[0], oracles[1])
    e["oracle_vs_oracle"], e["oracle_vs_oracle_seeds"] = r.pvalue, [int(s) for s in seeds[:2]]
  return e


def validate(pretrained_dir, edits_dir, workdir, mode, seeds, steps, unlearned_dir):
  """Every check before anything is written; returns (pretrained config, dataset, edit set)."""
  if mode not in MODES:
    _fail("mode", f"must be one of {', '.join(MODES)}, got {mode!r}")
  if not seeds or any(int(s) != s or s < 0 for s in seeds):
    _fail("seeds", f"must be comma-separated integers >= 0, got {list(seeds)}")
  if int(steps) != steps or steps < 0:
    _fail("steps", f"must be an integer >= 0 (0: the steps the pretrained run trained), got {steps}")
  if unlearned_dir:
    _check_compared_layout(pathlib.Path(unlearned_dir))
  w = pathlib.Path(pretrained_dir)
  if not w.is_dir():
    _fail("pretrained", f"{w} is not a directory (a pretraining work dir is needed)")
  try:
    config = pretrained.read_config(w)
    if pretrained.latest_step(w) is None:
      raise pretrained.PretrainedError(f"{w} has no checkpoint (train it first: python -m experiments.pretrain)")
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


def _truth_ratios_of(score, params, delta, probes: dict) -> np.ndarray:
  """Per-fact truth ratios of one model from the rows of `truth_ratio_probes`."""
  lp = np.asarray(score(params, delta, jnp.asarray(probes["prompt"]), jnp.asarray(probes["answer"]))["logprob"])
  lp = lp.reshape(probes["k"] + 1, -1)  # [1 + K, N]: the paraphrase, then each perturbed value
  A = probes["answer"].shape[1]  # every row of a split's form has the same answer length
  return truth_ratios(lp[1:].T, A, lp[0], A)


def evaluate(cfg, oracle_params: list, params, delta, evals, candidates, seed: int = 0,
             compiled: dict | None = None, truth_probes: dict | None = None, oracle_seeds=None) -> dict:
  """summary entries (see the module docstring) from loaded models; `delta` is the edited/unlearned one.
  `compiled`: a dict that keeps the jitted evaluator and decoders for a later call (empty at first).
  `truth_probes`: truth_ratio_probes of the forget split (None: no forget_quality, only its _logprob form).
  `oracle_seeds`: the seeds of `oracle_params` (default 0, 1, ...)."""
  compiled = {} if compiled is None else compiled
  oracle_seeds = list(range(len(oracle_params))) if oracle_seeds is None else list(oracle_seeds)
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
      entry["forget_quality_logprob"] = {
          **ks_entry(edited_scores["logprob_old"], base_scores["logprob_old"],
                     [o["logprob_old"] for o in oracle_scores], oracle_seeds),
          "statistic": "per-fact log-probability of the pre-edit answer",
          "definition": DEFINITIONS["forget_quality_logprob"]}
      if truth_probes is not None:
        if "score" not in compiled:
          compiled["score"] = edit_metrics.make_all_facts_scores(cfg, chunk=1024)
        tr = lambda p, d: _truth_ratios_of(compiled["score"], p, d, truth_probes)  # noqa: E731
        ratios = tr(params, delta)
        entry["forget_quality"] = {
            **ks_entry(ratios, tr(params, None), [tr(p, None) for p in oracle_params], oracle_seeds),
            "statistic": "per-fact truth ratio (TOFU)", "paraphrase_template": truth_probes["template"],
            "perturbed": int(truth_probes["k"]), "truth_ratio_median": float(np.median(ratios)),
            "definition": DEFINITIONS["forget_quality"]}
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


def training_plan(pretrained_dir, config, steps: int) -> dict:
  """What each oracle seed trains (O/run.json): the steps W trained (its latest checkpoint, the model that is
  compared) unless `steps` > 0, on W's learning-rate schedule (its config's total_steps), no early stop."""
  w = pathlib.Path(pretrained_dir)
  done = json.loads((w / pretraining.SUMMARY_FILE).read_text()) if (w / pretraining.SUMMARY_FILE).is_file() else {}
  pre = pretrained.latest_step(w)
  return {"pretrained_steps": pre, "pretrained_total_steps": int(config.total_steps),
          "pretrained_reached_target": done.get("reached_target"), "steps_option": int(steps),
          "oracle_steps": int(steps) or pre, "lr_schedule_total_steps": int(config.total_steps), "early_stop": False}


def _summary_is_current(path: pathlib.Path) -> bool:
  """O/summary.json exists and was written by this version (its forget-quality entries carry definitions)."""
  if not path.is_file():
    return False
  summary = json.loads(path.read_text())
  return all("definition" in by_metric[m] for by_metric in summary.values()
             for m in ("forget_quality", "forget_quality_logprob") if m in by_metric) and \
      not any("forget_quality" in v and "forget_quality_logprob" not in v for v in summary.values())


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
  if _summary_is_current(o / SUMMARY_FILE) and (o / RUN_FILE).is_file() and not unlearned_dir:
    return json.loads((o / SUMMARY_FILE).read_text())
  if not (o / ORACLE_FILE).is_file():
    atomic.write_json_atomic(o / ORACLE_FILE, options)
  if not (o / "data").is_dir():
    with atomic.atomic_directory(o / "data", option="workdir") as tmp:
      edited_dataset(ds, edit_set, mode).save_native(tmp)
  plan = training_plan(pretrained_dir, config, steps)
  oracle_params, trained = [], {}
  cfg = pretrained.model_config_of(pretrained_dir, config)
  for s in seeds:
    c = pretrained.read_config(pretrained_dir)
    c.data.dir, c.data.corpus_dir, c.seed, c.progress = str((o / "data").absolute()), "", int(s), progress
    c.total_steps, c.target_accuracy = plan["oracle_steps"], 0.0  # exactly these steps: no early stop
    c.eval_every = min(c.eval_every, c.total_steps)
    c.checkpoint_every = min(c.checkpoint_every, c.total_steps)
    with c.unlocked():  # a pretrained run's config.json from before the field existed
      c.schedule_steps = plan["lr_schedule_total_steps"]  # the pretrained run's schedule, stopped at its steps
    pretraining.run(c, o / f"seed_{s}")  # a finished seed returns at once
    trained[str(s)] = pretrained.latest_step(o / f"seed_{s}")
    if trained[str(s)] != plan["oracle_steps"]:
      _fail("workdir", f"{o / f'seed_{s}'} holds an oracle trained {trained[str(s)]} steps, not the "
            f"{plan['oracle_steps']} this run trains (an earlier version's oracle); choose a new work dir")
    oracle_params.append(pretrained.load_params(o / f"seed_{s}", cfg))
  atomic.write_json_atomic(o / RUN_FILE, {**plan, "trained_steps": trained})
  params = pretrained.load_params(pretrained_dir, cfg)
  evals = edit_rows.eval_splits(edit_set, ds)
  candidates = edit_metrics.split_candidates(edit_set, ds)
  forget = next((e for e in edit_set.eval if e.name in EDIT_SPLIT_NAMES), None)  # evaluate's forget split
  truth = truth_ratio_probes(forget, ds) if forget is not None and len(forget) else None
  compiled = {}
  if not _summary_is_current(o / SUMMARY_FILE):
    summary = evaluate(cfg, oracle_params, params, None, evals, candidates, compiled=compiled, truth_probes=truth,
                       oracle_seeds=seeds)
    atomic.write_json_atomic(o / SUMMARY_FILE, summary, allow_nan=True)
  if not unlearned_dir:
    return json.loads((o / SUMMARY_FILE).read_text())
  u = pathlib.Path(unlearned_dir)
  compared = evaluate(cfg, oracle_params, params, deltas.load(_unlearned_delta_dir(u)), evals, candidates,
                      compiled=compiled, truth_probes=truth, oracle_seeds=seeds)
  compared = {split: {m: v for m, v in by_metric.items() if m in COMPARED_METRICS}
              for split, by_metric in compared.items()}
  merge_into_summary(u / SUMMARY_FILE, compared, o)
  return compared
