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
# The importers read other trackers' files; sending them is the CLI's.
forbid cairn_import cairn_store cairn_client cairn_server cairn_cli tokio axum
# Each database driver is reachable only from its backend in the store: the rules in
# cairn_store::sql and everything above talk to the port (sql::Db), never to a driver. The one
# exception is not a store: the MLflow importer opens MLflow's own SQLite file, read-only.
only_in() {
  local pattern=$1 dir=$2 found
  found=$(grep -rlP "$pattern" crates bench examples python --include=*.rs | grep -v "^$dir" || true)
  if [ -n "$found" ]; then
    echo "LAYERING: ${pattern} outside $dir:"
    echo "$found"
    fail=1
  fi
}
only_in '\brusqlite\b' 'crates/cairn_store/src/sqlite/\|crates/cairn_import/src/mlflow.rs'
only_in '(?<![\w:])postgres::' crates/cairn_store/src/postgres/

[ $fail -eq 0 ] && echo "layering ok"
exit $fail
