"""The pretraining corpus as a pure function: document index -> tokens.

The corpus is `repeats` passes. One pass holds every *unit* exactly once, in an order shuffled per pass:
- shuffled mode: a unit is one sentence: every subject-object fact (s, r), every subject-nested fact (s, r'')
  with nesting, and every object-nested fact (o, r') `obj_nested_obj_edges_upweight` times;
- biography mode: a unit is one subject's document (all its facts, in random order), or one object-nested
  sentence.
So each fact is written exactly `repeats` times (times the up-weight for object-nested facts). A sentence
of a dissenting fact uses the minority object with probability `minority_position_frac`; a subject-object
sentence of a Q/A subject is a question with probability `questions_frac`.

`render_documents` is written in jax.numpy over `CorpusTables`; jitted, it feeds the on-device sampler and
the text writer alike.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from data_gen import hashing
from data_gen.errors import check_fraction, check_positive, require
from data_gen.graph import NONE, FactGraph
from data_gen.templates import (FACT_WIDTH, FILLER, PRETRAINING_TEMPLATES, SKIP, TemplateArrays,
                                make_template, template_arrays)
from data_gen.vocab import DOT, EOT, PAD, Block, Vocab

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
  questions_frac: float = 0.5
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

  @property
  def num_subject_units(self) -> int:
    if not self.shuffle:
      return self.num_subjects
    return self.num_subjects * self.num_relationships * (2 if self.nested else 1)

  @property
  def num_object_nested_units(self) -> int:
    return self.num_relationships * self.num_objects * self.upweight if self.nested else 0

  @property
  def units_per_pass(self) -> int:
    return self.num_subject_units + self.num_object_nested_units

  @property
  def sentences_per_document(self) -> int:
    return 1 if self.shuffle else self.num_relationships * (2 if self.nested else 1)

  @property
  def sentences_per_pass(self) -> int:
    S, R = self.num_subjects, self.num_relationships
    return S * R * (2 if self.nested else 1) + self.num_object_nested_units


def block_tokens(member, block: Block, start=None) -> jax.Array:
  """int32[..., 2] tokens of members of `block` (-1 for an absent second token); `start` may be traced."""
  member = jnp.asarray(member, jnp.int32)
  start = block.start if start is None else start
  if not block.divisor:
    return jnp.stack([start + member, jnp.full_like(member, -1)], -1)
  first, second = member // block.divisor, member % block.divisor
  return jnp.stack([start + first, start + block.num_first + second], -1)


def scoped_tokens(member, r, first_block: Block) -> jax.Array:
  """Tokens of a member of relationship r's block; the per-relationship blocks are contiguous and equal."""
  return block_tokens(member, first_block, first_block.start + jnp.asarray(r, jnp.int32) * first_block.num_ids)


@functools.partial(jax.tree_util.register_dataclass,
                   data_fields=["objects_SxR", "minority_SxR", "nested_RxO", "qa_subject_S"],
                   meta_fields=["template", "num_main_variants", "layout", "vocab", "config", "seed_word"])
@dataclasses.dataclass(frozen=True, eq=False)
class CorpusTables:
  """Everything `render_documents` reads: device arrays plus static structure."""

  objects_SxR: jax.Array
  minority_SxR: jax.Array
  nested_RxO: jax.Array
  qa_subject_S: jax.Array
  template: TemplateArrays  # the corpus template's variants, then the question variant (Q/A sentences)
  num_main_variants: int
  layout: Layout
  vocab: Vocab
  config: CorpusConfig
  seed_word: int

  @property
  def sentence_length(self) -> int:
    return self.template.length + 1  # + "."

  @property
  def document_length(self) -> int:
    return self.layout.sentences_per_document * self.sentence_length + 1  # + end-of-text


