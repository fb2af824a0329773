"""The generator binary end to end: layout, determinism, tokenizer parity, refusals, graph reuse."""

import collections
import hashlib
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from data_gen.export import text, writer
from data_gen.world import dataset
from data_gen.world.graph import NONE, GraphConfig
from data_gen.world.vocab import QQ

ROOT = pathlib.Path(__file__).resolve().parents[2]
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
  """One dataset exercising nesting, Q/A (k = int(3 / 0.5 * 0.5) = 3 questions per Q/A fact) and inversion."""
  out = tmp_path_factory.mktemp("gen") / "rich"
  generate(out, *SMALL, "--num_nested_objects=2", "--questions_frac=0.5", "--inversion_frac=0.3", "--seed=3")
  return out


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
  """No nesting: dissenting facts, Q/A with e = 0.3, q = 0.2, default shards."""
  out = tmp_path_factory.mktemp("gen") / "plain"
  generate(out, "--subjects=40", "--relationships=3", "--objects=8", "--repeats=3", "--seed=5",
           "--minority_position_entity_frac=0.2", "--questions_entity_frac=0.3", "--questions_frac=0.2")
  return out


def shard_lines(path):
  return [line for p in text.shard_paths(path) for line in p.read_text().splitlines()]


def test_every_path_has_the_original_name(rich, plain):
  for out, files in (
      (rich, ["data/full_text_0.txt", "data/full_text_1.txt",
              "validations/subject_object_sro.txt", "validations/subject_object_rso.txt",
              "validations/subject_nested_object_sro.txt", "validations/object_nested_object_sro.txt",
              "questions/subject_object_default.txt", "questions/subject_object_default_new.txt"]),
      (plain, ["data/full_text_0.txt", "validations/sro.txt", "questions/default.txt",
               "questions/default_new.txt", "validations/sro_dissenting_majority.txt"])):
    for name in files + ["metadata/relationship_graph.txt", "metadata/relationship_graph_tokenized.txt",
                         "metadata/remappings_map.json", "metadata/other_special_tokens.json",
                         "metadata/metadata.json", "metadata/args.json", "metadata/tokenizer.json",
                         "metadata/tokenizer_config.json", "metadata/subjects_with_questions.txt",
                         "metadata/subjects_with_questions_tokenized.txt", "native/graph.npz",
                         "native/dataset.json"]:
      assert (out / name).is_file(), (out.name, name)
  # The original's shard count: max(1, S * R * n // 100000) (// 200000 with nesting), here 1.
  assert [p.name for p in (plain / "data").iterdir()] == ["full_text_0.txt"]
  assert json.loads((plain / "metadata/args.json").read_text())["shards"] == 1
  assert not [p for p in rich.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left


@pytest.mark.parametrize("nested,S,R,n,shards", [(False, 10_000, 6, 50, 30), (True, 10_000, 6, 50, 15),
                                                 (False, 40, 3, 3, 1), (False, 1000, 3, 100, 3)])
def test_default_shard_count_is_the_originals(nested, S, R, n, shards):
  config = GraphConfig(num_subjects=S, num_relationships=R, num_objects=8, num_nested_objects=2 * nested)
  assert writer.default_shards(config, n) == shards


def test_graph_files_decode_back_to_our_graph_and_vocabulary(rich, plain):
  for out in (rich, plain):
    ds = dataset.load(out)
    g, v = ds.graph, ds.vocab
    S, R, O = g.num_subjects, g.num_relationships, g.num_objects
    remap = json.loads((out / "metadata/remappings_map.json").read_text())
    assert remap["special_vocab"] == {"<|endoftext|>": 0, "<|padding|>": 1, ".": 2, "SS": 3, "RR": 4, "OO": 5,
                                      "QQ": 6, "AA": 7}
    member = lambda key: {tuple(ids): i for i, ids in enumerate(remap[key])}  # noqa: E731
    subjects, relationships, objects = member("subjects"), member("relationships"), member("objects")
    assert len(subjects) == S and len(relationships) == R and len(objects) == R * O
    ids = lambda field: tuple(int(w) for w in field.split(","))  # noqa: E731
    lines = (out / "metadata/relationship_graph_tokenized.txt").read_text().split("\n")
    assert lines[-1] == "" and len(lines) == S * R + 1
    for i, line in enumerate(lines[:-1]):
      fields = line.split("\t")
      assert fields[-1] == ""  # a tab after the last field
      s, r = divmod(i, R)
      assert subjects[ids(fields[0])] == s and relationships[ids(fields[1])] == r
      assert objects[ids(fields[2])] == r * O + g.objects_SxR[s, r]
      minority = g.minority_SxR[s, r]
      assert fields[3] == "" if minority == NONE else objects[ids(fields[3])] == r * O + minority
      if g.config.nested:
        N = g.config.num_nested_objects
        assert len(fields) == 8
        assert remap["subject_nested_relationships"][r] == list(ids(fields[4]))
        assert remap["object_nested_relationships"][r] == list(ids(fields[5]))
        assert remap["object_nested_objects"].index(list(ids(fields[6]))) == r * N + g.subject_nested_SxR()[s, r]
      else:
        assert len(fields) == 5 and "object_nested_objects" not in remap
    # Every remapped id spells the word the corpus uses for that member.
    np.testing.assert_array_equal(np.array(remap["subjects"]), v.subjects.tokens(np.arange(S)))
    special = json.loads((out / "metadata/other_special_tokens.json").read_text())
    assert {name: int(word) for name, word in special.items()} == v.grammar_names()
    assert all(word == v.words()[int(word)] for word in special.values())
    assert {f"W{k}" for k in range(1000)} | {"WQ1", "WQ2", "WQ3", "WQ4"} <= set(special)


def test_metadata_counts_equal_the_written_corpus(rich, plain):
  tokenizers = pytest.importorskip("tokenizers")
  for out in (rich, plain):
    ds = dataset.load(out)
    meta = json.loads((out / "metadata/metadata.json").read_text())
    tok = tokenizers.Tokenizer.from_file(str(out / "metadata/tokenizer.json"))
    lines = shard_lines(out)
    assert meta["graph_size"] == ds.graph.num_subjects * ds.graph.num_relationships
    assert meta["vocab_size"] == tok.get_vocab_size() == ds.vocab.size
    assert meta["total_num_tokens"] == sum(len(e.ids) for e in tok.encode_batch(lines))
    assert len(lines) == meta["num_documents"] == ds.num_documents


def test_question_sentences_are_the_originals_count(rich, plain):
  # The original's formula in its float arithmetic: int(3 / 0.3 * 0.2) is 2, not 1.
  for out, k in ((rich, int(3 / 0.5 * 0.5)), (plain, int(3 / 0.3 * 0.2))):
    assert k == {rich: 3, plain: 2}[out]
    ds = dataset.load(out)
    table = text.WordTable(ds.vocab)
    asked = {int(s) for s in (out / "metadata/subjects_with_questions.txt").read_text().split()}
    assert asked == set(np.flatnonzero(ds.graph.qa_subject_S))
    assert len(asked) == int(ds.graph.config.questions_entity_frac * ds.graph.num_subjects)
    tokenized = (out / "metadata/subjects_with_questions_tokenized.txt").read_text().splitlines()
    assert tokenized == [str(ds.vocab.subjects.tokens([s])[0].tolist()) for s in sorted(asked)]
    questions, statements = collections.Counter(), collections.Counter()
    subjects = ds.vocab.subjects
    rels = ds.vocab.relationships
    for line in shard_lines(out):
      ids = table.encode(line)
      r = [i - rels.start for i in ids if rels.start <= i < rels.stop]
      if not r:
        continue  # a nested fact
      s = int(subjects.members(np.array([[i for i in ids if subjects.start <= i < subjects.stop]]))[0])
      (questions if QQ in ids else statements)[s, r[0]] += 1
    R = ds.graph.num_relationships
    assert questions == {(s, r): k for s in asked for r in range(R)}
    assert statements == {(s, r): 3 for s in range(40) for r in range(R)}
    meta = json.loads((out / "metadata/metadata.json").read_text())
    assert meta["question_sentences"] == len(asked) * R * k


def test_same_seed_same_bytes_and_other_seed_other_bytes(tmp_path):
  generate(tmp_path / "a", *SMALL, "--seed=11", "--minority_position_entity_frac=0.2", "--questions_frac=0.2")
  generate(tmp_path / "b", *SMALL, "--seed=11", "--minority_position_entity_frac=0.2", "--questions_frac=0.2")
  generate(tmp_path / "c", *SMALL, "--seed=12", "--minority_position_entity_frac=0.2", "--questions_frac=0.2")
  assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b") != tree_digest(tmp_path / "c")
  names = sorted(p.name for p in (tmp_path / "a/validations").iterdir())
  assert names == ["sro.txt", "sro_dissenting_majority.txt", "sro_dissenting_minority.txt"]


def test_hf_tokenizer_at_metadata_encodes_corpus_and_probes_to_the_generator_ids(rich, plain):
  tokenizers = pytest.importorskip("tokenizers")
  for out in (rich, plain):
    tok = tokenizers.Tokenizer.from_file(str(out / "metadata/tokenizer.json"))
    ds = dataset.load(out)
    docs, lengths = ds.documents(0, ds.num_documents)
    lines = shard_lines(out)  # one document per line; the newline is whitespace to the tokenizer
    assert len(lines) == len(docs)
    for enc, row, n in zip(tok.encode_batch(lines), docs, lengths):
      assert enc.ids == row[:n].tolist()
    whole = "".join(p.read_text() for p in text.shard_paths(out))
    assert tok.encode(whole).ids == np.concatenate([d[:n] for d, n in zip(docs, lengths)]).tolist()
    files = json.loads((out / "metadata/metadata.json").read_text())["validation_files"]
    for name, probe in ds.probes().items():
      rows = (out / files[name]).read_text().splitlines()
      assert len(rows) == len(probe)
      prompts, answers = zip(*(r.split("\t") for r in rows))
      assert [e.ids for e in tok.encode_batch(list(prompts))] == probe.prompt_NxP.tolist()
      assert [e.ids for e in tok.encode_batch(list(answers))] == probe.answer_NxA.tolist()
    config = json.loads((out / "metadata/tokenizer_config.json").read_text())
    assert tok.token_to_id(config["eos_token"]) == 0 and tok.get_vocab_size() == ds.vocab.size


def test_probe_files_map_to_the_original_names():
  ds = dataset.build(GraphConfig(num_subjects=3, num_relationships=1, num_objects=2),
                     dataset.CorpusConfig(phrase_creator="simplerepeats"), 0)
  names = {writer.probe_file(p, nested=False) for p in ds.probes().values()}
  assert len(names) == 432 and "validations/si1_sj0_ri1_rj0_oi_1.txt" in names
  ds = dataset.build(GraphConfig(num_subjects=3, num_relationships=1, num_objects=2),
                     dataset.CorpusConfig(phrase_creator="nonsense"), 0)
  assert {writer.probe_file(p, nested=False) for p in ds.probes().values()} == {"validations/sro.txt",
                                                                                  "validations/rso.txt"}


def test_written_corpus_reads_back_as_the_sampled_stream(rich):
  ds = dataset.load(rich)
  stream = text.read_token_stream(rich, ds.vocab)
  docs, lengths = ds.documents(0, ds.num_documents)
  np.testing.assert_array_equal(stream, np.concatenate([d[:n] for d, n in zip(docs, lengths)]))


def test_shards_are_read_in_numeric_order(tmp_path):
  (tmp_path / "data").mkdir()
  for i in (0, 2, 10, 1):
    (tmp_path / "data" / f"full_text_{i}.txt").write_text("")
  assert [p.name for p in text.shard_paths(tmp_path)] == [f"full_text_{i}.txt" for i in (0, 1, 2, 10)]


def test_graph_path_reuses_a_graph(rich, tmp_path):
  generate(tmp_path / "from_dir", "--graph_path", str(rich), "--repeats=2", "--seed=3", "--write_graph_only")
  again = dataset.load(tmp_path / "from_dir")
  assert again.graph.equals(dataset.load(rich).graph)
  assert not list((tmp_path / "from_dir/data").iterdir()) and not list((tmp_path / "from_dir/validations").iterdir())
  generate(tmp_path / "from_txt", "--graph_path", str(rich / "metadata/relationship_graph.txt"), "--objects=8",
           "--seed=3", "--repeats=2", "--validation_data_only")
  from_txt = dataset.load(tmp_path / "from_txt").graph
  original = dataset.load(rich).graph
  np.testing.assert_array_equal(from_txt.objects_SxR, original.objects_SxR)
  np.testing.assert_array_equal(from_txt.subject_nested_SxR(), original.subject_nested_SxR())
  assert (tmp_path / "from_txt/validations/subject_object_sro.txt").exists()
  assert not list((tmp_path / "from_txt/data").iterdir())


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
    (["--shards=1000000"], "shards"),  # more shards than the 360 documents
    (["--questions_frac=0.5", "--questions_entity_frac=0"], "questions_entity_frac"),
    (["--questions_frac=1.5"], "questions_frac"),
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


@pytest.mark.parametrize("corpus", [dict(), dict(questions_frac=0.5), dict(phrase_creator="nonsense"),
                                    dict(inversion_frac=0.5), dict(shuffle=False)])
def test_document_spelling_equals_the_general_spelling(corpus):
  # The fixed-layout fast path (one byte layout for every row) must spell what the general path spells.
  ds = dataset.build(GraphConfig(num_subjects=1200, num_relationships=2, num_objects=8, num_nested_objects=2),
                     dataset.CorpusConfig(repeats=2, **corpus), 7)
  plain = dataset.build(GraphConfig(num_subjects=1200, num_relationships=2, num_objects=8),
                        dataset.CorpusConfig(repeats=2, **corpus), 7)
  for d in (ds, plain):
    table, varying = text.WordTable(d.vocab), writer.corpus_lib.varying_columns(d.tables)
    tokens, _ = writer.corpus_lib.render_padded_documents(d.tables, np.arange(5000, dtype=np.uint32), np)
    assert bytes(table.join_documents(tokens, varying)) == table.join(tokens)
    if d is plain and not corpus:  # the fast path is taken for the plain corpus
      assert isinstance(table.join_documents(tokens, varying), np.ndarray)


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
  tok = tokenizers.Tokenizer.from_file(str(out / "metadata/tokenizer.json"))
  lines = (out / "data/full_text_0.txt").read_text().splitlines()
  docs, lengths = ds.documents(0, ds.num_documents)
  assert [e.ids for e in tok.encode_batch(lines)] == [d[:n].tolist() for d, n in zip(docs, lengths)]
  assert max(max(e.ids) for e in tok.encode_batch(lines)) >= 10_000


def test_an_empty_probe_set_writes_an_empty_file(tmp_path):
  # 10% of 2 subjects is no Q/A subject: the trained-question probe set is empty, not an error.
  generate(tmp_path / "out", "--subjects=2", "--relationships=1", "--objects=4", "--repeats=1",
           "--questions_entity_frac=0.1", "--questions_frac=0.5")
  assert (tmp_path / "out/questions/default.txt").read_text() == ""
  assert len((tmp_path / "out/questions/default_new.txt").read_text().splitlines()) == 2


def test_graph_path_of_an_original_folder_keeps_its_question_subjects(plain, tmp_path):
  # The original's folders have no native/: the graph comes from relationship_graph.txt and the Q/A
  # subjects from subjects_with_questions.txt.
  import shutil
  original = tmp_path / "original"
  shutil.copytree(plain / "metadata", original / "metadata")
  generate(tmp_path / "again", "--graph_path", str(original), "--objects=8", "--repeats=3", "--seed=9",
           "--minority_position_entity_frac=0.2", "--questions_entity_frac=0.3", "--questions_frac=0.2",
           "--validation_data_only")
  again, first = dataset.load(tmp_path / "again").graph, dataset.load(plain).graph
  np.testing.assert_array_equal(again.qa_subject_S, first.qa_subject_S)
  np.testing.assert_array_equal(again.objects_SxR, first.objects_SxR)
  np.testing.assert_array_equal(again.minority_SxR, first.minority_SxR)
  assert (tmp_path / "again/questions/default.txt").read_text() == (plain / "questions/default.txt").read_text()
