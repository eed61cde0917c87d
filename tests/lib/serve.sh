# Sourced by the client tests (tests/segment/run.sh, tests/rudderstack/run.sh): creates a tenant
# on a fresh data directory, starts `siyu serve` on a free port, and exports SIYU_URL,
# SIYU_WRITE_KEY and SIYU_ADMIN_KEY, plus PYTHONPATH for the shared siyu_api.py. The server is
# killed and the directory removed when the calling script exits; `stop_siyu` stops it cleanly
# first (and fails if the server does not exit cleanly).
# Usage: source tests/lib/serve.sh PATH/TO/siyu TENANT
siyu=${1:?usage: source serve.sh PATH/TO/siyu TENANT}
tenant=${2:?usage: source serve.sh PATH/TO/siyu TENANT}
work=$(mktemp -d)
pid=
trap 'if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi; rm -rf "$work"' EXIT

keys=$("$siyu" tenant create "$tenant" --data "$work/data")
export SIYU_WRITE_KEY=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["write_key"])' <<<"$keys")
export SIYU_ADMIN_KEY=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["admin_key"])' <<<"$keys")

SIYU_LOG=warn "$siyu" serve --data "$work/data" --addr 127.0.0.1:0 >"$work/out" &
pid=$!
for _ in $(seq 100); do
  grep -q 'listening on' "$work/out" 2>/dev/null && break
  sleep 0.1
done
export SIYU_URL=$(sed -n 's/^siyu listening on //p' "$work/out")
[ -n "$SIYU_URL" ] || { echo "siyu serve did not start"; exit 1; }
export PYTHONPATH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)${PYTHONPATH:+:$PYTHONPATH}"

stop_siyu() {
  kill -TERM "$pid"
  wait "$pid"
  pid=
}
