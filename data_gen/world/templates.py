"""Sentence templates ("phrase creators") as token-id skeletons with slots.

A template is a few *variants* (word orders). A variant is a fixed list of pieces; each piece is a literal
token id or a slot (head, relationship, tail, random filler word), and may belong to an optional *group*
(for example "1-3 copies of the subject's marker word") of which a sentence keeps the first `count`
members. Rendering is then gather + mask + compaction: the same arrays drive the on-device sampler, the text
writer and the probes.

A fact is (head, relationship, tail) as token ids: subject-object facts are (s, r, o), object-nested facts
(o, r', n), subject-nested facts (s, r'', n). Head and tail have one or two tokens.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools

import numpy as np

from data_gen.common.errors import OptionError
from data_gen.world.vocab import AA, OO, QQ, RR, SS, Vocab

# Slot codes (negative so that they never collide with token ids). The fact vector of a sentence is
# [head0, head1, rel, tail0, tail1] with -1 for an absent second token; code -1-k reads entry k.
HEAD, HEAD2, REL, TAIL, TAIL2, FILLER, SKIP = -1, -2, -3, -4, -5, -6, -7
FACT_WIDTH = 5
REFUSAL_ANSWER = (OO, OO)

PRETRAINING_TEMPLATES = ("inverted", "simplerepeats", "nonsense", "question")
FINETUNING_TEMPLATES = ("qa", "refusal", "qa_refusal", "remapping")
ALL_TEMPLATES = PRETRAINING_TEMPLATES + FINETUNING_TEMPLATES
NONSENSE_GEOMETRIC_P = 0.4


@dataclasses.dataclass(frozen=True)
class Piece:
  code: int
  group: int = -1  # -1: always present
  rank: int = 0  # kept when rank < the sentence's count for `group`


@dataclasses.dataclass(frozen=True)
class Variant:
  name: str
  pieces: tuple[Piece, ...]
  answer_start: int  # pieces[:answer_start] is the probe prompt, the rest its answer


@dataclasses.dataclass(frozen=True)
class ProbeForm:
  """A probe: one variant with every group count fixed (and, for fillers, fixed per row by a seed)."""

  name: str
  variant: int
  counts: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Template:
  name: str
  variants: tuple[Variant, ...]
  variant_probs: tuple[float, ...]
  group_probs: tuple[tuple[float, ...], ...]  # group g keeps k pieces with probability group_probs[g][k]
  probes: tuple[ProbeForm, ...]

  @property
  def num_groups(self) -> int:
    return len(self.group_probs)


def _lit(*ids: int) -> list[Piece]:
  return [Piece(i) for i in ids]


HEAD_PIECES = [Piece(HEAD), Piece(HEAD2)]
REL_PIECES = [Piece(REL)]
TAIL_PIECES = [Piece(TAIL), Piece(TAIL2)]


def _repeat(code: int, group: int, max_count: int) -> list[Piece]:
  return [Piece(code, group, k) for k in range(max_count)]


def _variant(name: str, *parts: list[Piece], answer: list[Piece] | None = None) -> Variant:
  prompt = [p for part in parts for p in part]
  answer = TAIL_PIECES if answer is None else answer
  return Variant(name, tuple(prompt + answer), len(prompt))


def _uniform(lo: int, hi: int) -> tuple[float, ...]:
  return tuple(1.0 / (hi - lo + 1) if lo <= k <= hi else 0.0 for k in range(hi + 1))


def _truncated_geometric(p: float, lo: int, hi: int) -> tuple[float, ...]:
  w = [(1 - p) ** (k - lo) * p if lo <= k <= hi else 0.0 for k in range(hi + 1)]
  return tuple(x / sum(w) for x in w)


def make_template(name: str, vocab: Vocab, inversion_frac: float = 0.0) -> Template:
  """The template `name` with its grammar words taken from `vocab`."""
  if name not in ALL_TEMPLATES:
    raise OptionError("phrase_creator", f"must be one of {', '.join(ALL_TEMPLATES)}, got {name!r}")
  f = inversion_frac
  if name in ("inverted", "remapping", "refusal"):
    w = vocab.grammar("inverted").tokens(np.arange(10))[:, 0].tolist()
    sro = _variant("sro", _lit(SS), HEAD_PIECES, _lit(w[0], w[1], RR), REL_PIECES, _lit(w[2], OO))
    if name == "refusal":
      prompt = sro.pieces[:sro.answer_start]
      refusal = Variant("refusal", prompt + tuple(_lit(*REFUSAL_ANSWER)), len(prompt))
      return Template(name, (refusal,), (1.0,), (), (ProbeForm("refusal", 0, ()),))
    if name == "remapping":
      return Template(name, (sro,), (1.0,), (), (ProbeForm("remapping", 0, ()),))
    sor = _variant("sor", _lit(SS), HEAD_PIECES, _lit(w[0], OO), TAIL_PIECES, _lit(w[3], w[4], RR),
                   answer=REL_PIECES)
    osr = _variant("osr", _lit(OO), TAIL_PIECES, _lit(w[5], SS), HEAD_PIECES, _lit(w[8], RR),
                   answer=REL_PIECES)
    rso = _variant("rso", _lit(w[9], RR), REL_PIECES, _lit(w[7], SS), HEAD_PIECES, _lit(w[5], OO))
    return Template(name, (sro, sor, osr, rso), (1 - f, f / 3, f / 3, f / 3), (),
                    (ProbeForm("sro", 0, ()), ProbeForm("rso", 3, ())))
  if name == "simplerepeats":
    m_s, m_r, m_o = vocab.grammar("simplerepeats").tokens(np.arange(3))[:, 0].tolist()
    v = _variant("simplerepeats", _repeat(m_s, 0, 3), _lit(SS), HEAD_PIECES, _repeat(m_s, 1, 3),
                 _repeat(m_r, 2, 3), _lit(RR), REL_PIECES, _repeat(m_r, 3, 3), _repeat(m_o, 4, 3),
                 _lit(OO), answer=TAIL_PIECES + _repeat(m_o, 5, 3))
    before, after = _uniform(1, 3), _uniform(0, 3)
    probes = tuple(
        ProbeForm(f"simplerepeats_s{a}{b}_r{c}{d}_o{e}", 0, (a, b, c, d, e, 0))
        for a, b, c, d, e in itertools.product((1, 2, 3), (0, 1, 2, 3), (1, 2, 3), (0, 1, 2, 3), (1, 2, 3)))
    return Template(name, (v,), (1.0,), (before, after, before, after, before, after), probes)
  if name == "nonsense":
    fill = lambda g: _repeat(FILLER, g, 5)  # noqa: E731
    rso = _variant("rso", fill(0), _lit(RR), REL_PIECES, fill(1), _lit(SS), HEAD_PIECES, fill(2),
                   _lit(OO))
    sro = _variant("sro", fill(0), _lit(SS), HEAD_PIECES, fill(1), _lit(RR), REL_PIECES, fill(2),
                   _lit(OO))
    geo = _truncated_geometric(NONSENSE_GEOMETRIC_P, 1, 5)
    return Template(name, (rso, sro), (1 - f, f), (geo, geo, geo),
                    (ProbeForm("nonsense_rso", 0, (2, 2, 2)), ProbeForm("nonsense_sro", 1, (2, 2, 2))))
  if name == "question":
    q = vocab.grammar("question").tokens(np.arange(4))[:, 0].tolist()
    # Question forms answer " OO <object>" after a prompt ending at AA, as the original's probe files.
    v = _variant("question", _lit(QQ, q[0], RR), REL_PIECES, _lit(q[1], SS), HEAD_PIECES,
                 _lit(q[2], q[3], AA), answer=_lit(OO) + TAIL_PIECES)
    return Template(name, (v,), (1.0,), (), (ProbeForm("question", 0, ()),))
  # qa and qa_refusal: the fine-tuning question form.
  q = vocab.grammar("qa").tokens(np.arange(3))[:, 0].tolist()
  prompt = (_lit(QQ, q[0], RR), REL_PIECES, _lit(q[1], SS), HEAD_PIECES, _lit(q[2], AA))
  answer = _lit(OO) + (_lit(*REFUSAL_ANSWER) if name == "qa_refusal" else TAIL_PIECES)
  v = _variant(name, *prompt, answer=answer)
  return Template(name, (v,), (1.0,), (), (ProbeForm(name, 0, ()),))


@dataclasses.dataclass(frozen=True, eq=False)
class TemplateArrays:
  """A template as rectangular numpy arrays (the form the renderer and the sampler use)."""

  codes_VxL: np.ndarray  # int32 piece codes, SKIP-padded
  group_VxL: np.ndarray  # int32, -1 where always kept
  rank_VxL: np.ndarray  # int32
  is_answer_VxL: np.ndarray  # bool, pieces from answer_start on
  variant_cdf_V: np.ndarray  # float32 cumulative variant probabilities
  group_cdf_GxK: np.ndarray  # float32 cumulative count probabilities per group
  filler_start: int  # first id of the nonsense filler words (vocab.filler_pool)
  filler_count: int

  @property
  def length(self) -> int:
    return self.codes_VxL.shape[1]


@functools.lru_cache(maxsize=64)  # one object per template: jitted renderers key their cache on it
def template_arrays(template: Template, vocab: Vocab) -> TemplateArrays:
  V = len(template.variants)
  L = max(len(v.pieces) for v in template.variants)
  codes = np.full((V, L), SKIP, np.int32)
  group = np.full((V, L), -1, np.int32)
  rank = np.zeros((V, L), np.int32)
  is_answer = np.zeros((V, L), bool)
  for i, v in enumerate(template.variants):
    n = len(v.pieces)
    codes[i, :n] = [p.code for p in v.pieces]
    group[i, :n] = [p.group for p in v.pieces]
    rank[i, :n] = [p.rank for p in v.pieces]
    is_answer[i, v.answer_start:n] = True
  K = max([len(p) for p in template.group_probs], default=1)
  group_cdf = np.ones((max(template.num_groups, 1), K), np.float32)
  for g, probs in enumerate(template.group_probs):
    group_cdf[g, :len(probs)] = np.cumsum(probs)
  group_cdf[:, -1] = 1.0
  variant_cdf = np.cumsum(np.asarray(template.variant_probs, np.float64)).astype(np.float32)
  variant_cdf[-1] = 1.0
  return TemplateArrays(codes, group, rank, is_answer, variant_cdf, group_cdf, *vocab.filler_pool())
