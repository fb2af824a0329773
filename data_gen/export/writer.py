"""Writes a dataset in the original's folder layout (plus the native form), streaming the corpus.

    <out>/data/full_text_<i>.txt           corpus text in corpus order, i = 0, 1, ... (not zero-padded);
                                           one document per line (the original ran them together on
                                           one line; the tokenizer treats the newline as whitespace)
    <out>/validations/<file>.txt           prompt<TAB>answer, one file per probe set, named as the original
                                           (`probe_file`): sro.txt, rso.txt, si1_sj0_ri1_rj0_oi_1.txt, with
                                           nesting subject_object_sro.txt, subject_nested_object_sro.txt,
                                           object_nested_object_sro.txt; ours beside: sro_dissenting_*.txt
    <out>/questions/default.txt            Q/A probes of subjects with questions in training (prompt up to
    <out>/questions/default_new.txt        AA, answer ` OO <object>`), and of the held-out subjects; the
                                           folder always exists, as in the original
    <out>/metadata/relationship_graph.txt  `s r o alt nested` per (s, r), `None` where absent
    <out>/metadata/relationship_graph_tokenized.txt   per (s, r) the tab-terminated fields s, r, o,
                                           minority (empty if none) [, r'', r', nested], each the
                                           comma-joined words of its tokens
    <out>/metadata/remappings_map.json     special_vocab and token-id lists of every member (the original's)
    <out>/metadata/other_special_tokens.json   grammar word name (W0.., WQ1..) -> word
    <out>/metadata/metadata.json           graph_size, vocab_size, total_num_tokens, then ours
    <out>/metadata/args.json               the options (shards: the count used)
    <out>/metadata/subjects_with_questions.txt, subjects_with_questions_tokenized.txt   (Q/A only)
    <out>/metadata/tokenizer.json, tokenizer_config.json
    <out>/native/graph.npz, dataset.json   what `dataset.load` reads back without parsing text
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import multiprocessing
import os
import pathlib
import re

import numpy as np

from data_gen.common.progress import Progress
from data_gen.export.text import (DATA_DIR, WordTable, shard_name, spell_int_rows, spell_token_fields,
                                  write_probe_file)
from data_gen.export.tokenizer import write_tokenizer
from data_gen.world import corpus as corpus_lib
from data_gen.world.corpus import OBJECT_NESTED, SUBJECT_NESTED, SUBJECT_OBJECT
from data_gen.world.dataset import Dataset
from data_gen.world.graph import NONE, FactGraph, GraphConfig
from data_gen.world.probes import ProbeSet
from data_gen.world.vocab import RESERVED, Vocab

VALIDATIONS_DIR, QUESTIONS_DIR, METADATA_DIR = "validations", "questions", "metadata"

CHUNK_DOCUMENTS = 1 << 18  # bounds memory: a chunk's tokens and bytes are a few tens of MB


def keep_freed_memory() -> None:
  """Lets glibc reuse freed chunk buffers instead of returning them to the kernel.

  Every chunk allocates and frees the same few 10-30 MB arrays; by default each is a fresh mmap whose
  pages the kernel faults in and zeroes again: about a third of the corpus writer's CPU time was system
  time (0.8 s of 2.3 s at S=10000, R=6, O=100, n=50). Process-wide, so only our own processes call it
  (the generate binary and its shard workers), never the library for a caller. Without glibc it does
  nothing."""
  try:
    import ctypes  # pylint: disable=g-import-not-at-top
    libc = ctypes.CDLL("libc.so.6")
  except OSError:
    return
  m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
  libc.mallopt(m_mmap_threshold, 32 << 20)  # glibc's maximum: larger requests still get their own mmap
  libc.mallopt(m_trim_threshold, 1 << 30)
  libc.mallopt(m_top_pad, 64 << 20)


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
  g, v = ds.graph, ds.vocab
  S, R = g.num_subjects, g.num_relationships
  s, r = np.meshgrid(np.arange(S), np.arange(R), indexing="ij")
  s, r = s.reshape(-1), r.reshape(-1)
  obj = lambda o, first: corpus_lib.scoped_tokens(o.reshape(-1), r, first, np)  # noqa: E731
  fields = [v.subjects.tokens(s), v.relationships.tokens(r), obj(g.objects_SxR, v.objects(0))]
  minority = g.minority_SxR.reshape(-1)
  fields.append(np.where((minority == NONE)[:, None], -1, obj(np.maximum(g.minority_SxR, 0), v.objects(0))))
  if g.config.nested:
    fields += [v.block("subject_nested_relationships").start + r[:, None],
               v.block("object_nested_relationships").start + r[:, None],
               obj(g.subject_nested_SxR(), v.nested_objects(0))]
  path.write_bytes(spell_token_fields(v, fields))


def remappings_map(vocab: Vocab, graph: FactGraph) -> dict:
  """The original's metadata/remappings_map.json: token-id lists of every member, objects flattened as
  index r * O + o (nested objects r * N + n)."""
  R = graph.num_relationships
  ids = lambda block, n: block.tokens(np.arange(n)).tolist()  # noqa: E731
  out = {"special_vocab": {token: i for i, token in enumerate(RESERVED)},
         "subjects": ids(vocab.subjects, graph.num_subjects), "relationships": ids(vocab.relationships, R),
         "objects": sum((ids(vocab.objects(r), graph.num_objects) for r in range(R)), [])}
  if graph.config.nested:
    out["subject_nested_relationships"] = ids(vocab.block("subject_nested_relationships"), R)
    out["object_nested_relationships"] = ids(vocab.block("object_nested_relationships"), R)
    out["object_nested_objects"] = sum((ids(vocab.nested_objects(r), graph.config.num_nested_objects)
                                        for r in range(R)), [])
  return out


def other_special_tokens(vocab: Vocab) -> dict[str, str]:
  """The original's metadata/other_special_tokens.json: grammar word name -> its word (the id, spelled)."""
  words = vocab.words()
  return {name: words[i] for name, i in vocab.grammar_names().items()}


