#!/usr/bin/env bash
# wal-push --batch under pgbench load: each archive_command call also pushes
# other .ready segments in parallel; the calls for those then answer at once
# (after checking the stored object against the local file). No archive
# failure, the backlog drains, every file is archived exactly once, and a
# restore of everything archived has the same data as the server.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib_pg.sh"
[ -x "$PG_BIN/pgbench" ] || skip "pgbench is not installed"

pg_setup
# archive_command waits (without failing) while $PG_DIR/hold exists: a backlog
# of .ready segments builds up deterministically
cat >"$T/bin/push-gated" <<GATE
#!/bin/sh
while [ -e "$PG_DIR/hold" ]; do sleep 0.1; done
exec "$T/bin/cairn" wal-push --batch 3 "\$1"
GATE
chmod 755 "$T/bin/push-gated"
pg_init main "$T/bin/push-gated %p"
pg_start main
pgb() { runuser -u postgres -- "$PG_BIN/pgbench" -h "$PG_SOCK" -p "$(pg_port main)" -U postgres "$@" postgres; }
cairn_ok_pg backup-pg --pgdata "$PG_DIR/main" --dsn "$(pg_dsn main)" >/dev/null

# --- a held backlog: the first call pushes the others, which then answer at once
touch "$PG_DIR/hold"
pg_sql main "CREATE TABLE filler(v text)"
for i in 1 2 3 4 5 6; do
  pg_sql main "INSERT INTO filler SELECT md5(g::text) FROM generate_series(1, 1000) g"
  held_last=$(pg_sql main "SELECT pg_walfile_name(pg_switch_wal())")
done
sleep 0.5
ready=$(find "$PG_DIR/main/pg_wal/archive_status" -name '*.ready' | wc -l)
[ "$ready" -ge 6 ] || fail "expected a backlog of at least 6 .ready segments, found $ready"
rm -f "$PG_DIR/hold"
pg_wait_archived main "$held_last"
fast0=$(grep -c "was archived by an earlier batch" "$PG_DIR/main.log" || true)
[ "$fast0" -ge 4 ] || { grep 'cairn:' "$PG_DIR/main.log" >&2; fail "only $fast0 of the held backlog's calls answered at once"; }
pgb -q -i -s 5 >"$T/pgbench-init.log" 2>&1 || { tail "$T/pgbench-init.log" >&2; fail "pgbench -i failed"; }
pgb -T "${PG_BATCH_SECONDS:-15}" -c 4 -j 2 >"$T/pgbench.log" 2>&1 || { tail "$T/pgbench.log" >&2; fail "pgbench failed"; }
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
[ "$archived" -ge 10 ] || fail "only $archived files archived under load"
fast=$(grep -c "was archived by an earlier batch" "$PG_DIR/main.log" || true)
extra=$(grep -o "batch: [0-9]* more pushed" "$PG_DIR/main.log" | awk '{s += $2} END {print s + 0}')
echo "archived $archived files; $extra pushed ahead by batches, $fast calls answered at once" >&2
[ "$extra" -ge 1 ] && [ "$fast" -ge 1 ] || fail "the batch mode never pushed ahead ($extra) or never answered at once ($fast)"
# each file once: the archive holds exactly what PostgreSQL archived
cairn_ok wal-verify >/dev/null
cairn_ok wal-list --json >"$T/list.json"
[ "$(json_get "$T/list.json" 'len(j)')" = "$archived" ] || fail "the archive holds $(json_get "$T/list.json" 'len(j)') files, PostgreSQL archived $archived"

# everything archived, restored: the same data
sum() { pg_sql "$1" "SELECT sum(abalance)::text || '/' || count(*) || '/' || (SELECT count(*) FROM pgbench_history) FROM pgbench_accounts"; }
want=$(sum main)
cairn_ok_pg restore-pg --target "$PG_DIR/r1" --latest --cairn "$PG_CAIRN" >/dev/null
pg_restored_start r1
pg_wait_ready r1
[ "$(sum r1)" = "$want" ] || fail "restored: $(sum r1), server: $want"
pg_stop r1
# --- the quick answer checks the content: a different file under an archived
# name is not taken for the archived one (refused, as without --batch)
sysid=$(json_get "$T/list.json" 'j[0]["system_id"]')
seg=$(json_get "$T/list.json" '[r["name"] for r in j if len(r["name"]) == 24][-1]')
mkdir -p "$PG_DIR/fake/pg_wal/archive_status"
cairn_ok wal-fetch --system-id "$sysid" --prefetch 0 "$seg" "$PG_DIR/fake/pg_wal/$seg" >/dev/null
chown -R postgres: "$PG_DIR/fake"
pg_as "$PG_CAIRN" wal-push --batch 2 --pgdata "$PG_DIR/main" "$PG_DIR/fake/pg_wal/$seg" 2>"$T/same.err" ||
  { cat "$T/same.err" >&2; fail "wal-push --batch of an identical copy failed"; }
grep -q "was archived by an earlier batch" "$T/same.err" || fail "an identical copy was not answered at once"
printf 'X' | dd of="$PG_DIR/fake/pg_wal/$seg" bs=1 seek=$((16 * 1024 * 1024 - 1)) conv=notrunc status=none
rc=0
pg_as "$PG_CAIRN" wal-push --batch 2 --pgdata "$PG_DIR/main" "$PG_DIR/fake/pg_wal/$seg" 2>"$T/diff.err" || rc=$?
[ "$rc" = 1 ] && grep -q REFUSING "$T/diff.err" || { cat "$T/diff.err" >&2; fail "a different file under an archived name was not refused (exit $rc)"; }

echo "PASS: pg_walbatch"
