r"""Writes edit (fine-tuning / unlearning) data for a dataset written by `data_gen.generate`.

  python -m data_gen.make_edits --data_dir=runs/data --num_ft_overrides=10 --seed=0

Flags are the original's fine-tuning script's long options (with underscores) plus --seed, --output_dir
and the caps the original hard-coded. Output goes to --output_dir, or else to a sub-folder of --data_dir
named by the options as the original named it (e.g. ftremapping_10overrides_250overriderepeats_seed0,
ftremapping_single_subset0.5_1overrides_250overriderepeats_seed0; any non-default option of ours and the
seed are appended). The folder appears only when complete; an invalid
option prints one line `error: --option: ...` and exits 1 with nothing written. What each split holds:
`data_gen/edit_sets/edits.py`; the file layout: `data_gen/edit_sets/edit_files.py`.
"""

from __future__ import annotations

import json
import pathlib
import time

from absl import flags

from data_gen.common import atomic, cli
from data_gen.common.errors import OptionError, require
from data_gen.edit_sets import edit_files
from data_gen.edit_sets.edits import EditConfig, build_edit_set
from data_gen.world import dataset
from data_gen.world.templates import FINETUNING_TEMPLATES

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Dataset folder written by `python -m data_gen.generate`.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None,
                                  "Folder to create; default: a sub-folder of --data_dir named by the options.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing output folder (atomically).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of every random choice: same seed and options, same bytes.")
_RELATIONSHIP = flags.DEFINE_integer("relationship_ordinal", 0, "Relationship whose facts are edited.")
_NUM_OVERRIDES = flags.DEFINE_integer("num_ft_overrides", 1, "Number n of facts to remap (>= 1).")
_REPEATS = flags.DEFINE_integer("num_repeats_per_override", 250,
                                "Times each edited fact is repeated in training (>= 1).")
_PHRASE_CREATOR = flags.DEFINE_enum(
    "finetuning_phrase_creator", "remapping", list(FINETUNING_TEMPLATES),
    "Form of the edit rows: remapping (statement form, files tagged sro), qa (the new question form), "
    "refusal, qa_refusal (the answer replaced by a refusal). Rows that keep their answer use the "
    "answering counterpart (refusal -> statement form, qa_refusal -> qa).")
_SINGLE = flags.DEFINE_bool(
    "single_ft_value", False, "Censoring: facts of the relationship move to one value (--censor_value); "
    "held-out subjects (--censor_heldout_frac) stay out of training and form the implicitly_remapped "
    "split.")
_SUBSET = flags.DEFINE_float("single_ft_data_subset_frac", 1.0,
                             "Censoring: share of the non-held-out subjects whose fact is censored. In (0, 1].")
_HELDOUT = flags.DEFINE_float(
    "censor_heldout_frac", 0.1, "Censoring: share of subjects (objects for object-nested edits) held out "
    "of training to test generalisation; must hold out at least one (the original's default held out "
    "none).")
_CENSOR_VALUE = flags.DEFINE_integer("censor_value", 0, "Censoring: the value facts move to (original: 0).")
_ALL_SAME = flags.DEFINE_bool("all_same_remapping", False,
                              "The n edited facts share one value and all move to one new value.")
_DISTINCT = flags.DEFINE_bool(
    "distinct_values", True, "Edited facts have distinct old values and move to distinct new values "
    "(n <= values / 2), as the original. --nodistinct_values: any n facts, each new value uniform among "
    "the other values.")
_CORRELATED = flags.DEFINE_bool(
    "get_correlated_tuples", False, "Edit only facts whose relationship-0 and -1 objects agree (needs a "
    "--correlated_pair dataset and --relationship_ordinal 0 or 1).")
_REMAP_SNO = flags.DEFINE_bool("remap_subject_nested_object_edges", False,
                               "Edit subject-nested facts (s, r'', n) instead of subject-object facts.")
_REMAP_ONO = flags.DEFINE_bool("remap_object_nested_object_edges", False,
                               "Edit object-nested facts (o, r', n) instead of subject-object facts.")
