#!/usr/bin/env bash
# MariaDB PITR after retention (issue 7), real MariaDB 10.11: two base
# backups (backup-mysql) with workload and shipped binlogs around them; then
# `cairn forget --keep-last 1 --prune` on the base backups' source removes the
# older base and, through the binlog forget hook, every archived binlog before
# the kept base's coordinates. Afterwards:
#   - PITR to a time after the kept base works (exact row state);
#   - PITR to a time before it is refused, saying no base backup ended
#     before that time (the old base and its binlogs are gone);
#   - the binlogs before the kept base's file are gone from the archive, the
#     rest are still there (binlog-verify: no gaps).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib_mysql.sh"
command -v mariabackup >/dev/null 2>&1 || skip "mariabackup missing (apt-get install mariadb-backup)"

export CAIRN_REPO=$T/repo CAIRN_CATALOG=$T/catalog.db
cairn_ok init >/dev/null
my_init main
my_start main
DF=$(my_defaults main)
sql() { my_sql main "$@"; }
STATE_Q="SELECT COUNT(*), COALESCE(SUM(id),0), COALESCE(SUM(v),0) FROM t.a"

sql "CREATE DATABASE t; CREATE TABLE t.a (id INT PRIMARY KEY, v INT) ENGINE=InnoDB"
sql "INSERT INTO t.a SELECT seq, seq FROM t.seq_1_to_100; FLUSH BINARY LOGS"
cairn_ok backup-mysql --defaults-file "$DF" >/dev/null                       # base 1: binlog.000002
sql "INSERT INTO t.a SELECT seq, seq FROM t.seq_101_to_200"
sleep 1.1
T_OLD=$(date -u +%Y-%m-%dT%H:%M:%SZ)                                          # between base 1 and 2
sleep 1.1
sql "INSERT INTO t.a SELECT seq, seq FROM t.seq_201_to_300; FLUSH BINARY LOGS"
sql "INSERT INTO t.a SELECT seq, seq FROM t.seq_301_to_400; FLUSH BINARY LOGS"
cairn_ok backup-mysql --defaults-file "$DF" --json >"$T/base2.json"          # base 2: binlog.000004
BASE2=$(json_get "$T/base2.json" 'j["id"]')
[ "$(json_get "$T/base2.json" 'j["binlog_file"]')" = binlog.000004 ] || fail "base 2 is not at binlog.000004: $(cat "$T/base2.json")"
sql "INSERT INTO t.a SELECT seq, seq FROM t.seq_401_to_500"
sleep 1.1
T_NEW=$(date -u +%Y-%m-%dT%H:%M:%SZ)
state_new=$(sql "$STATE_Q")
sleep 1.1
sql "INSERT INTO t.a SELECT seq, seq FROM t.seq_501_to_600; FLUSH BINARY LOGS"
cairn_ok binlog-push "$(my_datadir main)" >/dev/null
cairn_ok binlog-list >"$T/before.txt"
grep -q "binlog.000001" "$T/before.txt" || fail "binlog.000001 was not archived"

# before retention both targets restore (the old one from base 1)
run_cairn restore-mysql --target "$T/r_old0" --to-time "$T_OLD"
expect_rc 0 "restore-mysql --to-time T_OLD before retention"

# --- forget the older base backup (and prune), which drops old binlogs too
cairn_ok forget --source mysql:1 --keep-last 1 --prune >"$T/forget.out" 2>&1 || true
cairn_ok mysql-backups --json >"$T/bb.json"
[ "$(json_get "$T/bb.json" 'len(j)')" -eq 1 ] && [ "$(json_get "$T/bb.json" 'j[0]["snapshot"]')" = "$BASE2" ] ||
  fail "after forget, the base backups are not just base 2: $(cat "$T/bb.json")"
cairn_ok binlog-list >"$T/after.txt"
for f in binlog.000001 binlog.000002 binlog.000003; do
  grep -q "$f" "$T/after.txt" && fail "$f (before the kept base's binlog.000004) is still archived after forget"
done
grep -q "binlog.000004" "$T/after.txt" || fail "binlog.000004 (the kept base's) was deleted"
cairn_ok binlog-verify >/dev/null

# --- a time after the kept base: works, exact state
run_cairn restore-mysql --target "$MY_DIR/rnew/data" --to-time "$T_NEW" --json
expect_rc 0 "restore-mysql --to-time T_NEW after retention"
[ "$(json_get "$OUT" 'j["base"]')" = "$BASE2" ] || fail "T_NEW not restored from base 2: $(cat "$OUT")"
chown mysql: "$MY_DIR/rnew"
my_start rnew
got=$(my_sql rnew "$STATE_Q")
[ "$got" = "$state_new" ] || fail "restored state '$got', expected '$state_new'"
my_stop rnew

# --- a time before the kept base: refused, clearly
run_cairn restore-mysql --target "$T/r_old" --to-time "$T_OLD"
expect_rc 1 "restore-mysql --to-time T_OLD after retention"
expect_in "no base backup" "time before the oldest kept base" "$ERR"
expect_in "${BASE2:0:12}" "the oldest kept base named" "$ERR"
[ ! -e "$T/r_old" ] || fail "a refused restore created its target"
echo "ok"
