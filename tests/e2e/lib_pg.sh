# shellcheck shell=bash
# PostgreSQL harness for the end-to-end tests. Source it after lib.sh:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#   source "$(dirname "${BASH_SOURCE[0]}")/lib_pg.sh"
#   pg_setup            # repository, catalog and binary the postgres user can reach
#   pg_init main        # initdb $T/pg/main with WAL archiving through cairn wal-push
#   pg_start main       # on a free port; PGPORT_main holds it
#   pg_sql main "SELECT 1"
#
# Everything PostgreSQL runs as the `postgres` user (it refuses root): the
# cairn binary is copied to $T/bin (0755), the repository ($CAIRN_REPO), the
# catalog the archive_command writes ($PG_CATALOG) and the data directories
# are owned by postgres. Servers listen only on a unix socket in $T/pg/sock.
# The EXIT trap stops every server started (chained before lib.sh's).
#
# Skips (exit 77) when not root or PostgreSQL 15 is missing.

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  echo "lib_pg.sh: helper library, nothing to run"
  exit 0
fi
[ -n "${T:-}" ] && declare -F fail >/dev/null || {
  echo "lib_pg.sh: source lib.sh first" >&2
  exit 1
}

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
is_root || skip "PostgreSQL tests need root (servers run as the postgres user via runuser)"
[ -x "$PG_BIN/postgres" ] && [ -x "$PG_BIN/initdb" ] ||
  skip "PostgreSQL 15 is not installed at $PG_BIN (apt-get install postgresql; scripts/install-test-deps.sh)"
id postgres >/dev/null 2>&1 || skip "no 'postgres' user (install the postgresql package)"
need_cmd runuser

PG_DIR=$T/pg
PG_SOCK=$PG_DIR/sock
PG_SERVERS=()

_pg_cleanup() {
  local rc=$? n
  for n in "${PG_SERVERS[@]}"; do
    if [ -f "$PG_DIR/$n/postmaster.pid" ]; then
      runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DIR/$n" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ] && [ -f "$PG_DIR/$n.log" ]; then
      echo "--- last lines of the $n server log" >&2
      tail -n 25 "$PG_DIR/$n.log" >&2 || true
    fi
  done
  # detached prefetchers (wal-fetch) end by themselves; give them a moment
  sleep 0.2
  set +e
  (exit "$rc") # lib.sh's _cleanup exits with the status it finds in $?
  _cleanup
}
trap _pg_cleanup EXIT

# pg_setup: $T/bin/cairn, a repository and catalog owned by postgres.
pg_setup() {
  mkdir -p "$T/bin" "$PG_DIR" "$PG_SOCK"
  chmod 755 "$T/bin" "$PG_DIR"
  cp "$CAIRN" "$T/bin/cairn"
  chmod 755 "$T/bin/cairn"
  PG_CAIRN=$T/bin/cairn
  chown postgres: "$PG_SOCK" "$PG_DIR"
  export CAIRN_REPO=$PG_DIR/repo
  # Two catalogs: the archive_command's (written by postgres) and the one the
  # test's own commands use as root. Each is a cache of the repository; the
  # second learns the archived WAL from the objects alone (as after a rebuild).
  PG_CATALOG=$PG_DIR/catalog.db
  export CAIRN_CATALOG=$T/root-catalog.db
  cairn_ok init >/dev/null
  mkdir -p "$CAIRN_REPO/tmp" "$CAIRN_REPO/wal"
  chown -R postgres: "$CAIRN_REPO"
}

# pg_as CMD...: run as postgres with the repository environment.
pg_as() {
  runuser -u postgres -- env CAIRN_REPO="$CAIRN_REPO" CAIRN_CATALOG="$PG_CATALOG" \
    HOME="$PG_DIR" "$@"
}

# Kept for readability in the tests: root's commands use their own catalog.
run_cairn_pg() { run_cairn "$@"; }
cairn_ok_pg() { cairn_ok "$@"; }

