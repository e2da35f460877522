#!/usr/bin/env bash
# Tablespaces: a tablespace in a temp directory outside PGDATA; backup-pg
# captures it (and its tablespace_map); restore-pg refuses its original
# location while that is in use, and with --tablespace-map OLD=NEW restores
# it elsewhere: the restored server reads the tablespace's table (rows from
# the base backup and from WAL replayed after it) from the new place.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib_pg.sh"

pg_setup
pg_init main
pg_start main
mkdir -p "$PG_DIR/ts/space1"
chown -R postgres: "$PG_DIR/ts"
pg_sql main "CREATE TABLESPACE space1 LOCATION '$PG_DIR/ts/space1'"
pg_sql main "CREATE TABLE t(id int PRIMARY KEY, v text) TABLESPACE space1"
pg_sql main "CREATE TABLE u(id int) "
pg_sql main "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 5000) g"
pg_sql main "INSERT INTO u SELECT g FROM generate_series(1, 100) g"
oid=$(pg_sql main "SELECT oid FROM pg_tablespace WHERE spcname = 'space1'")

cairn_ok_pg backup-pg --pgdata "$PG_DIR/main" --dsn "$(pg_dsn main)" --json >"$T/bb.json"
bb=$(json_get "$T/bb.json" 'j["id"]')
man=$(find "$CAIRN_REPO/snapshots" -name "$bb")
[ "$(json_get "$man" 'j["postgres"]["tablespaces"][0]["oid"]')" = "$oid" ] || fail "the manifest does not list the tablespace"
[ "$(json_get "$man" 'j["postgres"]["tablespaces"][0]["location"]')" = "$PG_DIR/ts/space1" ] || fail "the manifest has the wrong tablespace location"
grep -q "^$oid $PG_DIR/ts/space1\$" <(python3 -c 'import json,sys; sys.stdout.write(json.load(open(sys.argv[1]))["postgres"]["tablespace_map"])' "$man") ||
  fail "tablespace_map not stored"
# the tablespace's files are in the snapshot; pg_wal's contents are not
cairn_ok ls "$bb" >"$T/ls.out"
grep -q "^/\?space1/PG_15_[0-9]*/" "$T/ls.out" || { head -n 20 "$T/ls.out" >&2; fail "tablespace files not in the snapshot"; }
grep -q "^/\?main/pg_wal/0000" "$T/ls.out" && fail "pg_wal contents were backed up"

pg_sql main "INSERT INTO t SELECT g, 'after' FROM generate_series(5001, 6000) g"
pg_switch main

# --- the original location is in use: refused, nothing written
run_cairn_pg restore-pg --target "$PG_DIR/r0" --latest --cairn "$PG_CAIRN"
expect_rc 1 "restore-pg onto the tablespace's original (non-empty) location"
grep -q "tablespace $oid would be restored to '$PG_DIR/ts/space1', which is not empty" "$ERR" ||
  { cat "$ERR" >&2; fail "the refusal does not name the tablespace and its location"; }
[ ! -e "$PG_DIR/r0" ] || [ -z "$(ls -A "$PG_DIR/r0")" ] || fail "a refused restore wrote files"
# an OLD that is no tablespace of the backup
run_cairn_pg restore-pg --target "$PG_DIR/r0" --latest --tablespace-map /nowhere=/tmp/x
expect_rc 1 "restore-pg with a --tablespace-map naming no tablespace"

# --- remapped
new=$PG_DIR/ts-restored/space1
cairn_ok_pg restore-pg --target "$PG_DIR/r1" --latest --cairn "$PG_CAIRN" \
  --tablespace-map "$PG_DIR/ts/space1=$new" >/dev/null
[ "$(readlink "$PG_DIR/r1/pg_tblspc/$oid")" = "$new" ] || fail "pg_tblspc/$oid does not point to $new"
grep -q "^$oid $new\$" "$PG_DIR/r1/tablespace_map" || fail "tablespace_map not remapped"
ls -d "$new"/PG_15_* >/dev/null || fail "no tablespace files in $new"
[ "$(stat -c %U "$new")" = postgres ] || fail "$new is not owned by postgres"
[ ! -e "$PG_DIR/r1/space1" ] && [ ! -e "$PG_DIR/r1/main" ] && [ ! -e "$PG_DIR/r1/.cairn-pg-staging" ] ||
  fail "snapshot roots left in the data directory"
pg_restored_start r1
pg_wait_ready r1
[ "$(pg_sql r1 "SELECT count(*) FROM t")" = 6000 ] || fail "tablespace table: $(pg_sql r1 "SELECT count(*) FROM t") rows, expected 6000"
[ "$(pg_sql r1 "SELECT count(*) FROM u")" = 100 ] || fail "default-tablespace table lost rows"
[ "$(pg_sql r1 "SELECT pg_tablespace_location($oid)")" = "$new" ] || fail "the restored server's tablespace is not at $new"
[ "$(pg_sql r1 "SELECT count(*) FROM t WHERE v = md5(id::text)")" = 5000 ] || fail "tablespace rows differ"
pg_stop r1

# --- a second base backup deduplicates against the first
cairn_ok_pg backup-pg --pgdata "$PG_DIR/main" --dsn "$(pg_dsn main)" --json >"$T/bb2.json"
s1=$(json_get "$T/bb.json" 'j["bytes_stored"]')
s2=$(json_get "$T/bb2.json" 'j["bytes_stored"]')
[ "$s2" -lt $((s1 / 2)) ] || fail "the second base backup stored $s2 bytes, the first $s1: no dedup"

# --- by default, back to the original location (once it is free)
pg_stop main
mv "$PG_DIR/ts/space1" "$PG_DIR/ts/space1.orig"
cairn_ok_pg restore-pg --target "$PG_DIR/r2" --latest --cairn "$PG_CAIRN" >/dev/null
[ "$(readlink "$PG_DIR/r2/pg_tblspc/$oid")" = "$PG_DIR/ts/space1" ] || fail "default restore: the link does not point to the original location"
ls -d "$PG_DIR/ts/space1"/PG_15_* >/dev/null || fail "default restore: no tablespace files at the original location"
cmp -s "$PG_DIR/r2/tablespace_map" <(python3 -c 'import json,sys; sys.stdout.write(json.load(open(sys.argv[1]))["postgres"]["tablespace_map"])' "$(find "$CAIRN_REPO/snapshots" -name "$(json_get "$T/bb2.json" 'j["id"]')")") ||
  fail "default restore: tablespace_map is not byte for byte"
pg_restored_start r2
pg_wait_ready r2
[ "$(pg_sql r2 "SELECT count(*) FROM t")" = 6000 ] || fail "default restore: tablespace table has the wrong row count"
pg_stop r2

echo "PASS: pg_tablespace"
