"""Context prefixes for closed-form edits: each edit row again behind preceding sentences of the corpus.

The reference code (ROME's compute_u / compute_v, MEMIT's compute_ks / compute_z) reads keys and fits the
value over the prompt behind several short random contexts (text the model generates itself), so that the
edit holds wherever the fact is stated, not only at the start of a document. Here a context is a document
the corpus itself holds (a sentence ending in end-of-text), drawn at random: what the model saw before a
fact's sentence in pretraining. Keys and values are then averaged over the bare rows and the prefixed ones
with equal weight per row (ROME's flat mean; MEMIT weighs the bare prompt 1/2).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from behemoth_jax.edit import edit_rows, modes
from data_gen.world.vocab import PAD


def with_context_prefixes(plan: modes.IndependentPlan, dataset, count: int, seed: int,
                          subject_token: np.ndarray) -> modes.IndependentPlan:
  """`plan` with `count` more copies of every edit row, each behind one random corpus document; positions
  shift by the document's length. Documents that mention the edit's subject (`subject_token` [F], its last
  token) are drawn again, so a prefix never states the edited fact or its neighbours. count 0: `plan`."""
  if count <= 0:
    return plan
  rows, is_edit = plan.rows, np.asarray(plan.is_edit)
  F, N, L = rows.inputs_NxL.shape
  edit_idx = np.flatnonzero(is_edit)
  E = len(edit_idx)
  rng = np.random.default_rng(seed)
  draws = rng.integers(0, dataset.num_documents, (F, count * E, 4))  # spares for redraws
  docs, lengths = dataset.documents_at(draws.reshape(-1))
  docs = docs.reshape(F, count * E, 4, -1)
  lengths = lengths.reshape(F, count * E, 4)
  mentions = (docs == np.asarray(subject_token)[:, None, None, None]).any(-1)
  pick = np.argmax(~mentions, axis=-1)  # the first draw without the subject (draw 0 if all mention it)
  doc = np.take_along_axis(docs, pick[..., None, None], axis=2)[:, :, 0]  # [F, cE, D]
  length = np.take_along_axis(lengths, pick[..., None], axis=2)[:, :, 0]  # [F, cE]
  src = np.tile(edit_idx, count)  # which edit row each copy repeats
  new_L = L + int(length.max())
  inputs = np.full((F, N + count * E, new_L), PAD, np.int32)
  inputs[:, :N, :L] = rows.inputs_NxL
  pos = np.concatenate([rows.positions_NxK, rows.positions_NxK[:, src] + length[..., None]], axis=1)
  tgt = np.concatenate([rows.targets_NxK, rows.targets_NxK[:, src]], axis=1)
  mask = np.concatenate([rows.mask_NxK, rows.mask_NxK[:, src]], axis=1)
  cols = np.arange(new_L)
  for j in range(count * E):
    n = length[:, j]  # [F]
    body = rows.inputs_NxL[:, src[j]]  # [F, L]
    shifted = np.take_along_axis(body, np.clip(cols[None, :] - n[:, None], 0, L - 1), axis=1)
    in_body = (cols[None, :] >= n[:, None]) & (cols[None, :] < n[:, None] + L)
    from_doc = np.take_along_axis(doc[:, j], np.minimum(cols, doc.shape[-1] - 1)[None, :].repeat(F, 0), axis=1)
    inputs[:, N + j] = np.where(cols[None, :] < n[:, None], from_doc, np.where(in_body, shifted, PAD))
  pos = np.where(mask, pos, 0).astype(np.int32)
  new_rows = edit_rows.Rows(inputs, pos, tgt, mask)
  new_is_edit = np.concatenate([is_edit, np.ones(count * E, bool)])
  return dataclasses.replace(plan, rows=new_rows, is_edit=new_is_edit)