_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# pg_init NAME [ARCHIVE_COMMAND]: initdb $PG_DIR/NAME and configure archiving.
pg_init() {
  local n=$1 cmd=${2:-"$PG_CAIRN wal-push %p"} port
  runuser -u postgres -- "$PG_BIN/initdb" -A trust -U postgres -D "$PG_DIR/$n" >"$PG_DIR/$n.initdb.log" 2>&1 ||
    { tail -n 20 "$PG_DIR/$n.initdb.log" >&2; fail "initdb $n failed"; }
  port=$(_free_port)
  cat >>"$PG_DIR/$n/postgresql.conf" <<EOF
# --- cairn e2e ---
listen_addresses = ''
unix_socket_directories = '$PG_SOCK'
port = $port
wal_level = replica
archive_mode = on
archive_command = 'env CAIRN_REPO=$CAIRN_REPO CAIRN_CATALOG=$PG_CATALOG $cmd'
archive_timeout = 0
max_wal_senders = 0
fsync = off
full_page_writes = on
shared_buffers = 16MB
max_connections = 20
log_min_messages = info
EOF
  printf -v "PGPORT_$n" '%s' "$port"
}

# pg_start NAME: start the server (port from its postgresql.conf) and wait.
pg_start() {
  local n=$1
  PG_SERVERS+=("$n")
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DIR/$n" -l "$PG_DIR/$n.log" -w -t 120 start >/dev/null ||
    { tail -n 30 "$PG_DIR/$n.log" >&2; fail "server $n did not start"; }
}

# pg_wait_ready NAME [SECONDS]: wait until the server accepts read-write
# queries (recovery finished and promoted).
pg_wait_ready() {
  local n=$1 max=${2:-120} i
  for ((i = 0; i < max * 10; i++)); do
    if [ "$(pg_sql "$n" "SELECT pg_is_in_recovery()" 2>/dev/null)" = f ]; then return 0; fi
    sleep 0.1
  done
  tail -n 30 "$PG_DIR/$n.log" >&2
  fail "server $n did not finish recovery within ${max}s"
}

# pg_wait_paused NAME [SECONDS]: until recovery has paused at its target
# (recovery_target_action = pause).
pg_wait_paused() {
  local n=$1 max=${2:-120} i
  for ((i = 0; i < max * 10; i++)); do
    if [ "$(pg_sql "$n" "SELECT pg_get_wal_replay_pause_state()" 2>/dev/null)" = paused ]; then return 0; fi
    sleep 0.1
  done
  tail -n 30 "$PG_DIR/$n.log" >&2
  fail "server $n did not pause at its recovery target within ${max}s"
}

pg_stop() {
  local n=$1
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DIR/$n" -m fast -w stop >/dev/null 2>&1 || true
}

pg_port() { local v="PGPORT_$1"; echo "${!v:-$(sed -n "s/^port = \([0-9]*\)$/\1/p" "$PG_DIR/$1/postgresql.conf" | tail -n 1)}"; }

# pg_sql NAME SQL: one query, unaligned tuples only, errors fail the call.
pg_sql() {
  local n=$1; shift
  runuser -u postgres -- psql -X -q -A -t -v ON_ERROR_STOP=1 -h "$PG_SOCK" -p "$(pg_port "$n")" -U postgres -d postgres -c "$*"
}

pg_dsn() { echo "host=$PG_SOCK port=$(pg_port "$1") user=postgres dbname=postgres"; }

# pg_switch NAME: close the current segment and wait until it is archived.
pg_switch() {
  local n=$1 seg i
  seg=$(pg_sql "$n" "SELECT pg_walfile_name(pg_switch_wal())")
  pg_wait_archived "$n" "$seg"
}

# pg_wait_archived NAME SEGMENT: until pg_stat_archiver reports it (or later).
pg_wait_archived() {
  local n=$1 seg=$2 i last
  for ((i = 0; i < 600; i++)); do
    last=$(pg_sql "$n" "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
    if [ -n "$last" ] && [[ ! "$last" < "$seg" ]]; then return 0; fi
    sleep 0.1
  done
  pg_sql "$n" "SELECT * FROM pg_stat_archiver" >&2 || true
  fail "segment $seg of $n was not archived within 60s"
}

# pg_restore_dir NAME: a fresh directory path for a restored data directory.
pg_restored_start() { # NAME: set a free port in the restored conf, start
  local n=$1 port
  port=$(_free_port)
  printf 'port = %s\n' "$port" >>"$PG_DIR/$n/postgresql.conf"
  printf -v "PGPORT_$n" '%s' "$port"
  pg_start "$n"
}
