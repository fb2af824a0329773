"""edit_metrics on a model built to answer X: its final norm ignores the input (scale 0) and emits a
fixed vector, so every position predicts the same known distribution softmax(z); the test computes each
metric from z by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from behemoth_jax.evaluate import edit_metrics
from behemoth_jax.model import deltas, model
from data_gen.world.graph import GraphConfig
from data_gen.world.vocab import make_vocab

V = 23
CFG = model.ModelConfig(vocab_size=V, num_layers=1, width=8, num_heads=2, max_len=16)


def _answering(z):
  """Params whose logits are exactly z at every position, whatever the input."""
  flat = deltas.flatten(model.init_params(jax.random.key(0), CFG))
  flat["final_norm/scale"] = jnp.zeros(CFG.width)
  flat["final_norm/bias"] = jnp.zeros(CFG.width).at[0].set(1.0)
  flat["head/kernel"] = jnp.zeros((CFG.width, V)).at[0].set(jnp.asarray(z, jnp.float32))
  return deltas.unflatten(flat)


Z = np.linspace(-2.0, 2.0, V)[np.random.default_rng(0).permutation(V)]
X = int(np.argmax(Z))  # what the model answers
LOGP = Z - np.log(np.exp(Z - Z.max()).sum()) - Z.max()


def _scores(params, prompt, answer, cand=None, group=None, delta=None):
  fn = jax.jit(lambda p, d, pr, a, c, g: edit_metrics.answer_scores(p, d, pr, a, CFG, c, g))
  return {k: np.asarray(v) for k, v in fn(params, delta, jnp.asarray(prompt), jnp.asarray(answer),
                                          None if cand is None else jnp.asarray(cand),
                                          None if group is None else jnp.asarray(group)).items()}


def test_logprob_exact_match_and_teacher_forced_accuracy_of_a_model_built_to_answer_x():
  params = _answering(Z)
  other = int(np.argsort(Z)[-2])
  prompt = np.array([[3, 4, 5]] * 4, np.int32)
  answer = np.array([[X, X], [X, other], [other, X], [other, other]], np.int32)
  got = _scores(params, prompt, answer)
  np.testing.assert_allclose(got["logprob"], LOGP[answer].sum(1), rtol=1e-5)
  np.testing.assert_array_equal(got["exact_match"], [True, False, False, False])
  # Partial credit: the teacher-forced accuracy of [other, X] is 0.5, its exact match is False.
  np.testing.assert_allclose(got["token_accuracy_teacher_forced"], [1.0, 0.5, 0.5, 0.0])


def test_rank_among_the_relationships_values_skips_grammar_words():
  params = _answering(Z)
  order = np.argsort(-Z)  # tokens from the most to the least likely
  cand = np.zeros((2, V), bool)
  cand[0, order[[0, 3, 5, 8]]] = True  # values of relationship 0: ranks 1, 2, 3, 4 among themselves
  cand[1, order[[4, 9]]] = True
  grammar = order[1]  # a likelier non-value token before the value (the Q/A answer's `OO` word)
  answer = np.array([[order[5]], [order[8]], [order[0]], [order[9]], [order[4]]], np.int32)
  answer = np.concatenate([np.full((5, 1), grammar, np.int32), answer], 1)
  got = _scores(params, np.ones((5, 2), np.int32), answer, cand, np.array([0, 0, 0, 1, 1], np.int32))
  np.testing.assert_array_equal(got["rank"], [3, 4, 1, 2, 1])
  # No candidate token in the answer (a refusal): rank -1.
  got = _scores(params, np.ones((1, 2), np.int32), np.array([[grammar, grammar]], np.int32), cand,
                np.array([0], np.int32))
  assert got["rank"][0] == -1


def test_row_metrics_efficacy_under_a_delta_and_vmapped_over_edits():
  params = _answering(Z)
  a, b = int(np.argsort(Z)[-1]), int(np.argsort(Z)[0])  # the model's answer and its least likely token
  new = (jnp.ones((1, 2), jnp.int32), jnp.array([[b]], jnp.int32))
  old = (jnp.ones((1, 2), jnp.int32), jnp.array([[a]], jnp.int32))
  cand = jnp.ones((1, V), bool)
  group = jnp.zeros(1, jnp.int32)
  # Edit 0: no change. Edit 1: a head delta that makes b the answer (adds 10 to its logit).
  bump = jnp.zeros((2, CFG.width, V)).at[1, 0, b].set(10.0)
  delta_F = deltas.unflatten({"head/kernel": bump})
  fn = jax.jit(jax.vmap(lambda d: edit_metrics.row_metrics(params, d, new, old, CFG, cand, group)))
  got = {k: np.asarray(v)[:, 0] for k, v in fn(delta_F).items()}
  assert set(got) == set(edit_metrics.METRICS)
  np.testing.assert_array_equal(got["efficacy"], [False, True])
  np.testing.assert_array_equal(got["exact_match"], [False, True])
  np.testing.assert_array_equal(got["exact_match_old"], [True, False])
  np.testing.assert_array_equal(got["rank"], [V, 1])
  z1 = Z.copy()
  z1[b] += 10
  lp1 = z1 - np.log(np.exp(z1).sum())
  np.testing.assert_allclose(got["logprob_new"], [LOGP[b], lp1[b]], rtol=1e-5)
  np.testing.assert_allclose(got["logprob_old"], [LOGP[a], lp1[a]], rtol=1e-5)


@pytest.mark.parametrize("num_objects", [8, 150])  # one token per value, and two (first tokens shared)
def test_value_candidates_are_the_first_tokens_of_every_value(num_objects):
  vocab = make_vocab(GraphConfig(num_subjects=10, num_relationships=2, num_objects=num_objects))
  cand, group = edit_metrics.value_candidates(vocab, np.zeros(3, np.int64), np.array([1, 0, 1]))
  assert group.tolist() == [1, 0, 1]
  for r in (0, 1):
    block = vocab.objects(r)
    firsts = np.unique(block.tokens(np.arange(block.count))[:, 0])
    assert np.flatnonzero(cand[r]).tolist() == firsts.tolist()


def _split(name, head, rel, before, after):
  from behemoth_jax.edit.edit_rows import EvalSplit  # pylint: disable=g-import-not-at-top
  a = lambda x: np.asarray(x, np.int64)  # noqa: E731
  return EvalSplit(name, "remapping", a(head), a(rel), a(before), a(after), {})


def test_a_ripple_whose_prerequisite_the_model_did_not_know_is_not_scored():
  # Three edits (subjects 10, 11, 12: relationship 0, old object -> new object 5, 6, 7).
  edited = _split("edited", [10, 11, 12], [0, 0, 0], [1, 2, 3], [5, 6, 7])
  # The new objects' nested facts (object, r', nested value), sorted by object as the builder lists them.
  nested = _split("remapped_obj_nested_obj_edges", [5, 6, 7], [0, 0, 0], [0, 1, 0], [0, 1, 0])
  ripple = _split("same_subj_nested_obj_edges", [12, 10, 11], [0, 0, 0], [2, 2, 2], [0, 0, 1])
  before = {
      edited.key: {"exact_match_old": np.array([1.0, 0.0, 1.0])},  # subject 11's old fact was not known
      nested.key: {"exact_match": np.array([1.0, 1.0, 0.0])},  # object 7's nested fact was not known
  }
  got = edit_metrics.ripple_qualified([edited, nested, ripple], before)
  # Ripple rows: subject 12 (needs object 7's nested fact: unknown), 10 (both known), 11 (old fact unknown).
  np.testing.assert_array_equal(got[ripple.key], [False, True, False])
  # Correlated ripple: the old fact and the partner fact as it was.
  partner = _split("same_subject_second_rel", [10, 11, 12], [1, 1, 1], [4, 4, 4], [4, 4, 4])
  conv = _split("same_subject_second_rel_converted", [10, 11, 12], [1, 1, 1], [4, 4, 4], [5, 6, 7])
  before[partner.key] = {"exact_match": np.array([0.0, 1.0, 1.0])}
  got = edit_metrics.ripple_qualified([edited, partner, conv], before)
  np.testing.assert_array_equal(got[conv.key], [False, False, True])
  # Without the prerequisite split in the edit set nothing qualifies.
  assert not edit_metrics.ripple_qualified([edited, ripple], before)[ripple.key].any()


def test_summary_scores_ripple_conditioned_on_known_prerequisites_with_cis():
  from behemoth_jax.edit import runner  # pylint: disable=g-import-not-at-top
  edited = _split("edited", [10, 11, 12], [0, 0, 0], [1, 2, 3], [5, 6, 7])
  nested = _split("remapped_obj_nested_obj_edges", [5, 6, 7], [0, 0, 0], [0, 1, 0], [0, 1, 0])
  ripple = _split("same_subj_nested_obj_edges", [12, 10, 11], [0, 0, 0], [2, 2, 2], [0, 0, 1])
  evals = [edited, nested, ripple]
  before = {edited.key: {"exact_match": np.zeros(3), "exact_match_old": np.array([1.0, 0.0, 1.0])},
            nested.key: {"exact_match": np.array([1.0, 1.0, 0.0]), "exact_match_old": np.ones(3)},
            ripple.key: {"exact_match": np.zeros(3), "exact_match_old": np.ones(3)}}
  after = {edited.key: {"exact_match": np.ones(3), "exact_match_old": np.zeros(3)},
           nested.key: {"exact_match": np.ones(3), "exact_match_old": np.ones(3)},
           ripple.key: {"exact_match": np.array([1.0, 0.0, 1.0]), "exact_match_old": np.zeros(3)}}
  _, summary = runner._whole_split_rows(evals, before, after, "batch", seed=0)  # pylint: disable=protected-access
  r = summary["same_subj_nested_obj_edges"]
  assert r["exact_match"]["after"] == pytest.approx(2 / 3) and r["exact_match"]["n"] == 3
  c = r["exact_match_conditioned"]  # only subject 10's ripple qualifies, and it did not follow the edit
  assert (c["n"], c["of"], c["after"], c["before"]) == (1, 3, 0.0, 0.0)
  assert c["after_ci"] == [0.0, 0.0] and c["ci_unit"] == "fact"
  assert "exact_match_conditioned" not in summary["edited"]


def test_all_facts_in_one_jitted_call_equal_the_rows_scored_alone():
  params = _answering(Z)
  rng = np.random.default_rng(5)
  prompt = rng.integers(0, V, (11, 3)).astype(np.int32)
  answer = rng.integers(0, V, (11, 2)).astype(np.int32)
  got = edit_metrics.make_all_facts_scores(CFG, chunk=4)(params, None, jnp.asarray(prompt), jnp.asarray(answer))
  want = _scores(params, prompt, answer)
  for k in ("logprob", "exact_match", "token_accuracy_teacher_forced"):
    np.testing.assert_allclose(np.asarray(got[k]), want[k], rtol=1e-6)
