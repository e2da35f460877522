#!/usr/bin/env bash
# binlog-stream against a real MariaDB 10.11 under an insert load, connected
# over TCP as a replication user with a password (in the defaults file only):
# several FLUSH BINARY LOGS, a server restart on the same port mid-stream (the
# streamer logs its retries and resumes by itself), more rotations after it;
# then every binlog file the server has but the active one is archived and
# fetches byte-identical (cmp and sha256) to the server's file, binlog-verify
# finds no gap, the catalog has no duplicate rows, the --flush-interval
# partial of the active file is a prefix of the server's file and no
# superseded partial is left; SIGTERM stops it cleanly (exit 0, the
# mariadb-binlog child gone); the password is never in any process's argv.
# Bad input: wrong password, unreachable server, binary logging off, a spool
# in use, bad options -> clear error, non-zero exit.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib_mysql.sh"

export CAIRN_REPO=$T/repo CAIRN_CATALOG=$T/catalog.db
cairn_ok init >/dev/null
my_init main
my_start main
DD=$(my_datadir main)
PORT=$(cat "$MY_DIR/main/port")
PASS="s3cret-$RANDOM$RANDOM"

my_sql main "CREATE USER 'cairn'@'127.0.0.1' IDENTIFIED BY '$PASS';
             CREATE USER 'cairn'@'localhost' IDENTIFIED BY '$PASS';
             GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'cairn'@'127.0.0.1';
             GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'cairn'@'localhost';
             CREATE DATABASE d; CREATE TABLE d.t(i INT AUTO_INCREMENT PRIMARY KEY, s VARCHAR(64))"
cnf() { # FILE PASSWORD PORT
  printf '[client]\nuser=cairn\npassword=%s\nhost=127.0.0.1\nport=%s\n' "$2" "$3" >"$1"
  chmod 600 "$1"
}
cnf "$T/client.cnf" "$PASS" "$PORT"

# the server's closed files (all listed but the last) and its active one
server_logs() { my_sql main "SHOW BINARY LOGS" | cut -f1; }
closed_files() { server_logs | sed '$d'; }
archived() { cairn binlog-list --json 2>/dev/null | python3 -c 'import json,sys; print("\n".join(r["name"] for r in json.load(sys.stdin)))'; }
wait_archived() { # every closed file archived, within 30 s
  local i missing
  for ((i = 0; i < 150; i++)); do
    missing=$(comm -23 <(closed_files | sort) <(archived | sort))
    [ -z "$missing" ] && return 0
    sleep 0.2
  done
  tail -n 20 "$T/stream.err" >&2
  fail "not archived after 30 s: $missing"
}

# --- an insert load, through the restart (errors while the server is down are fine)
load() {
  local n=0
  while [ ! -e "$T/stop-load" ]; do
    my_sql main "INSERT INTO d.t(s) VALUES ('row $n')" 2>/dev/null || true
    n=$((n + 1))
    sleep 0.05
  done
}
load &
LOADPID=$!

# --- the streamer
"$CAIRN" binlog-stream --defaults-file "$T/client.cnf" --spool "$T/spool" --server-id 4242 \
  --flush-interval 1 >"$T/stream.out" 2>"$T/stream.err" &
SPID=$!
sleep 1
kill -0 "$SPID" 2>/dev/null || { cat "$T/stream.err" >&2; fail "binlog-stream exited at start"; }
if ps -eo args | grep -F -- "$PASS" | grep -v grep >/dev/null; then
  fail "the password is on a command line"
fi
pgrep -P "$SPID" -f mariadb-binlog >/dev/null || fail "no mariadb-binlog child"
[ "$(stat -c %a "$T/spool")" = 700 ] || fail "the spool directory is not 0700"
[ -n "$(find "$T/spool" -name 'binlog.*' -type f)" ] || fail "nothing spooled"
[ -z "$(find "$T/spool" -name 'binlog.*' -type f -perm /077)" ] || fail "spooled files are not 0600"

