#!/usr/bin/env bash
# MariaDB PITR, what must fail and how (real MariaDB 10.11):
#   - a non-empty --target is refused and left alone;
#   - a corrupted archived binlog is detected before any replay: exit 1 naming
#     the file, no server started, the target never created;
#   - a missing archived binlog: refused, naming it, before anything is written;
#   - a failure during the replay: the target is removed again, the message
#     says so, the temporary server is stopped;
#   - a target beyond the archive, a GTID not archived: clear errors;
#   - malformed targets: usage errors;
#   - a catalog rebuilt from the repository knows the base backup again;
#   - backup-mysql with a wrong password, an unreachable server, and a server
#     with binary logging off, and mariabackup failing half-way:
#     each a clear error, exit 1, no snapshot written.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib_mysql.sh"
command -v mariabackup >/dev/null 2>&1 || skip "mariabackup missing (apt-get install mariadb-backup)"

export CAIRN_REPO=$T/repo CAIRN_CATALOG=$T/catalog.db
cairn_ok init >/dev/null
my_init main
my_start main
DF=$(my_defaults main)
sql() { my_sql main "$@"; }
snapcount() { cairn_ok snapshots --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }

sql "CREATE DATABASE t; CREATE TABLE t.a (id INT PRIMARY KEY, v INT) ENGINE=InnoDB"
sql "INSERT INTO t.a SELECT seq, seq FROM t.seq_1_to_100; FLUSH BINARY LOGS"
cairn_ok backup-mysql --defaults-file "$DF" >/dev/null
for r in 200 300 400; do
  sql "INSERT INTO t.a SELECT seq, seq FROM t.seq_$((r - 99))_to_$r; FLUSH BINARY LOGS"
done
cairn_ok binlog-push "$(my_datadir main)" >/dev/null
OBJ=$CAIRN_REPO/binlog/1/binlog.000003
[ -f "$OBJ" ] || fail "no archived object $OBJ"
n_snaps=$(snapcount)

# --- a non-empty target
mkdir -p "$T/full"
echo keep >"$T/full/mine"
run_cairn restore-mysql --target "$T/full" --latest
expect_rc 1 "restore-mysql into a non-empty directory"
expect_in "not empty" "non-empty target" "$ERR"
[ "$(ls "$T/full")" = mine ] && [ "$(cat "$T/full/mine")" = keep ] || fail "the non-empty target was changed"

# --- a corrupted binlog object: detected before any replay
cp "$OBJ" "$T/obj.saved"
python3 - "$OBJ" <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[len(b) - 12] ^= 0xFF
open(p, "wb").write(bytes(b))
PY
run_cairn restore-mysql --target "$T/r_corrupt" --latest
expect_rc 1 "restore-mysql with a corrupted binlog object"
expect_in "binlog.000003" "corrupted object named" "$ERR"
expect_in -i "damaged" "corruption reported as such" "$ERR"
grep -q "private mariadbd\|replaying\|mbstream" "$ERR" && fail "the restore went on after a damaged binlog (a base was restored or a server started)"
[ ! -e "$T/r_corrupt" ] || fail "the target was created although the restore failed before writing anything"
cp "$T/obj.saved" "$OBJ"

# --- a missing binlog: refused, naming it
mv "$OBJ" "$T/obj.away"
run_cairn restore-mysql --target "$T/r_missing" --latest
expect_rc 1 "restore-mysql with a missing binlog"
expect_in "binlog.000003" "missing file named" "$ERR"
expect_in "not archived" "missing file reported" "$ERR"
[ ! -e "$T/r_missing" ] || fail "the target was created although a binlog is missing"
mv "$T/obj.away" "$OBJ"

