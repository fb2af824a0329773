"""A dependency-free progress line on stderr: bar, done/total, rate, ETA and an optional note (the
generator's corpus writer and the trainer share it)."""

from __future__ import annotations

import math
import sys
import time


def _duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  seconds = int(seconds)
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
  """Redrawn at most every `min_interval` seconds (and at the end). `start` is where a resumed job
  begins, so the rate and ETA count only work done in this run."""

  def __init__(self, total: int, unit: str = "it", label: str = "", start: int = 0, enabled: bool = True,
               stream=None, min_interval: float = 0.5, width: int = 24):
    self.total, self.unit, self.label, self.width = total, unit, label, width
    self.enabled = enabled
    self.stream = sys.stderr if stream is None else stream
    self.min_interval = min_interval
    self.done = self._first = start
    self.note = ""
    self._t0 = self._last = time.perf_counter()

  def update(self, n: int, note: str = "") -> None:
    self.advance_to(self.done + n, note)

  def advance_to(self, done: int, note: str = "") -> None:
    self.done, self.note = done, note
    now = time.perf_counter()
    if self.enabled and (now - self._last >= self.min_interval or self.done >= self.total):
      self._last = now
      self.stream.write("\r" + self.line(now))
      self.stream.flush()

  def line(self, now: float | None = None) -> str:
    elapsed = max((now or time.perf_counter()) - self._t0, 1e-9)
    rate = (self.done - self._first) / elapsed
    eta = (self.total - self.done) / rate if rate > 0 else float("inf")
    filled = int(self.width * self.done / max(self.total, 1))
    bar = "#" * filled + "-" * (self.width - filled)
    text = (f"{self.label} [{bar}] {self.done}/{self.total} {self.unit} {rate:,.1f} {self.unit}/s "
            f"ETA {_duration(eta)}")
    return (text + (f" {self.note}" if self.note else "")).lstrip()

  def close(self) -> None:
    if self.enabled:
      self.stream.write("\r" + self.line() + "\n")
      self.stream.flush()
