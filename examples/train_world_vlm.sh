#!/usr/bin/env bash
# Reproduces hqflow's built-in refiner (udfs/models/world-vlm/) from nothing: generate seed
# annotations, fine-tune the refiner on them (its vision tower starts from the built-in DFN's),
# refine a world pool it never saw and judge the texts against the hidden truth.
# The result should match the shipped model's figures in udfs/models/world-vlm/README.md
# closely, not bit for bit: thread timing can change the order of floating-point sums.
# One difference: the shipped refiner's tower started from the first built-in DFN's (32 px,
# patch 8); the built-in DFN's tower is now that refiner's own, tuned further with the DFN
# (udfs/models/world-dfn/README.md, stages 4 and 5), so this run starts further along.
#
#   examples/train_world_vlm.sh [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${1:-world-vlm-run}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hqflow/target}"
cargo build --release --locked --bin hqflow --bin hqflow-train >&2
BIN="$CARGO_TARGET_DIR/release"
mkdir -p "$WORK"
# The seed set: 20,000 world images with alt-texts of every quality and the four texts
# written from truth (the role GPT-4o's annotations play in HQ-CLIP).
[ -d "$WORK/seed" ] || "$BIN/hqflow" world seed --rows 20000 --seed 1 --size 32 --out "$WORK/seed"
# As the shipped refiner was trained, in four runs (udfs/models/world-vlm/README.md):
# 1. text only (--tag-weight 0): a 3,000-step schedule stopped at step 1,500, then resumed
#    under a 9,000-step schedule to its end (about 1.5 hours on 2 idle cores);
if [ ! -f "$WORK/refiner/train_state.json" ]; then
  "$BIN/hqflow-train" refiner --data "$WORK/seed" --out "$WORK/refiner" --steps 3000 --stop-after 1500 --tag-weight 0
fi
"$BIN/hqflow-train" refiner --data "$WORK/seed" --out "$WORK/refiner" --steps 9000 --resume
# 2. texts with the tagging head: a 5,000-step schedule stopped at step 1,000;
[ -f "$WORK/tagged/train_state.json" ] || "$BIN/hqflow-train" refiner --data "$WORK/seed" \
  --out "$WORK/tagged" --from "$WORK/refiner" --steps 5000 --lr 5e-4 --stop-after 1000
# 3. the tagging head and tower alone: an 8,000-step schedule stopped at step 3,000 (the
#    shipped run began it with a fresh head: the layout of then did not carry it over);
[ -f "$WORK/tags-only/train_state.json" ] || "$BIN/hqflow-train" refiner --data "$WORK/seed" \
  --out "$WORK/tags-only" --from "$WORK/tagged" --steps 8000 --tag-only-steps 5000 --lr 1e-3 \
  --stop-after 3000
# 4. on 100,000 seed rows, tagging images mirrored: 2,500 steps of the head and tower alone,
#    then 3,000 of texts with tags (about 45 minutes); the head writes the positive tags.
[ -d "$WORK/seed100k" ] || "$BIN/hqflow" world seed --rows 100000 --seed 11 --size 32 --out "$WORK/seed100k"
if [ ! -f "$WORK/final/train_state.json" ]; then
  "$BIN/hqflow-train" refiner --data "$WORK/seed100k" --out "$WORK/final" --from "$WORK/tags-only" \
    --steps 5500 --tag-only-steps 2500 --tag-mirror --lr 1e-3 --negative-contrast 0.5 \
    --tagger-writes-short-pos
fi
"$BIN/hqflow-train" refiner --data "$WORK/seed100k" --out "$WORK/final" --resume
# A pool from another row domain and seed than any training row, refined and judged.
[ -d "$WORK/pool" ] || "$BIN/hqflow" world pool --rows 2000 --seed 3 --size 32 --out "$WORK/pool"
rm -rf "$WORK/refined"
HQFLOW_NO_CACHE=1 "$BIN/hqflow" sql -t pool="$WORK/pool" -m refiner="$WORK/final" \
  -s hqflow.refine_backend=refiner \
  "COPY (SELECT uid, truth_scene, truth_quality, r['long_pos'] AS long_pos, r['long_neg'] AS long_neg,
          r['short_pos'] AS short_pos, r['short_neg'] AS short_neg
        FROM (SELECT *, lvlm_refine(img, txt) AS r FROM pool)) TO '$WORK/refined/' STORED AS PARQUET"
"$BIN/hqflow" world judge --table "$WORK/refined" --out "$WORK/judgement.json"
