#!/usr/bin/env bash
# Reproduces hqflow's built-in DFN (udfs/models/world-dfn/) from nothing: generate the
# high-quality training pairs, train in two stages, evaluate on sets it never saw.
# Takes about 40 minutes on 2 cores. The result should match the shipped model's figures in
# udfs/models/world-dfn/README.md closely, not bit for bit: thread timing can change the
# order of floating-point sums.
#
#   examples/train_world_dfn.sh [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${1:-world-dfn-run}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hqflow/target}"
cargo build --release --locked --bin hqflow --bin hqflow-train >&2
BIN="$CARGO_TARGET_DIR/release"
RECIPES=udfs/models/world-dfn
mkdir -p "$WORK"
# The role of DFN's HQITP-350M: 60,000 world pairs whose alt-texts are all correct, with the
# seed annotations (long_pos, long_neg, short_pos, short_neg).
[ -d "$WORK/hq" ] || "$BIN/hqflow" world seed --rows 60000 --seed 21 --size 32 --mix correct=1 --out "$WORK/hq"
"$BIN/hqflow-train" fit --data "$WORK/hq" --out "$WORK/stage1" --recipe "$RECIPES/recipe-stage1.toml"
"$BIN/hqflow-train" fit --data "$WORK/hq" --init "$WORK/stage1" --out "$WORK/stage2" \
  --recipe "$RECIPES/recipe-stage2.toml"
[ -d "$WORK/eval" ] || "$BIN/hqflow" world eval --seed 2 --size 32 --out "$WORK/eval"
"$BIN/hqflow-train" eval --model "$WORK/stage2" --data "$WORK/eval" --out "$WORK/stage2-metrics.json"
