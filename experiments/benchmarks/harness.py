"""What every benchmark suite shares: the CPU model recorded with each figure, a median-of-repeats timer,
and the main of a suite run alone."""

from __future__ import annotations

import json
import pathlib
import platform
import statistics
import sys
import time

def cpu_model() -> str:
  try:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()

def median_time(fn, repeats: int) -> tuple[float, list[float]]:
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return statistics.median(times), times

def script_main(run_fn, argv, options=("--quick",)) -> int:
  """A bench module run alone (`python -m experiments.benchmarks.<suite> [--quick]`): one JSON row per line; an
  unknown argument is refused in one line (exit 2). run_fn takes one bool per option, in order."""
  for arg in argv:
    if arg not in options:
      print(f"error: {arg.split('=')[0]}: not an option here (allowed: {', '.join(options)})", file=sys.stderr)
      return 2
  for row in run_fn(*(o in argv for o in options)):
    print(json.dumps(row), flush=True)
  return 0
