#!/usr/bin/env bash
# wal-fetch's prefetch spool with a real PostgreSQL 15 archive:
# - a spool hit gives back the archived segment byte for byte, without opening
#   the repository (the hit works with CAIRN_REPO pointing nowhere);
# - a damaged spool entry (a flipped byte in the segment, a cut segment, a
#   missing or altered check file) is never handed over: it is dropped and the
#   segment fetched from the store again (and with no store reachable, DEST
#   does not get the damaged bytes);
# - the spool is private (0700, files 0600), spool files of segments before the
#   one requested, stale .part files and anything older than an hour go away;
# - one prefetch worker per spool at a time, and it exits by itself;
# - concurrent fetches (of different segments, and of one segment) all get
#   the right bytes.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib_pg.sh"

pg_setup
COPIES=$PG_DIR/copies
mkdir -p "$COPIES"; chown postgres: "$COPIES"
cat >"$T/bin/archive.sh" <<EOF
#!/bin/sh
f=\$(basename "\$1")
cp "\$1" "$COPIES/\$f.tmp" && mv "$COPIES/\$f.tmp" "$COPIES/\$f" || exit 1
exec "$PG_CAIRN" wal-push "\$1"
EOF
chmod 755 "$T/bin/archive.sh"
pg_init main "$T/bin/archive.sh %p"
pg_start main
pg_sql main "CREATE TABLE t(i int, pad text)"
for round in 1 2 3 4 5 6 7 8; do
  pg_sql main "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 2000) g"
  pg_switch main
done
sysid=$(pg_sql main "SELECT system_identifier FROM pg_control_system()")
pg_stop main
mapfile -t segs < <(ls "$COPIES" | grep '^[0-9A-F]\{24\}$' | sort)
[ "${#segs[@]}" -ge 8 ] || fail "expected at least 8 archived segments, got ${#segs[@]}"
GOOD_REPO=$CAIRN_REPO
NO_REPO=$T/no-such-repository

D=$T/r/pg_wal
mkdir -p "$D"
spool=$D/.cairn-prefetch
lock=$spool/$sysid.lock
wait_spooled() { # NAME...: until each is in the spool (10 s)
  local i n ok
  for ((i = 0; i < 100; i++)); do
    ok=1
    for n in "$@"; do [ -f "$spool/$sysid-$n" ] || ok=0; done
    [ $ok = 1 ] && return 0
    sleep 0.1
  done
  fail "not spooled: $* (spool: $(ls -A "$spool" | tr '\n' ' '))"
}
wait_worker_gone() { # the prefetch worker holds the lock while it runs
  timeout 20 flock "$lock" true || fail "the prefetch worker did not exit by itself within 20 s"
}

# --- a miss spools the next segments; a hit needs no repository
run_cairn wal-fetch --system-id "$sysid" --prefetch 4 "${segs[0]}" "$D/RECOVERYXLOG"
expect_rc 0 "wal-fetch ${segs[0]} (miss)"
cmp -s "$COPIES/${segs[0]}" "$D/RECOVERYXLOG" || fail "wal-fetch ${segs[0]} differs"
wait_spooled "${segs[1]}" "${segs[2]}" "${segs[3]}" "${segs[4]}"
[ "$(stat -c %a "$spool")" = 700 ] || fail "spool directory mode $(stat -c %a "$spool"), expected 700"
[ "$(stat -c %a "$spool/$sysid-${segs[1]}")" = 600 ] || fail "spool file mode is not 600"
wait_worker_gone
CAIRN_REPO=$NO_REPO run_cairn wal-fetch --system-id "$sysid" --prefetch 0 "${segs[1]}" "$D/RECOVERYXLOG"
expect_rc 0 "wal-fetch ${segs[1]} from the spool with no repository reachable"
cmp -s "$COPIES/${segs[1]}" "$D/RECOVERYXLOG" || fail "the spool hit for ${segs[1]} differs from the archived file"
[ ! -e "$spool/$sysid-${segs[1]}" ] || fail "the spool file of ${segs[1]} is still there after the hit"
[ ! -e "$spool/$sysid-${segs[1]}.sum" ] || fail "the check file of ${segs[1]} is still there after the hit"

