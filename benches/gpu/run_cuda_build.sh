#!/usr/bin/env bash
# run_cuda_build.sh BINARY [ARGS...]: runs an hqflow built with `--features cuda` (see
# cuda_build_env.sh) on a GPU machine that has the CUDA 13 runtime libraries as NVIDIA's pip
# wheels of a PyTorch installation (nvidia/cu13/lib) plus the driver's libcuda.so.1.
# BINARY may be xz-compressed (*.xz); it is unpacked next to itself once.
# Env: PYTHON (the Python whose site-packages hold the nvidia wheels; default python3).
set -euo pipefail
BIN="${1:?usage: run_cuda_build.sh BINARY [ARGS...]}"; shift
PYTHON="${PYTHON:-python3}"

if [[ "$BIN" == *.xz ]]; then
  out="${BIN%.xz}"
  if [ ! -x "$out" ] || [ "$BIN" -nt "$out" ]; then
    "$PYTHON" -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$BIN" "$out"
    chmod +x "$out"
  fi
  BIN="$out"
fi

# The directories of the nvidia wheels that hold the libraries the binary links.
want='libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libnvrtc.so.13'
NVLIB="$("$PYTHON" - "$want" 2>/dev/null <<'PY' || true
import os, sys, nvidia
want = set(sys.argv[1].split())
print(":".join(sorted({r for p in nvidia.__path__ for r, _, fs in os.walk(p) if want & set(fs)})))
PY
)"
[ -n "$NVLIB" ] || { echo "run_cuda_build: $PYTHON has no nvidia CUDA 13 wheels (libcudart.so.13 ...)" >&2; exit 2; }
# libcuda.so.1 comes with the driver; containers often mount it outside the default path.
for d in /usr/local/nvidia/lib64 /usr/lib/x86_64-linux-gnu /usr/lib64; do
  [ -e "$d/libcuda.so.1" ] && NVLIB="$NVLIB:$d" && break
done
export LD_LIBRARY_PATH="$NVLIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if ldd "$BIN" | grep -q 'not found'; then
  echo "run_cuda_build: unresolved libraries:" >&2; ldd "$BIN" | grep 'not found' >&2; exit 3
fi
exec "$BIN" "$@"