_ADD_QA = flags.DEFINE_bool(
    "add_qa_data_to_finetuning", False, "Also train the edit rows in the question form (qa, or qa_refusal "
    "for refusal), and write every evaluation split in that form too.")
_SAME_VALUE_CAP = flags.DEFINE_integer(
    "same_value_cap", 150, "with_same_value: training facts per edit sharing its new value (as many more "
    "are tested).")
_SAME_REL_CAP = flags.DEFINE_integer(
    "same_rel_cap_per_edit", 500, "with_same_rel: training facts of the relationship per edit (as many "
    "more are tested).")
_REG_RATIO = flags.DEFINE_float("reg_rows_per_edit_row", 1.0,
                                "reg_data: unrelated training rows per (repeated) edit row.")
_EVAL_CAP = flags.DEFINE_integer("eval_cap", 10_000,
                                 "Cap of the sampled evaluation splits (reg_data, implicitly_remapped, ...).")

def config_from_flags() -> EditConfig:
  return EditConfig(
      relationship_ordinal=_RELATIONSHIP.value, num_ft_overrides=_NUM_OVERRIDES.value,
      num_repeats_per_override=_REPEATS.value, finetuning_phrase_creator=_PHRASE_CREATOR.value,
      single_ft_value=_SINGLE.value, single_ft_data_subset_frac=_SUBSET.value,
      all_same_remapping=_ALL_SAME.value, get_correlated_tuples=_CORRELATED.value,
      remap_subject_nested_object_edges=_REMAP_SNO.value, remap_object_nested_object_edges=_REMAP_ONO.value,
      add_qa_data_to_finetuning=_ADD_QA.value, distinct_values=_DISTINCT.value,
      censor_heldout_frac=_HELDOUT.value, censor_value=_CENSOR_VALUE.value,
      same_value_cap=_SAME_VALUE_CAP.value, same_rel_cap_per_edit=_SAME_REL_CAP.value,
      reg_rows_per_edit_row=_REG_RATIO.value, eval_cap=_EVAL_CAP.value)


def load_dataset(path: str | None) -> dataset.Dataset:
  require(path is not None, "data_dir", "is required (a folder written by python -m data_gen.generate)")
  try:
    return dataset.load(path)
  except FileNotFoundError as e:
    raise OptionError("data_dir", f"{path} holds no dataset ({e.filename} is missing; write one with "
                      "python -m data_gen.generate)") from e
  except (ValueError, KeyError, TypeError) as e:
    raise OptionError("data_dir", f"{path} holds an unreadable dataset ({e})") from e


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise OptionError("data_dir", f"unexpected positional arguments {argv[1:]}")
  require(_SEED.value >= 0, "seed", f"must be an integer >= 0, got {_SEED.value}")
  ds = load_dataset(_DATA_DIR.value)
  config = config_from_flags()
  start = time.perf_counter()
  # Built (and so validated) before any folder exists: a refused option leaves nothing behind.
  edit_set = build_edit_set(ds.graph, config, _SEED.value)
  build_seconds = time.perf_counter() - start
  out = pathlib.Path(_OUTPUT_DIR.value or pathlib.Path(_DATA_DIR.value, edit_files.folder_name(config, _SEED.value)))
  with atomic.atomic_directory(out, _OVERWRITE.value) as tmp:
    manifest = edit_files.write_edit_set(tmp, edit_set, ds.vocab,
                                         {"data_dir": str(_DATA_DIR.value), "dataset_seed": ds.seed},
                                         qa_subject_S=ds.graph.qa_subject_S if ds.tables.layout.qa else None)
  print(json.dumps({"output_dir": str(out), "train_rows": manifest["train_rows"],
                    "splits": {f["file"]: f["facts"] for f in manifest["files"]},
                    "build_seconds": round(build_seconds, 3),
                    "seconds": round(time.perf_counter() - start, 3)}))


if __name__ == "__main__":
  cli.run(main)
