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
import pathlib

import numpy as np

from data_gen import corpus as corpus_lib
from data_gen.dataset import Dataset
from data_gen.graph import NONE, FactGraph, GraphConfig
from data_gen.progress import Progress
from data_gen.text import WordTable, write_probe_file
from data_gen.tokenizer import write_tokenizer

CHUNK_DOCUMENTS = 1 << 18  # bounds memory: a chunk's tokens and bytes are a few tens of MB


def _none_or(values: np.ndarray) -> np.ndarray:
  return np.where(values == NONE, "None", values.astype(str))


def write_graph_text(path: pathlib.Path, graph: FactGraph) -> None:
  S, R = graph.num_subjects, graph.num_relationships
  s, r = np.meshgrid(np.arange(S), np.arange(R), indexing="ij")
  cols = [s.reshape(-1).astype(str), r.reshape(-1).astype(str), graph.objects_SxR.reshape(-1).astype(str),
          _none_or(graph.minority_SxR.reshape(-1)), _none_or(graph.subject_nested_SxR().reshape(-1))]
  rows = cols[0]
  for c in cols[1:]:
    rows = np.char.add(np.char.add(rows, " "), c)
  path.write_text("\n".join(rows.tolist()) + "\n")


def read_graph_text(path, config: GraphConfig, qa_subject_S: np.ndarray | None = None) -> FactGraph:
  """A graph from `relationship_graph.txt`; the shape comes from the file, statistics from `config`."""
  rows = [line.split() for line in pathlib.Path(path).read_text().splitlines() if line.strip()]
  table = np.array([[NONE if x == "None" else int(x) for x in row] for row in rows], np.int64)
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


def write_corpus(directory: pathlib.Path, ds: Dataset, num_shards: int, show_progress: bool = True) -> int:
  """Writes every document, split into `num_shards` contiguous shards; returns the number of tokens."""
  directory.mkdir(parents=True, exist_ok=True)
  total = ds.num_documents
  bounds = np.linspace(0, total, num_shards + 1).astype(np.int64)
  table = WordTable(ds.vocab)
  progress = Progress(total, "documents", "corpus") if show_progress else None
  num_tokens = 0
  chunks = [(i, a, min(a + CHUNK_DOCUMENTS, bounds[i + 1]))
            for i in range(num_shards) for a in range(bounds[i], bounds[i + 1], CHUNK_DOCUMENTS)]

  tables = ds.tables

  def render(a, b):
    return corpus_lib.render_padded_documents(tables, np.arange(a, b, dtype=np.uint32), np)

  # Rendering (numpy, mostly GIL-free) of chunk k+1 overlaps spelling and writing chunk k.
  files = [open(directory / f"shard_{i:05d}.txt", "wb") for i in range(num_shards)]
  try:
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
      pending = pool.submit(render, *chunks[0][1:]) if chunks else None
      for k, (shard, a, b) in enumerate(chunks):
        tokens, lengths = pending.result()
        if k + 1 < len(chunks):
          pending = pool.submit(render, *chunks[k + 1][1:])
        num_tokens += int(lengths.sum())
        files[shard].write(table.join_documents(tokens))
        if progress:
          progress.update(b - a)
  finally:
    for f in files:
      f.close()
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