# --- a failure during the replay (a mariadb client that fails, first in
# PATH): the half-restored directory is removed again, and the message says so
mkdir -p "$T/fakebin"
printf '#!/bin/sh\ncat >/dev/null\necho "ERROR 1146 (42S02) at line 12: injected failure" >&2\nexit 1\n' >"$T/fakebin/mariadb"
chmod 755 "$T/fakebin/mariadb"
OLDPATH=$PATH
PATH=$T/fakebin:$PATH
run_cairn restore-mysql --target "$T/r_fail" --latest
PATH=$OLDPATH
expect_rc 1 "restore-mysql with a failing replay"
expect_in "injected failure" "the client's error passed on" "$ERR"
expect_in "removed again" "what is left said" "$ERR"
[ ! -e "$T/r_fail" ] || fail "a failed replay left '$T/r_fail' behind: $(ls "$T/r_fail" | head)"
ps -eo args | grep -v grep | grep -q -- "--datadir=$T/r_fail" && fail "the temporary mariadbd was left running"

# --- a private server that does not shut down (seen once with a real
# mariadbd stopped just after it opened its socket): restore-mysql kills it
# after --stop-timeout instead of waiting forever, and says so; the fake
# server listens on the socket and ignores SIGTERM
cat >"$T/fakebin/mariadbd" <<'PY_EOF'
#!/usr/bin/env python3
import signal, socket, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
path = [a.split("=", 1)[1] for a in sys.argv if a.startswith("--socket=")][0]
s = socket.socket(socket.AF_UNIX)
s.bind(path)
s.listen(8)
while True:
    time.sleep(1)
PY_EOF
chmod 755 "$T/fakebin/mariadbd"
for replay in fails succeeds; do
  if [ $replay = succeeds ]; then
    printf '#!/bin/sh\ncat >/dev/null\nexit 0\n' >"$T/fakebin/mariadb"
  fi
  PATH=$T/fakebin:$PATH
  t0=$(date +%s)
  run_cairn restore-mysql --target "$T/r_hang" --latest --stop-timeout 3s
  t1=$(date +%s)
  PATH=$OLDPATH
  expect_rc 1 "restore-mysql with a server that does not stop (replay $replay)"
  [ $((t1 - t0)) -lt 30 ] || fail "restore-mysql took $((t1 - t0)) s with a server that does not stop"
  if [ $replay = succeeds ]; then
    expect_in "did not shut down within 3 s" "the hung shutdown named" "$ERR"
  else
    expect_in "injected failure" "the replay's error kept" "$ERR"
  fi
  [ ! -e "$T/r_hang" ] || fail "a restore with a hung server left '$T/r_hang' behind"
  ps -eo args | grep -v grep | grep -q -- "--datadir=$T/r_hang" && fail "the hung server was left running"
done
run_cairn restore-mysql --target "$T/r_bad" --latest --stop-timeout soon
expect_rc 2 "restore-mysql --stop-timeout soon"
expect_in "stop-timeout" "the bad option named" "$ERR"

# --- targets the archive cannot reach
run_cairn restore-mysql --target "$T/r_future" --to-time "2099-01-01 00:00:00"
expect_rc 1 "restore-mysql to a time after the archive"
expect_in "before the target" "time beyond the archive" "$ERR"
run_cairn restore-mysql --target "$T/r_gtid" --to-gtid 0-1-99999
expect_rc 1 "restore-mysql to a GTID not archived"
expect_in "0-1-99999" "unknown GTID named" "$ERR"
run_cairn restore-mysql --target "$T/r_old" --to-time "2001-01-01T00:00:00Z"
expect_rc 1 "restore-mysql to a time before every base backup"
expect_in "no base backup" "time before the base" "$ERR"

# --- malformed targets
for args in "--to-position binlog.000002" "--to-position :12" "--to-gtid 0-1" "--to-time yesterday" \
  "--latest --to-gtid 0-1-3" ""; do
  # shellcheck disable=SC2086
  run_cairn restore-mysql --target "$T/r_bad" $args
  expect_rc 2 "restore-mysql $args"
done
[ ! -e "$T/r_bad" ] || fail "a usage error created the target"

