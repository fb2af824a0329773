r"""Generates a Behemoth dataset: fact graph, vocabulary, corpus text, probes, tokenizer, native arrays.

  python -m data_gen.generate --output_dir=runs/data --subjects=500 --relationships=4 --objects=32 \
      --repeats=100 --seed=0

Flags are the original generator's long options (with underscores) plus --seed and --output_dir; every
default is the original's. The output folder appears only when complete.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import resource
import sys
import time

from absl import flags
import numpy as np

from data_gen.common import atomic, cli
from data_gen.common.errors import OptionError, check_positive, require
from data_gen.export import writer
from data_gen.world import dataset
from data_gen.world.corpus import CorpusConfig
from data_gen.world.graph import GraphConfig, make_graph
from data_gen.world.templates import PRETRAINING_TEMPLATES

_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Folder to create (must not exist unless --overwrite).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing --output_dir (atomically).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of every random choice: same seed and options, same bytes.")
_SUBJECTS = flags.DEFINE_integer("subjects", 100_000, "Number of subjects S (>= 1).")
_RELATIONSHIPS = flags.DEFINE_integer("relationships", 6, "Number of relationships R (>= 1).")
_OBJECTS = flags.DEFINE_integer("objects", 400, "Objects per relationship O (>= 1).")
_REPEATS = flags.DEFINE_integer("repeats", 500, "Times each fact is written (>= 1).")
_SHUFFLE = flags.DEFINE_bool(
    "shuffle", True, "Shuffled mode: every sentence its own document, the corpus shuffled. "
    "--noshuffle: biography mode, each repeat of a subject one document holding all its facts.")
_SHARDS = flags.DEFINE_integer(
    "shards", None, "Number of text shards data/full_text_<i>.txt (>= 1); default as the original: "
    "max(1, subjects * relationships * repeats // 100000), // 200000 with nested objects.")
_INVERSION_FRAC = flags.DEFINE_float(
    "inversion_frac", 0.0, "Fraction of sentences in an inverted word order (S-O-R, O-S-R, R-S-O); for "
    "nonsense, the fraction in S-R-O order. In [0, 1].")
_MINORITY_ENTITY_FRAC = flags.DEFINE_float(
    "minority_position_entity_frac", 0.0, "Fraction m of (subject, relationship) pairs with a second, "
    "dissenting object. In [0, 1].")
_MINORITY_FRAC = flags.DEFINE_float(
    "minority_position_frac", 0.1, "Probability p that a sentence of a dissenting fact uses the minority "
    "object. In [0, 1].")
_PHRASE_CREATOR = flags.DEFINE_enum("phrase_creator", "inverted", list(PRETRAINING_TEMPLATES),
                                    "Sentence template of the corpus.")
_QUESTIONS_ENTITY_FRAC = flags.DEFINE_float(
    "questions_entity_frac", 0.5, "Fraction e of subjects whose facts also appear as questions in the "
    "corpus (when --questions_frac > 0); the others are held out for the question probes. In [0, 1].")
_QUESTIONS_FRAC = flags.DEFINE_float(
    "questions_frac", 0.0, "Q/A: each fact of a Q/A subject is also written int(repeats / e * "
    "questions_frac) times as a question, besides its repeats statements (the original's meaning). 0: no "
    "Q/A. In [0, 1].")
_CORRELATED_PAIR = flags.DEFINE_bool(
    "correlated_pair", False, "Relationship 1's object equals relationship 0's with probability "
    "--correlation_strength.")
_CORRELATION_STRENGTH = flags.DEFINE_float("correlation_strength", 1.0, "In (1/objects, 1].")
_BINARIZE = flags.DEFINE_bool("binarize_first_correlated", False,
                              "Relationship 0 takes only objects 0 and 1 (needs --correlated_pair).")
_NESTED = flags.DEFINE_integer(
    "num_nested_objects", 0, "Nested values N (0: no nesting); must divide --objects.")
_UPWEIGHT = flags.DEFINE_integer("obj_nested_obj_edges_upweight", 1,
                                 "Object-nested sentences are written this many times more (>= 1).")
_GRAPH_PATH = flags.DEFINE_string(
    "graph_path", None, "Reuse a graph: a dataset folder written by this tool, or a "
    "relationship_graph.txt (graph-shape flags are then taken from it).")
_GRAPH_ONLY = flags.DEFINE_bool("write_graph_only", False,
                                "Write the graph, vocabulary and tokenizer only (no corpus, no probes).")
_VALIDATION_ONLY = flags.DEFINE_bool("validation_data_only", False,
                                     "Write the probes but not the corpus text.")


def configs_from_flags() -> tuple[GraphConfig, CorpusConfig]:
  graph = GraphConfig(
      num_subjects=_SUBJECTS.value, num_relationships=_RELATIONSHIPS.value, num_objects=_OBJECTS.value,
      minority_position_entity_frac=_MINORITY_ENTITY_FRAC.value, correlated_pair=_CORRELATED_PAIR.value,
      correlation_strength=_CORRELATION_STRENGTH.value, binarize_first_correlated=_BINARIZE.value,
      num_nested_objects=_NESTED.value, questions_entity_frac=_QUESTIONS_ENTITY_FRAC.value)
  corpus = CorpusConfig(
      phrase_creator=_PHRASE_CREATOR.value, inversion_frac=_INVERSION_FRAC.value, repeats=_REPEATS.value,
      shuffle=_SHUFFLE.value, minority_position_frac=_MINORITY_FRAC.value,
      questions_frac=_QUESTIONS_FRAC.value, obj_nested_obj_edges_upweight=_UPWEIGHT.value)
  return graph, corpus


def load_graph(path: str, graph_config: GraphConfig, seed: int):
  p = pathlib.Path(path)
  if p.is_dir():
    try:
      return dataset.load(p).graph
    except FileNotFoundError:
      p = p / "metadata" / "relationship_graph.txt"
    except ValueError as e:  # a truncated or hand-edited native dataset
      raise OptionError("graph_path", str(e)) from None
  if not p.is_file():
    raise OptionError("graph_path", f"{path} is neither a dataset folder nor a relationship_graph.txt")
  try:
    graph = writer.read_graph_text(p, graph_config)
  except (ValueError, IndexError) as e:
    raise OptionError("graph_path", f"{path} is not a valid relationship graph ({e})") from e
  # Q/A subjects: the folder's subjects_with_questions.txt when it has one (the original's folders), else
  # drawn from the seed like a fresh graph would.
  asked = p.parent / "subjects_with_questions.txt"
  if asked.is_file():
    try:
      subjects = np.array(asked.read_text().split(), np.int64)
    except ValueError as e:
      raise OptionError("graph_path", f"{asked} holds a line that is not a subject number ({e})") from None
    if subjects.size and (subjects.min() < 0 or subjects.max() >= graph.num_subjects):
      raise OptionError("graph_path", f"{asked} names subjects outside [0, {graph.num_subjects})")
    qa = np.zeros(graph.num_subjects, bool)
    qa[subjects] = True
    return dataclasses.replace(graph, qa_subject_S=qa)
  fresh = make_graph(dataclasses.replace(graph.config, correlated_pair=False, binarize_first_correlated=False,
                                         minority_position_entity_frac=0.0, num_nested_objects=0), seed)
  return dataclasses.replace(graph, qa_subject_S=fresh.qa_subject_S)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise OptionError("output_dir", f"unexpected positional arguments {argv[1:]}")
  require(_OUTPUT_DIR.value is not None, "output_dir", "is required")
  require(_SEED.value >= 0, "seed", f"must be an integer >= 0, got {_SEED.value}")
  if _SHARDS.value is not None:
    check_positive(_SHARDS.value, "shards")
  require(not (_QUESTIONS_FRAC.value > 0 and _QUESTIONS_ENTITY_FRAC.value == 0), "questions_entity_frac",
          "must be > 0 when --questions_frac > 0 (the subjects that get questions)")
  require(not (_GRAPH_ONLY.value and _VALIDATION_ONLY.value), "validation_data_only",
          "cannot be combined with --write_graph_only")
  graph_config, corpus_config = configs_from_flags()
  corpus_config.validate()
  graph = None
  if _GRAPH_PATH.value:
    graph = load_graph(_GRAPH_PATH.value, graph_config, _SEED.value)
  else:
    graph_config.validate()
  ds = dataset.build(graph_config if graph is None else graph.config, corpus_config, _SEED.value, graph)
  if ds.num_documents >= 2 ** 32:
    raise OptionError("repeats", "the corpus would hold 2^32 documents or more; lower --repeats or "
                      "train from the on-device sampler, which needs no written corpus")
  # Where the output goes is not part of what it holds: leaving it out keeps same-seed outputs identical.
  args = {name: flags.FLAGS[name].value for name in flags.FLAGS
          if name in _OWN_FLAGS - {"output_dir", "overwrite"}}
  shards = _SHARDS.value or writer.default_shards(ds.graph.config, corpus_config.repeats)
  writes_corpus = not (_GRAPH_ONLY.value or _VALIDATION_ONLY.value)
  if writes_corpus:  # more shards than documents would only add empty files (a million, if asked)
    require(shards <= ds.num_documents, "shards",
            f"must be in [1, {ds.num_documents}] (the corpus has {ds.num_documents} documents), got {shards}")
  args["shards"] = shards  # as the original records it: the count used
  start = time.perf_counter()
  writer.keep_freed_memory()
  with atomic.atomic_directory(_OUTPUT_DIR.value, _OVERWRITE.value) as tmp:
    meta = writer.write_dataset(tmp, ds, shards, args, corpus=writes_corpus,
                                validations=not _GRAPH_ONLY.value, show_progress=sys.stderr.isatty())
  summary = {k: meta[k] for k in ("vocab_size", "num_subjects", "num_relationships", "num_objects",
                                  "num_facts", "num_documents", "sentences", "question_sentences",
                                  "total_num_tokens", "shards")}
  summary["validation_sets"] = sorted(meta["validation_files"] or [])
  summary["output_dir"] = str(_OUTPUT_DIR.value)
  summary["seconds"] = round(time.perf_counter() - start, 3)
  peak_kb = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
  summary["peak_rss_mb"] = round(peak_kb / 1024, 1)  # of the largest process (shard workers included)
  print(json.dumps(summary))


_OWN_FLAGS = {"output_dir", "overwrite", "seed", "subjects", "relationships", "objects", "repeats",
              "shuffle", "shards", "inversion_frac", "minority_position_entity_frac",
              "minority_position_frac", "phrase_creator", "questions_entity_frac", "questions_frac",
              "correlated_pair", "correlation_strength", "binarize_first_correlated", "num_nested_objects",
              "obj_nested_obj_edges_upweight", "graph_path", "write_graph_only", "validation_data_only"}

if __name__ == "__main__":
  cli.run(main)
