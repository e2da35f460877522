#!/usr/bin/env bash
# WAL archiving with a real PostgreSQL 15: archive_command = cairn wal-push.
# Under load every segment is archived intact and recorded in the catalog;
# re-pushing the same file succeeds, a different file under an archived name
# is refused; a wal-push killed after storing (and killed at random moments)
# leaves the segment archived once and intact after the retry; wal-fetch exits
# 1 for a missing file and >125 for a damaged object without writing DEST;
# wal-verify finds a gap.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib_pg.sh"

pg_setup
COPIES=$PG_DIR/copies
KILLFLAG=$PG_DIR/kill-next-push
mkdir -p "$COPIES"; chown postgres: "$COPIES"
# The archive_command keeps a copy of every file it is given (to compare with
# what comes back), and kills its push once when $KILLFLAG exists.
cat >"$T/bin/archive.sh" <<EOF
#!/bin/sh
f=\$(basename "\$1")
cp "\$1" "$COPIES/\$f.tmp" && mv "$COPIES/\$f.tmp" "$COPIES/\$f" || exit 1
if [ -e "$KILLFLAG" ] && rm "$KILLFLAG" 2>/dev/null; then
  echo "\$f" >>"$PG_DIR/killed.txt"
  CAIRN_TEST_WAL_PUSH_KILL=stored exec "$PG_CAIRN" wal-push "\$1"
fi
exec "$PG_CAIRN" wal-push "\$1"
EOF
chmod 755 "$T/bin/archive.sh"
pg_init main "$T/bin/archive.sh %p"
pg_start main

# --- load: a few segments, some with commits
pg_sql main "CREATE TABLE t(i int, pad text)"
for round in 1 2 3 4; do
  pg_sql main "INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 40000) g"
  pg_switch main
done

# --- kill -9 of wal-push after the object is stored, before the catalog: the
# archiver sees a failure and retries; the segment ends up archived once.
touch "$KILLFLAG"; chown postgres: "$KILLFLAG"
pg_sql main "INSERT INTO t SELECT g, 'after kill' FROM generate_series(1, 1000) g"
killed_seg=$(pg_sql main "SELECT pg_walfile_name(pg_current_wal_lsn())")
pg_switch main
[ ! -e "$KILLFLAG" ] || fail "the kill hook was not used"
[ "$(cat "$PG_DIR/killed.txt")" = "$killed_seg" ] || fail "killed push was for $(cat "$PG_DIR/killed.txt"), not $killed_seg"
grep -q "terminated by signal\|failed" "$PG_DIR/main.log" || note "server log does not mention the killed archive command"

# --- the catalog written by the archive_command has every file (read it
# before any cairn command here syncs it from the store)
done_files=$(cd "$PG_DIR/main/pg_wal/archive_status" && ls | sed -n 's/\.done$//p' | sort)
[ -n "$done_files" ] || fail "PostgreSQL reports nothing archived"
python3 - "$PG_CATALOG" >"$T/catalog-rows.txt" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
for (seg,) in db.execute("SELECT segment FROM wal_segments ORDER BY segment"):
    print(seg)
EOF
for f in $done_files; do
  grep -qx "$f" "$T/catalog-rows.txt" || fail "'$f' is archived per PostgreSQL but not in the catalog wal-push wrote"
done
grep -qx "$killed_seg" "$T/catalog-rows.txt" || fail "the segment whose push was killed is not in the catalog after the retry"
nsegs=$(grep -c '^[0-9A-F]\{24\}$' "$T/catalog-rows.txt")
[ "$nsegs" -ge 5 ] || fail "expected at least 5 archived segments, got $nsegs"
echo "archived: $nsegs segments" >&2

# --- every archived file comes back byte for byte (archived once: one object)
cairn_ok_pg wal-list --json >"$T/list.json"
sysid=$(json_get "$T/list.json" 'j[0]["system_id"]')
[ "$sysid" = "$(pg_sql main "SELECT system_identifier FROM pg_control_system()")" ] ||
  fail "archive system id $sysid is not the server's"
