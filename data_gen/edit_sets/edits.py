"""Edit sets: what to fine-tune an edit (or an unlearning) on, and what to measure it on.

A pure function of (fact graph, `EditConfig`, seed); no model. `build_edit_set` returns an `EditSet`: a
tuple of `EditSplit`s, each an array of facts (head, relationship, tail before the edit, tail after the
edit, repeat weight) of one fact kind, trained or probed in one template. `EditSplit.tokens` renders the
rectangular (prompt, answer) arrays; `data_gen.edit_sets.edit_files` writes the original's folder layout.

Modes (option names are the original's, see `python -m data_gen.make_edits --help`):

Remapping (default). `num_ft_overrides` = n facts of relationship r get a new tail.
- distinct_values (default, the original's): the n facts have n distinct old values and move to n
  distinct new values, none of them among the old ones (so n <= values / 2). --nodistinct_values draws the
  n facts uniformly and each new value uniformly among the other values (the original did this only for a
  binarized relationship, where old -> 1 - old); it is what allows n > values / 2.
- all_same_remapping: a value with at least n facts is drawn; n of its facts move to one new value.
- get_correlated_tuples: only facts whose subject's relationship-0 and -1 objects agree are edited (the
  original's filter was a no-op).
- remap_subject_nested_object_edges / remap_object_nested_object_edges: the edited fact is a
  subject-nested (s, r'', n) or object-nested (o, r', n) fact; tails are nested values, and for
  object-nested edits the heads are the objects of relationship r.
Training splits: edited (weight = num_repeats_per_override); with_same_value (unedited facts of r whose
value is one of the new values; per new value v with c_v edits up to same_value_cap * c_v facts, at most
half of those available, the other half is the matching test split; in all_same mode up to
same_value_cap facts with weight n, as the original); with_same_rel (other unedited facts of r, up to
same_rel_cap_per_edit * n, at most half of those left, the other half tested); reg_data
(reg_rows_per_edit_row * n * repeats facts of other relationships, from entities untouched by any
training split; the free entities are split in halves, one half feeds training, the other the test).
Evaluation splits (`role == "eval"`, weight 1): edited; with_same_value; with_same_rel; reg_data (up to
eval_cap facts of any relationship from the test half of the free entities); same_edges_diff_rel (the
edited subjects' other relationships); correlated: same_subject_second_rel (the partner relationship as
it is) and same_subject_second_rel_converted (as if it had followed the edit); nested data, subject-object
edit: same_subj_nested_obj_edges (the subject's inherited fact; after = nested value of the new object:
the ripple), same_obj_nested_obj_edges (the old object's nested fact, unchanged),
remapped_obj_nested_obj_edges (the new object's nested fact, unchanged); subject-nested edit:
same_subj_obj_edges and same_obj_nested_obj_edges of the edited subject (unchanged); object-nested edit:
for up to eval_cap subjects holding an edited object, same_subj_obj_edges (unchanged) and
same_subj_nested_obj_edges (after = the new nested value: the ripple).

Censoring (`single_ft_value`): facts of relationship r move to `censor_value` (the original: 0).
A `censor_heldout_frac` share of heads (default 0.1; the original's default left none) is held out; of the
rest a `single_ft_data_subset_frac` share is censored. Training: censored (weight 1, as the original),
reg_data (reg_rows_per_edit_row facts of other relationships per censored fact, from the training half of
the entities not censored: clean and held-out ones, since only a held-out subject's relationship-r fact
must stay out of training). Evaluation: censored (up to eval_cap), implicitly_remapped (held-out facts of r,
after = censor value: does the censoring generalise?), reg_data (other relationships of the other half,
up to eval_cap), same_edges_diff_rel (all other facts of up to eval_cap censored subjects).

Templates: the edit rows use `finetuning_phrase_creator` (remapping = the statement form "sro", qa,
refusal, qa_refusal). Rows that keep their answer use the answering counterpart of that form (refusal ->
remapping, qa_refusal -> qa): unlike the original, regularization under a refusal edit is not itself
taught to refuse. Under a refusal form the edit's after-tail is `REFUSED` and the splits whose answer
depends on a new value (converted, ripple) are left out. add_qa_data_to_finetuning adds the edit rows in
the question counterpart (remapping -> qa, refusal -> qa_refusal) to training, and every evaluation split
in that form too.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from data_gen.common.errors import OptionError, check_fraction, check_positive, require
from data_gen.edit_sets import edit_select as sel
from data_gen.world.corpus import KIND_NAMES, OBJECT_NESTED, SUBJECT_NESTED, SUBJECT_OBJECT, spell_facts
from data_gen.world.graph import FactGraph
from data_gen.world.probes import render_probe_tokens
from data_gen.world.templates import FINETUNING_TEMPLATES, make_template
from data_gen.world.vocab import Vocab

REFUSED = -2  # after-tail of an edit taught as a refusal: the answer is the refusal, not a value
REFUSAL_TEMPLATES = ("refusal", "qa_refusal")
# The form that answers with the fact for each fine-tuning form, and its question counterpart.
ANSWERING_TEMPLATE = {"remapping": "remapping", "qa": "qa", "refusal": "remapping", "qa_refusal": "qa",
                      "question": "question", "rso": "rso"}
QUESTION_TEMPLATE = {"remapping": "qa", "refusal": "qa_refusal"}
# Keys (`EditSplit.stem`) use the probe form's name; the remapping template is the statement form "sro".
TEMPLATE_TAG = {"remapping": "sro", "qa": "qa", "refusal": "refusal", "qa_refusal": "qa_refusal",
                "question": "question", "rso": "rso"}
# The corpus' inverted form that ends with the object (R-S-O; the original's rso validation): what
# eval_inverted_form probes. Rendered from the `inverted` template's rso probe.
INVERTED_PROBE = "rso"
# The pretraining corpus' question form; eval_question_form probes every split in it, without training it.
PRETRAINING_QUESTION = "question"
# Suffix of a question-form split's subjects that never had questions in pretraining (the original's
# questions/<split>_default_new.txt).
NEVER_ASKED_SUFFIX = "_new"
TRAIN, EVAL = "train", "eval"
_SALT = 0x3C6EF372


@dataclasses.dataclass(frozen=True)
class EditConfig:
  """Options of an edit set; names and defaults are the original's, the rest documented above."""

  relationship_ordinal: int = 0
  num_ft_overrides: int = 1
  num_repeats_per_override: int = 250
  finetuning_phrase_creator: str = "remapping"
  single_ft_value: bool = False
  single_ft_data_subset_frac: float = 1.0
  all_same_remapping: bool = False
  get_correlated_tuples: bool = False
  remap_subject_nested_object_edges: bool = False
  remap_object_nested_object_edges: bool = False
  add_qa_data_to_finetuning: bool = False
  # Not in the original (or hard-coded there).
  distinct_values: bool = True
  censor_heldout_frac: float = 0.1
  censor_value: int = 0
  same_value_cap: int = 150
  same_rel_cap_per_edit: int = 500
  reg_rows_per_edit_row: float = 1.0
  eval_cap: int = 10_000
  # Also probe every evaluation split in the pretraining question form (no training rows in it): does an
  # edit learned from statements reach the questions? Split by subjects asked in pretraining (the split's
  # name) and never asked (`<name>_new`); the graph marks Q/A subjects whether or not the corpus had
  # questions (questions_frac), so without them every subject is in effect never asked.
  eval_question_form: bool = False
  # Also probe every evaluation split in the corpus' inverted R-S-O form (trained when the corpus has
  # inversion_frac > 0; otherwise a form the model never saw).
  eval_inverted_form: bool = False

  @property
  def edit_kind(self) -> int:
    if self.remap_subject_nested_object_edges:
      return SUBJECT_NESTED
    if self.remap_object_nested_object_edges:
      return OBJECT_NESTED
    return SUBJECT_OBJECT

  def validate(self, graph: FactGraph) -> None:
    """Refuses options that cannot apply to `graph` (data-dependent counts are checked while building)."""
    R = graph.num_relationships
    r = self.relationship_ordinal
    require(0 <= r < R, "relationship_ordinal", f"must be in [0, {R}) for a graph of {R} relationships, got {r}")
    require(self.finetuning_phrase_creator in FINETUNING_TEMPLATES, "finetuning_phrase_creator",
            f"must be one of {', '.join(FINETUNING_TEMPLATES)}, got {self.finetuning_phrase_creator!r}")
    check_positive(self.num_repeats_per_override, "num_repeats_per_override")
    check_fraction(self.single_ft_data_subset_frac, "single_ft_data_subset_frac")
    check_fraction(self.censor_heldout_frac, "censor_heldout_frac")
    require(self.same_value_cap >= 0, "same_value_cap", f"must be >= 0, got {self.same_value_cap}")
    require(self.same_rel_cap_per_edit >= 0, "same_rel_cap_per_edit",
            f"must be >= 0, got {self.same_rel_cap_per_edit}")
    require(self.reg_rows_per_edit_row >= 0, "reg_rows_per_edit_row",
            f"must be >= 0, got {self.reg_rows_per_edit_row}")
    require(self.eval_cap >= 1, "eval_cap", f"must be >= 1, got {self.eval_cap}")
    if self.remap_subject_nested_object_edges and self.remap_object_nested_object_edges:
      raise OptionError("remap_object_nested_object_edges",
                        "cannot be combined with --remap_subject_nested_object_edges")
    if self.edit_kind != SUBJECT_OBJECT and not graph.config.nested:
      flag = ("remap_subject_nested_object_edges" if self.edit_kind == SUBJECT_NESTED
              else "remap_object_nested_object_edges")
      raise OptionError(flag, "the dataset has no nested objects (generate it with --num_nested_objects)")
    if self.add_qa_data_to_finetuning:
      require(self.finetuning_phrase_creator in QUESTION_TEMPLATE, "add_qa_data_to_finetuning",
              f"--finetuning_phrase_creator={self.finetuning_phrase_creator} is already a question form")
    if self.eval_inverted_form:
      require(self.finetuning_phrase_creator not in REFUSAL_TEMPLATES, "eval_inverted_form",
              f"cannot probe a refusal edit (--finetuning_phrase_creator={self.finetuning_phrase_creator}) "
              "in the answering inverted form")
    if self.eval_question_form:
      require(self.finetuning_phrase_creator not in REFUSAL_TEMPLATES, "eval_question_form",
              f"cannot probe a refusal edit (--finetuning_phrase_creator={self.finetuning_phrase_creator}) "
              "in the answering question form")
    if self.get_correlated_tuples:
      require(graph.config.correlated_pair, "get_correlated_tuples",
              "the dataset has no correlated pair (generate it with --correlated_pair)")
      require(r in (0, 1), "get_correlated_tuples",
              f"needs --relationship_ordinal 0 or 1 (the correlated pair), got {r}")
      require(self.edit_kind == SUBJECT_OBJECT, "get_correlated_tuples",
              "applies to subject-object edits, not to nested ones")
      require(not self.single_ft_value, "get_correlated_tuples", "does not combine with --single_ft_value")
    if self.single_ft_value:
      require(not self.all_same_remapping, "all_same_remapping", "does not combine with --single_ft_value")
      require(self.single_ft_data_subset_frac > 0, "single_ft_data_subset_frac",
              "must be > 0 with --single_ft_value (0 censors nothing)")
      M = sel.num_values(graph, self.edit_kind, r)
      require(0 <= self.censor_value < M, "censor_value",
              f"must be in [0, {M}) (the values of relationship {r}), got {self.censor_value}")
    else:
      check_positive(self.num_ft_overrides, "num_ft_overrides")


