"""The make_edits binary: layout, JSONL format, same seed same bytes, refusals that leave nothing behind."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from data_gen import dataset, edit_files
from data_gen.corpus import CorpusConfig
from data_gen.edits import EVAL, TRAIN, EditConfig, build_edit_set
from data_gen.graph import GraphConfig
from data_gen.text import WordTable, read_probe_file

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  d = tmp_path_factory.mktemp("data")
  ds = dataset.build(GraphConfig(num_subjects=400, num_relationships=3, num_objects=20), CorpusConfig(), 0)
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
    assert f"finetuning_data/{split}_sro.jsonl" in files and f"finetuning_data/{split}_sro_data.txt" in files
  for split in ("edited", "with_same_value", "with_same_rel", "reg_data", "same_edges_diff_rel"):
    assert f"ft_validations/{split}_sro.txt" in files
  assert {"finetuning_data/train.jsonl", "finetuning_data/val.jsonl", "finetuning_data/test.jsonl",
          "edit_set.json", "native/edits.npz"} <= files
  assert not [p for p in data_dir.iterdir() if p.name.startswith(".")], "temporary folder left behind"


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
    prompts, answers = read_probe_file(out / "ft_validations" / f"{split.stem}.txt", table)
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
