import dataclasses

import numpy as np
import pytest
from hypothesis import given, strategies as st

from data_gen.common.errors import OptionError
from data_gen.world.graph import NONE, GraphConfig, make_graph

# Critical values of the chi-square distribution at p = 0.001 (a fixed seed makes the tests exact).
CHI2_999 = {31: 61.1, 99: 148.2}


def chi_square(counts):
  expected = counts.sum() / len(counts)
  return float(((counts - expected) ** 2 / expected).sum())


def test_same_seed_same_graph_and_different_seed_different_graph():
  config = GraphConfig(num_subjects=300, num_relationships=3, num_objects=20, minority_position_entity_frac=0.2,
                       questions_entity_frac=0.3)
  assert make_graph(config, 7).equals(make_graph(config, 7))
  assert not make_graph(config, 7).equals(make_graph(config, 8))


def test_object_draws_are_uniform():
  graph = make_graph(GraphConfig(num_subjects=20_000, num_relationships=2, num_objects=100), seed=0)
  for r in range(2):
    counts = np.bincount(graph.objects_SxR[:, r], minlength=100)
    assert chi_square(counts) < CHI2_999[99]


def test_dissenting_facts_share_and_values():
  config = GraphConfig(num_subjects=5000, num_relationships=4, num_objects=32, minority_position_entity_frac=0.15)
  graph = make_graph(config, seed=1)
  has = graph.minority_SxR != NONE
  assert has.sum() == round(0.15 * 5000 * 4)
  assert (graph.minority_SxR[has] != graph.objects_SxR[has]).all()
  # The minority value is uniform over the other O - 1 values: the offset from the majority is uniform.
  offset = (graph.minority_SxR[has] - graph.objects_SxR[has]) % 32
  assert offset.min() >= 1 and chi_square(np.bincount(offset, minlength=32)[1:]) < CHI2_999[31]


@pytest.mark.parametrize("strength", [1.0, 0.6, 0.3])
def test_correlated_pair_share_near_strength_and_disagreement_uniform(strength):
  config = GraphConfig(num_subjects=20_000, num_relationships=3, num_objects=32, correlated_pair=True,
                       correlation_strength=strength)
  graph = make_graph(config, seed=2)
  agree = graph.objects_SxR[:, 0] == graph.objects_SxR[:, 1]
  assert abs(agree.mean() - strength) < 4 * np.sqrt(strength * (1 - strength) / 20_000) + 1e-9
  if strength < 1:
    offset = (graph.objects_SxR[~agree, 1] - graph.objects_SxR[~agree, 0]) % 32
    assert chi_square(np.bincount(offset, minlength=32)[1:]) < CHI2_999[31]  # not biased to the last


def test_binarized_first_relationship():
  config = GraphConfig(num_subjects=2000, num_relationships=2, num_objects=10, correlated_pair=True,
                       correlation_strength=0.8, binarize_first_correlated=True)
  graph = make_graph(config, seed=3)
  assert set(np.unique(graph.objects_SxR[:, 0])) == {0, 1}


@given(N=st.sampled_from([1, 2, 4, 8, 16]), R=st.integers(1, 4), seed=st.integers(0, 100))
def test_nested_map_is_balanced(N, R, seed):
  graph = make_graph(GraphConfig(num_subjects=50, num_relationships=R, num_objects=16, num_nested_objects=N), seed)
  for r in range(R):
    np.testing.assert_array_equal(np.bincount(graph.nested_RxO[r], minlength=N), np.full(N, 16 // N))
  sn = graph.subject_nested_SxR()
  np.testing.assert_array_equal(sn, graph.nested_RxO[np.arange(R)[None, :], graph.objects_SxR])


def test_question_subjects_fraction():
  graph = make_graph(GraphConfig(num_subjects=1000, num_relationships=1, num_objects=5, questions_entity_frac=0.25), 0)
  assert graph.qa_subject_S.sum() == 250


def test_a_million_subjects_is_fast_enough_to_draw():
  graph = make_graph(GraphConfig(num_subjects=1_000_000, num_relationships=6, num_objects=400), seed=0)
  assert graph.objects_SxR.shape == (1_000_000, 6) and graph.objects_SxR.dtype == np.int32


BAD = [
    (dict(num_subjects=0), "subjects"),
    (dict(num_relationships=0), "relationships"),
    (dict(num_objects=-3), "objects"),
    (dict(minority_position_entity_frac=1.5), "minority_position_entity_frac"),
    (dict(questions_entity_frac=-0.1), "questions_entity_frac"),
    (dict(num_nested_objects=3), "num_nested_objects"),  # does not divide 400
    (dict(num_nested_objects=4, minority_position_entity_frac=0.1), "minority_position_entity_frac"),
    (dict(correlated_pair=True, num_relationships=1), "relationships"),
    (dict(correlated_pair=True, correlation_strength=1 / 400), "correlation_strength"),
    (dict(correlated_pair=True, correlation_strength=1.2), "correlation_strength"),
    (dict(correlated_pair=True, binarize_first_correlated=True, correlation_strength=0.5), "correlation_strength"),
    (dict(binarize_first_correlated=True), "binarize_first_correlated"),
    (dict(correlated_pair=True, minority_position_entity_frac=0.1), "minority_position_entity_frac"),
]


@pytest.mark.parametrize("changes,option", BAD)
def test_refusals_name_the_option(changes, option):
  with pytest.raises(OptionError) as e:
    dataclasses.replace(GraphConfig(), **changes).validate()
  assert e.value.option == option and str(e.value).startswith(f"--{option}:")
  assert "\n" not in str(e.value)
