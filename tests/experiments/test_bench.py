"""The benchmark binary runs and reports what `make bench` promises (a smoke run, never a timing check)."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_data_and_edits_quick_write_json(tmp_path):
  out = tmp_path / "bench.json"
  for suite in ("data", "edits"):
    proc = subprocess.run([sys.executable, "-m", "experiments.bench", f"--suite={suite}", "--quick",
                           f"--output={out}"], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert rows and all(r["suite"] == suite and "name" in r for r in rows)
    assert json.loads(out.read_text())["results"] == rows
  names = {r["name"] for r in rows}
  assert names  # the edits suite measured something


@pytest.mark.slow
def test_bench_train_quick_reports_the_litgpt_shape():
  proc = subprocess.run([sys.executable, "-m", "experiments.bench", "--suite=train", "--quick"], cwd=ROOT,
                        capture_output=True, text=True, timeout=900, env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert proc.returncode == 0, proc.stderr
  rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
  litgpt = [r for r in rows if r.get("width") == 128 and r.get("layers") == 4 and r.get("vocab") == 2432]
  assert litgpt and all(k in litgpt[0] for k in ("tokens_per_s", "mfu", "compile_s"))


@pytest.mark.slow
def test_bench_edit_suite_closed_form_rows_quick():
  """The edit suite's closed-form rows (rank-one edits/s vmapped, one least-squares edit with its covariance)
  as the suite module prints them (the LoRA row is benchmarks.editing.measure, measured the same way)."""
  proc = subprocess.run([sys.executable, "-m", "experiments.benchmarks.closed_form", "--quick"], cwd=ROOT,
                        capture_output=True, text=True, timeout=900, env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert proc.returncode == 0, proc.stderr
  rows = {r["name"]: r for r in (json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{"))}
  rome, memit = rows["edit/rome_vmapped"], rows["edit/memit_100"]
  assert rome["vmap_edits_per_s"] > 0 and rome["loop_edits_per_s"] > 0 and rome["cpu"]
  assert rome["workload"]["width"] == 128 and rome["workload"]["vocab"] == 2432  # the LoRA workload's shape
  assert memit["seconds"] >= memit["covariance_s"] > 0 and memit["cpu"]
