"""The make_edits binary: layout, JSONL format, same seed same bytes, refusals that leave nothing behind."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from data_gen.edit_sets import edit_files
from data_gen.edit_sets.edits import EVAL, TRAIN, EditConfig, build_edit_set
from data_gen.export.text import WordTable, read_probe_file
from data_gen.world import dataset
from data_gen.world.corpus import CorpusConfig
from data_gen.world.graph import GraphConfig
from data_gen.world.vocab import AA, OO, QQ

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  d = tmp_path_factory.mktemp("data")
  ds = dataset.build(GraphConfig(num_subjects=400, num_relationships=3, num_objects=20), CorpusConfig(), 0)
  ds.save_native(d)
  return d


@pytest.fixture(scope="module")
def qa_data_dir(tmp_path_factory):
  """A dataset with Q/A in pretraining (questions_frac > 0): edit sets add ft_questions files."""
  d = tmp_path_factory.mktemp("qa_data")
  ds = dataset.build(GraphConfig(num_subjects=300, num_relationships=3, num_objects=20),
                     CorpusConfig(questions_frac=0.5), 0)
  ds.save_native(d)
  return d


def run(*args):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
  return subprocess.run([sys.executable, "-m", "data_gen.make_edits", *args], capture_output=True, text=True,
                        env=env, cwd=ROOT, timeout=120)


def tree(path: pathlib.Path) -> dict[str, bytes]:
  return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def written(data_dir):
  args = [f"--data_dir={data_dir}", "--num_ft_overrides=3", "--num_repeats_per_override=20", "--seed=5"]
  first = run(*args)
  assert first.returncode == 0, first.stderr
  out = data_dir / "ftremapping_3overrides_20overriderepeats_seed5"
  assert json.loads(first.stdout.strip().splitlines()[-1])["output_dir"] == str(out)
  again = run(*args, f"--output_dir={data_dir / 'again'}")
  assert again.returncode == 0, again.stderr
  return out, data_dir / "again"


def test_writes_the_original_layout(written, data_dir):
  out, _ = written
  files = set(tree(out))
  for split in ("edited", "with_same_value", "with_same_rel", "reg_data"):
    assert f"finetuning_data/{split}_sro.jsonl" in files and f"finetuning_data/{split}_data.txt" in files
    assert f"metadata/{split}_relationship_graph_tokenized.txt" in files
  for split in ("edited", "with_same_value", "with_same_rel", "reg_data", "same_edges_diff_rel"):
    assert f"ft_validations/{split}_sro.txt" in files
  assert {"finetuning_data/train.jsonl", "finetuning_data/val.jsonl", "finetuning_data/test.jsonl",
          "edit_set.json", "native/edits.npz"} <= files
  assert (out / "ft_questions").is_dir() and not list((out / "ft_questions").iterdir())  # no Q/A dataset
  assert not [p for p in data_dir.iterdir() if p.name.startswith(".")], "temporary folder left behind"


@pytest.mark.parametrize("options,name", [
    (EditConfig(single_ft_value=True, single_ft_data_subset_frac=0.5, num_repeats_per_override=10),
     "ftremapping_single_subset0.5_1overrides_10overriderepeats_seed0"),
    (EditConfig(num_ft_overrides=2, num_repeats_per_override=2, all_same_remapping=True),
     "ftremapping_2overrides_2overriderepeats_allsame_seed0"),
    (EditConfig(relationship_ordinal=1, finetuning_phrase_creator="qa", add_qa_data_to_finetuning=False,
                remap_subject_nested_object_edges=True), "ftqa_rel1_1overrides_250overriderepeats_remapSNO_seed0"),
    (EditConfig(finetuning_phrase_creator="refusal", add_qa_data_to_finetuning=True, distinct_values=False),
     "ftrefusal_1overrides_250overriderepeats_wqadata_nodistinct_seed0"),
])
def test_folder_names_are_the_originals_with_our_options_and_seed_after(options, name):
  assert edit_files.folder_name(options, 0) == name
  # Runs that differ only in repeats no longer share a folder (the censoring name used to omit them).
  other = dataclasses.replace(options, num_repeats_per_override=options.num_repeats_per_override + 1)
  assert edit_files.folder_name(other, 0) != name


def test_censoring_files_carry_the_original_names_and_state_their_answer(data_dir, qa_data_dir):
  for d in (data_dir, qa_data_dir):
    result = run(f"--data_dir={d}", "--single_ft_value", "--num_repeats_per_override=10",
                 "--finetuning_phrase_creator=qa")
    assert result.returncode == 0, result.stderr
  out = data_dir / "ftqa_single_1overrides_10overriderepeats_seed0"
  manifest = json.loads((out / "edit_set.json").read_text())
  entries = {f["file"]: f for f in manifest["files"]}
  implicit = entries["ft_validations/implicitly_remapped_edges_default.txt"]
  assert implicit["split"] == "implicitly_remapped" and implicit["answer"] == "after"
  assert implicit["original_answer"] == "before"  # the original's file held the facts before censoring
  assert "original_answer" not in entries["ft_validations/reg_data_default.txt"]
  assert {"finetuning_data/censored_default.jsonl", "finetuning_data/censored_data.txt",
          "metadata/censored_relationship_graph_tokenized.txt", "metadata/reg_data_relationship_graph_tokenized.txt",
          } <= set(tree(out))
  ds = dataset.load(data_dir)
  es = edit_files.load_edit_set(out)
  table = WordTable(ds.vocab)
  prompts, answers = read_probe_file(out / "ft_validations/implicitly_remapped_edges_default.txt", table)
  split = es.get(EVAL, "implicitly_remapped")
  assert answers == split.tokens(ds.vocab)[1].tolist() and len(prompts) == len(split)
  assert all(a[0] == OO and prompt[-1] == AA for prompt, a in zip(prompts, answers))  # the original's split
  # A Q/A dataset adds the evaluation splits in the pretraining question form, by Q/A exposure.
  qa_out = qa_data_dir / "ftqa_single_1overrides_10overriderepeats_seed0"
  qa_ds = dataset.load(qa_data_dir)
  qa_es = edit_files.load_edit_set(qa_out)
  for split in qa_es.eval:
    stem = edit_files.FILE_SPLIT_NAME.get(split.name, split.name)
    asked, new = (read_probe_file(qa_out / f"ft_questions/{stem}_default{s}.txt", WordTable(qa_ds.vocab))
                  for s in ("", "_new"))
    assert len(asked[0]) == qa_ds.graph.qa_subject_S[split.head].sum() and len(asked[0]) + len(new[0]) == len(split)
    assert all(p[0] == QQ for p in asked[0] + new[0])


def test_training_graph_files_hold_each_row_as_the_original(written, data_dir):
  out, _ = written
  ds = dataset.load(data_dir)
  es = edit_files.load_edit_set(out)
  words = ds.vocab.words()
  for split in es.train:
    lines = (out / f"metadata/{split.name}_relationship_graph_tokenized.txt").read_text().splitlines()
    assert len(lines) == split.num_rows
    expected = [f"{words[ds.vocab.subjects.start + h]}\t{words[ds.vocab.relationships.start + r]}\t"
                f"{words[ds.vocab.objects(r).start + a]}\t"
                for h, r, a, w in zip(split.head, split.relationship, split.after, split.weight) for _ in range(w)]
    assert lines == expected


def test_files_hold_the_edit_set_of_the_library(written, data_dir):
  out, _ = written
  ds = dataset.load(data_dir)
  es = build_edit_set(ds.graph, EditConfig(num_ft_overrides=3, num_repeats_per_override=20), 5)
  loaded = edit_files.load_edit_set(out)
  for a, b in zip(es.splits, loaded.splits, strict=True):
    assert (a.name, a.role, a.kind, a.template) == (b.name, b.role, b.kind, b.template)
    for k, v in a.arrays().items():
      np.testing.assert_array_equal(v, b.arrays()[k])
  table = WordTable(ds.vocab)
  for split in es.eval:
    prompts, answers = read_probe_file(out / "ft_validations" / f"{edit_files.file_stem(split)}.txt", table)
    prompt, answer = split.tokens(ds.vocab)
    assert prompts == prompt.tolist() and answers == answer.tolist()
  edited = es.get(TRAIN, "edited")
  lines = (out / "finetuning_data" / "edited_sro.jsonl").read_text().splitlines()
  assert len(lines) == 3 * 20
  train_lines = (out / "finetuning_data" / "train.jsonl").read_text().splitlines()
  assert len(train_lines) == sum(s.num_rows for s in es.train)
  assert sorted(train_lines) == sorted(sum(((out / "finetuning_data" / f"{s.stem}.jsonl").read_text()
                                            .splitlines() for s in es.train), []))
  val_lines = (out / "finetuning_data" / "val.jsonl").read_text().splitlines()
  assert len(val_lines) == len(es.get(EVAL, "edited"))
  test_lines = (out / "finetuning_data" / "test.jsonl").read_text().splitlines()
  assert len(test_lines) == sum(len(s) for s in es.eval)
  prompt, answer = edited.tokens(ds.vocab)
  assert lines[0] == json.dumps({"instruction": table.join(prompt[:1], newline=False).decode(), "input": "",
                                 "output": table.join(answer[:1], newline=False).decode()})


def test_every_jsonl_line_is_a_litgpt_instruction_row(written):
  out, _ = written
  for path in (out / "finetuning_data").glob("*.jsonl"):
    for line in path.read_text().splitlines():
      row = json.loads(line)
      assert list(row) == ["instruction", "input", "output"] and row["input"] == ""
      assert json.dumps(row) == line


def test_same_seed_same_bytes(written):
  out, again = written
  assert tree(out) == tree(again)


@pytest.mark.parametrize("args,flag", [
    (["--relationship_ordinal=3"], "relationship_ordinal"),
    (["--num_ft_overrides=500", "--nodistinct_values"], "num_ft_overrides"),  # more edits than facts
    (["--num_ft_overrides=11"], "num_ft_overrides"),  # more new values than exist
    (["--remap_subject_nested_object_edges"], "remap_subject_nested_object_edges"),
    (["--single_ft_value", "--censor_heldout_frac=0"], "censor_heldout_frac"),
    (["--finetuning_phrase_creator=bogus"], "finetuning_phrase_creator"),
])
def test_bad_input_is_refused_in_one_line_with_nothing_written(data_dir, args, flag):
  before = sorted(p.name for p in data_dir.iterdir())
  result = run(f"--data_dir={data_dir}", *args)
  assert result.returncode != 0
  lines = [line for line in result.stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and f"--{flag}" in lines[0], result.stderr
  assert sorted(p.name for p in data_dir.iterdir()) == before


def test_missing_dataset_is_refused(tmp_path):
  result = run(f"--data_dir={tmp_path / 'nothing'}")
  assert result.returncode != 0 and "--data_dir" in result.stderr
  assert not (tmp_path / "nothing").exists()


def test_nested_ripple_files_state_that_the_original_held_the_old_answer(tmp_path):
  ds = dataset.build(GraphConfig(num_subjects=200, num_relationships=2, num_objects=8, num_nested_objects=2),
                     CorpusConfig(), 0)
  es = build_edit_set(ds.graph, EditConfig(num_ft_overrides=2, num_repeats_per_override=3), 1)
  manifest = edit_files.write_edit_set(tmp_path, es, ds.vocab)
  entries = {f["file"]: f for f in manifest["files"]}
  ripple = entries["ft_validations/same_subj_nested_obj_edges_sro.txt"]
  assert ripple["changed"] and ripple["answer"] == "after" and ripple["original_answer"] == "before"
  assert "original_answer" not in entries["ft_validations/remapped_obj_nested_obj_edges_sro.txt"]
  assert "original_answer" not in entries["ft_validations/edited_sro.txt"]
