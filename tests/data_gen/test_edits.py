"""Edit sets: every split checked against its definition, recomputed here with plain Python sets."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from data_gen.common.errors import OptionError
from data_gen.edit_sets.edits import EVAL, REFUSED, TRAIN, EditConfig, build_edit_set, fact_vectors
from data_gen.world import corpus
from data_gen.world.corpus import OBJECT_NESTED, SUBJECT_NESTED
from data_gen.world.graph import GraphConfig, make_graph
from data_gen.world.templates import REFUSAL_ANSWER
from data_gen.world.vocab import make_vocab

S, R, O, N = 600, 3, 20, 4


@pytest.fixture(scope="module")
def graph():
  return make_graph(GraphConfig(num_subjects=S, num_relationships=R, num_objects=O), 3)


@pytest.fixture(scope="module")
def nested_graph():
  return make_graph(GraphConfig(num_subjects=S, num_relationships=R, num_objects=O, num_nested_objects=N), 4)


@pytest.fixture(scope="module")
def correlated_graph():
  return make_graph(GraphConfig(num_subjects=S, num_relationships=R, num_objects=O, correlated_pair=True,
                                correlation_strength=0.5), 5)


def facts(split):
  """{(head, rel): (before, after)} of a split (each fact at most once)."""
  out = {(int(h), int(r)): (int(b), int(a))
         for h, r, b, a in zip(split.head, split.relationship, split.before, split.after)}
  assert len(out) == len(split), f"{split.name}: duplicate facts"
  return out


def heads(split):
  return {int(h) for h in split.head}


def test_edited_facts_have_distinct_old_and_new_values(graph):
  cfg = EditConfig(relationship_ordinal=1, num_ft_overrides=5, num_repeats_per_override=7)
  es = build_edit_set(graph, cfg, 0)
  train, test = es.get(TRAIN, "edited"), es.get(EVAL, "edited")
  assert facts(train) == facts(test)
  assert set(train.weight.tolist()) == {7} and set(test.weight.tolist()) == {1}
  old = [b for b, _ in facts(test).values()]
  new = [a for _, a in facts(test).values()]
  assert len(set(old)) == 5 and len(set(new)) == 5 and not set(old) & set(new)
  for (s, r), (before, _) in facts(test).items():
    assert r == 1 and before == graph.objects_SxR[s, 1]


def test_with_same_value_holds_other_subjects_of_each_new_value_split_in_halves(graph):
  for cap in (150, 2):
    cfg = EditConfig(num_ft_overrides=4, same_value_cap=cap)
    es = build_edit_set(graph, cfg, 1)
    edited = facts(es.get(EVAL, "edited"))
    edited_subjects = {s for s, _ in edited}
    train, test = es.get(TRAIN, "with_same_value"), es.get(EVAL, "with_same_value")
    assert not heads(train) & heads(test)
    for new in {a for _, a in edited.values()}:
      pool = {s for s in range(S) if graph.objects_SxR[s, 0] == new} - edited_subjects
      in_train = {s for s in heads(train) if graph.objects_SxR[s, 0] == new}
      in_test = {s for s in heads(test) if graph.objects_SxR[s, 0] == new}
      assert in_train <= pool and in_test <= pool
      assert len(in_train) == len(in_test) == min(len(pool) // 2, cap)
    for s in (train, test):
      assert all(b == a for b, a in facts(s).values())
      assert set(s.relationship.tolist()) == {0}


def test_with_same_rel_excludes_edited_and_same_value_and_is_capped(graph):
  for cap, n in ((500, 2), (3, 4)):
    es = build_edit_set(graph, EditConfig(num_ft_overrides=n, same_rel_cap_per_edit=cap), 2)
    excluded = heads(es.get(EVAL, "edited")) | heads(es.get(TRAIN, "with_same_value")) | heads(
        es.get(EVAL, "with_same_value"))
    pool = set(range(S)) - excluded
    train, test = es.get(TRAIN, "with_same_rel"), es.get(EVAL, "with_same_rel")
    assert heads(train) <= pool and heads(test) <= pool and not heads(train) & heads(test)
    assert len(train) == len(test) == min(len(pool) // 2, cap * n)
    assert set(train.relationship.tolist()) == {0}


def test_reg_data_comes_from_untouched_subjects_halved_between_train_and_test(graph):
  cfg = EditConfig(num_ft_overrides=3, num_repeats_per_override=10, eval_cap=50)
  es = build_edit_set(graph, cfg, 3)
  trained = set().union(*(heads(s) for s in es.train if s.name != "reg_data"))
  train, test = es.get(TRAIN, "reg_data"), es.get(EVAL, "reg_data")
  assert not heads(train) & trained and not heads(test) & trained
  assert not heads(train) & heads(test)
  assert not heads(train) & heads(es.get(EVAL, "edited"))
  assert set(train.relationship.tolist()) <= {1, 2}
  assert len(train) == 3 * 10 and len(test) == 50
  for s, r in facts(train):
    assert facts(train)[s, r] == (graph.objects_SxR[s, r],) * 2


def test_reg_data_is_sized_by_availability_when_short(graph):
  es = build_edit_set(graph, EditConfig(num_ft_overrides=2, num_repeats_per_override=10_000), 3)
  trained = set().union(*(heads(s) for s in es.train if s.name != "reg_data"))
  free = S - len(trained)
  assert len(es.get(TRAIN, "reg_data")) == (free // 2) * (R - 1)


def test_same_edges_diff_rel_is_exactly_the_edited_subjects_other_facts(graph):
  es = build_edit_set(graph, EditConfig(relationship_ordinal=2, num_ft_overrides=6), 4)
  expected = {(s, r): (int(graph.objects_SxR[s, r]),) * 2
              for s in heads(es.get(EVAL, "edited")) for r in range(R) if r != 2}
  assert facts(es.get(EVAL, "same_edges_diff_rel")) == expected


def test_all_same_remapping_moves_one_value_to_one_value(graph):
  es = build_edit_set(graph, EditConfig(all_same_remapping=True, num_ft_overrides=8), 5)
  edited = facts(es.get(EVAL, "edited"))
  assert len(edited) == 8
  assert len({b for b, _ in edited.values()}) == 1 and len({a for _, a in edited.values()}) == 1
  assert all(b != a for b, a in edited.values())
  assert set(es.get(TRAIN, "with_same_value").weight.tolist()) == {8}


def test_nodistinct_values_allows_more_edits_than_half_the_values(graph):
  es = build_edit_set(graph, EditConfig(num_ft_overrides=50, distinct_values=False), 6)
  edited = facts(es.get(EVAL, "edited"))
  assert len(edited) == 50 and all(b != a and 0 <= a < O for b, a in edited.values())


def test_censoring_keeps_held_out_subjects_out_of_training(graph):
  cfg = EditConfig(single_ft_value=True, relationship_ordinal=1, censor_value=3, eval_cap=10 ** 6)
  es = build_edit_set(graph, cfg, 7)
  censored = facts(es.get(TRAIN, "censored"))
  implicit = facts(es.get(EVAL, "implicitly_remapped"))
  heldout = {s for s, _ in implicit}
  assert len(heldout) == round(0.1 * S) and len(censored) == S - len(heldout)
  assert not heldout & {s for s, _ in censored}
  for table in (censored, implicit):
    for (s, r), (before, after) in table.items():
      assert r == 1 and before == graph.objects_SxR[s, 1] and after == 3
  for split in es.train:  # no held-out fact of the censored relationship is trained
    assert not {(s, r) for s, r in facts(split) if r == 1} & set(implicit)
  reg_train, reg_test = facts(es.get(TRAIN, "reg_data")), facts(es.get(EVAL, "reg_data"))
  censored_subjects = {s for s, _ in censored}
  free = S - len(censored_subjects)
  assert len(reg_train) == min(len(censored), (free // 2) * (R - 1))
  assert len(reg_test) == (free - free // 2) * (R - 1)
  for table in (reg_train, reg_test):
    assert all(r != 1 for _, r in table) and not {s for s, _ in table} & censored_subjects
  assert not {s for s, _ in reg_train} & {s for s, _ in reg_test}
  expected_diff = {(s, r) for s, _ in censored for r in (0, 2)}
  assert set(facts(es.get(EVAL, "same_edges_diff_rel"))) == expected_diff


def test_censoring_a_subset_censors_that_share_of_the_rest(graph):
  cfg = EditConfig(single_ft_value=True, single_ft_data_subset_frac=0.25, censor_heldout_frac=0.2)
  es = build_edit_set(graph, cfg, 8)
  heldout = heads(es.get(EVAL, "implicitly_remapped"))
  assert len(heldout) == 120
  assert len(es.get(TRAIN, "censored")) == math.ceil(0.25 * (S - 120))


def test_subject_object_edit_on_nested_data_carries_the_nested_ripple(nested_graph):
  g = nested_graph
  es = build_edit_set(g, EditConfig(relationship_ordinal=1, num_ft_overrides=2), 9)
  edited = facts(es.get(EVAL, "edited"))
  nested = g.nested_RxO[1]
  ripple = es.get(EVAL, "same_subj_nested_obj_edges")
  assert ripple.kind == SUBJECT_NESTED
  assert facts(ripple) == {(s, 1): (nested[b], nested[a]) for (s, _), (b, a) in edited.items()}
  old_obj = es.get(EVAL, "same_obj_nested_obj_edges")
  assert old_obj.kind == OBJECT_NESTED
  assert facts(old_obj) == {(b, 1): (nested[b],) * 2 for b, _ in edited.values()}
  assert facts(es.get(EVAL, "remapped_obj_nested_obj_edges")) == {(a, 1): (nested[a],) * 2
                                                                   for _, a in edited.values()}


def test_object_nested_edit_ripples_to_the_subjects_holding_the_object(nested_graph):
  g = nested_graph
  es = build_edit_set(g, EditConfig(num_ft_overrides=2, remap_object_nested_object_edges=True), 10)
  edited = es.get(EVAL, "edited")
  assert edited.kind == OBJECT_NESTED
  new_of = {o: a for (o, _), (b, a) in facts(edited).items()}
  for (o, _), (b, _) in facts(edited).items():
    assert b == g.nested_RxO[0, o]
  ripple = facts(es.get(EVAL, "same_subj_nested_obj_edges"))
  holders = {s for s in range(S) if g.objects_SxR[s, 0] in new_of}
  assert {s for s, _ in ripple} == holders
  for (s, _), (b, a) in ripple.items():
    o = g.objects_SxR[s, 0]
    assert b == g.nested_RxO[0, o] and a == new_of[o]
  assert {s for s, _ in facts(es.get(EVAL, "same_subj_obj_edges"))} == holders
  assert not any(s.name == "same_edges_diff_rel" for s in es.splits)


def test_subject_nested_edit(nested_graph):
  g = nested_graph
  es = build_edit_set(g, EditConfig(num_ft_overrides=2, remap_subject_nested_object_edges=True), 11)
  edited = facts(es.get(EVAL, "edited"))
  inherited = g.subject_nested_SxR()
  assert all(b == inherited[s, 0] and a != b and 0 <= a < N for (s, _), (b, a) in edited.items())
  same_obj = facts(es.get(EVAL, "same_subj_obj_edges"))
  assert same_obj == {(s, 0): (g.objects_SxR[s, 0],) * 2 for s, _ in edited}


def test_correlated_edits_only_agreeing_pairs_and_probes_the_partner(correlated_graph):
  g = correlated_graph
  es = build_edit_set(g, EditConfig(num_ft_overrides=5, get_correlated_tuples=True), 12)
  edited = facts(es.get(EVAL, "edited"))
  assert all(g.objects_SxR[s, 0] == g.objects_SxR[s, 1] for s, _ in edited)
  second = facts(es.get(EVAL, "same_subject_second_rel"))
  assert second == {(s, 1): (g.objects_SxR[s, 1],) * 2 for s, _ in edited}
  converted = facts(es.get(EVAL, "same_subject_second_rel_converted"))
  assert converted == {(s, 1): (g.objects_SxR[s, 1], a) for (s, _), (_, a) in edited.items()}


def test_refusal_form_teaches_refusal_only_on_the_edit(graph):
  vocab = make_vocab(graph.config)
  es = build_edit_set(graph, EditConfig(num_ft_overrides=2, finetuning_phrase_creator="refusal",
                                        add_qa_data_to_finetuning=True), 13)
  edited = es.get(TRAIN, "edited", "refusal")
  assert (edited.after == REFUSED).all()
  _, answer = edited.tokens(vocab)
  assert (answer == np.array(REFUSAL_ANSWER)).all()
  assert es.get(TRAIN, "reg_data").template == "remapping"
  assert es.get(TRAIN, "edited", "qa_refusal").num_rows == 500
  assert {s.template for s in es.eval} == {"refusal", "remapping", "qa_refusal", "qa"}
  with pytest.raises(ValueError):
    edited.tokens(vocab, template="remapping")


def test_eval_question_form_probes_every_split_by_asked_and_never_asked_subjects():
  g = make_graph(GraphConfig(num_subjects=S, num_relationships=R, num_objects=O, questions_entity_frac=0.5), 6)
  plain = build_edit_set(g, EditConfig(num_ft_overrides=8), 14)
  es = build_edit_set(g, EditConfig(num_ft_overrides=8, eval_question_form=True), 14)
  assert [s.stem for s in es.train] == [s.stem for s in plain.train]  # nothing is trained in the new form
  for base in plain.eval:
    asked = [s for s in es.eval if s.name == base.name and s.template == "question"]
    never = [s for s in es.eval if s.name == base.name + "_new"]
    parts = asked + never
    assert all(s.template == "question" for s in parts)
    assert all(g.qa_subject_S[s.head].all() for s in asked) and all(not g.qa_subject_S[s.head].any() for s in never)
    assert sorted(f for s in parts for f in facts(s).items()) == sorted(facts(base).items())
  vocab = make_vocab(g.config)
  prompt, answer = es.get(EVAL, "edited", "question").tokens(vocab)
  assert prompt.shape[0] == answer.shape[0] > 0


def test_tokens_spell_facts_as_the_corpus_does(nested_graph):
  g = nested_graph
  vocab = make_vocab(g.config)
  tables = corpus.make_tables(g, vocab, corpus.CorpusConfig(), 0)
  es = build_edit_set(g, EditConfig(num_ft_overrides=3), 14)
  for split in es.eval:
    if (split.after == split.before).all():  # unchanged facts: the corpus's own fact vectors
      expected = np.asarray(corpus.fact_tokens(tables, np.full(len(split), split.kind), split.head,
                                               split.relationship))
      np.testing.assert_array_equal(
          fact_vectors(vocab, split.kind, split.head, split.relationship, split.after), expected)
  edited = es.get(EVAL, "edited")
  expected = np.asarray(corpus.fact_tokens(tables, np.zeros(3, int), edited.head, edited.relationship,
                                           edited.after))
  prompt, answer = edited.tokens(vocab)
  np.testing.assert_array_equal(answer[:, 0], expected[:, 3])
  np.testing.assert_array_equal(prompt[:, 1], expected[:, 0])


def test_same_seed_same_sets_other_seed_other_sets(graph):
  cfg = EditConfig(num_ft_overrides=4)
  a, b, c = (build_edit_set(graph, cfg, seed) for seed in (21, 21, 22))
  for x, y in zip(a.splits, b.splits):
    for k, v in x.arrays().items():
      np.testing.assert_array_equal(v, y.arrays()[k])
  assert not np.array_equal(a.get(EVAL, "edited").head, c.get(EVAL, "edited").head)


@pytest.mark.parametrize("options,flag", [
    (dict(relationship_ordinal=3), "relationship_ordinal"),
    (dict(num_ft_overrides=11), "num_ft_overrides"),  # 11 new values outside 11 old ones > 20 values
    (dict(num_ft_overrides=0), "num_ft_overrides"),
    (dict(num_ft_overrides=S + 1, distinct_values=False), "num_ft_overrides"),
    (dict(all_same_remapping=True, num_ft_overrides=S), "num_ft_overrides"),
    (dict(remap_subject_nested_object_edges=True), "remap_subject_nested_object_edges"),
    (dict(remap_object_nested_object_edges=True), "remap_object_nested_object_edges"),
    (dict(single_ft_value=True, censor_heldout_frac=0.0), "censor_heldout_frac"),
    (dict(single_ft_value=True, censor_heldout_frac=1.0), "censor_heldout_frac"),
    (dict(single_ft_value=True, censor_value=O), "censor_value"),
    (dict(get_correlated_tuples=True), "get_correlated_tuples"),
    (dict(finetuning_phrase_creator="qa", add_qa_data_to_finetuning=True), "add_qa_data_to_finetuning"),
    (dict(eval_question_form=True, finetuning_phrase_creator="refusal"), "eval_question_form"),
])
def test_bad_options_are_refused_naming_the_option(graph, options, flag):
  with pytest.raises(OptionError) as e:
    build_edit_set(graph, EditConfig(**options), 0)
  assert e.value.option == flag and str(e.value).startswith(f"--{flag}: ")


def test_more_edits_than_distinct_values_available_is_refused():
  tiny = make_graph(GraphConfig(num_subjects=3, num_relationships=1, num_objects=40), 0)
  with pytest.raises(OptionError, match="distinct object values"):
    build_edit_set(tiny, EditConfig(num_ft_overrides=4), 0)


def test_builds_the_original_scale_in_seconds():
  big = make_graph(GraphConfig(num_subjects=100_000, num_relationships=6, num_objects=400), 0)
  start = time.perf_counter()
  es = build_edit_set(big, EditConfig(num_ft_overrides=1000, distinct_values=False), 0)
  assert time.perf_counter() - start < 5.0
  assert len(es.get(EVAL, "edited")) == 1000 and es.get(TRAIN, "edited").num_rows == 250_000
  assert len(es.get(EVAL, "reg_data")) == 10_000


@pytest.mark.parametrize("options", [
    dict(num_ft_overrides=4),
    dict(num_ft_overrides=100, distinct_values=False, same_rel_cap_per_edit=2),
    dict(num_ft_overrides=6, all_same_remapping=True),
    dict(num_ft_overrides=2, remap_subject_nested_object_edges=True),
    dict(num_ft_overrides=2, remap_object_nested_object_edges=True),
    dict(single_ft_value=True, single_ft_data_subset_frac=0.5),
    dict(single_ft_value=True, remap_object_nested_object_edges=True, censor_heldout_frac=0.25),
    dict(num_ft_overrides=3, finetuning_phrase_creator="qa_refusal"),
])
def test_no_training_fact_leaks_into_evaluation_and_no_edited_entity_into_reg_data(nested_graph, options):
  es = build_edit_set(nested_graph, EditConfig(**options), 16)
  edit_names = ("edited", "censored")
  key = lambda s: {(s.kind, h, r) for h, r in zip(s.head.tolist(), s.relationship.tolist())}  # noqa: E731
  trained = set().union(*(key(s) for s in es.train if s.name not in edit_names))
  edited = set().union(*(key(s) for s in es.train if s.name in edit_names))
  for split in es.eval:
    if split.name not in edit_names:
      assert not key(split) & trained, split.name
      assert not key(split) & edited or split.name == "implicitly_remapped", split.name
  kind = es.train[0].kind
  edited_entities = {(h, r if kind == OBJECT_NESTED else None) for _, h, r in edited}
  for split in (es.get(TRAIN, "reg_data"), es.get(EVAL, "reg_data")):
    entities = {(h, r if kind == OBJECT_NESTED else None) for _, h, r in key(split)}
    assert not entities & edited_entities
  for name in ("with_same_value", "with_same_rel"):
    if name in es.names(TRAIN):
      assert not key(es.get(TRAIN, name)) & key(es.get(EVAL, name))


def test_question_splits_of_never_asked_subjects_link_to_their_edit_as_their_split_does():
  from behemoth_jax.edit import edit_rows  # pylint: disable=g-import-not-at-top
  g = make_graph(GraphConfig(num_subjects=S, num_relationships=R, num_objects=O, questions_entity_frac=0.5), 6)
  es = build_edit_set(g, EditConfig(num_ft_overrides=8, eval_question_form=True), 14)
  edited = es.get(EVAL, "edited", "remapping")
  for name in ("edited_new", "same_edges_diff_rel_new"):
    split = es.get(EVAL, name)
    index, mask = edit_rows.linked_rows(split, edited.head, edited.relationship, edited.after, shared=4, seed=0)
    for f in range(len(edited)):  # only the edit's own subject, never another edit's rows
      assert (split.head[index[f][mask[f]]] == edited.head[f]).all()
    never_asked = ~g.qa_subject_S[edited.head].astype(bool)
    assert (mask.any(1) <= never_asked).all()


def test_eval_inverted_form_probes_every_split_as_the_corpus_rso_probes_do():
  from data_gen.world import dataset  # pylint: disable=g-import-not-at-top
  from data_gen.world.corpus import CorpusConfig  # pylint: disable=g-import-not-at-top
  ds = dataset.build(GraphConfig(num_subjects=200, num_relationships=3, num_objects=12),
                     CorpusConfig(inversion_frac=0.3), seed=0)
  es = build_edit_set(ds.graph, EditConfig(num_ft_overrides=4, eval_inverted_form=True), 15)
  rso = ds.probes()["rso"]
  row_of = {(int(s), int(r)): i for i, (s, r) in enumerate(zip(rso.subject_N, rso.relationship_N))}
  for base in [s for s in es.eval if s.template == "remapping"]:
    inverted = es.get(EVAL, base.name, "rso")
    assert facts(inverted) == facts(base)
    prompt, answer = inverted.tokens(ds, answer="before")
    for i, (h, r) in enumerate(zip(inverted.head, inverted.relationship)):
      j = row_of[(int(h), int(r))]  # the pretraining rso probe of the same fact: the same tokens
      assert list(prompt[i]) == list(rso.prompt_NxP[j]) and list(answer[i]) == list(rso.answer_NxA[j])
  assert not [s for s in es.train if s.template == "rso"]
