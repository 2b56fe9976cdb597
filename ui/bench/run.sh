#!/usr/bin/env bash
# The UI render benchmark, end to end: builds cairn (release) and the UI, writes the benchmark
# project once (into $CAIRN_UI_BENCH_DIR, default /tmp/cairn-ui-bench), starts the server on it,
# and measures in headless Chromium. Figures only; nothing asserts.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${CAIRN_UI_BENCH_DIR:-/tmp/cairn-ui-bench}
npm --prefix ui run build >/dev/null
cargo build --release -p cairn_cli -p cairn_bench
if [ ! -e "$DATA/.complete" ]; then
  rm -rf "$DATA"
  ./target/release/cairn-bench ui-data "$DATA"
  touch "$DATA/.complete"
fi
PORT=${PORT:-18765}
./target/release/cairn server --data-dir "$DATA" --port "$PORT" >/tmp/cairn-ui-bench-server.log 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/api/v1/entities" >/dev/null && break; sleep 0.1; done
node ui/bench/render.mjs "http://127.0.0.1:$PORT" "${REPS:-5}"
