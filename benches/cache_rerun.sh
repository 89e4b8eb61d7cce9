#!/usr/bin/env bash
# The model-output cache: a DFN filter run twice with two thresholds, whole processes timed
# (start-up, model loading and fingerprinting included). The first run computes every score
# into an empty cache; the second must compute none. A third run reads the same table with no
# model function, to separate the fixed cost (start-up, scan) from the cached path's per-row
# cost, which is what matters at scale.
#
#   benches/cache_rerun.sh [DATA_DIR]
#
# DATA_DIR holds pool.parquet and clip-b32/ (benches/make_bench_data.py makes them).
# Env: HQFLOW (a prebuilt hqflow binary; default: cargo build --release), REPEAT (default 1;
# each repeat starts from an empty cache), THREADS (default: all cores).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${1:-${TMPDIR:-/tmp}/hqflow-bench-data}"
REPEAT="${REPEAT:-1}"
THREADS="${THREADS:-$(nproc)}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hqflow/target}"
if [ -z "${HQFLOW:-}" ]; then
  cargo build --release --locked --bin hqflow >&2
  HQFLOW="$CARGO_TARGET_DIR/release/hqflow"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

timed() { # LABEL SQL: prints "LABEL SECONDS RESULT"
  local start end out
  start=$(date +%s.%N)
  out=$("$HQFLOW" --cache "$work/cache" sql -t "pool=$DATA/pool.parquet" -m "dfn=$DATA/clip-b32" \
    -s "datafusion.execution.target_partitions=$THREADS" --format csv "$2" 2>"$work/$1.err" | tail -n 1)
  end=$(date +%s.%N)
  echo "$1 $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }') $out"
}

rows=$("$HQFLOW" --no-cache sql -q -t "pool=$DATA/pool.parquet" --format csv "SELECT count(*) FROM pool" | tail -n 1)
rows_fmt=$(echo "$rows" | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta') # as hqflow prints counts
for i in $(seq 1 "$REPEAT"); do
  rm -rf "$work/cache"
  read -r _ cold kept1 < <(timed first "SELECT count(*) FROM pool WHERE dfn_score(img, txt, 'dfn') > 0.0")
  read -r _ warm kept2 < <(timed second "SELECT count(*) FROM pool WHERE dfn_score(img, txt, 'dfn') > 0.05")
  if ! grep -q "dfn_score $rows_fmt from cache, 0 computed" "$work/second.err"; then
    echo "benches/cache_rerun.sh: the second run computed scores:" >&2
    cat "$work/second.err" >&2
    exit 1
  fi
  read -r _ base _ < <(timed scan "SELECT count(*) FROM pool WHERE byte_length(img) > 0 AND txt IS NOT NULL")
  awk -v rows="$rows" -v cold="$cold" -v warm="$warm" -v base="$base" -v k1="$kept1" -v k2="$kept2" 'BEGIN {
    printf "{\"rows\": %d, \"first_s\": %.3f, \"second_s\": %.3f, \"scan_only_s\": %.3f, \"kept_first\": %d, \"kept_second\": %d, \"second_over_first\": %.4f, \"cached_row_ms\": %.4f, \"computed_row_ms\": %.3f}\n",
      rows, cold, warm, base, k1, k2, warm / cold, 1000 * (warm - base) / rows, 1000 * (cold - base) / rows
  }'
done
