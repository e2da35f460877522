#!/usr/bin/env bash
# Timelines: restore and promote (timeline 2), write on it and archive; the
# original keeps writing on timeline 1. restore-pg to a restore point on
# timeline 2 follows the new timeline; --to-timeline 1 --latest stays on the
# old one; wal-verify sees both timelines and the history file.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib_pg.sh"

pg_setup
pg_init main
pg_start main
pg_sql main "CREATE TABLE t(id int PRIMARY KEY, batch text NOT NULL)"
cairn_ok backup-pg --pgdata "$PG_DIR/main" --dsn "$(pg_dsn main)" >/dev/null
pg_sql main "INSERT INTO t SELECT g, 'A' FROM generate_series(1, 200) g"
pg_switch main

batches() { pg_sql "$1" "SELECT batch || ':' || count(*) FROM t GROUP BY batch ORDER BY batch" | tr '\n' ' '; }

# --- restore everything archived and promote: timeline 2
cairn_ok restore-pg --target "$PG_DIR/tl2" --latest --cairn "$PG_CAIRN" >/dev/null
pg_restored_start tl2
pg_wait_ready tl2
[ "$(pg_sql tl2 "SELECT timeline_id FROM pg_control_checkpoint()")" = 2 ] ||
  fail "the promoted server is not on timeline 2"
[ "$(batches tl2)" = "A:200 " ] || fail "timeline 2 starts with '$(batches tl2)'"
pg_sql tl2 "INSERT INTO t SELECT g, 'D' FROM generate_series(1001, 1100) g"
pg_sql tl2 "SELECT pg_create_restore_point('on-tl2')" >/dev/null
pg_sql tl2 "INSERT INTO t SELECT g, 'E' FROM generate_series(2001, 2100) g"
pg_switch tl2
pg_stop tl2
sysid=$(pg_sql main "SELECT system_identifier FROM pg_control_system()")
[ -n "$(find "$CAIRN_REPO/wal/$sysid/00000002" -name 00000002.history)" ] ||
  fail "the timeline 2 history file was not archived"

# --- meanwhile timeline 1 goes on
pg_sql main "INSERT INTO t SELECT g, 'X' FROM generate_series(3001, 3050) g"
pg_switch main

# --- a point on timeline 2 (the default --to-timeline latest follows it)
cairn_ok restore-pg --target "$PG_DIR/r2" --to-name on-tl2 --action pause --cairn "$PG_CAIRN" >/dev/null
expect_in "recovery to timeline 2" "restore-pg plans recovery to timeline 2" "$ERR"
pg_restored_start r2
pg_wait_paused r2
got=$(batches r2)
[ "$got" = "A:200 D:100 " ] || fail "restore to a point on timeline 2: rows '$got', expected 'A:200 D:100 '"
pg_stop r2

# --- timeline 1 explicitly: what the original has
cairn_ok restore-pg --target "$PG_DIR/r1" --latest --to-timeline 1 --cairn "$PG_CAIRN" >/dev/null
pg_restored_start r1
pg_wait_ready r1
got=$(batches r1)
[ "$got" = "A:200 X:50 " ] || fail "restore of timeline 1: rows '$got', expected 'A:200 X:50 '"
pg_stop r1

cairn_ok wal-verify >"$T/verify.out"
expect_in "timeline 2" "wal-verify reports timeline 2" "$T/verify.out"
expect_in "history archived" "wal-verify sees the history file" "$T/verify.out"

echo "PASS: pg_timeline"
