#!/bin/bash
# cairn check --read-data-subset: reading part of the data, the way a large
# repository on S3 is verified over a week without reading all of it each
# night.
#  - N/M: parts 1/M..M/M read every indexed pack exactly once between them
#    (the same split on every run), and the one part holding a damaged pack
#    is the one that reports it (exit 1, naming the pack); the others pass;
#  - P%: ceil(P% of the packs) are read, a different choice across runs;
#  - SIZE: the packs read never add up to more than SIZE;
#  - bad values, and --read-data together with a subset, are usage errors.
# The packs read are checked against the store's own access when strace is
# installed: a pack counts as read when the run opened it more often than a
# check without data read does (that one opens the packs holding trees).
source "$(dirname "$0")/lib.sh"

export CAIRN_REPO=$T/repo CAIRN_CATALOG=$T/catalog.db
cairn_ok init >/dev/null
python3 - "$CAIRN_REPO/config" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["pack_size"] = 1 << 20
open(sys.argv[1], "w").write(json.dumps(c, indent=2, sort_keys=True))
PY
mkdir "$T/src"
for i in $(seq 1 24); do head -c 700000 /dev/urandom >"$T/src/f$i"; done
cairn_ok backup "$T/src" >/dev/null
NPACKS=$(find "$CAIRN_REPO/data" -type f | wc -l)
[ "$NPACKS" -ge 10 ] || fail "expected at least 10 packs to split, found $NPACKS"

# packs_read OUTFILE: "R T B" from "data read: R of T packs, B bytes"
packs_read() {
  sed -n 's/^data read: \([0-9]*\) of \([0-9]*\) packs, \([0-9]*\) bytes.*/\1 \2 \3/p' "$1"
}
# The pack files a run opened, from strace (one id per line, sorted).
HAVE_STRACE=0
command -v strace >/dev/null 2>&1 && HAVE_STRACE=1
# LeakSanitizer cannot run under ptrace: the traced runs of a sanitizer build
# leave leak checking to the untraced ones (later ASAN_OPTIONS entries win).
TRACE_ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
open_counts() { # TRACEFILE: "ID COUNT" per pack opened
  grep -E 'openat\(.*data/[0-9a-f]{2}/[0-9a-f]{64}", O_RDONLY' "$1" |
    grep -oE '[0-9a-f]{64}' | sort | uniq -c | awk '{print $2, $1}'
}
opened_packs() { # TRACEFILE: the packs opened more often than by a plain check
  join -a 1 -e 0 -o 0,1.2,2.2 <(open_counts "$1") "$T/base_counts" |
    awk '$2 > $3 {print $1}'
}
run_check() { # ARGS... ; leaves $OUT/$ERR/$RC, and $T/opened with the packs read
  if [ "$HAVE_STRACE" = 1 ]; then
    _ncmd=$((_ncmd + 1))
    OUT=$T/cmd.$_ncmd.out ERR=$T/cmd.$_ncmd.err RC=0
    ASAN_OPTIONS=$TRACE_ASAN_OPTIONS strace -f -e trace=openat -o "$T/trace" "$CAIRN" check "$@" >"$OUT" 2>"$ERR" || RC=$?
    check_no_crash "cairn check $*" "$RC" "$ERR"
    opened_packs "$T/trace" >"$T/opened"
  else
    run_cairn check "$@"
    : >"$T/opened"
  fi
}
if [ "$HAVE_STRACE" = 1 ]; then
  ASAN_OPTIONS=$TRACE_ASAN_OPTIONS strace -f -e trace=openat -o "$T/trace" "$CAIRN" check >/dev/null
  open_counts "$T/trace" >"$T/base_counts"
fi
[ "$HAVE_STRACE" = 1 ] || note "strace is not installed: the packs read are checked from cairn's own counts only"

# ---- N/M: a partition of the packs ----
M=4
: >"$T/all_opened"
total=0
for n in $(seq 1 $M); do
  run_check --read-data-subset "$n/$M"
  expect_rc 0 "check --read-data-subset $n/$M"
  read -r r t b <<<"$(packs_read "$OUT")"
  [ "$t" -eq "$NPACKS" ] || fail "subset $n/$M: total packs $t, the store has $NPACKS"
  expect_in "(subset $n/$M)" "the subset is named" "$OUT"
  total=$((total + r))
  if [ "$HAVE_STRACE" = 1 ]; then
    [ "$(wc -l <"$T/opened")" -eq "$r" ] ||
      fail "subset $n/$M says it read $r packs but opened $(wc -l <"$T/opened")"
    cat "$T/opened" >>"$T/all_opened"
    # the same part on a second run opens the same packs
    cp "$T/opened" "$T/opened.first"
    run_check --read-data-subset "$n/$M"
    cmp -s "$T/opened" "$T/opened.first" || fail "subset $n/$M read other packs on a second run"
  fi
