#!/usr/bin/env bash
# kill -9 at random points of binlog shipping (issue 8): under an insert load
# with frequent rotations, 16 rounds each kill -9 binlog-push and
# binlog-stream (with --flush-interval, so partial objects are being written
# too) after a random delay, sometimes both running at once. Then both run
# again to completion. Afterwards: `cairn check --read-data` and
# `cairn binlog-verify --read-data` pass, every file binlog-list acknowledges
# fetches byte-identical to the server's file, every file acknowledged during
# the rounds is still there, the catalog has no duplicate rows, no partial
# object of an archived file is left, and no mariadb-binlog outlived its
# streamer.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib_mysql.sh"

export CAIRN_REPO=$T/repo CAIRN_CATALOG=$T/catalog.db
cairn_ok init >/dev/null
my_init main
my_start main --max-binlog-size=65536
DD=$(my_datadir main)
defaults=$(my_defaults main)
my_sql main "CREATE DATABASE d; CREATE TABLE d.t(i INT AUTO_INCREMENT PRIMARY KEY, s VARCHAR(200))"

load() {
  local n=0
  while [ ! -e "$T/stop-load" ]; do
    my_sql main "INSERT INTO d.t(s) SELECT REPEAT('x', 150) FROM d.seq_1_to_20" 2>/dev/null || true
    n=$((n + 1))
    if [ $((n % 8)) -eq 0 ]; then my_sql main "FLUSH BINARY LOGS" 2>/dev/null || true; fi
    sleep 0.03
  done
}
load &
LOADPID=$!

acked() { cairn binlog-list --json 2>/dev/null | python3 -c 'import json,sys; print("\n".join(r["name"] for r in json.load(sys.stdin)))'; }
rnd() { python3 -c "import random; print(round(random.uniform($1, $2), 2))"; }

: >"$T/acked.all"
for ((round = 1; round <= 16; round++)); do
  pids=()
  if [ $((round % 3)) -ne 0 ]; then
    "$CAIRN" binlog-push "$DD" >/dev/null 2>>"$T/push.err" &
    pids+=($!)
  fi
  if [ $((round % 3)) -ne 1 ]; then
    "$CAIRN" binlog-stream --defaults-file "$defaults" --spool "$T/spool" --flush-interval 1 \
      >/dev/null 2>>"$T/stream.err" &
    pids+=($!)
  fi
  sleep "$(rnd 0.05 1.6)"
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  acked >>"$T/acked.all"
done
sleep 0.3
leftover=$(pgrep -f "result-file=$T/spool" || true)
[ -z "$leftover" ] || fail "mariadb-binlog outlived its killed streamer: $leftover"

# --- stop the load; run both to completion
touch "$T/stop-load"
wait "$LOADPID" || true
my_sql main "FLUSH BINARY LOGS"
"$CAIRN" binlog-stream --defaults-file "$defaults" --spool "$T/spool" --flush-interval 1 \
  >/dev/null 2>>"$T/stream.err" &
SPID=$!
closed() { my_sql main "SHOW BINARY LOGS" | cut -f1 | sed '$d'; }
for ((i = 0; i < 150; i++)); do
  [ -z "$(comm -23 <(closed | sort) <(acked | sort))" ] && break
  sleep 0.2
done
kill -TERM "$SPID"
rc=0
wait "$SPID" || rc=$?
[ "$rc" -eq 0 ] || { tail -n 20 "$T/stream.err" >&2; fail "the last binlog-stream exited $rc"; }
check_no_crash "binlog-stream" "$rc" "$T/stream.err"
check_no_crash "binlog-push (killed runs)" 0 "$T/push.err"
cairn_ok binlog-push "$DD" >/dev/null
missing=$(comm -23 <(closed | sort) <(acked | sort))
[ -z "$missing" ] || fail "closed files not archived after the runs to completion: $missing"

# --- the repository and the archive
cairn_ok check --read-data >/dev/null
run_cairn binlog-verify --read-data
expect_rc 0 "binlog-verify --read-data after the kills"
expect_in "no problems found" "binlog-verify summary" "$OUT"
sort -u "$T/acked.all" >"$T/acked.sorted"
acked | sort >"$T/acked.final"
lost=$(comm -23 "$T/acked.sorted" "$T/acked.final")
[ -z "$lost" ] || fail "files acknowledged during the kills are gone: $lost"
n=0
while read -r f; do
  rm -f "$T/fetched"
  run_cairn binlog-fetch "$f" "$T/fetched"
  expect_rc 0 "binlog-fetch $f"
  cmp -s "$DD/$f" "$T/fetched" || fail "acknowledged $f differs from the server's file"
  n=$((n + 1))
done <"$T/acked.final"
[ "$n" -ge 10 ] || fail "expected at least 10 archived files, got $n"
python3 - "$CAIRN_CATALOG" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
dups = db.execute("SELECT server_uuid, file, count(*) FROM binlogs GROUP BY 1, 2 HAVING count(*) > 1").fetchall()
assert not dups, dups
EOF
for p in $(ls "$CAIRN_REPO/binlog/1" | grep '\.partial\.' || true); do
  grep -qx "${p%.partial.*}" "$T/acked.final" && fail "partial $p of an archived file was left behind"
done
echo "PASS: mysql_kill ($n files, $(grep -c . "$T/acked.sorted") acknowledged during the kills)"