def write_subjects_with_questions(meta_dir: pathlib.Path, ds: Dataset) -> None:
  subjects = np.flatnonzero(ds.graph.qa_subject_S)
  (meta_dir / "subjects_with_questions.txt").write_text("".join(f"{s}\n" for s in subjects))
  tokens = ds.vocab.subjects.tokens(subjects).tolist()  # ascending, as the original sorted them
  (meta_dir / "subjects_with_questions_tokenized.txt").write_text("".join(f"{t}\n" for t in tokens))


_SUFFIXES = ("_subject_nested", "_object_nested", "_dissenting_majority", "_dissenting_minority")
_KIND_PREFIX = {SUBJECT_OBJECT: "subject_object_", SUBJECT_NESTED: "subject_nested_object_",
                OBJECT_NESTED: "object_nested_object_"}
_SIMPLEREPEATS = re.compile(r"simplerepeats_s(\d)(\d)_r(\d)(\d)_o(\d)")


def probe_file(probe: ProbeSet, nested: bool) -> str:
  """The original's file (relative to the dataset folder) for an in-memory probe set; the in-memory names
  stay ours (sro, question_trained, sro_subject_nested, ...): evaluation and configs key on them."""
  prefix = _KIND_PREFIX[probe.kind] if nested else ""
  if probe.name in ("question_trained", "question_heldout"):
    return f"{QUESTIONS_DIR}/{prefix}default{'' if probe.name == 'question_trained' else '_new'}.txt"
  form, extra = probe.name, ""
  for suffix in _SUFFIXES:
    if form.endswith(suffix):
      form, extra = form[:-len(suffix)], suffix if "dissenting" in suffix else ""
  if m := _SIMPLEREPEATS.fullmatch(form):
    form = "si{}_sj{}_ri{}_rj{}_oi_{}".format(*m.groups())
  form = form.removeprefix("nonsense_")
  return f"{VALIDATIONS_DIR}/{prefix}{form}{extra}.txt"


