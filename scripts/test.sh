#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what it needs, then runs every test.
# .ci/run calls exactly this script.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

source scripts/common.sh

step "toolchain"
command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)"; exit 1; }
cargo --version
ensure_node
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || apt_install chromium
node --version
"${CHROMIUM:-/usr/bin/chromium}" --version

step "web UI: npm packages, the committed build checked against ui/src, type check, unit tests"
ensure_node
npm --prefix ui ci --no-audit --no-fund --loglevel=error
scripts/check-ui-dist.sh
npm --prefix ui run --silent check
npm --prefix ui test

step "layering: the client must not depend on the server or the store; formatting"
scripts/check-layers.sh
cargo fmt --all -- --check || { echo "the Rust code is not formatted (rustfmt.toml): run cargo fmt --all" >&2; exit 1; }
step "lints: clippy on every target and feature, warnings denied (the workspace's lints in Cargo.toml)"
timeout 20m cargo clippy --locked --workspace --all-targets --all-features -- -D warnings
step "dependencies: licenses, banned crates, sources (cargo deny, deny.toml; no advisories: they need the network)"
command -v cargo-deny >/dev/null || timeout 20m cargo install --locked cargo-deny@0.20.2
cargo deny --locked check licenses bans sources

step "test services: a venv with pytest's needs and moto (a real S3 API), a PostgreSQL cluster"
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r python/tests/requirements.txt
start_s3
start_postgres

step "Rust tests (debug profile; one integration-test binary per crate)"
timeout 45m cargo test --locked

step "release build with Node hidden: the committed UI is embedded without it"
mkdir -p target/no-node
for tool in node npm npx; do printf '#!/bin/sh\necho "%s is hidden from this build" >&2\nexit 127\n' "$tool" > "target/no-node/$tool"; done
chmod +x target/no-node/*
PATH="$PWD/target/no-node:$PATH" timeout 45m cargo build --release --locked -p cairn_cli

step "the wheel users install: the client, and that binary (server, UI, every subcommand)"
CAIRN_SERVER_BINARY="$PWD/target/release/cairn" timeout 20m scripts/build-wheel.sh target/py-wheel
# In a fresh venv with no target/ and no cargo: the server serves the UI, Python logs, the CLI lists.
timeout 10m scripts/test-wheel.sh target/py-wheel/cairn-*.whl

step "Python package: that wheel installed, its stub checked against the extension, pytest"
.venv/bin/python -m pip install -q --force-reinstall target/py-wheel/cairn-*.whl
# Names and signatures of cairn/_core.pyi against the built cairn._core (outside the checkout,
# so that the installed package is the one imported).
(cd "${TMPDIR:-/tmp}" && "$OLDPWD/.venv/bin/python" -m mypy.stubtest cairn._core)
CAIRN_BIN="$PWD/target/debug/cairn" timeout 20m .venv/bin/python -m pytest python/tests -q

step "the official wandb client, 0.19: the compatibility and import tests again, in a venv of their own"
[ -x .venv-wandb019/bin/python ] || "$PYTHON" -m venv .venv-wandb019
.venv-wandb019/bin/python -m pip install -q -r python/tests/requirements-wandb019.txt
.venv-wandb019/bin/python -m pip install -q --force-reinstall target/py-wheel/cairn-*.whl
CAIRN_BIN="$PWD/target/debug/cairn" timeout 20m .venv-wandb019/bin/python -m pytest python/tests/test_wandb.py python/tests/test_import.py -q

step "the UI's REST types, generated from the server's OpenAPI document, are current"
CAIRN_BIN="$PWD/target/debug/cairn" scripts/gen-api-types.sh --check

step "API fuzzing: schemathesis against the server's OpenAPI document, a bounded run"
CAIRN_BIN="$PWD/target/debug/cairn" timeout 15m scripts/fuzz-api.sh 10

step "fuzzing: every decoder of outside bytes (cargo fuzz), 30 s each from real seeds, after the regressions"
timeout 30m scripts/fuzz.sh 30

step "web UI end to end: headless Chromium, the real server, runs logged by the Python client"
CAIRN_BIN="$PWD/target/debug/cairn" CAIRN_PYTHON="$PWD/.venv/bin/python" timeout 20m npm --prefix ui run e2e
echo "screenshots: test-output/ui/"

echo
echo "all tests passed"
