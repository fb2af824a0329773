#!/usr/bin/env bash
# The whole pipeline on a small config, on CPU, in a few minutes: data -> pretraining -> edit sets -> edits
# -> report.
#
#   make demo                      # = bash experiments/demo.sh runs/demo
#
# Each stage is the same command a researcher would type; the report is OUT/report.md.
set -euo pipefail
OUT=${1:-runs/demo}
PY=${PY:-.venv/bin/python}
export JAX_PLATFORMS=${JAX_PLATFORMS:-cpu}

echo "== 1/5 data: 500 subjects x 4 relationships -> 32 objects each, 100 repeats per fact"
$PY -m data_gen.generate --output_dir="$OUT/data" --overwrite --subjects=500 --relationships=4 \
  --objects=32 --repeats=100 --shards=2 --seed=0

echo "== 2/5 pretraining (config small; resumes if $OUT/pretrain has checkpoints)"
$PY -m experiments.pretrain --config=experiments/configs/pretrain.py:small --workdir="$OUT/pretrain" \
  --config.data.dir="$OUT/data"

echo "== 3/5 edit set: remap 10 facts of relationship 0"
$PY -m data_gen.make_edits --data_dir="$OUT/data" --output_dir="$OUT/edits" --overwrite \
  --num_ft_overrides=10 --seed=0

echo "== 4/5 edits: 100 independent single-fact rank-4 LoRA edits on every MLP down-projection"
$PY -m experiments.edit --config=experiments/configs/edit.py:lora --pretrained="$OUT/pretrain" \
  --workdir="$OUT/edit_lora" --config.num_edits=100

echo "== 5/5 report"
$PY -m experiments.demo_report --run_dir="$OUT"
