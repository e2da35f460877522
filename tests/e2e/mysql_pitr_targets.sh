#!/usr/bin/env bash
# MariaDB point-in-time restore with a real MariaDB 10.11 (binlog on, ROW):
# a workload with known rows across several binlog files (FLUSH BINARY LOGS),
# two base backups (backup-mysql) in the middle, the binlogs shipped
# (binlog-push); then restore-mysql to
#   - a time (given with a +02:00 offset, cairn run with another TZ): exactly
#     what was committed then (row checksums and a mariadb-dump equal to ones
#     taken on the live server at that time); a transaction begun before the
#     time and committed after it is absent;
#   - a position in the middle of a binlog file;
#   - a GTID (that transaction included, the next one not);
#   - --latest (everything archived; the newer base backup is chosen);
# each checked on a normal mariadbd started on the restored directory.
# Also: a second base backup of an unchanged server stores little (dedup).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib_mysql.sh"
command -v mariabackup >/dev/null 2>&1 || skip "mariabackup missing (apt-get install mariadb-backup)"
command -v mariadb-dump >/dev/null 2>&1 || skip "mariadb-dump missing"

export CAIRN_REPO=$T/repo CAIRN_CATALOG=$T/catalog.db
export TMPDIR=$T/tmp # cairn's private temporary directories: checked for leftovers
mkdir -m 1777 "$TMPDIR"
cairn_ok init >/dev/null
my_init main
my_start main
DF=$(my_defaults main)
sql() { my_sql main "$@"; }
STATE_Q="SELECT COUNT(*), COALESCE(SUM(id),0), COALESCE(BIT_XOR(CRC32(CONCAT_WS(':',id,tag,v))),0) FROM t.a"
rows() { # FROM TO TAG: one autocommit transaction per 10 rows
  local a=$1 b=$2 tag=$3 i
  for ((i = a; i <= b; i += 10)); do
    sql "INSERT INTO t.a SELECT seq, '$tag', seq * 7 FROM t.seq_${i}_to_$((i + 9 > b ? b : i + 9))"
  done
}
master() { sql "SHOW MASTER STATUS" | awk '{print $1 ":" $2}'; }

sql "CREATE DATABASE t; CREATE TABLE t.a (id INT PRIMARY KEY, tag VARCHAR(20), v INT) ENGINE=InnoDB"
rows 1 100 A
sql "FLUSH BINARY LOGS"

# --- base backup 1, then a second one of the unchanged server
run_cairn backup-mysql --defaults-file "$DF" --json
expect_rc 0 "backup-mysql (base 1)"
cp "$OUT" "$T/base1.json"
BASE1=$(json_get "$T/base1.json" 'j["id"]')
[ "$(json_get "$T/base1.json" 'j["binlog_file"]')" = binlog.000002 ] || fail "base 1: binlog file is not binlog.000002: $(cat "$T/base1.json")"
[ "$(json_get "$T/base1.json" 'j["coordinates_from"]')" = xtrabackup_binlog_info ] || fail "base 1: coordinates not read from the stream"
[ "$(json_get "$T/base1.json" 'j["gtid"]')" = "$(sql 'SELECT @@gtid_binlog_pos')" ] || fail "base 1: GTID differs from the server's"
read1=$(json_get "$T/base1.json" 'j["bytes_read"]')
# the first backups after the inserts still carry redo log and pages InnoDB
# flushes in the background (more of it on a loaded machine); once that
# settled, an unchanged server's backup is nearly all duplicate: up to four
# tries for one that stores less than a fifth
news=
for i in 1 2 3 4; do
  cairn_ok backup-mysql --defaults-file "$DF" --json >"$T/base1-again.json"
  n=$(json_get "$T/base1-again.json" 'j["bytes_new"]')
  news="$news $n"
  [ "$n" -lt $((read1 / 5)) ] && break
done
note "base backup: $read1 bytes streamed; next backups of the unchanged server, new bytes:$news"
[ "$n" -lt $((read1 / 5)) ] || fail "base backups of an unchanged server stored$news of $read1 bytes (dedup does not work)"
ps -eo args | grep -v grep | grep "^mariabackup\|/mariabackup" | grep -q -- "$TMPDIR" &&
  fail "a mariabackup process was left running"
# the manifest carries the coordinates, and the catalog lists the base backup
cairn_ok mysql-backups --json >"$T/bb.json"
NB=$((1 + $(echo $news | wc -w)))
[ "$(json_get "$T/bb.json" 'len(j)')" -eq "$NB" ] || fail "mysql-backups does not list $NB base backups: $(cat "$T/bb.json")"

