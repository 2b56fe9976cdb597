#!/usr/bin/env bash
# Runs cairn with an example run, so there is data to look at: builds the binary (the web UI,
# committed in ui/dist, is embedded: no Node needed), starts the server on http://127.0.0.1:8080
# (data in ~/.cairn unless CAIRN_DATA_DIR says otherwise) with --example, which logs the seed's
# training loop with the Rust client, and keeps the server in the foreground.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${CAIRN_PORT:-8080}
URL="http://127.0.0.1:$PORT"

source scripts/common.sh

# Another program on the port would answer in the server's place: refuse to start instead.
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  echo "error: port $PORT is already taken (another cairn server?). Stop it, or pick a port: CAIRN_PORT=8081 $0" >&2
  exit 1
fi


echo "== building cairn (release; a few minutes the first time)"
cargo build --release --locked -p cairn_cli

./target/release/cairn server --port "$PORT" --example &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null' EXIT INT TERM
ready=""
for _ in $(seq 100); do
  if ! kill -0 "$SERVER" 2>/dev/null; then
    wait "$SERVER" || true
    echo "error: cairn server exited before it answered on $URL (see its message above)" >&2
    exit 1
  fi
  curl -fs "$URL/api/v1/info" >/dev/null 2>&1 && { ready=1; break; }
  sleep 0.2
done
[ -n "$ready" ] || { echo "error: cairn server did not answer on $URL within 20 s" >&2; exit 1; }


echo
echo "cairn is running at $URL (Ctrl+C stops it)"
wait $SERVER
