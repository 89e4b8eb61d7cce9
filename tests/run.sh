#!/usr/bin/env bash
# hqflow's whole test suite, as CI runs it: installs what the tests need (a local
# S3-compatible server from PyPI, in a virtualenv), starts that server on loopback, runs
# every Rust test in the dev profile, and stops the server.
#
# The package pools' test needs Debian and npm packages: they are fetched (once, ~420 MB) and
# unpacked by tests/data/packages/fetch_pools.sh; when that cannot work here (no apt-get, npm
# or network), those tests are skipped with a line saying so.
#
# Chromium (Debian's, for the HTML report's screenshot test) is installed with apt-get when
# missing and the script runs as root; otherwise that screenshot is skipped.
#
# Env: CARGO_TARGET_DIR (default ~/.cache/hqflow/target, outside the clone so builds are
# reused), HQFLOW_TEST_VENV (default ~/.cache/hqflow/test-venv), HQFLOW_PACKAGES (where the
# packages are unpacked, default ~/.cache/hqflow/packages), HQFLOW_REQUIRE_PACKAGES=1 (fail
# instead of skipping when the packages cannot be fetched), HQFLOW_REQUIRE_CHROMIUM=1 (fail
# instead of skipping the screenshot without chromium).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hqflow/target}"
VENV="${HQFLOW_TEST_VENV:-$HOME/.cache/hqflow/test-venv}"
MOTO_VERSION="5.2.5"

# moto's S3 in server mode (flask) is the S3-compatible server the S3 round trip talks to.
if ! "$VENV/bin/python" -c "import moto, flask, flask_cors; assert moto.__version__ == '$MOTO_VERSION'" 2>/dev/null; then
  echo "tests/run.sh: installing moto $MOTO_VERSION into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "moto[s3]==$MOTO_VERSION" flask flask-cors
fi

port="$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
log="$(mktemp)"
"$VENV/bin/python" -m moto.server -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
moto_pid=$!
trap 'kill "$moto_pid" 2>/dev/null || true; wait "$moto_pid" 2>/dev/null || true; rm -f "$log"' EXIT

for _ in $(seq 1 100); do
  if "$VENV/bin/python" -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2).close()" 2>/dev/null; then
    break
  fi
  if ! kill -0 "$moto_pid" 2>/dev/null; then
    echo "tests/run.sh: the S3 test server failed to start:" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 0.2
done
export HQFLOW_TEST_S3_ENDPOINT="http://127.0.0.1:$port"

# Headless Chromium renders `hqflow report`'s page in tests/it/report.rs (Debian's chromium;
# installed once, as root). Without it that screenshot is skipped with a line saying so.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
  echo "tests/run.sh: installing Debian's chromium for the report screenshot test" >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1; then
    apt-get update -q >/dev/null 2>&1 || true
    apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1 \
      || echo "tests/run.sh: cannot install chromium; the report screenshot will be skipped" >&2
  fi
fi

packages="${HQFLOW_PACKAGES:-$HOME/.cache/hqflow/packages}"
fetch_status=0
bash tests/data/packages/fetch_pools.sh "$packages" || fetch_status=$?
if [[ $fetch_status -eq 0 ]]; then
  export HQFLOW_TEST_PACKAGES="$packages"
elif [[ $fetch_status -eq 3 && "${HQFLOW_REQUIRE_PACKAGES:-}" != 1 ]]; then
  echo "tests/run.sh: SKIPPED the package pools tests (tests/it/packages.rs): the packages could not be fetched (see above)" >&2
  unset HQFLOW_TEST_PACKAGES
else
  echo "tests/run.sh: fetching the packages failed (exit $fetch_status)" >&2
  exit 1
fi

cargo test --workspace --locked
