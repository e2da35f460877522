#!/usr/bin/env bash
# bench/pg_bench.sh — PostgreSQL benchmark: cairn against pgBackRest (not a
# test; not registered with ctest).
#
# On one PostgreSQL 15 cluster initialised with `pgbench -i -s 20`, archiving
# into both tools at once (archive_command = cairn wal-push && pgbackrest
# archive-push), it times:
#   1. a full base backup: `cairn backup-pg` into a new local repository
#      against `pgbackrest backup --type=full` into a new local repository
#      (compress-type=zst compress-level=1 process-max=2), RUNS times each;
#   2. per-segment push latency (process start to exit) for 20 real 16 MiB
#      segments: `cairn wal-push` against `pgbackrest archive-push` (median);
#   3. fetching those 20 segments one after another as restore_command does:
#      `cairn wal-fetch` with prefetch (default 8) and with --prefetch 0,
#      against `pgbackrest archive-get` with archive-async=y (its prefetch)
#      and without.
# and writes the results as the "PostgreSQL" section of docs/benchmarks.md
# (between the pg_bench markers; the rest of the page is left as it is).
#
# Usage (as root, Debian 12, PostgreSQL 15 and pgbackrest installed):
#   bash bench/pg_bench.sh [--no-doc]
# Environment: CAIRN (default build/cairn), RUNS (3), PG_BIN
# (/usr/lib/postgresql/15/bin). Everything lives under bench/work/pg (deleted
# at the start of each run).
set -uo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
CAIRN_SRC=${CAIRN:-$ROOT/build/cairn}
RUNS=${RUNS:-3}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
DOC=$ROOT/docs/benchmarks.md
WRITE_DOC=1
[ "${1:-}" = --no-doc ] && WRITE_DOC=0
W=$BENCH_DIR/work/pg
say() { echo "pg_bench: $*" >&2; }
die() { say "$*"; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (the servers and tools run as postgres through runuser)"
[ -x "$CAIRN_SRC" ] || die "no cairn binary at $CAIRN_SRC (set CAIRN)"
command -v pgbackrest >/dev/null || die "pgbackrest is not installed (apt-get install pgbackrest)"
[ -x "$PG_BIN/initdb" ] || die "PostgreSQL 15 is not installed at $PG_BIN"

if [ -f "$W/data/postmaster.pid" ]; then
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$W/data" -m immediate -w stop >/dev/null 2>&1 || true
fi
rm -rf "$W"
mkdir -p "$W/sock" "$W/bin" "$W/segs" "$W/pgbr-log" "$W/pgbr-lock" "$W/pgbr-spool"
cp "$CAIRN_SRC" "$W/bin/cairn"
chmod 755 "$BENCH_DIR/work" "$W" "$W/bin" "$W/bin/cairn"
CAIRN=$W/bin/cairn
chown -R postgres: "$W"
cleanup() {
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$W/data" -m fast -w stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
as_pg() { runuser -u postgres -- env HOME="$W" CAIRN_CATALOG="$W/catalog.db" "$@"; }
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
CONF=$W/pgbackrest.conf
cat >"$CONF" <<CONF_EOF
[global]
repo1-path=$W/pgbr-repo
compress-type=zst
compress-level=1
process-max=2
start-fast=y
log-level-console=warn
log-level-file=off
log-path=$W/pgbr-log
lock-path=$W/pgbr-lock
spool-path=$W/pgbr-spool

[bench]
pg1-path=$W/data
pg1-socket-path=$W/sock
pg1-port=$PORT
pg1-user=postgres
CONF_EOF
chown postgres: "$CONF"
pgbr() { as_pg pgbackrest --config="$CONF" --stanza=bench "$@"; }

# --- the cluster, archiving into both
as_pg "$PG_BIN/initdb" -A trust -U postgres -D "$W/data" >"$W/initdb.log" 2>&1 || die "initdb failed"
cat >>"$W/data/postgresql.conf" <<PGCONF_EOF
listen_addresses = ''
unix_socket_directories = '$W/sock'
port = $PORT
wal_level = replica
archive_mode = on
archive_command = 'env CAIRN_REPO=$W/cairn-repo CAIRN_CATALOG=$W/catalog.db $CAIRN wal-push %p && pgbackrest --config=$CONF --stanza=bench archive-push %p'
max_wal_size = 4GB
shared_buffers = 128MB
PGCONF_EOF
new_repos() { # fresh cairn and pgBackRest repositories
  rm -rf "$W/cairn-repo" "$W/pgbr-repo" "$W/catalog.db"*
  as_pg env CAIRN_REPO="$W/cairn-repo" "$CAIRN" init >/dev/null || die "cairn init failed"
  pgbr stanza-create >/dev/null || die "pgbackrest stanza-create failed"
}
as_pg "$PG_BIN/pg_ctl" -D "$W/data" -l "$W/server.log" -w start >/dev/null || die "the server did not start"
new_repos
say "pgbench -i -s 20"
as_pg "$PG_BIN/pgbench" -q -i -s 20 -h "$W/sock" -p "$PORT" -U postgres postgres >"$W/pgbench.log" 2>&1 ||
  die "pgbench -i failed"
psql_() { as_pg psql -X -q -A -t -h "$W/sock" -p "$PORT" -U postgres -d postgres -c "$1"; }
SYSID=$(psql_ "SELECT system_identifier FROM pg_control_system()")
# 20 real, complete segments for the WAL tests: archived ones (.done), copied
# before a checkpoint recycles them
for ((i = 0; i < 600; i++)); do
  [ "$(ls "$W/data/pg_wal/archive_status" | grep -c '\.done$')" -ge 21 ] && break
  # pgbench -i checkpoints (recycling its segments): write more, full segments of
  # heap and index changes with full-page images
  [ $((i % 10)) = 0 ] && psql_ "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 10 = $((i / 10 % 10))" >/dev/null
  sleep 0.2
done
mapfile -t SEGS < <(ls "$W/data/pg_wal/archive_status" | sed -n 's/^\([0-9A-F]\{24\}\)\.done$/\1/p' | sort | head -n 20)
[ "${#SEGS[@]}" -eq 20 ] || die "fewer than 20 archived segments in pg_wal"
for s in "${SEGS[@]}"; do cp "$W/data/pg_wal/$s" "$W/segs/$s"; done
chown -R postgres: "$W/segs"
psql_ "CHECKPOINT" >/dev/null
DBSIZE=$(du -sm --exclude=pg_wal "$W/data" | cut -f1)

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else printf "%.4f\n", (a[NR/2]+a[NR/2+1])/2}'; }

# --- 1. full base backups
CB=() PB=()
for ((r = 1; r <= RUNS; r++)); do
  new_repos
  t0=$(now)
  as_pg env CAIRN_REPO="$W/cairn-repo" "$CAIRN" backup-pg --pgdata "$W/data" \
    --dsn "host=$W/sock port=$PORT user=postgres dbname=postgres" >/dev/null 2>"$W/backup-pg.err" ||
    { cat "$W/backup-pg.err" >&2; die "cairn backup-pg failed"; }
  t1=$(now)
  pgbr backup --type=full >/dev/null 2>"$W/pgbr-backup.err" ||
    { cat "$W/pgbr-backup.err" >&2; die "pgbackrest backup failed"; }
  t2=$(now)
  CB+=("$(echo "$t1 - $t0" | bc -l)")
  PB+=("$(echo "$t2 - $t1" | bc -l)")
  CSZ=$(du -sm "$W/cairn-repo" | cut -f1)
  PSZ=$(du -sm "$W/pgbr-repo/backup" | cut -f1)
  say "run $r: backup-pg ${CB[-1]} s, pgbackrest backup ${PB[-1]} s"
done
CB_MED=$(printf '%s\n' "${CB[@]}" | median)
PB_MED=$(printf '%s\n' "${PB[@]}" | median)

# --- 2. push latency: the 20 segments into fresh repositories
new_repos
CP=() PP=()
for s in "${SEGS[@]}"; do
  t0=$(now)
  as_pg env CAIRN_REPO="$W/cairn-repo" "$CAIRN" wal-push --pgdata "$W/data" "$W/segs/$s" ||
    die "cairn wal-push $s failed"
  t1=$(now)
  # pgBackRest refuses a segment already in its repository with the same name but
  # another checksum; these were archived by the server with the same content
  pgbr archive-push "$W/segs/$s" >/dev/null 2>&1 || die "pgbackrest archive-push $s failed"
  t2=$(now)
  CP+=("$(echo "($t1 - $t0) * 1000" | bc -l)")
  PP+=("$(echo "($t2 - $t1) * 1000" | bc -l)")
done
CP_MED=$(printf '%s\n' "${CP[@]}" | median)
PP_MED=$(printf '%s\n' "${PP[@]}" | median)
say "push median: cairn ${CP_MED} ms, pgbackrest ${PP_MED} ms"

# --- 3. fetch the 20 segments one after another, as restore_command
# Only the fetch commands are timed: a loop in one shell as postgres (as the
# server runs restore_command: no runuser per call) that compares each fetched
# file with the original outside the timed part. FETCH_RUNS loops per variant,
# interleaved; the median is reported. As PostgreSQL does, RECOVERYXLOG is removed
# before each call.
FETCH_RUNS=${FETCH_RUNS:-3}
cat >"$W/fetch_loop.sh" <<'LOOP_EOF'
#!/bin/bash
# fetch_loop.sh DEST_DIR SEGS_DIR CMD... (%f %p substituted) -> total seconds of the fetches
dest=$1 segs=$2; shift 2
total=0
for f in $(ls "$segs"); do
  args=()
  for a in "$@"; do a=${a//%f/$f}; args+=("${a//%p/$dest/RECOVERYXLOG}"); done
  # PostgreSQL removes RECOVERYXLOG before it runs restore_command (replacing
  # a file just written costs a forced writeback on ext4)
  rm -f "$dest/RECOVERYXLOG"
  t0=$EPOCHREALTIME
  "${args[@]}" >/dev/null 2>>"$dest/../fetch.err" || { echo "fetch $f failed: ${args[*]}" >&2; exit 1; }
  t1=$EPOCHREALTIME
  cmp -s "$dest/RECOVERYXLOG" "$segs/$f" || { echo "fetched $f differs" >&2; exit 1; }
  total=$(echo "$total + $t1 - $t0" | bc -l)
done
echo "$total"
LOOP_EOF
chmod 755 "$W/fetch_loop.sh"
wait_prefetchers() { # an earlier loop's prefetch worker must not write into the next loop's
  # spool: it holds the spool's lock while it runs and exits 2 s after recovery stops
  local lock=$W/fetch/pg_wal/.cairn-prefetch/$SYSID.lock
  [ -e "$lock" ] && timeout 30 flock "$lock" true
  return 0
}
fetch_loop() { # CMD... -> seconds for the 20 fetches
  local dest=$W/fetch/pg_wal out
  wait_prefetchers
  rm -rf "$W/fetch" "$W/pgbr-spool"/*
  mkdir -p "$dest/archive_status"
  chown -R postgres: "$W/fetch"
  out=$(as_pg "$W/fetch_loop.sh" "$dest" "$W/segs" "$@") || die "fetch loop failed: $*"
  echo "$out"
}
declare -A FT
for ((r = 1; r <= FETCH_RUNS; r++)); do
  FT[cpre]+=" $(fetch_loop env CAIRN_REPO="$W/cairn-repo" "$CAIRN" wal-fetch --system-id "$SYSID" %f %p)"
  FT[cone]+=" $(fetch_loop env CAIRN_REPO="$W/cairn-repo" "$CAIRN" wal-fetch --system-id "$SYSID" --prefetch 0 %f %p)"
  FT[pasync]+=" $(fetch_loop pgbackrest --config="$CONF" --stanza=bench --archive-async --archive-get-queue-max=256MB archive-get %f %p)"
  FT[pone]+=" $(fetch_loop pgbackrest --config="$CONF" --stanza=bench archive-get %f %p)"
  say "fetch run $r: cairn ${FT[cpre]##* } / ${FT[cone]##* } s, pgbackrest ${FT[pasync]##* } / ${FT[pone]##* } s"
done
med_of() { tr ' ' '\n' <<<"$1" | grep . | median; }
CF_PRE=$(med_of "${FT[cpre]}") CF_ONE=$(med_of "${FT[cone]}")
PF_ASYNC=$(med_of "${FT[pasync]}") PF_ONE=$(med_of "${FT[pone]}")
mbps() { printf '%.0f' "$(echo "20 * 16 / $1" | bc -l)"; }
say "fetch: cairn prefetch $CF_PRE s, one at a time $CF_ONE s; pgbackrest async $PF_ASYNC s, sync $PF_ONE s"

# --- 4. the same fetches from an S3 repository (s3rver on loopback, no proxy):
# cairn only — pgBackRest's S3 client needs TLS, which s3rver does not offer.
S3_PRE="" S3_ONE="" L_PRE="" L_ONE="" S3_NOTE=""
S3_LATENCY_MS=${S3_LATENCY_MS:-20}
S3RVER_JS=$ROOT/tests/s3/node_modules/s3rver/bin/s3rver.js
if [ -f "$S3RVER_JS" ] && command -v node >/dev/null && command -v aws >/dev/null; then
  S3PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p "$W/s3data"
  timeout -k 5 3600 node --openssl-legacy-provider "$S3RVER_JS" -d "$W/s3data" -a 127.0.0.1 \
    -p "$S3PORT" --no-vhost-buckets --silent >"$W/s3rver.log" 2>&1 &
  S3PID=$!
  trap 'cleanup; kill $S3PID 2>/dev/null' EXIT
  for ((i = 0; i < 100; i++)); do (exec 3<>"/dev/tcp/127.0.0.1/$S3PORT") 2>/dev/null && break; sleep 0.1; done
  S3ENV=(AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_REGION=us-east-1
    AWS_ENDPOINT_URL_S3=http://127.0.0.1:$S3PORT AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null)
  if env "${S3ENV[@]}" aws --endpoint-url "http://127.0.0.1:$S3PORT" s3 mb s3://bench >/dev/null 2>&1 &&
    as_pg env "${S3ENV[@]}" CAIRN_REPO=s3://bench/repo CAIRN_CATALOG="$W/s3catalog.db" "$CAIRN" init >/dev/null; then
    for s in "${SEGS[@]}"; do
      as_pg env "${S3ENV[@]}" CAIRN_REPO=s3://bench/repo CAIRN_CATALOG="$W/s3catalog.db" \
        "$CAIRN" wal-push --pgdata "$W/data" "$W/segs/$s" || die "cairn wal-push $s to S3 failed"
    done
    # directly, and through bench/latency_proxy.py adding S3_LATENCY_MS per request
    # (a round trip to an object store in the same region)
    PXPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    python3 "$BENCH_DIR/latency_proxy.py" "$PXPORT" "$S3PORT" "$S3_LATENCY_MS" >"$W/proxy.log" 2>&1 &
    PXPID=$!
    trap 'cleanup; kill $S3PID $PXPID 2>/dev/null' EXIT
    for ((i = 0; i < 100; i++)); do (exec 3<>"/dev/tcp/127.0.0.1/$PXPORT") 2>/dev/null && break; sleep 0.1; done
    S3LAT=("${S3ENV[@]}" AWS_ENDPOINT_URL_S3=http://127.0.0.1:$PXPORT)
    for ((r = 1; r <= FETCH_RUNS; r++)); do
      FT[spre]+=" $(fetch_loop env "${S3ENV[@]}" CAIRN_REPO=s3://bench/repo "$CAIRN" wal-fetch --system-id "$SYSID" %f %p)"
      FT[sone]+=" $(fetch_loop env "${S3ENV[@]}" CAIRN_REPO=s3://bench/repo "$CAIRN" wal-fetch --system-id "$SYSID" --prefetch 0 %f %p)"
      FT[lpre]+=" $(fetch_loop env "${S3LAT[@]}" CAIRN_REPO=s3://bench/repo "$CAIRN" wal-fetch --system-id "$SYSID" %f %p)"
      FT[lone]+=" $(fetch_loop env "${S3LAT[@]}" CAIRN_REPO=s3://bench/repo "$CAIRN" wal-fetch --system-id "$SYSID" --prefetch 0 %f %p)"
      say "S3 fetch run $r: cairn ${FT[spre]##* } / ${FT[sone]##* } s; with $S3_LATENCY_MS ms per request ${FT[lpre]##* } / ${FT[lone]##* } s"
    done
    S3_PRE=$(med_of "${FT[spre]}") S3_ONE=$(med_of "${FT[sone]}")
    L_PRE=$(med_of "${FT[lpre]}") L_ONE=$(med_of "${FT[lone]}")
  else
    S3_NOTE="s3rver could not be set up (see $W/s3rver.log)"
  fi
else
  S3_NOTE="skipped: s3rver (tests/s3/node_modules: npm ci there), node or awscli missing"
fi
# --- 5. a real recovery: a base backup and REC_SEGS segments of WAL written
# after it (pgbench transactions), restored by each tool and replayed by
# PostgreSQL to the end of the archive. restore_command runs through a wrapper
# that logs how long each call took, so both what PostgreSQL waited for WAL and
# the whole recovery are measured (from pg_ctl start until the server logs that
# it accepts connections: with hot_standby=off, only once recovery is over and
# the server promoted).
# This is where prefetch matters: while PostgreSQL replays one segment, the
# worker fetches the next ones.
REC_SEGS=${REC_SEGS:-40}
REC_RUNS=${REC_RUNS:-$FETCH_RUNS}
wait_prefetchers
rm -rf "$W/fetch"
say "recovery: base backups, then $REC_SEGS segments of WAL"
as_pg env CAIRN_REPO="$W/cairn-repo" "$CAIRN" backup-pg --pgdata "$W/data" \
  --dsn "host=$W/sock port=$PORT user=postgres dbname=postgres" >/dev/null 2>"$W/backup-pg.err" ||
  { cat "$W/backup-pg.err" >&2; die "cairn backup-pg (recovery) failed"; }
pgbr backup --type=full >/dev/null 2>"$W/pgbr-backup.err" ||
  { cat "$W/pgbr-backup.err" >&2; die "pgbackrest backup (recovery) failed"; }
if [ -z "$S3_NOTE" ]; then # the S3 repository gets the same base backup and WAL
  psql_ "ALTER SYSTEM SET archive_command = '$(psql_ "SHOW archive_command" | sed "s/'/''/g") && env ${S3ENV[*]} CAIRN_REPO=s3://bench/repo CAIRN_CATALOG=$W/s3catalog.db $CAIRN wal-push %p'" >/dev/null
  psql_ "SELECT pg_reload_conf()" >/dev/null
  as_pg env "${S3ENV[@]}" CAIRN_REPO=s3://bench/repo CAIRN_CATALOG="$W/s3catalog.db" "$CAIRN" backup-pg \
    --pgdata "$W/data" --dsn "host=$W/sock port=$PORT user=postgres dbname=postgres" >/dev/null 2>"$W/backup-pg.err" ||
    { cat "$W/backup-pg.err" >&2; die "cairn backup-pg to S3 (recovery) failed"; }
fi
lsn0=$(psql_ "SELECT pg_current_wal_lsn()")
# pgbench's TPC-B-like transactions, in rounds, until REC_SEGS more segments
# are written (a checkpoint recycles old segments, so count bytes, not files)
for ((i = 0; i < 200; i++)); do
  written=$(psql_ "SELECT (pg_current_wal_lsn() - '$lsn0'::pg_lsn)::bigint / 16777216")
  [ "$written" -ge "$REC_SEGS" ] && break
  as_pg "$PG_BIN/pgbench" -n -c 2 -j 2 -t 5000 -h "$W/sock" -p "$PORT" -U postgres postgres \
    >>"$W/pgbench.log" 2>&1 || die "pgbench failed"
done
psql_ "SELECT pg_switch_wal()" >/dev/null
last=$(psql_ "SELECT pg_walfile_name(pg_current_wal_lsn() - 1)")
for ((i = 0; i < 600; i++)); do
  [ "$(psql_ "SELECT last_archived_wal >= '$last' FROM pg_stat_archiver")" = t ] && break
  sleep 0.2
done
[ "$(psql_ "SELECT failed_count FROM pg_stat_archiver")" = 0 ] || die "archiving failed during the recovery setup"
REC_WAL=$(psql_ "SELECT round((pg_current_wal_lsn() - '$lsn0'::pg_lsn) / 1048576)")
cat >"$W/bin/timed.sh" <<'TIMED_EOF'
#!/bin/bash
# timed.sh LOG CMD... — runs CMD; appends "status seconds file" to LOG
log=$1; shift
t0=$EPOCHREALTIME
"$@"
rc=$?
t1=$EPOCHREALTIME
echo "$rc $(echo "$t1 - $t0" | bc -l) ${*: -2:1}" >>"$log"
exit $rc
TIMED_EOF
chmod 755 "$W/bin/timed.sh"
RPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
recover() { # KIND -> "recovery_s fetch_s segments all_s" (KIND: cpre cone pasync pone,
  # and from S3 through the latency proxy: spre sone)
  local kind=$1 rec=$W/rec cmd t0 t1 envs=()
  [ "$kind" = spre ] || [ "$kind" = sone ] &&
    envs=("${S3LAT[@]}" CAIRN_REPO=s3://bench/repo CAIRN_CATALOG="$W/s3catalog.db")
  wait_prefetchers
  rm -rf "$rec" "$W/pgbr-spool"/* "$W/calls.log"
  mkdir -p "$rec"
  chown postgres: "$rec"
  chmod 700 "$rec"
  case $kind in
  cpre | cone)
    as_pg env CAIRN_REPO="$W/cairn-repo" "$CAIRN" restore-pg --quiet --target "$rec" --latest \
      $([ "$kind" = cone ] && echo "--prefetch 0") >/dev/null 2>"$W/restore.err" ||
      { cat "$W/restore.err" >&2; die "cairn restore-pg failed"; } ;;
  spre | sone)
    as_pg env "${envs[@]}" "$CAIRN" restore-pg --quiet --target "$rec" --latest \
      $([ "$kind" = sone ] && echo "--prefetch 0") >/dev/null 2>"$W/restore.err" ||
      { cat "$W/restore.err" >&2; die "cairn restore-pg from S3 failed"; } ;;
  pasync | pone)
    pgbr --pg1-path="$rec" restore >/dev/null 2>"$W/restore.err" ||
      { cat "$W/restore.err" >&2; die "pgbackrest restore failed"; } ;;
  esac
  cmd=$(sed -n "s/^restore_command = '\(.*\)'\$/\1/p" "$rec/postgresql.auto.conf" | tail -1)
  [ -n "$cmd" ] || die "no restore_command written by $kind"
  [ "$kind" = pasync ] && cmd=${cmd/ archive-get/ --archive-async --archive-get-queue-max=256MB archive-get}
  cat >>"$rec/postgresql.auto.conf" <<REC_EOF
restore_command = '$W/bin/timed.sh $W/calls.log ${cmd//\'/\'\'}'
port = $RPORT
listen_addresses = ''
unix_socket_directories = '$W/sock'
hot_standby = off
archive_mode = off
REC_EOF
  rm -f "$rec/postmaster.pid"
  rm -f "$W/rec.log"
  t0=$EPOCHREALTIME
  as_pg env "${envs[@]}" "$PG_BIN/pg_ctl" -D "$rec" -l "$W/rec.log" start >/dev/null ||
    { tail -20 "$W/rec.log" >&2; die "the restored server ($kind) did not start"; }
  # (pg_ctl -w counts a server in recovery without hot standby as started)
  for ((i = 0; i < 90000; i++)); do
    grep -q "database system is ready to accept connections" "$W/rec.log" 2>/dev/null && break
    grep -q "FATAL\|PANIC" "$W/rec.log" 2>/dev/null &&
      { tail -20 "$W/rec.log" >&2; die "the restored server ($kind) failed"; }
    sleep 0.01
  done
  t1=$EPOCHREALTIME
  grep -q "archive recovery complete" "$W/rec.log" || die "$kind: no 'archive recovery complete' in the log"
  as_pg "$PG_BIN/pg_ctl" -D "$rec" -m fast -w stop >/dev/null
  # a prefetch worker still at work holds its lock (it exits 2 s after recovery)
  [ -e "$rec/pg_wal/.cairn-prefetch/$SYSID.lock" ] &&
    timeout 30 flock "$rec/pg_wal/.cairn-prefetch/$SYSID.lock" true
  # the WAL PostgreSQL waited for: every successful call, and every call
  echo "$(echo "$t1 - $t0" | bc -l) $(awk '$1 == 0 {s += $2} END {printf "%.4f", s}' "$W/calls.log") \
$(awk '$1 == 0 && $3 ~ /^[0-9A-F]{24}$/ {n++} END {print n + 0}' "$W/calls.log") \
$(awk '{s += $2} END {printf "%.4f", s}' "$W/calls.log")"
}
declare -A RT RF RN
KINDS="cpre cone pasync pone"
[ -z "$S3_NOTE" ] && KINDS+=" spre sone"
for ((r = 1; r <= REC_RUNS; r++)); do
  for kind in $KINDS; do
    read -r rt rf rn rall <<<"$(recover $kind)"
    [ -n "$rall" ] || die "recovery with $kind failed"
    RT[$kind]+=" $rt" RF[$kind]+=" $rf" RN[$kind]=$rn
  done
  say "recovery run $r: total/fetch (s) cairn ${RT[cpre]##* }/${RF[cpre]##* } one ${RT[cone]##* }/${RF[cone]##* }, pgbackrest async ${RT[pasync]##* }/${RF[pasync]##* } sync ${RT[pone]##* }/${RF[pone]##* }; S3 ${RT[spre]##* }/${RF[spre]##* } one ${RT[sone]##* }/${RF[sone]##* }"
done
for kind in $KINDS; do
  eval "RT_$kind=\$(med_of \"\${RT[$kind]}\") RF_$kind=\$(med_of \"\${RF[$kind]}\")"
done
rm -rf "$W/rec"
if [ -z "$S3_NOTE" ]; then
  kill "$S3PID" "$PXPID" 2>/dev/null
  wait "$S3PID" "$PXPID" 2>/dev/null
fi

wait_prefetchers

ratio() { printf '%.2f' "$(echo "$1 / $2" | bc -l)"; }
pseg() { printf '%.1f' "$(echo "$1 * 1000 / ${RN[cpre]}" | bc -l)"; }
pairs() { # KIND -> " f/t f/t ..." of every run
  local -a f t
  local i out=""
  read -ra f <<<"${RF[$1]}"
  read -ra t <<<"${RT[$1]}"
  for i in "${!f[@]}"; do out+=" $(fmt "${f[$i]}")/$(fmt "${t[$i]}")"; done
  echo "$out"
}
fmt() { printf '%.2f' "$1"; }
CPU=$(nproc)
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
SECTION=$(cat <<DOC_EOF
<!-- pg_bench:begin (written by bench/pg_bench.sh; rerun it to update) -->
## PostgreSQL: cairn against pgBackRest

\`bash bench/pg_bench.sh\` (as root; pgBackRest $(pgbackrest version | cut -d' ' -f2), PostgreSQL
$(psql_ "SHOW server_version" | cut -d' ' -f1), $CPU CPUs, load average at the end $LOAD; $(date -u +%Y-%m-%d)).
One cluster after \`pgbench -i -s 20\` (data directory without pg_wal: $DBSIZE MiB),
archiving into both tools at once. Both repositories are local directories on the
same disk; pgBackRest with \`compress-type=zst compress-level=1 process-max=2\`,
cairn with its defaults (zstd level 1 for WAL; packs of its own format). Times are
wall-clock, from process start to exit.

| measurement | cairn | pgBackRest | ratio (cairn / pgBackRest) |
|---|---:|---:|---:|
| full base backup, median of $RUNS (s) | $(fmt "$CB_MED") | $(fmt "$PB_MED") | $(ratio "$CB_MED" "$PB_MED") |
| base backup in the repository (MiB) | $CSZ | $PSZ | |
| push of one 16 MiB segment, median of 20 (ms) | $(fmt "$CP_MED") | $(fmt "$PP_MED") | $(ratio "$CP_MED" "$PP_MED") |
| fetch 20 segments one after another, with prefetch (s) | $(fmt "$CF_PRE") ($(mbps "$CF_PRE") MiB/s) | $(fmt "$PF_ASYNC") ($(mbps "$PF_ASYNC") MiB/s, archive-async) | $(ratio "$CF_PRE" "$PF_ASYNC") |
| fetch 20 segments one after another, no prefetch (s) | $(fmt "$CF_ONE") ($(mbps "$CF_ONE") MiB/s) | $(fmt "$PF_ONE") ($(mbps "$PF_ONE") MiB/s) | $(ratio "$CF_ONE" "$PF_ONE") |

Every run (s): cairn backup-pg $(printf '%.2f ' "${CB[@]}"| sed 's/ $//'); pgbackrest backup $(printf '%.2f ' "${PB[@]}" | sed 's/ $//').
Push latency per segment (ms), cairn: $(printf '%.0f ' "${CP[@]}" | sed 's/ $//'); pgBackRest: $(printf '%.0f ' "${PP[@]}" | sed 's/ $//').
Fetch loops (s, $FETCH_RUNS each, interleaved; the median is shown): cairn with prefetch${FT[cpre]}; one at a
time${FT[cone]}; pgBackRest async${FT[pasync]}; sync${FT[pone]}. Only the fetch commands are
timed (a loop in one shell as postgres; each fetched file is compared with the original
outside the timed part).

cairn \`wal-fetch\` from an S3 repository (s3rver on loopback; pgBackRest is not run here: its
S3 client needs TLS, which s3rver does not offer), directly and through
\`bench/latency_proxy.py\`, which holds each request for $S3_LATENCY_MS ms (one round trip to an
object store in the same region):

$(if [ -n "$S3_NOTE" ]; then echo "$S3_NOTE"; else cat <<S3_EOF
| fetch 20 segments one after another (s) | with prefetch | one at a time | one at a time / prefetch |
|---|---:|---:|---:|
| local repository | $(fmt "$CF_PRE") | $(fmt "$CF_ONE") | $(ratio "$CF_ONE" "$CF_PRE") |
| S3 (s3rver on loopback) | $(fmt "$S3_PRE") | $(fmt "$S3_ONE") | $(ratio "$S3_ONE" "$S3_PRE") |
| S3 with $S3_LATENCY_MS ms per request | $(fmt "$L_PRE") | $(fmt "$L_ONE") | $(ratio "$L_ONE" "$L_PRE") |

Every S3 loop (s): prefetch${FT[spre]}; one at a time${FT[sone]}; with latency, prefetch${FT[lpre]}; one at a time${FT[lone]}.
S3_EOF
fi)

A real recovery: a base backup by each tool, then $REC_WAL MiB of WAL written after it
by \`pgbench\` (TPC-B-like transactions; ${RN[cpre]} segments fetched), restored by each tool
and replayed by PostgreSQL to the end of the archive, from the local repositories.
\`restore_command\` runs through a wrapper that times each call; the server runs with
\`hot_standby = off\`, so it accepts connections only once recovery is over and it is
promoted (the whole recovery is timed from \`pg_ctl start\` to that log line). Median of $REC_RUNS runs, the four kinds interleaved:

| recovery | cairn, prefetch | cairn, one at a time | pgBackRest, archive-async | pgBackRest, sync |
|---|---:|---:|---:|---:|
| PostgreSQL waiting for WAL (restore_command, s) | $(fmt "$RF_cpre") | $(fmt "$RF_cone") | $(fmt "$RF_pasync") | $(fmt "$RF_pone") |
| per segment (ms) | $(pseg "$RF_cpre") | $(pseg "$RF_cone") | $(pseg "$RF_pasync") | $(pseg "$RF_pone") |
| whole recovery, start to promoted (s) | $(fmt "$RT_cpre") | $(fmt "$RT_cone") | $(fmt "$RT_pasync") | $(fmt "$RT_pone") |

Every run (s, waiting for WAL / whole): cairn prefetch$(pairs cpre); one at a
time$(pairs cone); pgBackRest async$(pairs pasync); sync$(pairs pone).
$([ -n "$S3_NOTE" ] || cat <<S3REC_EOF

The same recovery by cairn from the S3 repository (s3rver through the latency proxy,
$S3_LATENCY_MS ms per request; the same base backup and WAL, archived there too):

| recovery from S3, $S3_LATENCY_MS ms per request | cairn, prefetch | cairn, one at a time | one at a time / prefetch |
|---|---:|---:|---:|
| PostgreSQL waiting for WAL (restore_command, s) | $(fmt "$RF_spre") | $(fmt "$RF_sone") | $(ratio "$RF_sone" "$RF_spre") |
| per segment (ms) | $(pseg "$RF_spre") | $(pseg "$RF_sone") | |
| whole recovery, start to promoted (s) | $(fmt "$RT_spre") | $(fmt "$RT_sone") | $(ratio "$RT_sone" "$RT_spre") |

Every run (s, waiting for WAL / whole): prefetch$(pairs spre); one at a time$(pairs sone).
S3REC_EOF
)

Targets (issue 4): base backup no slower than pgBackRest; wal-push median under
100 ms for a 16 MiB segment to a local repository; wal-fetch with prefetch at
least 5x faster than one segment at a time: **$(ratio "$RF_cone" "$RF_cpre")x** in a recovery from
the local repository$([ -z "$S3_NOTE" ] && echo " and **$(ratio "$RF_sone" "$RF_spre")x** from S3 with $S3_LATENCY_MS ms per request")
(what PostgreSQL waits for WAL; pgBackRest's archive-async locally: $(ratio "$RF_pone" "$RF_pasync")x). In the
back-to-back loops above, where nothing else runs between two fetches:
$(ratio "$CF_ONE" "$CF_PRE")x locally$(
  [ -z "$S3_NOTE" ] && echo ", $(ratio "$S3_ONE" "$S3_PRE")x from s3rver, $(ratio "$L_ONE" "$L_PRE")x from s3rver with $S3_LATENCY_MS ms per request").
A spool hit costs a process start, one read of the segment to check its CRC-32C
check file, and a rename (no repository, no decompression, no SHA-256). What the
prefetch worker saves is the rest: the download, the decompression and the SHA-256
check. In a recovery that work overlaps the replay of the segments before; in a loop
that only fetches, on $CPU CPUs, the worker needs the same CPU as the foreground,
so it can only overlap it (the loop gains where a fetch waits for a round trip).
<!-- pg_bench:end -->
DOC_EOF
)
echo "$SECTION"
if [ "$WRITE_DOC" = 1 ]; then
  python3 "$BENCH_DIR/doc_section.py" "$DOC" pg_bench "$SECTION" || die "cannot write $DOC"
  say "wrote the PostgreSQL section of $DOC"
fi
