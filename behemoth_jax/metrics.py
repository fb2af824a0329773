"""Metrics as JSON lines (one object per logging step) and a terminal progress bar."""

from __future__ import annotations

import json
import math
import os
import pathlib
import sys
import time


class JsonlWriter:
  """Appends one JSON object per line, flushed at once, so the file is never left mid-line."""

  def __init__(self, path):
    self.path = pathlib.Path(path)
    self.path.parent.mkdir(parents=True, exist_ok=True)
    self._f = open(self.path, "a", encoding="utf-8")

  def write(self, record: dict) -> None:
    self._f.write(json.dumps(record, sort_keys=True, allow_nan=True) + "\n")
    self._f.flush()

  def close(self) -> None:
    self._f.close()


def truncate_after(path, step: int) -> None:
  """Drops lines with `step` > step (written by a run that died after its last checkpoint).

  Rewritten to a temporary file and renamed, so a crash here leaves either version, never a mix.
  """
  path = pathlib.Path(path)
  if not path.exists():
    return
  kept = []
  for line in path.read_text(encoding="utf-8").splitlines():
    try:
      record = json.loads(line)
    except json.JSONDecodeError:
      continue  # a partial last line from a hard kill
    if record.get("step", 0) <= step:
      kept.append(line)
  tmp = path.with_suffix(path.suffix + ".tmp")
  tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
  os.replace(tmp, path)


def read_jsonl(path) -> list[dict]:
  return [json.loads(line) for line in pathlib.Path(path).read_text(encoding="utf-8").splitlines() if line]


def _duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  seconds = int(seconds)
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class ProgressBar:
  """One updating line on stderr: step, loss, tokens/s and ETA."""

  def __init__(self, total: int, start: int = 0, enabled: bool = True, stream=None, width: int = 24):
    self.total, self.start = total, start
    self.enabled = enabled
    self.stream = stream or sys.stderr
    self.width = width
    self._t0 = time.perf_counter()

  def update(self, step: int, tokens_per_s: float, loss: float) -> None:
    if not self.enabled:
      return
    frac = step / max(self.total, 1)
    filled = int(frac * self.width)
    elapsed = time.perf_counter() - self._t0
    done = step - self.start
    eta = elapsed / done * (self.total - step) if done > 0 else float("inf")
    bar = "#" * filled + "-" * (self.width - filled)
    self.stream.write(f"\r[{bar}] {step}/{self.total} loss {loss:.4f} {tokens_per_s:,.0f} tok/s "
                      f"ETA {_duration(eta)}")
    self.stream.flush()

  def close(self) -> None:
    if self.enabled:
      self.stream.write("\n")
      self.stream.flush()
