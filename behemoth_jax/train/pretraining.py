"""Pretraining: setup (dataset, model, optimizer, mesh, work dir) around the generic loop (`loop.py`).

`run(config, workdir)` is what `python -m experiments.pretrain` calls; it takes a resolved config object
(never reads flags), so tests drive it in-process. Restarting it on the same work dir resumes from the
latest checkpoint: the data stream is a pure function of the step and training draws no randomness, so
a resumed run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import pathlib
import time

import jax
import numpy as np

from behemoth_jax.evaluate import knowledge
from behemoth_jax.model import flops, model
from behemoth_jax.train import checkpoint, data, loop, metrics_log, optim, train_step
from data_gen.common import atomic

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"


NonFiniteLossError = loop.NonFiniteLossError


def _require(ok: bool, option: str, message: str) -> None:
  if not ok:
    raise ValueError(f"--config.{option}: {message}")


def validate(config) -> None:
  """Every option that needs no data: refused (ValueError naming --config.<field>) before anything is built."""
  _require(config.batch_size >= 1, "batch_size", f"must be >= 1, got {config.batch_size}")
  _require(config.seq_len >= 2, "seq_len", f"must be >= 2, got {config.seq_len}")
  _require(config.seq_len - 1 <= config.model.max_len, "seq_len",
           f"must be <= model.max_len + 1 = {config.model.max_len + 1}, got {config.seq_len}")
  for name in ("log_every", "eval_every", "checkpoint_every", "keep_checkpoints", "eval_chunk"):
    _require(config[name] >= 1, name, f"must be >= 1, got {config[name]}")
  _require(config.eval_max_per_set >= 0, "eval_max_per_set",
           f"must be >= 0 (0: all probes), got {config.eval_max_per_set}")
  _require(0.0 <= config.target_accuracy <= 1.0, "target_accuracy",
           f"must be in [0, 1] (0: off), got {config.target_accuracy}")
  stop_metrics = [m.strip() for m in config.stop_metrics.split(",") if m.strip()]
  _require(config.target_accuracy == 0 or (stop_metrics and all(
      m.startswith("eval/") and m.endswith("/accuracy") for m in stop_metrics)), "stop_metrics",
           f"must be comma-separated eval/<...>/accuracy metrics when target_accuracy > 0, "
           f"got {config.stop_metrics!r}")
  _require(config.model.compute_dtype in ("auto", "float32", "bfloat16"), "model.compute_dtype",
           f"must be auto, float32 or bfloat16, got {config.model.compute_dtype!r}")
  _require(config.data.seed >= 0, "data.seed", f"must be an integer >= 0, got {config.data.seed}")
  _require(not (config.answer_only and config.data.corpus_dir), "answer_only",
           "needs the on-device sampler (a text corpus carries no answer positions); unset data.corpus_dir")
  model_config(config, vocab_size=1)  # the model's ranges (the vocabulary comes with the dataset)
  optim_config(config).validate()


# The generator names options by its flags; a config user set them as config fields.
_GENERATOR_FLAG_FIELDS = {"subjects": "num_subjects", "relationships": "num_relationships",
                          "objects": "num_objects"}


def _load_dataset_dir(path: str, option: str):
  from data_gen.world import dataset  # pylint: disable=g-import-not-at-top
  d = pathlib.Path(path)
  _require(d.is_dir(), option, f"{d} is not a folder (one written by python -m data_gen.generate)")
  try:
    return dataset.load(d)
  except FileNotFoundError as e:
    raise ValueError(f"--config.{option}: {d} holds no dataset ({e.filename} is missing; write one with "
                     "python -m data_gen.generate)") from None
  except ValueError as e:  # truncated or hand-edited files
    raise ValueError(f"--config.{option}: {e}") from None


def load_dataset(config):
  """The training dataset (data.dir, else built from data.graph/data.corpus); checks data.corpus_dir too."""
  import dataclasses  # pylint: disable=g-import-not-at-top
  from data_gen.common.errors import OptionError
  from data_gen.export import text
  from data_gen.world import dataset
  from data_gen.world.corpus import CorpusConfig
  from data_gen.world.graph import GraphConfig
  if config.data.dir:
    ds = _load_dataset_dir(config.data.dir, "data.dir")
  else:
    try:
      graph_config = GraphConfig(**config.data.graph.to_dict())
      graph_config.validate()
      ds = dataset.build(graph_config, CorpusConfig(**config.data.corpus.to_dict()), seed=config.data.seed)
    except OptionError as e:
      field = _GENERATOR_FLAG_FIELDS.get(e.option, e.option)
      group = "graph" if field in {f.name for f in dataclasses.fields(GraphConfig)} else "corpus"
      message = str(e).split(": ", 1)[1]
      raise ValueError(f"--config.data.{group}.{field}: {message}") from e
  if config.data.corpus_dir:
    c = pathlib.Path(config.data.corpus_dir)
    _require(c.is_dir(), "data.corpus_dir", f"{c} is not a folder (one written by python -m data_gen.generate)")
    _require(bool(text.shard_paths(c)), "data.corpus_dir",
             f"{c} holds no text shards {text.DATA_DIR}/full_text_<i>.txt (write them with python -m "
             "data_gen.generate, without --validation_data_only or --write_graph_only)")
    if (c / dataset.NATIVE_DIR).is_dir():
      _require(_load_dataset_dir(c, "data.corpus_dir").vocab == ds.vocab, "data.corpus_dir",
               f"{c} was written for another vocabulary than the training dataset's (set data.dir to it)")
  return ds


def model_config(config, vocab_size: int) -> model.ModelConfig:
  m = config.model.to_dict()
  if m["compute_dtype"] == "auto":
    m["compute_dtype"] = "float32" if jax.default_backend() == "cpu" else "bfloat16"
  cfg = model.ModelConfig(vocab_size=vocab_size, **m)
  cfg.validate()
  return cfg


def optim_config(config) -> optim.OptimConfig:
  """The optimizer of `config`; its schedule spans `schedule_steps` when set (a run that stops part way
  through a longer schedule: the retrain oracle trains the pretrained run's steps on its schedule)."""
  schedule_steps = int(config.get("schedule_steps", 0) or 0)
  _require(schedule_steps == 0 or schedule_steps >= config.total_steps, "schedule_steps",
           f"must be 0 (= total_steps) or >= total_steps {config.total_steps}, got {schedule_steps}")
  cfg = optim.OptimConfig(
      learning_rate=config.learning_rate, min_lr_ratio=config.min_lr_ratio,
      warmup_steps=config.warmup_steps, total_steps=schedule_steps or config.total_steps,
      weight_decay=config.weight_decay, b1=config.b1, b2=config.b2, grad_clip=config.grad_clip)
  cfg.validate()
  return cfg


# What a work dir holds (a run killed before config.json may hold only some of it).
_WORKDIR_ENTRIES = {CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, "checkpoints"}
# Model fields a resumed run may change (the matmul dtype: a CPU run resumed on a GPU). Outside model.* and
# data.*, anything may change on resume: total_steps, the learning rate, logging, evaluation.
_RESUMABLE_MODEL_FIELDS = {"compute_dtype"}


def check_workdir(config, workdir, vocab_size: int) -> None:
  """Refuses (ValueError naming the option) a work dir that cannot be created, is some other kind of
  folder, or holds a run of another model shape or dataset. Reads only; writes nothing."""
  d = pathlib.Path(workdir)
  if not d.exists():
    parent = next(p for p in d.absolute().parents if p.exists())
    if not (parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)):
      raise ValueError(f"--workdir: cannot create {d}: {parent} is "
                       + ("not a writable folder" if parent.is_dir() else "a file"))
    return
  if not d.is_dir():
    raise ValueError(f"--workdir: {d} is a file; give a folder (new, or a work dir to resume)")
  saved_path = d / CONFIG_FILE
  if not saved_path.is_file():
    other = sorted(e.name for e in d.iterdir()
                   if e.name not in _WORKDIR_ENTRIES and not (e.name.startswith(".") and ".partial" in e.name))
    if other:
      raise ValueError(f"--workdir: {d} is not a pretraining work dir (it holds {', '.join(other[:3])}"
                       f"{', ...' if len(other) > 3 else ''} and no {CONFIG_FILE}); choose a new or empty folder")
    return
  try:
    saved = json.loads(saved_path.read_text())
    saved_model, saved_data = dict(saved["model"]), dict(saved["data"])
  except (ValueError, KeyError, TypeError):
    raise ValueError(f"--workdir: {saved_path} is not a pretraining config; choose a new folder") from None

  def same(option: str, was, now) -> None:
    _require(was == now, option, f"the work dir {d} holds a run with {was!r}, got {now!r}; resume with the "
             "same value or choose a new --workdir")

  for name, value in config.model.to_dict().items():
    if name not in _RESUMABLE_MODEL_FIELDS and name in saved_model:
      same(f"model.{name}", saved_model[name], value)
  if config.data.dir or saved_data.get("dir"):
    was, now = saved_data.get("dir", ""), config.data.dir
    if not (was and now and os.path.realpath(was) == os.path.realpath(now)):
      same("data.dir", was, now)
  else:
    same("data.seed", saved_data.get("seed"), config.data.seed)
    for group in ("graph", "corpus"):
      for name, value in config.data[group].to_dict().items():
        if name in saved_data.get(group, {}):
          same(f"data.{group}.{name}", saved_data[group][name], value)
  was_vocab = saved.get("resolved", {}).get("vocab_size", vocab_size)
  _require(was_vocab == vocab_size, "data.dir" if config.data.dir else "data.graph",
           f"the work dir {d} holds a run with a vocabulary of {was_vocab}, this dataset has {vocab_size}; "
           "resume with the same dataset or choose a new --workdir")


