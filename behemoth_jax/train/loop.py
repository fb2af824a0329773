"""The generic training loop shared by pretraining and fine-tuning (batch edits).

`run_loop` owns what every run needs and nothing model-specific: a jitted `step(state, batch)`, batches as
a pure function of the step, one JSON line of metrics per logging step, periodic evaluation, orbax
checkpoints, resume from the latest one, and a stop on a non-finite loss. The caller builds the state,
the step function and the evaluation (see `pretraining.py` for pretraining, `edit/runner.py` for fine-tuning).

A step's metrics are checked one step late, so the device queue stays full; the loop never saves or
evaluates past an unchecked step.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable

import jax

from behemoth_jax.train import checkpoint
from data_gen.common import progress


class NonFiniteLossError(RuntimeError):
  pass


@dataclasses.dataclass(frozen=True)
class LoopSpec:
  total_steps: int
  log_every: int
  checkpoint_every: int
  eval_every: int = 0  # 0: no periodic evaluation
  show_progress: bool = True
  unit: str = "steps"


@dataclasses.dataclass
class LoopResult:
  state: dict
  step: int
  last_eval: dict | None
  reached_target: bool


def run_loop(state, start: int, *, spec: LoopSpec, step_fn: Callable, sample: Callable[[int], dict],
             manager, writer=None, record: Callable[[int, dict, float], dict] | None = None,
             tokens_per_step: int = 0, evaluate: Callable[[dict, int], dict] | None = None,
             stop: Callable[[dict], bool] | None = None, lead: bool = True) -> LoopResult:
  """Runs `step_fn` from step `start` to spec.total_steps (or until `stop(eval)` says so).

  record(step, host metrics, tokens_per_s) -> the JSON line to write (default: the metrics as floats).
  evaluate(state, step) -> metrics, every spec.eval_every steps (not at the last step: the caller decides
  what the final evaluation covers). Checkpoints every spec.checkpoint_every steps, at a target stop, and
  at the end.
  """
  bar = progress.Progress(spec.total_steps, spec.unit, start=start, enabled=lead and spec.show_progress,
                          min_interval=0.0)
  window = {"t0": time.perf_counter(), "steps": 0}
  compile_s = None

  def check_and_log(step: int, m) -> None:
    m = jax.device_get(m)
    loss, grad_norm = float(m["loss"]), float(m.get("grad_norm", 0.0))
    if not (math.isfinite(loss) and math.isfinite(grad_norm)):
      latest = manager.latest_step()
      where = (f"The last good checkpoint is step {latest} in {manager.directory}" if latest is not None
               else f"No checkpoint was written yet ({manager.directory} is empty); a rerun starts over")
      raise NonFiniteLossError(f"non-finite loss {loss} / grad norm {grad_norm} at step {step}; stopped. {where}")
    if step % spec.log_every and step != spec.total_steps:
      return
    dt = time.perf_counter() - window["t0"]
    tps = window["steps"] * tokens_per_step / dt if dt > 0 and window["steps"] else float("nan")
    line = (record(step, m, tps) if record else
            {"step": step, **{k: float(v) for k, v in m.items()}})
    if compile_s is not None and step - start <= spec.log_every:
      line["compile_s"] = compile_s
    if writer:
      writer.write(line)
    bar.advance_to(step, f"loss {loss:.4f}" + (f" {tps:,.0f} tok/s" if tokens_per_step else ""))
    window["t0"], window["steps"] = time.perf_counter(), 0

  pending = None
  step = start
  reached_target = False
  last_eval = None
  try:
    while step < spec.total_steps:
      t_step = time.perf_counter()
      state, m = step_fn(state, sample(step))
      step += 1
      window["steps"] += 1
      if compile_s is None:
        jax.block_until_ready(m)
        compile_s = time.perf_counter() - t_step
        window["t0"], window["steps"] = time.perf_counter(), 0  # throughput excludes compilation
      if pending is not None:
        check_and_log(*pending)
      pending = (step, m)
      evaluate_now = evaluate is not None and spec.eval_every and step % spec.eval_every == 0
      if step % spec.checkpoint_every == 0 or evaluate_now or step == spec.total_steps:
        check_and_log(*pending)
        pending = None
      if evaluate_now and step != spec.total_steps:
        t0 = time.perf_counter()
        last_eval = {"step": step, **evaluate(state, step)}
        last_eval["eval_s"] = time.perf_counter() - t0
        if writer:
          writer.write(last_eval)
        window["t0"], window["steps"] = time.perf_counter(), 0
        reached_target = bool(stop and stop(last_eval))
      if step % spec.checkpoint_every == 0 or reached_target:
        checkpoint.save(manager, step, jax.tree.map(lambda x: x.copy(), state), force=reached_target)
      if reached_target:
        break
    if pending is not None:
      check_and_log(*pending)
  finally:
    bar.close()
    manager.wait_until_finished()
  if manager.latest_step() != step:
    checkpoint.save(manager, step, state, force=True)
    manager.wait_until_finished()
  return LoopResult(state=state, step=step, last_eval=last_eval, reached_target=reached_target)
