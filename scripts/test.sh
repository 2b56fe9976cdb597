#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what it needs, then runs every test.
# .ci/run calls exactly this script.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "toolchain"
command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)"; exit 1; }
cargo --version

step "layering: the client must not depend on the server or the store"
scripts/check-layers.sh

step "Rust tests (debug profile; one integration-test binary per crate)"
timeout 45m cargo test --workspace --locked

echo
echo "all tests passed"
