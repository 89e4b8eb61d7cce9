#!/usr/bin/env bash
# hqflow-train on a CUDA GPU: a build with `--features cuda` against PyTorch on the same GPU.
#
#   HQFLOW_TRAIN=path/to/hqflow-train benches/train_gpu.sh TABLE_DIR [RESULTS_DIR]
#
# TABLE_DIR is a world seed table (`hqflow world seed --rows 6000 --seed 1 --size 32`).
# 1. Agreement: 20 steps of the tiny configuration (benches/train_tiny.toml) on cpu and on
#    cuda from the same seed; the loss of each step on both devices.
# 2. Throughput, tiny configuration (300 steps of 64 pairs): hqflow-train on cuda, PyTorch
#    transformers and open_clip on cuda (benches/train_torch.py).
# 3. Throughput, ViT-B/32 (benches/train_vit_b32.toml, 60 steps of 128 pairs, 6 decode
#    threads on both sides): the same three.
# Each part runs on even if an earlier one failed; results are JSON lines in RESULTS_DIR
# (default: a temporary directory) and on stdout.
#
# Env: HQFLOW_TRAIN (required: the binary, or a command such as benches/gpu/hqflow-cuda with
# HQFLOW_CUDA_BINARY set), DEVICE (default cuda; cpu runs the whole script on a machine
# without a GPU), TINY_STEPS (default 300), B32_STEPS (default 60), PYTHON (torch, transformers, pillow, pyarrow, tokenizers; open_clip
# optional: its runs are skipped with a line saying so where it is missing).
set -uo pipefail
cd "$(dirname "$0")/.."
: "${HQFLOW_TRAIN:?HQFLOW_TRAIN must name an hqflow-train built with --features cuda}"
DATA="${1:?usage: train_gpu.sh TABLE_DIR [RESULTS_DIR]}"
RESULTS="${2:-$(mktemp -d)}"
PYTHON="${PYTHON:-python3}"
DEVICE="${DEVICE:-cuda}" TINY_STEPS="${TINY_STEPS:-300}" B32_STEPS="${B32_STEPS:-60}"
mkdir -p "$RESULTS"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=0

# The last metrics line of a fit, tagged.
fit_result() { # NAME OUT_DIR
  tail -n 1 "$2/metrics.jsonl" | "$PYTHON" -c 'import json,sys; m=json.loads(sys.stdin.read()); print(json.dumps({"run": sys.argv[1], "steps": m["step"], "loss": m["loss"], "samples_per_s": m["samples_per_s"]}))' "$1" \
    | tee -a "$RESULTS/results.jsonl"
}

torch_run() { # NAME LIKE_DIR ARGS...
  local name="$1" like="$2"; shift 2
  if "$PYTHON" benches/train_torch.py "$DATA" --like "$like" --device "$DEVICE" "$@" > "$work/$name.log" 2>&1; then
    tail -n 1 "$work/$name.log" | "$PYTHON" -c 'import json,sys; m=json.loads(sys.stdin.read()); m["run"]=sys.argv[1]; print(json.dumps(m))' "$name" \
      | tee -a "$RESULTS/results.jsonl"
  else
    echo "train_gpu: $name failed:" >&2; tail -n 20 "$work/$name.log" >&2; failed=1
  fi
}

have_open_clip() { "$PYTHON" -c 'import open_clip' 2>/dev/null; }

echo "== 1. agreement: 20 steps on cpu and on $DEVICE" >&2
sed 's/^log_every = 10$/log_every = 1/' benches/train_tiny.toml > "$work/every-step.toml"
for side in reference:cpu run:"$DEVICE"; do
  name="${side%%:*}" device="${side#*:}"
  if ! "$HQFLOW_TRAIN" fit -q --data "$DATA" --out "$work/agree-$name" --recipe "$work/every-step.toml" \
      --steps 20 --device "$device" > "$work/agree-$name.log" 2>&1; then
    echo "train_gpu: fit on $device failed:" >&2; tail -n 20 "$work/agree-$name.log" >&2; failed=1
  fi
done
"$PYTHON" - "$work/agree-reference/metrics.jsonl" "$work/agree-run/metrics.jsonl" "$DEVICE" <<'PY' | tee -a "$RESULTS/results.jsonl" || failed=1
import json, sys
cpu, gpu = ([json.loads(l) for l in open(p)] for p in sys.argv[1:3])
pairs = [(a["loss"], b["loss"]) for a, b in zip(cpu, gpu)]
diffs = [abs(a - b) for a, b in pairs]
print(json.dumps({"check": "hqflow-train cpu vs " + sys.argv[3] + ", loss per step", "steps": len(pairs),
                  "cpu": [round(a, 5) for a, _ in pairs], "other": [round(b, 5) for _, b in pairs],
                  "max_abs_diff_first_step": diffs[0], "max_abs_diff": max(diffs),
                  "cpu_samples_per_s": cpu[-1]["samples_per_s"], "other_samples_per_s": gpu[-1]["samples_per_s"]}))
PY

echo "== 2. tiny configuration, $TINY_STEPS steps of 64" >&2
if "$HQFLOW_TRAIN" fit -q --data "$DATA" --out "$work/tiny" --recipe benches/train_tiny.toml --device "$DEVICE" --steps "$TINY_STEPS" \
    > "$work/tiny.log" 2>&1; then
  fit_result hqflow-tiny "$work/tiny"
  torch_run transformers-tiny "$work/tiny" --steps "$TINY_STEPS"
  if have_open_clip; then torch_run open_clip-tiny "$work/tiny" --steps "$TINY_STEPS" --impl open_clip
  else echo "train_gpu: open_clip is not installed; its runs are skipped" >&2; fi
else
  echo "train_gpu: the tiny fit failed:" >&2; tail -n 20 "$work/tiny.log" >&2; failed=1
fi

echo "== 3. ViT-B/32, $B32_STEPS steps of 128" >&2
if "$HQFLOW_TRAIN" fit -q --data "$DATA" --out "$work/b32" --recipe benches/train_vit_b32.toml --device "$DEVICE" --steps "$B32_STEPS" \
    > "$work/b32.log" 2>&1; then
  fit_result hqflow-b32 "$work/b32"
  b32=(--steps "$B32_STEPS" --batch 128 --lr 5e-4 --warmup 10 --log-every 10 --workers 6)
  torch_run transformers-b32 "$work/b32" "${b32[@]}"
  if have_open_clip; then torch_run open_clip-b32 "$work/b32" "${b32[@]}" --impl open_clip; fi
else
  echo "train_gpu: the ViT-B/32 fit failed:" >&2; tail -n 20 "$work/b32.log" >&2; failed=1
fi
echo "results: $RESULTS/results.jsonl" >&2
exit "$failed"
