"""Per-row measurements of a (possibly edited) model, from one teacher-forced forward per answer form.

`answer_scores(params, delta, prompt [N, P], answer [N, A], cfg, candidates [G, V], group [N])` -> dict of
[N] arrays; pure jax (no host work), so callers jit it and vmap it over edits (one delta per edit). The
forward feeds prompt + answer[:-1] and computes the output head at the A answer positions only.

- `logprob`: log P(answer | prompt) = the sum over the answer's tokens of their log-probabilities
  (teacher-forced: each token is conditioned on the true previous ones, which is what the chain rule of
  P(answer) needs).
- `exact_match`: every answer token is the argmax (equal to greedy decoding of the whole answer: greedy
  decoding produces token k+1 from the true prefix exactly when tokens 1..k were greedy too).
  The headline metric.
- `token_accuracy_teacher_forced`: the share of answer tokens that are the argmax given the *true* prefix.
  Partial credit: a two-token answer whose second token is right after a wrong first one scores 0.5
  although greedy decoding never produces it. Reported beside exact match, never instead of it.
- `rank`: 1 + the number of candidate tokens whose logit is strictly above the expected one, at the
  answer's first *value* token (the first answer token inside the candidate set; the Q/A form's answer
  starts with a grammar word, which is skipped). The candidates are the first tokens of every value of the
  fact's relationship (`candidates[group[n]]`, a bool mask over the vocabulary). For values spelled in two
  tokens the rank is among first tokens: values sharing the expected first token tie with it, so this is
  the rank of the expected value's first-token group (a lower bound on its rank among whole values).
  -1 where the answer holds no candidate token (a refusal).

`row_metrics` combines the post-edit and pre-edit answers of the same facts: the metric names of the
results files (exact_match, exact_match_old, logprob_new, logprob_old, efficacy = logprob_new >
logprob_old, token_accuracy_teacher_forced, rank = rank of the post-edit answer).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from behemoth_jax.model import model

METRICS = ("exact_match", "exact_match_old", "logprob_new", "logprob_old", "efficacy",
           "token_accuracy_teacher_forced", "rank")


def answer_scores(params, delta, prompt_NxP, answer_NxA, cfg: model.ModelConfig, candidates_GxV=None,
                  group_N=None) -> dict:
  P_, A = prompt_NxP.shape[1], answer_NxA.shape[1]
  tokens = jnp.concatenate([prompt_NxP, answer_NxA[:, :-1]], 1)
  positions = jnp.broadcast_to(jnp.arange(P_ - 1, P_ + A - 1, dtype=jnp.int32), answer_NxA.shape)
  logits = model.apply(params, tokens, cfg, delta=delta, head_positions=positions,
                       prune_to_head=True).logits.astype(jnp.float32)  # [N, A, V]
  logp = jax.nn.log_softmax(logits, -1)
  token_lp = jnp.take_along_axis(logp, answer_NxA[..., None], -1)[..., 0]
  greedy = jnp.argmax(logits, -1) == answer_NxA
  out = {"logprob": token_lp.sum(-1), "exact_match": greedy.all(-1),
         "token_accuracy_teacher_forced": greedy.mean(-1)}
  if candidates_GxV is not None:
    mask_NxV = candidates_GxV[group_N]
    in_cand = jnp.take_along_axis(mask_NxV, answer_NxA, -1)  # [N, A]: answer token is a value's first
    first = jnp.argmax(in_cand, -1)  # the first such position
    at = jnp.take_along_axis(logits, first[:, None, None], 1)[:, 0]  # [N, V]
    target = jnp.take_along_axis(answer_NxA, first[:, None], 1)[:, 0]
    t_logit = jnp.take_along_axis(at, target[:, None], 1)
    rank = 1 + jnp.sum(mask_NxV & (at > t_logit), -1)
    out["rank"] = jnp.where(in_cand.any(-1), rank, -1).astype(jnp.int32)
  return out


def row_metrics(params, delta, new, old, cfg: model.ModelConfig, candidates_GxV, group_N) -> dict:
  """new/old = (prompt [N, P], answer [N, A]) of the post-edit and pre-edit answers of N facts."""
  n = answer_scores(params, delta, *new, cfg, candidates_GxV, group_N)
  o = answer_scores(params, delta, *old, cfg)
  return {"exact_match": n["exact_match"], "exact_match_old": o["exact_match"],
          "logprob_new": n["logprob"], "logprob_old": o["logprob"],
          "efficacy": n["logprob"] > o["logprob"],
          "token_accuracy_teacher_forced": n["token_accuracy_teacher_forced"], "rank": n["rank"]}


def value_candidates(vocab, kinds: np.ndarray, relationships: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(candidates bool[G, V], group int32[N]): G distinct (kind, relationship) pairs, each the mask of the
  first tokens of every value the relationship can take (spelled as the corpus spells them)."""
  from data_gen.world.corpus import SUBJECT_OBJECT, spell_facts  # pylint: disable=g-import-not-at-top
  kinds = np.broadcast_to(np.asarray(kinds, np.int64), np.shape(relationships))
  pairs, group = np.unique(np.stack([kinds, np.asarray(relationships, np.int64)], 1), axis=0,
                           return_inverse=True)
  cand = np.zeros((max(len(pairs), 1), vocab.size), bool)
  for g, (kind, r) in enumerate(pairs):
    block = vocab.objects(int(r)) if kind == SUBJECT_OBJECT else vocab.nested_objects(int(r))
    values = np.arange(block.count)
    first = spell_facts(vocab, np.full(block.count, kind), np.zeros(block.count, np.int64),
                        np.full(block.count, r), values)[:, 3]
    cand[g, first] = True
  return cand, group.ravel().astype(np.int32)


