#!/usr/bin/env bash
# The media workspace benchmark: 20 runs x 200 steps x 3 image keys (12,000 images) plus 5
# histogram keys, written by the Python client into a release server (once, into
# $CAIRN_MEDIA_BENCH_DIR, default /tmp/cairn-media-bench); then, in headless Chromium, the time
# from navigation to the workspace drawn (every media and histogram panel on screen filled), and
# how many image files that fetched. Figures only; nothing asserts.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${CAIRN_MEDIA_BENCH_DIR:-/tmp/cairn-media-bench}
PORT=${PORT:-18766}
npm --prefix ui run build >/dev/null
cargo build --release -p cairn_cli
./target/release/cairn server --data-dir "$DATA/server" --port "$PORT" >/tmp/cairn-media-bench-server.log 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/api/v1/entities" >/dev/null && break; sleep 0.1; done
if [ ! -e "$DATA/.complete" ]; then
  mkdir -p "$DATA/runs"
  CAIRN_BASE_URL="http://127.0.0.1:$PORT" CAIRN_DIR="$DATA/runs" CAIRN_SILENT=true .venv/bin/python bench/media_workspace.py
  touch "$DATA/.complete"
fi
node ui/bench/media.mjs "http://127.0.0.1:$PORT" "${REPS:-5}"
