#!/usr/bin/env bash
# The two experiments of the papers, on the synthetic world, with the same training budget for
# every model (STEPS steps of 64 pairs of the default tiny CLIP, from scratch):
#
# (a) DFN effect, plain CLIP on the alt-texts: the whole pool vs its top 30% by dfn_score
#     (the built-in DFN) vs a random 30%.
# (b) HQ-CLIP effect, on the DFN's top 30%: plain CLIP on the alt-texts vs the refined long
#     descriptions (the world's seed annotations stand in for the LVLM's), with and without
#     the long negatives as hard negatives and the short-tag loss; and the descriptions mixed
#     half and half with the alt-texts, as HQ-CLIP mixes long and short texts.
#
#   examples/science.sh prepare DIR          # hqflow: pool, DFN scores, eval sets (CPU, a minute)
#   examples/science.sh train DIR RESULTS    # hqflow-train: 9 fits and their evals
#
# Env: HQFLOW / HQFLOW_TRAIN (binaries; default: release builds in $CARGO_TARGET_DIR or
# target/), ROWS (pool rows, default 8000), STEPS (default 2000), DEVICE (cpu or cuda, default
# cpu), PARALLEL (fits at a time, default 1; on a GPU, all fit together), ONLY (names of the
# runs to do, space-separated; default all). RESULTS gets one
# eval JSON per model, summary.json and summary.md (the table the README quotes).
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
HQFLOW="${HQFLOW:-$target/release/hqflow}"
HQFLOW_TRAIN="${HQFLOW_TRAIN:-$target/release/hqflow-train}"
ROWS="${ROWS:-8000}" STEPS="${STEPS:-2000}" DEVICE="${DEVICE:-cpu}" PARALLEL="${PARALLEL:-1}"

prepare() {
  local dir="$1"
  mkdir -p "$dir"
  # The pool: the default quality mix (40% correct alt-texts, the rest wrong in an attribute,
  # junk, mismatched or empty), each row with the seed annotations.
  "$HQFLOW" world seed -q --rows "$ROWS" --seed 31 --size 32 --format jpeg --out "$dir/raw"
  "$HQFLOW" --no-cache sql -q -t raw="$dir/raw" \
    "COPY (SELECT uid, img, txt, long_pos, long_neg, short_pos, short_neg, truth_quality,
                  dfn_score(img, txt) AS dfn FROM raw)
     TO '$dir/pool/' STORED AS PARQUET" > /dev/null
  rm -rf "$dir/raw"
  "$HQFLOW" world eval -q --seed 32 --size 32 --filtering 0 --out "$dir/eval"
}

train() {
  local dir="$1" results="$2"
  mkdir -p "$results"
  local keep=$(( ROWS * 3 / 10 ))
  local all="SELECT * FROM data"
  local top="SELECT * FROM data ORDER BY dfn DESC NULLS LAST, uid LIMIT $keep"
  # uids are content hashes: their order is a fixed random order.
  local random="SELECT * FROM data ORDER BY uid LIMIT $keep"
  # name | query | [text] weights | hard_negative | tags
  local runs=(
    "a_pool|$all|txt = 1.0|0|0"
    "a_dfn30|$top|txt = 1.0|0|0"
    "a_random30|$random|txt = 1.0|0|0"
    "b_long|$top|txt = 0.0\nlong_pos = 1.0|0|0"
    "b_long_neg|$top|txt = 0.0\nlong_pos = 1.0|1|0"
    "b_long_tags|$top|txt = 0.0\nlong_pos = 1.0|0|1"
    "b_hqclip|$top|txt = 0.0\nlong_pos = 1.0|1|1"
    # HQ-CLIP mixes long and short texts: half the steps' captions are the alt-texts.
    "b_mix|$top|txt = 0.5\nlong_pos = 0.5|0|0"
    "b_mix_hqclip|$top|txt = 0.5\nlong_pos = 0.5|1|1"
  )
  local work="$results/runs"
  mkdir -p "$work"
  local pids=() run name query text neg tags
  for run in "${runs[@]}"; do
    IFS='|' read -r name query text neg tags <<< "$run"
    if [[ -n "${ONLY:-}" && " $ONLY " != *" $name "* ]]; then continue; fi
    printf '[text]\n%b\n[optim]\nsteps = %s\n[loss]\nhard_negative = %s\ntags = %s\n[run]\nlog_every = 100\nsave_every = 100000\n' \
      "$text" "$STEPS" "$neg" "$tags" > "$work/$name.toml"
    rm -rf "${work:?}/$name"
    ( "$HQFLOW_TRAIN" fit -q --data "$dir/pool" --query "$query" --recipe "$work/$name.toml" \
        --out "$work/$name" --device "$DEVICE" > "$work/$name.fit.json" 2> "$work/$name.log" \
      && "$HQFLOW_TRAIN" eval -q --model "$work/$name" --data "$dir/eval" --device "$DEVICE" \
        --out "$results/$name.json" > /dev/null 2>> "$work/$name.log" \
      || { echo "science: $name failed:" >&2; tail -n 5 "$work/$name.log" >&2; } ) &
    pids+=($!)
    if (( ${#pids[@]} >= PARALLEL )); then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
  done
  wait
  summarize "$results"
}

summarize() {
  python3 - "$1" <<'PY'
import json, os, sys
results = sys.argv[1]
rows = []
for name in ["a_pool", "a_dfn30", "a_random30", "b_long", "b_long_neg", "b_long_tags", "b_hqclip",
             "b_mix", "b_mix_hqclip"]:
    path = os.path.join(results, name + ".json")
    if not os.path.exists(path):
        rows.append({"model": name, "missing": True}); continue
    m = json.load(open(path))
    fit = json.load(open(os.path.join(results, "runs", name + ".fit.json")))
    r = m["retrieval"]
    rows.append({
        "model": name,
        "rows_seen": fit["samples_seen"],
        "last_loss": fit["last_loss"],
        "zeroshot_top1": m["zeroshot"]["top1"],
        "image_to_text_r1": r["image_to_text_r1"],
        "text_to_image_r1": r["text_to_image_r1"],
        "compositional": m["compositional"]["accuracy"],
    })
json.dump(rows, open(os.path.join(results, "summary.json"), "w"), indent=1)
cols = ["model", "zeroshot_top1", "image_to_text_r1", "text_to_image_r1", "compositional"]
lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
for row in rows:
    lines.append("| " + " | ".join(
        "missing" if row.get("missing") and c != "model" else
        (f"{row[c]:.3f}" if isinstance(row.get(c), float) else str(row.get(c))) for c in cols) + " |")
open(os.path.join(results, "summary.md"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
}

case "${1:-}" in
  prepare) prepare "${2:?usage: science.sh prepare DIR}" ;;
  train) train "${2:?usage: science.sh train DIR RESULTS}" "${3:?usage: science.sh train DIR RESULTS}" ;;
  summarize) summarize "${2:?usage: science.sh summarize RESULTS}" ;;
  *) echo "usage: science.sh prepare DIR | train DIR RESULTS | summarize RESULTS" >&2; exit 2 ;;
esac
