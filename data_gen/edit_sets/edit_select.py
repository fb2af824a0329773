"""Vectorized selection primitives for edit sets: every choice is one numpy call over whole arrays.

The original scanned Python lists once per edit (quadratic); here a selection is a permutation followed by
masks, ranks within groups and prefix cuts, so an edit set over 100,000 subjects builds in well under a
second whatever the number of edits.
"""

from __future__ import annotations

import numpy as np

from data_gen.world.corpus import OBJECT_NESTED, SUBJECT_NESTED, SUBJECT_OBJECT
from data_gen.world.graph import FactGraph


def value_table(graph: FactGraph, kind: int) -> np.ndarray:
  """int[H, R]: the tail of fact (head h, relationship r) for a fact kind.

  Heads are subjects for subject-object and subject-nested facts, and objects (of relationship r) for
  object-nested facts.
  """
  if kind == SUBJECT_OBJECT:
    return graph.objects_SxR
  if kind == SUBJECT_NESTED:
    return graph.subject_nested_SxR()
  if kind == OBJECT_NESTED:
    return graph.nested_RxO.T
  raise ValueError(f"unknown fact kind {kind}")


def num_values(graph: FactGraph, kind: int, r: int) -> int:
  """How many tails relationship r can take for a fact kind."""
  if kind != SUBJECT_OBJECT:
    return graph.config.num_nested_objects
  # A binarized relationship 0 only ever holds objects 0 and 1; edits must stay inside that range.
  if graph.config.binarize_first_correlated and r == 0:
    return 2
  return graph.num_objects


def entity_of_fact(kind: int, head, rel, num_relationships: int) -> np.ndarray:
  """What a fact is "about": splits that must not share a subject compare these ids.

  For subject facts that is the subject (its other relationships belong to the same entity). Objects are
  scoped per relationship, so object 3 of r=0 and object 3 of r=1 are different entities: an
  object-nested fact's entity is the (object, relationship) pair.
  """
  head = np.asarray(head, np.int64)
  if kind == OBJECT_NESTED:
    return head * num_relationships + np.asarray(rel, np.int64)
  return head


def rank_within_groups(keys: np.ndarray) -> np.ndarray:
  """For each element, how many earlier elements have the same key (0 for the first of its group)."""
  keys = np.asarray(keys)
  if keys.size == 0:
    return np.zeros(0, np.int64)
  order = np.argsort(keys, kind="stable")
  sorted_keys = keys[order]
  is_start = np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]
  start_of_group = np.maximum.accumulate(np.where(is_start, np.arange(keys.size), 0))
  rank = np.empty(keys.size, np.int64)
  rank[order] = np.arange(keys.size) - start_of_group
  return rank


def random_subset(rng: np.random.Generator, items: np.ndarray, cap: int | None) -> np.ndarray:
  """Up to `cap` of `items` (rows of an array), uniformly without replacement, in random order."""
  items = np.asarray(items)
  order = rng.permutation(len(items))
  if cap is not None:
    order = order[:max(int(cap), 0)]
  return items[order]


def first_head_per_value(rng: np.random.Generator, heads: np.ndarray, values: np.ndarray) -> np.ndarray:
  """One uniformly random head for every distinct value among `values[heads]`."""
  shuffled = rng.permutation(heads)
  _, first = np.unique(values[shuffled], return_index=True)
  return shuffled[first]


def facts_of_heads(heads: np.ndarray, num_relationships: int, exclude_rel: int | None = None):
  """(head[F], rel[F]) of every fact of `heads`, optionally leaving out one relationship."""
  heads = np.asarray(heads, np.int64)
  rels = np.arange(num_relationships)
  if exclude_rel is not None:
    rels = rels[rels != exclude_rel]
  head = np.repeat(heads, len(rels))
  rel = np.tile(rels, len(heads))
  return head, rel
