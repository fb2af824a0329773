"""Edit sets as rectangular arrays: training rows for edit methods, probes for their evaluation.

Reads the edit-set builder's `EditSet` directly (native arrays, no text). A row is a prompt and an
answer rendered in one template; rows of different templates are padded to one width, so any mix of
forms trains in one program. Padding sits after the scored positions, where a causal model never looks.

Scored positions (`positions_NxK`) are where the model's next-token prediction is scored: the answer's
tokens (loss on the answer, the default) or every token after the first (loss on the whole sentence). The
forward computes the output head at these positions only.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from data_gen.edit_sets import edits as edits_lib
from data_gen.edit_sets.edit_files import EDIT_SPLIT_NAMES

PAD = 1  # the vocabulary's padding id
LOSS_ON = ("answer", "sentence")
# Splits whose rows belong to one edit through its head (subject, or object for object-nested edits):
# the edited subject's other facts and ripple facts. Everything else is shared locality.
HEAD_LINKED = ("edited", "censored", "same_edges_diff_rel", "same_subject_second_rel",
               "same_subject_second_rel_converted", "same_subj_nested_obj_edges", "same_subj_obj_edges")
# Rows that share the edit's new value (same relationship): what a remap most plausibly disturbs.
VALUE_LINKED = ("with_same_value",)
RETAIN_SPLITS = ("with_same_value", "with_same_rel", "reg_data")


@dataclasses.dataclass(frozen=True)
class Rows:
  """Token rows: inputs [N, L] (pad after the end), scored positions/targets [N, K] and their mask."""

  inputs_NxL: np.ndarray
  positions_NxK: np.ndarray
  targets_NxK: np.ndarray
  mask_NxK: np.ndarray

  def __len__(self) -> int:
    return self.inputs_NxL.shape[0]

  def take(self, index) -> "Rows":
    return Rows(*(np.asarray(a)[index] for a in dataclasses.astuple(self)))

  def arrays(self) -> dict:
    return {"inputs": self.inputs_NxL, "positions": self.positions_NxK, "targets": self.targets_NxK,
            "mask": self.mask_NxK}


def make_rows(prompt_NxP: np.ndarray, answer_NxA: np.ndarray, loss_on: str = "answer") -> Rows:
  """Rows that feed prompt + answer[:-1] and score the answer (or, loss_on="sentence", every next token)."""
  if loss_on not in LOSS_ON:
    raise ValueError(f"loss_on must be one of {LOSS_ON}, got {loss_on!r}")
  N, P = prompt_NxP.shape
  A = answer_NxA.shape[1]
  seq = np.concatenate([prompt_NxP, answer_NxA], 1).astype(np.int32)
  inputs = seq[:, :-1]
  first = P - 1 if loss_on == "answer" else 0
  positions = np.broadcast_to(np.arange(first, P + A - 1, dtype=np.int32), (N, P + A - 1 - first))
  targets = seq[:, positions[0] + 1] if N else np.zeros((0, positions.shape[1]), np.int32)
  return Rows(inputs, np.ascontiguousarray(positions), targets.astype(np.int32),
              np.ones(positions.shape, bool))


def pad_rows(rows: Rows, length: int, width: int) -> Rows:
  N, L = rows.inputs_NxL.shape
  K = rows.positions_NxK.shape[1]
  inputs = np.full((N, length), PAD, np.int32)
  inputs[:, :L] = rows.inputs_NxL
  pos, tgt, mask = (np.zeros((N, width), np.int32), np.full((N, width), PAD, np.int32), np.zeros((N, width), bool))
  pos[:, :K], tgt[:, :K], mask[:, :K] = rows.positions_NxK, rows.targets_NxK, rows.mask_NxK
  return Rows(inputs, pos, tgt, mask)


def concat_rows(parts: list[Rows]) -> Rows:
  parts = [p for p in parts if len(p)] or parts[:1]
  L = max(p.inputs_NxL.shape[1] for p in parts)
  K = max(p.positions_NxK.shape[1] for p in parts)
  padded = [pad_rows(p, L, K) for p in parts]
  return Rows(*(np.concatenate(a) for a in zip(*(dataclasses.astuple(p) for p in padded))))


def answering_template(template: str) -> str:
  return edits_lib.ANSWERING_TEMPLATE[template]


def split_rows(split, dataset, loss_on: str = "answer", answer: str = "after") -> Rows:
  """The split's facts as rows; answer="before" renders the pre-edit answer in the answering form."""
  if answer == "before":
    prompt, ans = split.tokens(dataset, template=answering_template(split.template), answer="before")
  else:
    prompt, ans = split.tokens(dataset)
  return make_rows(prompt, ans, loss_on)


