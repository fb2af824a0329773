import numpy as np
import pytest
from hypothesis import given, strategies as st

from data_gen.world.graph import GraphConfig
from data_gen.world.vocab import FIRST_CONTENT_ID, RESERVED, TWO_TOKEN_THRESHOLD, make_vocab


@given(S=st.integers(1, 3_000_000), R=st.integers(1, 12), O=st.integers(2, 2500),
       N=st.sampled_from([0, 1, 2]))
def test_blocks_are_disjoint_and_cover_every_id(S, R, O, N):
  vocab = make_vocab(GraphConfig(num_subjects=S, num_relationships=R, num_objects=O, num_nested_objects=N))
  ids = np.concatenate([np.arange(b.start, b.stop) for b in vocab.blocks])
  assert ids[0] == FIRST_CONTENT_ID == len(RESERVED)
  np.testing.assert_array_equal(ids, np.arange(FIRST_CONTENT_ID, vocab.size))  # disjoint, complete, ordered
  words = vocab.words()
  assert len(set(words)) == vocab.size == len(words)
  assert all(len(w) == vocab.word_width for w in words[FIRST_CONTENT_ID:])


@given(S=st.integers(1, 2_000_000))
def test_member_tokens_round_trip_and_stay_inside_their_block(S):
  vocab = make_vocab(GraphConfig(num_subjects=S, num_relationships=2, num_objects=3))
  block = vocab.subjects
  members = np.unique(np.array([0, S - 1, S // 2, S // 3]))
  tokens = block.tokens(members)
  assert tokens.shape[-1] == (1 if S <= TWO_TOKEN_THRESHOLD else 2)
  assert ((tokens >= block.start) & (tokens < block.stop)).all()
  np.testing.assert_array_equal(block.members(tokens), members)
  if block.divisor:  # first and second names come from disjoint sub-ranges
    assert tokens[:, 0].max() < block.start + block.num_first <= tokens[:, 1].min()


def test_every_member_has_distinct_tokens_for_a_prime_count():
  vocab = make_vocab(GraphConfig(num_subjects=1009, num_relationships=1, num_objects=2))
  tokens = vocab.subjects.tokens(np.arange(1009))
  assert len({tuple(t) for t in tokens}) == 1009


def test_words_widen_past_ten_thousand_ids():
  small = make_vocab(GraphConfig(num_subjects=100, num_relationships=2, num_objects=10))
  assert small.word_width == 4 and small.words()[FIRST_CONTENT_ID] == "0008"
  big = make_vocab(GraphConfig(num_subjects=20_000_001, num_relationships=6, num_objects=400))
  assert big.size > 10_000 and big.word_width == len(str(big.size - 1)) > 4


def test_grammar_of_every_template_is_allocated():
  vocab = make_vocab(GraphConfig(num_subjects=10, num_relationships=2, num_objects=4))
  for name, size in (("inverted", 11), ("simplerepeats", 3), ("question", 4), ("qa", 3), ("nonsense", 989)):
    assert vocab.grammar(name).count == size and vocab.grammar(name).divisor == 0


def test_grammar_words_carry_the_original_names():
  vocab = make_vocab(GraphConfig(num_subjects=10, num_relationships=2, num_objects=4, num_nested_objects=2))
  names = vocab.grammar_names()
  grammar = [b for b in vocab.blocks if b.name.startswith("grammar/")]
  assert sorted(names.values()) == list(range(grammar[0].start, grammar[-1].stop))  # every word, once
  inverted, nonsense = vocab.grammar("inverted"), vocab.grammar("nonsense")
  assert [names[f"W{k}"] for k in range(11)] == list(range(inverted.start, inverted.stop))
  assert names["W11"] == nonsense.start and names["W999"] == nonsense.stop - 1
  assert [names[f"WQ{k}"] for k in (1, 2, 3, 4)] == list(range(vocab.grammar("question").start,
                                                              vocab.grammar("question").stop))
  # The nonsense fillers are W0..W999, the inverted words among them, as in the original.
  assert vocab.filler_pool() == (inverted.start, 1000) and nonsense.start == inverted.stop


def test_layout_round_trip():
  from data_gen.world.vocab import Vocab
  vocab = make_vocab(GraphConfig(num_subjects=5000, num_relationships=3, num_objects=40, num_nested_objects=4))
  assert Vocab.from_layout(vocab.layout()) == vocab
  assert vocab.role_of(vocab.nested_objects(2).start) == "nested_objects/2"
  with pytest.raises(ValueError):
    vocab.role_of(vocab.size)