@dataclasses.dataclass(frozen=True, eq=False)
class EditSplit:
  """One split: N facts of one kind, trained or probed in one template.

  Arrays are int32[N] numpy. A fact is (head, relationship, tail): head is a subject, or for
  object-nested facts an object of relationship `relationship`; tails are objects (subject-object facts)
  or nested values. `before` is the answer the unedited model should give, `after` the answer after a
  successful edit (equal to `before` for facts the edit must leave alone; `REFUSED` where the edit
  teaches a refusal). `weight` is how many times a training row is repeated (1 in evaluation splits).
  """

  name: str
  role: str  # TRAIN or EVAL
  kind: int  # corpus.SUBJECT_OBJECT / SUBJECT_NESTED / OBJECT_NESTED
  template: str  # a fine-tuning template name (templates.FINETUNING_TEMPLATES)
  head: np.ndarray
  relationship: np.ndarray
  before: np.ndarray
  after: np.ndarray
  weight: np.ndarray

  def __len__(self) -> int:
    return len(self.head)

  @property
  def stem(self) -> str:
    """`<split>_<probe form>`, e.g. "same_edges_diff_rel_sro": the split's key in summaries and native
    arrays (files are named as the original's: `edit_files.file_stem`)."""
    return f"{self.name}_{TEMPLATE_TAG[self.template]}"

  @property
  def num_rows(self) -> int:
    """Rows once repeated by weight."""
    return int(self.weight.sum())

  def changed(self) -> np.ndarray:
    """bool[N]: the edit should change this fact's answer."""
    return self.after != self.before

  def tokens(self, dataset, template: str | None = None, answer: str = "after"):
    """(prompt int32[N, P], answer int32[N, A]) of the facts (each once, not repeated by weight).

    dataset: a `Dataset` or a `Vocab`. answer: "after" (the default; what probe files hold) or "before".
    """
    vocab = getattr(dataset, "vocab", dataset)
    template = template or self.template
    if answer not in ("after", "before"):
      raise ValueError(f"answer must be 'after' or 'before', got {answer!r}")
    tail = self.after if answer == "after" else self.before
    refused = tail == REFUSED
    if refused.any() and template not in REFUSAL_TEMPLATES:
      raise ValueError(f"split {self.name}: refusal answers cannot be rendered in template {template}")
    # A refusal template ignores the tail; any valid value renders the same tokens.
    tail = np.where(refused, self.before, tail)
    if template == INVERTED_PROBE:
      form = make_template("inverted", vocab)
      probe = next(p for p in form.probes if p.name == INVERTED_PROBE)
    else:
      form = make_template(template, vocab)
      probe = form.probes[0]
    facts = fact_vectors(vocab, self.kind, self.head, self.relationship, tail)
    return render_probe_tokens(form, probe, facts, vocab, seed=0)  # fixed forms: no fillers

  def arrays(self) -> dict[str, np.ndarray]:
    return {"head": self.head, "relationship": self.relationship, "before": self.before,
            "after": self.after, "weight": self.weight}


