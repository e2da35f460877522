#!/usr/bin/env bash
# Encryption at rest on a local repository (docs/security.md):
#  - init --encrypt: the config says aes-256-gcm and holds no key; keys/<id>
#    holds the wrapped master key; without a password file init is refused;
#  - round trip: backup, restore (diff -r and full metadata), ls, diff, dump,
#    check --read-data, forget + prune, catalog rebuild, all on the encrypted
#    repository;
#  - no plaintext in the repository: a unique marker string in file contents
#    and unique file names are found by grep -r in an unencrypted control
#    repository, and nowhere in the encrypted one;
#  - a pack moved over another pack's name and two swapped snapshot
#    manifests fail authentication, naming the object;
#  - a wrong or missing password: a clear error, exit != 0, the repository
#    unchanged (file listing + sha256 of every object), no catalog written;
#  - keys: list/add/remove, refusing the key in use and the last key; rotation
#    (add new, remove old): the old password is refused, the data restores;
#  - the password never appears in the process list, the catalog or the
#    repository; catalog, config and key files are 0600;
#  - a backup killed (kill -9) while filling packs leaves no plaintext in the
#    repository (plaintext spool files live next to the catalog instead).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export CAIRN_TEST_SCRYPT_N_LOG2=12 # the default (17) costs ~0.4 s per open
export CAIRN_REPO=$T/repo CAIRN_CATALOG=$T/catalog.db
PW1=pw-one-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
PW2=pw-two-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
MARK=MARKER-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
UNAME=uniqname$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
umask 077
printf '%s\n' "$PW1" >"$T/pw1"
printf '%s' "$PW2" >"$T/pw2" # no trailing newline: the same rules either way
printf 'not-the-password\n' >"$T/bad"

snapshot_repo() { # DIR -> stdout: every file with its sha256 and mode
  (cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum &&
    find . -printf '%p %m %s\n' | sort)
}

echo "== init --encrypt" >&2
run_cairn init --encrypt
expect_rc 2 "init --encrypt without a password file"
expect_in "password" "init --encrypt without a password file" "$ERR"
[ ! -e "$CAIRN_REPO/config" ] || fail "init without a password created a config"
run_cairn init --password-file "$T/pw1"
expect_rc 2 "init with a password file but no --encrypt"
cairn_ok init --encrypt --password-file "$T/pw1" >/dev/null
grep -q '"encryption": "aes-256-gcm"' "$CAIRN_REPO/config" || fail "config does not say aes-256-gcm"
grep -q '"key"' "$CAIRN_REPO/config" && fail "config holds a key in plaintext"
[ "$(find "$CAIRN_REPO/keys" -type f | wc -l)" = 1 ] || fail "expected one key file"
for f in "$CAIRN_REPO/config" "$CAIRN_REPO"/keys/*; do
  [ "$(stat -c %a "$f")" = 600 ] || fail "'$f' is mode $(stat -c %a "$f"), not 0600"
done
run_cairn init --encrypt --password-file "$T/pw1"
expect_error "init over an existing repository"

echo "== round trip" >&2
export CAIRN_PASSWORD_FILE=$T/pw1
make_fixture "$T/src"
mkdir -p "$T/src/secret-dir-$UNAME"
for i in 1 2 3; do
  # the marker in compressible text and in an incompressible file
  { for j in $(seq 1 200); do echo "$MARK line $j"; done; } >"$T/src/secret-dir-$UNAME/$UNAME-$i.txt"
done
{ head -c 300000 /dev/urandom; echo "$MARK"; head -c 300000 /dev/urandom; } >"$T/src/$UNAME.bin"
id1=$(backup_id "$T/src")
cairn_ok restore "$id1" --target "$T/restored" >/dev/null
diff -r --no-dereference -x fifo -x dev "$T/src" "$T/restored" || fail "restored tree differs (diff -r)"
compare_trees "$T/src" "$T/restored"
cairn_ok ls "$id1" >"$T/ls.txt"
expect_in "$UNAME.bin" "ls on the encrypted repository" "$T/ls.txt"
cairn_ok dump "$id1" --format tar >"$T/dump.tar"
mkdir "$T/untar" && tar -xf "$T/dump.tar" -C "$T/untar"
cmp "$T/src/$UNAME.bin" "$T/untar/$UNAME.bin" || fail "dump: file differs"
echo changed >>"$T/src/files/one-byte"
head -c 5000000 /dev/urandom >"$T/src/second.bin"
id2=$(backup_id "$T/src")
cairn_ok diff "$id1" "$id2" >"$T/diff.txt"
expect_in "second.bin" "diff on the encrypted repository" "$T/diff.txt"
cairn_ok check --read-data >/dev/null
rm -f "$CAIRN_CATALOG"
cairn_ok catalog rebuild >/dev/null
cairn_ok snapshots >"$T/snaps.txt"
expect_in "${id2:0:12}" "snapshots after catalog rebuild" "$T/snaps.txt"

echo "== nothing readable in the repository" >&2
# control: the same data in an unencrypted repository shows marker and names
(
  unset CAIRN_PASSWORD_FILE
  export CAIRN_REPO=$T/plain CAIRN_CATALOG=$T/plain-catalog.db
  cairn_ok init >/dev/null
  backup_id "$T/src" >/dev/null
)
grep -rqa -- "$MARK" "$T/plain" || fail "control: the marker is not in the unencrypted repository (the leak check could not fail)"
# (names sit in zstd-compressed trees there, Huffman-coded, so grep cannot
# show them even unencrypted; the encrypted check below still must not match)
if grep -rla -- "$MARK" "$CAIRN_REPO"; then fail "the marker string is readable in the encrypted repository"; fi
if grep -rla -- "$UNAME" "$CAIRN_REPO"; then fail "a file name is readable in the encrypted repository"; fi
if grep -rla -- "$PW1" "$CAIRN_REPO" "$CAIRN_CATALOG"*; then fail "the password is in the repository or catalog"; fi
# every file but config and keys/ (tmp/ too) starts with the envelope header
all_sealed() {
  find "$CAIRN_REPO" -type f ! -path "$CAIRN_REPO/config" ! -path "$CAIRN_REPO/keys/*" |
    while read -r f; do
      [ ! -s "$f" ] || [ "$(head -c 8 "$f")" = CAIRNENC ] || fail "'$f' is not encrypted"
    done
}
all_sealed
[ "$(stat -c %a "$CAIRN_CATALOG")" = 600 ] || fail "catalog is mode $(stat -c %a "$CAIRN_CATALOG")"

echo "== the password is never in the process list" >&2
head -c 150000000 /dev/urandom >"$T/big.bin"
"$CAIRN" backup "$T/big.bin" >"$T/bg.out" 2>"$T/bg.err" &
bg=$!
seen=0
while kill -0 "$bg" 2>/dev/null; do
  ps -eo args >"$T/ps.txt" || true
  if grep -q -- "$PW1" "$T/ps.txt"; then fail "the password is in the process list"; fi
  grep -q "cairn backup" "$T/ps.txt" && seen=$((seen + 1))
  sleep 0.05
done
wait "$bg" || fail "background backup failed: $(cat "$T/bg.err")"
[ "$seen" -gt 0 ] || note "the backup ended before ps saw it"
rm -f "$T/big.bin"

echo "== wrong or missing password: clear error, nothing written" >&2
snapshot_repo "$CAIRN_REPO" >"$T/before.txt"
for cmd in "snapshots" "backup $T/src" "restore latest --target $T/r-bad" "check" \
  "key list" "key add --new-password-file $T/pw2" "forget $id1" "prune" "catalog rebuild"; do
  # shellcheck disable=SC2086
  CAIRN_PASSWORD_FILE=$T/bad CAIRN_CATALOG=$T/bad-catalog.db run_cairn $cmd
  expect_error "$cmd with a wrong password"
  expect_in "wrong password or not a key of this repository" "$cmd with a wrong password" "$ERR"
  if grep -q -- "$PW1\|not-the-password" "$ERR" "$OUT"; then fail "$cmd printed a password"; fi
  [ ! -e "$T/bad-catalog.db" ] || fail "$cmd with a wrong password wrote a catalog"
  [ ! -e "$T/r-bad" ] || fail "$cmd with a wrong password wrote the restore target"
  # shellcheck disable=SC2086
  CAIRN_PASSWORD_FILE= CAIRN_CATALOG=$T/bad-catalog.db run_cairn $cmd
  expect_error "$cmd without a password"
  expect_in "is encrypted" "$cmd without a password" "$ERR"
done
CAIRN_PASSWORD_FILE=$T/no-such-file run_cairn snapshots
expect_error "snapshots with a missing password file"
expect_in "no-such-file" "missing password file" "$ERR"
snapshot_repo "$CAIRN_REPO" >"$T/after.txt"
diff "$T/before.txt" "$T/after.txt" || fail "the repository changed after commands with a wrong password"
# an unencrypted repository refuses a password file (a config downgraded to
# "none" by someone who can write the bucket is noticed)
CAIRN_REPO=$T/plain CAIRN_CATALOG=$T/plain-catalog.db run_cairn snapshots
expect_error "an unencrypted repository opened with a password file"
expect_in "not encrypted" "unencrypted repository with a password file" "$ERR"

echo "== objects are bound to their names" >&2
cp -a "$CAIRN_REPO" "$T/moved"
mapfile -t packs < <(cd "$T/moved" && find data -type f | sort)
[ "${#packs[@]}" -ge 2 ] || fail "expected at least 2 packs, found ${#packs[@]}"
cp "$T/moved/${packs[0]}" "$T/moved/${packs[1]}" # pack 0's bytes under pack 1's name
CAIRN_REPO=$T/moved CAIRN_CATALOG=$T/moved.db run_cairn check --read-data
expect_error "check --read-data with a pack moved to another name"
expect_in "${packs[1]}" "check names the moved pack" "$OUT" "$ERR"
expect_in "authentication" "check says the pack failed authentication" "$OUT" "$ERR"
cp -a "$CAIRN_REPO" "$T/swapped"
mapfile -t snaps < <(cd "$T/swapped" && find snapshots -type f | sort)
[ "${#snaps[@]}" -ge 2 ] || fail "expected at least 2 snapshots"
mv "$T/swapped/${snaps[0]}" "$T/swapped/x" && mv "$T/swapped/${snaps[1]}" "$T/swapped/${snaps[0]}" &&
  mv "$T/swapped/x" "$T/swapped/${snaps[1]}"
CAIRN_REPO=$T/swapped CAIRN_CATALOG=$T/swapped.db run_cairn snapshots
expect_error "snapshots with two manifests swapped"
expect_in "snapshots/" "the error names a swapped manifest" "$ERR"
expect_in "authentication" "swapped manifests fail authentication" "$ERR"

echo "== keys: list, add, remove, rotation" >&2
cairn_ok key list >"$T/keys1.txt"
[ "$(wc -l <"$T/keys1.txt")" = 1 ] || fail "key list: expected one key"
old=$(awk '$1 == "*" {print $2}' "$T/keys1.txt")
[ -n "$old" ] || fail "key list does not mark the key in use"
run_cairn key remove "$old"
expect_error "removing the only key (the one in use)"
run_cairn key add
expect_rc 2 "key add without --new-password-file"
new=$(cairn_ok key add --new-password-file "$T/pw2" | awk '{print $3}')
[ -n "$new" ] || fail "key add printed no id"
[ "$(stat -c %a "$CAIRN_REPO/keys/$new")" = 600 ] || fail "new key file not 0600"
cairn_ok key list --json >"$T/keys2.json"
python3 - "$T/keys2.json" "$old" "$new" <<'EOF' || fail "key list --json is wrong"
import json, sys
keys = json.load(open(sys.argv[1]))
ids = {k["id"]: k for k in keys}
assert set(ids) == {sys.argv[2], sys.argv[3]}, ids
assert ids[sys.argv[2]]["current"] and not ids[sys.argv[3]]["current"]
EOF
run_cairn key remove "$old"
expect_error "removing the key in use"
expect_in "unlocked with" "removing the key in use" "$ERR"
run_cairn key remove ffffffffffff
expect_error "removing a key that does not exist"
# rotation: with the new password, remove the old key
CAIRN_PASSWORD_FILE=$T/pw2 cairn_ok key remove "${old:0:8}" >/dev/null
[ ! -e "$CAIRN_REPO/keys/$old" ] || fail "old key file still there"
run_cairn snapshots
expect_error "the old password after rotation"
expect_in "wrong password" "the old password after rotation" "$ERR"
CAIRN_PASSWORD_FILE=$T/pw2 cairn_ok restore "$id1" --target "$T/restored2" >/dev/null
diff -r --no-dereference -x fifo -x dev "$T/restored" "$T/restored2" || fail "restore after rotation differs"
CAIRN_PASSWORD_FILE=$T/pw2 cairn_ok check --read-data >/dev/null
CAIRN_PASSWORD_FILE=$T/pw2 run_cairn key remove "$new"
expect_error "removing the last key"
# --password-file on the command line works like the variable
CAIRN_PASSWORD_FILE= cairn_ok snapshots --password-file "$T/pw2" >/dev/null

echo "== forget and prune on the encrypted repository" >&2
export CAIRN_PASSWORD_FILE=$T/pw2
cairn_ok forget "$id1" >/dev/null
cairn_ok prune --max-unused 0% >/dev/null
cairn_ok check --read-data >/dev/null
cairn_ok restore "$id2" --target "$T/restored3" >/dev/null
diff -r --no-dereference -x fifo -x dev "$T/src" "$T/restored3" || fail "the kept snapshot differs after prune"
if grep -rla -- "$MARK" "$CAIRN_REPO"; then fail "marker readable after prune (repacked packs)"; fi
echo "== a backup killed while filling a pack leaves no plaintext in the repository" >&2
mkdir -p "$T/killsrc"
for i in 1 2 3 4; do
  { head -c 30000000 /dev/urandom; echo "$MARK"; } >"$T/killsrc/f$i"
done
for delay in 0.3 0.8 1.5; do
  "$CAIRN" backup "$T/killsrc" >/dev/null 2>&1 &
  bg=$!
  sleep "$delay"
  kill -9 "$bg" 2>/dev/null || true
  wait "$bg" 2>/dev/null || true
  all_sealed
  if grep -rla -- "$MARK" "$CAIRN_REPO"; then fail "plaintext left in the repository by a killed backup"; fi
done
rm -rf "$T/killsrc"
cairn_ok check >/dev/null

echo "encrypt: ok"
