import collections

import hypothesis
import jax
import numpy as np
import pytest
from hypothesis import given, strategies as st

from data_gen.common.errors import OptionError
from data_gen.world import dataset
from data_gen.world.corpus import CorpusConfig
from data_gen.world.graph import NONE, GraphConfig
from data_gen.world.vocab import OO, QQ, RR, SS

from tests.data_helpers import Roles


def all_sentences(ds):
  roles = Roles(ds.vocab)
  tokens, _ = ds.documents(0, ds.num_documents)
  return roles, [roles.sentences(row) for row in tokens]


def within(share, p, n, sigmas=4.5):
  return abs(share - p) <= sigmas * np.sqrt(p * (1 - p) / n) + 1e-9


@hypothesis.settings(max_examples=6)
@given(S=st.integers(1, 40), R=st.integers(1, 3), nested=st.booleans(), repeats=st.integers(1, 4),
       upweight=st.integers(1, 3), qa=st.sampled_from([0.0, 0.5]), seed=st.integers(0, 2 ** 40))
def test_each_fact_is_written_exactly_repeats_times_in_shuffled_mode(S, R, nested, repeats, upweight, qa, seed):
  graph_config = GraphConfig(num_subjects=S, num_relationships=R, num_objects=8,
                             num_nested_objects=2 if nested else 0, questions_entity_frac=qa)
  ds = dataset.build(graph_config, CorpusConfig(repeats=repeats, obj_nested_obj_edges_upweight=upweight), seed)
  roles, docs = all_sentences(ds)
  assert all(len(d) == 1 for d in docs)
  counts = collections.Counter(roles.fact(d[0])[:3] for d in docs)
  expected = {(0, s, r): repeats for s in range(S) for r in range(R)}
  if nested:
    expected.update({(1, s, r): repeats for s in range(S) for r in range(R)})
    expected.update({(2, o, r): repeats * upweight for o in range(8) for r in range(R)})
  assert counts == expected
  g = ds.graph
  for d in docs:  # every sentence states the graph's fact
    kind, head, r, tail, _ = roles.fact(d[0])
    if kind == 0:
      assert tail == g.objects_SxR[head, r]
    elif kind == 1:
      assert tail == g.subject_nested_SxR()[head, r]
    else:
      assert tail == g.nested_RxO[r, head]


def test_every_pass_is_a_permutation_and_passes_differ():
  ds = dataset.build(GraphConfig(num_subjects=40, num_relationships=2, num_objects=5), CorpusConfig(repeats=3), 1)
  roles, docs = all_sentences(ds)
  facts = [roles.fact(d[0])[:3] for d in docs]
  P = ds.documents_per_pass
  passes = [facts[i * P:(i + 1) * P] for i in range(3)]
  for p in passes:
    assert len(set(p)) == P
  assert passes[0] != passes[1] != passes[2]


def test_minority_object_share_is_near_p():
  config = GraphConfig(num_subjects=400, num_relationships=2, num_objects=10, minority_position_entity_frac=0.5)
  ds = dataset.build(config, CorpusConfig(repeats=20, minority_position_frac=0.3), seed=2)
  roles, docs = all_sentences(ds)
  g, minority_uses, total = ds.graph, 0, 0
  for d in docs:
    _, s, r, o, _ = roles.fact(d[0])
    if g.minority_SxR[s, r] == NONE:
      assert o == g.objects_SxR[s, r]
    else:
      assert o in (g.objects_SxR[s, r], g.minority_SxR[s, r])
      minority_uses += o == g.minority_SxR[s, r]
      total += 1
  assert total == 400 * 20 and within(minority_uses / total, 0.3, total)


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("e,q,repeats", [(0.5, 0.4, 10), (0.3, 0.25, 7), (0.5, 0.5, 4), (0.25, 0.01, 3)])
def test_questions_are_added_to_the_statements_as_the_original_counts_them(e, q, repeats, shuffle):
  config = GraphConfig(num_subjects=60, num_relationships=2, num_objects=10, questions_entity_frac=e,
                       num_nested_objects=2 if not shuffle else 0)
  ds = dataset.build(config, CorpusConfig(repeats=repeats, questions_frac=q, shuffle=shuffle), seed=3)
  k = int(repeats / e * q)  # the original's question repeats per fact of a Q/A subject
  roles, docs = all_sentences(ds)
  statements, questions = collections.Counter(), collections.Counter()
  for d in docs:
    for sentence in d:
      kind, s, r, o, question = roles.fact(sentence)
      if question:
        assert len(d) == 1 and kind == 0 and o == ds.graph.objects_SxR[s, r]  # a question is its own document
        questions[s, r] += 1
      elif kind == 0:
        statements[s, r] += 1
  qa_subjects = np.flatnonzero(ds.graph.qa_subject_S)
  assert len(qa_subjects) == int(e * 60)
  assert statements == {(s, r): repeats for s in range(60) for r in range(2)}
  assert questions == ({(s, r): k for s in qa_subjects for r in range(2)} if k else {})
  assert ds.tables.layout.num_sentences == sum(len(d) for d in docs)