for k in 1 2 3; do
  sleep 0.7
  my_sql main "FLUSH BINARY LOGS"
done
wait_archived
before_restart=$(server_logs | tail -n 1)

# --- restart the server on the same port, mid-stream and under load
my_stop main
sleep 1.5
MY_PORT=$PORT my_start main
for k in 1 2; do
  sleep 0.7
  my_sql main "FLUSH BINARY LOGS"
done
wait_archived
grep -q "the stream ended: .*Lost connection" "$T/stream.err" ||
  fail "the streamer did not log the lost connection"
grep -q "could not be queried.*retrying in" "$T/stream.err" ||
  fail "the streamer did not log its retries while the server was away"
archived | grep -x "$before_restart" >/dev/null || fail "$before_restart (closed by the restart) is not archived"
kill -0 "$SPID" 2>/dev/null || { cat "$T/stream.err" >&2; fail "binlog-stream died at the restart"; }

# --- stop the load; one more rotation; a last partial of the active file
touch "$T/stop-load"
wait "$LOADPID" || true
my_sql main "FLUSH BINARY LOGS"
my_sql main "INSERT INTO d.t(s) VALUES ('in the active file')"
wait_archived
sleep 2.5 # > --flush-interval: the active file's insert is in a partial

# --- SIGTERM: clean stop, child gone
child=$(pgrep -P "$SPID" -f mariadb-binlog || true)
kill -TERM "$SPID"
rc=0
wait "$SPID" || rc=$?
[ "$rc" -eq 0 ] || { tail -n 20 "$T/stream.err" >&2; fail "binlog-stream exited $rc on SIGTERM"; }
[ -z "$child" ] || ! kill -0 "$child" 2>/dev/null || fail "mariadb-binlog outlived the streamer"
grep -q "stopped" "$T/stream.err" || fail "no stop message"
check_no_crash "binlog-stream" "$rc" "$T/stream.err"

# --- every closed file: archived, byte-identical to the server's
n=0
for f in $(closed_files); do
  rm -f "$T/fetched"
  run_cairn binlog-fetch "$f" "$T/fetched"
  expect_rc 0 "binlog-fetch $f"
  cmp -s "$DD/$f" "$T/fetched" || fail "fetched $f differs from the server's file"
  [ "$(sha256sum <"$DD/$f")" = "$(sha256sum <"$T/fetched")" ] || fail "sha256 of $f differs"
  n=$((n + 1))
done
[ "$n" -ge 7 ] || fail "expected at least 7 closed files, got $n"
run_cairn binlog-verify
expect_rc 0 "binlog-verify"
expect_in "no problems found" "binlog-verify summary" "$OUT"
python3 - "$CAIRN_CATALOG" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
dups = db.execute("SELECT server_uuid, file, count(*) FROM binlogs GROUP BY 1, 2 HAVING count(*) > 1").fetchall()
assert not dups, dups
part = db.execute("SELECT file FROM binlogs WHERE file LIKE '%partial%'").fetchall()
assert not part, ("partial objects in the catalog", part)
EOF
# the rows count equals the objects (no more, no less)
[ "$(archived | sort -u | wc -l)" -eq "$(ls "$CAIRN_REPO/binlog/1" | grep -vc partial)" ] ||
  fail "catalog rows and archived objects differ"