# --- a damaged spool file is never handed over
sz=$(stat -c %s "$spool/$sysid-${segs[2]}")
printf '\x5a' | dd of="$spool/$sysid-${segs[2]}" bs=1 seek=$((sz / 3)) conv=notrunc status=none
cp "$spool/$sysid-${segs[2]}" "$T/damaged"
# (exit 130: the repository is not there; run directly, as >128 looks like a crash to run_cairn)
rc=0
CAIRN_REPO=$NO_REPO "$CAIRN" wal-fetch --system-id "$sysid" --prefetch 0 "${segs[2]}" "$D/RECOVERYXLOG" \
  2>"$T/damaged.err" || rc=$?
[ "$rc" -eq 130 ] || fail "a damaged spool file without the repository: exit $rc, expected 130"
expect_in "does not exist" "damaged spool file, no repository" "$T/damaged.err"
if cmp -s "$T/damaged" "$D/RECOVERYXLOG"; then
  fail "the damaged spool bytes were handed over"
fi
run_cairn wal-fetch --system-id "$sysid" --prefetch 0 "${segs[2]}" "$D/RECOVERYXLOG"
expect_rc 0 "wal-fetch ${segs[2]} after its spool file was damaged"
cmp -s "$COPIES/${segs[2]}" "$D/RECOVERYXLOG" || fail "${segs[2]} differs after a damaged spool file"
# a cut segment (a crash before the data reached the disk)
truncate -s -1 "$spool/$sysid-${segs[3]}"
run_cairn wal-fetch --system-id "$sysid" --prefetch 0 "${segs[3]}" "$D/RECOVERYXLOG"
expect_rc 0 "wal-fetch ${segs[3]} after its spool file was cut"
cmp -s "$COPIES/${segs[3]}" "$D/RECOVERYXLOG" || fail "${segs[3]} differs after a cut spool file"
[ ! -e "$spool/$sysid-${segs[3]}" ] || fail "the cut spool file was left behind"
# a segment without its check file, and one whose check file is another
# segment's: both are fetched again, never trusted
run_cairn wal-fetch --system-id "$sysid" --prefetch 4 "${segs[4]}" "$D/RECOVERYXLOG"
expect_rc 0 "wal-fetch ${segs[4]} (refills the spool)"
wait_spooled "${segs[5]}" "${segs[6]}" "${segs[7]}"
wait_worker_gone
cp "$spool/$sysid-${segs[5]}" "$T/spooled.5"
rm "$spool/$sysid-${segs[5]}.sum"
cp "$spool/$sysid-${segs[7]}.sum" "$spool/$sysid-${segs[6]}.sum"
for n in 5 6; do
  rc=0
  CAIRN_REPO=$NO_REPO "$CAIRN" wal-fetch --system-id "$sysid" --prefetch 0 "${segs[$n]}" \
    "$D/RECOVERYXLOG" 2>"$T/sum.$n.err" || rc=$?
  [ "$rc" -eq 130 ] || fail "segment $n with a bad check file and no repository: exit $rc, expected 130"
  [ ! -e "$spool/$sysid-${segs[$n]}" ] || fail "the spool file of segment $n with a bad check file was kept"
  [ ! -e "$spool/$sysid-${segs[$n]}.sum" ] || fail "the bad check file of segment $n was kept"
  run_cairn wal-fetch --system-id "$sysid" --prefetch 0 "${segs[$n]}" "$D/RECOVERYXLOG"
  expect_rc 0 "wal-fetch ${segs[$n]} after a bad check file"
  cmp -s "$COPIES/${segs[$n]}" "$D/RECOVERYXLOG" || fail "${segs[$n]} differs after a bad check file"