def _concat_templates(a: TemplateArrays, b: TemplateArrays) -> TemplateArrays:
  L = max(a.length, b.length)
  pad = lambda x, v: np.pad(x, ((0, 0), (0, L - x.shape[1])), constant_values=v)  # noqa: E731
  return dataclasses.replace(
      a,
      codes_VxL=np.concatenate([pad(a.codes_VxL, SKIP), pad(b.codes_VxL, SKIP)]),
      group_VxL=np.concatenate([pad(a.group_VxL, -1), pad(b.group_VxL, -1)]),
      rank_VxL=np.concatenate([pad(a.rank_VxL, 0), pad(b.rank_VxL, 0)]),
      is_answer_VxL=np.concatenate([pad(a.is_answer_VxL, False), pad(b.is_answer_VxL, False)]))


def make_tables(graph: FactGraph, vocab: Vocab, config: CorpusConfig, seed: int) -> CorpusTables:
  config.validate()
  main = template_arrays(make_template(config.phrase_creator, vocab, config.inversion_frac), vocab)
  question = template_arrays(make_template("question", vocab), vocab)
  layout = Layout(graph.num_subjects, graph.num_relationships, graph.num_objects, graph.config.nested,
                  config.obj_nested_obj_edges_upweight, config.shuffle)
  require(layout.units_per_pass < 2 ** 31, "subjects",
          f"one pass holds {layout.units_per_pass} units; at most 2^31 - 1 are supported")
  return CorpusTables(
      objects_SxR=jnp.asarray(graph.objects_SxR), minority_SxR=jnp.asarray(graph.minority_SxR),
      nested_RxO=jnp.asarray(graph.nested_RxO), qa_subject_S=jnp.asarray(graph.qa_subject_S),
      template=_concat_templates(main, question), num_main_variants=main.codes_VxL.shape[0],
      layout=layout, vocab=vocab, config=config,
      seed_word=int(hashing.seed_word(seed, _PURPOSE_SENTENCE)))


def fact_tokens(tables: CorpusTables, kind, head, r, object_override=None) -> jax.Array:
  """int32[..., FACT_WIDTH] = [head0, head1, rel, tail0, tail1] (-1: absent second token).

  kind: SUBJECT_OBJECT (head = subject, tail = its object, or `object_override`), SUBJECT_NESTED
  (head = subject, tail = the nested value of its object), OBJECT_NESTED (head = object of relationship r,
  tail = its nested value).
  """
  v = tables.vocab
  kind, head, r = (jnp.asarray(x, jnp.int32) for x in (kind, head, r))
  is_on = kind == OBJECT_NESTED
  subject = jnp.where(is_on, 0, head)
  graph_object = tables.objects_SxR[subject, r]
  obj = jnp.where(is_on, head, graph_object)
  obj_tok = scoped_tokens(obj, r, v.objects(0))
  head_tok = jnp.where(is_on[..., None], obj_tok, block_tokens(subject, v.subjects))
  tail_object = graph_object if object_override is None else jnp.asarray(object_override, jnp.int32)
  tail_tok = scoped_tokens(tail_object, r, v.objects(0))
  rel = v.relationships.start + r
  if tables.layout.nested:
    nested_tok = scoped_tokens(tables.nested_RxO[r, obj], r, v.nested_objects(0))
    tail_tok = jnp.where((kind == SUBJECT_OBJECT)[..., None], tail_tok, nested_tok)
    rel = jnp.where(kind == SUBJECT_OBJECT, rel,
                    jnp.where(is_on, v.block("object_nested_relationships").start + r,
                              v.block("subject_nested_relationships").start + r))
  return jnp.concatenate([head_tok, rel[..., None], tail_tok], -1).astype(jnp.int32)