# --- the partial of the active file: one, a prefix of the server's file
active=$(server_logs | tail -n 1)
parts=$(ls "$CAIRN_REPO/binlog/1" | grep partial || true)
[ "$(echo "$parts" | grep -c .)" -eq 1 ] || fail "expected exactly one partial object, got: $parts"
case $parts in "$active".partial.*) ;; *) fail "the partial '$parts' is not of the active file $active" ;; esac
len=${parts##*.}
cairn_ok binlog-list --partial | grep -F "binlog/1/$parts  (partial" >/dev/null ||
  fail "binlog-list --partial does not show $parts"
run_cairn binlog-fetch "$parts" "$T/part"
expect_rc 0 "binlog-fetch of the partial"
[ "$(stat -c %s "$T/part")" -eq "$len" ] || fail "the partial is not $len bytes"
# the server's active file differs in its "in use" flag until it is closed
my_sql main "FLUSH BINARY LOGS"
cmp -s -n "$len" "$T/part" "$DD/$active" || fail "the partial is not a prefix of $active"
mariadb-binlog --no-defaults "$T/part" 2>/dev/null | grep "in the active file" >/dev/null ||
  fail "the last insert (in the active file) is not in the partial"

# --- binlog-push after the streamer: every closed file is already archived,
# decided from the catalog without reading the files whole (a byte changed
# inside a copy, size and mtime kept, goes unnoticed: proof it was not
# re-hashed), but a file whose mtime or size says it changed is refused
cp2=$T/copy; mkdir -p "$cp2"
for f in $(archived); do cp -p "$DD/$f" "$cp2/$f"; echo "./$f" >>"$cp2/binlog.index"; done
echo "./binlog.999999" >>"$cp2/binlog.index"
run_cairn binlog-push --json "$cp2"
expect_rc 0 "binlog-push of files the streamer archived"
[ "$(json_get "$OUT" 'sum(1 for f in j["files"] if not f["already"])')" -eq 0 ] ||
  fail "binlog-push shipped files the streamer had archived"
victim=$(cd "$cp2" && ls -S binlog.0* | head -n 1) # the middle is outside the head and tail read
size=$(stat -c %s "$cp2/$victim")
printf '\x5a' | dd of="$cp2/$victim" bs=1 seek=$((size / 2)) conv=notrunc status=none
touch -r "$DD/$victim" "$cp2/$victim"
run_cairn binlog-push --json "$cp2"
expect_rc 0 "binlog-push skips an archived file by size, mtime and header"
touch -d "@$(($(stat -c %Y "$cp2/$victim") + 60))" "$cp2/$victim" # changed a minute later
run_cairn binlog-push "$cp2"
expect_error "binlog-push of a changed file (newer mtime)"
expect_in "$victim" "the changed file is named" "$ERR"

# --- bad input
run_cairn binlog-stream --defaults-file "$T/client.cnf" --flush-interval 0 --spool "$T/spool"
expect_rc 2 "binlog-stream --flush-interval 0"
run_cairn binlog-stream --spool "$T/spool"
expect_rc 2 "binlog-stream without --defaults-file"

cnf "$T/wrong.cnf" "not-the-password" "$PORT"
run_cairn binlog-stream --defaults-file "$T/wrong.cnf" --spool "$T/spool"
expect_error "binlog-stream with a wrong password"
expect_in "Access denied" "the wrong password is named" "$ERR"
if grep -q "not-the-password" "$ERR" "$OUT"; then fail "the password is in the output"; fi

cnf "$T/away.cnf" "$PASS" "$(_my_free_port)"
run_cairn binlog-stream --defaults-file "$T/away.cnf" --spool "$T/spool"
expect_error "binlog-stream against an unreachable server"
expect_in "connect" "the unreachable server is named" "$ERR"

# a spool in use by another streamer
"$CAIRN" binlog-stream --defaults-file "$T/client.cnf" --spool "$T/spool" >/dev/null 2>&1 &
S2=$!
sleep 1
run_cairn binlog-stream --defaults-file "$T/client.cnf" --spool "$T/spool"
expect_error "a second streamer on the same spool"
expect_in "in use" "the busy spool is named" "$ERR"
kill -TERM "$S2"
wait "$S2" || fail "the second streamer did not stop cleanly"

my_stop main
MY_PORT=$PORT my_start main --skip-log-bin
run_cairn binlog-stream --defaults-file "$T/client.cnf" --spool "$T/spool"
expect_error "binlog-stream with binary logging off"
expect_in "binary logging is disabled" "binlog off is named" "$ERR"

echo "PASS: mysql_stream"
