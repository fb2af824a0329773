"""The pretraining loop: data, model, optimizer, checkpoints, metrics and evaluation for one work dir.

`run(config, workdir)` is what `python -m experiments.pretrain` calls; it takes a resolved config object
(never reads flags), so tests drive it in-process. Restarting it on the same work dir resumes from the
latest checkpoint: the data stream is a pure function of the step and training draws no randomness, so
a resumed run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import pathlib
import time

import jax
import numpy as np

from behemoth_jax import checkpoint, data, evaluate, flops, metrics, model, optim, train
from data_gen import cli, progress

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"


class NonFiniteLossError(RuntimeError):
  pass


def _require(ok: bool, option: str, message: str) -> None:
  if not ok:
    raise ValueError(f"--config.{option}: {message}")


def validate(config) -> None:
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
  _require(config.model.compute_dtype in ("auto", "float32", "bfloat16"), "model.compute_dtype",
           f"must be auto, float32 or bfloat16, got {config.model.compute_dtype!r}")
  _require(not (config.answer_only and config.data.corpus_dir), "answer_only",
           "needs the on-device sampler (a text corpus carries no answer positions); unset data.corpus_dir")


# The generator names options by its flags; a config user set them as config fields.
_GENERATOR_FLAG_FIELDS = {"subjects": "num_subjects", "relationships": "num_relationships",
                          "objects": "num_objects"}


def load_dataset(config):
  import dataclasses  # pylint: disable=g-import-not-at-top
  from data_gen import dataset
  from data_gen.corpus import CorpusConfig
  from data_gen.errors import OptionError
  from data_gen.graph import GraphConfig
  if config.data.dir:
    return dataset.load(config.data.dir)
  try:
    graph_config = GraphConfig(**config.data.graph.to_dict())
    graph_config.validate()
    return dataset.build(graph_config, CorpusConfig(**config.data.corpus.to_dict()), seed=config.data.seed)
  except OptionError as e:
    field = _GENERATOR_FLAG_FIELDS.get(e.option, e.option)
    group = "graph" if field in {f.name for f in dataclasses.fields(GraphConfig)} else "corpus"
    message = str(e).split(": ", 1)[1]
    raise ValueError(f"--config.data.{group}.{field}: {message}") from e


def model_config(config, vocab_size: int) -> model.ModelConfig:
  m = config.model.to_dict()
  if m["compute_dtype"] == "auto":
    m["compute_dtype"] = "float32" if jax.default_backend() == "cpu" else "bfloat16"
  cfg = model.ModelConfig(vocab_size=vocab_size, **m)
  cfg.validate()
  return cfg


def optim_config(config) -> optim.OptimConfig:
  return optim.OptimConfig(
      learning_rate=config.learning_rate, min_lr_ratio=config.min_lr_ratio,
      warmup_steps=config.warmup_steps, total_steps=config.total_steps,
      weight_decay=config.weight_decay, b1=config.b1, b2=config.b2, grad_clip=config.grad_clip)


def _write_json_atomic(path: pathlib.Path, obj) -> None:
  cli.write_text_atomic(path, json.dumps(obj, indent=1, sort_keys=True) + "\n")


def run(config, workdir) -> dict:
  """Trains (or resumes) to config.total_steps or the target accuracy; returns the final summary."""
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
  schedule = optim.schedule(ocfg)
  mesh = train.make_mesh()
  _require(config.batch_size % mesh.size == 0, "batch_size",
           f"must be a multiple of the {mesh.size} devices, got {config.batch_size}")
  # Only now, with every option checked, does the work dir appear.
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)

  manager = checkpoint.make_manager(workdir, config.keep_checkpoints, config.checkpoint_every)
  state, start = checkpoint.restore_latest(manager, train.abstract_state(cfg, optimizer, mesh))
  summary_path = workdir / SUMMARY_FILE
  if state is not None and summary_path.exists():
    summary = json.loads(summary_path.read_text())
    if summary.get("step") == start and (summary.get("reached_target") or start >= config.total_steps):
      if lead:
        print(f"{workdir}: already finished at step {start}")
      return summary
  if state is None:
    state = train.init_state(jax.random.key(config.seed), cfg, optimizer, mesh)
  if lead:
    metrics.truncate_after(workdir / METRICS_FILE, start)
    resolved = config.to_dict()
    resolved["resolved"] = {"vocab_size": cfg.vocab_size, "compute_dtype": cfg.compute_dtype,
                            "num_devices": mesh.size, "backend": jax.default_backend()}
    _write_json_atomic(workdir / CONFIG_FILE, resolved)
  writer = metrics.JsonlWriter(workdir / METRICS_FILE) if lead else None

  if config.data.corpus_dir:
    from data_gen import text
    stream = text.read_token_stream(config.data.corpus_dir, ds.vocab)
    sample_fn = data.stream_sampler(stream, config.batch_size, config.seq_len)
  else:
    sample_fn = ds.sampler(config.batch_size, config.seq_len)
  sample = data.sharded_sampler(sample_fn, train.batch_sharding(mesh))
  train_step = train.make_train_step(cfg, optimizer, mesh, answer_only=config.answer_only)

  exact_match = evaluate.make_exact_match_fn(cfg, mesh)
  periodic_probes = ds.probes(max_per_set=config.eval_max_per_set or None)
  all_probes = periodic_probes if not config.eval_max_per_set else None
  stop_metrics = [m.strip() for m in config.stop_metrics.split(",") if m.strip()]

  tokens_per_step = config.batch_size * (config.seq_len - 1)
  flops_per_token = model.flops_per_token(cfg, config.seq_len - 1)
  peak = flops.measure_matmul_peak(dtype=np.float32 if cfg.compute_dtype == "float32" else "bfloat16")
  if jax.default_backend() != "cpu":
    peak *= mesh.size  # fake CPU devices share one machine; accelerators each bring their own peak
  if lead:
    print(f"model: {model.num_params(state['params']):,} parameters, vocab {cfg.vocab_size}, "
          f"{mesh.size} device(s) ({jax.default_backend()}), {cfg.compute_dtype}; "
          f"starting at step {start}/{config.total_steps}")

  bar = progress.Progress(config.total_steps, "steps", start=start, enabled=lead and config.progress,
                          min_interval=0.0)
  window = {"t0": time.perf_counter(), "steps": 0}
  compile_s = None

  def check_and_log(step: int, m) -> None:
    m = jax.device_get(m)
    loss = float(m["loss"])
    if not (math.isfinite(loss) and math.isfinite(float(m["grad_norm"]))):
      raise NonFiniteLossError(
          f"non-finite loss {loss} / grad norm {float(m['grad_norm'])} at step {step}; stopped. "
          f"The last good checkpoint is step {manager.latest_step()} in {workdir}/checkpoints")
    if step % config.log_every and step != config.total_steps:
      return
    dt = time.perf_counter() - window["t0"]
    tps = window["steps"] * tokens_per_step / dt if dt > 0 and window["steps"] else float("nan")
    record = {"step": step, "loss": loss, "grad_norm": float(m["grad_norm"]),
              "learning_rate": float(schedule(step - 1)), "tokens_per_s": tps,
              "mfu": flops.mfu(tps, flops_per_token, peak), "loss_tokens": float(m["tokens"])}
    if compile_s is not None and step - start <= config.log_every:
      record["compile_s"] = compile_s
    if writer:
      writer.write(record)
    bar.advance_to(step, f"loss {loss:.4f} {tps:,.0f} tok/s")
    window["t0"], window["steps"] = time.perf_counter(), 0

  def run_eval(step: int, probes) -> dict:
    t0 = time.perf_counter()
    result = evaluate.evaluate(exact_match, state["params"], probes, config.eval_chunk)
    result["step"] = step
    result["eval_s"] = time.perf_counter() - t0
    if writer:
      writer.write(result)
    window["t0"], window["steps"] = time.perf_counter(), 0
    return result

  pending = None
  step = start
  reached_target = False
  last_eval = None
  try:
    while step < config.total_steps:
      t_step = time.perf_counter()
      state, m = train_step(state, sample(step))
      step += 1
      window["steps"] += 1
      if compile_s is None:
        jax.block_until_ready(m)
        compile_s = time.perf_counter() - t_step
        window["t0"], window["steps"] = time.perf_counter(), 0  # throughput excludes compilation
      # Check the previous step while this one runs: one step of lag keeps the device queue full.
      if pending is not None:
        check_and_log(*pending)
      pending = (step, m)
      boundary = (step % config.checkpoint_every == 0 or step % config.eval_every == 0
                  or step == config.total_steps)
      if boundary:
        check_and_log(*pending)  # never save or evaluate past an unchecked step
        pending = None
      if step % config.eval_every == 0 and step != config.total_steps:
        last_eval = run_eval(step, periodic_probes)
        if config.target_accuracy > 0 and all(
            last_eval.get(k, -1.0) >= config.target_accuracy for k in stop_metrics):
          reached_target = True
      if step % config.checkpoint_every == 0 or reached_target:
        checkpoint.save(manager, step, jax.tree.map(lambda x: x.copy(), state), force=reached_target)
      if reached_target:
        break
    if pending is not None:
      check_and_log(*pending)
  finally:
    bar.close()
    manager.wait_until_finished()

  if last_eval is not None and last_eval["step"] == step and all_probes is not None:
    final = last_eval  # the run stopped at an evaluation over every probe
  else:
    final = run_eval(step, all_probes if all_probes is not None else ds.probes())
  if manager.latest_step() != step:
    checkpoint.save(manager, step, state, force=True)
    manager.wait_until_finished()
  manager.close()
  summary = {"step": step, "reached_target": reached_target,
             **{k: v for k, v in final.items() if k.endswith("accuracy")}}
  if writer:
    writer.close()
    _write_json_atomic(summary_path, summary)
  return summary


def accuracy_table(summary: dict) -> str:
  """Per-probe-set accuracy lines for the terminal."""
  rows = [(k[len("eval/"):-len("/accuracy")], v) for k, v in sorted(summary.items())
          if k.startswith("eval/") and k.endswith("/accuracy") and "/rel" not in k]
  return "\n".join(f"  {name:<40s} {100 * v:6.2f}%" for name, v in rows)
