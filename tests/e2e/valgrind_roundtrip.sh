#!/usr/bin/env bash
# The round trip (init, backup, unchanged backup, restore, check --read-data,
# dump) under valgrind memcheck on a small tree: no invalid reads or writes,
# no use of uninitialised memory, no definite leaks. Skipped in the sanitizer
# build (valgrind and ASan do not mix) and when valgrind is missing.
. "$(dirname "$0")/lib.sh"

command -v valgrind >/dev/null 2>&1 || skip "valgrind is not installed (scripts/install-test-deps.sh)"
if nm -an "$CAIRN" 2>/dev/null | grep __asan_init >/dev/null; then
  skip "this cairn is built with AddressSanitizer; valgrind runs in the normal build"
fi

vg() {
  valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
    --show-leak-kinds=definite --track-origins=yes "$CAIRN" "$@"
}

export CAIRN_REPO=$T/repo CAIRN_CATALOG=$T/catalog.db
mkdir -p "$T/src/d/e"
echo one >"$T/src/a"
head -c 3000000 /dev/urandom >"$T/src/d/big"
printf 'x%.0s' $(seq 1 20000) >"$T/src/d/e/text"
ln -s ../a "$T/src/d/link"
ln "$T/src/a" "$T/src/hard"

vg init >/dev/null 2>"$T/vg.log" || { cat "$T/vg.log" >&2; fail "valgrind: init"; }
for step in "backup $T/src" "backup $T/src" "restore latest --target $T/out" \
            "check --read-data" "snapshots --json" "ls latest -l"; do
  # shellcheck disable=SC2086
  vg $step >/dev/null 2>"$T/vg.log" || { cat "$T/vg.log" >&2; fail "valgrind reports errors in: cairn $step"; }
done
vg dump latest --format pax >"$T/dump.tar" 2>"$T/vg.log" || { cat "$T/vg.log" >&2; fail "valgrind: dump"; }
diff -r "$T/src" "$T/out" || fail "restored tree differs"
echo "valgrind_roundtrip: OK"
