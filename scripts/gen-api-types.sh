#!/usr/bin/env bash
# The UI's TypeScript types of the REST API (ui/src/lib/api-schema.ts), generated from the
# server's own OpenAPI document by openapi-typescript. `--check` regenerates them elsewhere and
# fails when the committed file differs (the suite runs that).
#   scripts/gen-api-types.sh [--check]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
bin=${CAIRN_BIN:-target/debug/cairn}
work=$(mktemp -d)
server_pid=
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
port=$(free_port)
"$bin" server --port "$port" --data-dir "$work/data" --default-entity types >"$work/server.log" 2>&1 &
server_pid=$!
wait_for_cairn "http://127.0.0.1:$port"
http_get "http://127.0.0.1:$port/api/v1/openapi.json" > "$work/openapi.json"
out=ui/src/lib/api-schema.ts
[ "${1:-}" = "--check" ] && out="$work/api-schema.ts"
(cd ui && npx openapi-typescript "$work/openapi.json" -o "$([ "${1:-}" = "--check" ] && echo "$out" || echo "../$out")" >/dev/null)
if [ "${1:-}" = "--check" ]; then
  if ! diff -q ui/src/lib/api-schema.ts "$out" >/dev/null; then
    echo "ui/src/lib/api-schema.ts is stale against the server's OpenAPI document:" >&2
    diff ui/src/lib/api-schema.ts "$out" | head -40 >&2
    echo "regenerate it with scripts/gen-api-types.sh, and commit it" >&2
    exit 1
  fi
  echo "ui/src/lib/api-schema.ts matches the OpenAPI document"
fi