# --- workload after the base: B, (open transaction begun), time T1, commit it, C
rows 101 200 B
mkfifo "$T/fifo"
mariadb --no-defaults --socket="$MY_DIR/main/sock" -uroot <"$T/fifo" >"$T/open.out" 2>&1 &
OPEN_PID=$!
exec 7>"$T/fifo"
echo "BEGIN; INSERT INTO t.a VALUES (999, 'open', 1);" >&7
sleep 1.2
T1=$(date -u +%s)
state_T1=$(sql "$STATE_Q")
mariadb-dump --no-defaults --socket="$MY_DIR/main/sock" -uroot --single-transaction --skip-dump-date --skip-comments t >"$T/dump_T1.sql"
sleep 1.2
echo "COMMIT;" >&7
exec 7>&-
wait "$OPEN_PID" || fail "the open transaction's client failed: $(cat "$T/open.out")"
[ "$(sql 'SELECT COUNT(*) FROM t.a WHERE id = 999')" = 1 ] || fail "the open transaction did not commit"
rows 201 300 C
POS_MID=$(master)
state_mid=$(sql "$STATE_Q")
rows 301 350 D
GTID_D=$(sql "SELECT @@gtid_binlog_pos")
state_D=$(sql "$STATE_Q")
rows 351 360 D2
sql "FLUSH BINARY LOGS"
cairn_ok backup-mysql --defaults-file "$DF" --json >"$T/base2.json"
BASE2=$(json_get "$T/base2.json" 'j["id"]')
rows 361 400 E
sql "FLUSH BINARY LOGS"
rows 401 420 F
sql "FLUSH BINARY LOGS"
state_latest=$(sql "$STATE_Q")
cairn_ok binlog-push "$(my_datadir main)" >/dev/null
note "T1=$T1 mid=$POS_MID gtid_D=$GTID_D base1=${BASE1:0:12} base2=${BASE2:0:12}"
[ "$state_T1" != "$state_mid" ] && [ "$state_mid" != "$state_D" ] || fail "workload states are not distinct"

# check_restored NAME DIR EXPECTED_STATE WHAT: start mariadbd on DIR, compare
check_restored() {
  local n=$1 dir=$2 want=$3 what=$4 got
  mkdir -p "$MY_DIR/$n"
  chown mysql: "$MY_DIR/$n"
  [ "$(stat -c %U "$dir/mysql")" = mysql ] || fail "$what: the restored directory is not owned by mysql"
  ln -sfn "$dir" "$MY_DIR/$n/data"
  my_start "$n"
  got=$(my_sql "$n" "$STATE_Q")
  [ "$got" = "$want" ] || fail "$what: restored state '$got', expected '$want'"
}

# --- 1. time, given as +02:00, cairn running in another time zone
T1_OFF=$(TZ=UTC date -d "@$T1" +%Y-%m-%dT%H:%M:%S)
T1_OFF=$(python3 -c "import datetime as d; print((d.datetime.fromtimestamp($T1, d.timezone.utc).astimezone(d.timezone(d.timedelta(hours=2)))).isoformat())")
TZ=America/New_York run_cairn restore-mysql --target "$T/r_time" --to-time "$T1_OFF" --json
expect_rc 0 "restore-mysql --to-time $T1_OFF"
[ "$(json_get "$OUT" 'j["base"]')" = "$(json_get "$T/base1-again.json" 'j["id"]')" ] ||
  fail "--to-time: did not restore from a base backup before T1: $(cat "$OUT")"
expect_in "mariadbd" "how to start the server" "$ERR"
check_restored rtime "$T/r_time" "$state_T1" "--to-time"
[ "$(my_sql rtime 'SELECT COUNT(*) FROM t.a WHERE id = 999')" = 0 ] || fail "--to-time: the transaction committed after the target time is there"
mariadb-dump --no-defaults --socket="$MY_DIR/rtime/sock" -uroot --single-transaction --skip-dump-date --skip-comments t >"$T/dump_r.sql"
diff "$T/dump_T1.sql" "$T/dump_r.sql" >/dev/null || fail "--to-time: mariadb-dump differs from the one taken at the target time"
my_stop rtime

# --- 2. a position in the middle of a binlog file
run_cairn restore-mysql --target "$T/r_pos" --to-position "$POS_MID" --json
expect_rc 0 "restore-mysql --to-position $POS_MID"
[ "$(json_get "$OUT" 'j["stop_file"]'):$(json_get "$OUT" 'j["stop_pos"]')" = "$POS_MID" ] || fail "--to-position: stopped at $(cat "$OUT")"
check_restored rpos "$T/r_pos" "$state_mid" "--to-position"
[ "$(my_sql rpos 'SELECT COUNT(*) FROM t.a WHERE id = 999')" = 1 ] || fail "--to-position: the transaction committed before it is missing"
my_stop rpos

# --- 3. a GTID: that transaction included, nothing after it
run_cairn restore-mysql --target "$T/r_gtid" --to-gtid "$GTID_D" --json
expect_rc 0 "restore-mysql --to-gtid $GTID_D"
[ "$(json_get "$OUT" 'j["last_gtid"]')" = "$GTID_D" ] || fail "--to-gtid: last GTID replayed is not $GTID_D: $(cat "$OUT")"
check_restored rgtid "$T/r_gtid" "$state_D" "--to-gtid"
my_stop rgtid

# --- 4. --latest: the newer base, everything archived
run_cairn restore-mysql --target "$T/r_latest" --latest --json
expect_rc 0 "restore-mysql --latest"
[ "$(json_get "$OUT" 'j["base"]')" = "$BASE2" ] || fail "--latest did not choose the newest base backup: $(cat "$OUT")"
check_restored rlatest "$T/r_latest" "$state_latest" "--latest"
my_stop rlatest
[ -z "$(ls -A "$TMPDIR")" ] || fail "temporary files were left behind: $(ls -A "$TMPDIR")"
echo "ok"
