#!/usr/bin/env bash
# Point-in-time restore to an LSN, a transaction id and a named restore point
# (pg_create_restore_point); with a WAL segment missing from the archive,
# restore-pg refuses before touching the target and names the segment.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib_pg.sh"

pg_setup
pg_init main
pg_start main
pg_sql main "CREATE TABLE t(id int PRIMARY KEY, batch text NOT NULL)"
cairn_ok backup-pg --pgdata "$PG_DIR/main" --dsn "$(pg_dsn main)" >/dev/null

# A, then the LSN right after A's commit; B in a transaction whose id we keep;
# restore point rp1; C; each batch in its own segment.
pg_sql main "INSERT INTO t SELECT g, 'A' FROM generate_series(1, 300) g"
lsn_a=$(pg_sql main "SELECT pg_current_wal_insert_lsn()")
pg_switch main
xid_b=$(pg_sql main "BEGIN; INSERT INTO t SELECT g, 'B' FROM generate_series(1001, 1300) g; SELECT txid_current(); COMMIT;" | grep -E '^[0-9]+$')
[ -n "$xid_b" ] || fail "could not read the transaction id of batch B"
pg_switch main
pg_sql main "INSERT INTO t SELECT g, 'B2' FROM generate_series(1501, 1600) g"
pg_sql main "SELECT pg_create_restore_point('rp1')" >/dev/null
pg_sql main "INSERT INTO t SELECT g, 'C' FROM generate_series(2001, 2300) g"
pg_switch main

batches() { pg_sql "$1" "SELECT batch || ':' || count(*) FROM t GROUP BY batch ORDER BY batch" | tr '\n' ' '; }

# Targets are checked with --action pause: the server stops at the target
# and stays in recovery, read-only, without starting a new timeline (a promoted
# restore would archive timeline 2, branching at its target, and the default
# --to-timeline latest would then follow that branch for the next restore).
check_restore() { # NAME WANT ARGS...
  local n=$1 want=$2 got
  shift 2
  cairn_ok restore-pg --target "$PG_DIR/$n" --cairn "$PG_CAIRN" "$@" >/dev/null
  pg_restored_start "$n"
  if [ "$1" = --latest ]; then pg_wait_ready "$n"; else pg_wait_paused "$n"; fi
  got=$(batches "$n")
  [ "$got" = "$want" ] || fail "restore-pg $*: rows '$got', expected '$want'"
  pg_stop "$n"
  echo "ok: restore-pg $* -> $got" >&2
}

check_restore r_lsn "A:300 " --to-lsn "$lsn_a" --action pause
check_restore r_xid "A:300 B:300 " --to-xid "$xid_b" --action pause
check_restore r_name "A:300 B:300 B2:100 " --to-name rp1 --action pause
# the latest state: everything archived
check_restore r_latest "A:300 B:300 B2:100 C:300 " --latest

# --- a segment missing from the archive: refused early, named, target untouched
sysid=$(pg_sql main "SELECT system_identifier FROM pg_control_system()")
missing=$(pg_sql main "SELECT pg_walfile_name('$lsn_a')")
obj=$(find "$CAIRN_REPO/wal/$sysid" -name "$missing")
[ -n "$obj" ] || fail "segment $missing is not in the archive"
mv "$obj" "$T/moved-away"
end_lsn=$(pg_sql main "SELECT pg_current_wal_lsn()")
run_cairn restore-pg --target "$PG_DIR/r_gap" --to-lsn "$end_lsn" --cairn "$PG_CAIRN"
expect_error "restore-pg with a segment missing"
expect_in "$missing" "restore-pg names the missing segment" "$ERR"
[ ! -e "$PG_DIR/r_gap" ] || fail "restore-pg wrote the target although the WAL range is incomplete"
run_cairn restore-pg --target "$PG_DIR/r_gap" --latest --cairn "$PG_CAIRN"
expect_error "restore-pg --latest with a segment missing"
expect_in "$missing" "restore-pg --latest names the missing segment" "$ERR"
# put back: planning succeeds again (dry run)
mv "$T/moved-away" "$obj"
cairn_ok restore-pg --target "$PG_DIR/r_gap" --to-lsn "$end_lsn" --dry-run >/dev/null
[ ! -e "$PG_DIR/r_gap" ] || fail "--dry-run wrote the target"

echo "PASS: pg_pitr_targets"
