#!/usr/bin/env bash
# cuda_build_env.sh: a CUDA 13.0 build environment for hqflow's `cuda` feature (candle) on
# a machine WITHOUT a GPU, driver or system CUDA toolkit, from PyPI wheels only.
#
#   source benches/gpu/cuda_build_env.sh   # fetch (once) + stub + export the environment
#   cargo build --release --features cuda  # then carry the binary to the GPU machine and run
#                                          # it with benches/gpu/run_cuda_build.sh
#   bash benches/gpu/cuda_build_env.sh     # fetch (once) + stub + print the exports
#
# Idempotent: wheels are installed once into $HQFLOW_CUDA_CACHE (default
# $HOME/.cache/hqflow/cuda13); later runs only re-export the variables.
# Versions are those of PyPI `cuda-toolkit==13.0.2`, the metapackage that torch 2.11.0
# (cu130) pins, so the sonames/versions equal the GPU machine's torch wheels.
# Overridable: HQFLOW_CUDA_CACHE, CUDA_COMPUTE_CAP (default 90 = H100/H200), HQFLOW_PYTHON.

_hqcuda_main() {
  local cache="${HQFLOW_CUDA_CACHE:-$HOME/.cache/hqflow/cuda13}"
  local py="${HQFLOW_PYTHON:-python3}"
  local venv="$cache/venv"
  local pkgs=(
    nvidia-cuda-nvcc==13.0.88      # nvcc, ptxas, fatbinary, nvlink, cudafe++, bin2c
    nvidia-cuda-crt==13.0.88       # include/crt/* (host_config.h, ...) needed by nvcc
    nvidia-nvvm==13.0.88           # cicc + libdevice
    nvidia-cuda-cccl==13.0.85      # libcu++/CUB/Thrust headers
    nvidia-cuda-runtime==13.0.96   # libcudart.so.13 + cuda_runtime.h + cuda.h
    nvidia-cublas==13.1.0.3        # libcublas.so.13, libcublasLt.so.13
    nvidia-curand==10.4.0.35       # libcurand.so.10
    nvidia-cuda-nvrtc==13.0.88     # libnvrtc.so.13
  )
  mkdir -p "$cache" || return 1

  # 1. fetch the wheels (once)
  local stamp="$cache/.installed-13.0.2"
  if [ ! -f "$stamp" ]; then
    echo "[cuda-env] installing CUDA 13.0 wheels into $venv" >&2
    [ -x "$venv/bin/python" ] || "$py" -m venv "$venv" || return 1
    "$venv/bin/python" -m pip install --disable-pip-version-check --no-cache-dir -q "${pkgs[@]}" || return 1
    touch "$stamp"
  fi
  local cu
  cu="$("$venv/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')" || return 1
  if [ ! -x "$cu/bin/nvcc" ]; then echo "[cuda-env] no nvcc at $cu/bin/nvcc" >&2; return 1; fi

  # 2. unversioned dev symlinks (the wheels ship only libX.so.N) + libcuda stub
  local l
  for l in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libnvrtc.so.13; do
    [ -e "$cu/lib/$l" ] || { echo "[cuda-env] missing $cu/lib/$l" >&2; return 1; }
    ln -sfn "$l" "$cu/lib/${l%.so.*}.so"
  done
  mkdir -p "$cu/lib/stubs"
  if [ ! -f "$cu/lib/stubs/libcuda.so" ] || [ "$cu/include/cuda.h" -nt "$cu/lib/stubs/libcuda.so" ]; then
    echo "[cuda-env] generating libcuda.so stub (SONAME libcuda.so.1) from cuda.h" >&2
    # every cuXxx identifier of cuda.h: declared names plus the _v2/_v3/_ptsz targets of
    # its #defines (cudarc links the versioned names, e.g. cuMemAlloc_v2). Extra names are harmless.
    grep -ohE '\bcu[A-Z][A-Za-z0-9_]*\b' "$cu/include/cuda.h" | sort -u \
      | awk '{printf "int %s(void){return 999;}\n", $1}' > "$cu/lib/stubs/libcuda_stub.c"
    cc -shared -fPIC -O0 -Wl,-soname,libcuda.so.1 -o "$cu/lib/stubs/libcuda.so" \
       "$cu/lib/stubs/libcuda_stub.c" || return 1
  fi

  # 3. environment
  export CUDA_HOME="$cu"                 # cudarc: link search $CUDA_HOME/lib + lib/stubs; cudaforge: nvcc
  export NVCC="$cu/bin/nvcc"             # cudaforge (candle-kernels build.rs)
  case ":$PATH:" in *":$cu/bin:"*) ;; *) export PATH="$cu/bin:$PATH";; esac   # cudarc runs `nvcc --version`
  export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"   # H100 = sm_90 (no nvidia-smi here)
  export CUDARC_CUDA_VERSION=13000       # CUDA 13.0 bindings (matches driver 580 / torch cu130)
  case ":${LIBRARY_PATH:-}:" in *":$cu/lib:"*) ;; *) export LIBRARY_PATH="$cu/lib:$cu/lib/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}";; esac
  # NOT LD_LIBRARY_PATH: binaries are not meant to run here (no driver), and the stub must
  # never be picked up at run time.

  cat <<EOT
export CUDA_HOME='$CUDA_HOME'
export NVCC='$NVCC'
export PATH='$cu/bin':"\$PATH"
export CUDA_COMPUTE_CAP='$CUDA_COMPUTE_CAP'
export CUDARC_CUDA_VERSION='$CUDARC_CUDA_VERSION'
export LIBRARY_PATH='$LIBRARY_PATH'
EOT
}

if [ "${BASH_SOURCE[0]}" != "$0" ]; then
  _hqcuda_main; _hqcuda_rc=$?; unset -f _hqcuda_main
  [ $_hqcuda_rc -eq 0 ] || echo "[cuda-env] FAILED (rc=$_hqcuda_rc)" >&2
  return $_hqcuda_rc 2>/dev/null || true
else
  set -u
  _hqcuda_main
fi
