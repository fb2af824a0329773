r"""Generator speed: writing the text corpus, and sampling training rows on device.

  python -m experiments.bench_data [--quick]

The corpus shape is the one the original was timed on (S=10000, R=6, O=100, n=50, shuffled: 3M
sentences; 35 s and 466 MB peak on this 2-core machine). The binary runs in a subprocess so its wall time
includes interpreter start, jax import and compilation, and its peak memory is its own.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

from absl import app, flags

ORIGINAL_CORPUS_S = 35.0
ORIGINAL_CORPUS_PEAK_MB = 466.0
ORIGINAL_SENTENCES_PER_S = 86_000
LITGPT_TOKENS_PER_S = 10_800  # what the trainer must at least consume; the sampler must be >= 50x faster
CORPUS_FLAGS = ["--subjects=10000", "--relationships=6", "--objects=100", "--repeats=50", "--shuffle",
                "--shards=10", "--seed=0"]
ROOT = pathlib.Path(__file__).resolve().parents[1]


def bench_corpus_binary(quick: bool) -> dict:
  flags_ = CORPUS_FLAGS if not quick else [f.replace("--repeats=50", "--repeats=5") for f in CORPUS_FLAGS]
  with tempfile.TemporaryDirectory() as tmp:
    out = pathlib.Path(tmp, "corpus")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "data_gen.generate", f"--output_dir={out}", *flags_],
                          capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"))
    wall = time.perf_counter() - start
    if proc.returncode:
      raise RuntimeError(proc.stderr)
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
  sentences = summary["sentences"]
  return {"name": "data/generate_binary", "flags": flags_, "wall_s": round(wall, 3),
          "sentences": sentences, "sentences_per_s": round(sentences / wall),
          "speedup_vs_original": round(ORIGINAL_CORPUS_S / wall * (sentences / 3_000_000), 1),
          # The binary's own high-water mark: a child's RUSAGE_CHILDREN figure would count the pages it
          # shared with this (jax-laden) process before exec.
          "peak_rss_mb": summary["peak_rss_mb"], "original_peak_mb": ORIGINAL_CORPUS_PEAK_MB,
          "bytes_written": size, "includes": "interpreter start, imports, graph, probes, tokenizer, corpus"}


def bench_corpus_in_process(quick: bool) -> dict:
  from data_gen import dataset, writer
  from data_gen.corpus import CorpusConfig
  from data_gen.graph import GraphConfig
  repeats = 5 if quick else 50
  ds = dataset.build(GraphConfig(num_subjects=10_000, num_relationships=6, num_objects=100),
                     CorpusConfig(repeats=repeats), seed=0)
  tmp = pathlib.Path(tempfile.mkdtemp())
  try:
    start = time.perf_counter()
    writer.write_corpus(tmp / "cold", ds, 10, show_progress=False)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    tokens = writer.write_corpus(tmp / "warm", ds, 10, show_progress=False)
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
  from data_gen import dataset
  from data_gen.corpus import CorpusConfig
  from data_gen.graph import GraphConfig
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
  return [bench_sampler(quick), bench_corpus_in_process(quick), bench_corpus_binary(quick)]


def main(argv):
  del argv
  for row in run(flags.FLAGS.quick):
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
  # Defined only when run alone: experiments.bench imports this module and owns --quick there.
  flags.DEFINE_bool("quick", False, "Smaller corpus, fewer steps.")
  app.run(main)