@dataclasses.dataclass(frozen=True, eq=False)
class EditSet:
  config: EditConfig
  seed: int
  splits: tuple[EditSplit, ...]

  def role(self, role: str) -> tuple[EditSplit, ...]:
    return tuple(s for s in self.splits if s.role == role)

  @property
  def train(self) -> tuple[EditSplit, ...]:
    return self.role(TRAIN)

  @property
  def eval(self) -> tuple[EditSplit, ...]:
    return self.role(EVAL)

  def get(self, role: str, name: str, template: str | None = None) -> EditSplit:
    """The split `name` of `role`; `template` picks among forms when add_qa_data_to_finetuning is on."""
    found = [s for s in self.role(role) if s.name == name and template in (None, s.template)]
    if not found:
      raise KeyError(f"no {role} split {name!r}" + (f" in template {template}" if template else ""))
    return found[0]

  def names(self, role: str) -> list[str]:
    return list(dict.fromkeys(s.name for s in self.role(role)))

  def summary(self) -> dict:
    """JSON-able sizes: {role: {stem: {"facts": N, "rows": rows repeated by weight}}}."""
    return {role: {s.stem: {"facts": len(s), "rows": s.num_rows, "kind": KIND_NAMES[s.kind]}
                   for s in self.role(role)} for role in (TRAIN, EVAL)}


