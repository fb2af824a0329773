"""Writes an `EditSet` in the original's fine-tuning layout, plus a native form that loads without parsing.

    finetuning_data/<split>_<form>.jsonl       training split as LitGPT instruction rows, each row repeated
                                               by its weight (consecutively, as the original)
    finetuning_data/<split>_<form>_data.txt    the same rows as full sentences (prompt answer.<|endoftext|>)
    finetuning_data/train.jsonl                every training row, shuffled with the seed
    finetuning_data/val.jsonl                  the evaluation rows of the edit itself (edited / censored):
                                               what to watch while fine-tuning
    finetuning_data/test.jsonl                 every evaluation split, in split order
    ft_validations/<split>_<form>.txt          evaluation split as `prompt<TAB>answer` (the after-edit answer)
    edit_set.json                              options, seeds, and per file: split, role, kind, template, sizes
    native/edits.npz                           every split's arrays (head, relationship, before, after, weight)

<form> is the probe form of the split's template: sro (the statement form, template "remapping"), qa,
refusal, qa_refusal. Unlike the original, training rows are not also written to ft_validations (the
original wrote both there under the same names, the evaluation files overwriting the training ones).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np

from data_gen.corpus import KIND_NAMES
from data_gen.edits import EVAL, TRAIN, EditConfig, EditSet, EditSplit
from data_gen.text import WordTable, write_probe_file
from data_gen.vocab import DOT, EOT

FINETUNING_DIR = "finetuning_data"
VALIDATIONS_DIR = "ft_validations"
MANIFEST = "edit_set.json"
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
  return {"file": path, "split": split.name, "role": split.role, "kind": KIND_NAMES[split.kind],
          "template": split.template, "facts": len(split), "rows": split.num_rows,
          "changed": int(split.changed().sum())}


def write_edit_set(directory, edit_set: EditSet, vocab, extra_metadata: dict | None = None) -> dict:
  """Writes every file of the layout above into `directory` (which must exist); returns the manifest."""
  directory = pathlib.Path(directory)
  for sub in (FINETUNING_DIR, VALIDATIONS_DIR, "native"):
    (directory / sub).mkdir(parents=True, exist_ok=True)
  table = WordTable(vocab)
  files, train_lines, val_parts, test_parts = [], [], [], []
  for split in edit_set.splits:
    if not len(split):
      continue  # an empty split writes no file; edit_set.json lists it with zero facts
    prompt, answer = split.tokens(vocab)
    rows = jsonl_rows(table, prompt, answer)
    if split.role == TRAIN:
      repeated = np.repeat(rows, split.weight, axis=0)
      path = f"{FINETUNING_DIR}/{split.stem}.jsonl"
      (directory / path).write_bytes(repeated.tobytes())
      text_path = f"{FINETUNING_DIR}/{split.stem}_data.txt"
      (directory / text_path).write_bytes(
          sentence_rows(table, np.repeat(prompt, split.weight, 0), np.repeat(answer, split.weight, 0)))
      train_lines += [line.tobytes() for line in repeated]
      files.append(_describe(split, path) | {"text": text_path})
    else:
      path = f"{VALIDATIONS_DIR}/{split.stem}.txt"
      write_probe_file(directory / path, table, prompt, answer)
      test_parts.append(rows.tobytes())
      if split.name in EDIT_SPLIT_NAMES:
        val_parts.append(rows.tobytes())
      files.append(_describe(split, path))
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
  """The original's sub-folder name for these options, then ours that differ from the default, then the seed."""
  c, default = config, EditConfig()
  clauses = []
  if c.single_ft_value:
    clauses.append("single")
    if c.single_ft_data_subset_frac < 1:
      clauses.append(f"subset{c.single_ft_data_subset_frac}")
  if c.relationship_ordinal > 0:
    clauses.append(f"rel{c.relationship_ordinal}")
  if not c.single_ft_value:  # the original named the override counts even when censoring ignored them
    clauses += [f"{c.num_ft_overrides}overrides", f"{c.num_repeats_per_override}overriderepeats"]
  optional = [(c.add_qa_data_to_finetuning, "wqadata"), (c.all_same_remapping, "allsame"),
              (c.remap_subject_nested_object_edges, "remapSNO"), (c.remap_object_nested_object_edges, "remapONO"),
              (c.get_correlated_tuples, "correlated"),
              (not c.distinct_values and not c.single_ft_value, "nodistinct")]
  clauses += [name for on, name in optional if on]
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
