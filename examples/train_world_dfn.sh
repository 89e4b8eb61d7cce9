#!/usr/bin/env bash
# Reproduces hqflow's built-in DFN (udfs/models/world-dfn/) from nothing but the built-in
# refiner (udfs/models/world-vlm/, whose vision tower stage 4 takes): generate the
# high-quality training pairs, train in five stages, evaluate on sets it never saw.
# The shipped stages 1 and 2 (448,000 pairs) were trained on a GPU with a CUDA build
# (DEVICE=cuda), four minutes; stage 3 (665,600 pairs) on 2 CPU cores, 46 minutes at 240
# pairs/s; stages 4 and 5 (204,800 and 307,200 pairs) on 2 CPU cores, 16 and 25 minutes.
# The result should match the shipped model's figures in udfs/models/world-dfn/README.md
# closely, not bit for bit: devices and thread timing change the order of floating-point sums.
#
#   [DEVICE=cuda] examples/train_world_dfn.sh [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${1:-world-dfn-run}"
DEVICE="${DEVICE:-cpu}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hqflow/target}"
features=()
[ "$DEVICE" = cpu ] || features=(--features cuda)
cargo build --release --locked "${features[@]}" --bin hqflow --bin hqflow-train >&2
BIN="$CARGO_TARGET_DIR/release"
RECIPES=udfs/models/world-dfn
mkdir -p "$WORK"
# The role of DFN's HQITP-350M: 200,000 world pairs (64 px) whose alt-texts are all correct,
# with the seed annotations (long_pos, long_neg, short_pos, short_neg).
[ -d "$WORK/hq" ] || "$BIN/hqflow" world seed --rows 200000 --seed 21 --size 64 --mix correct=1 --out "$WORK/hq"
# Stages 1 and 2 stop early, where the shipped run's time limit stopped them (the saved
# checkpoints at steps 750 and 1000 of their cosine schedules); stage 3 runs its schedule.
"$BIN/hqflow-train" fit --device "$DEVICE" --data "$WORK/hq" --out "$WORK/stage1" \
  --recipe "$RECIPES/recipe-stage1.toml" --stop-after 750
"$BIN/hqflow-train" fit --device "$DEVICE" --data "$WORK/hq" --init "$WORK/stage1" \
  --out "$WORK/stage2" --recipe "$RECIPES/recipe-stage2.toml" --stop-after 1000
[ -d "$WORK/eval" ] || "$BIN/hqflow" world eval --seed 3 --filtering 4000 --out "$WORK/eval"
"$BIN/hqflow-train" fit --device "$DEVICE" --data "$WORK/hq" --init "$WORK/stage2" \
  --out "$WORK/stage3" --recipe "$RECIPES/recipe-stage3.toml"
# Stage 4: stage 3's text tower learns to read the refiner's vision tower, locked (32 px,
# patch 8; it learned the world's shapes from tagging); stage 5 fine-tunes every weight.
"$BIN/hqflow-train" fit --device "$DEVICE" --data "$WORK/hq" --init "$WORK/stage3" \
  --init-vision udfs/models/world-vlm --out "$WORK/stage4" \
  --recipe "$RECIPES/recipe-stage4.toml"
"$BIN/hqflow-train" fit --device "$DEVICE" --data "$WORK/hq" --init "$WORK/stage4" \
  --out "$WORK/stage5" --recipe "$RECIPES/recipe-stage5.toml"
"$BIN/hqflow-train" eval --model "$WORK/stage5" --data "$WORK/eval" \
  --out "$WORK/stage5-metrics.json"
