#!/usr/bin/env bash
# Runs every fuzz target (fuzz/, cargo fuzz on the stable toolchain, no sanitizer: Rust's own
# checks, with debug assertions and overflow checks on) for a bounded time each, from its seed
# corpus (fuzz/seeds, made from real data by fuzz/make-seeds.py), after replaying every input a
# fuzzer once crashed on (fuzz/regressions). Exits non-zero, naming the input, on the first crash.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default 30 s, every target)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-30}"
shift || true
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
cargo fuzz build -s none -a >/dev/null 2>&1 || cargo fuzz build -s none -a
for target in "${targets[@]}"; do
  if [ -d "fuzz/regressions/$target" ]; then
    # Each file once: a fixed crash stays fixed.
    cargo fuzz run -s none -a "$target" fuzz/regressions/"$target"/* -- -rss_limit_mb=2048 >"fuzz/artifacts-$target.log" 2>&1 \
      || { tail -40 "fuzz/artifacts-$target.log"; echo "fuzz: $target: a regression input crashes it again" >&2; exit 1; }
  fi
  mkdir -p "fuzz/corpus/$target"
  if ! cargo fuzz run -s none -a "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >"fuzz/artifacts-$target.log" 2>&1; then
    grep -E "panicked|ERROR|SUMMARY|Test unit written|^thread" -A3 "fuzz/artifacts-$target.log" | head -40
    echo "fuzz: $target crashed; the input is in fuzz/artifacts/$target/ (add it to fuzz/regressions/$target/ once fixed)" >&2
    exit 1
  fi
  runs=$(grep -oE "stat::number_of_executed_units: *[0-9]+" "fuzz/artifacts-$target.log" | grep -oE "[0-9]+$" || echo "?")
  cov=$(grep -oE "cov: [0-9]+" "fuzz/artifacts-$target.log" | tail -1 || true)
  echo "fuzz: $target: ${runs} inputs in ${seconds} s, ${cov}, no crash"
  rm -f "fuzz/artifacts-$target.log"
done
