#!/usr/bin/env bash
# Prune and backups at the same time. A backup holds a shared lease
# (locks/<id>) from start to snapshot; prune needs the exclusive one:
#   - a backup is running (held still with SIGSTOP once its lease exists, so
#     the timing is certain): prune refuses, naming the backup's lock; the
#     backup then completes and its snapshot restores identically; afterwards
#     prune runs, and the snapshot still restores;
#   - a live exclusive lease (prune on another host): backup refuses naming it,
#     `cairn unlock` keeps it, `unlock --remove-all` removes it;
#   - stale leases (expired; or written on this host by a process that is
#     gone) are ignored by backup and prune, and removed by `cairn unlock`.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cairn_repo_init
MiB=$((1024 * 1024))

# something for prune to do: a snapshot to forget
mkdir -p "$T/old"
head -c $((3 * MiB)) /dev/urandom >"$T/old/old.bin"
backup_id "$T/old" --source old >/dev/null
echo changed >"$T/old/new.txt"; rm "$T/old/old.bin"
backup_id "$T/old" --source old >/dev/null
cairn_ok forget --source old --keep-last 1 >/dev/null

# a tree big enough that the backup is still running when we look
src=$T/src
mkdir -p "$src/a" "$src/b"
for i in 1 2 3 4; do head -c $((24 * MiB)) /dev/urandom >"$src/a/big$i.bin"; done
for i in $(seq 1 300); do echo "file $i" >"$src/b/f$i.txt"; done

echo "+ cairn backup src &  (then SIGSTOP once its lease exists)" >&2
"$CAIRN" backup "$src" --source big >"$T/bg.out" 2>"$T/bg.err" &
bg=$!
lease=
for _ in $(seq 1 500); do
  lease=$(ls "$CAIRN_REPO/locks" 2>/dev/null | head -n 1 || true)
  [ -n "$lease" ] && break
  kill -0 "$bg" 2>/dev/null || break
  sleep 0.01
done
[ -n "$lease" ] || fail "the backup never showed a lease in locks/"
kill -STOP "$bg"
kill -0 "$bg" || fail "the backup ended before prune could be tried"

run_cairn prune --grace 0
kill -CONT "$bg"
expect_rc 1 "prune during a backup"
expect_in "the repository is locked" "prune during a backup" "$ERR"
expect_in "shared lock 'locks/${lease:0:12}' of backup" "prune names the backup's lock" "$ERR"
expect_in "(pid $bg)" "prune names the backup's process" "$ERR"

rc=0; wait "$bg" || rc=$?
check_no_crash "background backup" "$rc" "$T/bg.err"
[ "$rc" -eq 0 ] || { cat "$T/bg.err" >&2; fail "the backup running during prune exited $rc"; }
snap=$(tr -d '[:space:]' <"$T/bg.out")
is_snapshot_id "$snap" || fail "the backup printed '$snap', not a snapshot id"
[ -z "$(ls -A "$CAIRN_REPO/locks")" ] || fail "the backup left its lease behind"
cairn_ok restore "$snap" --target "$T/out1" >/dev/null
compare_trees "$src" "$T/out1"

# now prune runs, and the backup's snapshot is intact
cairn_ok prune --grace 0 >"$T/prune.out"
expect_in "deleting 1 unused packs" "prune after the backup" "$T/prune.out"
cairn_ok check --read-data >/dev/null
cairn_ok restore "$snap" --target "$T/out2" >/dev/null
compare_trees "$src" "$T/out2"

# --- leases written by others ---
now_ns=$(date +%s%N)
plant() { # NAME KIND HOST PID EXPIRES_NS [BOOT_ID PID_NS]
  python3 - "$CAIRN_REPO/locks/$1" "$2" "$3" "$4" "$5" "${6:-}" "${7:-}" <<'PY'
import json, sys
path, kind, host, pid, exp, boot, pidns = sys.argv[1:]
json.dump({"version": 1, "kind": kind, "operation": "prune", "host": host, "pid": int(pid),
           "time_ns": int(exp) - 3600 * 10**9, "expires_ns": int(exp), "boot_id": boot,
           "pid_ns": pidns, "start_ticks": 0}, open(path, "w"))
PY
}
live=$(printf 'a%.0s' $(seq 1 64))
plant "$live" exclusive other-host 4242 $((now_ns + 3600 * 1000000000))
echo more >"$src/b/more.txt"
run_cairn backup "$src" --source big
expect_rc 1 "backup while another host prunes"
expect_in "exclusive lock 'locks/aaaaaaaaaaaa' of prune on host 'other-host' (pid 4242)" \
  "backup names the exclusive lock" "$ERR"
run_cairn prune --grace 0
expect_rc 1 "prune while another host prunes"
cairn_ok unlock >"$T/unlock1.out"
[ -e "$CAIRN_REPO/locks/$live" ] || fail "cairn unlock removed a live lock"
cairn_ok unlock --remove-all >"$T/unlock2.out"
[ ! -e "$CAIRN_REPO/locks/$live" ] || fail "cairn unlock --remove-all kept the lock"

# stale: expired on another host; and this host's, by a process that is gone
expired=$(printf 'b%.0s' $(seq 1 64))
plant "$expired" exclusive other-host 4242 $((now_ns - 1000000000))
sleep 0.1 & gone=$!; wait "$gone"
dead=$(printf 'c%.0s' $(seq 1 64))
plant "$dead" exclusive "$(hostname)" "$gone" $((now_ns + 3600 * 1000000000)) \
  "$(cat /proc/sys/kernel/random/boot_id)" "$(readlink /proc/self/ns/pid)"
snap2=$(backup_id "$src" --source big)
cairn_ok prune --grace 0 >/dev/null
cairn_ok unlock >"$T/unlock3.out"
expect_in "(stale: expired)" "unlock names the expired lock" "$T/unlock3.out"
expect_in "(stale: process is gone)" "unlock names the dead process's lock" "$T/unlock3.out"
[ -z "$(ls -A "$CAIRN_REPO/locks")" ] || fail "cairn unlock left stale locks"
cairn_ok restore "$snap2" --target "$T/out3" >/dev/null
compare_trees "$src" "$T/out3"

echo "PASS: prune_concurrent"
