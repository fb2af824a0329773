"""The paper's experiments at tiny size (smoke: each runs and writes its rows, summary, plots and section;
no scientific outcome is asserted), their resumption, and docs/results.md assembly."""

import json
import pathlib

import pytest

from experiments.configs import paper as paper_configs
from experiments.replication import results, runs


@pytest.fixture(scope="module")
def root(tmp_path_factory):
  return tmp_path_factory.mktemp("paper")


# The four longest tiny experiments (11-28 s each on 2 cores) run in `make test-slow`, keeping `make test`
# near its 10-minute budget; every experiment's runner is still in `make test-slow`.
_SLOW_TINY = ("unlearning", "locate", "capacity", "dissent_qa")


@pytest.mark.parametrize("experiment", [pytest.param(e, marks=pytest.mark.slow) if e in _SLOW_TINY else e
                                        for e in paper_configs.EXPERIMENTS])
def test_tiny_experiment_writes_rows_summary_plots_and_section(root, experiment):
  config = paper_configs.get_config(f"{experiment},tiny")
  exp = runs.run_experiment(config, root)
  summary = json.loads((exp / "summary.json").read_text())
  arms = runs.arms(config, 2)
  assert set(summary) == {a.name for a in arms}
  rows = [json.loads(l) for l in (exp / "results.jsonl").read_text().splitlines()]
  assert {r["arm"] for r in rows} == set(summary)
  first_split, first_metric, _ = results.COLUMNS[experiment][0]
  for name, arm in summary.items():
    entry = arm["splits"][first_split][first_metric]
    assert 0.0 <= entry["after"] <= 1.0 and entry["n"] >= 1
    assert entry["after_ci"][0] <= entry["after"] <= entry["after_ci"][1]
    assert len(arm["runs"]) == len(config.seeds) * len(config.edit_seeds)
  section = (exp / "section.md").read_text()
  assert section.startswith(f"## {results.TITLES[experiment]}")
  assert all(f"]({'figures/' + p.name})" in section for p in exp.glob("*.png"))
  assert list(exp.glob("*.png"))
  assert "**What the numbers say**" in section
  run = json.loads((exp / "run.json").read_text())
  assert run["machine"]["cpu"] and run["command"].startswith("python -m experiments.paper")
  if experiment == "unlearning":
    assert all(len(a["oracle"]["forget_quality"]) == 1 for a in summary.values())
  if experiment == "rank":  # every edit run scores the question form, split by asked / never-asked subjects
    assert any("edited/question" in a["splits"] for a in summary.values())


def test_a_finished_experiment_reruns_from_its_work_dirs_to_the_same_bytes(root):
  config = paper_configs.get_config("blocks,tiny")
  exp = runs.run_experiment(config, root)  # the parametrized test ran it already (or runs it now)
  before = {p.name: p.read_bytes() for p in exp.iterdir() if p.is_file() and p.name != "run.json"}
  runs.run_experiment(config, root)
  after = {p.name: p.read_bytes() for p in exp.iterdir() if p.is_file() and p.name != "run.json"}
  assert before == after


def test_docs_are_assembled_in_order_with_their_figures(root, tmp_path):
  runs.run_experiment(paper_configs.get_config("blocks,tiny"), root)
  docs = results.assemble_docs(root, tmp_path / "docs" / "results.md")
  text = docs.read_text()
  assert text.index(results.TITLES["blocks"]) > 0
  assert (tmp_path / "docs" / "figures" / "blocks_exact_match.png").is_file()
  missing = [e for e in paper_configs.EXPERIMENTS if not (root / e / "section.md").is_file()]
  assert all(f"paper.py:{e},cpu" in text for e in missing)  # what is not run yet says how to run it


@pytest.mark.parametrize("override,field", [
    (dict(seeds=()), "seeds"), (dict(edit_seeds=(-1,)), "edit_seeds"), (dict(num_edits=0), "num_edits"),
    (dict(tune_edit_seed=0), "tune_edit_seed"), (dict(lora_lrs=(0.0,)), "lora_lrs"), (dict(ranks=(0,)), "ranks"),
])
def test_invalid_options_are_refused_before_anything_is_written(tmp_path, override, field):
  config = paper_configs.get_config("rank,tiny")
  config.update(override)
  with pytest.raises(ValueError, match=f"^--config.{field}: "):
    runs.run_experiment(config, tmp_path / "out")
  assert not (tmp_path / "out").exists()


def test_sizes_pick_the_backend():
  from experiments.replication import quickstart
  assert quickstart.size_for_backend("gpu") == "accel" and quickstart.size_for_backend("tpu") == "accel"
  assert quickstart.size_for_backend("cpu") == "cpu" and quickstart.size_for_backend("cpu", "tiny") == "tiny"
  with pytest.raises(ValueError, match="size"):
    quickstart.size_for_backend("cpu", "huge")


def test_the_reading_calls_a_difference_only_where_intervals_are_apart():
  a = {"after": 0.9, "after_ci": [0.85, 0.95]}
  b = {"after": 0.6, "after_ci": [0.5, 0.7]}
  c = {"after": 0.8, "after_ci": [0.6, 0.9]}
  assert results._compare("r=4", a, "full", b, "edit takes").endswith("r=4 higher (intervals apart).")
  assert results._compare("r=4", b, "full", a, "edit takes").endswith("full higher (intervals apart).")
  assert "not distinguishable" in results._compare("r=4", a, "full", c, "edit takes")
  nan = {"after": 0.5, "after_ci": [float("nan"), float("nan")]}
  assert "not distinguishable" in results._compare("x", a, "y", nan, "edit takes")


def test_the_capacity_reading_moves_one_factor_at_a_time():
  config = paper_configs.get_config("capacity,cpu")
  arms = runs.arms(config, 4)
  takes = {"e100_w64": 0.2, "e1000_w64": 0.9, "e100_w128": 0.25, "e1000_w128": 0.9}
  summary = {a.name: {"splits": {"edited": {"exact_match": {"after": takes[a.labels["pretraining"]],
                                                            "after_ci": [takes[a.labels["pretraining"]] - 0.1,
                                                                         takes[a.labels["pretraining"]] + 0.1]}}}}
             for a in arms}
  lines = results.reading("capacity", arms, summary, {})
  assert "- lora, width 64: edit takes: 100 exposures 20.0% vs 1000 exposures 90.0%, 1000 exposures higher " \
         "(intervals apart)." in lines
  assert "- lora, 100 exposures: edit takes: width 64 20.0% vs width 128 25.0%, not distinguishable " \
         "(intervals overlap)." in lines
  assert len(lines) == 1 + 2 * 4  # the ranking, then per method 2 exposure and 2 width pairs


def test_run_level_intervals_over_fewer_than_five_runs_are_flagged():
  """An interval over runs only (†) says so when it rests on fewer than 5 runs (issue 19)."""
  few = {"arm": {"splits": {"s": {"m": {"ci_unit": "run", "runs": 2}}}}}
  enough = {"arm": {"splits": {"s": {"m": {"ci_unit": "run", "runs": 6}}}}}
  assert results._few_runs(few) and not results._few_runs(enough)  # pylint: disable=protected-access
  assert not results._few_runs({"arm": {"splits": {"s": {"m": {"ci_unit": "seed, then edit"}}}}})  # pylint: disable=protected-access
