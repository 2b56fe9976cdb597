#!/usr/bin/env bash
# The built UI (ui/dist) is committed, so that `cargo build` and `cargo install` embed it on a
# machine without Node. This fails when it is stale: it builds ui/src again, elsewhere, and
# compares. Fix a failure with `npm --prefix ui run build` and commit ui/dist.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/ui-check
rm -rf "$out"
(cd ui && npx vite build --logLevel error --outDir "../$out" --emptyOutDir)
if ! diff -r ui/dist "$out" >/dev/null; then
  echo "ui/dist is stale against ui/src (what a build makes now differs):" >&2
  diff -rq ui/dist "$out" >&2 || true
  echo "rebuild it with: npm --prefix ui run build, and commit ui/dist" >&2
  exit 1
fi
echo "ui/dist matches ui/src"
