# shellcheck shell=bash
# MariaDB harness for the end-to-end tests. Source it after lib.sh:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#   source "$(dirname "${BASH_SOURCE[0]}")/lib_mysql.sh"
#   my_init main        # mariadb-install-db into $MY_DIR/main/data
#   my_start main       # mariadbd on a free port and its own socket, binlog on, ROW
#   my_sql main "SELECT 1"
#
# The server runs as the `mysql` user (--user=mysql) with --no-defaults first,
# so the machine's my.cnf is never read. Data, socket, pid file and log live
# under $MY_DIR/NAME, owned by mysql. It listens on 127.0.0.1 only. The EXIT
# trap shuts every server started down cleanly (chained before lib.sh's).
# my_defaults NAME writes a [client] defaults file for --defaults-file.
#
# Skips (exit 77) when not root or MariaDB is not installed.

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  echo "lib_mysql.sh: helper library, nothing to run"
  exit 0
fi
[ -n "${T:-}" ] && declare -F fail >/dev/null || {
  echo "lib_mysql.sh: source lib.sh first" >&2
  exit 1
}

is_root || skip "MariaDB tests need root (the server runs as the mysql user)"
for _c in mariadbd mariadb-install-db mariadb mariadb-admin mariadb-binlog; do
  command -v "$_c" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin
  command -v "$_c" >/dev/null 2>&1 ||
    skip "MariaDB is not installed ('$_c' missing: apt-get install mariadb-server mariadb-client mariadb-backup; scripts/install-test-deps.sh)"
done
id mysql >/dev/null 2>&1 || skip "no 'mysql' user (install the mariadb-server package)"

MY_DIR=$T/my
MY_SERVERS=()

_my_cleanup() {
  local rc=$? n
  for n in "${MY_SERVERS[@]}"; do
    my_stop "$n" || true
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ] && [ -f "$MY_DIR/$n/server.log" ]; then
      echo "--- last lines of the $n server log" >&2
      tail -n 25 "$MY_DIR/$n/server.log" >&2 || true
    fi
  done
  set +e
  (exit "$rc") # lib.sh's _cleanup exits with the status it finds in $?
  _cleanup
}
trap _my_cleanup EXIT

_my_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# my_init NAME: a fresh data directory $MY_DIR/NAME/data.
my_init() {
  local n=$1
  mkdir -p "$MY_DIR/$n/data"
  chmod 755 "$T" "$MY_DIR" "$MY_DIR/$n"
  chown -R mysql: "$MY_DIR/$n"
  mariadb-install-db --no-defaults --user=mysql --datadir="$MY_DIR/$n/data" \
    --auth-root-authentication-method=normal --skip-test-db >"$MY_DIR/$n/install.log" 2>&1 ||
    { tail -n 20 "$MY_DIR/$n/install.log" >&2; fail "mariadb-install-db $n failed"; }
}

# my_start NAME [EXTRA mariadbd OPTIONS...]: start and wait until it answers.
# MY_PORT=N my_start ... listens on port N (a restart on the same port).
my_start() {
  local n=$1 port i; shift
  port=${MY_PORT:-$(_my_free_port)}
  printf -v "MYPORT_$n" '%s' "$port"
  echo "$port" >"$MY_DIR/$n/port"
  MY_SERVERS+=("$n")
  mariadbd --no-defaults --user=mysql --datadir="$MY_DIR/$n/data" \
    --socket="$MY_DIR/$n/sock" --pid-file="$MY_DIR/$n/pid" --port="$port" \
    --bind-address=127.0.0.1 --log-bin=binlog --server-id=1 --binlog-format=ROW \
    --log-error="$MY_DIR/$n/server.log" --innodb-buffer-pool-size=32M \
    "$@" >/dev/null 2>&1 &
  for ((i = 0; i < 600; i++)); do
    if mariadb-admin --no-defaults --socket="$MY_DIR/$n/sock" -uroot ping >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  tail -n 30 "$MY_DIR/$n/server.log" >&2 || true
  fail "MariaDB server $n did not answer within 60s"
}

# my_stop NAME: clean shutdown (waits for the server to exit).
my_stop() {
  local n=$1 pid i
  [ -f "$MY_DIR/$n/pid" ] || return 0
  pid=$(cat "$MY_DIR/$n/pid" 2>/dev/null) || return 0
  mariadb-admin --no-defaults --socket="$MY_DIR/$n/sock" -uroot shutdown >/dev/null 2>&1 || true
  for ((i = 0; i < 600; i++)); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$MY_DIR/$n/pid"; return 0; }
    sleep 0.1
  done
  note "MariaDB server $n did not shut down within 60s; killing it"
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$MY_DIR/$n/pid"
}

my_datadir() { echo "$MY_DIR/$1/data"; }

# my_sql NAME SQL: one batch, tab-separated rows without column names.
my_sql() {
  local n=$1; shift
  mariadb --no-defaults --socket="$MY_DIR/$n/sock" -uroot --batch --skip-column-names -e "$*"
}

# my_defaults NAME: a defaults file with a [client] section for the server;
# prints its path.
my_defaults() {
  local n=$1 f=$MY_DIR/$1/client.cnf
  cat >"$f" <<EOF
[client]
user=root
socket=$MY_DIR/$n/sock
EOF
  chmod 600 "$f"
  echo "$f"
}
