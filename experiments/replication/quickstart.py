"""What experiments/notebooks/quickstart.ipynb calls (the notebook holds no logic): pick a size by the
backend found, run experiments at that size, and return the report and its plots."""

from __future__ import annotations

import pathlib

ACCELERATORS = ("gpu", "tpu", "cuda", "rocm")


def size_for_backend(backend: str, override: str | None = None) -> str:
  """`accel` on a GPU or TPU, `cpu` otherwise; `override` (tiny, cpu, accel) wins when given."""
  from experiments.configs import paper  # pylint: disable=g-import-not-at-top
  if override:
    if override not in paper.SIZES:
      raise ValueError(f"size must be one of {', '.join(paper.SIZES)}, got {override!r}")
    return override
  return "accel" if backend.lower() in ACCELERATORS else "cpu"


def run(size: str, output: str | pathlib.Path, experiments=("rank",)) -> pathlib.Path:
  """Runs (or resumes) `experiments` at `size` under `output`; returns the assembled report's path."""
  from experiments.configs import paper  # pylint: disable=g-import-not-at-top
  from experiments.replication import results, runs  # pylint: disable=g-import-not-at-top
  root = pathlib.Path(output)
  for name in experiments:
    runs.run_experiment(paper.get_config(f"{name},{size}"), root)
  return results.assemble_docs(root, root / "report" / "results.md")


def plots(report: pathlib.Path) -> list[pathlib.Path]:
  return sorted((pathlib.Path(report).parent / "figures").glob("*.png"))
