#!/usr/bin/env bash
# Two backups of different sources into one repository at the same time: both
# succeed, `check --read-data` passes, and both restore identically.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MiB=$((1024 * 1024))
# Enough data that the two runs overlap, plus content both sources share so
# that both writers race to store the same chunks.
head -c $((6 * MiB)) /dev/urandom >"$T/shared.bin"
for s in A B; do
  mkdir -p "$T/src$s/dir"
  head -c $((24 * MiB)) /dev/urandom >"$T/src$s/own-$s.bin"
  cp "$T/shared.bin" "$T/src$s/shared.bin"
  for i in $(seq 1 200); do echo "source $s file $i" >"$T/src$s/dir/f$i.txt"; done
  echo "same text in both" >"$T/src$s/dir/common.txt"
done

cairn_repo_init
echo "+ cairn backup srcA & cairn backup srcB &" >&2
"$CAIRN" backup "$T/srcA" --source alpha >"$T/A.out" 2>"$T/A.err" &
pa=$!
"$CAIRN" backup "$T/srcB" --source beta >"$T/B.out" 2>"$T/B.err" &
pb=$!
ra=0; wait "$pa" || ra=$?
rb=0; wait "$pb" || rb=$?
check_no_crash "concurrent backup A" "$ra" "$T/A.err"
check_no_crash "concurrent backup B" "$rb" "$T/B.err"
[ "$ra" -eq 0 ] || { cat "$T/A.err" >&2; fail "concurrent backup A exited $ra"; }
[ "$rb" -eq 0 ] || { cat "$T/B.err" >&2; fail "concurrent backup B exited $rb"; }
ida=$(tr -d '[:space:]' <"$T/A.out"); idb=$(tr -d '[:space:]' <"$T/B.out")
is_snapshot_id "$ida" || fail "backup A printed '$ida', not a snapshot id"
is_snapshot_id "$idb" || fail "backup B printed '$idb', not a snapshot id"
[ "$ida" != "$idb" ] || fail "both backups returned the same snapshot id"

cairn_ok check --read-data >/dev/null

cairn_ok snapshots --json >"$T/snapshots.json"
python3 - "$T/snapshots.json" "$ida" "$idb" <<'PY' || fail "snapshots --json does not list both snapshots"
import json, sys
ids = {s["id"] for s in json.load(open(sys.argv[1]))}
assert {sys.argv[2], sys.argv[3]} <= ids, ids
PY

cairn_ok restore "$ida" --target "$T/outA" >/dev/null
cairn_ok restore "$idb" --target "$T/outB" >/dev/null
compare_trees "$T/srcA" "$T/outA"
compare_trees "$T/srcB" "$T/outB"

echo "PASS: concurrent"
