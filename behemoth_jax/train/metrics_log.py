"""Metrics as JSON lines: one object per logging step, appended line by line."""

from __future__ import annotations

import json
import pathlib

from data_gen.common import atomic


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
  atomic.write_text_atomic(path, "".join(line + "\n" for line in kept))


def read_jsonl(path) -> list[dict]:
  return [json.loads(line) for line in pathlib.Path(path).read_text(encoding="utf-8").splitlines() if line]
