#!/usr/bin/env bash
# dfn_score end to end at growing pool sizes: time per row and peak memory of one whole
# `hqflow sql` process that scores a world pool with the built-in DFN and writes the scores
# to Parquet (COPY, streamed). Peak RSS should stay flat as rows grow (the target: the
# largest pool within 1.2x the smallest's).
#
#   benches/scaling.sh [WORK_DIR]
#
# WORK_DIR keeps the generated pools between runs (default: a temporary directory, removed).
# Env: ROWS (pool sizes, default "10000 100000 1000000"), SIZE (image side in px, default 64),
# THREADS (default: all cores), HQFLOW (a prebuilt hqflow binary; default: cargo build
# --release), JSON (where to write one JSON line per size; default WORK_DIR/scaling.jsonl).
# The model-output cache is off, so every score is computed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS="${ROWS:-10000 100000 1000000}"
SIZE="${SIZE:-64}"
THREADS="${THREADS:-$(nproc)}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hqflow/target}"
export HQFLOW_NO_CACHE=1
if [ -z "${HQFLOW:-}" ]; then
  cargo build --release --locked --bin hqflow >&2
  HQFLOW="$CARGO_TARGET_DIR/release/hqflow"
fi
if [ -n "${1:-}" ]; then
  work="$1"
  mkdir -p "$work"
else
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
fi
JSON="${JSON:-$work/scaling.jsonl}"
: >"$JSON"

# The binary's code is 55-90 MB of each peak, and how much of it a run maps depends on how
# much of the file the page cache holds: read it whole first, so every size starts alike.
cat "$HQFLOW" >/dev/null
printf '%10s %10s %10s %12s %12s\n' rows seconds "us/row" "peak MB" "RSS ratio" >&2
first_rss=""
for n in $ROWS; do
  pool="$work/pool-$n-$SIZE"
  if [ ! -d "$pool" ]; then
    "$HQFLOW" world pool -q --rows "$n" --seed 7 --size "$SIZE" --out "$pool.part" >&2
    mv "$pool.part" "$pool"
  fi
  scored="$work/scored-$n"
  rm -rf "$scored"
  /usr/bin/time -f '%e %M' -o "$work/time-$n" \
    "$HQFLOW" sql -q -t "pool=$pool" -s "datafusion.execution.target_partitions=$THREADS" \
    "COPY (SELECT uid, dfn_score(img, txt) AS dfn_score FROM pool) TO '$scored/' \
     STORED AS PARQUET" >"$work/out-$n" 2>"$work/err-$n" || {
    cat "$work/err-$n" >&2
    exit 1
  }
  read -r seconds rss_kb <"$work/time-$n"
  written=$("$HQFLOW" sql -q -t "s=$scored" --format csv "SELECT count(*) FROM s" | tail -n 1)
  if [ "$written" != "$n" ]; then
    echo "benches/scaling.sh: $n rows in, $written scores out" >&2
    exit 1
  fi
  first_rss="${first_rss:-$rss_kb}"
  line=$(awk -v n="$n" -v s="$seconds" -v r="$rss_kb" -v f="$first_rss" -v t="$THREADS" \
    -v px="$SIZE" 'BEGIN {
      printf "{\"rows\":%d,\"seconds\":%.2f,\"us_per_row\":%.1f,\"rows_per_s\":%.0f,", n, s, 1e6*s/n, n/s
      printf "\"peak_rss_mb\":%.1f,\"rss_vs_smallest\":%.3f,\"threads\":%d,\"image_px\":%d}", r/1024, r/f, t, px
    }')
  echo "$line" >>"$JSON"
  awk -v n="$n" -v s="$seconds" -v r="$rss_kb" -v f="$first_rss" \
    'BEGIN { printf "%10d %10.2f %10.1f %12.1f %12.3f\n", n, s, 1e6*s/n, r/1024, r/f }' >&2
done
echo "JSON lines: $JSON" >&2
