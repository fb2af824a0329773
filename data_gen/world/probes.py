"""Probes: for every fact and probe form, the prompt tokens and the expected answer tokens.

A probe set is rectangular: one fact kind and one probe form, so every prompt has the same length P and
every answer the same length A. A model knows a fact when its greedy continuation of the prompt is the
whole answer.
"""

from __future__ import annotations

import dataclasses
import zlib

import numpy as np

from data_gen.world import hashing
from data_gen.world.corpus import (OBJECT_NESTED, SUBJECT_NESTED, SUBJECT_OBJECT, CorpusTables, fact_tokens,
                                   render_sentences)
from data_gen.world.graph import NONE
from data_gen.world.templates import FILLER, ProbeForm, Template, make_template, template_arrays

_PURPOSE_PROBE_FILLER = 3


@dataclasses.dataclass(frozen=True, eq=False)
class ProbeSet:
  name: str
  kind: int  # corpus.SUBJECT_OBJECT / SUBJECT_NESTED / OBJECT_NESTED
  prompt_NxP: np.ndarray  # int32
  answer_NxA: np.ndarray  # int32
  subject_N: np.ndarray  # head member: a subject, or an object for object-nested facts
  relationship_N: np.ndarray

  def __len__(self) -> int:
    return self.prompt_NxP.shape[0]


def render_probe_tokens(template: Template, form: ProbeForm, facts_Nx5, vocab, seed: int):
  """(prompt int32[N, P], answer int32[N, A]) of `facts` in probe form `form` of `template`.

  Runs in numpy (no compilation): probes are built once per dataset, on the host."""
  arrays = template_arrays(template, vocab)
  facts_Nx5 = np.asarray(facts_Nx5, np.int32)
  N = facts_Nx5.shape[0]
  G = arrays.group_cdf_GxK.shape[0]
  counts = np.broadcast_to(np.asarray(list(form.counts) + [0] * (G - len(form.counts)), np.int32), (N, G))
  filler_u = None  # read only by filler pieces (nonsense)
  if (arrays.codes_VxL == FILLER).any():
    stream = hashing.hash_words(hashing.seed_word(seed, _PURPOSE_PROBE_FILLER), zlib.crc32(form.name.encode()),
                                np.arange(N, dtype=np.uint32), xp=np)
    filler_u = hashing.uniforms(stream, arrays.length, np)
  variant = np.full((N,), form.variant, np.int32)
  tokens, keep, is_answer = render_sentences(arrays, facts_Nx5, variant, counts, filler_u, np)
  out = []
  for part in (keep & ~is_answer, keep & is_answer):
    lengths = part.sum(-1)
    if N and (lengths != lengths[0]).any():
      raise ValueError(f"probe form {form.name}: rows of unequal length")
    out.append(tokens[part].reshape(N, lengths[0] if N else 0))
  return out[0], out[1]


def _subset(n: int, max_per_set: int | None, seed: int, salt: str) -> np.ndarray:
  if max_per_set is None or n <= max_per_set:
    return np.arange(n)
  rng = np.random.default_rng([seed, zlib.crc32(salt.encode())])
  return np.sort(rng.choice(n, size=max_per_set, replace=False))


def probe_forms(tables: CorpusTables) -> tuple[ProbeForm, ...]:
  """The corpus template's probe forms in use: for inverted, rso only when inversion is on (as the
  original); every other template's forms always (nonsense: both orders)."""
  cfg = tables.config
  forms = make_template(cfg.phrase_creator, tables.vocab, cfg.inversion_frac).probes
  if cfg.phrase_creator == "inverted" and cfg.inversion_frac == 0:
    forms = forms[:1]
  return forms


def build_probes(tables: CorpusTables, graph, seed: int, max_per_set: int | None = None,
                 templates: tuple[str, ...] = ()) -> dict[str, ProbeSet]:
  """Every probe set of a pretraining corpus, in a stable order.

  `templates` adds every subject-object fact in the probe forms of other templates (other phrasings,
  e.g. ("qa", "refusal")); their sets are named by the form (qa, refusal, simplerepeats_s10_r10_o1, ...).
  """
  S, R = graph.num_subjects, graph.num_relationships
  subject_SxR, rel_SxR = np.meshgrid(np.arange(S), np.arange(R), indexing="ij")
  subject, rel = subject_SxR.reshape(-1), rel_SxR.reshape(-1)
  groups: list[tuple[str, int, np.ndarray, np.ndarray, np.ndarray | None, tuple[ProbeForm, ...],
                     Template]] = []
  main = make_template(tables.config.phrase_creator, tables.vocab, tables.config.inversion_frac)
  forms = probe_forms(tables)
  groups.append(("", SUBJECT_OBJECT, subject, rel, None, forms, main))
  minority = graph.minority_SxR.reshape(-1)
  dissenting = minority != NONE
  if dissenting.any():
    d_subject, d_rel = subject[dissenting], rel[dissenting]
    groups.append(("_dissenting_majority", SUBJECT_OBJECT, d_subject, d_rel, None, forms, main))
    groups.append(("_dissenting_minority", SUBJECT_OBJECT, d_subject, d_rel, minority[dissenting], forms,
                   main))
  if graph.config.nested:
    groups.append(("_subject_nested", SUBJECT_NESTED, subject, rel, None, forms, main))
    O = graph.num_objects
    rel_o, obj = np.divmod(np.arange(R * O), O)
    groups.append(("_object_nested", OBJECT_NESTED, obj, rel_o, None, forms, main))
  if tables.layout.qa:
    question = make_template("question", tables.vocab)
    qa = graph.qa_subject_S[subject]
    groups.append(("_trained", SUBJECT_OBJECT, subject[qa], rel[qa], None, question.probes, question))
    groups.append(("_heldout", SUBJECT_OBJECT, subject[~qa], rel[~qa], None, question.probes, question))

  for name in templates:
    other = make_template(name, tables.vocab, tables.config.inversion_frac)
    groups.append(("", SUBJECT_OBJECT, subject, rel, None, other.probes, other))

  probes = {}
  for suffix, kind, head, r, override, group_forms, template in groups:
    for form in group_forms:
      name = form.name + suffix
      keep = _subset(len(head), max_per_set, seed, name)
      h, rr = head[keep], r[keep]
      facts = fact_tokens(tables, np.full(len(h), kind, np.int32), h, rr,
                          None if override is None else override[keep], np)
      prompt, answer = render_probe_tokens(template, form, facts, tables.vocab, seed)
      probes[name] = ProbeSet(name, kind, prompt, answer, h.astype(np.int32), rr.astype(np.int32))
  return probes
