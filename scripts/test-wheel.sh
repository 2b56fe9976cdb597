#!/usr/bin/env bash
# The built wheel as a user gets it: a fresh venv, no target/ and no cargo on PATH. `cairn server`
# serves the web UI, Python logs a run to it, `cairn runs list` shows it. Prints the wheel's size
# and the time from `pip install` to a served UI.
#   scripts/test-wheel.sh WHEEL
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
wheel=$(realpath "$1")
work=$(mktemp -d)
server_pid=
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
size=$(stat -c %s "$wheel")
echo "wheel: $(basename "$wheel"), $((size / 1024 / 1024)) MiB ($size bytes)"
[ "$size" -le $((40 * 1024 * 1024)) ] || { echo "the wheel is over 40 MB" >&2; exit 1; }
# The bundled binary needs no glibc newer than the wheel's tag says.
tag_glibc=$(basename "$wheel" | sed -n 's/.*manylinux_\([0-9]*\)_\([0-9]*\)_.*/\1.\2/p')
if [ -n "$tag_glibc" ] && command -v objdump >/dev/null; then
  unzip -q -o "$wheel" 'cairn/_bin/cairn' -d "$work/unpacked"
  need=$(objdump -T "$work/unpacked/cairn/_bin/cairn" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -1)
  [ "$(printf '%s\n%s\n' "$need" "$tag_glibc" | sort -V | tail -1)" = "$tag_glibc" ] \
    || { echo "the bundled binary needs glibc $need, newer than the tag's $tag_glibc" >&2; exit 1; }
  echo "bundled binary: glibc $need at most (tag: $tag_glibc)"
fi
started=$(date +%s.%N)
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q "$wheel"
# Nothing of the checkout's builds, no cargo, no node: the venv and the system's basics.
export PATH="$work/venv/bin:/usr/bin:/bin"
unset CAIRN_BIN CARGO_HOME RUSTUP_HOME
! command -v cargo >/dev/null || { echo "cargo is still on PATH" >&2; exit 1; }
port=$(free_port)
cd "$work"
cairn server --port "$port" --data-dir "$work/data" --default-entity wheel --example >"$work/server.log" 2>&1 &
server_pid=$!
wait_for_cairn "http://127.0.0.1:$port"
page=$(http_get "http://127.0.0.1:$port/")
served=$(date +%s.%N)
echo "$page" | grep -q '<div id="app">' || { echo "/ is not the web UI:"; echo "$page" | head -20; exit 1; } >&2
! echo "$page" | grep -q "built without the web UI" || { echo "the server was built without the web UI" >&2; exit 1; }
asset=$(echo "$page" | grep -o '/assets/index-[^"]*\.js' | head -1)
http_get "http://127.0.0.1:$port$asset" >/dev/null || { echo "the UI's script $asset is not served" >&2; exit 1; }
echo "pip install to a served UI: $(python3 -c "print(round($served - $started, 2))") s"
CAIRN_BASE_URL="http://127.0.0.1:$port" CAIRN_SILENT=true "$work/venv/bin/python" - <<'PY'
import cairn
run = cairn.init(project="from-wheel", id="wheel-run", config={"lr": 0.1})
for i in range(10):
    run.log({"loss": 1 / (i + 1)})
run.finish()
PY
listed=$(cairn runs list wheel/from-wheel --base-url "http://127.0.0.1:$port")
echo "$listed"
echo "$listed" | grep -q "wheel-run" || { echo "cairn runs list does not show the run" >&2; exit 1; }
# --example: the seed's run, for a newcomer's first look.
for _ in $(seq 1 50); do cairn runs list wheel/awesome-project --base-url "http://127.0.0.1:$port" 2>/dev/null | grep -q "seed-example.*finished" && break; sleep 0.2; done
cairn runs list wheel/awesome-project --base-url "http://127.0.0.1:$port" | grep -q "seed-example.*finished" || { echo "no example run (--example)" >&2; cat "$work/server.log" >&2; exit 1; }
echo "the wheel works: server, UI, client and CLI"
