#!/usr/bin/env bash
# Point-in-time restore to a time: base backup (backup-pg), rows committed at
# t1, t2, t3 with pg_switch_wal() between; restore-pg --to-time between t2 and
# t3; the restored server (another port) has exactly the t1 and t2 rows, and
# its pg_dump equals one taken at t2.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib_pg.sh"

pg_setup
pg_init main
pg_start main
pg_sql main "CREATE TABLE t(id int PRIMARY KEY, batch text NOT NULL)"
pg_sql main "INSERT INTO t SELECT g, 'before' FROM generate_series(1, 100) g"

# --- base backup
cairn_ok_pg backup-pg --pgdata "$PG_DIR/main" --dsn "$(pg_dsn main)" --json >"$T/bb.json"
bb=$(json_get "$T/bb.json" 'j["id"]')
is_snapshot_id "$bb" || fail "backup-pg did not print a snapshot id"
cairn_ok_pg pg-backups --json >"$T/bbs.json"
[ "$(json_get "$T/bbs.json" 'len(j)')" = 1 ] || fail "pg-backups does not list the base backup"
[ "$(json_get "$T/bbs.json" 'j[0]["id"]')" = "$bb" ] || fail "pg-backups lists another id"
cairn_ok_pg snapshots --json >"$T/snaps.json"
[ "$(json_get "$T/snaps.json" 'len(j)')" = 1 ] || fail "backup-pg left more than one snapshot"
# the superseded first manifest is gone and the repository checks clean
cairn_ok check >/dev/null
# backup_label byte for byte in the manifest, consistency app
man=$(find "$CAIRN_REPO/snapshots" -name "$bb")
[ "$(json_get "$man" 'j["consistency"]')" = app ] || fail "base backup consistency is not app"
python3 -c 'import json,sys; sys.stdout.write(json.load(open(sys.argv[1]))["postgres"]["backup_label"])' "$man" >"$T/label.want"
grep -q '^START WAL LOCATION' "$T/label.want" || fail "manifest has no backup_label"

# pg_dump >= 15.14 brackets its output with \restrict KEY / \unrestrict KEY,
# a random key per run: leave those two lines out of the comparison
dump() {
  runuser -u postgres -- pg_dump -h "$PG_SOCK" -p "$(pg_port "$1")" -U postgres --no-sync postgres |
    grep -v '^\\\(un\)\?restrict '
}
now() { pg_sql main "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'"; }

sleep 1
pg_sql main "INSERT INTO t SELECT g, 't1' FROM generate_series(1001, 1500) g"
pg_switch main
sleep 1
pg_sql main "INSERT INTO t SELECT g, 't2' FROM generate_series(2001, 2500) g; UPDATE t SET batch = 't2-updated' WHERE id <= 10"
pg_switch main
dump main >"$T/dump-t2.sql"
sleep 1
target=$(now)
sleep 1
pg_sql main "INSERT INTO t SELECT g, 't3' FROM generate_series(3001, 3500) g; DELETE FROM t WHERE id BETWEEN 11 AND 20"
pg_switch main

# --- restore to the time between t2 and t3
cairn_ok_pg restore-pg --target "$PG_DIR/r1" --to-time "$target" --cairn "$PG_CAIRN" >"$T/restore.out"
[ "$(tr -d '[:space:]' <"$T/restore.out")" = "$bb" ] || fail "restore-pg did not choose the base backup $bb"
[ -f "$PG_DIR/r1/recovery.signal" ] || fail "no recovery.signal"
cmp -s "$T/label.want" "$PG_DIR/r1/backup_label" ||
  fail "backup_label in the data directory differs from the manifest's"
grep -q "^recovery_target_time = '" "$PG_DIR/r1/postgresql.auto.conf" || fail "no recovery_target_time written"
[ -z "$(ls -A "$PG_DIR/r1/pg_wal" | grep -v archive_status)" ] || fail "pg_wal was restored with contents"

pg_restored_start r1
pg_wait_ready r1
got=$(pg_sql r1 "SELECT batch || ':' || count(*) FROM t GROUP BY batch ORDER BY batch" | tr '\n' ' ')
# ids 11..20 still there (deleted at t3), batch 'before' = 90 - updated 10
want="before:90 t1:500 t2:500 t2-updated:10 "
[ "$got" = "$want" ] || fail "restored rows: '$got', expected '$want'"
dump r1 >"$T/dump-restored.sql"
diff -u "$T/dump-t2.sql" "$T/dump-restored.sql" >"$T/dump.diff" ||
  { head -n 40 "$T/dump.diff" >&2; fail "pg_dump of the restored server differs from the one at t2"; }
grep -q "recovery stopping before commit" "$PG_DIR/r1.log" || fail "the server log does not show recovery stopping at the target"
pg_stop r1

echo "PASS: pg_pitr_time"
