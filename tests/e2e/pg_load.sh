#!/usr/bin/env bash
# Archiving under load: pgbench writes for 60 s (PG_LOAD_SECONDS overrides)
# with archive_command = cairn wal-push; no archive command fails, the .ready
# backlog drains, and the archive holds every segment from the first to the
# last without a gap. (The whole PostgreSQL suite, ctest -R pg_, takes about
# 140 s with the 60 s load on a 2-core machine.)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib_pg.sh"
[ -x "$PG_BIN/pgbench" ] || skip "pgbench is not installed"

pg_setup
pg_init main
pg_start main
pgb() { runuser -u postgres -- "$PG_BIN/pgbench" -h "$PG_SOCK" -p "$(pg_port main)" -U postgres "$@" postgres; }
pgb -q -i -s 5 >"$T/pgbench-init.log" 2>&1 || { tail "$T/pgbench-init.log" >&2; fail "pgbench -i failed"; }
pgb -T "${PG_LOAD_SECONDS:-60}" -c 4 -j 2 >"$T/pgbench.log" 2>&1 || { tail "$T/pgbench.log" >&2; fail "pgbench failed"; }
grep -E "^tps" "$T/pgbench.log" >&2 || true
last=$(pg_sql main "SELECT pg_walfile_name(pg_switch_wal())")
pg_wait_archived main "$last"
for ((i = 0; i < 600; i++)); do
  ready=$(find "$PG_DIR/main/pg_wal/archive_status" -name '*.ready' | wc -l)
  [ "$ready" -eq 0 ] && break
  sleep 0.1
done
[ "$ready" -eq 0 ] || fail "$ready segments still waiting for archiving after 60 s"
failed=$(pg_sql main "SELECT failed_count FROM pg_stat_archiver")
[ "$failed" = 0 ] || { grep -A2 "archive command failed" "$PG_DIR/main.log" | head >&2; fail "$failed archive command failures under load"; }
archived=$(pg_sql main "SELECT archived_count FROM pg_stat_archiver")
[ "$archived" -ge 5 ] || fail "only $archived files archived under load"
cairn_ok wal-verify >"$T/verify.out"
cairn_ok wal-list --json >"$T/list.json"
[ "$(json_get "$T/list.json" 'len(j)')" -ge "$archived" ] || fail "the archive lists fewer files than PostgreSQL archived ($archived)"
echo "archived $archived files under load, none failed" >&2
echo "PASS: pg_load"
