#!/usr/bin/env bash
# Runs every libFuzzer target for a bounded time (default 20 s each) from the
# committed corpus, with ASan+UBSan. New inputs that raise coverage are kept in
# a scratch corpus (not committed); a crash leaves crash-* files in build-fuzz/
# and fails the run. Usage: bash scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
secs=${1:-20}
command -v clang >/dev/null || { echo "fuzz: clang is not installed (apt-get install clang)"; exit 1; }
CC=clang cmake -B build-fuzz -S . -DCAIRN_FUZZ=ON -DCAIRN_SANITIZE=ON \
  -DCMAKE_C_FLAGS="-fsanitize=fuzzer-no-link" >/dev/null
cmake --build build-fuzz -j"$(nproc)" >/dev/null
status=0
for src in tests/fuzz/fuzz_*.c; do
  name=$(basename "$src" .c)
  work=build-fuzz/corpus-$name
  mkdir -p "$work"
  echo "=== $name: $secs s"
  if ! (cd build-fuzz && ./"$name" -max_total_time="$secs" -max_len=65536 -timeout=10 \
        -rss_limit_mb=1024 -print_final_stats=1 "../$work" "../tests/fuzz/corpus/$name" 2>&1 | tail -4); then
    echo "*** $name found a crash (see build-fuzz/crash-*)" >&2
    status=1
  fi
done
exit $status