done
cmp -s "$T/spooled.5" "$COPIES/${segs[5]}" || fail "the spooled segment 5 was not the archived one"

# --- stale files go: earlier segments, abandoned .part files, anything over an hour old
cp "$spool/$sysid-${segs[7]}" "$spool/$sysid-${segs[0]}"    # before the one requested
cp "$spool/$sysid-${segs[7]}.sum" "$spool/$sysid-${segs[0]}.sum"
ln -s 000000010000000000000001 "$spool/$sysid.served.99999.part"
touch -h -d '5 minutes ago' "$spool/$sysid.served.99999.part"  # a mark never set
printf 'x' >"$spool/$sysid-${segs[7]}.part"
touch -d '5 minutes ago' "$spool/$sysid-${segs[7]}.part"      # abandoned download
printf 'x' >"$spool/$sysid-${segs[6]}"
touch -d '2 hours ago' "$spool/$sysid-${segs[6]}"              # stale
run_cairn wal-fetch --system-id "$sysid" --prefetch 0 "${segs[7]}" "$D/RECOVERYXLOG"
expect_rc 0 "wal-fetch ${segs[7]}"
cmp -s "$COPIES/${segs[7]}" "$D/RECOVERYXLOG" || fail "${segs[7]} differs"
for f in "$sysid-${segs[0]}" "$sysid-${segs[0]}.sum" "$sysid-${segs[7]}.part" "$sysid-${segs[6]}" \
  "$sysid.served.99999.part"; do
  [ ! -e "$spool/$f" ] || fail "stale spool file $f was not removed"
done

# --- one worker per spool: while one holds the lock, a fetch starts no other
rm -rf "$spool"
mkdir -m 700 "$spool"
: >"$lock"
flock -n "$lock" -c "
  '$CAIRN' wal-fetch --system-id '$sysid' --prefetch 4 '${segs[0]}' '$D/RECOVERYXLOG' >/dev/null 2>&1 || exit 3
  sleep 1
  ls -A '$spool' | grep -v '\.lock$\|\.served$' | grep -q . && exit 4
  exit 0" || fail "with the lock held by another worker, a prefetch still ran (status $?)"
run_cairn wal-fetch --system-id "$sysid" --prefetch 4 "${segs[0]}" "$D/RECOVERYXLOG"
expect_rc 0 "wal-fetch ${segs[0]} with the lock free"
wait_spooled "${segs[1]}"
wait_worker_gone

# --- concurrent fetches into one pg_wal: different segments, and one segment thrice
rm -rf "$spool" "$D"/*
pids=()
for i in 1 2 3 4 5; do
  "$CAIRN" wal-fetch --system-id "$sysid" --prefetch 3 "${segs[$i]}" "$D/out.$i" >"$T/c.$i.log" 2>&1 &
  pids+=($!)
done
for i in 1 2 3; do
  "$CAIRN" wal-fetch --system-id "$sysid" --prefetch 3 "${segs[6]}" "$D/same.$i" >"$T/s.$i.log" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "a concurrent wal-fetch failed (see $T/c.*.log, $T/s.*.log)"; done
for i in 1 2 3 4 5; do cmp -s "$COPIES/${segs[$i]}" "$D/out.$i" || fail "concurrent fetch of ${segs[$i]} differs"; done
for i in 1 2 3; do cmp -s "$COPIES/${segs[6]}" "$D/same.$i" || fail "concurrent fetch $i of ${segs[6]} differs"; done
# then in order, as recovery does, from whatever the workers spooled
for i in 1 2 3 4 5 6 7; do
  run_cairn wal-fetch --system-id "$sysid" "${segs[$i]}" "$D/RECOVERYXLOG"
  expect_rc 0 "wal-fetch ${segs[$i]} in order"
  cmp -s "$COPIES/${segs[$i]}" "$D/RECOVERYXLOG" || fail "in-order fetch of ${segs[$i]} differs"
done
wait_worker_gone
echo "PASS: pg_walfetch_spool"
