"""A dataset = fact graph + vocabulary + corpus recipe + seed; the one object trainers and editors load.

The corpus is never needed on disk: `Dataset.sampler` renders training rows on device, as a pure function
of the step, from the same documents the text writer would write (in the same order).
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import json
import math
import pathlib
from typing import Callable
import zipfile

import numpy as np

from data_gen.world import corpus as corpus_lib
from data_gen.world.corpus import CorpusConfig, CorpusTables
from data_gen.world.graph import NONE, FactGraph, GraphConfig, make_graph
from data_gen.world.probes import ProbeSet, build_probes
from data_gen.world.templates import HEAD2, SKIP, TAIL2
from data_gen.world.vocab import Vocab, make_vocab

NATIVE_DIR = "native"
NATIVE_ARRAYS = "graph.npz"
NATIVE_JSON = "dataset.json"
REMOVED_ARRAY = "removed_SxR.npy"  # only in datasets with facts left out (the forgetting oracle)


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
  graph: FactGraph
  vocab: Vocab
  corpus: CorpusConfig
  seed: int
  # bool[S, R] subject-object facts left out of the corpus (data_gen.edit_sets.edited_graph: the forgetting oracle).
  removed_SxR: np.ndarray | None = None

  @functools.cached_property
  def tables(self) -> CorpusTables:
    tables = corpus_lib.make_tables(self.graph, self.vocab, self.corpus, self.seed)
    if self.removed_SxR is None:
      return tables
    return dataclasses.replace(tables, removed_SxR=np.asarray(self.removed_SxR, bool))


  @property
  def documents_per_pass(self) -> int:
    """Documents of a pass (of the later, shorter passes when questions make the first ones longer)."""
    return self.tables.layout.short_pass

  @property
  def num_documents(self) -> int:
    return self.tables.layout.num_documents

  def min_document_length(self) -> int:
    """A lower bound on the tokens of any document (one sentence, with '.' and end-of-text)."""
    t = self.tables.template
    always = (t.group_VxL < 0) & ~np.isin(t.codes_VxL, (SKIP, HEAD2, TAIL2))
    lo = np.argmax(t.group_cdf_GxK > 0, axis=-1)  # smallest count with nonzero probability
    per_group = np.array([lo[np.unique(g[g >= 0])].sum() for g in t.group_VxL])
    return int((always.sum(-1) + per_group).min()) + 2

  def documents_per_row(self, seq_len: int) -> int:
    """K: documents packed into a row of seq_len tokens (enough to fill it even with the shortest)."""
    return math.ceil(seq_len / self.min_document_length())

  def _packer(self, batch_size: int, seq_len: int) -> Callable:
    """document indices uint32[B, K] -> batch dict (tokens, loss_mask, answer_mask), in jax."""
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
    tables = corpus_lib.device_tables(self.tables)
    width = self.documents_per_row(seq_len) * tables.document_length

    def pack(index_BxK):
      docs = corpus_lib.render_documents(tables, index_BxK.reshape(-1), jnp)
      flat = lambda x: x.reshape(batch_size, width)  # noqa: E731
      tokens, valid, answer, _ = corpus_lib.compact(flat(docs["tokens"]), flat(docs["keep"]), seq_len,
                                                    flat(docs["is_answer"]))
      return {"tokens": tokens, "loss_mask": valid, "answer_mask": answer & valid}

    return pack

  def sampler(self, batch_size: int, seq_len: int) -> Callable:
    """A pure, jittable `step -> batch` over the corpus, in corpus order (what training uses: a resumed
    run sees the same data, and the stream equals the written text).

    Row b of step t packs documents (t * B + b) * K ... + K - 1 (K = documents_per_row) and cuts at
    seq_len; a row never starts mid-document. Returns tokens int32[B, T], loss_mask bool[B, T] (False on
    padding) and answer_mask bool[B, T] (True on answer tokens, for answer-only loss).
    """
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
    K, pack = self.documents_per_row(seq_len), self._packer(batch_size, seq_len)
    num_documents = self.num_documents

    def sample(step):
      rows = jnp.asarray(step, jnp.uint32) * jnp.uint32(batch_size) + jnp.arange(batch_size, dtype=jnp.uint32)
      index = rows[:, None] * jnp.uint32(K) + jnp.arange(K, dtype=jnp.uint32)[None, :]
      # Past the last pass the corpus starts over (a training run longer than the corpus).
      return pack(index % jnp.uint32(num_documents) if num_documents < 2 ** 32 else index)

    return sample

  def random_sampler(self, batch_size: int, seq_len: int) -> Callable:
    """A pure, jittable `key -> batch`: documents drawn independently and uniformly from the whole
    corpus (pass and position), i.e. i.i.d. from the corpus mixture. Same layout as `sampler`."""
    import jax  # pylint: disable=g-import-not-at-top
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
    K, pack = self.documents_per_row(seq_len), self._packer(batch_size, seq_len)
    lay, repeats = self.tables.layout, self.corpus.repeats
    h, shape = lay.num_long_passes, (batch_size, K)

    def sample(key):
      pass_key, position_key, long_key = jax.random.split(key, 3) if h else (*jax.random.split(key), None)
      if not h:
        pass_index = jax.random.randint(pass_key, shape, 0, repeats)
        position = jax.random.randint(position_key, shape, 0, lay.short_pass)
      else:  # a long pass with probability (its documents) / (all documents), then uniform within it
        is_long = jax.random.uniform(long_key, shape) < h * lay.long_pass / lay.num_documents
        pass_index = jnp.where(is_long, 0, h) + jax.random.randint(pass_key, shape, 0,
                                                                   jnp.where(is_long, h, repeats - h))
        position = jax.random.randint(position_key, shape, 0, jnp.where(is_long, lay.long_pass, lay.short_pass))
      return pack(lay.document_index(pass_index, position, jnp))

    return sample

  def documents(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """Documents [start, stop) of the corpus as (tokens int32[N, D] PAD-padded, lengths int32[N])."""
    return self.documents_at(np.arange(start, stop, dtype=np.uint32))

  def documents_at(self, index) -> tuple[np.ndarray, np.ndarray]:
    """Documents `index` (int[N], any order) as `documents` returns them."""
    tokens, lengths = corpus_lib.render_padded_documents(self.tables, np.asarray(index, np.uint32), np)
    left = np.argsort(tokens == corpus_lib.PAD, axis=1, kind="stable")  # kept tokens first, in order
    return np.take_along_axis(tokens, left, axis=1), lengths

  def probes(self, max_per_set: int | None = None, templates: tuple[str, ...] = ()) -> dict[str, ProbeSet]:
    """The corpus's probe sets (see probes.build_probes); `templates` adds other phrasings."""
    return build_probes(self.tables, self.graph, self.seed, max_per_set, templates)

  # The native form: arrays + JSON, loaded without parsing text.
  def save_native(self, directory) -> None:
    d = pathlib.Path(directory, NATIVE_DIR)
    d.mkdir(parents=True, exist_ok=True)
    np.savez(d / NATIVE_ARRAYS, **self.graph.arrays())
    meta = {"seed": self.seed, "graph": dataclasses.asdict(self.graph.config),
            "corpus": dataclasses.asdict(self.corpus), "vocab": self.vocab.layout()}
    if self.removed_SxR is not None:
      np.save(d / REMOVED_ARRAY, np.asarray(self.removed_SxR, bool))
    (d / NATIVE_JSON).write_text(json.dumps(meta, indent=1) + "\n")


