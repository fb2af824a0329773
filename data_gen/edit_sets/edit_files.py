"""Writes an `EditSet` in the original's fine-tuning layout, plus a native form that loads without parsing.

    finetuning_data/<split>_<form>.jsonl       training split as LitGPT instruction rows, each row repeated
                                               by its weight (consecutively, as the original)
    finetuning_data/<split>_data.txt           the same rows as full sentences (prompt answer.<|endoftext|>);
                                               <split>_qa_data.txt for the rows add_qa_data_to_finetuning adds
    finetuning_data/train.jsonl                every training row, shuffled with the seed
    finetuning_data/val.jsonl                  the evaluation rows of the edit itself (edited / censored):
                                               what to watch while fine-tuning
    finetuning_data/test.jsonl                 every evaluation split, in split order
    ft_validations/<split>_<form>.txt          evaluation split as `prompt<TAB>answer` (the after-edit answer)
    ft_questions/<split>_default.txt           with a Q/A dataset: evaluation splits of subjects in the
    ft_questions/<split>_default_new.txt       pretraining question form, subjects with questions in
                                               pretraining / without (the folder always exists)
    metadata/<split>_relationship_graph_tokenized.txt   per training row (repeated by weight, as the
                                               original) the tab-terminated fields head, relationship, tail
                                               taught (the old tail for refusal rows, which teach none)
    edit_set.json                              options, seeds, and per file: split, role, kind, template,
                                               sizes, and which answer (after / before the edit) it holds
    native/edits.npz                           every split's arrays (head, relationship, before, after, weight)

<form> is the original's phrase type of the split's template: sro (the statement form, template
"remapping"), default (the question form "qa", and the pretraining question form in ft_questions), refusal,
qa_refusal. <split> is the split's name, as the original's (implicitly_remapped is written
implicitly_remapped_edges). Unlike the original, training rows are not also written to ft_validations (the
original wrote both there under the same names, the evaluation files overwriting the training ones).
Where an evaluation split deliberately answers otherwise than the original's file of the same name did
(`ORIGINAL_ANSWERED_BEFORE`: the implicitly remapped facts and the nested ripple hold the after-edit answer,
the original's files the answer before it), its edit_set.json entry says so; the native arrays keep both.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np

from data_gen.edit_sets import edits as edits_lib
from data_gen.edit_sets.edits import EVAL, REFUSED, TRAIN, EditConfig, EditSet, EditSplit, fact_vectors
from data_gen.export.text import WordTable, spell_token_fields, write_probe_file
from data_gen.world.corpus import KIND_NAMES, OBJECT_NESTED
from data_gen.world.probes import render_probe_tokens
from data_gen.world.templates import make_template
from data_gen.world.vocab import DOT, EOT, Vocab

FINETUNING_DIR = "finetuning_data"
VALIDATIONS_DIR = "ft_validations"
QUESTIONS_DIR = "ft_questions"
METADATA_DIR = "metadata"
MANIFEST = "edit_set.json"
# The original's phrase type of each fine-tuning template (its file-name tag).
FILE_TAG = {"remapping": "sro", "qa": "default", "refusal": "refusal", "qa_refusal": "qa_refusal"}
FILE_SPLIT_NAME = {"implicitly_remapped": "implicitly_remapped_edges"}
ORIGINAL_ANSWERED_BEFORE = ("implicitly_remapped", "same_subj_nested_obj_edges")
NATIVE_ARRAYS = "native/edits.npz"
EDIT_SPLIT_NAMES = ("edited", "censored")  # the splits that hold the edit itself (val.jsonl)
_SALT_TRAIN_ORDER = 0x510E527F
_FORM_CLAUSE = {"remapping": "ftremapping", "qa": "ftqa", "refusal": "ftrefusal", "qa_refusal": "ftqarefusal"}


def _const(n: int, text: bytes) -> np.ndarray:
  return np.broadcast_to(np.frombuffer(text, np.uint8), (n, len(text)))


def jsonl_rows(table: WordTable, prompt_NxP: np.ndarray, answer_NxA: np.ndarray) -> np.ndarray:
  """uint8[N, W]: `{"instruction": prompt, "input": "", "output": answer}` + newline per row.

  The spellings hold only digits, letters, spaces, "|", "<", ">" and ".", none of which JSON escapes, so
  the rows equal json.dumps output byte for byte.
  """
  n = len(prompt_NxP)
  parts = [_const(n, b'{"instruction": "'), table.fixed_width_rows(prompt_NxP),
           _const(n, b'", "input": "", "output": "'), table.fixed_width_rows(answer_NxA),
           _const(n, b'"}\n')]
  return np.concatenate(parts, axis=1)


def sentence_rows(table: WordTable, prompt_NxP: np.ndarray, answer_NxA: np.ndarray) -> bytes:
  n = len(prompt_NxP)
  end = np.tile(np.array([[DOT, EOT]], np.int32), (n, 1))
  return table.join(np.concatenate([prompt_NxP, answer_NxA, end], axis=1), newline=True)


def _describe(split: EditSplit, path: str) -> dict:
  out = {"file": path, "split": split.name, "role": split.role, "kind": KIND_NAMES[split.kind],
         "template": split.template, "facts": len(split), "rows": split.num_rows,
         "changed": int(split.changed().sum()), "answer": "after"}
  if split.role == EVAL and split.name in ORIGINAL_ANSWERED_BEFORE and split.changed().any():
    out["original_answer"] = "before"  # the original's file of this name held the answer before the edit
  return out


def file_stem(split: EditSplit) -> str:
  """`<split>_<form>` as the original named its files, e.g. "implicitly_remapped_edges_sro"."""
  return f"{FILE_SPLIT_NAME.get(split.name, split.name)}_{FILE_TAG[split.template]}"


def write_graph_rows(path: pathlib.Path, vocab: Vocab, split: EditSplit) -> None:
  """The original's metadata/<split>_relationship_graph_tokenized.txt: one line per training row."""
  index = np.repeat(np.arange(len(split)), split.weight)
  tail = np.where(split.after == REFUSED, split.before, split.after)[index]
  facts = fact_vectors(vocab, split.kind, split.head[index], split.relationship[index], tail)
  path.write_bytes(spell_token_fields(vocab, [facts[:, 0:2], facts[:, 2:3], facts[:, 3:5]]))


