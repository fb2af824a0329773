"""One edit run in a work dir: what `python -m experiments.edit` calls (never reads flags).

`run(config, pretrained_dir, workdir)` checks every option, loads the pretrained model and the edit set,
runs the configured mode (`modes.py`) and writes:
  W/config.json      the resolved config (a rerun with another config is refused)
  W/deltas/          orbax deltas: independent mode one per chunk (leading axis = edits of the chunk),
                     batch mode `batch/` (plus W/checkpoints/ of the loop), sequential mode `composed/`
  W/chunks/          independent mode: each finished chunk's measurements (a rerun skips them)
  W/results.jsonl    one row per edit, split, template and metric: value before and after the edit
  W/summary.json     split name -> metric -> {"before", "after", "n", "before_ci", "after_ci", "ci_unit"}:
                     percentile bootstrap 95% intervals (1000 resamples, seeded by config.seed) over edits
                     (independent mode, each edit weighted by its linked rows) or facts (batch, sequential)
  W/run.json         mode, method, targets, timings (edits per second) and the device
An interrupted independent run resumes at its first unfinished chunk; a batch run from its last
checkpoint; results.jsonl and summary.json appear only when everything is measured.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import pathlib
import time

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from behemoth_jax.edit import closed_form, contexts, covariance, edit_rows, methods, modes
from behemoth_jax.evaluate import edit_metrics, stats
from behemoth_jax.model import deltas
from behemoth_jax.train import checkpoint, loop, metrics_log, pretrained
from data_gen.common import atomic, digest, progress
from data_gen.common.errors import OptionError
from data_gen.edit_sets.edit_files import load_edit_set
from data_gen.edit_sets.edits import TEMPLATE_TAG, EditConfig, build_edit_set

CONFIG_FILE = "config.json"
RESULTS_FILE = "results.jsonl"
SUMMARY_FILE = "summary.json"
RUN_FILE = "run.json"


def _need(ok: bool, option: str, message: str) -> None:
  if not ok:
    raise ValueError(f"--config.{option}: {message}")


def hparams(config) -> methods.EditHParams:
  fields = {f.name for f in dataclasses.fields(methods.EditHParams)}
  hp = methods.EditHParams(**{k: config[k] for k in fields})
  hp.validate()
  return hp


def validate(config) -> None:
  hparams(config)
  _need(int(config.solve_memory_bytes) == config.solve_memory_bytes and config.solve_memory_bytes >= 0,
        "solve_memory_bytes", f"must be an integer >= 0 (0: the memory available here), "
        f"got {config.solve_memory_bytes}")
  kinds = (*covariance.KINDS, *covariance.DERIVED)
  _need(config.covariance in kinds, "covariance", f"must be one of {', '.join(kinds)}, got {config.covariance!r}")
  es = config.edit_set
  _need(config.covariance != "other_facts" or not (es.remap_subject_nested_object_edges
                                                    or es.remap_object_nested_object_edges),
        "covariance", "other_facts needs subject-object edits (the fact covariance holds subject-object facts); "
        "use facts or corpus for nested edits")
  _need(config.mode in methods.MODES, "mode", f"must be one of {', '.join(methods.MODES)}, "
        f"got {config.mode!r}")
  _need(config.loss_on in edit_rows.LOSS_ON, "loss_on", f"must be one of {', '.join(edit_rows.LOSS_ON)}, "
        f"got {config.loss_on!r}")
  _need(int(config.context_prefixes) == config.context_prefixes and config.context_prefixes >= 0,
        "context_prefixes", f"must be an integer >= 0 (0: none), got {config.context_prefixes}")
  if config.method in methods.CLOSED_FORM:  # "last" writes at the row's one answer position
    _need(not (config.key_position == "last" and config.loss_on == "sentence"), "key_position",
          "must be subject with --config.loss_on=sentence (a sentence has no single last prompt token), got last")
  for name, low in (("num_edits", 1), ("chunk", 1), ("eval_shared", 1), ("eval_chunk", 1),
                    ("retain_per_edit", 0), ("log_every", 1), ("checkpoint_every", 1)):
    _need(int(config[name]) == config[name] and config[name] >= low, name,
          f"must be an integer >= {low}, got {config[name]}")
  _need(not (config.method == "refusal") or
        config.edit_set.finetuning_phrase_creator in ("refusal", "qa_refusal") or config.edit_set_dir,
        "edit_set.finetuning_phrase_creator", "must be refusal or qa_refusal for method refusal, got "
        f"{config.edit_set.finetuning_phrase_creator!r}")
  if config.method == "rome":  # one rank-one edit per fact, each from the frozen model
    _need(config.mode in ("independent", "sequential"), "mode",
          f"must be independent or sequential for method rome, got {config.mode!r}")
  if config.method in ("memit", "alphaedit"):  # one least-squares update of every fact, or one per fact
    _need(config.mode in ("batch", "sequential"), "mode",
          f"must be batch or sequential for method {config.method}, got {config.mode!r}")
  if config.method in methods.UNLEARNING:
    _need(config.edit_set.finetuning_phrase_creator not in ("refusal", "qa_refusal"),
          "edit_set.finetuning_phrase_creator", f"must be an answering form for method {config.method}")


def check_solve_fits(config, model_config, num_keys: int) -> None:
  """memit / alphaedit: refuse (ValueError naming --config.num_edits) more keys than the least-squares
  solve can hold in `config.solve_memory_bytes` (0: what this machine has available,
  closed_form.available_bytes). model_config: the pretraining config's `model` (width, mlp_ratio,
  max_len), read before any weight is loaded."""
  if config.method not in ("memit", "alphaedit"):
    return
  budget = int(config.solve_memory_bytes) or closed_form.available_bytes()
  dims = dict(mlp_width=model_config.width * model_config.mlp_ratio, width=model_config.width, layers=config.span,
              eval_tokens=config.eval_chunk * model_config.max_len)
  most = closed_form.max_keys(budget, **dims)
  if num_keys > most:
    need = closed_form.solve_bytes(num_keys, **dims)
    where = "set by --config.solve_memory_bytes" if config.solve_memory_bytes else "available here"
    raise ValueError(f"--config.num_edits: at most {most} keys fit {config.method}'s least-squares solve on this "
                     f"model ({need / 2**20:.1f} MiB needed for {num_keys}, {budget / 2**20:.1f} MiB {where}), "
                     f"got {num_keys}")


def load_pretrained_checked(pretrained_dir):
  """(params, model config, dataset) or a ValueError naming --pretrained."""
  path = pathlib.Path(pretrained_dir)
  if not path.is_dir():
    raise ValueError(f"--pretrained: {path} is not a directory (a pretraining work dir is needed)")
  try:
    return pretrained.load_pretrained(path)
  except pretrained.PretrainedError as e:
    raise ValueError(f"--pretrained: {e}") from e


def edit_set_of(config, dataset):
  if config.edit_set_dir:
    path = pathlib.Path(config.edit_set_dir)
    if not (path / "edit_set.json").is_file():
      raise ValueError(f"--config.edit_set_dir: {path} is not an edit-set folder (no edit_set.json; write one "
                       "with python -m data_gen.make_edits)")
    edit_set = load_edit_set(path)
  else:
    ecfg = EditConfig(num_ft_overrides=config.num_edits, **config.edit_set.to_dict())
    try:
      ecfg.validate(dataset.graph)
      edit_set = build_edit_set(dataset.graph, ecfg, seed=config.edit_set_seed)
    except OptionError as e:
      field = "num_edits" if e.option == "num_ft_overrides" else f"edit_set.{e.option}"
      raise ValueError(f"--config.{field}: {str(e).split(': ', 1)[1]}") from e
  try:
    edit_rows.check_matches_graph(edit_set, dataset.graph)
  except ValueError as e:
    option = "edit_set_dir" if config.edit_set_dir else "edit_set_seed"
    raise ValueError(f"--config.{option}: {e}") from e
  return edit_set


def _check_workdir(workdir: pathlib.Path, resolved: dict) -> None:
  path = workdir / CONFIG_FILE
  if not path.exists():
    return
  old = json.loads(path.read_text())
  if old != resolved:
    changed = sorted(k for k in set(old) | set(resolved) if old.get(k) != resolved.get(k))
    raise ValueError(f"--workdir: {workdir} holds a run with another config (differs in {', '.join(changed)}); "
                     "choose a new work dir")


def _summary_key(name: str, template: str, primary: dict) -> str:
  first = primary.setdefault(name, template)
  return name if first == template else f"{name}/{TEMPLATE_TAG[template]}"


def _atomic_json(path: pathlib.Path, obj) -> None:
  atomic.write_json_atomic(path, obj, allow_nan=True)


def _save_npz_atomic(path: pathlib.Path, **arrays) -> None:
  buf = io.BytesIO()
  np.savez(buf, **arrays)
  atomic.write_bytes_atomic(path, buf.getvalue())


def _mean_or_nan(x) -> float:
  x = np.asarray(x, np.float64)
  x = x[np.isfinite(x)]  # NaN = undefined for that fact (the rank of a refusal answer)
  return float(x.mean()) if x.size else float("nan")


CI_RESAMPLES = 1000


def _ci(values, weights=None, seed: int = 0) -> list:
  return list(stats.bootstrap_ci(values, weights, n_boot=CI_RESAMPLES, seed=seed))


# ---- modes ----------------------------------------------------------------------------------------------


def _cov_cache(pretrained_dir) -> pathlib.Path:
  """Key covariances are cached beside the pretrained run's checkpoints (keyed by the weights' hash)."""
  return pathlib.Path(pretrained_dir) / "key_covariance"


def _key_covariances(config, params, cfg, dataset, layers, pretrained_dir, plan) -> dict[int, np.ndarray]:
  """{layer: C} of config.covariance (cached beside the pretrained run); other_facts takes the run's edited
  facts (plan.head, plan.relationship) out of the fact covariance."""
  kind = covariance.DERIVED.get(config.covariance, config.covariance)
  covs = covariance.cached_covariance(params, cfg, dataset, layers, _cov_cache(pretrained_dir), kind=kind)
  if config.covariance != "other_facts":
    return covs
  keys = covariance.fact_keys(params, cfg, dataset, layers, plan.head, plan.relationship)
  num_facts = int(np.asarray(dataset.graph.objects_SxR).size)
  return {l: covariance.without_facts(covs[l], keys[l], num_facts) for l in layers}


def _closed_form_plan(config, plan, dataset):
  """A closed-form method's plan: the subject token per edit, and `context_prefixes` copies of every edit
  row behind random corpus documents (keys and values then average over contexts, as the reference's)."""
  plan = dataclasses.replace(plan, extra=closed_form.rome_extras(plan, dataset))
  return contexts.with_context_prefixes(plan, dataset, int(config.context_prefixes), config.seed,
                                        plan.extra["subject_token"])


def _nullspace_report(covs: dict, hp) -> dict:
  """alphaedit: per layer, how many of C's directions the null-space projector keeps fixed, under the run's
  rule and under each rule at its reference value (absolute 2e-2, AlphaEdit's code; relative 1e-2, ours
  before it became an option)."""
  out = {}
  for l, c in covs.items():
    out[str(l)] = {"rule": hp.nullspace_rule, "threshold": hp.nullspace_threshold, "dims": int(len(c)),
                   "protected": closed_form.protected_directions(c, hp.nullspace_threshold, hp.nullspace_rule),
                   "protected_absolute_2e-2": closed_form.protected_directions(c, 2e-2, "absolute"),
                   "protected_relative_1e-2": closed_form.protected_directions(c, 1e-2, "relative")}
  return out


def _run_independent(config, hp, params, cfg, ts, evals, paths, workdir, evaluator, lead, edit_set=None,
                     dataset=None, pretrained_dir=None):
  plan = modes.plan_independent(ts, evals, config.retain_per_edit, config.eval_shared, config.seed)
  F = plan.num_edits
  ndev = len(jax.devices())
  mesh = modes.facts_mesh() if ndev > 1 and config.chunk % ndev == 0 else None
  if hp.method == "rome":
    plan = _closed_form_plan(config, plan, dataset)
    layer = int(paths[0].split("/")[1])
    cov = _key_covariances(config, params, cfg, dataset, [layer], pretrained_dir, plan)[layer]
    trainer = closed_form.make_rome_trainer(cfg, layer, closed_form.value_options(hp, "mlp_out"),
                                            closed_form.inverse_covariance(cov), mesh)
  else:
    trainer = modes.make_independent_trainer(cfg, hp, paths, mesh)
  if mesh is not None:  # the frozen model on every device, each edit's delta on one
    params = jax.device_put(params, NamedSharding(mesh, PartitionSpec()))
  before = modes.frozen_scores(evaluator, params, evals)
  chunks_dir, deltas_dir = workdir / "chunks", workdir / "deltas"
  chunks_dir.mkdir(exist_ok=True)
  deltas_dir.mkdir(exist_ok=True)
  starts = list(range(0, F, config.chunk))
  done = {s for s in starts if (chunks_dir / f"{s:06d}.npz").exists()}
  bar = progress.Progress(F, "edits", start=sum(min(config.chunk, F - s) for s in done),
                          enabled=lead and config.progress, min_interval=0.0)
  timings = []
  try:
    for start in starts:
      if start in done:
        continue
      stop = min(start + config.chunk, F)
      t0 = time.perf_counter()
      out = modes.run_independent_chunk(plan, start, stop, config.chunk, trainer, evaluator, params, evals,
                                          config.seed, before)
      timings.append((stop - start, time.perf_counter() - t0))
      if config.save_deltas:
        target = deltas_dir / f"chunk_{start:06d}"
        if not target.exists():
          deltas.save(target, out["deltas"])
      flat = {"loss": out["loss"]}
      for (key, metric), (b, a, n) in out["metrics"].items():
        flat[f"{key}|{metric}|before"], flat[f"{key}|{metric}|after"], flat[f"{key}|{metric}|n"] = b, a, n
      _save_npz_atomic(chunks_dir / f"{start:06d}.npz", **flat)  # last: marks the chunk finished
      bar.advance_to(stop, f"loss {float(np.mean(out['loss'][:, -1])):.4f}")
  finally:
    bar.close()
  # Gather every chunk (this run's and earlier ones').
  rows, per_key = [], {}
  for start in starts:
    with np.load(chunks_dir / f"{start:06d}.npz") as z:
      data = {k: z[k] for k in z.files}
    for k, v in data.items():
      if k != "loss":
        per_key.setdefault(k, []).append(v)
  primary: dict = {}
  summary = {}
  qualified = edit_metrics.ripple_qualified(evals, before)
  for s in evals:
    skey = _summary_key(s.name, s.template, primary)
    index_FxM, mask_FxM = plan.links[s.key]
    facts = int(np.unique(index_FxM[mask_FxM]).size)
    if s.key in qualified:  # an edit's ripple counts only if every one of its ripple rows qualified
      q = qualified[s.key]
      edit_ok = np.array([bool(mask_FxM[f].any()) and bool(q[index_FxM[f][mask_FxM[f]]].all()) for f in range(F)])
    for metric in (*edit_metrics.METRICS, modes.KEPT):
      if f"{s.key}|{metric}|before" not in per_key:
        continue  # kept_conditioned: locality splits only
      b = np.concatenate(per_key[f"{s.key}|{metric}|before"])
      a = np.concatenate(per_key[f"{s.key}|{metric}|after"])
      n = np.concatenate(per_key[f"{s.key}|{metric}|n"])
      for f in range(F):
        if n[f]:
          rows.append({"edit": f, "head": int(plan.head[f]), "relationship": int(plan.relationship[f]),
                       "new_value": int(plan.after[f]), "split": s.name, "template": TEMPLATE_TAG[s.template],
                       "metric": metric, "before": float(b[f]), "after": float(a[f]), "n": int(n[f])})
      w = n.astype(np.float64)
      wb, wa = w * np.isfinite(b), w * np.isfinite(a)  # an edit whose metric is undefined weighs nothing
      summary.setdefault(skey, {})[metric] = {
          "before": float((np.nan_to_num(b) * wb).sum() / max(wb.sum(), 1)),
          "after": float((np.nan_to_num(a) * wa).sum() / max(wa.sum(), 1)),
          "n": facts, "pairs": int(w.sum()),
          # Edits are the independent units (each its own delta); an edit weighs by its linked rows.
          "before_ci": _ci(b, w, config.seed), "after_ci": _ci(a, w, config.seed), "ci_unit": "edit"}
      if s.key in qualified and metric != modes.KEPT:
        wq = w * edit_ok
        bq, aq = np.where(edit_ok, b, np.nan), np.where(edit_ok, a, np.nan)
        wbq, waq = wq * np.isfinite(bq), wq * np.isfinite(aq)
        summary[skey][f"{metric}_conditioned"] = {
            "before": float((np.nan_to_num(bq) * wbq).sum() / wbq.sum()) if wbq.sum() else float("nan"),
            "after": float((np.nan_to_num(aq) * waq).sum() / waq.sum()) if waq.sum() else float("nan"),
            "n": int(np.unique(index_FxM[edit_ok][mask_FxM[edit_ok]]).size), "pairs": int(wq.sum()),
            "qualified_edits": int(edit_ok.sum()), "edits": int((n > 0).sum()),
            "before_ci": _ci(bq, wq, config.seed), "after_ci": _ci(aq, wq, config.seed), "ci_unit": "edit"}
  edits_timed = sum(n for n, _ in timings[1:]) if len(timings) > 1 else sum(n for n, _ in timings)
  secs = sum(t for _, t in timings[1:]) if len(timings) > 1 else sum(t for _, t in timings)
  info = {"num_edits": F, "chunks": len(starts), "chunks_run_now": len(timings),
          "edits_per_s_after_first_chunk": edits_timed / secs if secs else None,
          "sharded_over_devices": ndev if mesh is not None else 1}
  return rows, summary, info


def _whole_split_rows(evals, before, after, label: str, seed: int = 0):
  """One delta for every fact (batch, sequential): a result row per fact, split and metric (as independent
  runs write one per edit), so every figure and interval can be recomputed from results.jsonl."""
  rows, summary, primary = [], {}, {}
  qualified = edit_metrics.ripple_qualified(evals, before)
  for s in evals:
    skey = _summary_key(s.name, s.template, primary)
    for metric in list(before[s.key]):
      b, a = before[s.key][metric], after[s.key][metric]
      for i in range(len(b)):
        rows.append({"edit": label, "fact": i, "head": int(s.head[i]), "relationship": int(s.relationship[i]),
                     "split": s.name, "template": TEMPLATE_TAG[s.template], "metric": metric,
                     "before": float(b[i]), "after": float(a[i]), "n": 1})
      # One delta for every fact: the facts are the resampled units.
      summary.setdefault(skey, {})[metric] = {"before": _mean_or_nan(b), "after": _mean_or_nan(a),
                                              "n": int(len(b)), "before_ci": _ci(b, seed=seed),
                                              "after_ci": _ci(a, seed=seed), "ci_unit": "fact"}
      if s.key in qualified:  # ripple scored only where the prerequisites were known before the edit
        q = qualified[s.key]
        summary[skey][f"{metric}_conditioned"] = {
            "before": _mean_or_nan(b[q]), "after": _mean_or_nan(a[q]), "n": int(q.sum()), "of": int(len(q)),
            "before_ci": _ci(b[q], seed=seed), "after_ci": _ci(a[q], seed=seed), "ci_unit": "fact"}
    if s.name != "edited" and "exact_match" in before[s.key]:  # locality of what the model knew
      known = before[s.key]["exact_match"] == 1
      still = after[s.key]["exact_match"][known]
      summary[skey][modes.KEPT] = {"before": 1.0 if known.any() else float("nan"), "after": _mean_or_nan(still),
                                   "n": int(known.sum()), "of": int(len(known)),
                                   "before_ci": [1.0, 1.0] if known.any() else _ci(still, seed=seed),
                                   "after_ci": _ci(still, seed=seed), "ci_unit": "fact"}
  return rows, summary


def _measure_delta(config, workdir, delta, evaluator, params, evals, folder: str, label: str):
  """What every one-delta mode ends with: the delta saved as deltas/<folder>/ (once) and every evaluation
  split scored before and after it (result rows labelled `label`)."""
  if config.save_deltas and not (workdir / "deltas" / folder).exists():
    (workdir / "deltas").mkdir(exist_ok=True)
    deltas.save(workdir / "deltas" / folder, delta)
  before = modes.frozen_scores(evaluator, params, evals)
  after = modes.frozen_scores(evaluator, params, evals, delta)
  return _whole_split_rows(evals, before, after, label, config.seed)


def _run_batch(config, hp, params, cfg, ts, evals, paths, workdir, evaluator, lead):
  """One delta through the generic loop (checkpoints, metrics lines, resume, NaN stop)."""
  start_layer = deltas.first_layer(paths, cfg.num_layers)
  pool = methods.prepare(params, modes.batch_rows(ts), hp, cfg, start_layer, paths)
  step = methods.make_step(params, hp, cfg, start_layer)
  opt = methods.optimizer(hp)
  key = jax.random.key(config.seed)
  init_key, data_key = jax.random.split(key)

  def init():
    delta = methods.init_delta(init_key, params, paths, hp)
    return {"delta": delta, "opt_state": opt.init(delta)}

  @jax.jit
  def step_fn(state, step_index):
    b = methods.minibatch(pool, jax.random.fold_in(data_key, step_index), hp.batch_size)
    (delta, opt_state), (loss, terms) = step((state["delta"], state["opt_state"]), b)
    return {"delta": delta, "opt_state": opt_state}, {"loss": loss, **terms}

  manager = checkpoint.make_manager(workdir, 2, config.checkpoint_every)
  abstract = jax.eval_shape(init)
  state, start = checkpoint.restore_latest(manager, abstract)
  if state is None:
    state = init()
  if lead:
    metrics_log.truncate_after(workdir / "metrics.jsonl", start)
  writer = metrics_log.JsonlWriter(workdir / "metrics.jsonl") if lead else None
  spec = loop.LoopSpec(total_steps=hp.steps, log_every=config.log_every,
                       checkpoint_every=config.checkpoint_every, show_progress=config.progress)
  t0 = time.perf_counter()
  result = loop.run_loop(state, start, spec=spec, step_fn=step_fn, sample=lambda s: np.int32(s),
                         manager=manager, writer=writer, lead=lead)
  manager.close()
  if writer:
    writer.close()
  delta = result.state["delta"]
  train_s = time.perf_counter() - t0
  rows, summary = _measure_delta(config, workdir, delta, evaluator, params, evals, "batch", "batch")
  return rows, summary, {"num_edits": len(edit_rows.edit_groups(ts)), "train_s": train_s,
                         "delta": deltas.describe(delta)["norm"]}


def _run_sequential(config, hp, params, cfg, ts, evals, paths, workdir, evaluator, lead, edit_set=None,
                    dataset=None, pretrained_dir=None):
  plan = modes.plan_independent(ts, evals, config.retain_per_edit, config.eval_shared, config.seed)
  train, track, extra_info = None, 0, {}
  if hp.method == "rome":  # each fact's rank-one edit on the model with every earlier one merged; the
    # covariance stays the pretrained model's (as sequential ROME does)
    plan = _closed_form_plan(config, plan, dataset)
    layer = int(paths[0].split("/")[1])
    cov = _key_covariances(config, params, cfg, dataset, [layer], pretrained_dir, plan)[layer]
    vmapped = closed_form.make_rome_trainer(cfg, layer, closed_form.value_options(hp, "mlp_out"),
                                            closed_form.inverse_covariance(cov))

    def one(frozen, batch, key):  # a batch of one fact through the vmapped trainer
      delta, loss = vmapped(frozen, jax.tree.map(lambda x: x[None], batch), None)
      return jax.tree.map(lambda x: x[0], delta), loss[0]

    train, track = one, 64
  elif hp.method in ("memit", "alphaedit"):
    plan = _closed_form_plan(config, plan, dataset)
    train, covs = _sequential_least_squares(config, hp, params, cfg, paths, dataset, pretrained_dir, plan)
    track = 64
    if hp.method == "alphaedit":
      extra_info["nullspace"] = _nullspace_report(covs, hp)
  bar = progress.Progress(plan.num_edits, "edits", enabled=lead and config.progress, min_interval=0.0)
  records = []

  def on_edit(record):
    records.append(record)
    bar.advance_to(record["edit"] + 1, f"so far {record.get('edits_so_far', float('nan')):.2f}")

  t0 = time.perf_counter()
  try:
    composed, _ = modes.run_sequential(params, plan, hp, cfg, paths, config.seed, evaluator, evals, on_edit,
                                         train, track)
  finally:
    bar.close()
  train_s = time.perf_counter() - t0
  atomic.write_text_atomic(workdir / "sequential.jsonl", "".join(json.dumps(r) + "\n" for r in records))
  rows, summary = _measure_delta(config, workdir, composed, evaluator, params, evals, "composed", "sequential")
  return rows, summary, {"num_edits": plan.num_edits, "train_s": train_s,
                         "delta": deltas.describe(composed)["norm"], **extra_info}


def _sequential_least_squares(config, hp, params, cfg, paths, dataset, pretrained_dir, plan):
  """(train, {layer: C}): the `train` step of sequential memit / alphaedit: one least-squares update of the step's fact on the
  model with every earlier update merged (covariance: the pretrained model's, as for rome). alphaedit's
  solve also holds every earlier edit's keys in place (AlphaEdit's Kp term): the step function keeps
  them, so it is only for one run_sequential pass, in edit order."""
  layers = [int(p.split("/")[1]) for p in paths]
  covs = _key_covariances(config, params, cfg, dataset, layers, pretrained_dir, plan)
  null_space = hp.method == "alphaedit"
  editor = closed_form.make_least_squares_editor(cfg, layers, covs, hp, null_space=null_space, chunk=1)
  earlier = {l: np.zeros((0, cfg.mlp_width)) for l in layers}

  def train(frozen, batch, key):
    del key  # deterministic
    delta, loss, keys = editor(frozen, jax.tree.map(lambda x: x[None], batch), earlier if null_space else None)
    for l in layers:
      earlier[l] = np.concatenate([earlier[l], keys[l]])
    return delta, loss[0]

  return train, covs


def _run_closed_form_batch(config, hp, params, cfg, ts, evals, paths, workdir, evaluator, lead, edit_set=None,
                           dataset=None, pretrained_dir=None):
  """memit / alphaedit: every fact in one least-squares update of the down-projections of `paths`
  (closed_form.least_squares_delta), evaluated once on every split like batch mode."""
  plan = modes.plan_independent(ts, evals, 0, config.eval_shared, config.seed)
  plan = _closed_form_plan(config, plan, dataset)
  layers = [int(p.split("/")[1]) for p in paths]
  t0 = time.perf_counter()
  covs = _key_covariances(config, params, cfg, dataset, layers, pretrained_dir, plan)
  cov_s = time.perf_counter() - t0
  batch = modes.batch_of(plan.rows, plan.is_edit)
  batch.update({k: jax.numpy.asarray(v) for k, v in plan.extra.items()})
  delta, loss = closed_form.least_squares_delta(params, cfg, batch, layers, covs, hp,
                                                null_space=hp.method == "alphaedit", chunk=config.chunk)
  train_s = time.perf_counter() - t0
  rows, summary = _measure_delta(config, workdir, delta, evaluator, params, evals, "batch", "batch")
  info = {"num_edits": plan.num_edits, "train_s": train_s, "covariance_s": cov_s,
          "value_loss_final": float(np.mean(np.asarray(loss)[:, -1])), "delta": deltas.describe(delta)["norm"]}
  if hp.method == "alphaedit":
    info["nullspace"] = _nullspace_report(covs, hp)
  return rows, summary, info


def traced_layer(config, hp, params, cfg, edit_set, dataset):
  """(hp with `layer` set, what was traced) for a closed-form method with layer -1: causal tracing of the
  pretrained model on the edited facts as it knows them (pre-edit answers, in the edited split's template;
  only the facts it answers), restoring one MLP output at a time at the key position (hp.key_position);
  the edited layer is the last of the `span` consecutive MLPs with the largest summed mean indirect
  effect (tracing.pick_layer). A ValueError names --config.layer when nothing can be traced."""
  from behemoth_jax.edit import tracing  # pylint: disable=g-import-not-at-top
  from data_gen.edit_sets.edits import EVAL  # pylint: disable=g-import-not-at-top
  from data_gen.world.corpus import OBJECT_NESTED  # pylint: disable=g-import-not-at-top
  L = cfg.num_layers
  _need(hp.span <= L, "span", f"must be in [1, {L}] (the model has {L} MLP layers), got {hp.span}")
  split = next((s for s in edit_set.eval if s.role == EVAL and s.name == "edited"), None)
  _need(split is not None and split.kind != OBJECT_NESTED, "layer",
        "-1 (traced) needs subject-object or subject-nested edits (the subject is what tracing corrupts); "
        f"give a layer in [0, {L - 1}]")
  if split.template not in ("remapping", "qa"):  # refusal forms: trace the answering counterpart
    split = dataclasses.replace(split, template="qa" if "qa" in split.template else "remapping")
  prompt, answer, subject, last_subject = tracing.fact_probes(dataset, split)
  ok = tracing.known(params, cfg, prompt, answer)
  _need(bool(ok.any()), "layer", f"-1 (traced) needs facts the model knows; it answers none of the {len(ok)} "
        f"edited facts before the edit; give a layer in [0, {L - 1}]")
  eff = tracing.mean_effects(params, cfg, prompt[ok], subject[ok], answer[ok], jax.random.key(config.seed),
                             components=("mlp",))
  position = prompt.shape[1] - 1 if hp.key_position == "last" else int(np.bincount(last_subject[ok]).argmax())
  mlp = eff["components"]["mlp"]
  layer = tracing.pick_layer(mlp["mean"], position, hp.span)
  info = {"layer": layer, "layers": list(range(layer - hp.span + 1, layer + 1)), "key_position": hp.key_position,
          "position": position, "prompt_length": int(prompt.shape[1]),
          "mlp_indirect_effect_by_layer": [round(float(x), 6) for x in mlp["mean"][:, position]],
          "mlp_indirect_effect_sem": [round(float(x), 6) for x in mlp["sem"][:, position]],
          "num_probes": eff["num_probes"], "num_edited_facts": int(len(ok)), "clean_p": eff["clean_p"],
          "corrupted_p": eff["corrupted_p"], "noise_std": eff["noise_std"]}
  return dataclasses.replace(hp, layer=layer), info


_MODES = {"independent": _run_independent, "batch": _run_batch, "sequential": _run_sequential}


def run(config, pretrained_dir, workdir) -> dict:
  """Runs (or resumes) one edit configuration; returns summary.json's content."""
  validate(config)
  hp = hparams(config)
  if not config.edit_set_dir:  # the builder makes num_edits edits: refuse too many before loading weights
    try:
      shape = pretrained.read_config(pretrained_dir).model
    except (pretrained.PretrainedError, OSError, ValueError, KeyError):
      shape = None  # load_pretrained_checked names --pretrained below
    if shape is not None:
      check_solve_fits(config, shape, config.num_edits)
  params, cfg, dataset = load_pretrained_checked(pretrained_dir)
  edit_set = edit_set_of(config, dataset)
  trace = None
  if hp.method in methods.CLOSED_FORM and hp.layer == -1:  # the layer causal tracing points at
    hp, trace = traced_layer(config, hp, params, cfg, edit_set, dataset)
  paths = methods.resolve_paths(params, hp)
  ts = edit_rows.train_set(edit_set, dataset, config.loss_on, forget=hp.forget)
  if config.edit_set_dir:  # its own number of edits
    check_solve_fits(config, pretrained.read_config(pretrained_dir).model, len(edit_rows.edit_groups(ts)))
  evals = edit_rows.eval_splits(edit_set, dataset)
  workdir = pathlib.Path(workdir)
  resolved = {**config.to_dict(), "pretrained": str(pathlib.Path(pretrained_dir).absolute())}
  _check_workdir(workdir, resolved)
  lead = jax.process_index() == 0
  # Every option is checked: only now does the work dir appear.
  workdir.mkdir(parents=True, exist_ok=True)
  if (workdir / SUMMARY_FILE).exists():
    return json.loads((workdir / SUMMARY_FILE).read_text())
  _atomic_json(workdir / CONFIG_FILE, resolved)
  evaluator = modes.Evaluator(cfg, config.eval_chunk, candidates=edit_metrics.split_candidates(edit_set, dataset))
  t0 = time.perf_counter()
  # Closed-form methods also need the edit set, the dataset (KL prompts, corpus covariance) and the run.
  extra = ({"edit_set": edit_set, "dataset": dataset, "pretrained_dir": pretrained_dir}
           if hp.method in methods.CLOSED_FORM else {})
  mode_fn = (_run_closed_form_batch if hp.method in ("memit", "alphaedit") and config.mode == "batch"
             else _MODES[config.mode])
  rows, summary, info = mode_fn(config, hp, params, cfg, ts, evals, paths, workdir, evaluator, lead,
                                            **extra)
  info.update(mode=config.mode, method=hp.method, targets=hp.targets, paths=paths,
              rank=1 if hp.method in methods.CLOSED_FORM else hp.rank if hp.low_rank else None,
              wall_s=time.perf_counter() - t0, backend=jax.default_backend(), traced=trace,
              device=jax.devices()[0].device_kind, num_devices=len(jax.devices()))
  # Every row names its run: the resolved config's hash and the seeds (edit selection, method).
  run_id = {"config_hash": digest.json_digest(resolved, 16),
            "seed": config.seed, "edit_set_seed": config.edit_set_seed}
  rows = [{**r, **run_id} for r in rows]
  if lead:
    atomic.write_text_atomic(workdir / RESULTS_FILE,
                          "".join(json.dumps(r, allow_nan=True) + "\n" for r in rows))
    _atomic_json(workdir / RUN_FILE, info)
    _atomic_json(workdir / SUMMARY_FILE, summary)  # last: its presence means the run is complete
  return summary


def summary_table(summary: dict) -> str:
  lines = [f"  {'split':<40s} {'metric':<16s} {'before':>7s} {'after':>7s} {'n':>6s}"]
  for split, by_metric in summary.items():
    for metric, v in by_metric.items():
      b, a = v["before"], v["after"]
      pct = not metric.startswith(("logprob", "rank"))  # log-probabilities and ranks are not shares
      fmt = lambda x, pct=pct: ("   nan" if x is None or (isinstance(x, float) and math.isnan(x)) else
                                f"{100 * x:6.1f}%" if pct else f"{x:7.3g}")
      lines.append(f"  {split:<40s} {metric:<16s} {fmt(b):>7s} {fmt(a):>7s} {v['n']:>6d}")
  return "\n".join(lines)
