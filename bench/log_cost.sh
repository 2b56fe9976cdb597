#!/usr/bin/env bash
# Instructions per `run.log()` of 10 floats, counted by callgrind (which counts, not guesses):
# the extension built with symbols (the `profiling` profile), a loop of N and of N + 10,000 steps
# with and without `log`, and the differences divided by 10,000. Prints the cost of building the
# dict (the floor), of `log` above it, and the extension's functions that take the most of it.
#
#   bench/log_cost.sh            # needs valgrind and .venv with cairn installed
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is needed (apt install valgrind)" >&2; exit 1; }
PY=${PYTHON:-.venv/bin/python}
CAIRN_WHEEL_SERVER=0 cargo build --quiet --profile profiling -p cairn_py --features pyo3/extension-module
site=$("$PY" -c 'import cairn, os; print(os.path.dirname(cairn.__file__))')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The installed package with the extension that has symbols, on a path of its own.
cp -r "$site" "$work/cairn"
cp target/profiling/lib_core.so "$work/cairn/_core.abi3.so"
cat > "$work/loop.py" <<'EOF'
import sys
n, mode = int(sys.argv[1]), sys.argv[2]
import cairn
run = cairn.init(project="log-cost", mode="offline") if mode == "log" else None
keys = ["loss", "acc", "lr"] + [f"m{k}" for k in range(3, 10)]
for i in range(n):
    d = {k: i * 1e-3 for k in keys}
    if run is not None:
        run.log(d, step=i)
if run is not None:
    run.finish()
EOF
count() {
  CAIRN_DIR="$work/runs" CAIRN_SILENT=true CAIRN_CONSOLE=off CAIRN_STATS_INTERVAL=100000 PYTHONPATH="$work" \
    valgrind --tool=callgrind --callgrind-out-file="$work/cg.$2.$1" "$PY" "$work/loop.py" "$1" "$2" 2>&1 | sed -n 's/.*Collected : //p'
}
declare -A c
for mode in floor log; do
  for n in 2000 12000; do c[$mode.$n]=$(count $n $mode); done
done
floor=$(( (c[floor.12000] - c[floor.2000]) / 10000 ))
logged=$(( (c[log.12000] - c[log.2000]) / 10000 ))
in_log=$(callgrind_annotate --inclusive=yes "$work/cg.log.12000" 2>/dev/null | grep "fastlog::log_fastcall" | head -1 | awk '{ n = $1; gsub(",", "", n); printf "%.0f", n / 12000 }')
echo "instructions per step: building the dict $floor; log() on the caller's thread $in_log;"
echo "  the whole process with log(), above the dict: $((logged - floor)) (its threads, and finish packing the log, included)"
echo "the extension's functions, inclusive, per log() (12,000 steps):"
callgrind_annotate --inclusive=yes "$work/cg.log.12000" 2>/dev/null | grep "_core.abi3.so" | head -25 | sed -E 's/ \[[^]]*\]$//' |
  awk '{ n = $1; gsub(",", "", n); sub(/^ *[0-9,]+ +\( *[0-9.]+%\) +/, ""); printf "%8.0f  %s\n", n / 12000, $0 }'