def build(graph_config: GraphConfig, corpus_config: CorpusConfig, seed: int,
          graph: FactGraph | None = None) -> Dataset:
  corpus_config.validate()
  graph = make_graph(graph_config, seed) if graph is None else graph
  return Dataset(graph=graph, vocab=make_vocab(graph.config), corpus=corpus_config, seed=seed)


def _check_arrays(path: pathlib.Path, config: GraphConfig, arrays: dict) -> None:
  """ValueError (one line naming `path`) unless the arrays have the shapes and ranges `config` implies."""
  S, R, O, N = config.num_subjects, config.num_relationships, config.num_objects, config.num_nested_objects
  expected = {"objects_SxR": ((S, R), 0, O), "minority_SxR": ((S, R), NONE, O),
              "nested_RxO": ((R, O), NONE, max(N, 0)), "qa_subject_S": ((S,), 0, 2)}
  if set(arrays) != set(expected):
    raise ValueError(f"{path}: holds arrays {sorted(arrays)}, expected {sorted(expected)}")
  for name, (shape, low, high) in expected.items():
    a = arrays[name]
    if a.shape != shape or not (np.issubdtype(a.dtype, np.integer) or a.dtype == bool):
      raise ValueError(f"{path}: {name} is {a.dtype}{list(a.shape)}, expected integers of shape {list(shape)} "
                       f"(from {NATIVE_JSON}); the file was truncated or edited")
    if a.size and (a.min() < low or a.max() >= high):
      raise ValueError(f"{path}: {name} holds values outside [{low}, {high}); the file was edited")


def load(directory) -> Dataset:
  """The dataset written by `python -m data_gen.generate --output_dir=directory`.

  FileNotFoundError if it holds no native dataset; ValueError (one line naming the file) if its files are
  truncated, edited or do not match each other.
  """
  d = pathlib.Path(directory, NATIVE_DIR)
  meta_path, arrays_path = d / NATIVE_JSON, d / NATIVE_ARRAYS
  for path in (meta_path, arrays_path):
    if not path.is_file():
      raise FileNotFoundError(errno.ENOENT, "no native dataset", str(path))
  try:
    meta = json.loads(meta_path.read_text())
    config = GraphConfig(**meta["graph"])
    vocab = Vocab.from_layout(meta["vocab"])
    corpus = CorpusConfig(**meta["corpus"])
    seed = int(meta["seed"])
  except (ValueError, KeyError, TypeError) as e:
    raise ValueError(f"{meta_path}: not a dataset description ({type(e).__name__}: {e})") from None
  try:
    with np.load(arrays_path) as npz:
      arrays = {k: npz[k] for k in npz.files}
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
    raise ValueError(f"{arrays_path}: unreadable, truncated or not an .npz file ({e})") from None
  _check_arrays(arrays_path, config, arrays)
  if vocab != make_vocab(config):
    raise ValueError(f"{meta_path}: vocabulary layout does not match the graph configuration")
  removed = None
  if (d / REMOVED_ARRAY).is_file():
    try:
      removed = np.load(d / REMOVED_ARRAY)
    except (OSError, ValueError, EOFError) as e:
      raise ValueError(f"{d / REMOVED_ARRAY}: unreadable or truncated ({e})") from None
    if removed.dtype != bool or removed.shape != (config.num_subjects, config.num_relationships):
      raise ValueError(f"{d / REMOVED_ARRAY}: is {removed.dtype}{list(removed.shape)}, expected bool of shape "
                       f"{[config.num_subjects, config.num_relationships]}; the file was edited")
  return Dataset(graph=FactGraph(config=config, **arrays), vocab=vocab, corpus=corpus, seed=seed,
                 removed_SxR=removed)
