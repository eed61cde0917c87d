#!/usr/bin/env bash
# Starts `siyu serve` on a fresh data directory, runs Segment's own Python client against it,
# and stops the server. Usage: tests/segment/run.sh PATH/TO/siyu
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../lib/serve.sh" "${1:?usage: run.sh PATH/TO/siyu}" segment-test

python3 "$here/segment_client.py"
stop_siyu
