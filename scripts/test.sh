#!/usr/bin/env bash
# The whole test suite: installs and starts what the tests need (a real S3-compatible server,
# moto, on loopback; azurite; psql and psycopg for the server), then runs every test of the
# workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target

# The habits first (cheap, and a failure here is found in seconds): formatting, dependency
# direction, lints and docs with warnings denied.
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== crate dependencies point one way"
python3 scripts/check-deps.py
echo "== cargo clippy (warnings denied)"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo doc (warnings denied)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

# The PostgreSQL client the server's tests connect with (Debian's postgresql-client).
if ! command -v psql >/dev/null 2>&1; then
  echo "== installing postgresql-client (psql) from Debian"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq > target/apt.log 2>&1 || { cat target/apt.log; exit 1; }
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq postgresql-client >> target/apt.log 2>&1 \
    || { cat target/apt.log; exit 1; }
fi
echo "== $(psql --version)"

venv="${STRATALAKE_TEST_VENV:-target/moto-venv}"
if [ ! -x "$venv/bin/moto_server" ]; then
  echo "== installing moto (S3-compatible test server) into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]>=5.1,<6"
fi

# The Python clients the server's tests connect with (psycopg 3, with its own libpq).
clients="${STRATALAKE_TEST_CLIENT_VENV:-target/client-venv}"
if ! { [ -x "$clients/bin/python" ] && "$clients/bin/python" -c "import psycopg" 2>/dev/null; }; then
  echo "== installing psycopg 3 (PostgreSQL client for the server's tests) into $clients"
  python3 -m venv "$clients"
  "$clients/bin/pip" install --quiet --disable-pip-version-check "psycopg[binary]>=3.2,<3.4"
fi
STRATALAKE_TEST_CLIENT_PYTHON="$(cd "$clients" && pwd)/bin/python"
export STRATALAKE_TEST_CLIENT_PYTHON
echo "== psycopg $("$STRATALAKE_TEST_CLIENT_PYTHON" -c 'import psycopg; print(psycopg.__version__)')"

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

# Azure Blob emulator (azurite 3.35: the last release that runs on Node.js 20), ~25 s to install.
azurite="${STRATALAKE_TEST_AZURITE_DIR:-target/azurite}"
if [ ! -x "$azurite/node_modules/.bin/azurite-blob" ]; then
  echo "== installing azurite (Azure Blob emulator) into $azurite"
  mkdir -p "$azurite"
  npm install --prefix "$azurite" --no-audit --no-fund --silent azurite@3.35.0 > "$azurite/npm.log" 2>&1 \
    || { cat "$azurite/npm.log"; exit 1; }
fi
az_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$azurite/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$az_port" --inMemoryPersistence \
  --skipApiVersionCheck --loose > target/azurite.log 2>&1 &
az_pid=$!
trap 'kill "$moto_pid" "$az_pid" 2>/dev/null || true' EXIT
python3 - "$az_port" <<'PY'
# create the test container (Shared Key with the emulator's published account and key)
import base64, hashlib, hmac, http.client, sys, time
from email.utils import formatdate
port, account, container = int(sys.argv[1]), "devstoreaccount1", "stratalake-test"
key = base64.b64decode("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==")
for _ in range(100):
    try:
        date, version = formatdate(usegmt=True), "2021-08-06"
        sts = "\n".join(["PUT"] + [""] * 11) + f"\nx-ms-date:{date}\nx-ms-version:{version}\n/{account}/{account}/{container}\nrestype:container"
        sig = base64.b64encode(hmac.new(key, sts.encode(), hashlib.sha256).digest()).decode()
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("PUT", f"/{account}/{container}?restype=container", body=b"",
                  headers={"x-ms-date": date, "x-ms-version": version, "Authorization": f"SharedKey {account}:{sig}"})
        r = c.getresponse()
        if r.status in (201, 409):
            break
        sys.exit(f"azurite refused to create the container: {r.status} {r.read()[:300]!r}")
    except OSError:
        time.sleep(0.1)
else:
    sys.exit("azurite did not start: see target/azurite.log")
PY
echo "== azurite blob server on 127.0.0.1:$az_port (container stratalake-test)"
export AZURITE_BLOB_STORAGE_URL="http://127.0.0.1:$az_port"
export STRATALAKE_TEST_AZURE_CONTAINER="stratalake-test"

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
