#!/usr/bin/env bash
# cairn.io/quiesce: mysql with cairn.io/snapshot: btrfs, through the agent,
# with a real MariaDB 10.11 whose data directory is a loop-mounted btrfs. A
# writer commits one row per transaction throughout. The agent holds a
# session (the `mariadb` client as a coprocess, credentials from the Secret
# in a 0600 defaults file) through BACKUP STAGE START / BLOCK_COMMIT, reads
# the binlog coordinates while commits are blocked, cuts the btrfs snapshot,
# BACKUP STAGE END. Checked: the manifest records the coordinates
# (application-consistent); the snapshot restored and started as a server
# holds exactly the transactions up to the recorded @@gtid_binlog_pos (rows
# counted against GTID sequence numbers: data and binlog agree); the password
# is never logged. The hold: cairn_quiesce_duration_seconds{method="mysql"}
# counts the job (not the one whose login failed), and with a slow exec
# snapshot (frozen 1.5 s while commits are blocked) at least that long;
# a hold longer than CAIRN_QUIESCE_WARN is logged; quiesce_ms in the
# manifest is the observed hold.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_mysql.sh"
. "$(dirname "$0")/lib_agent.sh"
need_loop "quiesce_mysql"
need_cmd mkfs.btrfs losetup mount umount

VOL=
DATA=
_qmy_cleanup() {
  local rc=$?
  set +e
  touch "$T/stop-writer"
  [ -n "${AGENT_PID:-}" ] && kill -KILL "$AGENT_PID" 2>/dev/null
  [ -n "${WRITER_PID:-}" ] && wait "$WRITER_PID" 2>/dev/null
  for n in "${MY_SERVERS[@]}"; do my_stop "$n"; done
  [ -n "$VOL" ] && mountpoint -q "$VOL" && umount "$VOL"
  [ -n "$DATA" ] && mountpoint -q "$DATA" && { umount "$DATA" || umount -l "$DATA"; }
  (exit "$rc")
  _my_cleanup
}
trap _qmy_cleanup EXIT

cairn_repo_init
DATA=$MY_DIR/main/data
mkdir -p "$DATA"
truncate -s 400M "$T/btrfs.img"
mkfs.btrfs -q "$T/btrfs.img" >/dev/null
mount -o loop "$T/btrfs.img" "$DATA"
my_init main
my_start main
PASSWORD=my-pass-$RANDOM$RANDOM
my_sql main "CREATE USER backup@localhost IDENTIFIED BY '$PASSWORD'; GRANT RELOAD, BINLOG MONITOR ON *.* TO backup@localhost;
  CREATE DATABASE app; CREATE TABLE app.t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20)) ENGINE=InnoDB"
S0=$(my_sql main "SELECT @@gtid_binlog_pos" | awk -F- '{print $3}')

# The writer: one INSERT per transaction.
( while [ ! -e "$T/stop-writer" ]; do
    for i in $(seq 1 20); do echo "INSERT INTO app.t (v) VALUES ('row');"; done
    sleep 0.05
  done ) | mariadb --no-defaults --socket="$MY_DIR/main/sock" -uroot --batch >/dev/null 2>&1 &
WRITER_PID=$!

agent_fake_start
ANN='{"cairn.io/schedule":"@daily","cairn.io/quiesce":"mysql","cairn.io/credentials-secret":"db-creds","cairn.io/snapshot":"btrfs"}'
VOL=$(agent_volume app mariadb pv-mariadb 91111111-2222-3333-4444-555555555555)
mount --bind "$DATA" "$VOL"
b64() { printf '%s' "$1" | base64 -w0; }
ctl POST secret '{"apiVersion":"v1","kind":"Secret","type":"Opaque","metadata":{"name":"db-creds","namespace":"app"},"data":{"socket":"'"$(b64 "$MY_DIR/main/sock")"'","username":"'"$(b64 backup)"'","password":"'"$(b64 "$PASSWORD")"'"}}' >/dev/null
sleep 1 # some rows first
printf '#!/bin/sh\nsleep 1.5\necho handle=slow-1 >"$CAIRN_SNAPSHOT_OUT"\n' >"$T/slow.sh"
chmod 755 "$T/slow.sh"
agent_start CAIRN_SNAPSHOT_EXEC_SLOW="$T/slow.sh" CAIRN_QUIESCE_WARN=1
agent_wait_status app mariadb 90
case $STATUS in ok\ *) ;; *) fail "the mysql-quiesced backup failed: $STATUS" ;; esac
SNAP=${STATUS#ok }
agent_quiesce mysql app/mariadb
[ "$QN" = 1 ] && fcmp "0 < $QSUM < 30 and $QLAST == $QSUM" ||
  fail "one job with commits blocked was observed as count $QN, sum $QSUM, last $QLAST"
agent_quiesce_ms "$SNAP" "$QSUM" 0
Q1=$QSUM
sleep 0.5
touch "$T/stop-writer"
wait "$WRITER_PID" || true
WRITER_PID=
[ -z "$(ls "$T/state" | grep '\.cnf')" ] || fail "the client's defaults file was left in the state directory"

# A wrong password: the job fails naming the server's answer, the password
# stays out of the log, nothing is left behind, and the server is not held.
ctl POST secret '{"apiVersion":"v1","kind":"Secret","type":"Opaque","metadata":{"name":"db-creds","namespace":"app"},"data":{"socket":"'"$(b64 "$MY_DIR/main/sock")"'","username":"'"$(b64 backup)"'","password":"'"$(b64 "wrong-$PASSWORD")"'"}}' >/dev/null
agent_request app mariadb
agent_wait_status app mariadb 60
case $STATUS in
  failed:*"Access denied"*) ;;
  *) fail "a wrong password did not fail the job with the server's answer: $STATUS" ;;
