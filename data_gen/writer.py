"""Writes a dataset in the original's folder layout (plus the native form), streaming the corpus.

    <out>/train/shard_00000.txt ...        corpus text, one document per line, in corpus order
    <out>/validations/<probe>.txt          prompt<TAB>answer, one file per probe set
    <out>/metadata/relationship_graph.txt  `s r o alt nested` per (s, r), `None` where absent
    <out>/metadata/relationship_graph_tokenized.txt   the same facts spelled as words
    <out>/metadata/remapping.json          member -> token layout of every vocabulary block
    <out>/metadata/metadata.json, args.json
    <out>/tokenizer.json, tokenizer_config.json
    <out>/native/graph.npz, dataset.json   what `dataset.load` reads back without parsing text
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import multiprocessing
import os
import pathlib

import numpy as np

from data_gen import corpus as corpus_lib
from data_gen.dataset import Dataset
from data_gen.graph import NONE, FactGraph, GraphConfig
from data_gen.progress import Progress
from data_gen.text import WordTable, spell_int_rows, write_probe_file
from data_gen.tokenizer import write_tokenizer

CHUNK_DOCUMENTS = 1 << 18  # bounds memory: a chunk's tokens and bytes are a few tens of MB


def write_graph_text(path: pathlib.Path, graph: FactGraph) -> None:
  S, R = graph.num_subjects, graph.num_relationships
  s, r = np.meshgrid(np.arange(S), np.arange(R), indexing="ij")
  rows = np.stack([s, r, graph.objects_SxR, graph.minority_SxR, graph.subject_nested_SxR()], -1)
  path.write_bytes(spell_int_rows(rows.reshape(S * R, 5), none=NONE))


def read_graph_text(path, config: GraphConfig, qa_subject_S: np.ndarray | None = None) -> FactGraph:
  """A graph from `relationship_graph.txt`; the shape comes from the file, statistics from `config`."""
  words = pathlib.Path(path).read_text().replace("None", str(NONE)).split()
  if not words or len(words) % 5:
    raise ValueError("expected rows of 5 fields `s r o alt nested`")
  table = np.array(words, dtype=np.int64).reshape(-1, 5)
  S, R = int(table[:, 0].max()) + 1, int(table[:, 1].max()) + 1
  objects = np.full((S, R), NONE, np.int64)
  minority = np.full((S, R), NONE, np.int64)
  objects[table[:, 0], table[:, 1]] = table[:, 2]
  minority[table[:, 0], table[:, 1]] = table[:, 3]
  if (objects == NONE).any():
    raise ValueError(f"{path}: some (subject, relationship) pairs have no row")
  O = max(config.num_objects, int(objects.max()) + 1)
  nested = np.full((R, O), NONE, np.int64)
  has_nested = table[:, 4] != NONE
  nested[table[has_nested, 1], objects[table[has_nested, 0], table[has_nested, 1]]] = table[has_nested, 4]
  N = int(nested.max()) + 1 if has_nested.any() else 0
  if N and (nested == NONE).any():  # objects no subject uses: keep the balanced map complete
    for r in range(R):
      counts = np.bincount(nested[r][nested[r] != NONE], minlength=N)
      missing = np.repeat(np.arange(N), O // N - counts)
      nested[r][nested[r] == NONE] = missing
  config = dataclasses.replace(config, num_subjects=S, num_relationships=R, num_objects=O,
                               num_nested_objects=N,
                               minority_position_entity_frac=float((minority != NONE).mean()))
  qa = np.zeros(S, bool) if qa_subject_S is None else qa_subject_S
  return FactGraph(config, objects.astype(np.int32), minority.astype(np.int32), nested.astype(np.int32), qa)


def write_graph_tokenized(path: pathlib.Path, ds: Dataset) -> None:
  g, v, table = ds.graph, ds.vocab, WordTable(ds.vocab)
  S, R = g.num_subjects, g.num_relationships
  s, r = np.meshgrid(np.arange(S), np.arange(R), indexing="ij")
  s, r = s.reshape(-1), r.reshape(-1)
  parts = [v.subjects.tokens(s), v.relationships.tokens(r),
           corpus_lib.scoped_tokens(g.objects_SxR.reshape(-1), r, v.objects(0), np)]
  text = table.join(np.concatenate([np.asarray(p) for p in parts], -1), newline=True).decode()
  path.write_text(text)


def write_shard(ds: Dataset, path: pathlib.Path, start: int, stop: int) -> int:
  """Writes documents [start, stop) to `path`; returns their number of tokens. Rendering (numpy, mostly
  GIL-free) of chunk k+1 overlaps spelling and writing chunk k."""
  table = WordTable(ds.vocab)

  def render(a):
    index = np.arange(a, min(a + CHUNK_DOCUMENTS, stop), dtype=np.uint32)
    return corpus_lib.render_padded_documents(ds.tables, index, np)

  num_tokens = 0
  starts = range(start, stop, CHUNK_DOCUMENTS)
  with open(path, "wb") as f, concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
    pending = pool.submit(render, starts[0]) if starts else None
    for k in range(len(starts)):
      tokens, lengths = pending.result()
      if k + 1 < len(starts):
        pending = pool.submit(render, starts[k + 1])
      num_tokens += int(lengths.sum())
      f.write(table.join_documents(tokens))
  return num_tokens


def write_corpus(directory: pathlib.Path, ds: Dataset, num_shards: int, show_progress: bool = True,
                 workers: int | None = None) -> int:
  """Writes every document, split into `num_shards` contiguous shards; returns the number of tokens.

  Shards are independent (a document is a pure function of its index), so large corpora are written by
  one process per core. Processes are spawned, never forked: a caller may hold jax's threads."""
  directory.mkdir(parents=True, exist_ok=True)
  total = ds.num_documents
  bounds = np.linspace(0, total, num_shards + 1).astype(np.int64)
  shards = [(directory / f"shard_{i:05d}.txt", int(bounds[i]), int(bounds[i + 1])) for i in range(num_shards)]
  if workers is None:  # a worker costs ~0.2 s to start: worth it only for several chunks per worker
    workers = min(os.cpu_count() or 1, num_shards, total // (2 * CHUNK_DOCUMENTS))
  progress = Progress(total, "documents", "corpus") if show_progress else None
  num_tokens = 0
  if workers <= 1:
    for shard in shards:
      num_tokens += write_shard(ds, *shard)
      if progress:
        progress.update(shard[2] - shard[1])
  else:
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
      futures = {pool.submit(write_shard, ds, *shard): shard for shard in shards}
      for future in concurrent.futures.as_completed(futures):
        num_tokens += future.result()
        if progress:
          progress.update(futures[future][2] - futures[future][1])
  if progress:
    progress.close()
  return num_tokens


def write_validations(directory: pathlib.Path, ds: Dataset) -> dict[str, int]:
  directory.mkdir(parents=True, exist_ok=True)
  table = WordTable(ds.vocab)
  sizes = {}
  for name, probe in ds.probes().items():
    write_probe_file(directory / f"{name}.txt", table, probe.prompt_NxP, probe.answer_NxA)
    sizes[name] = len(probe)
  return sizes


def write_dataset(out: pathlib.Path, ds: Dataset, num_shards: int, args: dict,
                  corpus: bool = True, validations: bool = True, show_progress: bool = True) -> dict:
  """Writes everything into `out` (an empty folder) and returns the metadata written."""
  out = pathlib.Path(out)
  meta_dir = out / "metadata"
  meta_dir.mkdir(parents=True, exist_ok=True)
  write_graph_text(meta_dir / "relationship_graph.txt", ds.graph)
  write_graph_tokenized(meta_dir / "relationship_graph_tokenized.txt", ds)
  (meta_dir / "remapping.json").write_text(json.dumps(ds.vocab.layout(), indent=1) + "\n")
  write_tokenizer(out, ds.vocab)
  ds.save_native(out)
  meta = {
      "seed": ds.seed, "vocab_size": ds.vocab.size, "word_width": ds.vocab.word_width,
      "num_subjects": ds.graph.num_subjects, "num_relationships": ds.graph.num_relationships,
      "num_objects": ds.graph.num_objects, "num_facts": int(ds.graph.objects_SxR.size),
      "documents_per_pass": ds.documents_per_pass, "num_documents": ds.num_documents,
      "sentences": ds.tables.layout.sentences_per_pass * ds.corpus.repeats,
      "total_tokens": None, "validation_sets": None,
      "graph": dataclasses.asdict(ds.graph.config), "corpus": dataclasses.asdict(ds.corpus),
  }
  if validations:
    meta["validation_sets"] = write_validations(out / "validations", ds)
  if corpus:
    meta["total_tokens"] = write_corpus(out / "train", ds, num_shards, show_progress)
  (meta_dir / "metadata.json").write_text(json.dumps(meta, indent=1) + "\n")
  (meta_dir / "args.json").write_text(json.dumps(args, indent=1, sort_keys=True) + "\n")
  return meta
