#!/usr/bin/env bash
# Runs Schemathesis against a live `siyu serve`: every operation of GET /openapi.json is called
# with generated inputs, valid and not, and every answer must be no 5xx, of a documented status
# and content type, and match its documented schema. Deterministic (fixed seed, no example
# database) and bounded (a few examples per operation). Exits non-zero on any failure.
# Usage: tests/schemathesis/run.sh PATH/TO/siyu   (needs `schemathesis`; .ci/run pins it)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
siyu=${1:?usage: run.sh PATH/TO/siyu}

# In a network namespace of its own with only loopback, where one can be made (root, as in
# CI): nothing a generated request sets up can reach past this machine.
if [ -z "${SIYU_SCHEMATHESIS_NETNS:-}" ] && unshare -n true 2>/dev/null; then
  exec env SIYU_SCHEMATHESIS_NETNS=1 unshare -n bash -c 'ip link set lo up && exec bash "$@"' _ "$0" "$@"
fi

source "$here/../lib/serve.sh" "$siyu" schemathesis-test
python3 "$here/seed.py"

# Every check but positive_data_acceptance: a schema cannot say which segment expressions
# parse, which TOML is a rules file or which strings are event types, so schema-valid input
# is often rightly refused. negative_data_rejection holds the other way round: what the
# document rules out must be refused.
checks=not_a_server_error,status_code_conformance,content_type_conformance
checks+=,response_headers_conformance,response_schema_conformance,negative_data_rejection
checks+=,missing_required_header,unsupported_method,allow_header_conformance,ignored_auth
checks+=,use_after_free,ensure_resource_availability

started=$(date +%s)
# From the server's scratch directory, so Schemathesis's own files are not left in the tree.
(cd "$work" && schemathesis --config-file "$here/schemathesis.toml" run "$SIYU_URL/openapi.json" \
  --header "Authorization: Bearer $SIYU_ADMIN_KEY" \
  --checks "$checks" \
  --max-examples "${SIYU_SCHEMATHESIS_EXAMPLES:-100}" \
  --seed 20261120 \
  --generation-database none \
  --workers 1 \
  --no-color)
echo "schemathesis: $(($(date +%s) - started)) s"
stop_siyu
