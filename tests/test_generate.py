"""The generator binary end to end: layout, determinism, tokenizer parity, refusals, graph reuse."""

import hashlib
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from data_gen import dataset, text, writer
from data_gen.graph import GraphConfig

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMALL = ["--subjects=40", "--relationships=3", "--objects=8", "--repeats=3", "--shards=2"]


def generate(out, *args, check=True):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-m", "data_gen.generate", f"--output_dir={out}", *args],
                        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
  if check:
    assert proc.returncode == 0, proc.stderr
  return proc


def tree_digest(path):
  h = hashlib.sha256()
  for p in sorted(pathlib.Path(path).rglob("*")):
    if p.is_file():
      h.update(str(p.relative_to(path)).encode())
      h.update(p.read_bytes())
  return h.hexdigest()


@pytest.fixture(scope="module")
def rich(tmp_path_factory):
  """One dataset exercising nesting, Q/A subjects and inversion."""
  out = tmp_path_factory.mktemp("gen") / "rich"
  generate(out, *SMALL, "--num_nested_objects=2", "--questions_entity_frac=0.5", "--inversion_frac=0.3",
           "--seed=3")
  return out


def test_layout_and_metadata(rich):
  for name in ("train/shard_00000.txt", "train/shard_00001.txt", "validations/sro.txt", "validations/rso.txt",
               "validations/sro_subject_nested.txt", "validations/sro_object_nested.txt",
               "validations/question_trained.txt", "validations/question_heldout.txt",
               "metadata/relationship_graph.txt", "metadata/relationship_graph_tokenized.txt",
               "metadata/remapping.json", "metadata/metadata.json", "metadata/args.json", "tokenizer.json",
               "tokenizer_config.json", "native/graph.npz", "native/dataset.json"):
    assert (rich / name).is_file(), name
  meta = json.loads((rich / "metadata/metadata.json").read_text())
  lines = sum(len(p.read_text().splitlines()) for p in (rich / "train").glob("*.txt"))
  assert lines == meta["num_documents"] == 3 * (40 * 3 * 2 + 3 * 8)
  args = json.loads((rich / "metadata/args.json").read_text())
  assert args["subjects"] == 40 and args["seed"] == 3
  ds = dataset.load(rich)
  rows = (rich / "metadata/relationship_graph.txt").read_text().splitlines()
  assert len(rows) == 40 * 3
  s, r, o, alt, nested = rows[5].split()
  assert int(o) == ds.graph.objects_SxR[int(s), int(r)] and alt == "None"
  assert int(nested) == ds.graph.subject_nested_SxR()[int(s), int(r)]
  assert not [p for p in rich.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_same_seed_same_bytes_and_other_seed_other_bytes(tmp_path):
  generate(tmp_path / "a", *SMALL, "--seed=11", "--minority_position_entity_frac=0.2")
  generate(tmp_path / "b", *SMALL, "--seed=11", "--minority_position_entity_frac=0.2")
  generate(tmp_path / "c", *SMALL, "--seed=12", "--minority_position_entity_frac=0.2")
  assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b") != tree_digest(tmp_path / "c")
  names = sorted(p.name for p in (tmp_path / "a/validations").iterdir())
  assert names == ["sro.txt", "sro_dissenting_majority.txt", "sro_dissenting_minority.txt"]


def test_hf_tokenizer_encodes_corpus_and_probes_to_the_generator_ids(rich):
  tokenizers = pytest.importorskip("tokenizers")
  tok = tokenizers.Tokenizer.from_file(str(rich / "tokenizer.json"))
  ds = dataset.load(rich)
  docs, lengths = ds.documents(0, ds.num_documents)
  lines = [l for p in sorted((rich / "train").glob("*.txt")) for l in p.read_text().splitlines()]
  assert len(lines) == len(docs)
  encoded = tok.encode_batch(lines)
  for enc, row, n in zip(encoded, docs, lengths):
    assert enc.ids == row[:n].tolist()
  for name, probe in ds.probes().items():
    rows = (rich / "validations" / f"{name}.txt").read_text().splitlines()
    assert len(rows) == len(probe)
    prompts, answers = zip(*(r.split("\t") for r in rows))
    assert [e.ids for e in tok.encode_batch(list(prompts))] == probe.prompt_NxP.tolist()
    assert [e.ids for e in tok.encode_batch(list(answers))] == probe.answer_NxA.tolist()
  config = json.loads((rich / "tokenizer_config.json").read_text())
  assert tok.token_to_id(config["eos_token"]) == 0 and tok.get_vocab_size() == ds.vocab.size


def test_written_corpus_reads_back_as_the_sampled_stream(rich):
  ds = dataset.load(rich)
  stream = text.read_token_stream(rich, ds.vocab)
  docs, lengths = ds.documents(0, ds.num_documents)
  np.testing.assert_array_equal(stream, np.concatenate([d[:n] for d, n in zip(docs, lengths)]))


def test_graph_path_reuses_a_graph(rich, tmp_path):
  generate(tmp_path / "from_dir", "--graph_path", str(rich), "--repeats=2", "--seed=3", "--write_graph_only")
  again = dataset.load(tmp_path / "from_dir")
  assert again.graph.equals(dataset.load(rich).graph)
  assert not (tmp_path / "from_dir/train").exists() and not (tmp_path / "from_dir/validations").exists()
  generate(tmp_path / "from_txt", "--graph_path", str(rich / "metadata/relationship_graph.txt"), "--objects=8",
           "--seed=3", "--repeats=2", "--validation_data_only")
  from_txt = dataset.load(tmp_path / "from_txt").graph
  original = dataset.load(rich).graph
  np.testing.assert_array_equal(from_txt.objects_SxR, original.objects_SxR)
  np.testing.assert_array_equal(from_txt.subject_nested_SxR(), original.subject_nested_SxR())
  assert (tmp_path / "from_txt/validations/sro.txt").exists() and not (tmp_path / "from_txt/train").exists()


def test_graph_text_round_trip_keeps_the_nested_map_balanced(tmp_path):
  ds = dataset.build(GraphConfig(num_subjects=3, num_relationships=2, num_objects=12, num_nested_objects=3),
                     dataset.CorpusConfig(), 0)
  writer.write_graph_text(tmp_path / "g.txt", ds.graph)
  graph = writer.read_graph_text(tmp_path / "g.txt", ds.graph.config)
  for r in range(2):  # 3 subjects cannot use all 12 objects: unused ones are filled in, balanced
    assert np.bincount(graph.nested_RxO[r], minlength=3).tolist() == [4, 4, 4]


@pytest.mark.parametrize("args,option", [
    (["--subjects=0"], "subjects"),
    (["--objects=abc"], "objects"),
    (["--inversion_frac=1.5"], "inversion_frac"),
    (["--minority_position_frac=-0.1"], "minority_position_frac"),
    (["--phrase_creator=sonnet"], "phrase_creator"),
    (["--num_nested_objects=3"], "num_nested_objects"),
    (["--correlated_pair", "--relationships=1"], "relationships"),
    (["--correlated_pair", "--correlation_strength=0.1", "--objects=4"], "correlation_strength"),
    (["--correlated_pair", "--binarize_first_correlated", "--correlation_strength=0.5"], "correlation_strength"),
    (["--num_nested_objects=4", "--minority_position_entity_frac=0.1"], "minority_position_entity_frac"),
    (["--shards=0"], "shards"),
    (["--write_graph_only", "--validation_data_only"], "validation_data_only"),
    (["--graph_path=/nonexistent/graph.txt"], "graph_path"),
])
def test_invalid_options_fail_with_one_line_and_leave_nothing(tmp_path, args, option):
  proc = generate(tmp_path / "out", *SMALL, *args, check=False)
  assert proc.returncode != 0
  lines = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
  assert len(lines) == 1 and f"--{option}" in lines[0], proc.stderr
  assert list(tmp_path.iterdir()) == []


def test_existing_output_is_refused_unless_overwrite(rich, tmp_path):
  out = tmp_path / "x"
  out.mkdir()
  proc = generate(out, *SMALL, check=False)
  assert proc.returncode != 0 and "--output_dir" in proc.stderr


def test_shard_workers_write_the_same_bytes_as_one_process(tmp_path):
  ds = dataset.build(GraphConfig(num_subjects=60, num_relationships=3, num_objects=8),
                     dataset.CorpusConfig(repeats=5, inversion_frac=0.5), seed=4)
  serial = writer.write_corpus(tmp_path / "serial", ds, 4, show_progress=False, workers=1)
  parallel = writer.write_corpus(tmp_path / "parallel", ds, 4, show_progress=False, workers=2)
  assert serial == parallel
  assert tree_digest(tmp_path / "serial") == tree_digest(tmp_path / "parallel")


def test_spell_int_rows_matches_python_formatting():
  values = np.array([[0, 7, 10, 123456, -1], [99999, -1, 1, 100, 0]])
  expected = "".join(" ".join("None" if v == -1 else str(v) for v in row) + "\n" for row in values)
  assert text.spell_int_rows(values).decode() == expected


def test_wide_words_past_ten_thousand_ids_round_trip_through_the_hf_tokenizer(tmp_path):
  tokenizers = pytest.importorskip("tokenizers")
  out = tmp_path / "wide"
  generate(out, "--subjects=20", "--relationships=10", "--objects=1000", "--repeats=1", "--shards=1")
  ds = dataset.load(out)
  assert ds.vocab.size > 10_000 and ds.vocab.word_width == 5
  tok = tokenizers.Tokenizer.from_file(str(out / "tokenizer.json"))
  lines = (out / "train/shard_00000.txt").read_text().splitlines()
  docs, lengths = ds.documents(0, ds.num_documents)
  assert [e.ids for e in tok.encode_batch(lines)] == [d[:n].tolist() for d, n in zip(docs, lengths)]
  assert max(max(e.ids) for e in tok.encode_batch(lines)) >= 10_000


def test_an_empty_probe_set_writes_an_empty_file(tmp_path):
  # 10% of 2 subjects rounds to no Q/A subject: the trained-question probe set is empty, not an error.
  generate(tmp_path / "out", "--subjects=2", "--relationships=1", "--objects=4", "--repeats=1",
           "--questions_entity_frac=0.1")
  assert (tmp_path / "out/validations/question_trained.txt").read_text() == ""
  assert len((tmp_path / "out/validations/question_heldout.txt").read_text().splitlines()) == 2