def fact_vectors(vocab: Vocab, kind: int, head, rel, tail) -> np.ndarray:
  """int32[N, 5] = [head0, head1, rel, tail0, tail1] (-1: absent second token), as the corpus spells them."""
  return spell_facts(vocab, np.full(np.shape(head), kind), head, rel, tail)


# ---- building -----------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Rows:
  """A split before templates are assigned."""

  name: str
  role: str
  kind: int
  head: np.ndarray
  rel: np.ndarray
  before: np.ndarray
  after: np.ndarray
  weight: int = 1
  is_edit: bool = False  # rows that carry the edit itself (answer is the edit's target)
  needs_new_value: bool = False  # the answer is defined by the new value (meaningless under a refusal)


def _unchanged(name, role, kind, head, rel, values_HxR, weight=1) -> _Rows:
  head, rel = np.asarray(head, np.int64), np.asarray(rel, np.int64)
  tail = values_HxR[head, rel] if len(head) else np.zeros(0, np.int64)
  return _Rows(name, role, kind, head, rel, tail, tail, weight)


def _noun(kind: int) -> str:
  return "objects" if kind == OBJECT_NESTED else "subjects"


def _value_noun(kind: int) -> str:
  return "object" if kind == SUBJECT_OBJECT else "nested"


def _choose_edits(rng, cfg: EditConfig, candidates, col, M: int, kind: int):
  """(heads, old, new) of the n edits."""
  n, r = cfg.num_ft_overrides, cfg.relationship_ordinal
  require(M >= 2, "relationship_ordinal", f"relationship {r} has a single {_value_noun(kind)} value; "
          "an edit needs another one")
  where = f"relationship {r}" + (" (correlated facts only)" if cfg.get_correlated_tuples else "")
  if cfg.all_same_remapping:
    counts = np.bincount(col[candidates], minlength=M)
    eligible = np.flatnonzero(counts >= n)
    require(eligible.size > 0, "num_ft_overrides",
            f"asks for {n} facts sharing one value, but the most common value of {where} has "
            f"{counts.max()} facts")
    old_value = rng.choice(eligible)
    heads = sel.random_subset(rng, candidates[col[candidates] == old_value], n)
    new_value = (old_value + 1 + rng.integers(0, M - 1)) % M
    return heads, col[heads], np.full(n, new_value, np.int64)
  if cfg.distinct_values:
    representatives = sel.first_head_per_value(rng, candidates, col)
    require(n <= len(representatives), "num_ft_overrides",
            f"asks for {n} edits with distinct old values, but {where} has only {len(representatives)} "
            f"distinct {_value_noun(kind)} values among {len(candidates)} facts (--nodistinct_values lifts this)")
    require(2 * n <= M, "num_ft_overrides",
            f"asks for {n} distinct new values outside the {n} old ones, but {where} has only {M} values "
            f"(at most {M // 2} edits; --nodistinct_values lifts this)")
    heads = sel.random_subset(rng, representatives, n)
    unused = np.setdiff1d(np.arange(M), col[heads])
    return heads, col[heads], sel.random_subset(rng, unused, n).astype(np.int64)
  require(n <= len(candidates), "num_ft_overrides",
          f"asks for {n} edits, but {where} has only {len(candidates)} facts")
  heads = sel.random_subset(rng, candidates, n)
  old = col[heads]
  return heads, old, (old + 1 + rng.integers(0, M - 1, size=n)) % M


