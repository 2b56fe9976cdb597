#!/usr/bin/env bash
# The UI's TypeScript types of the REST API (ui/src/lib/api-schema.ts), generated from the
# server's own OpenAPI document by openapi-typescript. `--check` regenerates them elsewhere and
# fails when the committed file differs (the suite runs that).
#   scripts/gen-api-types.sh [--check]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${CAIRN_BIN:-target/debug/cairn}
work=$(mktemp -d)
server_pid=
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin" server --port "$port" --data-dir "$work/data" --default-entity types >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/api/v1/info', timeout=2)" 2>/dev/null && break; sleep 0.1; done
python3 -c "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:$port/api/v1/openapi.json').read().decode())" > "$work/openapi.json"
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