def default_shards(graph: GraphConfig, repeats: int) -> int:
  """The original's shard count when --shards is not given (its float division included)."""
  per_shard = 2e5 if graph.nested else 1e5
  return max(1, int(graph.num_subjects * graph.num_relationships * repeats // per_shard))


def write_shards(ds: Dataset, shards: list[tuple[pathlib.Path, int, int]], progress: Progress | None = None) -> int:
  """Writes shards (path, first document, stop) in order; returns their number of tokens.

  A three-stage pipeline over all their chunks: a thread renders chunk k+1 (numpy, mostly GIL-free), this
  thread spells chunk k, another writes chunk k-1 (file writes release the GIL; at S=10000, R=6, O=100,
  n=50 they were a third of this thread's time). Shards are the original's size (100,000 documents, less
  than one chunk), so the pipeline runs across shard boundaries."""
  table, varying = WordTable(ds.vocab), corpus_lib.varying_columns(ds.tables)
  chunks = [(i, a, min(a + CHUNK_DOCUMENTS, stop)) for i, (_, start, stop) in enumerate(shards)
            for a in range(start, stop, CHUNK_DOCUMENTS)]
  files = {}

  def render(k):
    _, a, b = chunks[k]
    return corpus_lib.render_padded_documents(ds.tables, np.arange(a, b, dtype=np.uint32), np)

  def write(k, text):
    i, a, b = chunks[k]
    if a == shards[i][1]:
      files[i] = open(shards[i][0], "wb")  # pylint: disable=consider-using-with
    files[i].write(text)
    if b == shards[i][2]:
      files.pop(i).close()

  for path, start, stop in shards:
    if start == stop:
      path.write_bytes(b"")
  num_tokens, written = 0, None
  with (concurrent.futures.ThreadPoolExecutor(max_workers=1) as renderer,
        concurrent.futures.ThreadPoolExecutor(max_workers=1) as writer):
    try:
      pending = renderer.submit(render, 0) if chunks else None
      for k, (_, a, b) in enumerate(chunks):
        tokens, lengths = pending.result()
        if k + 1 < len(chunks):
          pending = renderer.submit(render, k + 1)
        num_tokens += int(lengths.sum())
        text = table.join_documents(tokens, varying)
        if written is not None:
          written.result()  # at most one chunk waits to be written: memory stays bounded
        written = writer.submit(write, k, text)
        if progress:
          progress.update(b - a)
      if written is not None:
        written.result()
    finally:
      for f in files.values():
        f.close()
  return num_tokens


def _write_shards_in_worker(ds: Dataset, shards: list[tuple[pathlib.Path, int, int]]) -> int:
  keep_freed_memory()
  return write_shards(ds, shards)


def write_corpus(directory: pathlib.Path, ds: Dataset, num_shards: int, show_progress: bool = True,
                 workers: int | None = None) -> int:
  """Writes every document, split into `num_shards` contiguous shards; returns the number of tokens.

  Shards are independent (a document is a pure function of its index), so large corpora are written by
  several processes, each a two-thread pipeline over a run of consecutive shards. Processes are spawned,
  never forked: a caller may hold jax's threads."""
  directory.mkdir(parents=True, exist_ok=True)
  total = ds.num_documents
  bounds = np.linspace(0, total, num_shards + 1).astype(np.int64)
  shards = [(directory / shard_name(i), int(bounds[i]), int(bounds[i + 1])) for i in range(num_shards)]
  if workers is None:
    # Each process keeps two cores busy, and starting one costs ~0.3 s of CPU (~5 chunks): on two cores
    # one process is fastest.
    workers = min((os.cpu_count() or 1) // 2, num_shards, total // (8 * CHUNK_DOCUMENTS))
  progress = Progress(total, "documents", "corpus") if show_progress else None
  num_tokens = 0
  if workers <= 1:
    num_tokens = write_shards(ds, shards, progress)
  else:
    runs = np.array_split(np.arange(num_shards), min(num_shards, 4 * workers))  # several per worker: progress
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
      futures = {pool.submit(_write_shards_in_worker, ds, [shards[i] for i in run]): run
                 for run in runs if len(run)}
      for future in concurrent.futures.as_completed(futures):
        num_tokens += future.result()
        if progress:
          progress.update(sum(shards[i][2] - shards[i][1] for i in futures[future]))
  if progress:
    progress.close()
  return num_tokens


def write_validations(out: pathlib.Path, ds: Dataset) -> tuple[dict[str, str], dict[str, int]]:
  """Writes every probe set to its original file; returns {probe set name: file}, {name: size}."""
  table = WordTable(ds.vocab)
  files, sizes = {}, {}
  for name, probe in ds.probes().items():
    files[name], sizes[name] = probe_file(probe, ds.graph.config.nested), len(probe)
    write_probe_file(out / files[name], table, probe.prompt_NxP, probe.answer_NxA)
  return files, sizes


def write_dataset(out: pathlib.Path, ds: Dataset, num_shards: int, args: dict,
                  corpus: bool = True, validations: bool = True, show_progress: bool = True) -> dict:
  """Writes everything into `out` (an empty folder) and returns the metadata written."""
  out = pathlib.Path(out)
  meta_dir = out / METADATA_DIR
  for sub in (METADATA_DIR, VALIDATIONS_DIR, QUESTIONS_DIR, DATA_DIR):  # all four always, as the original
    (out / sub).mkdir(parents=True, exist_ok=True)
  write_graph_text(meta_dir / "relationship_graph.txt", ds.graph)
  write_graph_tokenized(meta_dir / "relationship_graph_tokenized.txt", ds)
  (meta_dir / "remappings_map.json").write_text(json.dumps(remappings_map(ds.vocab, ds.graph)))
  (meta_dir / "other_special_tokens.json").write_text(json.dumps(other_special_tokens(ds.vocab), indent=4))
  if ds.tables.layout.qa:
    write_subjects_with_questions(meta_dir, ds)
  write_tokenizer(meta_dir, ds.vocab)
  ds.save_native(out)
  layout = ds.tables.layout
  meta = {
      "graph_size": int(ds.graph.objects_SxR.size), "vocab_size": ds.vocab.size, "total_num_tokens": None,
      "seed": ds.seed, "word_width": ds.vocab.word_width,
      "num_subjects": ds.graph.num_subjects, "num_relationships": ds.graph.num_relationships,
      "num_objects": ds.graph.num_objects, "num_facts": int(ds.graph.objects_SxR.size),
      "documents_per_pass": ds.documents_per_pass, "num_documents": ds.num_documents,
      "sentences": layout.num_sentences, "question_sentences": layout.num_question_facts * layout.question_copies,
      "question_copies_per_fact": layout.question_copies, "shards": num_shards if corpus else 0,
      "total_tokens": None, "validation_sets": None, "validation_files": None,
      "graph": dataclasses.asdict(ds.graph.config), "corpus": dataclasses.asdict(ds.corpus),
  }
  if validations:
    meta["validation_files"], meta["validation_sets"] = write_validations(out, ds)
  if corpus:
    meta["total_num_tokens"] = meta["total_tokens"] = write_corpus(out / DATA_DIR, ds, num_shards,
                                                                   show_progress)
  (meta_dir / "metadata.json").write_text(json.dumps(meta, indent=1) + "\n")
  (meta_dir / "args.json").write_text(json.dumps(args, indent=4, sort_keys=True) + "\n")
  return meta
