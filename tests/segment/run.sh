#!/usr/bin/env bash
# Starts `siyu serve` on a fresh data directory, runs Segment's own Python client against it,
# and stops the server. Usage: tests/segment/run.sh PATH/TO/siyu
set -euo pipefail
siyu=${1:?usage: run.sh PATH/TO/siyu}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT

keys=$("$siyu" tenant create segment-test --data "$work/data")
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

python3 "$here/segment_client.py"
kill -TERM "$pid"
wait "$pid"
