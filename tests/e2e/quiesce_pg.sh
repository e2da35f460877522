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
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_pg.sh"
. "$(dirname "$0")/lib_agent.sh"

VOL=
_qpg_cleanup() {
  local rc=$?
  set +e
  [ -n "${AGENT_PID:-}" ] && kill -KILL "$AGENT_PID" 2>/dev/null
  [ -n "$VOL" ] && mountpoint -q "$VOL" && umount "$VOL"
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
EOF
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
echo "PASS: quiesce_pg"