def _resolved_config(config, cfg: model.ModelConfig, mesh) -> dict:
  resolved = config.to_dict()
  resolved["resolved"] = {"vocab_size": cfg.vocab_size, "compute_dtype": cfg.compute_dtype,
                          "num_devices": mesh.size, "backend": jax.default_backend()}
  return resolved


def _sampler(config, ds, mesh):
  if config.data.corpus_dir:
    from data_gen.export import text  # pylint: disable=g-import-not-at-top
    stream = text.read_token_stream(config.data.corpus_dir, ds.vocab)
    sample_fn = data.stream_sampler(stream, config.batch_size, config.seq_len)
  else:
    sample_fn = ds.sampler(config.batch_size, config.seq_len)
  return data.sharded_sampler(sample_fn, train_step.batch_sharding(mesh))


def _finished_summary(workdir: pathlib.Path, start: int, config) -> dict | None:
  path = workdir / SUMMARY_FILE
  if not path.exists():
    return None
  summary = json.loads(path.read_text())
  if summary.get("step") == start and (summary.get("reached_target") or start >= config.total_steps):
    return summary
  return None


def _throughput_record(schedule, flops_per_token: float, peak: float):
  def record(step: int, m: dict, tps: float) -> dict:
    return {"step": step, "loss": float(m["loss"]), "grad_norm": float(m["grad_norm"]),
            "learning_rate": float(schedule(step - 1)), "tokens_per_s": tps,
            "mfu": flops.mfu(tps, flops_per_token, peak), "loss_tokens": float(m["tokens"])}
  return record


