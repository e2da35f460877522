#!/usr/bin/env bash
# bench/mysql_bench.sh — MariaDB base backup benchmark (not a test; not
# registered with ctest).
#
# One MariaDB 10.11 server (binlog on, ROW) with a data directory of a few
# hundred MB generated with SQL (sequence tables: hashes, repeated text,
# numbers — partly compressible, like real tables). It times, RUNS times each
# (fresh repository / output file every run):
#   - `cairn backup-mysql --defaults-file F` into a new local repository;
#   - `mariabackup --backup --stream=xbstream | zstd -1 -T0 > file`;
# and reports the medians, the bytes stored (cairn: the repository's data/;
# baseline: the .zst file) and their ratios; plus one more cairn backup of the
# unchanged server into the last repository (dedup: bytes new and stored).
# Writes the result as its own section of docs/benchmarks.md, between the
# mysql-base markers (bench/run.sh keeps such sections as they are).
#
# Usage (as root, Debian 12, mariadb-server, mariadb-backup, zstd installed):
#   bash bench/mysql_bench.sh [--no-doc]
# Environment: CAIRN (default build/cairn), RUNS (3), ROWS (1000000: about
# 380 MB streamed by mariabackup). Everything lives under bench/work/mysql (deleted
# at the start of each run).
set -uo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
CAIRN=${CAIRN:-$ROOT/build/cairn}
case $CAIRN in /*) ;; *) CAIRN=$PWD/$CAIRN ;; esac
RUNS=${RUNS:-3}
ROWS=${ROWS:-1000000}
DOC=$ROOT/docs/benchmarks.md
WRITE_DOC=1
[ "${1:-}" = --no-doc ] && WRITE_DOC=0
W=$BENCH_DIR/work/mysql
PATH=$PATH:/usr/sbin
say() { echo "mysql_bench: $*" >&2; }
die() { say "$*"; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (the server runs as the mysql user)"
[ -x "$CAIRN" ] || die "no cairn binary at $CAIRN (set CAIRN)"
for c in mariadbd mariadb-install-db mariadb mariabackup zstd; do
  command -v "$c" >/dev/null || die "$c is not installed"
done

stop_server() {
  [ -f "$W/pid" ] || return 0
  mariadb-admin --no-defaults --socket="$W/sock" -uroot shutdown >/dev/null 2>&1 || true
  for _ in $(seq 1 600); do kill -0 "$(cat "$W/pid" 2>/dev/null)" 2>/dev/null || break; sleep 0.1; done
  rm -f "$W/pid"
}
[ -d "$W" ] && stop_server
rm -rf "$W"
mkdir -p "$W/data" "$W/tmp"
chmod 755 "$BENCH_DIR/work" "$W"
chown -R mysql: "$W"
trap stop_server EXIT
mariadb-install-db --no-defaults --user=mysql --datadir="$W/data" \
  --auth-root-authentication-method=normal --skip-test-db >"$W/install.log" 2>&1 ||
  die "mariadb-install-db failed (see $W/install.log)"
mariadbd --no-defaults --user=mysql --datadir="$W/data" --socket="$W/sock" --pid-file="$W/pid" \
  --skip-networking --log-bin=binlog --server-id=1 --binlog-format=ROW \
  --log-error="$W/server.log" --innodb-buffer-pool-size=256M >/dev/null 2>&1 &
for _ in $(seq 1 600); do
  mariadb-admin --no-defaults --socket="$W/sock" -uroot ping >/dev/null 2>&1 && break
  sleep 0.1
done
sql() { mariadb --no-defaults --socket="$W/sock" -uroot --batch --skip-column-names -e "$*"; }
sql "SELECT 1" >/dev/null || die "the server did not start (see $W/server.log)"
printf '[client]\nuser=root\nsocket=%s\n' "$W/sock" >"$W/client.cnf"
chmod 600 "$W/client.cnf"

say "generating $ROWS rows in each of 2 tables"
sql "CREATE DATABASE b;
     CREATE TABLE b.orders (id INT PRIMARY KEY, customer INT, h CHAR(64), note VARCHAR(200),
       amount DECIMAL(12,2), created DATETIME) ENGINE=InnoDB;
     CREATE TABLE b.events (id INT PRIMARY KEY, kind VARCHAR(20), payload VARBINARY(160)) ENGINE=InnoDB;"
step=250000
for ((i = 1; i <= ROWS; i += step)); do
  j=$((i + step - 1 > ROWS ? ROWS : i + step - 1))
  sql "INSERT INTO b.orders SELECT seq, seq % 9973, SHA2(seq, 256),
         CONCAT('order ', seq, ' for customer ', seq % 9973, REPEAT(' standard shipping', 1 + seq % 5)),
         (seq * 37 % 100000) / 100, '2026-01-01' + INTERVAL seq SECOND FROM b.seq_${i}_to_$j;
       INSERT INTO b.events SELECT seq, ELT(1 + seq % 4, 'click', 'view', 'buy', 'login'),
         UNHEX(CONCAT(SHA2(seq, 512), MD5(seq))) FROM b.seq_${i}_to_$j;" ||
    die "loading rows $i..$j failed"
done
sql "FLUSH BINARY LOGS"
DBSIZE=$(du -sm "$W/data" | cut -f1)
BINSIZE=$(du -cm "$W/data"/binlog.[0-9]* | tail -n 1 | cut -f1)
say "data directory: $DBSIZE MiB"
# let InnoDB write out what the load left dirty, so every run sees the same files
sql "SET GLOBAL innodb_max_dirty_pages_pct = 0"
sleep 10

now() { date +%s.%N; }
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
CT=() CS=() BT=() BS=()
for r in $(seq 1 "$RUNS"); do
  rm -rf "$W/repo" "$W/catalog.db"* "$W/out.xb.zst" "$W/tmp/"*
  export CAIRN_REPO=$W/repo CAIRN_CATALOG=$W/catalog.db
  "$CAIRN" init >/dev/null 2>&1 || die "cairn init failed"
  t0=$(now)
  "$CAIRN" --quiet backup-mysql --defaults-file "$W/client.cnf" --json >"$W/cairn.json" 2>"$W/cairn.err" ||
    die "cairn backup-mysql failed: $(tail -n 3 "$W/cairn.err")"
  t1=$(now)
  CT+=("$(echo "$t1 - $t0" | bc -l)")
  CS+=("$(du -sb "$W/repo/data" | cut -f1)")
  t0=$(now)
  mariabackup --defaults-file="$W/client.cnf" --backup --stream=xbstream --target-dir="$W/tmp" \
    2>"$W/mariabackup.log" | zstd -1 -T0 -q >"$W/out.xb.zst" || die "mariabackup | zstd failed"
  t1=$(now)
  BT+=("$(echo "$t1 - $t0" | bc -l)")
  BS+=("$(stat -c %s "$W/out.xb.zst")")
  say "run $r: cairn ${CT[-1]} s ${CS[-1]} B; mariabackup|zstd ${BT[-1]} s ${BS[-1]} B"
done
STREAM=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["bytes_read"])' "$W/cairn.json")
t0=$(now)
"$CAIRN" --quiet backup-mysql --defaults-file "$W/client.cnf" --json >"$W/cairn2.json" 2>"$W/cairn2.err" ||
  die "second cairn backup-mysql failed"
t1=$(now)
T2=$(echo "$t1 - $t0" | bc -l)
NEW2=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["bytes_new"])' "$W/cairn2.json")
STORED2=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["bytes_stored"])' "$W/cairn2.json")

CT_MED=$(median "${CT[@]}") BT_MED=$(median "${BT[@]}")
CS_MED=$(median "${CS[@]}") BS_MED=$(median "${BS[@]}")
ratio() { printf '%.2f' "$(echo "$1 / $2" | bc -l)"; }
mib() { printf '%.1f' "$(echo "$1 / 1048576" | bc -l)"; }
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
SECTION=$(cat <<DOC_EOF
<!-- mysql-base:begin (written by bench/mysql_bench.sh; rerun it to update) -->
## MariaDB: base backup, cairn against mariabackup | zstd

\`bash bench/mysql_bench.sh\` (as root; MariaDB $(sql "SELECT VERSION()" | cut -d- -f1), $(nproc) CPUs,
load average at the end $LOAD; $(date -u +%Y-%m-%d)). One server with a data directory of
$DBSIZE MiB, of which $BINSIZE MiB binlogs (mariabackup does not copy them), after loading two
InnoDB tables of $ROWS rows each (hashes, repeated text, numbers); binlog on. \`cairn backup-mysql\` runs \`mariabackup --backup --stream=xbstream\` and reads
the stream through the engine (content-defined chunks, dedup, zstd level 1, packs) into a
new local repository each run; the baseline is
\`mariabackup --backup --stream=xbstream | zstd -1 -T0 > file\`. Times are wall-clock,
median of $RUNS; the stream was $(mib "$STREAM") MiB.

| measurement | cairn backup-mysql | mariabackup \| zstd -1 -T0 | ratio (cairn / baseline) |
|---|---:|---:|---:|
| base backup, median of $RUNS (s) | $(printf '%.2f' "$CT_MED") | $(printf '%.2f' "$BT_MED") | $(ratio "$CT_MED" "$BT_MED") |
| bytes stored (MiB) | $(mib "$CS_MED") | $(mib "$BS_MED") | $(ratio "$CS_MED" "$BS_MED") |

Every run (s): cairn $(printf '%.2f ' "${CT[@]}" | sed 's/ $//'); mariabackup | zstd $(printf '%.2f ' "${BT[@]}" | sed 's/ $//').

A second \`cairn backup-mysql\` of the unchanged server into the same repository took
$(printf '%.2f' "$T2") s and found $(mib "$NEW2") MiB of new data ($(mib "$STORED2") MiB stored): the
xbstream framing does not defeat content-defined chunking, so successive base backups
share their unchanged pages (the baseline stores a full copy every time).
<!-- mysql-base:end -->
DOC_EOF
)
echo "$SECTION"
if [ "$WRITE_DOC" = 1 ]; then
  python3 "$BENCH_DIR/doc_section.py" "$DOC" mysql-base "$SECTION" || die "cannot write $DOC"
  say "wrote the MariaDB section of $DOC"
fi