def render_sentences(template: TemplateArrays, facts_Nx5, variant_N, counts_NxG, filler_u_NxL):
  """Pieces -> (tokens int32[N, L], keep bool[N, L], is_answer bool[N, L]); dropped pieces stay in place."""
  codes = jnp.asarray(template.codes_VxL)[variant_N]
  group = jnp.asarray(template.group_VxL)[variant_N]
  rank = jnp.asarray(template.rank_VxL)[variant_N]
  is_answer = jnp.asarray(template.is_answer_VxL)[variant_N]
  slot = jnp.clip(-1 - codes, 0, FACT_WIDTH - 1)
  from_fact = jnp.take_along_axis(facts_Nx5, slot, axis=-1)
  filler = template.filler_start + jnp.minimum(
      (filler_u_NxL * template.filler_count).astype(jnp.int32), template.filler_count - 1)
  tokens = jnp.where(codes >= 0, codes, jnp.where(codes == FILLER, filler, from_fact))
  group_count = jnp.take_along_axis(counts_NxG, jnp.maximum(group, 0), axis=-1)
  keep = (codes != SKIP) & (tokens >= 0) & ((group < 0) | (rank < group_count))
  return tokens, keep, is_answer


def _sample_counts(template: TemplateArrays, u_NxG) -> jax.Array:
  cdf = jnp.asarray(template.group_cdf_GxK)
  return jnp.sum(u_NxG[..., None] >= cdf[None, :, :-1], axis=-1).astype(jnp.int32)


def _decode_units(tables: CorpusTables, unit):
  """unit int[N] -> per document slot: kind, head, relationship, valid (each [N, M])."""
  lay = tables.layout
  S, R, O, M = lay.num_subjects, lay.num_relationships, lay.num_objects, lay.sentences_per_document
  unit = unit.astype(jnp.int32)
  is_subject_unit = unit < lay.num_subject_units
  c = jnp.maximum(unit - lay.num_subject_units, 0) // lay.upweight
  on_r, on_o = c // max(O, 1), c % max(O, 1)
  if lay.shuffle:
    per = S * R
    kind = jnp.where(unit < per, SUBJECT_OBJECT, SUBJECT_NESTED)
    sr = unit % per
    subject, r = sr // R, sr % R
    kind = jnp.where(is_subject_unit, kind, OBJECT_NESTED)[:, None]
    head = jnp.where(is_subject_unit, subject, on_o)[:, None]
    rel = jnp.where(is_subject_unit, r, on_r)[:, None]
    return kind, head, rel, jnp.ones_like(kind, bool)
  m = jnp.arange(M)[None, :]
  kind = jnp.where(is_subject_unit[:, None], jnp.where(m < R, SUBJECT_OBJECT, SUBJECT_NESTED),
                   OBJECT_NESTED)
  head = jnp.where(is_subject_unit[:, None], unit[:, None], on_o[:, None])
  rel = jnp.where(is_subject_unit[:, None], m % R, on_r[:, None])
  valid = is_subject_unit[:, None] | (m == 0)
  return kind, head, rel, jnp.broadcast_to(valid, kind.shape)


