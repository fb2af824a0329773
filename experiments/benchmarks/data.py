r"""Generator speed: the whole binary against the original's, writing the corpus, sampling on device.

  python -m experiments.benchmarks.data [--quick] [--original_dir=PATH]
  BEHEMOTH_ORIGINAL_DIR=PATH make bench

The corpus shape is the one the original was timed on (S=10000, R=6, O=100, n=50, shuffled: 3M sentences,
the original's 30 shards). Both binaries run in subprocesses, so wall times include interpreter start and
imports. Given a checkout of the original (its create_data.py and base_tokenizer/), it runs in the same
session, interleaved with ours, and the speed-up is the ratio of medians; without one, the speed-up is
against the recorded ORIGINAL_CORPUS_S. `stages` says where our binary's time goes.
"""

from __future__ import annotations

import json
import os
import pathlib
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from absl import flags

from data_gen.common import cli
from experiments.benchmarks import harness

# The original on this project's 2-core AMD EPYC machine (issue 8: 33.9 s; earlier runs 35 s), peak 466 MB.
ORIGINAL_CORPUS_S = 33.9
ORIGINAL_CORPUS_PEAK_MB = 466.0
ORIGINAL_SENTENCES_PER_S = 86_000
LITGPT_TOKENS_PER_S = 10_800  # what the trainer must at least consume; the sampler must be >= 50x faster
SHAPE = {"subjects": 10000, "relationships": 6, "objects": 100, "repeats": 50}
ORIGINAL_ENV, ORIGINAL_PYTHON_ENV = "BEHEMOTH_ORIGINAL_DIR", "BEHEMOTH_ORIGINAL_PYTHON"
ROOT = pathlib.Path(__file__).resolve().parents[2]


def _timed(cmd: list[str], cwd) -> tuple[float, float, str]:
  """(wall s, CPU s of the process tree, stdout) of one command."""
  before = resource.getrusage(resource.RUSAGE_CHILDREN)
  start = time.perf_counter()
  proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=dict(os.environ, JAX_PLATFORMS="cpu"))
  wall = time.perf_counter() - start
  after = resource.getrusage(resource.RUSAGE_CHILDREN)
  if proc.returncode:
    raise RuntimeError(f"{' '.join(cmd)}: {proc.stderr[-2000:]}")
  return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, proc.stdout


def bench_corpus_binary(quick: bool, original_dir: str | None = None, runs: int = 5,
                        original_runs: int = 3) -> dict:
  shape = dict(SHAPE, repeats=5) if quick else SHAPE
  runs, original_runs = (2, 1) if quick else (runs, original_runs)
  ours_flags = [f"--{k}={v}" for k, v in shape.items()] + ["--shuffle", "--seed=0"]
  original_flags = ["-s", str(shape["subjects"]), "-r", str(shape["relationships"]), "-o", str(shape["objects"]),
                    "-n", str(shape["repeats"]), "--shuffle"]
  ours, original, summary = [], [], {}
  with tempfile.TemporaryDirectory() as tmp:
    for i in range(max(runs, original_runs if original_dir else 0)):  # interleaved: both see the same load
      if original_dir and i < original_runs:
        out = pathlib.Path(tmp, "original")
        python = os.environ.get(ORIGINAL_PYTHON_ENV, sys.executable)
        original.append(_timed([python, "create_data.py", *original_flags, "--output-dir", str(out)],
                                original_dir)[:2])
        shutil.rmtree(out)
      if i < runs:
        out = pathlib.Path(tmp, "ours")
        wall, cpu, stdout = _timed([sys.executable, "-m", "data_gen.generate", f"--output_dir={out}",
                                    *ours_flags], ROOT)
        ours.append((wall, cpu))
        summary = json.loads(stdout.strip().splitlines()[-1])
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        shutil.rmtree(out)
  median = lambda xs, k: round(statistics.median(x[k] for x in xs), 3)  # noqa: E731
  row = {"name": "data/generate_binary", "cpu": harness.cpu_model(), "cpu_count": os.cpu_count(), "shape": shape,
         "flags": ours_flags, "runs": runs, "wall_s_median": median(ours, 0), "cpu_s_median": median(ours, 1),
         "wall_s_all": [round(w, 3) for w, _ in ours], "sentences": summary["sentences"],
         "shards": summary["shards"], "peak_rss_mb": summary["peak_rss_mb"], "bytes_written": size,
         "includes": "interpreter start, imports, graph, probes, tokenizer, metadata, corpus"}
  scale = summary["sentences"] / 3_000_000  # the recorded reference is for the full shape
  if original:
    row |= {"original_runs": len(original), "original_wall_s_median": median(original, 0),
            "original_cpu_s_median": median(original, 1), "original_wall_s_all": [round(w, 3) for w, _ in original],
            "speedup_vs_original": round(median(original, 0) / median(ours, 0), 1),
            "reference": "the original, same session, interleaved"}
  else:
    row |= {"speedup_vs_original": round(ORIGINAL_CORPUS_S * scale / median(ours, 0), 1),
            "original_peak_mb": ORIGINAL_CORPUS_PEAK_MB,
            "reference": f"recorded: the original took {ORIGINAL_CORPUS_S} s on a 2-core AMD EPYC (set "
                         f"{ORIGINAL_ENV} to a checkout of the original to time it in the same run)"}
  return row


