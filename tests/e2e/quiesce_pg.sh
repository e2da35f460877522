#!/usr/bin/env bash
# cairn.io/quiesce: postgres through the agent, with a real PostgreSQL 15:
# the PVC's volume holds the data directory (one level down, like the
# official image's PGDATA=.../data/pgdata); its credentials come from the
# Secret named by cairn.io/credentials-secret (read through the fake API
# server). The agent brackets the copy with pg_backup_start/pg_backup_stop
# (cairn.io/snapshot: file), stores backup_label and tablespace_map in the
# manifest (consistency application-consistent), and `cairn restore-pg`
# restores a server that starts and holds the rows committed before the
# backup. The password never appears in the agent's log or the repository.
# Then, where loop devices are permitted, the same with cairn.io/snapshot:
# btrfs (the data directory on a loop-mounted btrfs): pg_backup_stop right
# after the atomic snapshot, the data read from the snapshot, restored and
# started again. The time in backup mode: cairn_quiesce_duration_seconds
# {method="postgres"} counts each job (with btrfs, a slow exec command that
# sleeps 1.5 s while frozen, and one that fails after 1 s: at least that
# long, the freeze counted as fsfreeze too), the manifest's quiesce_ms is the
# observed time; a freeze longer than CAIRN_QUIESCE_WARN is logged.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_pg.sh"
. "$(dirname "$0")/lib_agent.sh"

VOL=
VOLB=
_qpg_cleanup() {
  local rc=$?
  set +e
  [ -n "${AGENT_PID:-}" ] && kill -KILL "$AGENT_PID" 2>/dev/null
  [ -n "$VOL" ] && mountpoint -q "$VOL" && umount "$VOL"
  if [ -n "$VOLB" ]; then
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DIR/b" -m immediate -w stop >/dev/null 2>&1
    [ "$VOLB" != x ] && mountpoint -q "$VOLB" && umount "$VOLB"
    mountpoint -q "$PG_DIR/b" && { umount "$PG_DIR/b" || umount -l "$PG_DIR/b"; }
  fi
  (exit "$rc")
  _pg_cleanup
}
trap _qpg_cleanup EXIT

pg_setup
pg_init main
pg_start main
pg_sql main "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 5000) g" >/dev/null

agent_fake_start
ANN='{"cairn.io/schedule":"@daily","cairn.io/quiesce":"postgres","cairn.io/credentials-secret":"db-creds","cairn.io/exclude":"*.nothing"}'
VOL=$(agent_volume app pg pv-pg 81111111-2222-3333-4444-555555555555)
mkdir -p "$T/volume/pgdata"
mount --bind "$T/volume" "$VOL"
mount --bind "$PG_DIR/main" "$VOL/pgdata"
PASSWORD=pg-pass-$RANDOM$RANDOM
b64() { printf '%s' "$1" | base64 -w0; }
ctl POST secret '{"apiVersion":"v1","kind":"Secret","type":"Opaque","metadata":{"name":"db-creds","namespace":"app"},"data":{"host":"'"$(b64 "$PG_SOCK")"'","port":"'"$(b64 "$(pg_port main)")"'","username":"'"$(b64 postgres)"'","password":"'"$(b64 "$PASSWORD")"'","database":"'"$(b64 postgres)"'"}}' >/dev/null

