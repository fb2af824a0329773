"""The fully partitioned vocabulary: every token id has exactly one role.

Layout, in id order: reserved tokens, subjects, relationships, objects (a block per relationship), then with
nesting the subject-nested relationships (r''), object-nested relationships (r') and nested objects (a block
per relationship), then the grammar words of every template. A kind with more than
`TWO_TOKEN_THRESHOLD` members gets two tokens per member ("first name", "second name").

A word's text is its id, zero-padded to `word_width` digits (4 as in the original while the vocabulary
has fewer than 10,000 ids, wider past that, so the 4-digit limit never caps the graph).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from data_gen.world.graph import GraphConfig

RESERVED = ("<|endoftext|>", "<|padding|>", ".", "SS", "RR", "OO", "QQ", "AA")
EOT, PAD, DOT, SS, RR, OO, QQ, AA = range(len(RESERVED))
FIRST_CONTENT_ID = len(RESERVED)
TWO_TOKEN_THRESHOLD = 1000
MIN_WORD_WIDTH = 4

# Grammar words each template owns. All are allocated whatever template a corpus uses, so a model can be
# fine-tuned in any format later without re-tokenizing. As in the original, the inverted template's W0..W10
# (W10 allocated, never used) are also the first nonsense fillers: the nonsense block adds W11..W999, and
# it follows the inverted block so that the filler pool W0..W999 is one contiguous id range.
GRAMMAR_SIZES = {"inverted": 11, "nonsense": 989, "simplerepeats": 3, "question": 4, "qa": 3}
NONSENSE_FILLERS = GRAMMAR_SIZES["inverted"] + GRAMMAR_SIZES["nonsense"]
# Names of the grammar words in the original's other_special_tokens.json (W.., WQ..); the original never
# named the simplerepeats and fine-tuning question words, so these use its variable names.
_GRAMMAR_NAMES = {"simplerepeats": ("WS", "WR", "WO"), "question": ("WQ1", "WQ2", "WQ3", "WQ4"),
                  "qa": ("FTWQ1", "FTWQ2", "FTWQ3")}


@dataclasses.dataclass(frozen=True)
class Block:
  """A contiguous id range naming `count` members with one or two tokens each."""

  name: str
  start: int
  count: int
  divisor: int  # 0: one token per member; else member = first * divisor + second

  @property
  def num_first(self) -> int:
    return -(-self.count // self.divisor) if self.divisor else self.count

  @property
  def num_ids(self) -> int:
    return self.num_first + self.divisor

  @property
  def stop(self) -> int:
    return self.start + self.num_ids

  @property
  def tokens_per_member(self) -> int:
    return 2 if self.divisor else 1

  def tokens(self, members) -> np.ndarray:
    """int32[..., tokens_per_member] token ids of the members."""
    members = np.asarray(members, dtype=np.int64)
    if not self.divisor:
      return (self.start + members)[..., None].astype(np.int32)
    first, second = np.divmod(members, self.divisor)
    return np.stack([self.start + first, self.start + self.num_first + second], -1).astype(np.int32)

  def members(self, tokens: np.ndarray) -> np.ndarray:
    """Inverse of `tokens`."""
    tokens = np.asarray(tokens, dtype=np.int64)
    if not self.divisor:
      return (tokens[..., 0] - self.start).astype(np.int32)
    second = tokens[..., 1] - self.start - self.num_first
    return ((tokens[..., 0] - self.start) * self.divisor + second).astype(np.int32)


def _divisor(count: int) -> int:
  if count <= TWO_TOKEN_THRESHOLD:
    return 0
  if count % 1000 == 0:
    return 1000
  # Any count works: first names cover ceil(count / d) rows, the last one partly used. (The original
  # searched for an exact divisor with an operator-precedence bug; primes had none.)
  return math.isqrt(count - 1) + 1


@dataclasses.dataclass(frozen=True)
class Vocab:
  """Token-id layout for a graph shape. Build with `make_vocab`."""

  blocks: tuple[Block, ...]
  num_relationships: int

  def __post_init__(self):
    object.__setattr__(self, "_by_name", {b.name: b for b in self.blocks})

  def block(self, name: str) -> Block:
    return self._by_name[name]

  def has(self, name: str) -> bool:
    return name in self._by_name

  @property
  def size(self) -> int:
    return self.blocks[-1].stop

  @property
  def word_width(self) -> int:
    return max(MIN_WORD_WIDTH, len(str(self.size - 1)))

  @property
  def subjects(self) -> Block:
    return self.block("subjects")

  @property
  def relationships(self) -> Block:
    return self.block("relationships")

  def objects(self, r: int) -> Block:
    return self.block(f"objects/{r}")

  def nested_objects(self, r: int) -> Block:
    return self.block(f"nested_objects/{r}")

  def grammar(self, template: str) -> Block:
    return self.block(f"grammar/{template}")

  def filler_pool(self) -> tuple[int, int]:
    """(first id, count) of the nonsense template's filler words W0..W999."""
    return self.grammar("inverted").start, NONSENSE_FILLERS

  def grammar_names(self) -> dict[str, int]:
    """Every grammar word's name in the original's other_special_tokens.json -> its id, in id order."""
    names = {f"W{k}": self.grammar("inverted").start + k for k in range(GRAMMAR_SIZES["inverted"])}
    names.update({f"W{GRAMMAR_SIZES['inverted'] + k}": self.grammar("nonsense").start + k
                  for k in range(GRAMMAR_SIZES["nonsense"])})
    for template, words in _GRAMMAR_NAMES.items():
      names.update({w: self.grammar(template).start + k for k, w in enumerate(words)})
    return names

  def words(self) -> list[str]:
    """The text of every id, in id order."""
    w = self.word_width
    return list(RESERVED) + [f"{i:0{w}d}" for i in range(FIRST_CONTENT_ID, self.size)]

  def role_of(self, token_id: int) -> str:
    if token_id < FIRST_CONTENT_ID:
      return "reserved"
    for b in self.blocks:
      if b.start <= token_id < b.stop:
        return b.name
    raise ValueError(f"token id {token_id} outside the vocabulary of {self.size}")

  def layout(self) -> dict:
    """JSON-able description (metadata files, and `from_layout` to rebuild)."""
    return {"size": self.size, "word_width": self.word_width, "reserved": list(RESERVED),
            "num_relationships": self.num_relationships,
            "blocks": [dataclasses.asdict(b) for b in self.blocks]}

  @classmethod
  def from_layout(cls, layout: dict) -> "Vocab":
    return cls(blocks=tuple(Block(**b) for b in layout["blocks"]),
               num_relationships=layout["num_relationships"])


def make_vocab(config: GraphConfig) -> Vocab:
  R = config.num_relationships
  kinds: list[tuple[str, int]] = [("subjects", config.num_subjects), ("relationships", R)]
  kinds += [(f"objects/{r}", config.num_objects) for r in range(R)]
  if config.nested:
    kinds += [("subject_nested_relationships", R), ("object_nested_relationships", R)]
    kinds += [(f"nested_objects/{r}", config.num_nested_objects) for r in range(R)]
  kinds += [(f"grammar/{name}", n) for name, n in GRAMMAR_SIZES.items()]
  blocks, start = [], FIRST_CONTENT_ID
  for name, count in kinds:
    # Grammar words are single tokens by definition (the nonsense template draws them one at a time).
    divisor = 0 if name.startswith("grammar/") else _divisor(count)
    blocks.append(Block(name=name, start=start, count=count, divisor=divisor))
    start = blocks[-1].stop
  return Vocab(blocks=tuple(blocks), num_relationships=R)
