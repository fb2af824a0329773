"""Bad input across every binary: one table of invalid invocations (issue 13).

Each row is (binary, arguments, the option the message must name). For every row the binary, run as a
subprocess, must exit non-zero with exactly one line on stderr, `error: ...` naming that option and what is
allowed, print no traceback, and leave nothing behind: no output folder or work dir, and no change to any
file of the fixtures it was pointed at. Invalid values are refused before anything is built or compiled, so
each row costs one interpreter start (plus the jax import for the model binaries).

A new binary adds its rows here in the same commit as the binary. Placeholders in the arguments:
  {out}        a path that must still not exist afterwards
  {data}       a small dataset written by data_gen.generate (nested objects, no correlation)
  {edits}      an edit set written by data_gen.make_edits (the wrong kind of folder for a dataset)
  {trunc}, {shape}, {values}, {json}, {resized}
               copies of {data} with native/graph.npz truncated, an array cut short, a value out of range,
               native/dataset.json not JSON, and dataset.json edited to another subject count
  {empty}      an empty folder; {file} a regular file; {graph_txt} a relationship_graph.txt of garbage
  {otherwd}    a pretraining work dir of the tiny config with another model width (resuming it must be
               refused); {otherdata} the same with another dataset (num_subjects)
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_DISABLE_MOST_OPTIMIZATIONS": "true", "PYTHONPATH": str(REPO)}

GEN, EDITS = "data_gen.generate", "data_gen.make_edits"
PRE, BENCH, EXPORT = "experiments.pretrain", "experiments.bench", "experiments.export"
TINY = "--config=experiments/configs/pretrain.py:tiny"
P = [TINY, "--workdir={out}"]  # a pretraining command up to its overrides
E = ["--data_dir={data}", "--output_dir={out}"]  # an edit-set command up to its options
G = ["--output_dir={out}"]

EDIT = "experiments.edit"
LORA = ["--config=experiments/configs/edit.py:lora,tiny", "--pretrained={empty}", "--workdir={out}"]
TRACE = "experiments.trace"
T = ["--pretrained={empty}", "--workdir={out}"]

ORACLE, REPORT = "experiments.oracle", "experiments.report"
PAPER = "experiments.paper"
PR = ["--config=experiments/configs/paper.py:rank,tiny", "--output={out}"]
ORC = ["--pretrained={empty}", "--edits={edits}", "--workdir={out}"]

# Exit status of an invalid option, where it is not 1 (the config-driven binaries and the argv-parsed suites).
EXIT = {PRE: {2}, EDIT: {2}, TRACE: {2}, ORACLE: {2}, REPORT: {2}, PAPER: {2},
        **{f"experiments.benchmarks.{m}": {2}
           for m in ("train", "edit_sets", "editing", "evaluation", "closed_form")}}

ROWS = [
    # --- data_gen.generate ---
    (GEN, ["--subjects=10"], "--output_dir"),
    (GEN, [*G, "--subjects=0"], "--subjects"),
    (GEN, [*G, "--subjects=abc"], "--subjects"),
    (GEN, [*G, "--relationships=-1"], "--relationships"),
    (GEN, [*G, "--objects=0"], "--objects"),
    (GEN, [*G, "--repeats=0"], "--repeats"),
    (GEN, [*G, "--shards=0"], "--shards"),
    (GEN, [*G, "--subjects=10", "--relationships=2", "--objects=4", "--repeats=1", "--shards=1000"], "--shards"),
    (GEN, [*G, "--inversion_frac=nan"], "--inversion_frac"),
    (GEN, [*G, "--minority_position_entity_frac=1.5"], "--minority_position_entity_frac"),
    (GEN, [*G, "--minority_position_frac=-0.1"], "--minority_position_frac"),
    (GEN, [*G, "--questions_frac=0.5", "--questions_entity_frac=0"], "--questions_entity_frac"),
    (GEN, [*G, "--correlated_pair", "--correlation_strength=nan"], "--correlation_strength"),
    (GEN, [*G, "--binarize_first_correlated"], "--binarize_first_correlated"),
    (GEN, [*G, "--objects=32", "--num_nested_objects=3"], "--num_nested_objects"),
    (GEN, [*G, "--obj_nested_obj_edges_upweight=0"], "--obj_nested_obj_edges_upweight"),
    (GEN, [*G, "--phrase_creator=nosuch"], "--phrase_creator"),
    (GEN, [*G, "--write_graph_only", "--validation_data_only"], "--validation_data_only"),
    (GEN, [*G, "--seed=-1"], "--seed"),
    (GEN, [*G, "--nosuch"], "nosuch"),
    (GEN, [*G, "extra"], "extra"),
    (GEN, ["--output_dir={data}"], "--output_dir"),
    (GEN, ["--output_dir={file}/x"], "--output_dir"),
    (GEN, [*G, "--graph_path={empty}"], "--graph_path"),
    (GEN, [*G, "--graph_path={graph_txt}"], "--graph_path"),
    (GEN, [*G, "--graph_path={trunc}"], "--graph_path"),
    (GEN, [*G, "--graph_path={shape}"], "--graph_path"),
    (GEN, [*G, "--graph_path={json}"], "--graph_path"),
    # --- data_gen.make_edits ---
    (EDITS, [], "--data_dir"),
    (EDITS, ["--data_dir={empty}/nosuch", "--output_dir={out}"], "--data_dir"),
    (EDITS, ["--data_dir={empty}", "--output_dir={out}"], "--data_dir"),
    (EDITS, ["--data_dir={file}", "--output_dir={out}"], "--data_dir"),
    (EDITS, ["--data_dir={edits}", "--output_dir={out}"], "--data_dir"),
    (EDITS, ["--data_dir={trunc}", "--output_dir={out}"], "--data_dir"),
    (EDITS, ["--data_dir={shape}", "--output_dir={out}"], "--data_dir"),
    (EDITS, ["--data_dir={values}", "--output_dir={out}"], "--data_dir"),
    (EDITS, ["--data_dir={json}", "--output_dir={out}"], "--data_dir"),
    (EDITS, ["--data_dir={resized}", "--output_dir={out}"], "--data_dir"),
    (EDITS, [*E, "--num_ft_overrides=0"], "--num_ft_overrides"),
    (EDITS, [*E, "--num_ft_overrides=abc"], "--num_ft_overrides"),
    (EDITS, [*E, "--num_ft_overrides=7"], "--num_ft_overrides"),  # > values / 2 with distinct values
    (EDITS, [*E, "--num_repeats_per_override=0"], "--num_repeats_per_override"),
    (EDITS, [*E, "--relationship_ordinal=9"], "--relationship_ordinal"),
    (EDITS, [*E, "--relationship_ordinal=-1"], "--relationship_ordinal"),
    (EDITS, [*E, "--single_ft_value", "--single_ft_data_subset_frac=0"], "--single_ft_data_subset_frac"),
    (EDITS, [*E, "--single_ft_value", "--censor_heldout_frac=1.5"], "--censor_heldout_frac"),
    (EDITS, [*E, "--single_ft_value", "--censor_value=99"], "--censor_value"),
    (EDITS, [*E, "--finetuning_phrase_creator=nosuch"], "--finetuning_phrase_creator"),
    (EDITS, [*E, "--reg_rows_per_edit_row=nan"], "--reg_rows_per_edit_row"),
    (EDITS, [*E, "--eval_cap=0"], "--eval_cap"),
    (EDITS, [*E, "--same_value_cap=-1"], "--same_value_cap"),
    (EDITS, [*E, "--get_correlated_tuples"], "--get_correlated_tuples"),
    (EDITS, [*E, "--remap_subject_nested_object_edges", "--remap_object_nested_object_edges"],
     "--remap_object_nested_object_edges"),
    (EDITS, [*E, "--seed=-1"], "--seed"),
    (EDITS, ["--data_dir={data}", "--output_dir={data}"], "--output_dir"),
    (EDITS, ["--data_dir={data}", "--output_dir={file}/x"], "--output_dir"),
    # --- experiments.pretrain: the flags and the config file ---
    (PRE, [TINY], "--workdir"),
    (PRE, ["--workdir={out}"], "--config"),
    (PRE, ["--config=experiments/configs/pretrain.py:nosuch", "--workdir={out}"], "--config"),  # lists names
    (PRE, ["--config=experiments/configs/nosuch.py:tiny", "--workdir={out}"], "--config"),
    (PRE, ["--config=experiments/configs/nosuch.py:tiny", "--workdir={out}", "--config.seed=1"], "--config"),
    (PRE, [*P, "--config.model.nosuch=3"], "--config.model.nosuch"),
    (PRE, [*P, "--config.model.width=abc"], "--config.model.width"),
    (PRE, [*P, "extra"], "extra"),
    # --- experiments.pretrain: numbers ---
    (PRE, [*P, "--config.learning_rate=nan"], "--config.learning_rate"),
    (PRE, [*P, "--config.schedule_steps=1"], "--config.schedule_steps"),  # shorter than total_steps
    (PRE, [*P, "--config.learning_rate=-1"], "--config.learning_rate"),
    (PRE, [*P, "--config.learning_rate=inf"], "--config.learning_rate"),
    (PRE, [*P, "--config.model.width=-1"], "--config.model.width"),
    (PRE, [*P, "--config.model.width=33"], "--config.model.width"),  # not a multiple of 2 heads
    (PRE, [*P, "--config.model.num_layers=0"], "--config.model.num_layers"),
    (PRE, [*P, "--config.model.rotary_pct=nan"], "--config.model.rotary_pct"),
    (PRE, [*P, "--config.model.compute_dtype=float16"], "--config.model.compute_dtype"),
    (PRE, [*P, "--config.batch_size=0"], "--config.batch_size"),
    (PRE, [*P, "--config.seq_len=1000"], "--config.seq_len"),
    (PRE, [*P, "--config.total_steps=0"], "--config.total_steps"),
    (PRE, [*P, "--config.warmup_steps=-1"], "--config.warmup_steps"),
    (PRE, [*P, "--config.min_lr_ratio=nan"], "--config.min_lr_ratio"),
    (PRE, [*P, "--config.weight_decay=nan"], "--config.weight_decay"),
    (PRE, [*P, "--config.b1=1.5"], "--config.b1"),
    (PRE, [*P, "--config.b2=nan"], "--config.b2"),
    (PRE, [*P, "--config.grad_clip=nan"], "--config.grad_clip"),
    (PRE, [*P, "--config.eval_every=0"], "--config.eval_every"),
    (PRE, [*P, "--config.target_accuracy=nan"], "--config.target_accuracy"),
    (PRE, [*P, "--config.target_accuracy=0.5", "--config.stop_metrics=accuracy"], "--config.stop_metrics"),
    (PRE, [*P, "--config.data.seed=-1"], "--config.data.seed"),
    (PRE, [*P, "--config.data.graph.num_subjects=0"], "--config.data.graph.num_subjects"),
    (PRE, [*P, "--config.data.corpus.inversion_frac=nan"], "--config.data.corpus.inversion_frac"),
    (PRE, [*P, "--config.answer_only=true", "--config.data.corpus_dir={data}"], "--config.answer_only"),
    # --- experiments.pretrain: paths, datasets, work dirs ---
    (PRE, [*P, "--config.data.dir={empty}/nosuch"], "--config.data.dir"),
    (PRE, [*P, "--config.data.dir={empty}"], "--config.data.dir"),
    (PRE, [*P, "--config.data.dir={file}"], "--config.data.dir"),
    (PRE, [*P, "--config.data.dir={edits}"], "--config.data.dir"),
    (PRE, [*P, "--config.data.dir={trunc}"], "--config.data.dir"),
    (PRE, [*P, "--config.data.dir={shape}"], "--config.data.dir"),
    (PRE, [*P, "--config.data.dir={values}"], "--config.data.dir"),
    (PRE, [*P, "--config.data.dir={json}"], "--config.data.dir"),
    (PRE, [*P, "--config.data.dir={resized}"], "--config.data.dir"),
    (PRE, [*P, "--config.data.corpus_dir={empty}/nosuch"], "--config.data.corpus_dir"),
    (PRE, [*P, "--config.data.corpus_dir={empty}"], "--config.data.corpus_dir"),
    (PRE, [*P, "--config.data.dir={data}", "--config.data.corpus_dir={shape}"], "--config.data.corpus_dir"),
    (PRE, [TINY, "--workdir={file}"], "--workdir"),
    (PRE, [TINY, "--workdir={file}/run"], "--workdir"),
    (PRE, [TINY, "--workdir={data}"], "--workdir"),  # a dataset folder is not a work dir
    (PRE, [TINY, "--workdir={otherwd}"], "--config.model.width"),  # a run of another model shape
    (PRE, [TINY, "--workdir={otherdata}"], "--config.data.graph.num_subjects"),  # ... of another dataset
    # --- experiments.bench ---
    (BENCH, ["--suite=nosuch"], "--suite"),
    (BENCH, ["--quick=maybe"], "--quick"),
    (BENCH, ["--nosuch"], "nosuch"),
    (BENCH, ["--suite=data", "extra"], "extra"),
    (BENCH, ["--suite=data", "--output={empty}"], "--output"),  # refused before the suites run
    (BENCH, ["--suite=data", "--output={file}/bench.json"], "--output"),
    ("experiments.benchmarks.train", ["--nosuch"], "--nosuch"),
    ("experiments.benchmarks.edit_sets", ["--nosuch"], "--nosuch"),
    ("experiments.benchmarks.editing", ["--nosuch=1"], "--nosuch"),
    ("experiments.benchmarks.evaluation", ["--quick", "--nosuch"], "--nosuch"),
    ("experiments.benchmarks.closed_form", ["--nosuch"], "--nosuch"),
    ("experiments.benchmarks.data", ["--nosuch"], "nosuch"),
    # --- experiments.export ---
    (EXPORT, [], "--pretrained"),
    (EXPORT, ["--pretrained={otherwd}", "--output={out}", "extra"], "extra"),
    (EXPORT, ["--pretrained={otherwd}"], "--output"),
    (EXPORT, ["--pretrained={empty}/nosuch", "--output={out}"], "--pretrained"),
    (EXPORT, ["--pretrained={empty}", "--output={out}"], "--pretrained"),
    (EXPORT, ["--pretrained={data}", "--output={out}"], "--pretrained"),
    (EXPORT, ["--pretrained={file}", "--output={out}"], "--pretrained"),
    (EXPORT, ["--pretrained={empty}", "--output={data}"], "--output"),
    # --- experiments.edit (its owner extends these; tests/edit/test_edit.py checks more refusals) ---
    (EDIT, LORA[:1] + LORA[2:], "--pretrained"),
    (EDIT, [LORA[0], "--pretrained={empty}/nosuch", LORA[2]], "--pretrained"),
    (EDIT, LORA, "--pretrained"),  # an empty folder is not a pretraining work dir
    (EDIT, [LORA[0], "--pretrained={data}", LORA[2]], "--pretrained"),
    (EDIT, [*LORA, "--config.learning_rate=nan"], "--config.learning_rate"),
    (EDIT, [*LORA, "--config.rank=-1"], "--config.rank"),
    (EDIT, [*LORA, "--config.mode=nosuch"], "--config.mode"),
    (EDIT, [*LORA, "extra"], "extra"),
    (EDIT, ["--config=experiments/configs/edit.py:nosuch", *LORA[1:]], "lora"),  # lists names
    (EDIT, [*LORA, "--config.nosuch=1"], "--config.nosuch"),
    # closed-form edits: more keys than the least-squares solve holds in the given budget (the model's shape
    # is read from {otherwd}'s config.json before any weight is loaded), a negative budget
    (EDIT, ["--config=experiments/configs/edit.py:memit,tiny", "--pretrained={otherwd}", "--workdir={out}",
            "--config.solve_memory_bytes=1000000"], "--config.num_edits"),
    (EDIT, ["--config=experiments/configs/edit.py:alphaedit,tiny", *LORA[1:], "--config.solve_memory_bytes=-1"],
     "--config.solve_memory_bytes"),
    (EDIT, ["--config=experiments/configs/edit.py:memit,tiny", *LORA[1:], "--config.covariance=nosuch"],
     "--config.covariance"),
    (EDIT, ["--config=experiments/configs/edit.py:memit,tiny", *LORA[1:], "--config.covariance=other_facts",
            "--config.edit_set.remap_subject_nested_object_edges=True"], "--config.covariance"),
    # --- experiments.oracle ---
    (ORACLE, ["--edits={edits}", "--workdir={out}"], "--pretrained"),
    (ORACLE, [*ORC, "--mode=nosuch"], "--mode"),
    (ORACLE, [*ORC, "--seeds=a,b"], "--seeds"),
    (ORACLE, [*ORC, "--seeds=-1"], "--seeds"),
    (ORACLE, [*ORC, "--steps=-1"], "--steps"),
    (ORACLE, [*ORC, "extra"], "extra"),
    (ORACLE, ORC, "--pretrained"),  # an empty folder is not a pretraining work dir
    (ORACLE, ["--pretrained={empty}/nosuch", *ORC[1:]], "--pretrained"),
    (ORACLE, ["--pretrained={otherwd}", *ORC[1:]], "--pretrained"),  # no checkpoint
    (ORACLE, [*ORC, "--unlearned={empty}"], "--unlearned"),  # not an edit run with one delta
    (ORACLE, [*ORC, "--unlearned={data}"], "--unlearned"),
    # --- experiments.trace (causal tracing; --relationship out of range needs a trained run) ---
    (TRACE, ["--workdir={out}"], "--pretrained"),
    (TRACE, T, "--pretrained"),  # an empty folder is not a pretraining work dir
    (TRACE, [*T, "--num_probes=0"], "--num_probes"),
    (TRACE, [*T, "--noise=nan"], "--noise"),
    (TRACE, [*T, "--samples=0"], "--samples"),
    (TRACE, [*T, "--window=0"], "--window"),
    (TRACE, ["--pretrained={empty}", "--workdir={data}"], "--workdir"),  # exists: traces are not resumed
    (TRACE, [*T, "extra"], "extra"),
    (TRACE, [*T, "--nosuch=1"], "nosuch"),
    # --- experiments.report ---
    (REPORT, ["--output={out}"], "--results"),
    (REPORT, ["--results={empty}", "--output={out}"], "--results"),  # not a work dir of any binary
    (REPORT, ["--results={data}", "--output={out}"], "--results"),
    (REPORT, ["--results={empty}/nosuch", "--output={out}"], "--results"),
    (REPORT, ["--results={otherwd}", "--output={data}"], "--output"),  # exists
    (REPORT, ["--results={otherwd}", "--output={out}", "extra"], "extra"),
    # --- experiments.paper (the paper's experiments; every option is checked before pretraining starts) ---
    (PAPER, ["--config=experiments/configs/paper.py:nope,cpu", "--output={out}"], "--config"),
    (PAPER, ["--config=experiments/configs/paper.py:rank,huge", "--output={out}"], "--config"),
    (PAPER, [*PR, "--config.num_edits=0"], "--config.num_edits"),
    (PAPER, [*PR, "--config.tune_edit_seed=0"], "--config.tune_edit_seed"),
    (PAPER, [*PR, "--config.ranks=(0,)"], "--config.ranks"),
    (PAPER, [*PR, "--config.seeds=()"], "--config.seeds"),
    (PAPER, [*PR, "--config.nope=1"], "--config.nope"),
    (PAPER, ["--config=experiments/configs/paper.py:unlearning,tiny", "--output={out}", "--config.methods=('nope',)"],
     "--config.methods"),
    (PAPER, ["--config=experiments/configs/paper.py:rank,tiny", "--output={file}"], "--output"),
]


def _run(module: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
  r = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=ENV, capture_output=True, text=True,
                     timeout=120)
  assert not check or r.returncode == 0, r.stderr[-3000:]
  return r


def _copy_with(src: pathlib.Path, dst: pathlib.Path, change) -> None:
  shutil.copytree(src, dst)
  change(dst / "native")


def _edit_arrays(native: pathlib.Path, **changes) -> None:
  with np.load(native / "graph.npz") as z:
    arrays = {k: z[k] for k in z.files}
  for name, fn in changes.items():
    arrays[name] = fn(arrays[name])
  np.savez(native / "graph.npz", **arrays)


def _truncate(path: pathlib.Path) -> None:
  data = path.read_bytes()
  path.write_bytes(data[:len(data) // 2])


def _resize(native: pathlib.Path) -> None:
  meta = json.loads((native / "dataset.json").read_text())
  meta["graph"]["num_subjects"] += 1
  (native / "dataset.json").write_text(json.dumps(meta))


def _work_dir(path: pathlib.Path, change) -> None:
  """A work dir as experiments.pretrain leaves it after config.json: the tiny config, changed."""
  from experiments.configs import pretrain as pretrain_configs  # pylint: disable=g-import-not-at-top
  config = pretrain_configs.get_config("tiny")
  change(config)
  path.mkdir()
  (path / "config.json").write_text(json.dumps(config.to_dict()))
  (path / "metrics.jsonl").write_text("")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, pathlib.Path]:
  root = tmp_path_factory.mktemp("bad_input")
  w = {name: root / name for name in ("data", "edits", "trunc", "shape", "values", "json", "resized", "empty",
                                      "file", "graph_txt", "otherwd", "otherdata")}
  _run(GEN, f"--output_dir={w['data']}", "--subjects=20", "--relationships=2", "--objects=8", "--repeats=2",
       "--num_nested_objects=2")
  _run(EDITS, f"--data_dir={w['data']}", f"--output_dir={w['edits']}")
  _copy_with(w["data"], w["trunc"], lambda n: _truncate(n / "graph.npz"))
  _copy_with(w["data"], w["shape"], lambda n: _edit_arrays(n, objects_SxR=lambda a: a[:5]))
  _copy_with(w["data"], w["values"], lambda n: _edit_arrays(n, objects_SxR=lambda a: a + 99))
  _copy_with(w["data"], w["json"], lambda n: (n / "dataset.json").write_text("{not json"))
  _copy_with(w["data"], w["resized"], _resize)
  w["empty"].mkdir()
  w["file"].write_text("a file, not a folder\n")
  w["graph_txt"].write_text("not a relationship graph\n")
  _work_dir(w["otherwd"], lambda c: setattr(c.model, "width", 64))
  _work_dir(w["otherdata"], lambda c: setattr(c.data.graph, "num_subjects", 64))
  w["out"] = root / "out"
  return w


def _snapshot(root: pathlib.Path) -> dict:
  return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else None
          for p in root.rglob("*")}


def test_the_table_covers_every_binary():
  binaries = {(row.values if hasattr(row, "values") else row)[0] for row in ROWS}
  assert len(ROWS) >= 40
  assert {GEN, EDITS, PRE, BENCH} <= binaries
  for module in ("export", "edit", "trace", "oracle", "report", "paper"):  # binaries of the open issues, once they land
    if (REPO / "experiments" / f"{module}.py").exists():
      assert f"experiments.{module}" in binaries, f"experiments.{module} has no rows"


def _id(row) -> str:
  binary, args, _ = row.values if hasattr(row, "values") else row
  return f"{binary.split('.')[-1]}:{' '.join(args)}"


@pytest.mark.parametrize("binary,args,option", ROWS, ids=[_id(row) for row in ROWS])
def test_invalid_invocation_is_one_line_and_writes_nothing(world, binary, args, option):
  root = world["out"].parent
  before = _snapshot(root)
  r = _run(binary, *[a.format(**world) for a in args], check=False)
  lines = r.stderr.strip().splitlines()
  assert r.returncode in EXIT.get(binary, {1}), (r.returncode, r.stderr[-3000:])
  assert "Traceback" not in r.stderr, r.stderr[-3000:]
  assert len(lines) == 1, r.stderr[-3000:]
  assert lines[0].startswith("error: ") and option in lines[0], lines[0]
  assert len(lines[0]) > len("error: ") + len(option) + 10, lines[0]  # says what is allowed, not just the name
  left_behind = world["out"].exists()
  if world["out"].is_dir():
    shutil.rmtree(world["out"])
  elif left_behind:
    world["out"].unlink()
  assert not left_behind, f"{world['out']} was left behind"
  assert _snapshot(root) == before, "the fixtures were changed"


def test_a_work_dir_resumes_with_other_lengths_but_not_another_model(tmp_path):
  from behemoth_jax.train import pretraining  # pylint: disable=g-import-not-at-top
  from experiments.configs import pretrain as pretrain_configs  # pylint: disable=g-import-not-at-top
  saved = pretrain_configs.get_config("tiny")
  (tmp_path / "config.json").write_text(json.dumps({**saved.to_dict(), "resolved": {"vocab_size": 100}}))
  (tmp_path / "checkpoints").mkdir()
  longer = pretrain_configs.get_config("tiny")
  longer.total_steps, longer.learning_rate, longer.log_every = 400, 1e-2, 7
  longer.model.compute_dtype = "bfloat16"
  pretraining.check_workdir(longer, tmp_path, vocab_size=100)
  with pytest.raises(ValueError, match=r"^--config\.data\.graph: .* a vocabulary of 100, this dataset has 99"):
    pretraining.check_workdir(longer, tmp_path, vocab_size=99)
  longer.model.num_layers = 3
  with pytest.raises(ValueError, match=r"^--config\.model\.num_layers: the work dir .* with 2, got 3"):
    pretraining.check_workdir(longer, tmp_path, vocab_size=100)