esac
[ -z "$(ls "$T/state" | grep '\.cnf')" ] || fail "the defaults file was left behind after a failed login"
[ -z "$(btrfs subvolume list "$DATA")" ] || fail "a btrfs snapshot was taken although the database was not quiesced"
my_sql main "INSERT INTO app.t (v) VALUES ('after-failure')" >/dev/null || fail "the server is held after a failed job"
agent_quiesce mysql app/mariadb
[ "$QN" = 1 ] || fail "a job whose login failed was counted as a hold (count $QN)"
# commits blocked around a slow exec snapshot: at least as long as it ran
ctl POST secret '{"apiVersion":"v1","kind":"Secret","type":"Opaque","metadata":{"name":"db-creds","namespace":"app"},"data":{"socket":"'"$(b64 "$MY_DIR/main/sock")"'","username":"'"$(b64 backup)"'","password":"'"$(b64 "$PASSWORD")"'"}}' >/dev/null
agent_set_ann app mariadb '{"cairn.io/snapshot":"exec:slow"}'
agent_request app mariadb
agent_wait_status app mariadb 60
case $STATUS in ok\ *) ;; *) fail "the mysql+exec backup failed: $STATUS" ;; esac
agent_quiesce mysql app/mariadb
[ "$QN" = 2 ] && fcmp "1.5 <= $QLAST < 30 and abs($QSUM - $Q1 - $QLAST) < 1e-3" ||
  fail "commits blocked around a 1.5 s exec command were observed as count $QN, last $QLAST s"
MYLAST=$QLAST
agent_quiesce fsfreeze app/mariadb
[ "$QN" = 1 ] && fcmp "1.5 <= $QLAST <= $MYLAST" || fail "the freeze was observed as count $QN, last $QLAST s"
agent_quiesce_ms "${STATUS#ok }" "$MYLAST" 1500
grep -q "pvc app/mariadb: commits were blocked (BACKUP STAGE BLOCK_COMMIT) for [1-9]\.[0-9] s (more than CAIRN_QUIESCE_WARN" "$T/agent.err" ||
  fail "no warning for commits blocked longer than CAIRN_QUIESCE_WARN"
agent_stop
umount "$VOL"
VOL=

python3 - "$CAIRN_REPO/snapshots/$SNAP" >"$T/gtid" <<'EOF' || fail "the manifest lacks the binlog coordinates"
import json, sys
m = json.load(open(sys.argv[1]))
assert m["consistency"] == "app", m["consistency"]
s, my = m["snapshot"], m["mysql"]
assert (s["method"], s["quiesce"], s["data"]) == ("btrfs", "mysql", "files"), s
assert my["binlog_file"].startswith("binlog.") and my["binlog_pos"] > 4, my
assert my["gtid_binlog_pos"].startswith("0-1-"), my
print(my["gtid_binlog_pos"])
EOF
GTID=$(cat "$T/gtid")
grep -q "BACKUP STAGE BLOCK_COMMIT: commits blocked at binlog" "$T/agent.err" || fail "no BLOCK_COMMIT log line"
grep -q "BACKUP STAGE END done" "$T/agent.err" || fail "no BACKUP STAGE END log line"
# (the data itself holds it: CREATE USER is in the binlog; the manifests must not)
if grep -rq "$PASSWORD" "$T/agent.err" "$T/agent.out" "$T/state" "$CAIRN_REPO/snapshots" 2>/dev/null; then
  fail "the database password appears in the agent's log or a manifest"
fi
after=$(my_sql main "SELECT count(*) FROM app.t")

# Restore and start the copy: InnoDB recovers; data and binlog agree.
mkdir -p "$MY_DIR/r1"
cairn_ok restore "$SNAP" --target "$MY_DIR/r1/data" >/dev/null
chown -R mysql: "$MY_DIR/r1"
my_start r1
got=$(my_sql r1 "SELECT @@gtid_binlog_pos")
[ "$got" = "$GTID" ] || fail "the restored server's gtid_binlog_pos is '$got', the manifest says '$GTID'"
rows=$(my_sql r1 "SELECT count(*) FROM app.t")
want=$((${GTID##*-} - S0))
[ "$rows" -eq "$want" ] || fail "the restored table has $rows rows, the binlog position says $want"
[ "$rows" -gt 0 ] && [ "$rows" -lt "$after" ] || fail "rows: $rows restored, $after at the end (writer not running during the backup?)"
echo "restored $rows rows = GTID $GTID - $S0; $after rows at the end"
echo "PASS: quiesce_mysql"
