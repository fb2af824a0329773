#!/usr/bin/env bash
# The whole pipeline on CPU in a few minutes: data -> pretraining -> edit set -> a small rank sweep (LoRA
# of ranks 1, 4 and 16, full-rank fine-tuning of the same weights, a rank-one closed-form edit) ->
# evaluation -> a report with plots.
#
#   make demo                      # = bash experiments/demo.sh runs/demo
#
# Each stage is the same command a researcher would type; every stage resumes. The last line printed is
# the report's path (OUT/report/report.md, its PNG plots beside it).
set -euo pipefail
OUT=${1:-runs/demo}
PY=${PY:-.venv/bin/python}
EDITS=${EDITS:-50}
export JAX_PLATFORMS=${JAX_PLATFORMS:-cpu}

echo "== 1/5 data: 500 subjects x 4 relationships -> 32 objects each, 100 repeats per fact"
$PY -m data_gen.generate --output_dir="$OUT/data" --overwrite --subjects=500 --relationships=4 \
  --objects=32 --repeats=100 --shards=2 --seed=0

echo "== 2/5 pretraining (config small; resumes if $OUT/pretrain has checkpoints)"
$PY -m experiments.pretrain --config=experiments/configs/pretrain.py:small --workdir="$OUT/pretrain" \
  --config.data.dir="$OUT/data" --config.progress=False

echo "== 3/5 edit set: remap 10 facts of relationship 0 (the original's folder layout)"
$PY -m data_gen.make_edits --data_dir="$OUT/data" --output_dir="$OUT/edits" --overwrite \
  --num_ft_overrides=10 --seed=0

echo "== 4/5 rank sweep: $EDITS independent single-fact edits of every MLP down-projection each"
edit() {  # name, config name, extra overrides...
  local name=$1 config=$2
  shift 2
  $PY -m experiments.edit --config=experiments/configs/edit.py:"$config" --pretrained="$OUT/pretrain" \
    --workdir="$OUT/$name" --config.num_edits="$EDITS" --config.progress=False "$@" > "$OUT/$name.log"
  head -1 "$OUT/$name.log"  # the table of every split and metric is in the log and the report
}
for r in 1 4 16; do
  edit "edit_lora_r$r" lora --config.rank=$r
done
# Full rank on the same weights (the ft config's tuned step, 1e-4, for every parameter; here mlp_down).
edit edit_full ft --config.targets=mlp_down
edit edit_rome rome

echo "== 5/5 evaluation report"
rm -rf "$OUT/report"  # rewritten whole (the report binary refuses to write into an existing folder)
$PY -m experiments.report --results="$OUT/edit_lora_r1,$OUT/edit_lora_r4,$OUT/edit_lora_r16,$OUT/edit_full,$OUT/edit_rome,$OUT/pretrain" \
  --output="$OUT/report" > /dev/null
echo "$OUT/report/report.md"
