#!/usr/bin/env bash
# The Hugging Face Trainer and Lightning's WandbLogger, unchanged, logging to cairn through the
# official wandb client (python/tests/test_integrations.py), and cairn.watch on a torch model
# (python/tests/test_watch.py), and cairn's own CairnLogger and CairnCallback run as their examples
# (python/tests/test_native_integrations.py). Not in scripts/test.sh: torch from
# PyPI brings CUDA's libraries (about 3 GB to download), too much for every CI run. Makes its own
# venv (.venv-integrations) the first time; needs the cairn binary (cargo build -p cairn_cli).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv-integrations}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q torch transformers accelerate lightning pytest wandb==0.31.0
# The client is enough here (CAIRN_WHEEL_SERVER=0: no bundled server binary to build).
CAIRN_WHEEL_SERVER=0 "$VENV/bin/python" -m pip install -q ./python
[ -x target/debug/cairn ] || cargo build -p cairn_cli
CAIRN_BIN="${CAIRN_BIN:-$PWD/target/debug/cairn}" "$VENV/bin/python" -m pytest python/tests/test_integrations.py python/tests/test_watch.py python/tests/test_native_integrations.py -q "$@"