done
[ "$total" -eq "$NPACKS" ] || fail "parts 1..$M/$M read $total packs, the store has $NPACKS"
if [ "$HAVE_STRACE" = 1 ]; then
  [ "$(sort "$T/all_opened" | uniq -d | wc -l)" -eq 0 ] || fail "a pack was read by two parts"
  [ "$(sort -u "$T/all_opened" | wc -l)" -eq "$NPACKS" ] || fail "the parts did not cover every pack"
fi

# ---- P%: ceil of the share, chosen at random ----
want=$(python3 -c "import math; print(math.ceil($NPACKS * 30 / 100))")
: >"$T/choices"
for i in 1 2 3 4 5; do
  run_check --read-data-subset 30%
  expect_rc 0 "check --read-data-subset 30%"
  read -r r t b <<<"$(packs_read "$OUT")"
  [ "$r" -eq "$want" ] || fail "30% of $NPACKS packs should read $want, read $r"
  [ "$HAVE_STRACE" = 0 ] || { [ "$(wc -l <"$T/opened")" -eq "$want" ] || fail "30%: opened $(wc -l <"$T/opened") packs"; }
  tr '\n' ' ' <"$T/opened" >>"$T/choices"
  echo >>"$T/choices"
done
if [ "$HAVE_STRACE" = 1 ] && [ "$(sort -u "$T/choices" | wc -l)" -lt 2 ]; then
  fail "five runs of 30% read the very same packs: the choice is not random"
fi
run_check --read-data-subset 100%
read -r r t b <<<"$(packs_read "$OUT")"
[ "$r" -eq "$NPACKS" ] || fail "100% read $r of $NPACKS packs"

# ---- SIZE: a byte budget ----
biggest=$(find "$CAIRN_REPO/data" -type f -printf '%s\n' | sort -n | tail -n 1)
budget=$((biggest * 3))
run_check --read-data-subset "$budget"
expect_rc 0 "check --read-data-subset $budget"
read -r r t b <<<"$(packs_read "$OUT")"
[ "$r" -ge 2 ] && [ "$b" -le "$budget" ] || fail "a budget of $budget bytes read $r packs, $b bytes"
if [ "$HAVE_STRACE" = 1 ]; then
  sum=0
  while read -r id; do
    sum=$((sum + $(stat -c %s "$CAIRN_REPO/data/${id:0:2}/$id")))
  done <"$T/opened"
  [ "$sum" -eq "$b" ] && [ "$sum" -le "$budget" ] || fail "the packs opened hold $sum bytes, cairn says $b (budget $budget)"
fi

# ---- a damaged pack: only its part reports it ----
victim=$(find "$CAIRN_REPO/data" -type f | sort | sed -n 3p)
vid=$(basename "$victim")
python3 - "$victim" <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[len(b) // 3] ^= 0x40
open(p, "wb").write(bytes(b))
PY
bad_parts=0
for n in $(seq 1 $M); do
  run_check --read-data-subset "$n/$M"
  if [ "$RC" -eq 0 ]; then
    grep -q "$vid" "$OUT" && fail "part $n/$M names the damaged pack yet passes"
  else
    expect_rc 1 "check of the part holding the damaged pack"
    expect_in "${vid:0:16}" "the failing part names the damaged pack" "$OUT"
    expect_in "problem(s) found" "the failing part says it found problems" "$OUT"
    bad_parts=$((bad_parts + 1))
  fi
done
[ "$bad_parts" -eq 1 ] || fail "$bad_parts parts reported the damaged pack, expected exactly 1"
run_cairn check --read-data
expect_rc 1 "check --read-data with a damaged pack"

# ---- usage errors ----
for bad in 0/4 5/4 4 1/0 /4 1/ 0% 101% -5% 5x "" abc 1/4x; do
  [ "$bad" = 4 ] && continue # a plain number is a size in bytes
  run_cairn check --read-data-subset "$bad"
  expect_rc 2 "check --read-data-subset '$bad'"
  expect_in "read-data-subset" "the error names the option" "$ERR"
done
run_cairn check --read-data --read-data-subset 1/2
expect_rc 2 "--read-data with --read-data-subset"
expect_in "give one" "the error says to pick one" "$ERR"
echo "PASS: check_subset"
