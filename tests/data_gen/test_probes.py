import numpy as np
import pytest

from data_gen.world import dataset
from data_gen.world.corpus import CorpusConfig
from data_gen.world.graph import GraphConfig
from data_gen.world.probes import render_probe_tokens
from data_gen.world.templates import ALL_TEMPLATES, REFUSAL_ANSWER, make_template
from data_gen.world.vocab import AA, OO, QQ, SS

from tests.data_helpers import Roles


@pytest.fixture(scope="module")
def ds():
  config = GraphConfig(num_subjects=1500, num_relationships=3, num_objects=12, questions_entity_frac=0.3,
                       minority_position_entity_frac=0.1)
  return dataset.build(config, CorpusConfig(inversion_frac=0.2, questions_frac=0.1), seed=0)


def test_probe_sets_cover_every_fact_with_the_graph_answer(ds):
  probes = ds.probes()
  assert set(probes) == {"sro", "rso", "sro_dissenting_majority", "sro_dissenting_minority",
                         "rso_dissenting_majority", "rso_dissenting_minority", "question_trained",
                         "question_heldout"}
  g, roles = ds.graph, Roles(ds.vocab)
  sro = probes["sro"]
  assert len(sro) == 1500 * 3
  objects = g.objects_SxR[sro.subject_N, sro.relationship_N]
  for i in range(0, len(sro), 97):
    kind, s, r, o, _ = roles.fact(list(sro.prompt_NxP[i]) + list(sro.answer_NxA[i]))
    assert (kind, s, r, o) == (0, sro.subject_N[i], sro.relationship_N[i], objects[i])
  assert sro.prompt_NxP[0, 0] == SS and sro.prompt_NxP[0, -1] == OO


def test_question_probes_split_by_training_exposure(ds):
  probes = ds.probes()
  trained, heldout = probes["question_trained"], probes["question_heldout"]
  assert ds.graph.qa_subject_S[trained.subject_N].all() and not ds.graph.qa_subject_S[heldout.subject_N].any()
  assert len(trained) + len(heldout) == 1500 * 3 and len(trained) == 450 * 3
  # The original's split: the prompt ends at AA, the answer is " OO <object>".
  assert (trained.prompt_NxP[:, 0] == QQ).all() and (trained.prompt_NxP[:, -1] == AA).all()
  assert (trained.answer_NxA[:, 0] == OO).all()
  objects = ds.graph.objects_SxR[trained.subject_N, trained.relationship_N]
  assert (trained.answer_NxA[:, 1] == ds.vocab.objects(0).start + trained.relationship_N * 12 + objects).all()


def test_no_question_probes_without_questions_in_the_corpus(ds):
  # questions_entity_frac alone (default 0.5) draws Q/A subjects, but only questions_frac > 0 asks them.
  assert ds.graph.qa_subject_S.any()
  plain = dataset.Dataset(ds.graph, ds.vocab, CorpusConfig(), seed=0)
  assert not {"question_trained", "question_heldout"} & set(plain.probes())


def test_dissenting_probes_answer_majority_and_minority(ds):
  probes = ds.probes()
  maj, mino = probes["sro_dissenting_majority"], probes["sro_dissenting_minority"]
  assert len(maj) == len(mino) == 450
  roles = Roles(ds.vocab)
  for i in range(0, 450, 37):
    _, s, r, o_major, _ = roles.fact(list(maj.prompt_NxP[i]) + list(maj.answer_NxA[i]))
    _, _, _, o_minor, _ = roles.fact(list(mino.prompt_NxP[i]) + list(mino.answer_NxA[i]))
    assert o_major == ds.graph.objects_SxR[s, r] and o_minor == ds.graph.minority_SxR[s, r]


def test_max_per_set_subsamples_deterministically(ds):
  a, b = ds.probes(max_per_set=100), ds.probes(max_per_set=100)
  assert all(len(p) <= 100 for p in a.values())
  np.testing.assert_array_equal(a["sro"].prompt_NxP, b["sro"].prompt_NxP)


@pytest.mark.parametrize("name", ALL_TEMPLATES)
def test_every_template_renders_rectangular_probes(ds, name):
  template = make_template(name, ds.vocab, 0.5)
  facts = np.array([[100, -1, ds.vocab.relationships.start, ds.vocab.objects(0).start, -1]] * 3, np.int32)
  for form in template.probes[:3]:
    prompt, answer = render_probe_tokens(template, form, facts, ds.vocab, seed=0)
    assert prompt.shape[0] == answer.shape[0] == 3
    question = name in ("question", "qa", "qa_refusal")  # prompts end at AA, answers start with OO
    tail = list(REFUSAL_ANSWER) if "refusal" in name else [ds.vocab.objects(0).start]
    assert answer.tolist() == [[OO] * question + tail] * 3
    assert prompt[0, -1] == (AA if question else OO)


def test_simplerepeats_probe_forms_are_every_combination():
  vocab = dataset.make_vocab(GraphConfig(num_subjects=5, num_relationships=1, num_objects=2))
  forms = make_template("simplerepeats", vocab).probes
  assert len(forms) == 3 * 4 * 3 * 4 * 3 and len({f.name for f in forms}) == len(forms)
  assert all(f.counts[-1] == 0 for f in forms)  # nothing after the object


def test_other_phrasings_on_request(ds):
  probes = ds.probes(max_per_set=50, templates=("qa", "refusal", "nonsense"))
  assert {"qa", "refusal", "nonsense_rso", "nonsense_sro"} <= set(probes)
  assert (probes["refusal"].answer_NxA == list(REFUSAL_ANSWER)).all()
  roles = Roles(ds.vocab)
  qa = probes["qa"]
  kind, s, r, o, question = roles.fact(list(qa.prompt_NxP[0]) + list(qa.answer_NxA[0]))
  assert question and o == ds.graph.objects_SxR[s, r]


def test_nonsense_corpus_probes_both_orders():
  ds = dataset.build(GraphConfig(num_subjects=20, num_relationships=2, num_objects=4),
                     CorpusConfig(phrase_creator="nonsense"), seed=0)
  probes = ds.probes()
  assert {"nonsense_rso", "nonsense_sro"} <= set(probes)
  start, count = ds.vocab.filler_pool()
  prompt = probes["nonsense_sro"].prompt_NxP
  assert (((prompt >= start) & (prompt < start + count)).sum(1) == 6).all()  # 2 per gap
