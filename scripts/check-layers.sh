#!/usr/bin/env bash
# Fails when a crate depends on one above it (see ARCHITECTURE.md). The client in particular is
# embedded in training processes and must never pull in the server, the store, tokio or SQL.
set -euo pipefail
cd "$(dirname "$0")/.."

deps() { cargo tree --locked -p "$1" -e normal --prefix none --format '{p}' | awk '{print $1}' | sort -u; }

fail=0
forbid() {
  local crate=$1; shift
  local found
  found=$(deps "$crate")
  for bad in "$@"; do
    if grep -qx "$bad" <<<"$found"; then
      echo "LAYERING: $crate depends on $bad"
      fail=1
    fi
  done
}

forbid cairn_types cairn_store cairn_client cairn_server cairn_cli tokio axum rusqlite pyo3
forbid cairn_client cairn_store cairn_server cairn_cli tokio axum rusqlite
forbid cairn_store cairn_client cairn_server cairn_cli axum
forbid cairn_server cairn_client cairn_cli
forbid cairn_py cairn_store cairn_server cairn_cli tokio axum rusqlite
[ $fail -eq 0 ] && echo "layering ok"
exit $fail