def run(config, workdir) -> dict:
  """Trains (or resumes) to config.total_steps or the target accuracy; returns the final summary."""
  # Setup: every option is checked before the work dir appears.
  validate(config)
  lead = jax.process_index() == 0
  ds = load_dataset(config)
  if not ds.corpus.shuffle and not config.data.corpus_dir:
    # A row never starts mid-document; one shorter than a biography would cut its last facts every time.
    longest = ds.tables.document_length
    _require(config.seq_len >= longest, "seq_len",
             f"must be >= {longest} in biography mode (the longest biography), got {config.seq_len}")
  cfg = model_config(config, ds.vocab.size)
  ocfg = optim_config(config)
  optimizer = optim.make_optimizer(ocfg)
  mesh = train_step.make_mesh()
  _require(config.batch_size % mesh.size == 0, "batch_size",
           f"must be a multiple of the {mesh.size} devices, got {config.batch_size}")
  check_workdir(config, workdir, cfg.vocab_size)
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)

  manager = checkpoint.make_manager(workdir, config.keep_checkpoints, config.checkpoint_every)
  state, start = checkpoint.restore_latest(manager, train_step.abstract_state(cfg, optimizer, mesh))
  if state is not None:
    finished = _finished_summary(workdir, start, config)
    if finished is not None:
      if lead:
        print(f"{workdir}: already finished at step {start}")
      manager.close()
      return finished
  else:
    state = train_step.init_state(jax.random.key(config.seed), cfg, optimizer, mesh)
  if lead:
    metrics_log.truncate_after(workdir / METRICS_FILE, start)
    atomic.write_json_atomic(workdir / CONFIG_FILE, _resolved_config(config, cfg, mesh))
  writer = metrics_log.JsonlWriter(workdir / METRICS_FILE) if lead else None

  exact_match = knowledge.make_exact_match_fn(cfg, mesh)
  periodic_probes = ds.probes(max_per_set=config.eval_max_per_set or None)
  all_probes = periodic_probes if not config.eval_max_per_set else None
  stop_metrics = [m.strip() for m in config.stop_metrics.split(",") if m.strip()]

  tokens_per_step = config.batch_size * (config.seq_len - 1)
  peak = flops.measure_matmul_peak(dtype=np.float32 if cfg.compute_dtype == "float32" else "bfloat16")
  if jax.default_backend() != "cpu":
    peak *= mesh.size  # fake CPU devices share one machine; accelerators each bring their own peak
  if lead:
    print(f"model: {model.num_params(state['params']):,} parameters, vocab {cfg.vocab_size}, "
          f"{mesh.size} device(s) ({jax.default_backend()}), {cfg.compute_dtype}; "
          f"starting at step {start}/{config.total_steps}")

  # The loop.
  spec = loop.LoopSpec(total_steps=config.total_steps, log_every=config.log_every,
                       checkpoint_every=config.checkpoint_every, eval_every=config.eval_every,
                       show_progress=config.progress)
  result = loop.run_loop(
      state, start, spec=spec,
      step_fn=train_step.make_train_step(cfg, optimizer, mesh, answer_only=config.answer_only),
      sample=_sampler(config, ds, mesh), manager=manager, writer=writer, lead=lead,
      record=_throughput_record(optim.schedule(ocfg),
                                model.flops_per_token(cfg, config.seq_len - 1), peak),
      tokens_per_step=tokens_per_step,
      evaluate=lambda st, _: knowledge.evaluate(exact_match, st["params"], periodic_probes, config.eval_chunk),
      stop=lambda ev: config.target_accuracy > 0 and all(
          ev.get(k, -1.0) >= config.target_accuracy for k in stop_metrics))

  # The final evaluation covers every probe.
  last = result.last_eval
  if last is not None and last["step"] == result.step and all_probes is not None:
    final = last  # the run stopped at an evaluation over every probe
  else:
    t0 = time.perf_counter()
    final = knowledge.evaluate(exact_match, result.state["params"],
                              all_probes if all_probes is not None else ds.probes(), config.eval_chunk)
    final.update(step=result.step, eval_s=time.perf_counter() - t0)
    if writer:
      writer.write(final)
  manager.close()
  summary = {"step": result.step, "reached_target": result.reached_target,
             **{k: v for k, v in final.items() if k.endswith("accuracy")}}
  if writer:
    writer.close()
    atomic.write_json_atomic(workdir / SUMMARY_FILE, summary)
  return summary


def accuracy_table(summary: dict) -> str:
  """Per-probe-set accuracy lines for the terminal."""
  rows = [(k[len("eval/"):-len("/accuracy")], v) for k, v in sorted(summary.items())
          if k.startswith("eval/") and k.endswith("/accuracy") and "/rel" not in k]
  return "\n".join(f"  {name:<40s} {100 * v:6.2f}%" for name, v in rows)