# ---- training sets ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TrainSet:
  """What an edit trains on: the edit rows (new answer, refusal, or the fact to forget) and retain rows
  (facts whose answer must stay), each with the builder's repeat weight; one padded width for both."""

  edit: Rows
  edit_weight: np.ndarray
  edit_head: np.ndarray
  edit_relationship: np.ndarray
  edit_after: np.ndarray
  retain: Rows
  retain_weight: np.ndarray


def train_set(edit_set, dataset, loss_on: str = "answer", forget: bool = False) -> TrainSet:
  """Rows of the edit set's training splits. forget=True: the edit rows carry the answer *before* the edit
  (what unlearning pushes down) instead of the new one."""
  edit_parts, retain_parts = [], []
  for s in edit_set.train:
    (edit_parts if s.name in EDIT_SPLIT_NAMES else retain_parts).append(s)
  if not edit_parts:
    raise ValueError("the edit set has no edited/censored training split")
  edit = concat_rows([split_rows(s, dataset, loss_on, "before" if forget else "after") for s in edit_parts])
  if retain_parts:
    retain = concat_rows([split_rows(s, dataset, loss_on) for s in retain_parts])
    retain_weight = np.concatenate([s.weight for s in retain_parts]).astype(np.float32)
  else:
    retain = edit.take(np.zeros(0, np.int64))
    retain_weight = np.zeros(0, np.float32)
  L = max(edit.inputs_NxL.shape[1], retain.inputs_NxL.shape[1])
  K = max(edit.positions_NxK.shape[1], retain.positions_NxK.shape[1])
  cat = lambda name: np.concatenate([getattr(s, name) for s in edit_parts])
  return TrainSet(edit=pad_rows(edit, L, K), edit_weight=cat("weight").astype(np.float32),
                  edit_head=cat("head"), edit_relationship=cat("relationship"), edit_after=cat("after"),
                  retain=pad_rows(retain, L, K), retain_weight=retain_weight)


def edit_groups(ts: TrainSet) -> list[np.ndarray]:
  """Row indices of each distinct edit (one fact may be trained in several forms, e.g. statement + Q/A)."""
  keys = np.stack([ts.edit_head, ts.edit_relationship], 1)
  _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
  order = np.argsort(first)  # edits in the order the builder listed them
  return [np.flatnonzero(inverse.ravel() == g) for g in order]


def independent_rows(ts: TrainSet, retain_per_edit: int, seed: int) -> tuple[Rows, np.ndarray, list]:
  """Per edit: its own rows plus `retain_per_edit` retain rows (drawn by weight, without replacement,
  from a per-edit stream of `seed`). Returns rows [F, E + R, ...], is_edit [E + R] and the groups."""
  groups = edit_groups(ts)
  E = max(len(g) for g in groups)
  R = min(retain_per_edit, len(ts.retain))
  fields = []
  for f, g in enumerate(groups):
    idx = np.concatenate([g, np.repeat(g[-1:], E - len(g))])  # pad with a duplicate row, masked below
    own = ts.edit.take(idx)
    own = dataclasses.replace(own, mask_NxK=own.mask_NxK & (np.arange(E) < len(g))[:, None])
    if R:
      rng = np.random.default_rng([seed, f])
      p = ts.retain_weight / ts.retain_weight.sum()
      pick = rng.choice(len(ts.retain), size=R, replace=False, p=p)
      own = concat_rows([own, ts.retain.take(pick)])
    fields.append(dataclasses.astuple(own))
  rows = Rows(*(np.stack(a) for a in zip(*fields)))
  return rows, np.arange(E + R) < E, groups


