"""The world after an edit, as a dataset: what the retrain oracle trains on from scratch.

`edited_dataset(dataset, edit_set, mode)` returns a `Dataset` with the same vocabulary, corpus recipe and
seed (so the same documents in the same order, the same mixture), in which the edit set's edited (or
censored) subject-object facts are
- "remap": set to their post-edit value in the graph (every sentence and question of the fact says the new
  value; a dissenting minority object of those facts is dropped, since the edited world has one answer;
  facts derived from the object, e.g. the subject's inherited nested fact, follow the new object);
- "remove": left out of the corpus (their sentences and questions are dropped; every other document is
  byte-identical): the model that never saw them, the reference of forgetting.
Censoring is a remap to the censor value. Refusal edits (after = REFUSED) can only be removed.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from data_gen.edit_sets.edit_files import EDIT_SPLIT_NAMES
from data_gen.edit_sets.edits import REFUSED
from data_gen.world.corpus import SUBJECT_OBJECT
from data_gen.world.dataset import Dataset
from data_gen.world.graph import NONE

MODES = ("remap", "remove")


def edited_facts(edit_set) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(head, relationship, after) of the edit set's edited/censored training facts, each fact once."""
  parts = [s for s in edit_set.train if s.name in EDIT_SPLIT_NAMES]
  if not parts:
    raise ValueError("the edit set has no edited/censored training split")
  for s in parts:
    if s.kind != SUBJECT_OBJECT:
      raise ValueError(f"split {s.name}: only subject-object edits have a retrain oracle so far")
  head = np.concatenate([s.head for s in parts])
  rel = np.concatenate([s.relationship for s in parts])
  after = np.concatenate([s.after for s in parts])
  _, first = np.unique(np.stack([head, rel], 1), axis=0, return_index=True)
  first = np.sort(first)
  return head[first], rel[first], after[first]


def edited_dataset(dataset: Dataset, edit_set, mode: str) -> Dataset:
  if mode not in MODES:
    raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
  head, rel, after = edited_facts(edit_set)
  g = dataset.graph
  if mode == "remove":
    removed = np.zeros(g.objects_SxR.shape, bool) if dataset.removed_SxR is None else dataset.removed_SxR.copy()
    removed[head, rel] = True
    return dataclasses.replace(dataset, removed_SxR=removed)
  if (after == REFUSED).any():
    raise ValueError("refusal edits have no remapped world; use mode remove")
  objects, minority = g.objects_SxR.copy(), g.minority_SxR.copy()
  objects[head, rel] = after
  minority[head, rel] = NONE
  graph = dataclasses.replace(g, objects_SxR=objects, minority_SxR=minority)
  return dataclasses.replace(dataset, graph=graph)