agent_start
agent_wait_status app pg 90
case $STATUS in ok\ *) ;; *) fail "the postgres-quiesced backup failed: $STATUS" ;; esac
SNAP=${STATUS#ok }
umount "$VOL/pgdata"
umount "$VOL"
VOL=
python3 - "$CAIRN_REPO/snapshots/$SNAP" <<'EOF' || fail "the manifest is not an application-consistent base backup"
import json, sys
m = json.load(open(sys.argv[1]))
assert m["consistency"] == "app", m["consistency"]
s, pg = m["snapshot"], m["postgres"]
assert (s["method"], s["quiesce"], s["data"], s["pgdata_subdir"]) == ("file", "postgres", "files", "pgdata"), s
assert pg["backup_label"].startswith("START WAL LOCATION:"), pg
assert "LABEL: cairn k8s:app/pg" in pg["backup_label"], pg["backup_label"]
for k in ("system_id", "start_lsn", "stop_lsn", "timeline", "tablespace_map"):
    assert k in pg, k
assert s["quiesce_ms"] > 0 and "frozen_ms" not in s, s
EOF
agent_quiesce postgres app/pg
[ "$QN" = 1 ] && fcmp "0 < $QSUM < 90 and $QLAST == $QSUM" ||
  fail "one backup in backup mode was observed as count $QN, sum $QSUM, last $QLAST"
agent_quiesce_ms "$SNAP" "$QSUM" 0
agent_quiesce fsfreeze
[ "$QN" = 0 ] || fail "a freeze was counted for a file backup"
cairn_ok ls "$SNAP" >"$T/ls"
grep -q 'PG_VERSION' "$T/ls" || fail "the snapshot does not hold the data directory at its root"
grep -q 'postmaster.pid' "$T/ls" && fail "postmaster.pid was backed up"
grep -q "pg_backup_start done" "$T/agent.err" || fail "the agent did not log pg_backup_start"
if grep -rq "$PASSWORD" "$T/agent.err" "$T/agent.out" "$CAIRN_REPO" "$CAIRN_CATALOG" 2>/dev/null; then
  fail "the database password appears in the agent's log or the repository"
fi
agent_stop
# rows after the backup, and their WAL archived
pg_sql main "INSERT INTO t SELECT g, 'after' FROM generate_series(5001, 5100) g" >/dev/null
pg_switch main
pg_stop main

cairn_ok_pg restore-pg --target "$PG_DIR/r1" --latest --from "$SNAP" --cairn "$PG_CAIRN" >"$T/restore.out"
[ -f "$PG_DIR/r1/backup_label" ] || fail "restore-pg did not write backup_label"
chown -R postgres: "$PG_DIR/r1"
pg_restored_start r1
pg_wait_ready r1
[ "$(pg_sql r1 "SELECT count(*) FROM t WHERE id <= 5000")" = 5000 ] ||
  fail "the restored server lacks rows committed before the backup"
[ "$(pg_sql r1 "SELECT count(*) FROM t")" = 5100 ] ||
  fail "the restored server did not replay the archived WAL to the end"
pg_stop r1

# ---- the same with cairn.io/snapshot: btrfs ----
if ! truncate -s 256M "$T/btrfs.img" || ! mkfs.btrfs -q "$T/btrfs.img" >/dev/null 2>&1 ||
  ! { mkdir -p "$PG_DIR/b" && mount -o loop "$T/btrfs.img" "$PG_DIR/b"; }; then
  note "loop-mounted btrfs not available here: the btrfs part is skipped"
  echo "PASS: quiesce_pg (file only)"
  exit 0
fi
VOLB=x
chown postgres: "$PG_DIR/b"
pg_init b
pg_start b
pg_sql b "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 3000) g" >/dev/null
ANN='{"cairn.io/schedule":"@daily","cairn.io/quiesce":"postgres","cairn.io/credentials-secret":"db-creds-b","cairn.io/snapshot":"btrfs"}'
printf '#!/bin/sh\nsleep 1.5\necho handle=slow-1 >"$CAIRN_SNAPSHOT_OUT"\n' >"$T/slow.sh"
printf '#!/bin/sh\nsleep 1\necho broken >&2\nexit 3\n' >"$T/broken.sh"
chmod 755 "$T/slow.sh" "$T/broken.sh"
VOLB=$(agent_volume app pgb pv-pgb 82222222-2222-3333-4444-555555555555)
mount --bind "$PG_DIR/b" "$VOLB"
ctl POST secret '{"apiVersion":"v1","kind":"Secret","type":"Opaque","metadata":{"name":"db-creds-b","namespace":"app"},"data":{"host":"'"$(b64 "$PG_SOCK")"'","port":"'"$(b64 "$(pg_port b)")"'","user":"'"$(b64 postgres)"'","password":"'"$(b64 "$PASSWORD")"'","dbname":"'"$(b64 postgres)"'"}}' >/dev/null
AGENT_LAST=
agent_start CAIRN_SNAPSHOT_EXEC_SLOW="$T/slow.sh" CAIRN_SNAPSHOT_EXEC_BROKEN="$T/broken.sh" \
  CAIRN_QUIESCE_WARN=1
agent_wait_status app pgb 90
case $STATUS in ok\ *) ;; *) fail "the postgres+btrfs backup failed: $STATUS" ;; esac
SNAPB=${STATUS#ok }
agent_quiesce postgres app/pgb
[ "$QN" = 1 ] || fail "cairn_quiesce_duration_seconds_count{method=postgres} is $QN after one btrfs backup"
Q1=$QSUM
# backup mode around a slow exec snapshot (frozen 1.5 s): at least that long
agent_set_ann app pgb '{"cairn.io/snapshot":"exec:slow"}'
agent_request app pgb
agent_wait_snapshot app pgb 60 'm["snapshot"]["method"] == "exec"'
case $STATUS in ok\ *) ;; *) fail "the postgres+exec backup failed: $STATUS" ;; esac
agent_quiesce postgres app/pgb
[ "$QN" = 2 ] && fcmp "1.5 <= $QLAST < 60 and abs($QSUM - $Q1 - $QLAST) < 1e-3" ||
  fail "backup mode around a 1.5 s exec command was observed as count $QN, last $QLAST s (sum $Q1 -> $QSUM)"