def render_documents(tables: CorpusTables, doc_index) -> dict[str, jax.Array]:
  """Documents `doc_index` (int[N], global over all passes) -> padded token rows.

  Returns tokens int32[N, D] (D = tables.document_length), keep bool[N, D] (False on dropped pieces, which
  are not compacted away here), is_answer bool[N, D].
  """
  lay, cfg, tpl = tables.layout, tables.config, tables.template
  doc_index = jnp.asarray(doc_index).astype(jnp.uint32)
  P = lay.units_per_pass
  pass_index, position = doc_index // jnp.uint32(P), doc_index % jnp.uint32(P)
  perm_key = hashing.hash_words(tables.seed_word, _PURPOSE_PERMUTATION, pass_index)
  unit = hashing.permute(position, P, perm_key)
  kind, head, rel, valid = _decode_units(tables, unit)  # [N, M]
  N, M = kind.shape
  L = tpl.length
  G = tpl.group_cdf_GxK.shape[0]
  stream = hashing.hash_words(tables.seed_word, pass_index[:, None], position[:, None],
                              jnp.arange(M, dtype=jnp.uint32)[None, :])  # [N, M]
  # Draw only what this template needs (static decisions): the per-sentence hash is the writer's main cost.
  has_groups = bool((tpl.group_VxL >= 0).any())
  has_filler = bool((tpl.codes_VxL == FILLER).any())
  u = hashing.uniforms(stream, 4 + (G if has_groups else 0) + (L if has_filler else 0))
  u_minority, u_question, u_variant, u_order = u[..., 0], u[..., 1], u[..., 2], u[..., 3]
  u_counts = u[..., 4:4 + G] if has_groups else jnp.zeros((N, M, G), jnp.float32)
  u_filler = u[..., u.shape[-1] - L:] if has_filler else jnp.zeros((N, M, L), jnp.float32)

  is_so = kind == SUBJECT_OBJECT
  safe_subject = jnp.where(kind == OBJECT_NESTED, 0, head)
  minority = tables.minority_SxR[safe_subject, rel]
  use_minority = is_so & (minority != NONE) & (u_minority < cfg.minority_position_frac)
  majority = tables.objects_SxR[safe_subject, rel]
  facts = fact_tokens(tables, kind, head, rel, jnp.where(use_minority, minority, majority))

  question = is_so & tables.qa_subject_S[safe_subject] & (u_question < cfg.questions_frac)
  main_cdf = jnp.asarray(tpl.variant_cdf_V)
  variant = jnp.minimum(jnp.sum(u_variant[..., None] >= main_cdf[:-1], -1), tables.num_main_variants - 1)
  variant = jnp.where(question, tables.num_main_variants, variant)
  counts = _sample_counts(tpl, u_counts)
  flat = lambda x: x.reshape((N * M,) + x.shape[2:])  # noqa: E731
  tokens, keep, is_answer = render_sentences(tpl, flat(facts), flat(variant), flat(counts), flat(u_filler))
  tokens = jnp.concatenate([tokens, jnp.full((N * M, 1), DOT, jnp.int32)], -1).reshape(N, M, L + 1)
  keep = jnp.concatenate([keep, jnp.ones((N * M, 1), bool)], -1).reshape(N, M, L + 1) & valid[..., None]
  is_answer = jnp.concatenate([is_answer, jnp.zeros((N * M, 1), bool)], -1).reshape(N, M, L + 1)
  if M > 1:  # biography: the subject's facts in a random order
    order = jnp.argsort(jnp.where(valid, u_order, 2.0), axis=-1)
    take = lambda x: jnp.take_along_axis(x, order[..., None], axis=1)  # noqa: E731
    tokens, keep, is_answer = take(tokens), take(keep), take(is_answer)
  end = lambda x, v: jnp.concatenate([x.reshape(N, -1), jnp.full((N, 1), v, x.dtype)], -1)  # noqa: E731
  return {"tokens": end(tokens, EOT), "keep": end(keep, True), "is_answer": end(is_answer, False)}


def compact(tokens_NxL, keep_NxL, width: int, *extra_NxL):
  """Moves kept entries left, pads with PAD (extras with False) and cuts rows at `width`.

  Returns (tokens int32[N, width], valid bool[N, width], *extras, lengths int32[N] before the cut).
  """
  N = tokens_NxL.shape[0]
  position = jnp.cumsum(keep_NxL, axis=-1) - 1
  target = jnp.where(keep_NxL & (position < width), position, width)  # `width` is out of range: dropped
  rows = jnp.arange(N)[:, None]
  out = jnp.full((N, width), PAD, jnp.int32).at[rows, target].set(tokens_NxL, mode="drop")
  valid = jnp.zeros((N, width), bool).at[rows, target].set(True, mode="drop")
  extras = [jnp.zeros((N, width), x.dtype).at[rows, target].set(x, mode="drop") for x in extra_NxL]
  return (out, valid, *extras, jnp.sum(keep_NxL, axis=-1).astype(jnp.int32))


@jax.jit
def render_padded_documents(tables: CorpusTables, doc_index):
  """Documents as rows with PAD in place of dropped pieces, and their lengths: the text writer's input
  (the spelling step skips PAD, so no compaction is needed here)."""
  d = render_documents(tables, doc_index)
  return jnp.where(d["keep"], d["tokens"], PAD), jnp.sum(d["keep"], axis=-1, dtype=jnp.int32)