def write_question_probes(directory: pathlib.Path, table: WordTable, vocab: Vocab, split: EditSplit,
                          qa_subject_S: np.ndarray) -> list[dict]:
  """The split in the pretraining question form, by whether its subject had questions in pretraining."""
  template = make_template("question", vocab)
  asked = qa_subject_S[split.head]
  files = []
  for suffix, rows in (("", asked), ("_new", ~asked)):
    facts = fact_vectors(vocab, split.kind, split.head[rows], split.relationship[rows], split.after[rows])
    prompt, answer = render_probe_tokens(template, template.probes[0], facts, vocab, seed=0)
    path = f"{QUESTIONS_DIR}/{FILE_SPLIT_NAME.get(split.name, split.name)}_default{suffix}.txt"
    write_probe_file(directory / path, table, prompt, answer)
    files.append(_describe(split, path) | {"template": "question", "facts": int(rows.sum()),
                                           "rows": int(rows.sum()), "changed": int(split.changed()[rows].sum())})
  return files


def write_edit_set(directory, edit_set: EditSet, vocab, extra_metadata: dict | None = None,
                   qa_subject_S: np.ndarray | None = None) -> dict:
  """Writes every file of the layout above into `directory` (which must exist); returns the manifest.

  qa_subject_S: the dataset's subjects with questions in pretraining, when it has Q/A (ft_questions)."""
  directory = pathlib.Path(directory)
  for sub in (FINETUNING_DIR, VALIDATIONS_DIR, QUESTIONS_DIR, METADATA_DIR, "native"):
    (directory / sub).mkdir(parents=True, exist_ok=True)
  table = WordTable(vocab)
  main_form = edit_set.config.finetuning_phrase_creator
  files, train_lines, val_parts, test_parts = [], [], [], []
  for split in edit_set.splits:
    if not len(split):
      continue  # an empty split writes no file; edit_set.json lists it with zero facts
    prompt, answer = split.tokens(vocab)
    rows = jsonl_rows(table, prompt, answer)
    if split.role == TRAIN:
      repeated = np.repeat(rows, split.weight, axis=0)
      path = f"{FINETUNING_DIR}/{file_stem(split)}.jsonl"
      (directory / path).write_bytes(repeated.tobytes())
      added_qa = split.template not in (main_form, edits_lib.ANSWERING_TEMPLATE[main_form])
      text_path = f"{FINETUNING_DIR}/{split.name}{'_qa' if added_qa else ''}_data.txt"
      (directory / text_path).write_bytes(
          sentence_rows(table, np.repeat(prompt, split.weight, 0), np.repeat(answer, split.weight, 0)))
      entry = _describe(split, path) | {"text": text_path}
      if not added_qa:  # the same facts whatever the form: one graph file per split
        entry["graph"] = f"{METADATA_DIR}/{split.name}_relationship_graph_tokenized.txt"
        write_graph_rows(directory / entry["graph"], vocab, split)
      train_lines += [line.tobytes() for line in repeated]
      files.append(entry)
    else:
      path = f"{VALIDATIONS_DIR}/{file_stem(split)}.txt"
      write_probe_file(directory / path, table, prompt, answer)
      test_parts.append(rows.tobytes())
      if split.name in EDIT_SPLIT_NAMES:
        val_parts.append(rows.tobytes())
      files.append(_describe(split, path))
      # Question forms of subjects' facts only: an object-nested head has no Q/A exposure, and a refusal
      # teaches no value to ask for.
      asks = split.template in (main_form, edits_lib.ANSWERING_TEMPLATE[main_form])
      if (qa_subject_S is not None and asks and split.kind != OBJECT_NESTED
          and not (split.after == REFUSED).any()):
        files += write_question_probes(directory, table, vocab, split, qa_subject_S)
  order = np.random.default_rng([edit_set.seed, _SALT_TRAIN_ORDER]).permutation(len(train_lines))
  (directory / FINETUNING_DIR / "train.jsonl").write_bytes(b"".join(train_lines[i] for i in order))
  (directory / FINETUNING_DIR / "val.jsonl").write_bytes(b"".join(val_parts))
  (directory / FINETUNING_DIR / "test.jsonl").write_bytes(b"".join(test_parts))

  np.savez(directory / NATIVE_ARRAYS, **{f"{s.role}__{s.stem}__{k}": v
                                         for s in edit_set.splits for k, v in s.arrays().items()})
  manifest = {"seed": edit_set.seed, "config": dataclasses.asdict(edit_set.config),
              "splits": [{"name": s.name, "role": s.role, "kind": s.kind, "template": s.template}
                         for s in edit_set.splits],
              "files": files, "train_rows": len(train_lines), **(extra_metadata or {})}
  (directory / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
  return manifest


def load_edit_set(directory) -> EditSet:
  """The `EditSet` that `write_edit_set` wrote into `directory`, from its native arrays."""
  directory = pathlib.Path(directory)
  manifest = json.loads((directory / MANIFEST).read_text())
  splits = []
  with np.load(directory / NATIVE_ARRAYS) as arrays:
    for s in manifest["splits"]:
      stub = EditSplit(s["name"], s["role"], s["kind"], s["template"], *[np.zeros(0, np.int32)] * 5)
      a = {k: arrays[f"{s['role']}__{stub.stem}__{k}"] for k in stub.arrays()}
      splits.append(dataclasses.replace(stub, head=a["head"], relationship=a["relationship"],
                                        before=a["before"], after=a["after"], weight=a["weight"]))
  return EditSet(config=EditConfig(**manifest["config"]), seed=manifest["seed"], splits=tuple(splits))


def folder_name(config: EditConfig, seed: int) -> str:
  """The original's sub-folder name for these options (its clauses, in its order), then ours that differ
  from the default, then the seed: e.g. ftremapping_single_subset0.5_1overrides_10overriderepeats_seed0."""
  c, default = config, EditConfig()
  clauses = []
  if c.single_ft_value:
    clauses.append("single")
    if c.single_ft_data_subset_frac < 1:
      clauses.append(f"subset{c.single_ft_data_subset_frac}")
  if c.relationship_ordinal > 0:
    clauses.append(f"rel{c.relationship_ordinal}")
  if c.num_ft_overrides > 0:  # the original named them even when censoring ignores them
    clauses += [f"{c.num_ft_overrides}overrides", f"{c.num_repeats_per_override}overriderepeats"]
  clauses += [name for on, name in ((c.add_qa_data_to_finetuning, "wqadata"), (c.all_same_remapping, "allsame"),
                                    (c.remap_subject_nested_object_edges, "remapSNO"),
                                    (c.remap_object_nested_object_edges, "remapONO")) if on]
  # Ours, after the original's clauses.
  clauses += [name for on, name in ((c.get_correlated_tuples, "correlated"),
                                    (not c.distinct_values and not c.single_ft_value, "nodistinct")) if on]
  if c.single_ft_value:
    clauses += [f"heldout{c.censor_heldout_frac}"] if c.censor_heldout_frac != default.censor_heldout_frac else []
    clauses += [f"value{c.censor_value}"] if c.censor_value != default.censor_value else []
  for field, short in (("same_value_cap", "samevaluecap"), ("same_rel_cap_per_edit", "samerelcap"),
                       ("reg_rows_per_edit_row", "regratio"), ("eval_cap", "evalcap")):
    if getattr(c, field) != getattr(default, field):
      clauses.append(f"{short}{getattr(c, field)}")
  clauses.append(f"seed{seed}")
  return f"{_FORM_CLAUSE[c.finetuning_phrase_creator]}_" + "_".join(clauses)


__all__ = ["write_edit_set", "load_edit_set", "jsonl_rows", "EVAL", "TRAIN"]
