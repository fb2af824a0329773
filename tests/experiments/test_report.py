"""experiments.report: seeds pooled into one row, per-layer / per-block heatmaps, causal-trace heatmaps,
the unlearning-vs-oracle table; PNGs written with the same bytes twice and named in the Markdown."""

import json

import numpy as np

from experiments.reporting import markdown as report


def _edit_run(root, name, seed, targets, afters, forget_quality=None):
  """An independent-mode edit run as experiments.edit leaves it (config, run, summary, results rows)."""
  d = root / name
  d.mkdir()
  config = {"seed": seed, "edit_set_seed": seed, "method": "lora", "mode": "independent", "targets": targets,
            "rank": 4, "pretrained": str(root / "W"), "learning_rate": 0.002}
  (d / "config.json").write_text(json.dumps(config))
  (d / "run.json").write_text(json.dumps({"method": "lora", "mode": "independent", "rank": 4, "targets": targets,
                                          "num_edits": len(afters), "wall_s": 1.0, "device": "cpu"}))
  rows, summary = [], {}
  for split, shift in (("edited", 0.0), ("reg_data", 0.1)):
    vals = [min(1.0, a + shift) for a in afters]
    rows += [{"edit": i, "split": split, "template": "sro", "metric": "exact_match", "before": float(split != "edited"),
              "after": v, "n": 1, "seed": seed} for i, v in enumerate(vals)]
    summary[split] = {"exact_match": {"before": float(split != "edited"), "after": float(np.mean(vals)),
                                      "n": len(vals), "before_ci": [0.0, 0.0], "after_ci": [0.0, 1.0],
                                      "ci_unit": "edit"}}
  if forget_quality is not None:
    summary["edited"]["forget_quality"] = {"before": 1e-6, "after": forget_quality, "n": len(afters),
                                           "per_seed": [forget_quality], "oracle": "O"}
    summary["reg_data"]["oracle_agreement"] = {"before": 0.9, "after": 0.8, "differ": 0.2, "n": len(afters),
                                               "after_ci": [0.7, 0.9], "before_ci": [0.8, 1.0], "ci_unit": "fact"}
  (d / "summary.json").write_text(json.dumps(summary))
  (d / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  return d


def _trace_run(root):
  d = root / "trace"
  d.mkdir()
  L, P = 4, 6
  comp = lambda k: {"mean_indirect_effect": (np.arange(L * P).reshape(L, P) / (L * P) * k).tolist()}  # noqa: E731
  (d / "trace.json").write_text(json.dumps({
      "num_probes": 10, "num_drawn": 12, "relationship": 0, "noise_std": 0.3, "positions": P,
      "subject_last_position": [2], "clean_p": 0.9, "corrupted_p": 0.1, "traced_layer": 2,
      "mlp_peak": {"layer": 3, "position": 5, "effect": 0.5},
      "components": {"residual": comp(1.0), "mlp": comp(0.5), "attn": comp(0.25)}}))
  return d


def test_report_pools_seeds_draws_target_and_trace_heatmaps_with_the_same_bytes(tmp_path):
  runs = [_edit_run(tmp_path, "s0", 0, "mlp_down", [1.0, 1.0, 0.0]),
          _edit_run(tmp_path, "s1", 1, "mlp_down", [1.0, 0.0, 0.0, 1.0])]  # differ only in seeds: pooled
  runs += [_edit_run(tmp_path, f"t{k}", 0, t, [k / 4, 1.0]) for k, t in
           enumerate(("mlp_down&layer:0", "mlp_down&layer:1", "mlp", "attn"))]
  runs += [_edit_run(tmp_path, "npo", 0, "all", [0.0, 0.0], forget_quality=0.42), _trace_run(tmp_path)]
  texts = []
  for name in ("a", "b"):
    (tmp_path / name).mkdir()
    texts.append(report.build(runs, tmp_path / name))
  text = texts[0]
  assert texts[1] == text
  # One pooled section and table row for the two seeds: n summed; two seeds are too few to resample, so
  # edits are resampled within each seed and the table says so.
  assert "## Edit runs pooled over 2 seeds: `s0` ..." in text
  assert "## Edit run `s0`" not in text and "## Edit run `s1`" not in text
  assert "| exact_match | 0.0% [0.0%, 0.0%] | 57.1% [" in text
  assert "| 7 | edit within each seed (2 seeds: too few to resample seeds) |" in text
  pngs = sorted(p.name for p in (tmp_path / "a").glob("*.png"))
  assert pngs == sorted(["efficacy_locality.png", "accuracy_rank.png", "targets_per-layer_0.png", "targets_per-block_1.png",
                         "trace_7.png"]), pngs
  for png in pngs:
    assert f"]({png})" in text
    assert (tmp_path / "a" / png).read_bytes() == (tmp_path / "b" / png).read_bytes()
    assert (tmp_path / "a" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  # The heatmaps' efficacy/locality tables name each target set; the trace section its layout.
  assert "| `mlp_down&layer:1` | t1 | 62.5% [0.0%, 100.0%] | 67.5% [" in text and "| `attn` | t3 | 87.5% [" in text
  assert "| `mlp_down` | s0, s1 | 57.1% [" in text  # the pooled seeds are one column
  # npo differs from the t runs only in targets too ("all"): a block column beside mlp_down, mlp, attn.
  assert "Per-layer heatmap (lora, 2 target sets)" in text and "Per-block heatmap (lora, 4 target sets)" in text
  assert "## Causal trace `trace`" in text and "Traced layer (MLP at the subject's last token): 2" in text
  # Forget quality and retain accuracy per unlearning run; agreement with the oracle per split.
  assert "| npo | lora | ? | 1e-06 | 0.42 | 2 | n/a | 10.0% [" in text  # "?": the fake oracle dir O is absent
  assert "strongest MLP effect: layer 3, position 5 (0.5)" in text
  assert "| npo | reg_data | 90.0% [80.0%, 100.0%] | 80.0% [70.0%, 90.0%] | 20.0% | 2 |" in text
