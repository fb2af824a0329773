"""A dependency-free progress bar on stderr: done/total, rate and ETA, redrawn at most twice a second."""

from __future__ import annotations

import sys
import time


class Progress:

  def __init__(self, total: int, unit: str = "it", label: str = "", stream=None, min_interval: float = 0.5):
    self.total, self.unit, self.label = total, unit, label
    self.stream = sys.stderr if stream is None else stream
    self.min_interval = min_interval
    self.done = 0
    self.start = self._last = time.perf_counter()

  def update(self, n: int) -> None:
    self.done += n
    now = time.perf_counter()
    if now - self._last >= self.min_interval or self.done >= self.total:
      self._last = now
      self.stream.write("\r" + self.line(now))
      self.stream.flush()

  def line(self, now: float | None = None) -> str:
    elapsed = max((now or time.perf_counter()) - self.start, 1e-9)
    rate = self.done / elapsed
    eta = (self.total - self.done) / rate if rate > 0 else float("inf")
    pct = 100.0 * self.done / max(self.total, 1)
    return (f"{self.label} {self.done}/{self.total} {self.unit} ({pct:5.1f}%) "
            f"{rate:,.0f} {self.unit}/s ETA {eta:6.1f}s")

  def close(self) -> None:
    self.stream.write("\r" + self.line() + "\n")
    self.stream.flush()
