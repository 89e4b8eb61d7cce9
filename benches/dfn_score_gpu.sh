#!/usr/bin/env bash
# dfn_score on a CUDA GPU: hqflow built with `--features cuda` against PyTorch on the same GPU.
#
#   HQFLOW=path/to/hqflow benches/dfn_score_gpu.sh [DATA_DIR]
#
# 1. Agreement: dfn_score over the conformance pool (tests/data) on cpu and on cuda, same
#    binary; every score within 1e-4, the same rows NULL.
# 2. The image tower's forward GFLOP/s on the GPU against the GPU's fp32 matmul GFLOP/s.
# 3. End to end against PyTorch transformers on the GPU (benches/dfn_score.sh with
#    DEVICE=cuda), once with PyTorch decoding on its main thread and once with DataLoader
#    worker processes doing it.
#
# Env: HQFLOW (required), PYTHON (torch, transformers, pillow, pyarrow), BATCH (rows per
# forward pass on both sides, default 256), WORKERS (PyTorch decode processes for the second
# comparison, default: all cores), REPEAT (default 2), TOKENIZER_FROM (see dfn_score.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${HQFLOW:?HQFLOW must name an hqflow binary built with --features cuda}"
DATA="${1:-${TMPDIR:-/tmp}/hqflow-bench-data}"
PYTHON="${PYTHON:-python3}"
export BATCH="${BATCH:-256}" REPEAT="${REPEAT:-2}" THREADS="${THREADS:-$(nproc)}" HQFLOW PYTHON
WORKERS_MANY="${WORKERS:-$(nproc)}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== agreement: cpu and cuda on the conformance pool" >&2
query="SELECT uid, dfn_score(img, txt, 'tiny') AS s FROM p ORDER BY uid"
for device in cpu cuda; do
  "$HQFLOW" --no-cache sql -q -t p=tests/data/clip_pool.parquet -m tiny=tests/data/clip/tiny-quickgelu \
    --device "$device" --format csv "$query" > "$work/$device.csv"
done
"$PYTHON" - "$work/cpu.csv" "$work/cuda.csv" <<'PY'
import csv, json, sys
cpu, gpu = (list(csv.DictReader(open(p))) for p in sys.argv[1:3])
assert [r["uid"] for r in cpu] == [r["uid"] for r in gpu], "different rows"
diffs = []
for a, b in zip(cpu, gpu):
    assert (a["s"] == "") == (b["s"] == ""), f"NULL on one device only: {a} {b}"
    if a["s"]:
        diffs.append(abs(float(a["s"]) - float(b["s"])))
worst = max(diffs)
print(json.dumps({"check": "dfn_score cpu vs cuda", "rows": len(cpu), "scored": len(diffs), "max_abs_diff": worst}))
sys.exit(0 if worst <= 1e-4 else 1)
PY

if [ ! -f "$DATA/pool.parquet" ]; then
  "$PYTHON" benches/make_bench_data.py "$DATA" --rows "${ROWS:-2000}" ${TOKENIZER_FROM:+--tokenizer-from "$TOKENIZER_FROM"}
fi

echo "== forward rate on the GPU (also compiles the kernels once)" >&2
"$HQFLOW" bench clip-forward --model "$DATA/clip-b32" --device cuda --batch "$BATCH" --seconds 5 --matmul 4096

echo "== end to end, PyTorch decoding on its main thread" >&2
DEVICE=cuda WORKERS=0 bash benches/dfn_score.sh "$DATA"
echo "== end to end, PyTorch decoding in $WORKERS_MANY DataLoader workers" >&2
DEVICE=cuda WORKERS="$WORKERS_MANY" bash benches/dfn_score.sh "$DATA"
