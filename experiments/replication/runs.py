"""The experiments of experiments/paper.py: which arms each runs, and running them (resumably).

An `Arm` is one method with its options; `arms(config, ...)` lists an experiment's arms; `run_experiment`
pretrains what is missing, tunes learning rates on a held-out edit set, runs every arm over the seeds,
pools them and writes the results (experiments/replication/results.py). Pure orchestration over the libraries
the binaries use: every number comes from `edit.runner.run` / `oracle.retrain.run` work dirs that a researcher
can open and rerun on their own.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import platform
import subprocess
import sys
import time

import ml_collections
import numpy as np

from behemoth_jax.evaluate import pooling
from data_gen.common import atomic, digest

TUNE_SCORE = ("edited", "reg_data")  # lr tuning: mean exact match of the edit and of unrelated facts


@dataclasses.dataclass(frozen=True)
class Arm:
  """One method with its options. `label` holds the columns tables and plots group by."""
  name: str  # unique in its experiment; a folder name
  method: str  # a name of experiments/configs/edit.py
  overrides: tuple = ()  # ((dotted edit-config field, value), ...)
  label: tuple = ()  # ((column, value), ...)
  pretrain: str = "base"  # key of pretrain_variants()
  lrs: tuple = ()  # tuned over these when there are several; one: used as is; none: the config's own

  @property
  def labels(self) -> dict:
    return dict(self.label)


def pretrain_variants(config) -> dict[str, dict]:
  """variant -> flattened pretraining overrides (the config's shared ones, then the variant's)."""
  base = pooling.flatten_config(config.pretrain_overrides)
  if config.experiment == "dissent_qa":
    return {f"minority{p}": {**base, "data.corpus.minority_position_frac": p} for p in config.minority_fracs}
  if config.experiment == "capacity":
    return {name: {**base, **pooling.flatten_config(v)} for name, v in config.variants.items()}
  return {"base": base}


def pretrain_config(config, overrides: dict, seed: int):
  from experiments.configs import pretrain as pretrain_configs  # pylint: disable=g-import-not-at-top
  c = pretrain_configs.get_config(config.pretrain)
  c.update_from_flattened_dict({k: v for k, v in overrides.items() if not k.startswith("exposures")})
  c.seed = c.data.seed = int(seed)
  c.progress = False
  if "exposures" in overrides:  # a fixed budget in fact exposures: no early stop
    c.total_steps = _steps_for_exposures(c, float(overrides["exposures"]))
    c.target_accuracy = 0.0
    # Warmup keeps its share of the schedule: a 100-exposure budget can be shorter than the default warmup.
    c.warmup_steps = min(c.warmup_steps, max(1, c.total_steps // 10))
    c.eval_every = c.checkpoint_every = min(c.checkpoint_every, c.total_steps)
  return c


def _hash(obj) -> str:
  return digest.json_digest(obj, 12, default=str)


def _steps_for_exposures(c, exposures: float) -> int:
  """Steps in which every fact is seen about `exposures` times: documents per step are counted on
  sampled batches (each document starts with token 0), a corpus pass holds every fact once."""
  from behemoth_jax.train import pretraining  # pylint: disable=g-import-not-at-top
  ds = pretraining.load_dataset(c)
  sample = ds.sampler(c.batch_size, c.seq_len)
  docs_per_step = np.mean([int((np.asarray(sample(i)["tokens"]) == 0).sum()) for i in range(4)])
  return max(1, math.ceil(exposures * ds.tables.layout.short_pass / docs_per_step))


def ensure_pretrained(config, overrides: dict, seed: int, root: pathlib.Path, ran: list) -> pathlib.Path:
  """The pretraining work dir of (overrides, seed) under root/pretrain, trained (or resumed) first."""
  from behemoth_jax.train import pretraining  # pylint: disable=g-import-not-at-top
  c = pretrain_config(config, overrides, seed)
  workdir = root / "pretrain" / f"{config.pretrain}_{_hash(c.to_dict())}_s{seed}"
  if not (workdir / "summary.json").is_file():
    ran.append(str(workdir))
    earlier = _pretrain_seconds(workdir)  # a killed attempt's steps, read before this one logs its own
    t0 = time.perf_counter()
    pretraining.run(c, workdir)
    atomic.write_json_atomic(workdir / PRETRAIN_TIME, {"wall_s": earlier + time.perf_counter() - t0})
  return workdir


PRETRAIN_TIME = "pretrain_time.json"  # beside a pretraining work dir's files: seconds this driver trained it


def _pretrain_seconds(workdir: pathlib.Path) -> float:
  """Seconds spent training `workdir`: as recorded, else estimated from its metrics lines (each logging
  interval's tokens over its tokens/s; evaluations and compilation not counted)."""
  path = pathlib.Path(workdir) / PRETRAIN_TIME
  if path.is_file():
    return json.loads(path.read_text())["wall_s"]
  metrics = pathlib.Path(workdir) / "metrics.jsonl"
  if not metrics.is_file():
    return 0.0
  lines = [json.loads(l) for l in metrics.read_text().splitlines() if l.strip()]
  config = json.loads((pathlib.Path(workdir) / "config.json").read_text())
  tokens_per_step = config["batch_size"] * (config["seq_len"] - 1)
  steps = [m for m in lines if "tokens_per_s" in m]
  return float(sum(config["log_every"] * tokens_per_step / m["tokens_per_s"] for m in steps if m["tokens_per_s"] > 0))


def arms(config, num_layers: int) -> list[Arm]:
  """The arms of config.experiment."""
  e = config.experiment
  out = []
  if e == "rank":
    modes = [("independent", config.num_edits)] + [(f"batch{n}", n) for n in config.batch_sizes]
    for mode, n in modes:
      common = (("mode", "independent" if mode == "independent" else "batch"), ("num_edits", n),
                ("targets", config.targets), ("edit_set.eval_question_form", True))
      if mode != "independent":  # one delta learns every fact: more steps over the pooled rows
        common += (("steps", config.batch_steps),)
      for r in config.ranks:
        out.append(Arm(f"{mode}_lora_r{r}", "lora", common + (("rank", r),),
                       (("mode", mode), ("n", n), ("rank", r)), lrs=tuple(config.lora_lrs)))
      out.append(Arm(f"{mode}_full", "ft", common + (("rank", 0),), (("mode", mode), ("n", n), ("rank", "full")),
                     lrs=tuple(config.ft_lrs)))
  elif e == "blocks":
    for t in config.targets:
      if t.startswith("layer:") and int(t.split(":")[1].split("-")[-1]) >= num_layers:
        continue
      out.append(Arm(f"ft_{t.replace(':', '').replace('-', 'to')}", "ft", (("targets", t), ("rank", 0)),
                     (("targets", t),), lrs=tuple(config.lrs)))
  elif e == "ripple":
    # One edit set serves both questions: a nested graph adds the nested ripple splits to every remap, and
    # get_correlated_tuples adds the partner relationship's (at correlation strength 1.0 its filter keeps
    # every subject, so a separate "nested" arm would edit the same facts).
    for m in config.methods:
      out.append(Arm(m, m, (("edit_set.get_correlated_tuples", True),), (("method", m),)))
  elif e == "censor":
    for frac in config.censor_fracs:
      opts = (("edit_set.single_ft_value", True), ("edit_set.single_ft_data_subset_frac", frac),
              ("mode", "batch"))
      for m in config.methods:
        out.append(Arm(f"censor{frac}_{m}", m, opts, (("censored", frac), ("method", m))))
  elif e == "dissent_qa":
    for variant in pretrain_variants(config):
      for m in config.methods:
        out.append(Arm(f"{variant}_{m}", m, (("edit_set.eval_question_form", True),),
                       (("minority", variant.removeprefix("minority")), ("method", m)), pretrain=variant))
  elif e == "locate":
    for layer in range(num_layers):
      if layer in config.layers:
        out.append(Arm(f"rome_layer{layer}", "rome", (("layer", layer),), (("method", "rome"), ("layer", layer))))
    # The closed-form methods at their default layer: the one causal tracing of the pretrained model picks
    # (layer -1; run.json records it); LoRA and fine-tuning at their configs' targets.
    for m in config.methods:
      closed = m in ("rome", "memit", "alphaedit")
      opts = (("layer", -1),) if closed else ()
      out.append(Arm(f"{m}_traced" if closed else m, m, opts, (("method", m), ("layer", "traced" if closed else "all"))))
  elif e == "unlearning":
    for m in config.methods:
      out.append(Arm(m, m, (("mode", "batch"),), (("method", m),)))
  elif e == "capacity":
    for variant in pretrain_variants(config):
      for m in config.methods:
        out.append(Arm(f"{variant}_{m}", m, (), (("pretraining", variant), ("method", m)), pretrain=variant))
  return out


def edit_config(config, arm: Arm, lr: float | None, edit_seed: int, num_edits: int | None = None):
  from experiments.configs import edit as edit_configs  # pylint: disable=g-import-not-at-top
  c = edit_configs.get_config(arm.method + (",tiny" if config.size == "tiny" else ""))
  c.num_edits = config.num_edits
  c.eval_shared = config.eval_shared
  c.progress = False
  c.save_deltas = config.experiment == "unlearning"  # the oracle reads the unlearned delta; others: rows only
  c.update_from_flattened_dict(dict(arm.overrides))
  if num_edits is not None and c.mode == "independent":
    c.num_edits = num_edits
  if lr is not None:
    c.learning_rate = float(lr)
  c.edit_set_seed = int(edit_seed)
  c.seed = int(edit_seed)
  # Batch-mode runs score whole splits, before and after; 1,000 facts per split bound that work (independent
  # runs score each edit's linked rows and `eval_shared` rows of the others either way).
  c.edit_set.eval_cap = min(c.edit_set.eval_cap, config.eval_cap)
  return c


def _edit(c, pretrained_dir, workdir, ran: list) -> dict:
  """runner.run; `ran` collects the work dirs run now (not read back finished)."""
  from behemoth_jax.edit import runner  # pylint: disable=g-import-not-at-top
  done = pathlib.Path(workdir) / "summary.json"
  if done.is_file():  # finished: read back, if it was run with these options
    ran_with = pooling.flatten_config(json.loads((pathlib.Path(workdir) / "config.json").read_text()))
    now = pooling.flatten_config(
        json.loads(json.dumps({**c.to_dict(), "pretrained": str(pathlib.Path(pretrained_dir).absolute())})))
    # Fields the engine gained after the run (absent from its config.json) do not count.
    differ = sorted(k for k in ran_with.keys() & now.keys() if ran_with[k] != now[k])
    if differ:
      raise ValueError(f"--output: {workdir} holds a finished run with other options ({', '.join(differ[:5])}); "
                       "remove it or choose another --output")
    return json.loads(done.read_text())
  ran.append(str(workdir))
  return runner.run(c, pretrained_dir, workdir)


def _after(summary: dict, split: str, metric: str = "exact_match") -> float:
  v = summary.get(split, {}).get(metric, {}).get("after")
  return float("nan") if v is None else float(v)


def tune(config, arm: Arm, pretrained_dir, out: pathlib.Path, ran: list) -> tuple[float | None, dict]:
  """The learning rate of arm.lrs with the best mean exact match of edited and reg_data facts, measured on
  a held-out edit set (edit seed config.tune_edit_seed)."""
  if len(arm.lrs) <= 1:
    return (arm.lrs[0] if arm.lrs else None), {}
  scores = {}
  for lr in arm.lrs:
    c = edit_config(config, arm, lr, config.tune_edit_seed, num_edits=config.tune_edits)
    s = _edit(c, pretrained_dir, out / "tune" / arm.name / f"lr{lr:g}", ran)
    scores[f"{lr:g}"] = float(np.mean([_after(s, split) for split in TUNE_SCORE]))
  best = max(arm.lrs, key=lambda lr: (scores[f"{lr:g}"], -lr))  # ties: the smaller step
  return best, scores


def _trace(config, pretrained_dir: pathlib.Path, out: pathlib.Path) -> dict:
  """experiments.trace on the pretrained model (its own binary: one more process, the same outputs)."""
  if not (out / "trace.json").is_file():
    cmd = [sys.executable, "-m", "experiments.trace", f"--pretrained={pretrained_dir}", f"--workdir={out}",
           f"--num_probes={config.trace_probes}"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
  return json.loads((out / "trace.json").read_text())


def _write_edit_set(config, pretrained_dir: pathlib.Path, out: pathlib.Path, seed: int,
                    method: str = "lora") -> pathlib.Path:
  """A make_edits folder of config.num_edits facts as `method`'s config builds them (remapped; refusal: the
  same facts in the refusal form); the oracle reads edit sets from folders."""
  from behemoth_jax.edit import runner  # pylint: disable=g-import-not-at-top
  from data_gen.edit_sets import edit_files  # pylint: disable=g-import-not-at-top
  if (out / "edit_set.json").is_file():
    return out
  c = edit_config(config, Arm("forget", method), None, seed)
  _, _, ds = runner.load_pretrained_checked(pretrained_dir)
  edit_set = runner.edit_set_of(c, ds)
  with atomic.atomic_directory(out, option="output") as tmp:
    edit_files.write_edit_set(tmp, edit_set, ds.vocab)
  return out


def _unlearning(config, arm_list, pre, root_exp: pathlib.Path, runs: list, ran: list):
  """Forget config.num_edits facts with each method (batch mode), then score each against one oracle
  retrained without them (per pretraining and edit seed; oracle.run merges forget_quality and
  oracle_agreement into each run's summary.json)."""
  from behemoth_jax.oracle import retrain  # pylint: disable=g-import-not-at-top
  for seed in config.seeds:
    p = pre[("base", seed)]
    for e in config.edit_seeds:
      edits = _write_edit_set(config, p, root_exp / "edit_sets" / f"s{seed}_e{e}", e)
      o = root_exp / "oracle" / f"s{seed}_e{e}"
      for arm in arm_list:
        c = edit_config(config, arm, None, e)
        # Refusal is taught on the refusal form of the same facts (the oracle compares the same pairs).
        c.edit_set_dir = str(edits if arm.method != "refusal" else _write_edit_set(
            config, p, root_exp / "edit_sets" / f"s{seed}_e{e}_refusal", e, "refusal"))
        wd = root_exp / "runs" / arm.name / f"s{seed}_e{e}"
        summary = _edit(c, p, wd, ran)
        if "forget_quality_logprob" not in summary.get("edited", {}):  # absent too where an older oracle wrote
          ran.append(str(o))
          retrain.run(p, edits, o, "remove", tuple(config.oracle_seeds), config.oracle_steps, unlearned_dir=wd)
        runs.append({"arm": arm.name, "seed": seed, "edit_seed": e, "dir": str(wd), "oracle": str(o)})


def _need(ok: bool, field: str, message: str) -> None:
  if not ok:
    raise ValueError(f"--config.{field}: {message}")


def _ints(values, field: str, low: int) -> None:
  ok = len(values) > 0 and all(isinstance(v, int) and not isinstance(v, bool) and v >= low for v in values)
  _need(ok, field, f"must be a non-empty tuple of integers >= {low}, got {values!r}")


def validate(config, root: pathlib.Path) -> None:
  """Every option, before anything is written."""
  from experiments.configs import edit as edit_configs, paper  # pylint: disable=g-import-not-at-top
  _need(config.experiment in paper.EXPERIMENTS, "experiment", f"must be one of {', '.join(paper.EXPERIMENTS)}")
  _need(config.size in paper.SIZES, "size", f"must be one of {', '.join(paper.SIZES)}, got {config.size!r}")
  _ints(tuple(config.seeds), "seeds", 0)
  _ints(tuple(config.edit_seeds), "edit_seeds", 0)
  for field in ("num_edits", "tune_edits", "eval_shared", "tune_edit_seed"):
    _need(isinstance(config[field], int) and config[field] >= (0 if field == "tune_edit_seed" else 1), field,
          f"must be an integer >= {0 if field == 'tune_edit_seed' else 1}, got {config[field]!r}")
  _need(config.tune_edit_seed not in tuple(config.edit_seeds), "tune_edit_seed",
        f"must differ from every edit seed {tuple(config.edit_seeds)} (tuning uses held-out facts)")
  for field in ("lora_lrs", "ft_lrs", "lrs"):
    if field in config:
      lrs = tuple(config[field])
      _need(len(lrs) > 0 and all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in lrs), field,
            f"must be a non-empty tuple of learning rates > 0, got {lrs!r}")
  for field, low in (("ranks", 1), ("layers", 0)):
    if field in config:
      _ints(tuple(config[field]), field, low)
  if "batch_sizes" in config and tuple(config.batch_sizes):
    _ints(tuple(config.batch_sizes), "batch_sizes", 1)
  if "methods" in config:
    bad = [m for m in config.methods if m not in edit_configs.NAMES]
    _need(not bad and len(config.methods) > 0, "methods",
          f"must name configs of experiments/configs/edit.py ({', '.join(edit_configs.NAMES)}), got {bad or '()'}")
  for field, lo, hi in (("censor_fracs", 0.0, 1.0), ("minority_fracs", 0.0, 1.0)):
    if field in config:
      v = tuple(config[field])
      _need(len(v) > 0 and all(lo < x <= hi for x in v), field, f"must be shares in ({lo}, {hi}], got {v!r}")
  if "oracle_steps" in config:
    _need(config.oracle_steps >= 0, "oracle_steps",
          f"must be >= 0 (0: the steps the pretrained run trained), got {config.oracle_steps}")
  if "trace_probes" in config:
    _need(config.trace_probes >= 2, "trace_probes", f"must be >= 2 (a CI needs two), got {config.trace_probes}")
  if root.exists() and not root.is_dir():
    raise ValueError(f"--output: {root} exists and is not a folder; give a folder (created if missing)")


def run_experiment(config, root: pathlib.Path) -> pathlib.Path:
  """Runs (or resumes) config.experiment under root; returns its folder."""
  from behemoth_jax.edit import runner  # pylint: disable=g-import-not-at-top
  from behemoth_jax.train import pretraining  # pylint: disable=g-import-not-at-top
  from experiments.replication import results  # pylint: disable=g-import-not-at-top
  validate(config, root)
  variants = pretrain_variants(config)
  # Every pretraining and edit config is checked before the first thing is written.
  pconfigs = {v: pretrain_config(config, o, config.seeds[0]) for v, o in variants.items()}
  for c in pconfigs.values():
    pretraining.validate(c)
  arm_list = arms(config, next(iter(pconfigs.values())).model.num_layers)
  for arm in arm_list:
    for lr in arm.lrs or (None,):
      runner.validate(edit_config(config, arm, lr, config.edit_seeds[0]))
  exp = root / config.experiment
  ran = []  # work dirs run now (run.json says how many)
  pre = {}
  for v, overrides in variants.items():
    for s in config.seeds:
      pre[(v, s)] = ensure_pretrained(config, overrides, s, root, ran)
  extra = {}
  if config.experiment == "locate":
    extra["trace"] = {s: _trace(config, pre[("base", s)], exp / "trace" / f"s{s}") for s in config.seeds}
  runs, tuned = [], {}
  if config.experiment == "unlearning":
    _unlearning(config, arm_list, pre, exp, runs, ran)
  else:
    for arm in arm_list:
      lr, scores = tune(config, arm, pre[(arm.pretrain, config.seeds[0])], exp, ran)
      tuned[arm.name] = {"learning_rate": lr, "scores": scores}
      for s in config.seeds:
        for e in config.edit_seeds:
          wd = exp / "runs" / arm.name / f"s{s}_e{e}"
          _edit(edit_config(config, arm, lr, e), pre[(arm.pretrain, s)], wd, ran)
          runs.append({"arm": arm.name, "seed": s, "edit_seed": e, "dir": str(wd)})
  # Time as the work dirs record it (each edit run's run.json, each pretraining's pretrain_time.json), so a
  # killed and resumed experiment counts what its runs took and a rerun that reads them back writes the
  # same bytes.
  edit_s = sum(json.loads(p.read_text()).get("wall_s", 0.0)
               for p in sorted(exp.glob("*/*/*/run.json")) if p.parent.parent.parent.name in ("runs", "tune"))
  pretrain_s = sum(_pretrain_seconds(p) for p in pre.values())
  info = {"experiment": config.experiment, "config": config.name, "size": config.size,
          "edit_s": edit_s, "pretrain_s": pretrain_s, "work_dirs_run_now": len(ran), "machine": machine(),
          "command": f"python -m experiments.paper --config=experiments/configs/paper.py:{config.name} "
                     f"--output={root}",
          "pretrained": {f"{v}_s{s}": str(p) for (v, s), p in pre.items()}, "tuned": tuned,
          "runs": runs, "config_values": config.to_dict(), **extra}
  results.write_experiment(exp, config, arm_list, info)
  return exp


def machine() -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  cpu = platform.processor() or platform.machine()
  try:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
  except OSError:
    pass
  import os  # pylint: disable=g-import-not-at-top
  return {"cpu": cpu, "cores": os.cpu_count(), "backend": jax.default_backend(),
          "device": jax.devices()[0].device_kind, "num_devices": len(jax.devices())}