def test_passes_of_unequal_length_are_each_a_permutation():
  # k = int(3 / 0.5 * 0.4) = 2 copies over 3 passes: passes 0 and 1 hold one question per Q/A fact, pass 2 none.
  config = GraphConfig(num_subjects=30, num_relationships=2, num_objects=5, questions_entity_frac=0.5)
  ds = dataset.build(config, CorpusConfig(repeats=3, questions_frac=0.4), seed=13)
  lay = ds.tables.layout
  assert (lay.num_long_passes, lay.long_pass, lay.short_pass) == (2, 60 + 30, 60)
  roles, docs = all_sentences(ds)
  facts = [roles.fact(d[0]) for d in docs]
  passes = [facts[:90], facts[90:180], facts[180:]]
  for p, n_questions in zip(passes, (30, 30, 0)):
    assert len(set(p)) == len(p) and sum(f[4] for f in p) == n_questions
  index = np.arange(ds.num_documents, dtype=np.uint32)
  np.testing.assert_array_equal(lay.document_index(*lay.locate(index)[:2]), index)


def test_inverted_word_orders_at_the_inversion_fraction():
  ds = dataset.build(GraphConfig(num_subjects=500, num_relationships=2, num_objects=10),
                     CorpusConfig(repeats=6, inversion_frac=0.6), seed=4)
  _, docs = all_sentences(ds)
  first = collections.Counter(d[0][0] for d in docs)  # SRO and SOR open with SS, OSR with OO, RSO with W9
  n = len(docs)
  sor = sum(1 for d in docs if d[0][0] == SS and d[0].index(OO) < d[0].index(RR))
  assert within((first[SS] - sor) / n, 0.4, n)
  assert within(sor / n, 0.2, n) and within(first[OO] / n, 0.2, n)


def test_biography_documents_hold_each_fact_of_their_subject_once():
  config = GraphConfig(num_subjects=20, num_relationships=4, num_objects=8, num_nested_objects=2)
  ds = dataset.build(config, CorpusConfig(repeats=3, shuffle=False, obj_nested_obj_edges_upweight=2), seed=5)
  roles, docs = all_sentences(ds)
  per_subject = collections.Counter()
  orders = set()
  for d in docs:
    facts = [roles.fact(s) for s in d]
    if facts[0][0] == 2:
      assert len(facts) == 1
      continue
    subjects = {f[1] for f in facts}
    assert len(subjects) == 1
    assert sorted((f[0], f[2]) for f in facts) == [(k, r) for k in (0, 1) for r in range(4)]
    per_subject[subjects.pop()] += 1
    orders.add(tuple((f[0], f[2]) for f in facts))
  assert per_subject == {s: 3 for s in range(20)}
  assert len(orders) > 10  # facts come in random order
  assert len(docs) == 3 * (20 + 4 * 8 * 2)


@pytest.mark.parametrize("questions_frac", [0.0, 0.3])
def test_sampler_rows_are_corpus_documents_in_order(questions_frac):
  ds = dataset.build(GraphConfig(num_subjects=50, num_relationships=3, num_objects=6),
                     CorpusConfig(repeats=2, questions_frac=questions_frac), 6)
  B, T = 4, 40
  sample = jax.jit(ds.sampler(B, T))
  K = int(np.ceil(T / ds.min_document_length()))
  for step in (0, 3):
    batch = jax.tree.map(np.asarray, sample(step))
    for b in range(B):
      first = (step * B + b) * K
      tokens, lengths = ds.documents(first, first + K)
      stream = np.concatenate([t[:n] for t, n in zip(tokens, lengths)])
      n = min(T, len(stream))
      np.testing.assert_array_equal(batch["tokens"][b, :n], stream[:n])
      assert batch["loss_mask"][b, :n].all() and not batch["loss_mask"][b, n:].any()


def test_sampler_answer_mask_marks_exactly_the_objects():
  ds = dataset.build(GraphConfig(num_subjects=2000, num_relationships=2, num_objects=6), CorpusConfig(repeats=2), 7)
  batch = jax.tree.map(np.asarray, jax.jit(ds.sampler(8, 64))(0))
  tokens, answer = batch["tokens"], batch["answer_mask"]
  after_marker = np.zeros_like(answer)
  after_marker[:, 1:] = tokens[:, :-1] == OO
  np.testing.assert_array_equal(answer, after_marker & batch["loss_mask"])


def test_sampler_is_pure_in_the_step_and_wraps_after_the_corpus():
  ds = dataset.build(GraphConfig(num_subjects=12, num_relationships=2, num_objects=4), CorpusConfig(repeats=1), 8)
  sample = jax.jit(ds.sampler(2, 30))
  np.testing.assert_array_equal(sample(5)["tokens"], sample(5)["tokens"])
  K = int(np.ceil(30 / ds.min_document_length()))
  docs_per_step = 2 * K
  assert ds.num_documents % docs_per_step == 0
  period = ds.num_documents // docs_per_step
  np.testing.assert_array_equal(sample(1)["tokens"], sample(1 + period)["tokens"])


