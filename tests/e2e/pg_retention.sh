#!/usr/bin/env bash
# WAL retention through `cairn forget`: two base backups with WAL between and
# after; forget --keep-last 1 removes the older one and, through the
# PostgreSQL log-retention hook, the archived WAL before the kept backup's
# start segment. PITR to a time after the kept backup still works; to a time
# before it is refused with a clear message; the WAL objects before the kept
# backup's start are gone, the ones from it on remain.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib_pg.sh"

pg_setup
pg_init main
pg_start main
now() { pg_sql main "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'"; }
pg_sql main "CREATE TABLE t(id int PRIMARY KEY, batch text NOT NULL)"
pg_sql main "INSERT INTO t SELECT g, 'a' FROM generate_series(1, 100) g"
pg_switch main

# --- base backup 1, WAL after it
cairn_ok_pg backup-pg --pgdata "$PG_DIR/main" --dsn "$(pg_dsn main)" --json >"$T/bb1.json"
bb1=$(json_get "$T/bb1.json" 'j["id"]')
sysid=$(json_get "$T/bb1.json" 'j["system_id"]')
sleep 1
pg_sql main "INSERT INTO t SELECT g, 'b' FROM generate_series(101, 200) g"
pg_switch main
sleep 1
t_between=$(now)   # after backup 1, before backup 2
sleep 1
pg_sql main "INSERT INTO t SELECT g, 'c' FROM generate_series(201, 300) g"
pg_switch main

# --- base backup 2, WAL after it
cairn_ok_pg backup-pg --pgdata "$PG_DIR/main" --dsn "$(pg_dsn main)" --json >"$T/bb2.json"
bb2=$(json_get "$T/bb2.json" 'j["id"]')
start2=$(json_get "$T/bb2.json" 'j["start_lsn"]')
sleep 1
pg_sql main "INSERT INTO t SELECT g, 'd' FROM generate_series(301, 400) g"
pg_switch main
sleep 1
t_after=$(now)     # after backup 2
sleep 1
pg_sql main "INSERT INTO t SELECT g, 'e' FROM generate_series(401, 500) g"
pg_switch main

# the segment number of backup 2's start (16 MiB segments): LSN hi/lo
seg2=$(python3 -c 'import sys; h,l=sys.argv[1].split("/"); print("%016X" % ((int(h,16)<<32 | int(l,16)) >> 24))' "$start2")
# objects named by segment number (timeline 1): the 16 hex digits after the timeline
walobjs() { find "$CAIRN_REPO/wal/$sysid" -type f ! -name '*.history' -printf '%f\n' | sort; }
walobjs >"$T/before.lst"
before_old=$(awk -v s="$seg2" 'substr($0, 9, 16) < s' "$T/before.lst" | wc -l)
before_new=$(awk -v s="$seg2" 'substr($0, 9, 16) >= s' "$T/before.lst" | wc -l)
[ "$before_old" -ge 3 ] || fail "expected WAL archived before backup 2's start, found $before_old objects"
[ "$before_new" -ge 3 ] || fail "expected WAL archived from backup 2's start on, found $before_new objects"

# --- a dry run deletes nothing but says what it would
cairn_ok forget --keep-last 1 --dry-run >"$T/dry.out"
grep -q "would delete $before_old archived WAL files" "$T/dry.out" ||
  { cat "$T/dry.out" >&2; fail "forget --dry-run does not report the WAL it would delete"; }
walobjs | cmp -s - "$T/before.lst" || fail "forget --dry-run deleted WAL objects"

# --- forget the older base backup
cairn_ok forget --keep-last 1 >"$T/forget.out"
grep -q "remove ${bb1:0:12}" "$T/forget.out" || fail "forget did not remove base backup 1"
grep -q "deleted $before_old archived WAL files" "$T/forget.out" ||
  { cat "$T/forget.out" >&2; fail "forget did not report the WAL it deleted"; }
cairn_ok_pg pg-backups --json >"$T/bbs.json"
[ "$(json_get "$T/bbs.json" '",".join(b["id"] for b in j)')" = "$bb2" ] || fail "pg-backups after forget: $(cat "$T/bbs.json")"
walobjs >"$T/after.lst"
left_old=$(awk -v s="$seg2" 'substr($0, 9, 16) < s' "$T/after.lst" | wc -l)
[ "$left_old" -eq 0 ] || fail "WAL before backup 2's start remains: $(awk -v s="$seg2" 'substr($0, 9, 16) < s' "$T/after.lst" | tr '\n' ' ')"
awk -v s="$seg2" 'substr($0, 9, 16) >= s' "$T/before.lst" | cmp -s - "$T/after.lst" ||
  fail "WAL from backup 2's start on was touched: before $(tr '\n' ' ' <"$T/before.lst"), after $(tr '\n' ' ' <"$T/after.lst")"
# the catalog agrees with the store; no gap reported
cairn_ok wal-list --json >"$T/wl.json"
[ "$(json_get "$T/wl.json" 'len([r for r in j if not r["name"].endswith(".history")])')" = "$before_new" ] ||
  fail "wal-list does not match the objects left"
cairn_ok wal-verify >/dev/null
# a second forget has nothing more to delete
cairn_ok forget --keep-last 1 >"$T/forget2.out"
grep -q "deleted 0 archived WAL files" "$T/forget2.out" || fail "a second forget deleted more WAL"

# --- PITR before the kept backup: refused, clearly, before anything is written
run_cairn_pg restore-pg --target "$PG_DIR/r0" --to-time "$t_between" --cairn "$PG_CAIRN"
expect_rc 1 "restore-pg to a time before the oldest kept base backup"
grep -q "before the oldest base backup" "$ERR" || { cat "$ERR" >&2; fail "the refusal does not say why"; }
[ ! -e "$PG_DIR/r0" ] || [ -z "$(ls -A "$PG_DIR/r0")" ] || fail "a refused restore wrote files"

# --- PITR after the kept backup works
cairn_ok_pg restore-pg --target "$PG_DIR/r1" --to-time "$t_after" --cairn "$PG_CAIRN" >"$T/restore.out"
[ "$(tr -d '[:space:]' <"$T/restore.out")" = "$bb2" ] || fail "restore-pg did not use the kept base backup"
pg_restored_start r1
pg_wait_ready r1
got=$(pg_sql r1 "SELECT batch || ':' || count(*) FROM t GROUP BY batch ORDER BY batch" | tr '\n' ' ')
[ "$got" = "a:100 b:100 c:100 d:100 " ] || fail "restored rows: '$got'"
pg_stop r1

echo "PASS: pg_retention"