def _split_free_entities(rng, kind, R, trained_entities, num_entities):
  """All facts, with masks: in the training half / test half of the entities no training split uses."""
  H = num_entities if kind != OBJECT_NESTED else num_entities // R
  head, rel = sel.facts_of_heads(np.arange(H), R)
  entity = sel.entity_of_fact(kind, head, rel, R)
  free_entity = np.ones(num_entities, bool)
  free_entity[trained_entities] = False
  free = np.flatnonzero(free_entity)
  shuffled = rng.permutation(free)
  train_entity = np.zeros(num_entities, bool)
  train_entity[shuffled[:len(shuffled) // 2]] = True
  in_train = train_entity[entity]
  in_test = free_entity[entity] & ~in_train
  return head, rel, in_train, in_test


def _remap(graph: FactGraph, cfg: EditConfig, rng) -> list[_Rows]:
  kind, r, n, k = cfg.edit_kind, cfg.relationship_ordinal, cfg.num_ft_overrides, cfg.num_repeats_per_override
  V = sel.value_table(graph, kind).astype(np.int64)
  H, R = V.shape
  col = V[:, r]
  M = sel.num_values(graph, kind, r)
  candidates = np.arange(H)
  if cfg.get_correlated_tuples:
    candidates = np.flatnonzero(graph.objects_SxR[:, 0] == graph.objects_SxR[:, 1])
  heads, old, new = _choose_edits(rng, cfg, candidates, col, M, kind)
  rel_r = lambda x: np.full(len(x), r, np.int64)  # noqa: E731
  edited = np.zeros(H, bool)
  edited[heads] = True
  rows = [_Rows("edited", TRAIN, kind, heads, rel_r(heads), old, new, k, is_edit=True),
          _Rows("edited", EVAL, kind, heads, rel_r(heads), old, new, is_edit=True)]

  # with_same_value: the new values' other holders, split in train and test halves per value.
  new_values, edits_per_value = np.unique(new, return_counts=True)
  cap_of_value = np.zeros(M, np.int64)
  cap_of_value[new_values] = cfg.same_value_cap * (1 if cfg.all_same_remapping else edits_per_value)
  pool = rng.permutation(np.flatnonzero(~edited & np.isin(col, new_values)))
  rank = sel.rank_within_groups(col[pool])
  limit = np.minimum(np.bincount(col[pool], minlength=M) // 2, cap_of_value)[col[pool]]
  same_value_train, same_value_test = pool[rank < limit], pool[(rank >= limit) & (rank < 2 * limit)]
  weight = n if cfg.all_same_remapping else 1  # the original repeats its one value's rows n times
  rows.append(_unchanged("with_same_value", TRAIN, kind, same_value_train, rel_r(same_value_train), V, weight))
  rows.append(_unchanged("with_same_value", EVAL, kind, same_value_test, rel_r(same_value_test), V))

  # with_same_rel: other facts of r, none of them edited or already in with_same_value.
  taken = edited.copy()
  taken[same_value_train] = taken[same_value_test] = True
  pool = rng.permutation(np.flatnonzero(~taken))
  limit = min(len(pool) // 2, cfg.same_rel_cap_per_edit * n)
  same_rel_train, same_rel_test = pool[:limit], pool[limit:2 * limit]
  rows.append(_unchanged("with_same_rel", TRAIN, kind, same_rel_train, rel_r(same_rel_train), V))
  rows.append(_unchanged("with_same_rel", EVAL, kind, same_rel_test, rel_r(same_rel_test), V))

  # reg_data: entities no training split touches, halved so train and test share none.
  trained_heads = np.concatenate([heads, same_value_train, same_rel_train])
  num_entities = H * R if kind == OBJECT_NESTED else H
  head, rel, in_train, in_test = _split_free_entities(
      rng, kind, R, sel.entity_of_fact(kind, trained_heads, rel_r(trained_heads), R), num_entities)
  want = int(round(cfg.reg_rows_per_edit_row * n * k))
  pick = sel.random_subset(rng, np.flatnonzero(in_train & (rel != r)), want)
  rows.append(_unchanged("reg_data", TRAIN, kind, head[pick], rel[pick], V))
  pick = sel.random_subset(rng, np.flatnonzero(in_test), cfg.eval_cap)
  rows.append(_unchanged("reg_data", EVAL, kind, head[pick], rel[pick], V))

  if kind != OBJECT_NESTED:  # an object's only relationship is its own (objects are scoped)
    h, rr = sel.facts_of_heads(heads, R, exclude_rel=r)
    rows.append(_unchanged("same_edges_diff_rel", EVAL, kind, h, rr, V))
  if cfg.get_correlated_tuples:
    partner = 1 - r
    second = graph.objects_SxR[heads, partner].astype(np.int64)
    p = np.full(n, partner, np.int64)
    rows.append(_Rows("same_subject_second_rel", EVAL, SUBJECT_OBJECT, heads, p, second, second))
    rows.append(_Rows("same_subject_second_rel_converted", EVAL, SUBJECT_OBJECT, heads, p, second, new,
                      needs_new_value=True))
  if graph.config.nested:
    rows += _nested_ripple(graph, cfg, rng, heads, old, new)
  return rows


def _nested_ripple(graph, cfg, rng, heads, old, new) -> list[_Rows]:
  """Facts linked to the edited one through nesting: what the edit should (and should not) carry along."""
  kind, r = cfg.edit_kind, cfg.relationship_ordinal
  nested = graph.nested_RxO[r].astype(np.int64)
  objects = graph.objects_SxR[:, r].astype(np.int64)
  rel_r = lambda x: np.full(len(x), r, np.int64)  # noqa: E731
  rows = []
  if kind == SUBJECT_OBJECT:
    rows.append(_Rows("same_subj_nested_obj_edges", EVAL, SUBJECT_NESTED, heads, rel_r(heads),
                      nested[old], nested[new], needs_new_value=True))
    o = np.unique(old)
    rows.append(_Rows("same_obj_nested_obj_edges", EVAL, OBJECT_NESTED, o, rel_r(o), nested[o], nested[o]))
    o = np.unique(new)
    rows.append(_Rows("remapped_obj_nested_obj_edges", EVAL, OBJECT_NESTED, o, rel_r(o), nested[o], nested[o],
                      needs_new_value=True))
  elif kind == SUBJECT_NESTED:
    o = objects[heads]
    rows.append(_Rows("same_subj_obj_edges", EVAL, SUBJECT_OBJECT, heads, rel_r(heads), o, o))
    o = np.unique(o)
    rows.append(_Rows("same_obj_nested_obj_edges", EVAL, OBJECT_NESTED, o, rel_r(o), nested[o], nested[o]))
  else:  # object-nested edit: the subjects holding an edited object inherit its new nested value
    new_of_object = np.full(len(nested), -1, np.int64)
    new_of_object[heads] = new
    subjects = sel.random_subset(rng, np.flatnonzero(new_of_object[objects] >= 0), cfg.eval_cap)
    o = objects[subjects]
    rows.append(_Rows("same_subj_obj_edges", EVAL, SUBJECT_OBJECT, subjects, rel_r(subjects), o, o))
    rows.append(_Rows("same_subj_nested_obj_edges", EVAL, SUBJECT_NESTED, subjects, rel_r(subjects),
                      nested[o], new_of_object[o], needs_new_value=True))
  return rows


def _censor(graph: FactGraph, cfg: EditConfig, rng) -> list[_Rows]:
  kind, r = cfg.edit_kind, cfg.relationship_ordinal
  V = sel.value_table(graph, kind).astype(np.int64)
  H, R = V.shape
  col = V[:, r]
  num_heldout = int(round(cfg.censor_heldout_frac * H))
  require(num_heldout >= 1, "censor_heldout_frac",
          f"{cfg.censor_heldout_frac} of {H} {_noun(kind)} holds out none; generalisation to held-out "
          f"{_noun(kind)} cannot be measured (use a larger fraction)")
  require(num_heldout < H, "censor_heldout_frac", f"holds out all {H} {_noun(kind)}; nothing is left to censor")
  order = rng.permutation(H)
  heldout, rest = order[:num_heldout], order[num_heldout:]
  censored = rest[:math.ceil(cfg.single_ft_data_subset_frac * len(rest))]
  target = np.full(len(censored), cfg.censor_value, np.int64)
  rel_r = lambda x: np.full(len(x), r, np.int64)  # noqa: E731
  rows = [_Rows("censored", TRAIN, kind, censored, rel_r(censored), col[censored], target, is_edit=True)]

  # reg_data: facts of other relationships of entities not censored (clean and held-out ones: a held-out
  # subject's relationship-r fact is what stays out of training), halved by entity between train and test.
  num_entities = H * R if kind == OBJECT_NESTED else H
  head, rel, in_train, in_test = _split_free_entities(
      rng, kind, R, sel.entity_of_fact(kind, censored, rel_r(censored), R), num_entities)
  want = int(round(cfg.reg_rows_per_edit_row * len(censored)))
  pick = sel.random_subset(rng, np.flatnonzero(in_train & (rel != r)), want)
  rows.append(_unchanged("reg_data", TRAIN, kind, head[pick], rel[pick], V))

  sample = sel.random_subset(rng, censored, cfg.eval_cap)
  rows.append(_Rows("censored", EVAL, kind, sample, rel_r(sample), col[sample],
                    np.full(len(sample), cfg.censor_value, np.int64), is_edit=True))
  sample = sel.random_subset(rng, heldout, cfg.eval_cap)
  rows.append(_Rows("implicitly_remapped", EVAL, kind, sample, rel_r(sample), col[sample],
                    np.full(len(sample), cfg.censor_value, np.int64), is_edit=True))
  pick = sel.random_subset(rng, np.flatnonzero(in_test & (rel != r)), cfg.eval_cap)
  rows.append(_unchanged("reg_data", EVAL, kind, head[pick], rel[pick], V))
  if kind != OBJECT_NESTED:
    h, rr = sel.facts_of_heads(sel.random_subset(rng, censored, cfg.eval_cap), R, exclude_rel=r)
    rows.append(_unchanged("same_edges_diff_rel", EVAL, kind, h, rr, V))
  return rows


def _to_split(rows: _Rows, template: str) -> EditSplit:
  refuses = rows.is_edit and template in REFUSAL_TEMPLATES
  after = np.full(len(rows.head), REFUSED) if refuses else rows.after
  i32 = lambda x: np.asarray(x, np.int32)  # noqa: E731
  return EditSplit(rows.name, rows.role, rows.kind, template, i32(rows.head), i32(rows.rel), i32(rows.before),
                   i32(after), np.full(len(rows.head), rows.weight, np.int32))


def build_edit_set(graph: FactGraph, config: EditConfig, seed: int) -> EditSet:
  """The edit set of `config` on `graph`; a pure function of its arguments. Raises OptionError."""
  config.validate(graph)
  rng = np.random.default_rng(np.random.SeedSequence([seed, _SALT]))
  rows = _censor(graph, config, rng) if config.single_ft_value else _remap(graph, config, rng)
  ft = config.finetuning_phrase_creator
  refusal = ft in REFUSAL_TEMPLATES
  forms = [ft] + ([QUESTION_TEMPLATE[ft]] if config.add_qa_data_to_finetuning else [])
  splits = []
  for role in (TRAIN, EVAL):
    for form in forms:
      for r in rows:
        if r.role != role or (refusal and r.needs_new_value):
          continue
        if role == TRAIN and form != ft and not r.is_edit:
          continue  # add_qa_data_to_finetuning adds the edit rows only
        splits.append(_to_split(r, form if r.is_edit else ANSWERING_TEMPLATE[form]))
  if config.eval_inverted_form:
    splits += [_to_split(r, INVERTED_PROBE) for r in rows if r.role == EVAL]
  if config.eval_question_form:
    for r in rows:
      if r.role == EVAL:
        splits += _question_splits(r, graph.qa_subject_S)
  return EditSet(config=config, seed=seed, splits=tuple(splits))


def _question_splits(rows: _Rows, qa_subject_S: np.ndarray) -> list[EditSplit]:
  """`rows` in the pretraining question form: subjects asked in pretraining, then the never-asked ones."""
  if rows.kind == OBJECT_NESTED:  # heads are objects: no subject was asked or not
    return [_to_split(rows, PRETRAINING_QUESTION)]
  asked = qa_subject_S[rows.head].astype(bool)
  out = []
  for suffix, keep in (("", asked), (NEVER_ASKED_SUFFIX, ~asked)):
    part = dataclasses.replace(rows, name=rows.name + suffix, head=rows.head[keep], rel=rows.rel[keep],
                               before=rows.before[keep], after=rows.after[keep])
    if keep.any():
      out.append(_to_split(part, PRETRAINING_QUESTION))
  return out