def test_documents_do_not_depend_on_chunking():
  ds = dataset.build(GraphConfig(num_subjects=30, num_relationships=2, num_objects=4),
                     CorpusConfig(repeats=3, phrase_creator="nonsense"), 9)
  whole, _ = ds.documents(0, 100)
  parts = np.concatenate([ds.documents(0, 37)[0], ds.documents(37, 100)[0]])
  np.testing.assert_array_equal(whole, parts)


def test_simplerepeats_counts_are_within_their_ranges():
  ds = dataset.build(GraphConfig(num_subjects=100, num_relationships=2, num_objects=4),
                     CorpusConfig(repeats=5, phrase_creator="simplerepeats"), 10)
  m_s, m_r, m_o = (ds.vocab.grammar("simplerepeats").start + i for i in range(3))
  seen = set()
  tokens, _ = ds.documents(0, ds.num_documents)
  for row in tokens:
    row = list(row)
    i_ss, i_oo = row.index(SS), row.index(OO)
    before_s = row[:i_ss].count(m_s)
    after_o = row[i_oo:].count(m_o)
    assert 1 <= before_s <= 3 and 0 <= after_o <= 3 and 1 <= row.count(m_r) <= 6
    seen.add((before_s, after_o))
  assert len(seen) == 12  # every combination occurs


def test_nonsense_fillers_come_from_the_filler_words_in_runs_of_one_to_five():
  ds = dataset.build(GraphConfig(num_subjects=200, num_relationships=2, num_objects=4),
                     CorpusConfig(repeats=3, phrase_creator="nonsense"), 11)
  start, count = ds.vocab.filler_pool()  # W0..W999, the inverted template's W0..W10 among them
  tokens, _ = ds.documents(0, ds.num_documents)
  is_filler = (tokens >= start) & (tokens < start + count)
  per_doc = is_filler.sum(1)
  assert per_doc.min() >= 3 and per_doc.max() <= 15
  assert len(np.unique(tokens[is_filler])) > 900  # uniform over 1000 words
  assert is_filler[tokens < ds.vocab.grammar("nonsense").start].any()


def test_corpus_config_refusals():
  for bad, option in ((dict(phrase_creator="qa"), "phrase_creator"), (dict(repeats=0), "repeats"),
                      (dict(inversion_frac=-1), "inversion_frac"), (dict(questions_frac=2), "questions_frac"),
                      (dict(obj_nested_obj_edges_upweight=0), "obj_nested_obj_edges_upweight")):
    with pytest.raises(OptionError) as e:
      CorpusConfig(**bad).validate()
    assert e.value.option == option


def test_random_sampler_draws_the_corpus_mixture_from_a_key():
  config = GraphConfig(num_subjects=50, num_relationships=2, num_objects=6, num_nested_objects=2)
  ds = dataset.build(config, CorpusConfig(repeats=3, obj_nested_obj_edges_upweight=4), 12)
  sample = jax.jit(ds.random_sampler(64, 48))
  a, b = sample(jax.random.key(0)), sample(jax.random.key(0))
  np.testing.assert_array_equal(a["tokens"], b["tokens"])
  assert not np.array_equal(a["tokens"], sample(jax.random.key(1))["tokens"])
  roles = Roles(ds.vocab)
  kinds = collections.Counter()
  for key in range(20):
    tokens = np.asarray(sample(jax.random.key(key))["tokens"])
    for row in tokens:
      cut = np.flatnonzero(row == 0)  # whole documents only (the row is cut mid-document at its end)
      for sentence in roles.sentences(row[:cut[-1] + 1] if len(cut) else []):
        kinds[roles.fact(sentence)[0]] += 1
  n = sum(kinds.values())
  # A pass holds 100 subject-object, 100 subject-nested and 2 * 6 * 4 = 48 object-nested sentences.
  for kind, share in ((0, 100 / 248), (1, 100 / 248), (2, 48 / 248)):
    assert within(kinds[kind] / n, share, n)


def test_random_sampler_draws_questions_at_their_share_from_passes_of_unequal_length():
  config = GraphConfig(num_subjects=50, num_relationships=2, num_objects=6, questions_entity_frac=0.5)
  ds = dataset.build(config, CorpusConfig(repeats=3, questions_frac=0.2), 12)  # k = 1: one long pass
  assert ds.tables.layout.num_long_passes == 1
  sample = jax.jit(ds.random_sampler(64, 48))
  questions = total = 0
  for key in range(10):
    tokens = np.asarray(sample(jax.random.key(key))["tokens"])
    for row in tokens:
      cut = np.flatnonzero(row == 0)
      for sentence in Roles(ds.vocab).sentences(row[:cut[-1] + 1] if len(cut) else []):
        questions += QQ in sentence
        total += 1
  share = 25 * 2 / ds.num_documents  # 50 question sentences among 3 * 100 + 50 documents
  assert within(questions / total, share, total)