# --- backup-mysql: wrong password, unreachable server, binlog off
printf '[client]\nuser=root\npassword=wrong-secret-pw\nsocket=%s\n' "$MY_DIR/main/sock" >"$T/bad.cnf"
run_cairn backup-mysql --defaults-file "$T/bad.cnf"
expect_rc 1 "backup-mysql with a wrong password"
expect_in "Access denied" "wrong password" "$ERR"
grep -q "wrong-secret-pw" "$ERR" "$OUT" && fail "the password was printed"
printf '[client]\nuser=root\nhost=127.0.0.1\nport=%s\n' "$(_my_free_port)" >"$T/gone.cnf"
run_cairn backup-mysql --defaults-file "$T/gone.cnf"
expect_rc 1 "backup-mysql against an unreachable server"
expect_in -i "can't connect" "unreachable server" "$ERR"
run_cairn backup-mysql --defaults-file "$T/nonexistent.cnf"
expect_rc 1 "backup-mysql with a missing defaults file"
expect_in "nonexistent.cnf" "missing defaults file named" "$ERR"
# mariabackup failing after it wrote part of the stream (a stand-in first in PATH)
mkdir -p "$T/fakemb"
printf '#!/bin/sh\nhead -c 300000 /dev/urandom\necho "[00] FATAL ERROR: injected mariabackup failure" >&2\nexit 1\n' >"$T/fakemb/mariabackup"
chmod 755 "$T/fakemb/mariabackup"
OLDPATH=$PATH
PATH=$T/fakemb:$PATH
run_cairn backup-mysql --defaults-file "$DF"
PATH=$OLDPATH
expect_rc 1 "backup-mysql with mariabackup failing"
expect_in "injected mariabackup failure" "mariabackup's message passed on" "$ERR"
expect_in "none was recorded" "no snapshot said" "$ERR"
my_init nobin
my_start nobin --skip-log-bin
run_cairn backup-mysql --defaults-file "$(my_defaults nobin)"
expect_rc 1 "backup-mysql with binary logging off"
expect_in "binary logging is disabled" "binlog off" "$ERR"
[ "$(snapcount)" -eq "$n_snaps" ] || fail "a failed backup-mysql wrote a snapshot"
run_cairn backup-mysql --defaults-file
expect_rc 2 "backup-mysql without a defaults file"

# --- and with everything in place again the restore works, from a catalog
# rebuilt from the repository alone (base backups come back from manifests)
export CAIRN_CATALOG=$T/catalog-rebuilt.db
cairn_ok catalog rebuild >/dev/null
cairn_ok mysql-backups --json >"$T/bb.json"
[ "$(json_get "$T/bb.json" 'len(j)')" -eq 1 ] && [ "$(json_get "$T/bb.json" 'j[0]["binlog_file"]')" = binlog.000002 ] ||
  fail "the rebuilt catalog does not know the base backup: $(cat "$T/bb.json")"
run_cairn restore-mysql --target "$T/r_ok" --latest --json
expect_rc 0 "restore-mysql --latest after the repairs"
[ "$(json_get "$OUT" 'j["transactions"]')" -eq 3 ] || fail "expected 3 transactions replayed: $(cat "$OUT")"

# --- a GTID target equal to the base backup's own position: nothing to
# replay, a usable directory all the same (given as a relative path)
BASE_GTID=$(json_get "$T/bb.json" 'j[0]["gtid"]')
cd "$T"
run_cairn restore-mysql --target rel_gtid --to-gtid "$BASE_GTID" --json
cd - >/dev/null
expect_rc 0 "restore-mysql --to-gtid at the base backup itself"
[ "$(json_get "$OUT" 'j["transactions"]')" -eq 0 ] || fail "expected nothing replayed: $(cat "$OUT")"
[ -f "$T/rel_gtid/ibdata1" ] || fail "no prepared data directory in the relative target"
echo "ok"