_STAGES = r"""
import json, sys, time, pathlib, tempfile
t0 = time.perf_counter()
from data_gen.world import dataset
from data_gen.export import writer
from data_gen.world.corpus import CorpusConfig
from data_gen.world.graph import GraphConfig
t1 = time.perf_counter()
shape = json.loads(sys.argv[1])
ds = dataset.build(GraphConfig(num_subjects=shape["subjects"], num_relationships=shape["relationships"],
                               num_objects=shape["objects"]), CorpusConfig(repeats=shape["repeats"]), 0)
ds.tables
t2 = time.perf_counter()
out = pathlib.Path(tempfile.mkdtemp())
writer.write_dataset(out, ds, writer.default_shards(ds.graph.config, shape["repeats"]), {}, corpus=False)
t3 = time.perf_counter()
writer.keep_freed_memory()  # as the binary does
writer.write_corpus(out / "data", ds, writer.default_shards(ds.graph.config, shape["repeats"]), False)
t4 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "graph_and_tables_s": t2 - t1, "metadata_probes_tokenizer_s": t3 - t2,
                  "corpus_s": t4 - t3}))
"""


def bench_stages(quick: bool) -> dict:
  """Where the binary's time goes: interpreter start alone, then each stage in one fresh process."""
  shape = dict(SHAPE, repeats=5) if quick else SHAPE
  start_s = _timed([sys.executable, "-c", "pass"], ROOT)[0]
  wall, cpu, stdout = _timed([sys.executable, "-c", _STAGES, json.dumps(shape)], ROOT)
  stages = {k: round(v, 3) for k, v in json.loads(stdout).items()}
  return {"name": "data/generate_stages", "cpu": harness.cpu_model(), "shape": shape,
          "interpreter_start_s": round(start_s, 3), **stages, "process_wall_s": round(wall, 3),
          "process_cpu_s": round(cpu, 3)}


def bench_corpus_in_process(quick: bool) -> dict:
  from data_gen.export import writer
  from data_gen.world import dataset
  from data_gen.world.corpus import CorpusConfig
  from data_gen.world.graph import GraphConfig
  repeats = 5 if quick else 50
  ds = dataset.build(GraphConfig(num_subjects=10_000, num_relationships=6, num_objects=100),
                     CorpusConfig(repeats=repeats), seed=0)
  tmp = pathlib.Path(tempfile.mkdtemp())
  writer.keep_freed_memory()  # as the binary does (process-wide: this benchmark process is ours)
  try:
    start = time.perf_counter()
    shards = writer.default_shards(ds.graph.config, repeats)
    writer.write_corpus(tmp / "cold", ds, shards, show_progress=False)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    tokens = writer.write_corpus(tmp / "warm", ds, shards, show_progress=False)
    warm = time.perf_counter() - start
  finally:
    shutil.rmtree(tmp)
  sentences = ds.num_documents
  return {"name": "data/write_corpus", "sentences": sentences, "tokens": tokens,
          "cold_s": round(cold, 3), "warm_s": round(warm, 3),
          "sentences_per_s_warm": round(sentences / warm),
          "speedup_vs_original_warm": round(sentences / warm / ORIGINAL_SENTENCES_PER_S, 1),
          "speedup_vs_original_cold": round(sentences / cold / ORIGINAL_SENTENCES_PER_S, 1)}


def bench_sampler(quick: bool) -> dict:
  import jax
  from data_gen.world import dataset
  from data_gen.world.corpus import CorpusConfig
  from data_gen.world.graph import GraphConfig
  ds = dataset.build(GraphConfig(num_subjects=10_000, num_relationships=6, num_objects=100),
                     CorpusConfig(repeats=500), seed=0)
  B, T = 64, 64
  sample = jax.jit(ds.sampler(B, T))
  start = time.perf_counter()
  jax.block_until_ready(sample(0))
  compile_s = time.perf_counter() - start
  steps = 50 if quick else 400
  start = time.perf_counter()
  for step in range(1, steps + 1):
    out = sample(step)
  jax.block_until_ready(out)
  dt = time.perf_counter() - start
  tps = steps * B * T / dt
  return {"name": "data/sampler", "batch": B, "seq": T, "device": str(jax.devices()[0]),
          "tokens_per_s": round(tps), "compile_s": round(compile_s, 3),
          "ratio_vs_litgpt_training": round(tps / LITGPT_TOKENS_PER_S, 1)}


def run(quick: bool) -> list[dict]:
  # The binaries first: a process started after jax is imported inherits its high-water RSS through
  # exec, which would inflate their peak memory.
  return [bench_corpus_binary(quick, os.environ.get(ORIGINAL_ENV)), bench_stages(quick),
          bench_corpus_in_process(quick), bench_sampler(quick)]


def main(argv):
  del argv
  if flags.FLAGS.original_dir:
    os.environ[ORIGINAL_ENV] = flags.FLAGS.original_dir
  for row in run(flags.FLAGS.quick):
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
  # Defined only when run alone: experiments.bench imports this module and owns --quick there.
  flags.DEFINE_bool("quick", False, "Smaller corpus, fewer steps.")
  flags.DEFINE_string("original_dir", None, f"A checkout of the original (create_data.py); same as {ORIGINAL_ENV}.")
  cli.run(main)  # flag errors: one line, exit 1
