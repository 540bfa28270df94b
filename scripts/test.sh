#!/usr/bin/env bash
# The whole test suite: installs and starts what the tests need (a real S3-compatible server,
# moto, on loopback), then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target

venv="${STRATALAKE_TEST_VENV:-target/moto-venv}"
if [ ! -x "$venv/bin/moto_server" ]; then
  echo "== installing moto (S3-compatible test server) into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]>=5.1,<6"
fi

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$venv/bin/moto_server" -H 127.0.0.1 -p "$port" > target/moto.log 2>&1 &
moto_pid=$!
trap 'kill "$moto_pid" 2>/dev/null || true' EXIT
python3 - "$port" <<'PY'
import sys, time, urllib.request
port = sys.argv[1]
for _ in range(100):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
        break
    except Exception:
        time.sleep(0.1)
else:
    sys.exit("moto did not start: see target/moto.log")
req = urllib.request.Request(f"http://127.0.0.1:{port}/stratalake-test", method="PUT")
urllib.request.urlopen(req, timeout=5)
PY
echo "== moto S3 server on 127.0.0.1:$port (bucket stratalake-test)"

export STRATALAKE_TEST_S3_ENDPOINT="http://127.0.0.1:$port"
export STRATALAKE_TEST_S3_BUCKET="stratalake-test"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1

if cargo nextest --version >/dev/null 2>&1; then
  # doctests first, so that the run closes with nextest's summary of every test
  cargo test --workspace --doc
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi
