#!/usr/bin/env bash
# WAL archiving into an encrypted repository with a real PostgreSQL 15:
# archive_command = cairn wal-push --batch 2 with CAIRN_PASSWORD_FILE (a file only the
# postgres user reads); every archived segment comes back byte-identical
# through wal-fetch (also through the prefetch workers, which inherit the
# password file's name, never the password); the WAL objects are sealed
# (CAIRNENC header, a marker inserted into a table is not readable in the
# repository; a WAL object copied over another's name fails authentication and
# stops recovery); wal-list and wal-verify work; a wrong password is refused by
# wal-push and wal-fetch with a clear error and nothing written.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib_pg.sh"

export CAIRN_TEST_SCRYPT_N_LOG2=12
pg_setup
MARK=WALMARK-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
PW=$PG_DIR/password
printf 'wal-password-%s\n' "$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')" >"$PW"
chmod 600 "$PW" && chown postgres: "$PW"
printf 'wrong\n' >"$T/bad"
# the repository pg_setup made is unencrypted: make an encrypted one instead
rm -rf "$CAIRN_REPO" "$CAIRN_CATALOG"
cairn_ok init --encrypt --password-file "$PW" >/dev/null
mkdir -p "$CAIRN_REPO/tmp" "$CAIRN_REPO/wal"
chown -R postgres: "$CAIRN_REPO"
export CAIRN_PASSWORD_FILE=$PW

COPIES=$PG_DIR/copies
mkdir -p "$COPIES" && chown postgres: "$COPIES"
cat >"$T/bin/archive.sh" <<EOS
#!/bin/sh
f=\$(basename "\$1")
cp "\$1" "$COPIES/\$f.tmp" && mv "$COPIES/\$f.tmp" "$COPIES/\$f" || exit 1
CAIRN_PASSWORD_FILE=$PW exec "$PG_CAIRN" wal-push --batch 2 "\$1"
EOS
chmod 755 "$T/bin/archive.sh"
pg_init main "$T/bin/archive.sh %p"
pg_start main
pg_sql main "CREATE TABLE t(i int, pad text)"
for round in 1 2 3; do
  pg_sql main "INSERT INTO t SELECT g, '$MARK' || g FROM generate_series(1, 20000) g"
  pg_switch main
done
grep -qa -- "$MARK" "$COPIES"/* || fail "control: the marker is not in the WAL files themselves"

echo "== the archive is sealed" >&2
n=0
while read -r f; do
  [ "$(head -c 8 "$f")" = CAIRNENC ] || fail "WAL object '$f' is not encrypted"
  n=$((n + 1))
done < <(find "$CAIRN_REPO/wal" -type f)
[ "$n" -ge 3 ] || fail "expected at least 3 WAL objects, found $n"
if grep -rla -- "$MARK" "$CAIRN_REPO"; then fail "the marker is readable in the encrypted repository"; fi
if grep -rla -- "$(cat "$PW")" "$CAIRN_REPO" "$PG_CATALOG"; then fail "the password is in the repository or catalog"; fi

echo "== wal-fetch gives every file back" >&2
cairn_ok wal-list --json >"$T/list.json"
sysid=$(json_get "$T/list.json" 'j[0]["system_id"]')
for f in "$COPIES"/*; do
  name=$(basename "$f")
  run_cairn wal-fetch --system-id "$sysid" --prefetch 0 "$name" "$T/fetched"
  expect_rc 0 "wal-fetch $name"
  cmp -s "$f" "$T/fetched" || fail "wal-fetch $name is not byte-identical"
done
# with prefetch: the workers are separate processes that must unlock too
mapfile -t segs < <(cd "$COPIES" && ls | grep -E '^[0-9A-F]{24}$' | sort)
mkdir -p "$T/pf"
cairn_ok wal-fetch --system-id "$sysid" --prefetch 2 "${segs[0]}" "$T/pf/RECOVERYXLOG" >/dev/null
cmp -s "$COPIES/${segs[0]}" "$T/pf/RECOVERYXLOG" || fail "wal-fetch with prefetch differs"
spool=$T/pf/.cairn-prefetch
for ((i = 0; i < 100; i++)); do
  [ -f "$spool/$sysid-${segs[1]}" ] && break
  sleep 0.1
done
[ -f "$spool/$sysid-${segs[1]}" ] || fail "the prefetch workers spooled nothing ($(ls "$spool" | tr '\n' ' '))"
cairn_ok wal-fetch --system-id "$sysid" --prefetch 0 "${segs[1]}" "$T/pf/RECOVERYXLOG" >/dev/null
cmp -s "$COPIES/${segs[1]}" "$T/pf/RECOVERYXLOG" || fail "wal-fetch of a prefetched segment differs"
[ ! -e "$spool/$sysid-${segs[1]}" ] || fail "the prefetched segment was not served from the spool"
cairn_ok wal-verify >/dev/null

echo "== WAL objects are bound to their names" >&2
w1=$(find "$CAIRN_REPO/wal" -type f -name "${segs[0]}")
w2=$(find "$CAIRN_REPO/wal" -type f -name "${segs[1]}")
cp -p "$w1" "$T/w1.save"
cp "$w2" "$w1" # segment 1's object under segment 0's name
rc=0
"$CAIRN" wal-fetch --system-id "$sysid" --prefetch 0 "${segs[0]}" "$T/swapped-fetch" 2>"$T/swap.err" || rc=$?
[ "$rc" -gt 125 ] || fail "wal-fetch of a swapped object exited $rc, not > 125 (recovery must stop)"
expect_in "authentication" "wal-fetch of a swapped object" "$T/swap.err"
expect_in "${segs[0]}" "the error names the object" "$T/swap.err"
[ ! -e "$T/swapped-fetch" ] || fail "wal-fetch of a swapped object wrote its destination"
cp -p "$T/w1.save" "$w1"

echo "== a wrong password" >&2
snap() { (cd "$CAIRN_REPO" && find . -type f -print0 | sort -z | xargs -0 sha256sum); }
snap >"$T/before.txt"
CAIRN_PASSWORD_FILE=$T/bad run_cairn wal-push --system-id "$sysid" "$COPIES/${segs[0]}"
expect_error "wal-push with a wrong password"
expect_in "wrong password or not a key of this repository" "wal-push with a wrong password" "$ERR"
# restore_command: a configuration error must stop recovery (exit > 125), never
# look like the end of the archive (exit 1)
rc=0
CAIRN_PASSWORD_FILE=$T/bad "$CAIRN" wal-fetch --system-id "$sysid" --prefetch 0 "${segs[0]}" \
  "$T/bad-fetch" 2>"$T/fetch.err" || rc=$?
[ "$rc" -gt 125 ] || fail "wal-fetch with a wrong password exited $rc, not > 125"
expect_in "wrong password" "wal-fetch with a wrong password" "$T/fetch.err"
[ ! -e "$T/bad-fetch" ] || fail "wal-fetch with a wrong password wrote its destination"
CAIRN_PASSWORD_FILE= run_cairn wal-list
expect_error "wal-list without a password"
snap >"$T/after.txt"
diff "$T/before.txt" "$T/after.txt" || fail "the repository changed after a wrong password"
echo "encrypt_wal: ok"