[ "$(find "$CAIRN_REPO/wal/$sysid" -name "$killed_seg" | wc -l)" -eq 1 ] || fail "killed segment not archived exactly once"
for f in "$COPIES"/*; do
  n=$(basename "$f")
  run_cairn wal-fetch --system-id "$sysid" --prefetch 0 "$n" "$T/fetched"
  expect_rc 0 "wal-fetch $n"
  cmp -s "$f" "$T/fetched" || fail "wal-fetch $n does not give back the archived file"
done
# commit times: the segment with the first insert has commits, in a sane range
[ "$(json_get "$T/list.json" 'len([r for r in j if r.get("min_commit", "").startswith("20")])')" -ge 3 ] ||
  fail "no commit times recorded for archived segments"

# --- prefetch: fetching one segment spools the next ones (next to DEST);
# later fetches are served from the spool after verification, and a damaged
# spool file is fetched again from the archive instead of being handed over
mapfile -t segs < <(grep '^[0-9A-F]\{24\}$' "$T/catalog-rows.txt")
mkdir -p "$T/pf"
run_cairn wal-fetch --system-id "$sysid" --prefetch 3 "${segs[0]}" "$T/pf/RECOVERYXLOG"
expect_rc 0 "wal-fetch with prefetch"
spool=$T/pf/.cairn-prefetch
for ((i = 0; i < 100; i++)); do
  [ -f "$spool/$sysid-${segs[2]}" ] && [ -f "$spool/$sysid-${segs[1]}" ] && break
  sleep 0.1
done
[ -f "$spool/$sysid-${segs[1]}" ] && [ -f "$spool/$sysid-${segs[2]}" ] ||
  fail "prefetch did not spool the next segments ($(ls "$spool" | tr '\n' ' '))"
sz=$(stat -c %s "$spool/$sysid-${segs[1]}")
printf '\xff\xfe' | dd of="$spool/$sysid-${segs[1]}" bs=1 seek=$((sz / 2)) conv=notrunc status=none
run_cairn wal-fetch --system-id "$sysid" --prefetch 3 "${segs[1]}" "$T/pf/RECOVERYXLOG"
expect_rc 0 "wal-fetch past a damaged spool file"
cmp -s "$COPIES/${segs[1]}" "$T/pf/RECOVERYXLOG" || fail "a damaged spool file was handed over"
run_cairn wal-fetch --system-id "$sysid" --prefetch 0 "${segs[2]}" "$T/pf/RECOVERYXLOG"
expect_rc 0 "wal-fetch from the spool"
cmp -s "$COPIES/${segs[2]}" "$T/pf/RECOVERYXLOG" || fail "the spooled segment differs"
[ ! -e "$spool/$sysid-${segs[2]}" ] || fail "the spooled segment was not served from the spool"
sleep 0.5 # let the detached prefetchers finish before the repository changes below

# --- identical re-push: exit 0; a different file under that name: refused
seg=$(grep '^[0-9A-F]\{24\}$' "$T/catalog-rows.txt" | sed -n 2p)
obj=$(find "$CAIRN_REPO/wal/$sysid" -name "$seg")
before=$(sha256sum <"$obj")
( cd "$PG_DIR/main" && runuser -u postgres -- env CAIRN_REPO="$CAIRN_REPO" CAIRN_CATALOG="$PG_CATALOG" "$PG_CAIRN" wal-push "$COPIES/$seg" ) 2>"$T/repush.err" ||
  { cat "$T/repush.err" >&2; fail "re-pushing an identical segment failed"; }
expect_in "already archived" "identical re-push" "$T/repush.err"
cp "$COPIES/$seg" "$T/evil/$seg" 2>/dev/null || { mkdir -p "$T/evil"; cp "$COPIES/$seg" "$T/evil/$seg"; }
printf 'CAIRN' | dd of="$T/evil/$seg" bs=1 seek=$((8 * 1024 * 1024)) conv=notrunc status=none
chmod 644 "$T/evil/$seg"; chmod 755 "$T/evil"
rc=0
( cd "$PG_DIR/main" && runuser -u postgres -- env CAIRN_REPO="$CAIRN_REPO" CAIRN_CATALOG="$PG_CATALOG" "$PG_CAIRN" wal-push "$T/evil/$seg" ) 2>"$T/evil.err" || rc=$?
[ "$rc" -ne 0 ] || fail "a different file under an archived name was accepted"
[ "$rc" -lt 126 ] || fail "wal-push of a conflicting file crashed ($rc)"
expect_in "REFUSING" "conflicting push is refused loudly" "$T/evil.err"
expect_in "$seg" "the refusal names the file" "$T/evil.err"
[ "$(sha256sum <"$obj")" = "$before" ] || fail "the archived object was changed by a refused push"

# --- kill -9 at random moments during a push (into a second repository):
# a retry always ends with one intact object
export CAIRN_REPO2=$T/repo2
CAIRN_REPO=$CAIRN_REPO2 CAIRN_CATALOG=$T/cat2.db cairn_ok init >/dev/null
big=$(ls "$COPIES" | grep '^[0-9A-F]\{24\}$' | head -n 1)
for delay in 0.001 0.005 0.01 0.02 0.04; do
  rm -rf "$CAIRN_REPO2/wal"
  CAIRN_REPO=$CAIRN_REPO2 CAIRN_CATALOG=$T/cat2.db "$CAIRN" wal-push "$COPIES/$big" 2>/dev/null &
  pid=$!
  sleep "$delay"
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  CAIRN_REPO=$CAIRN_REPO2 CAIRN_CATALOG=$T/cat2.db run_cairn wal-push "$COPIES/$big"
  expect_rc 0 "wal-push after a kill -9 at ${delay}s"
  [ "$(find "$CAIRN_REPO2/wal" -type f | wc -l)" -eq 1 ] || fail "more than one object after kill+retry"
  CAIRN_REPO=$CAIRN_REPO2 run_cairn wal-fetch --system-id "$sysid" --prefetch 0 "$big" "$T/fetched2"
  expect_rc 0 "fetch after kill+retry"
  cmp -s "$COPIES/$big" "$T/fetched2" || fail "segment differs after kill -9 at ${delay}s and retry"
done

# --- wal-fetch: missing file -> 1 (DEST untouched); damaged object -> >125
rm -f "$T/dest"
run_cairn wal-fetch --system-id "$sysid" 0000000100000000000000FF "$T/dest"
expect_rc 1 "wal-fetch of a file not in the archive"
[ ! -e "$T/dest" ] || fail "wal-fetch of a missing file wrote DEST"
run_cairn wal-fetch --system-id "$sysid" 00000009.history "$T/dest"
expect_rc 1 "wal-fetch of a history file not in the archive"

dmg=$(grep '^[0-9A-F]\{24\}$' "$T/catalog-rows.txt" | sed -n 3p)
dobj=$(find "$CAIRN_REPO/wal/$sysid" -name "$dmg")
size=$(stat -c %s "$dobj")
printf '\xff\xfe' | dd of="$dobj" bs=1 seek=$((size / 2)) conv=notrunc status=none
RC=0
"$CAIRN" wal-fetch --system-id "$sysid" "$dmg" "$T/dest" >"$T/dmg.out" 2>"$T/dmg.err" || RC=$?
[ "$RC" -gt 125 ] || { cat "$T/dmg.err" >&2; fail "wal-fetch of a damaged object exited $RC (must be > 125)"; }
[ ! -e "$T/dest" ] || fail "wal-fetch of a damaged object wrote DEST"
expect_in "damaged" "the damage is named" "$T/dmg.err"
# a repository that is not there is not "end of archive" either
RC=0
CAIRN_REPO=$T/nowhere "$CAIRN" wal-fetch --system-id "$sysid" "$dmg" "$T/dest" 2>/dev/null || RC=$?
[ "$RC" -gt 125 ] || fail "wal-fetch against a missing repository exited $RC (must be > 125)"

# --- wal-verify: clean before, a gap after deleting a middle segment
cairn_ok_pg wal-verify --system-id "$sysid" >/dev/null
gap=$(grep '^[0-9A-F]\{24\}$' "$T/catalog-rows.txt" | sed -n 2p)
rm -f "$(find "$CAIRN_REPO/wal/$sysid" -name "$gap")"
run_cairn_pg wal-verify
expect_rc 1 "wal-verify with a missing segment"
expect_in "$gap" "wal-verify names the missing segment" "$OUT"

echo "PASS: pg_walpush"
