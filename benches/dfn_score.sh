#!/usr/bin/env bash
# dfn_score end to end, hqflow against PyTorch transformers + PIL: same ViT-B/32-shaped
# checkpoint, same Parquet table of JPEGs, same thread count, alternating runs (A B A B …),
# whole processes timed (start-up and model loading included on both sides).
#
#   benches/dfn_score.sh [DATA_DIR]
#
# Env: PYTHON (a Python with torch, transformers, pillow, pyarrow; open_clip_torch to make the
# data without TOKENIZER_FROM), THREADS (default: all cores), ROWS (default 2000), REPEAT
# (default 3), DEVICE (cpu or cuda; default cpu), BATCH (rows per forward pass on both sides;
# default 32 for hqflow and 64 for PyTorch, their own defaults), WORKERS (PyTorch DataLoader
# decode processes; default 0, decoding on the main thread), HQFLOW (a prebuilt hqflow binary;
# default: cargo build --release), TOKENIZER_FROM (a checkpoint directory to copy tokenizer
# files from when making the data), PRECISION (hqflow's hqflow.precision, f32 or bf16; default
# f32), TORCH_PRECISION (PyTorch's: f32, or bf16 under torch.autocast; default PRECISION).
# Prints one JSON line per run and a summary line with medians and the ratio; the score sums
# of both sides must agree, or the comparison is void.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${1:-${TMPDIR:-/tmp}/hqflow-bench-data}"
PYTHON="${PYTHON:-python3}"
THREADS="${THREADS:-$(nproc)}"
ROWS="${ROWS:-2000}"
REPEAT="${REPEAT:-3}"
DEVICE="${DEVICE:-cpu}"
WORKERS="${WORKERS:-0}"
PRECISION="${PRECISION:-f32}"
TORCH_PRECISION="${TORCH_PRECISION:-$PRECISION}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hqflow/target}"

if ! "$PYTHON" -c "import torch, transformers, PIL, pyarrow" 2>/dev/null; then
  echo "benches/dfn_score.sh: skipped: $PYTHON lacks torch/transformers/pillow/pyarrow (set PYTHON)" >&2
  exit 0
fi
if [ ! -f "$DATA/pool.parquet" ]; then
  "$PYTHON" benches/make_bench_data.py "$DATA" --rows "$ROWS" ${TOKENIZER_FROM:+--tokenizer-from "$TOKENIZER_FROM"}
fi
if [ -z "${HQFLOW:-}" ]; then
  cargo build --release --locked --bin hqflow >&2
  HQFLOW="$CARGO_TARGET_DIR/release/hqflow"
fi
HQFLOW_BATCH=(${BATCH:+-s "hqflow.model_batch=$BATCH"})

elapsed() { "$PYTHON" -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$1" "$2"; }

run_hqflow() {
  local start end out
  start=$(date +%s.%N)
  out=$(RAYON_NUM_THREADS="$THREADS" "$HQFLOW" --no-cache sql -q -t "pool=$DATA/pool.parquet" -m "dfn=$DATA/clip-b32" \
    --device "$DEVICE" "${HQFLOW_BATCH[@]}" -s "datafusion.execution.target_partitions=$THREADS" \
    -s "hqflow.precision=$PRECISION" --format ndjson \
    "SELECT count(*) AS rows, sum(dfn_score(img, txt, 'dfn')) AS score_sum FROM pool")
  end=$(date +%s.%N)
  "$PYTHON" -c "import json,sys; r=json.loads(sys.argv[1]); s=float(sys.argv[2]); print(json.dumps({'impl':'hqflow','device':sys.argv[3],'precision':sys.argv[4],'rows':r['rows'],'seconds':s,'pairs_per_s':r['rows']/s,'score_sum':r['score_sum']}))" "$out" "$(elapsed "$start" "$end")" "$DEVICE" "$PRECISION"
}

# The PyTorch side is timed as a whole process too (interpreter start and imports included),
# as hqflow's is; the script's own JSON gives its rows and score sum.
run_torch() {
  local start end out
  start=$(date +%s.%N)
  out=$("$PYTHON" benches/dfn_score_torch.py "$DATA" --threads "$THREADS" --device "$DEVICE" \
    --workers "$WORKERS" --precision "$TORCH_PRECISION" ${BATCH:+--batch "$BATCH"} 2>/dev/null)
  end=$(date +%s.%N)
  "$PYTHON" -c "import json,sys; r=json.loads(sys.argv[1]); s=float(sys.argv[2]); r.update(seconds=s, pairs_per_s=r['rows']/s); print(json.dumps(r))" "$out" "$(elapsed "$start" "$end")"
}

results=$(mktemp)
for _ in $(seq "$REPEAT"); do
  run_hqflow | tee -a "$results"
  run_torch | tee -a "$results"
done
"$PYTHON" - "$results" "$THREADS" "$DEVICE" "$WORKERS" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
by = {k: [r for r in runs if r["impl"] == k] for k in ("hqflow", "pytorch")}
med = {k: statistics.median(r["pairs_per_s"] for r in v) for k, v in by.items()}
sums = {k: v[0]["score_sum"] for k, v in by.items()}
rows = by["hqflow"][0]["rows"]
# Per pair, the scores may differ by JPEG decoder rounding (cosine >= 0.999 of embeddings),
# not more: a mean difference above 1e-4 means the two sides computed different things.
# Where either side rounds to bfloat16 the bound is 2e-3 (hqflow's bf16 scores are within
# about 2e-4 of its f32 ones on average).
bf16 = "bf16" in (by["hqflow"][0]["precision"], by["pytorch"][0]["precision"])
agree = rows == by["pytorch"][0]["rows"] and abs(sums["hqflow"] - sums["pytorch"]) <= (2e-3 if bf16 else 1e-4) * rows
print(json.dumps({"benchmark": "dfn_score end to end", "threads": int(sys.argv[2]), "device": sys.argv[3],
                  "pytorch_decode_workers": int(sys.argv[4]), "rows": rows,
                  "hqflow_precision": by["hqflow"][0]["precision"], "pytorch_precision": by["pytorch"][0]["precision"],
                  "hqflow_pairs_per_s": round(med["hqflow"], 2), "pytorch_pairs_per_s": round(med["pytorch"], 2),
                  "ratio": round(med["hqflow"] / med["pytorch"], 3), "score_sums_agree": agree, "score_sums": sums}))
PY
rm -f "$results"