PGLAST=$QLAST
agent_quiesce fsfreeze app/pgb
[ "$QN" = 1 ] && fcmp "1.5 <= $QLAST <= $PGLAST" ||
  fail "the freeze around a 1.5 s exec command was observed as count $QN, last $QLAST s (backup mode $PGLAST s)"
agent_quiesce_ms "${STATUS#ok }" "$PGLAST" 1500
grep -q "pvc app/pgb: the filesystem was frozen for 1\.[5-9] s (more than CAIRN_QUIESCE_WARN" "$T/agent.err" ||
  fail "no warning for a freeze longer than CAIRN_QUIESCE_WARN"
grep -q "pvc app/pgb: commits were blocked" "$T/agent.err" && fail "a PostgreSQL job warned about blocked commits"
# a job that fails after pg_backup_start still observes its time
agent_set_ann app pgb '{"cairn.io/snapshot":"exec:broken"}'
agent_request app pgb
agent_wait_status app pgb 60
case $STATUS in failed:*"exit status 3"*) ;; *) fail "the broken exec command did not fail the job: $STATUS" ;; esac
agent_quiesce postgres app/pgb
[ "$QN" = 3 ] && fcmp "1 <= $QLAST < 60" ||
  fail "the failed job's backup mode was observed as count $QN, last $QLAST s"
agent_quiesce fsfreeze app/pgb
[ "$QN" = 2 ] && fcmp "1 <= $QLAST < 60" ||
  fail "the failed job's freeze was observed as count $QN, last $QLAST s"
agent_stop
python3 - "$CAIRN_REPO/snapshots/$SNAPB" "$VOLB" <<'EOF' || fail "the postgres+btrfs manifest is not as expected"
import json, sys
m = json.load(open(sys.argv[1]))
assert m["consistency"] == "app", m["consistency"]
s, pg = m["snapshot"], m["postgres"]
assert (s["method"], s["quiesce"], s["data"]) == ("btrfs", "postgres", "files"), s
assert s["btrfs_snapshot"].startswith(sys.argv[2] + "/.cairn-snapshot-"), s
assert pg["backup_label"].startswith("START WAL LOCATION:") and pg["stop_lsn"], pg
EOF
grep -q "pvc app/pgb: pg_backup_stop done" "$T/agent.err" || fail "no pg_backup_stop right after the btrfs snapshot"
[ -z "$(btrfs subvolume list "$PG_DIR/b" 2>/dev/null)" ] || fail "the btrfs snapshot was left behind"
pg_sql b "INSERT INTO t SELECT g, 'after' FROM generate_series(3001, 3050) g" >/dev/null
pg_switch b
pg_stop b
SYSB=$(json_get "$CAIRN_REPO/snapshots/$SNAPB" 'j["postgres"]["system_id"]')
cairn_ok_pg restore-pg --target "$PG_DIR/r2" --latest --from "$SNAPB" --system-id "$SYSB" \
  --cairn "$PG_CAIRN" >/dev/null
chown -R postgres: "$PG_DIR/r2"
pg_restored_start r2
pg_wait_ready r2
[ "$(pg_sql r2 "SELECT count(*) FROM t")" = 3050 ] ||
  fail "the server restored from the btrfs snapshot does not hold every row"
echo "PASS: quiesce_pg"
