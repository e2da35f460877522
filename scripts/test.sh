#!/usr/bin/env bash
# Build and run the whole test suite twice: the normal build (build/) and an
# AddressSanitizer + UndefinedBehaviorSanitizer build (build-asan/). Exits
# non-zero if either build or either ctest run fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

jobs=$(nproc 2>/dev/null || echo 2)
ctest_jobs=${CTEST_JOBS:-2}
status=0

echo "=== build (build/)"
cmake -B build -S .
cmake --build build -j"$jobs"
echo "=== ctest (build/)"
if ! ctest --test-dir build --output-on-failure -j"$ctest_jobs"; then
  echo "*** ctest failed in build/" >&2
  status=1
fi

echo "=== build with sanitizers (build-asan/)"
cmake -B build-asan -S . -DCAIRN_SANITIZE=ON
cmake --build build-asan -j"$jobs"
echo "=== ctest with sanitizers (build-asan/)"
if ! ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
     UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
     ctest --test-dir build-asan --output-on-failure -j"$ctest_jobs"; then
  echo "*** ctest failed in build-asan/" >&2
  status=1
fi

echo "=== static analysis (cppcheck: warnings and portability)"
if command -v cppcheck >/dev/null 2>&1; then
  if ! cppcheck --quiet --error-exitcode=1 --enable=warning,portability --inline-suppr \
       --std=c11 --suppress=missingIncludeSystem engine catalog uploaders restore agent cli; then
    echo "*** cppcheck found problems" >&2
    status=1
  fi
else
  echo "*** cppcheck is not installed (scripts/install-test-deps.sh)" >&2
  status=1
fi

echo "=== fuzz targets, ${FUZZ_SECONDS:-10} s each (scripts/fuzz.sh)"
if ! bash scripts/fuzz.sh "${FUZZ_SECONDS:-10}"; then
  echo "*** a fuzz target failed" >&2
  status=1
fi

if [ "$status" -eq 0 ]; then
  echo "=== all tests passed (normal and sanitizer builds)"
fi
exit "$status"
