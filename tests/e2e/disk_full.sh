#!/usr/bin/env bash
# A full disk, on the repository and on the restore target (small tmpfs mounts):
# a clear error naming the cause, a non-zero exit, nothing half-recorded, and
# the same command succeeds once there is room again.
. "$(dirname "$0")/lib.sh"
need_root "mounting small file systems"

mkdir -p "$T/repofs" "$T/targetfs"
mount -t tmpfs -o size=12m tmpfs "$T/repofs" 2>/dev/null || skip "cannot mount tmpfs here"
_umount() { umount "$T/repofs" 2>/dev/null || true; umount "$T/targetfs" 2>/dev/null || true; }
trap '_umount; _cleanup' EXIT

export CAIRN_REPO=$T/repofs/repo CAIRN_CATALOG=$T/catalog.db
cairn_ok init >/dev/null
mkdir -p "$T/src"
for i in 1 2 3; do head -c 6000000 /dev/urandom >"$T/src/f$i"; done
echo small >"$T/src/small"

echo "== repository full" >&2
rc=0
"$CAIRN" backup "$T/src" >"$T/out" 2>"$T/err" || rc=$?
[ "$rc" -ne 0 ] || fail "a backup of 18 MB into a 12 MB repository succeeded"
check_no_crash "backup into a full repository" "$rc" "$T/err"
echo "backup said: $(cat "$T/err")" >&2
grep -qi "no space left" "$T/err" || fail "the error does not say the disk is full: $(cat "$T/err")"
n=$("$CAIRN" snapshots --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
[ "$n" = 0 ] || fail "a failed backup recorded $n snapshot(s)"
cairn_ok check >/dev/null
left=$(find "$CAIRN_REPO/tmp" -type f 2>/dev/null | wc -l)
[ "$left" = 0 ] || fail "the failed backup left $left temp file(s) in the repository"
mount -o remount,size=64m "$T/repofs"
id=$(backup_id "$T/src")
cairn_ok check --read-data >/dev/null

echo "== restore target full" >&2
mount -t tmpfs -o size=8m tmpfs "$T/targetfs"
rc=0
"$CAIRN" restore "$id" --target "$T/targetfs/out" >"$T/out" 2>"$T/err" || rc=$?
[ "$rc" -ne 0 ] || fail "a restore of 18 MB into 8 MB succeeded"
check_no_crash "restore into a full target" "$rc" "$T/err"
echo "restore said: $(cat "$T/err")" >&2
grep -qi "no space left" "$T/err" || fail "the restore error does not say the disk is full: $(cat "$T/err")"
mount -o remount,size=64m "$T/targetfs"
cairn_ok restore "$id" --target "$T/targetfs/out" --overwrite >/dev/null
diff -r "$T/src" "$T/targetfs/out" || fail "the restore after freeing space differs from the source"
echo "disk_full: OK"
