#!/usr/bin/env bash
# API fuzzing against the server's own OpenAPI document (schemathesis, from the venv), on the
# real binary: every operation, generated and mutated data. Fails on a 5xx, a status the
# document does not list (each lists its own and an ErrorBody default), a response that does not
# match its schema or its content type; then the server must still answer.
#   scripts/fuzz-api.sh [EXAMPLES_PER_OPERATION]   (default 10, what the suite runs; try 500)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
examples=${1:-10}
bin=${CAIRN_BIN:-target/debug/cairn}
py=${PYTHON:-.venv/bin/python}
work=$(mktemp -d)
server_pid=
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
port=$(free_port)
url="http://127.0.0.1:$port"
# An example run, so that some generated paths find one.
"$bin" server --port "$port" --data-dir "$work/data" --default-entity fuzz --example >"$work/server.log" 2>&1 &
server_pid=$!
wait_for_cairn "$url"
status=0
# filter_too_much is hypothesis judging its own generator (free-form path segments that it must
# redraw when they do not make a URL), not the server: it failed runs at random.
# From the work folder: schemathesis keeps its cache (.schemathesis) in the current directory.
st=$(realpath "$(dirname "$py")/st")
(cd "$work" && PYTHONPATH="$OLDPWD/fuzz/schemathesis" SCHEMATHESIS_HOOKS=st_hooks "$st" run "$url/api/v1/openapi.json" --url "$url" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
  --phases examples,fuzzing --mode all --max-examples "$examples" --workers 1 --report-dir "$work/report" \
  --suppress-health-check=filter_too_much) || status=$?
# Still healthy, and no handler panicked.
http_get "$url/api/v1/info" >/dev/null \
  || { echo "the server does not answer after the fuzzing" >&2; status=1; }
kill -0 "$server_pid" 2>/dev/null || { echo "the server died during the fuzzing" >&2; status=1; }
if grep -q "panicked" "$work/server.log"; then
  echo "a request handler panicked:" >&2; grep -m5 "panicked" "$work/server.log" >&2; status=1
fi
exit $status
