"""Token ids <-> the original's text format, vectorized.

A corpus line is ` SS 0085 0714 RR 1091 OO 1369.<|endoftext|>`: every word is preceded by a space, except
"." and end-of-text which attach to the previous word. Probe files hold `prompt<TAB>answer`, both in the
same spelling, so that prompt + answer is the sentence text.
"""

from __future__ import annotations

import pathlib
import re

import numpy as np

from data_gen.world.vocab import DOT, EOT, PAD, Vocab

# Every spelling is padded to a fixed width with _FILL, so that rows render by one gather of fixed-size
# items and one C-speed `bytes.translate` that deletes the fill; end-of-text is one placeholder byte
# expanded afterwards.
_FILL = b"\x01"
_EOT_PLACEHOLDER = b"\x00"


class WordTable:
  """Fixed-width byte spellings of every token id, for rendering many rows of tokens at once."""

  def __init__(self, vocab: Vocab):
    self.vocab = vocab
    words = vocab.words()
    spellings = [b" " + w.encode() for w in words]
    spellings[DOT] = b"."
    spellings[EOT] = _EOT_PLACEHOLDER
    spellings[PAD] = b""
    self.width = max(len(s) for s in spellings)
    padded = b"".join(s.ljust(self.width, _FILL) for s in spellings + [b"\n"])
    self._items = np.frombuffer(padded, dtype=f"V{self.width}")  # last item: the newline
    self._newline = len(spellings)
    # For whole documents, end-of-text is written once per row as a constant ending (see join_documents).
    self._document_items = self._items.copy()
    self._document_items[EOT] = self._items[PAD]
    self._spellings = spellings[:EOT] + [b""] + spellings[EOT + 1:]  # as in documents: no end-of-text
    self._widths = np.array([len(x) for x in self._spellings], np.uint8)
    self._exact: dict[int, np.ndarray] = {}  # width -> uint8[V, width]: spellings of that width
    self.id_of_word = {w: i for i, w in enumerate(words)}

  def join(self, tokens_NxL: np.ndarray, newline: bool = True) -> bytes:
    """The text of rows of token ids (PAD and negative ids are skipped), one line per row if `newline`."""
    ids = np.asarray(tokens_NxL)
    ids = np.where(ids < 0, PAD, ids)
    if newline:
      ids = np.concatenate([ids, np.full((ids.shape[0], 1), self._newline, ids.dtype)], axis=1)
    raw = np.take(self._items, ids).tobytes().translate(None, _FILL)  # take: ~2x fancy indexing on void items
    return raw.replace(_EOT_PLACEHOLDER, b"<|endoftext|>")

  def fixed_width_rows(self, tokens_NxL: np.ndarray) -> np.ndarray:
    """uint8[N, W]: the text of each row, for rows that spell to equal byte widths (a probe set or an edit
    split: equal token counts, and every word of a kind has the same spelling width)."""
    tokens_NxL = np.asarray(tokens_NxL)
    text = self.join(tokens_NxL, newline=False)
    if len(text) % max(len(tokens_NxL), 1):
      raise ValueError("rows spell to unequal byte widths")
    return np.frombuffer(text, np.uint8).reshape(len(tokens_NxL), len(text) // max(len(tokens_NxL), 1))

  def join_documents(self, tokens_NxL: np.ndarray, varying: np.ndarray | None = None):
    """Like `join`, for rows that each end with end-of-text (corpus documents): the common ending is
    written as one constant column instead of a placeholder replaced afterwards.

    varying: when the caller knows that all other columns hold one token in every row (one-sentence
    documents in one word order: `corpus.varying_columns`), the columns that may differ. If each of them
    also spells at one width, every row has one byte layout: a copy of the first row, overwritten in those
    columns only, with no fill bytes to delete (about half the general path's time). Returns bytes, or
    then a uint8 array with one row per document."""
    ids = np.ascontiguousarray(tokens_NxL)  # PAD-padded, never negative
    ending = b"<|endoftext|>\n"
    if varying is not None and len(ids):
      fixed = self._join_fixed_layout(ids, varying, ending)
      if fixed is not None:
        return fixed
    out = np.empty((ids.shape[0], ids.shape[1] * self.width + len(ending)), np.uint8)
    out[:, :ids.shape[1] * self.width] = np.take(self._document_items, ids).view(np.uint8).reshape(ids.shape[0], -1)
    out[:, ids.shape[1] * self.width:] = np.frombuffer(ending, np.uint8)
    return out.tobytes().translate(None, _FILL)

  def _join_fixed_layout(self, ids: np.ndarray, varying: np.ndarray, ending: bytes) -> np.ndarray | None:
    widths = self._widths[ids[0]]
    columns = [np.ascontiguousarray(ids[:, j]) for j in varying]
    if any((np.take(self._widths, c) != widths[j]).any() for j, c in zip(varying, columns)):
      return None
    offsets = np.concatenate([[0], np.cumsum(widths, dtype=np.int64)])
    first = b"".join(self._spellings[i] for i in ids[0]) + ending
    out = np.empty((len(ids), len(first)), np.uint8)
    out[:] = np.frombuffer(first, np.uint8)
    for j, column in zip(varying, columns):
      w = int(widths[j])
      if not w:
        continue
      if w not in self._exact:
        self._exact[w] = np.frombuffer(b"".join(x[:w].ljust(w) for x in self._spellings), np.uint8).reshape(-1, w)
      out[:, offsets[j]:offsets[j] + w] = np.take(self._exact[w], column, axis=0)
    return out

  def encode(self, text: str) -> list[int]:
    """Token ids of one line of text (the inverse of `join`)."""
    text = text.replace("<|endoftext|>", " <|endoftext|> ").replace(".", " . ")
    return [self.id_of_word[w] for w in text.split()]


def _decimal_table(count: int, width: int, pad: bytes) -> np.ndarray:
  """uint8[count, width]: 0..count-1 in decimal, right-aligned, `pad` bytes (fill or "0") before them.

  One row per value, so that spelling many values is a gather (the arithmetic runs once per value, not
  once per occurrence)."""
  values = np.arange(count, dtype=np.int64)[:, None]
  powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
  chars = (values // powers % 10 + ord("0")).astype(np.uint8)
  leading = values < powers
  leading[:, -1] = False  # the units digit of 0
  return np.where(leading, np.uint8(pad[0]), chars)


def spell_int_rows(values_NxC: np.ndarray, none: int = -1) -> bytes:
  """Rows of non-negative ints as space-separated decimal lines, `None` where a value equals `none`.

  Vectorized like WordTable: every number is spelled at a fixed width with fill bytes for its leading
  zeros, then one `translate` deletes the fill."""
  values = np.asarray(values_NxC, np.int64)
  is_none = values == none
  top = int(np.where(is_none, 0, values).max(initial=0))
  width = max(4, len(str(top)))
  table = np.concatenate([_decimal_table(top + 1, width, _FILL),
                          np.frombuffer(b"None".rjust(width, _FILL), np.uint8)[None]])
  chars = np.take(table, np.where(is_none, top + 1, values), axis=0)  # [N, C, width]
  ends = np.full(values.shape + (1,), ord(" "), np.uint8)
  ends[:, -1] = ord("\n")
  return np.concatenate([chars, ends], -1).tobytes().translate(None, _FILL)


def spell_token_fields(vocab: Vocab, fields_NxT: list[np.ndarray]) -> bytes:
  """Lines of tab-terminated fields, each the comma-joined words of its tokens (int[N, 1 or 2]; -1: absent
  token, a field absent altogether spells empty): the original's relationship_graph_tokenized.txt.

  Vectorized like spell_int_rows: every word is spelled at the vocabulary's fixed width, absent parts as
  fill bytes that one `translate` deletes."""
  words = np.concatenate([_decimal_table(vocab.size, vocab.word_width, b"0"),  # content words: the id
                          np.full((1, vocab.word_width), _FILL[0], np.uint8)])  # absent
  n = len(fields_NxT[0]) if fields_NxT else 0
  column = lambda byte: np.full((n, 1), byte, np.uint8)  # noqa: E731
  parts = []
  for field in fields_NxT:
    field = np.asarray(field, np.int64).reshape(n, -1)
    for j in range(field.shape[1]):
      ids = field[:, j]
      if j:
        parts.append(np.where(ids[:, None] < 0, _FILL[0], ord(",")).astype(np.uint8))
      parts.append(np.take(words, np.where(ids < 0, vocab.size, ids), axis=0))
    parts.append(column(ord("\t")))
  parts.append(column(ord("\n")))
  return np.concatenate(parts, axis=1).tobytes().translate(None, _FILL)


def write_probe_file(path: pathlib.Path, table: WordTable, prompt_NxP: np.ndarray,
                     answer_NxA: np.ndarray) -> None:
  # Fixed-width rows: the two columns interleave without a Python loop.
  p, a = table.fixed_width_rows(prompt_NxP), table.fixed_width_rows(answer_NxA)
  tab = np.full((len(p), 1), ord("\t"), np.uint8)
  nl = np.full((len(p), 1), ord("\n"), np.uint8)
  path.write_bytes(np.concatenate([p, tab, a, nl], axis=1).tobytes())


def read_probe_file(path: pathlib.Path, table: WordTable) -> tuple[list[list[int]], list[list[int]]]:
  prompts, answers = [], []
  for line in pathlib.Path(path).read_text().splitlines():
    prompt, answer = line.split("\t")
    prompts.append(table.encode(prompt))
    answers.append(table.encode(answer))
  return prompts, answers


DATA_DIR = "data"  # the corpus shards of a dataset folder


def shard_name(i: int) -> str:
  return f"full_text_{i}.txt"


def shard_paths(dataset_dir) -> list[pathlib.Path]:
  """The corpus shards of a dataset folder, in corpus order (by number: full_text_10 after full_text_9)."""
  numbered = [(int(m.group(1)), p) for p in pathlib.Path(dataset_dir, DATA_DIR).glob("full_text_*.txt")
              if (m := re.fullmatch(r"full_text_(\d+)\.txt", p.name))]
  return [p for _, p in sorted(numbered)]


def read_token_stream(dataset_dir, vocab: Vocab) -> np.ndarray:
  """All tokens of the text shards `dataset_dir/data/full_text_<i>.txt` as one int32 stream, in corpus
  order."""
  table = WordTable(vocab)
  paths = shard_paths(dataset_dir)
  if not paths:
    raise FileNotFoundError(f"no text shards {DATA_DIR}/full_text_<i>.txt under {dataset_dir}")
  out = []
  for path in paths:
    for line in path.read_text().splitlines():
      out.extend(table.encode(line))
  return np.asarray(out, np.int32)
