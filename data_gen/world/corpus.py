"""The pretraining corpus as a pure function: document index -> tokens.

The corpus is `repeats` passes. One pass holds every *unit* exactly once, in an order shuffled per pass:
- shuffled mode: a unit is one sentence: every subject-object fact (s, r), every subject-nested fact (s, r'')
  with nesting, and every object-nested fact (o, r') `obj_nested_obj_edges_upweight` times;
- biography mode: a unit is one subject's document (all its facts, in random order), or one object-nested
  sentence;
- both modes, Q/A (`questions_frac` > 0): question sentences, one document each. As the original, every
  subject-object fact of a Q/A subject is also written `int(repeats / questions_entity_frac *
  questions_frac)` = k times as a question, in addition to its `repeats` statements. Copy j of a question
  goes to pass j % repeats, so the first k % repeats passes hold one question per Q/A fact more than the
  others.
So each fact is written exactly `repeats` times (times the up-weight for object-nested facts). A sentence
of a dissenting fact (statement or question) uses the minority object with probability
`minority_position_frac`.

`render_documents` is written against an array module `xp`: numpy (default) for the text writer and
probes, jax.numpy under jit for the on-device sampler; both produce the same tokens.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from data_gen.common.errors import check_fraction, check_positive, require
from data_gen.world import hashing
from data_gen.world.graph import NONE, FactGraph
from data_gen.world.templates import (FACT_WIDTH, FILLER, PRETRAINING_TEMPLATES, SKIP, TemplateArrays,
                                      make_template, template_arrays)
from data_gen.world.vocab import DOT, EOT, PAD, Block, Vocab

# Fact kinds.
SUBJECT_OBJECT, SUBJECT_NESTED, OBJECT_NESTED = 0, 1, 2
KIND_NAMES = ("subject_object", "subject_nested", "object_nested")
_PURPOSE_SENTENCE, _PURPOSE_PERMUTATION = 1, 2


@dataclasses.dataclass(frozen=True)
class CorpusConfig:
  """How facts become text. Defaults are the original's."""

  phrase_creator: str = "inverted"
  inversion_frac: float = 0.0
  repeats: int = 500
  shuffle: bool = True  # False: biography mode
  minority_position_frac: float = 0.1
  questions_frac: float = 0.0  # sets the question copies per Q/A fact (module docstring); 0: no Q/A
  obj_nested_obj_edges_upweight: int = 1

  def validate(self) -> None:
    require(self.phrase_creator in PRETRAINING_TEMPLATES, "phrase_creator",
            f"must be one of {', '.join(PRETRAINING_TEMPLATES)}, got {self.phrase_creator!r}")
    check_fraction(self.inversion_frac, "inversion_frac")
    check_positive(self.repeats, "repeats")
    check_fraction(self.minority_position_frac, "minority_position_frac")
    check_fraction(self.questions_frac, "questions_frac")
    check_positive(self.obj_nested_obj_edges_upweight, "obj_nested_obj_edges_upweight")