# ---- evaluation probes --------------------------------------------------------------------------------

METRICS = ("exact_match", "exact_match_old")  # greedy answer == the post-edit / the pre-edit answer


@dataclasses.dataclass(frozen=True)
class EvalSplit:
  """One evaluation split in one template: per metric (prompt [N, P], answer [N, A]) and the facts."""

  name: str
  template: str
  head: np.ndarray
  relationship: np.ndarray
  before: np.ndarray
  after: np.ndarray
  probes: dict  # metric -> (prompt_NxP, answer_NxA)

  def __len__(self) -> int:
    return len(self.head)

  @property
  def key(self) -> str:
    return f"{self.name}/{edits_lib.TEMPLATE_TAG[self.template]}"


def eval_splits(edit_set, dataset) -> list[EvalSplit]:
  out = []
  for s in edit_set.eval:
    probes = {"exact_match": s.tokens(dataset),
              "exact_match_old": s.tokens(dataset, template=answering_template(s.template), answer="before")}
    out.append(EvalSplit(s.name, s.template, s.head, s.relationship, s.before, s.after, probes))
  return out


def linked_rows(split: EvalSplit, head, relationship, after, shared: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Rows of `split` that belong to each of F edits: (index [F, M], mask [F, M]).

  Head-linked splits: the rows with the edit's head (the edited fact itself: also its relationship);
  value-linked: rows of the edit's relationship whose value is the edit's new value; otherwise a fixed
  sample of `shared` rows, the same for every edit (locality on unrelated facts).
  """
  F, N = len(head), len(split)
  if N == 0:
    return np.zeros((F, 1), np.int64), np.zeros((F, 1), bool)
  # A question-form split of never-asked subjects (edits.eval_question_form) links as its split does.
  name = split.name.removesuffix(edits_lib.NEVER_ASKED_SUFFIX) if split.template == edits_lib.PRETRAINING_QUESTION \
      else split.name
  if name in HEAD_LINKED:
    match = split.head[None, :] == np.asarray(head)[:, None]
    if name in EDIT_SPLIT_NAMES:
      match &= split.relationship[None, :] == np.asarray(relationship)[:, None]
  elif name in VALUE_LINKED:
    match = ((split.before[None, :] == np.asarray(after)[:, None])
             & (split.relationship[None, :] == np.asarray(relationship)[:, None]))
  else:
    rng = np.random.default_rng([seed, len(split.name), N])
    pick = np.sort(rng.choice(N, size=min(shared, N), replace=False))
    return np.broadcast_to(pick, (F, len(pick))).copy(), np.ones((F, len(pick)), bool)
  M = max(1, int(match.sum(1).max()))
  index = np.zeros((F, M), np.int64)
  mask = np.zeros((F, M), bool)
  for f in range(F):
    hits = np.flatnonzero(match[f])[:M]
    index[f, :len(hits)] = hits
    mask[f, :len(hits)] = True
  return index, mask


def check_matches_graph(edit_set, graph) -> None:
  """ValueError unless every fact's pre-edit answer is the graph's: an edit set built from another
  dataset (other seed or options) fails here instead of silently editing facts the model never saw."""
  from data_gen.edit_sets.edit_select import value_table  # pylint: disable=g-import-not-at-top
  for s in edit_set.splits:
    if not len(s):
      continue
    table = value_table(graph, s.kind)
    ok = (s.head < table.shape[0]).all() and (s.relationship < table.shape[1]).all()
    if ok:
      ok = (table[s.head, s.relationship] == s.before).all()
    if not ok:
      raise ValueError(f"split {s.role}/{s.name} does not match the pretrained run's fact graph "
                       "(built from another dataset?)")
