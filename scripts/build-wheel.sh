#!/usr/bin/env bash
# Builds the cairn wheel for users: the client extension and the cairn binary (the server with its
# web UI, every subcommand), abi3, tagged manylinux_2_34. Prints where it is and its size.
#   scripts/build-wheel.sh [OUT_DIR]   (default target/wheels)
# With CAIRN_SERVER_BINARY set, that binary is bundled instead of one built here.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/wheels}
if [ -z "${CAIRN_SERVER_BINARY:-}" ]; then
  cargo build --release --locked -p cairn_cli
  export CAIRN_SERVER_BINARY=$PWD/target/release/cairn
fi
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && PY=.venv/bin/python
rm -rf "$out" && mkdir -p "$out"
MATURIN_PEP517_ARGS="--compatibility manylinux_2_34" "$PY" -m pip wheel -q --no-deps -w "$out" ./python
ls -l "$out"/cairn-*.whl
