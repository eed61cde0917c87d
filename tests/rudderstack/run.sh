#!/usr/bin/env bash
# Starts `siyu serve` on a fresh data directory, runs RudderStack's own Python SDK against it,
# and stops the server. Usage: tests/rudderstack/run.sh PATH/TO/siyu
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../lib/serve.sh" "${1:?usage: run.sh PATH/TO/siyu}" rudderstack-test

python3 "$here/rudderstack_client.py"
stop_siyu