@dataclasses.dataclass(frozen=True)
class Layout:
  """Static sizes of one pass (Python ints: they fix array shapes)."""

  num_subjects: int
  num_relationships: int
  num_objects: int
  nested: bool
  upweight: int
  shuffle: bool
  dissenting: bool  # some facts have a minority object
  qa: bool  # Q/A is on: question probes, and question sentences when question_copies > 0
  num_qa_subjects: int = 0
  question_copies: int = 0  # k: question sentences of each Q/A fact over the whole corpus
  repeats: int = 1

  @property
  def num_subject_units(self) -> int:
    if not self.shuffle:
      return self.num_subjects
    return self.num_subjects * self.num_relationships * (2 if self.nested else 1)

  @property
  def num_object_nested_units(self) -> int:
    return self.num_relationships * self.num_objects * self.upweight if self.nested else 0

  @property
  def statement_units(self) -> int:
    """Units of a pass that are not questions (the same in every pass)."""
    return self.num_subject_units + self.num_object_nested_units

  @property
  def num_question_facts(self) -> int:
    return self.num_qa_subjects * self.num_relationships if self.question_copies else 0

  @property
  def questions(self) -> bool:
    """The corpus holds question sentences."""
    return self.num_question_facts > 0

  @property
  def num_long_passes(self) -> int:
    """The first passes, which hold one more copy of every question."""
    return self.question_copies % self.repeats if self.questions else 0

  @property
  def short_pass(self) -> int:
    """Units of each pass from `num_long_passes` on; the long passes hold num_question_facts more."""
    return self.statement_units + self.num_question_facts * (self.question_copies // self.repeats)

  @property
  def long_pass(self) -> int:
    return self.short_pass + (self.num_question_facts if self.num_long_passes else 0)

  @property
  def num_documents(self) -> int:
    return self.repeats * self.short_pass + self.num_long_passes * self.num_question_facts

  @property
  def sentences_per_document(self) -> int:
    return 1 if self.shuffle else self.num_relationships * (2 if self.nested else 1)

  @property
  def num_sentences(self) -> int:
    S, R = self.num_subjects, self.num_relationships
    statements = S * R * (2 if self.nested else 1) + self.num_object_nested_units
    return self.repeats * statements + self.num_question_facts * self.question_copies

  def locate(self, doc, xp=np):
    """Global document index (uint32) -> (pass, position in the pass, size of the pass)."""
    doc = xp.asarray(doc).astype(xp.uint32)
    if not self.num_long_passes:
      P = xp.uint32(self.short_pass)
      return doc // P, doc % P, P
    long_docs = self.num_long_passes * self.long_pass
    is_long = doc < xp.uint32(long_docs)
    rest = xp.where(is_long, xp.uint32(0), doc - xp.uint32(long_docs))
    pass_index = xp.where(is_long, doc // xp.uint32(self.long_pass),
                          xp.uint32(self.num_long_passes) + rest // xp.uint32(self.short_pass))
    position = xp.where(is_long, doc % xp.uint32(self.long_pass), rest % xp.uint32(self.short_pass))
    return pass_index, position, xp.where(is_long, xp.uint32(self.long_pass), xp.uint32(self.short_pass))

  def document_index(self, pass_index, position, xp=np):
    """The inverse of `locate` (uint32)."""
    pass_index, position = (xp.asarray(x).astype(xp.uint32) for x in (pass_index, position))
    if not self.num_long_passes:
      return pass_index * xp.uint32(self.short_pass) + position
    h = xp.uint32(self.num_long_passes)
    is_long = pass_index < h
    later = xp.where(is_long, h, pass_index) - h
    return xp.where(is_long, pass_index * xp.uint32(self.long_pass),
                    h * xp.uint32(self.long_pass) + later * xp.uint32(self.short_pass)) + position


def question_copies(repeats: int, questions_entity_frac: float, questions_frac: float) -> int:
  """k = int(repeats / questions_entity_frac * questions_frac): the original's formula, in its float
  arithmetic, so the counts agree to the sentence."""
  if questions_frac <= 0 or questions_entity_frac <= 0:
    return 0
  return int(repeats / questions_entity_frac * questions_frac)


def block_tokens(member, block: Block, start=None, xp=np):
  """int32[..., 2] tokens of members of `block` (-1 for an absent second token); `start` may be traced."""
  member = xp.asarray(member, xp.int32)
  start = block.start if start is None else start
  if not block.divisor:
    return xp.stack([start + member, xp.full_like(member, -1)], -1)
  first, second = member // block.divisor, member % block.divisor
  return xp.stack([start + first, start + block.num_first + second], -1)


def scoped_tokens(member, r, first_block: Block, xp=np):
  """Tokens of a member of relationship r's block; the per-relationship blocks are contiguous and equal."""
  start = first_block.start + xp.asarray(r, xp.int32) * first_block.num_ids
  return block_tokens(member, first_block, start, xp)


@dataclasses.dataclass(frozen=True, eq=False)
class CorpusTables:
  """Everything `render_documents` reads: the graph's arrays (numpy, or jax via `device_tables`) plus
  static structure."""

  objects_SxR: np.ndarray
  minority_SxR: np.ndarray
  nested_RxO: np.ndarray
  qa_subjects_Q: np.ndarray  # the Q/A subjects, ascending (one dummy entry when there are none)
  template: TemplateArrays  # the corpus template's variants, then the question variant (Q/A sentences)
  num_main_variants: int
  layout: Layout
  vocab: Vocab
  config: CorpusConfig
  seed_word: int
  # `template` with "." (and, for one-sentence documents, end-of-text) as literal pieces: rendering then
  # writes whole sentences at once instead of appending columns (each append copies every row).
  ended_template: TemplateArrays
  # bool[S, R]: subject-object facts left out of the corpus (their sentences and questions are dropped,
  # every other document is unchanged). The retrain oracle of forgetting (data_gen.edit_sets.edited_graph); None: all.
  removed_SxR: np.ndarray | None = None

  @property
  def sentence_length(self) -> int:
    return self.template.length + 1  # + "."

  @property
  def document_length(self) -> int:
    return self.layout.sentences_per_document * self.sentence_length + 1  # + end-of-text


def _corpus_template(main: TemplateArrays, question: TemplateArrays | None) -> TemplateArrays:
  """The variants a corpus can use: the main template's with nonzero probability, then (if some subjects
  have Q/A sentences) the question form. Fewer variants, fewer gathers per sentence."""
  probs = np.diff(main.variant_cdf_V, prepend=0.0)
  used = np.flatnonzero(probs > 0)
  parts = [main] + ([question] if question is not None else [])
  L = max(p.length for p in parts)
  pad = lambda x, v: np.pad(x, ((0, 0), (0, L - x.shape[1])), constant_values=v)  # noqa: E731
  stack = lambda field, v: np.concatenate(  # noqa: E731
      [pad(getattr(main, field)[used], v)] + [pad(getattr(q, field), v) for q in parts[1:]])
  cdf = np.cumsum(probs[used] / probs[used].sum()).astype(np.float32)
  cdf[-1] = 1.0
  return dataclasses.replace(main, codes_VxL=stack("codes_VxL", SKIP), group_VxL=stack("group_VxL", -1),
                             rank_VxL=stack("rank_VxL", 0), is_answer_VxL=stack("is_answer_VxL", False),
                             variant_cdf_V=cdf)


def _with_ending(t: TemplateArrays, codes: tuple[int, ...]) -> TemplateArrays:
  V, k = t.codes_VxL.shape[0], len(codes)
  add = lambda x, v: np.concatenate([x, np.broadcast_to(np.asarray(v, x.dtype), (V, k))], 1)  # noqa: E731
  return dataclasses.replace(t, codes_VxL=add(t.codes_VxL, codes), group_VxL=add(t.group_VxL, -1),
                             rank_VxL=add(t.rank_VxL, 0), is_answer_VxL=add(t.is_answer_VxL, False))


def make_tables(graph: FactGraph, vocab: Vocab, config: CorpusConfig, seed: int) -> CorpusTables:
  config.validate()
  main = template_arrays(make_template(config.phrase_creator, vocab, config.inversion_frac), vocab)
  e = graph.config.questions_entity_frac
  qa = config.questions_frac > 0 and e > 0
  qa_subjects = np.flatnonzero(graph.qa_subject_S).astype(np.int32) if qa else np.zeros(0, np.int32)
  layout = Layout(graph.num_subjects, graph.num_relationships, graph.num_objects, graph.config.nested,
                  config.obj_nested_obj_edges_upweight, config.shuffle,
                  dissenting=bool((graph.minority_SxR != NONE).any()), qa=qa,
                  num_qa_subjects=len(qa_subjects), question_copies=question_copies(config.repeats, e,
                                                                                    config.questions_frac),
                  repeats=config.repeats)
  require(layout.long_pass < 2 ** 31, "subjects",
          f"one pass holds {layout.long_pass} units; at most 2^31 - 1 are supported")
  question = template_arrays(make_template("question", vocab), vocab) if layout.questions else None
  template = _corpus_template(main, question)
  return CorpusTables(  # numpy arrays: `device_tables` moves them to the accelerator when needed
      objects_SxR=graph.objects_SxR, minority_SxR=graph.minority_SxR, nested_RxO=graph.nested_RxO,
      qa_subjects_Q=qa_subjects if len(qa_subjects) else np.zeros(1, np.int32),
      template=template, num_main_variants=int(template.variant_cdf_V.shape[0]),
      layout=layout, vocab=vocab, config=config,
      seed_word=int(hashing.seed_word(seed, _PURPOSE_SENTENCE)),
      ended_template=_with_ending(template, (DOT, EOT) if layout.sentences_per_document == 1 else (DOT,)))


def spell_facts(vocab: Vocab, kind, head, r, tail, xp=np):
  """int32[..., FACT_WIDTH] = [head0, head1, rel, tail0, tail1] (-1: absent second token) of explicit
  facts: SUBJECT_OBJECT (subject, r, object), SUBJECT_NESTED (subject, r'', nested value) or
  OBJECT_NESTED (object of r, r', nested value); `kind` may vary per element."""
  kind, head, r, tail = xp.broadcast_arrays(*(xp.asarray(x, xp.int32) for x in (kind, head, r, tail)))
  if not vocab.has("nested_objects/0"):  # every fact is subject-object: skip the other kinds' branches
    return xp.concatenate([block_tokens(head, vocab.subjects, xp=xp), (vocab.relationships.start + r)[..., None],
                           scoped_tokens(tail, r, vocab.objects(0), xp)], -1).astype(xp.int32)
  is_on, is_so = kind == OBJECT_NESTED, kind == SUBJECT_OBJECT
  head_tok = xp.where(is_on[..., None], scoped_tokens(head, r, vocab.objects(0), xp),
                      block_tokens(xp.where(is_on, 0, head), vocab.subjects, xp=xp))
  tail_tok = scoped_tokens(tail, r, vocab.objects(0), xp)
  rel = vocab.relationships.start + r
  if vocab.has("nested_objects/0"):
    tail_tok = xp.where(is_so[..., None], tail_tok, scoped_tokens(tail, r, vocab.nested_objects(0), xp))
    rel = xp.where(is_so, rel, xp.where(is_on, vocab.block("object_nested_relationships").start + r,
                                        vocab.block("subject_nested_relationships").start + r))
  return xp.concatenate([head_tok, rel[..., None], tail_tok], -1).astype(xp.int32)


def fact_tokens(tables: CorpusTables, kind, head, r, object_override=None, xp=np):
  """`spell_facts` of the graph's facts: subject-object facts answer with their object (or
  `object_override`), nested facts with the nested value of the object."""
  kind, head, r = (xp.asarray(x, xp.int32) for x in (kind, head, r))
  if not tables.layout.nested:  # subject-object facts only
    tail = tables.objects_SxR[head, r] if object_override is None else object_override
    return spell_facts(tables.vocab, kind, head, r, tail, xp)
  is_on = kind == OBJECT_NESTED
  graph_object = tables.objects_SxR[xp.where(is_on, 0, head), r]
  tail = graph_object if object_override is None else xp.asarray(object_override, xp.int32)
  if tables.layout.nested:
    tail = xp.where(kind == SUBJECT_OBJECT, tail, tables.nested_RxO[r, xp.where(is_on, head, graph_object)])
  return spell_facts(tables.vocab, kind, head, r, tail, xp)


def render_sentences(template: TemplateArrays, facts_Nx5, variant_N, counts_NxG, filler_u_NxL, xp=np):
  """Pieces -> (tokens int32[N, L], keep bool[N, L], is_answer bool[N, L]); dropped pieces stay in place."""
  single = template.codes_VxL.shape[0] == 1  # one variant: every row has the same pieces, no gathers
  pick = (lambda x: xp.asarray(x)[:1]) if single else (lambda x: xp.asarray(x)[variant_N])  # noqa: E731
  codes, is_answer = pick(template.codes_VxL), pick(template.is_answer_VxL)
  slot = xp.clip(-1 - codes, 0, FACT_WIDTH - 1)
  from_fact = facts_Nx5[:, slot[0]] if single else xp.take_along_axis(facts_Nx5, slot, axis=-1)
  tokens = xp.where(codes >= 0, codes, from_fact)
  if (template.codes_VxL == FILLER).any():
    filler = template.filler_start + xp.minimum(
        (filler_u_NxL * template.filler_count).astype(xp.int32), template.filler_count - 1)
    tokens = xp.where(codes == FILLER, filler, tokens)
  keep = (codes != SKIP) & (tokens >= 0)
  if (template.group_VxL >= 0).any():
    group, rank = pick(template.group_VxL), pick(template.rank_VxL)
    group_count = xp.take_along_axis(counts_NxG, xp.broadcast_to(xp.maximum(group, 0), tokens.shape), axis=-1)
    keep = keep & ((group < 0) | (rank < group_count))
  return tokens, keep, xp.broadcast_to(is_answer, tokens.shape)


def _sample_counts(template: TemplateArrays, u_NxG, xp):
  cdf = xp.asarray(template.group_cdf_GxK)
  return xp.sum(u_NxG[..., None] >= cdf[None, :, :-1], axis=-1).astype(xp.int32)


def _decode_units(tables: CorpusTables, unit, xp):
  """unit int[N] -> per document slot: kind, head, relationship, valid, is_question (each [N, M])."""
  lay = tables.layout
  S, R, O, M = lay.num_subjects, lay.num_relationships, lay.num_objects, lay.sentences_per_document
  unit = unit.astype(xp.int32)
  if lay.shuffle and lay.statement_units == lay.num_subject_units == S * R and not lay.questions:
    # Only subject-object sentences (the common corpus): the general decoding below is a dozen passes.
    zeros = xp.zeros((unit.shape[0], 1), xp.int32)
    return zeros, (unit // R)[:, None], (unit % R)[:, None], xp.ones_like(zeros, bool), xp.zeros_like(zeros, bool)
  is_subject_unit = unit < lay.num_subject_units
  c = xp.maximum(unit - lay.num_subject_units, 0) // lay.upweight
  on_r, on_o = c // max(O, 1), c % max(O, 1)
  # Question units follow the statements: unit statement_units + j * F + f asks Q/A fact f.
  is_question = unit >= lay.statement_units
  if lay.questions:
    f = xp.maximum(unit - lay.statement_units, 0) % lay.num_question_facts
    q_subject, q_r = tables.qa_subjects_Q[f // R], f % R
  else:
    q_subject = q_r = xp.zeros_like(unit)
  if lay.shuffle:
    per = S * R
    kind = xp.where(unit < per, SUBJECT_OBJECT, SUBJECT_NESTED)
    sr = unit % per
    subject, r = sr // R, sr % R
    kind = xp.where(is_subject_unit | is_question, kind, OBJECT_NESTED)
    kind = xp.where(is_question, SUBJECT_OBJECT, kind)[:, None]
    head = xp.where(is_question, q_subject, xp.where(is_subject_unit, subject, on_o))[:, None]
    rel = xp.where(is_question, q_r, xp.where(is_subject_unit, r, on_r))[:, None]
    return kind, head, rel, xp.ones_like(kind, bool), is_question[:, None]
  m = xp.arange(M)[None, :]
  so, q = is_subject_unit[:, None], is_question[:, None]
  kind = xp.where(so, xp.where(m < R, SUBJECT_OBJECT, SUBJECT_NESTED), xp.where(q, SUBJECT_OBJECT, OBJECT_NESTED))
  head = xp.where(so, unit[:, None], xp.where(q, q_subject[:, None], on_o[:, None]))
  rel = xp.where(so, m % R, xp.where(q, q_r[:, None], on_r[:, None]))
  valid = so | (m == 0)
  return kind, head, rel, xp.broadcast_to(valid, kind.shape), xp.broadcast_to(q, kind.shape)


def _stable_argsort(x, xp):
  return np.argsort(x, axis=-1, kind="stable") if xp is np else xp.argsort(x, axis=-1, stable=True)


def render_documents(tables: CorpusTables, doc_index, xp=np) -> dict:
  """Documents `doc_index` (int[N], global over all passes) -> padded token rows.

  Returns tokens int32[N, D] (D = tables.document_length), keep bool[N, D] (False on dropped pieces, which
  are not compacted away here), is_answer bool[N, D].
  """
  lay, cfg, tpl = tables.layout, tables.config, tables.template
  pass_index, position, pass_size = lay.locate(doc_index, xp)
  one_pass = xp is np and pass_index.size and pass_index.min() == pass_index.max()
  # One key for a run of documents of one pass (the writer's chunks): hashed once, not per document.
  perm_key = hashing.hash_words(tables.seed_word, _PURPOSE_PERMUTATION, pass_index[0] if one_pass else pass_index,
                                xp=xp)
  unit = hashing.permute(position, lay.long_pass, perm_key, xp,
                         limit=pass_size if lay.num_long_passes else None)
  kind, head, rel, valid, is_question = _decode_units(tables, unit, xp)  # [N, M]
  N, M = kind.shape
  ended = tables.ended_template
  L = ended.length
  G = tpl.group_cdf_GxK.shape[0]
  # Draw only what this corpus needs (static decisions): hashing is a large share of the writer's time.
  sizes = {"minority": int(lay.dissenting and cfg.minority_position_frac > 0),
           "variant": int(tables.num_main_variants > 1), "order": int(M > 1),
           "counts": G if (tpl.group_VxL >= 0).any() else 0, "filler": L if (tpl.codes_VxL == FILLER).any() else 0}
  if sum(sizes.values()):
    stream = hashing.hash_words(tables.seed_word, pass_index[:, None], position[:, None],
                                xp.arange(M, dtype=xp.uint32)[None, :], xp=xp)  # [N, M]
    u = hashing.uniforms(stream, sum(sizes.values()), xp)
  draws, start = {}, 0
  for name, size in sizes.items():
    draws[name] = u[..., start:start + size] if size else xp.zeros((N, M, 1), xp.float32)
    start += size
  u_minority = draws["minority"][..., 0]
  u_variant, u_order = draws["variant"][..., 0], draws["order"][..., 0]
  u_counts = draws["counts"] if sizes["counts"] else xp.zeros((N, M, G), xp.float32)
  u_filler = draws["filler"] if sizes["filler"] else xp.zeros((N, M, L), xp.float32)

  override = None  # the graph's object, unless a dissenting fact's sentence uses its minority object
  if sizes["minority"]:
    safe_subject = xp.where(kind == OBJECT_NESTED, 0, head)
    minority = tables.minority_SxR[safe_subject, rel]
    use_minority = (kind == SUBJECT_OBJECT) & (minority != NONE) & (u_minority < cfg.minority_position_frac)
    override = xp.where(use_minority, minority, tables.objects_SxR[safe_subject, rel])
  facts = fact_tokens(tables, kind, head, rel, override, xp)
  gone = None
  if tables.removed_SxR is not None:
    gone = (kind == SUBJECT_OBJECT) & tables.removed_SxR[xp.where(kind == OBJECT_NESTED, 0, head), rel]

  main_cdf = xp.asarray(tpl.variant_cdf_V)
  variant = xp.minimum(xp.sum(u_variant[..., None] >= main_cdf[:-1], -1), tables.num_main_variants - 1)
  variant = xp.where(is_question, tables.num_main_variants, variant)
  counts = _sample_counts(tpl, u_counts, xp)
  flat = lambda x: x.reshape((N * M,) + x.shape[2:])  # noqa: E731
  tokens, keep, is_answer = render_sentences(ended, flat(facts), flat(variant), flat(counts), flat(u_filler),
                                             xp)
  if gone is not None:
    keep = keep & ~flat(gone)[:, None]
  if M == 1:  # one sentence, "." and end-of-text: the rendered rows are the documents
    return {"tokens": tokens, "keep": keep, "is_answer": is_answer}
  tokens, keep, is_answer = (x.reshape(N, M, L) for x in (tokens, keep, is_answer))
  keep = keep & valid[..., None]
  # Biography: the subject's facts in a random order.
  order = _stable_argsort(xp.where(valid, u_order, 2.0), xp)
  take = lambda x: xp.take_along_axis(x, order[..., None], axis=1)  # noqa: E731
  tokens, keep, is_answer = take(tokens), take(keep), take(is_answer)
  end = lambda x, v: xp.concatenate([x.reshape(N, -1), xp.full((N, 1), v, x.dtype)], -1)  # noqa: E731
  return {"tokens": end(tokens, EOT), "keep": end(keep, True), "is_answer": end(is_answer, False)}


def compact(tokens_NxL, keep_NxL, width: int, *extra_NxL):
  """Moves kept entries left, pads with PAD (extras with False) and cuts rows at `width`.

  Returns (tokens int32[N, width], valid bool[N, width], *extras, lengths int32[N] before the cut).
  """
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  N = tokens_NxL.shape[0]
  position = jnp.cumsum(keep_NxL, axis=-1) - 1
  target = jnp.where(keep_NxL & (position < width), position, width)  # `width` is out of range: dropped
  rows = jnp.arange(N)[:, None]
  out = jnp.full((N, width), PAD, jnp.int32).at[rows, target].set(tokens_NxL, mode="drop")
  valid = jnp.zeros((N, width), bool).at[rows, target].set(True, mode="drop")
  extras = [jnp.zeros((N, width), x.dtype).at[rows, target].set(x, mode="drop") for x in extra_NxL]
  return (out, valid, *extras, jnp.sum(keep_NxL, axis=-1).astype(jnp.int32))


def varying_columns(tables: CorpusTables) -> np.ndarray | None:
  """Columns of rendered documents that can differ between documents (the fact slots) when every
  document is one sentence in one word order without optional pieces (the others hold one literal token
  in every document); None for other corpora. The text writer's fast path (`WordTable.join_documents`)."""
  t = tables.ended_template
  if (tables.layout.sentences_per_document != 1 or t.codes_VxL.shape[0] != 1 or (t.group_VxL >= 0).any()
      or (t.codes_VxL == FILLER).any()):
    return None
  return np.flatnonzero(t.codes_VxL[0] < 0)


def render_padded_documents(tables: CorpusTables, doc_index, xp=np):
  """Documents as rows with PAD in place of dropped pieces, and their lengths: the text writer's input
  (the spelling step skips PAD, so no compaction is needed here)."""
  d = render_documents(tables, doc_index, xp)
  return xp.where(d["keep"], d["tokens"], PAD), xp.sum(d["keep"], axis=-1, dtype=xp.int32)


def device_tables(tables: CorpusTables) -> CorpusTables:
  """The same tables as jax arrays (what jitted code such as the sampler indexes with traced values)."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  fields = _ARRAY_FIELDS + (("removed_SxR",) if tables.removed_SxR is not None else ())
  return dataclasses.replace(tables, **{f: jnp.asarray(getattr(tables, f)) for f in fields})


_ARRAY_FIELDS = ("objects_SxR", "minority_SxR", "nested_RxO", "qa_subjects_Q")