def split_candidates(edit_set, dataset) -> dict:
  """{EvalSplit key: value_candidates of the split's facts} for every evaluation split of an edit set."""
  from data_gen.edit_sets.edits import TEMPLATE_TAG  # pylint: disable=g-import-not-at-top
  vocab = getattr(dataset, "vocab", dataset)
  return {f"{s.name}/{TEMPLATE_TAG[s.template]}": value_candidates(vocab, s.kind, s.relationship)
          for s in edit_set.eval}


# Ripple splits -> the split holding their second prerequisite (RippleEdits' rule: a ripple test counts
# only where the model knew, before the edit, everything the ripple follows from).
#   nested ripple (s, r'', nested value of the new object): the subject's old fact (s, r, o_old) and the new
#     object's nested fact (o_new, r', n) (remapped_obj_nested_obj_edges);
#   correlated ripple (s, r2, converted): the subject's old fact and its partner fact as it was
#     (same_subject_second_rel).
RIPPLE_PREREQUISITE = {"same_subj_nested_obj_edges": "remapped_obj_nested_obj_edges",
                       "same_subject_second_rel_converted": "same_subject_second_rel"}


def ripple_qualified(evals, before: dict) -> dict:
  """{ripple split key: bool[N]}: the rows whose prerequisites the unedited model answered (greedy exact
  match) before the edit. `before` = {split key: {metric: [N]}} of the unedited model. A prerequisite the
  edit set does not hold (split absent, or no row for that fact) counts as not known."""
  by_key = {s.key: s for s in evals}
  out = {}
  for s in evals:
    if s.name not in RIPPLE_PREREQUISITE:
      continue
    tag = s.key.split("/", 1)[1]
    edited = by_key.get(f"edited/{tag}")
    other = by_key.get(f"{RIPPLE_PREREQUISITE[s.name]}/{tag}")
    ok = np.zeros(len(s), bool)
    if edited is not None and other is not None:
      knew_old = np.asarray(before[edited.key]["exact_match_old"]) > 0.5
      knew_other = np.asarray(before[other.key]["exact_match"]) > 0.5
      for i in range(len(s)):
        j = np.flatnonzero(edited.head == s.head[i])
        if not j.size or not knew_old[j[0]]:
          continue
        head = edited.after[j[0]] if s.name == "same_subj_nested_obj_edges" else s.head[i]
        k = np.flatnonzero((other.head == head) & (other.relationship == s.relationship[i]))
        ok[i] = bool(k.size) and bool(knew_other[k[0]])
    out[s.key] = ok
  return out


def make_all_facts_scores(cfg: model.ModelConfig, chunk: int = 4096):
  """jitted `(params, delta, prompt [N, P], answer [N, A]) -> answer_scores of all N rows` in one call:
  the rows are padded to whole chunks and scored by `lax.map` over chunks inside the program (memory
  bounded by one chunk's logits [chunk, A, V]; one compile per N)."""

  def fn(params, delta, prompt_NxP, answer_NxA):
    N = prompt_NxP.shape[0]
    C = -(-N // chunk)
    pad = lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], C * chunk - N, 0)]).reshape(C, chunk, -1)  # noqa: E731
    out = jax.lax.map(lambda xs: answer_scores(params, delta, xs[0], xs[1], cfg), (pad(prompt_NxP), pad(answer_NxA)))
    return jax.tree.map(lambda x: x.reshape((C * chunk,) + x.shape[2:])[:N], out)

  return jax.jit(fn)
