#!/usr/bin/env bash
# An encrypted repository on S3 (s3rver behind the verifying SigV4 proxy):
# init --encrypt, backup (packs through put_file, sealed while spooled),
# restore identical (diff -r), check --read-data; awscli sees every object
# but `aws s3 cp` of a pack, an index, a snapshot shows only the CAIRNENC
# envelope and no plaintext (a marker string, file names); the key file holds
# no password; a wrong password is refused with nothing written to the bucket;
# key add/remove work against the bucket.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib_s3.sh"

s3_start
cairn_need_s3
export CAIRN_TEST_SCRYPT_N_LOG2=12
MARK=S3MARK-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
UNAME=s3name$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
PW=s3-password-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
(umask 077 && printf '%s\n' "$PW" >"$T/pw" && printf 'other-%s\n' "$PW" >"$T/pw2" && printf 'bad\n' >"$T/bad")

mkdir -p "$T/src/dir-$UNAME"
for i in 1 2 3; do
  { head -c 200000 /dev/urandom; echo "$MARK"; } >"$T/src/dir-$UNAME/$UNAME-$i.bin"
done
head -c 20000000 /dev/urandom >"$T/src/big.bin"

cairn_ok init --encrypt --password-file "$T/pw" >/dev/null
export CAIRN_PASSWORD_FILE=$T/pw
id=$(backup_id "$T/src")
cairn_ok restore "$id" --target "$T/restored" >/dev/null
diff -r "$T/src" "$T/restored" || fail "restored tree differs"
cairn_ok check --read-data >/dev/null

echo "== what awscli sees" >&2
s3_keys repo/ >"$T/keys.txt"
grep -qx 'repo/config' "$T/keys.txt" || fail "no repo/config in the bucket"
grep -qE '^repo/keys/[0-9a-f]{16}$' "$T/keys.txt" || fail "no repo/keys/<id> in the bucket"
mkdir "$T/objs"
n=0
while read -r k; do
  case $k in repo/config | repo/keys/*) continue ;; esac
  f=$T/objs/$(echo "$k" | tr / _)
  s3_aws s3 cp "s3://$S3_BUCKET/$k" "$f" >/dev/null || fail "aws s3 cp $k failed"
  [ "$(head -c 8 "$f")" = CAIRNENC ] || fail "object '$k' is not encrypted"
  n=$((n + 1))
done <"$T/keys.txt"
[ "$n" -ge 3 ] || fail "expected at least a pack, an index and a snapshot; got $n objects"
grep -E '^repo/(data|index|snapshots)/' "$T/keys.txt" | cut -d/ -f2 | sort -u | tr '\n' ' ' | grep -q "data index snapshots" ||
  fail "not every kind of object was checked: $(cat "$T/keys.txt")"
if grep -rla -- "$MARK" "$T/objs"; then fail "the marker is readable in an object from the bucket"; fi
if grep -rla -- "$UNAME" "$T/objs"; then fail "a file name is readable in an object from the bucket"; fi
s3_aws s3 cp "s3://$S3_BUCKET/$(grep '^repo/keys/' "$T/keys.txt" | head -n 1)" "$T/keyfile" >/dev/null
if grep -q -- "$PW" "$T/keyfile"; then fail "the password is in the key file"; fi
grep -q '"scrypt"' "$T/keyfile" || fail "the key file does not name its KDF"

echo "== wrong password: nothing written to the bucket" >&2
CAIRN_PASSWORD_FILE=$T/bad CAIRN_CATALOG=$T/bad.db run_cairn backup "$T/src"
expect_error "backup with a wrong password"
expect_in "wrong password or not a key of this repository" "backup with a wrong password" "$ERR"
s3_keys repo/ >"$T/keys-after.txt"
diff "$T/keys.txt" "$T/keys-after.txt" || fail "a wrong password changed the bucket"

echo "== keys on S3" >&2
new=$(cairn_ok key add --new-password-file "$T/pw2" | awk '{print $3}')
CAIRN_PASSWORD_FILE=$T/pw2 cairn_ok key list >"$T/klist.txt"
[ "$(wc -l <"$T/klist.txt")" = 2 ] || fail "key list on S3: expected 2 keys"
old=$(awk '$1 != "*" {print $1}' "$T/klist.txt")
CAIRN_PASSWORD_FILE=$T/pw2 cairn_ok key remove "$old" >/dev/null
run_cairn snapshots
expect_error "the removed key's password"
CAIRN_PASSWORD_FILE=$T/pw2 CAIRN_CATALOG=$T/cat2.db cairn_ok restore "$id" --target "$T/restored2" >/dev/null
diff -r "$T/src" "$T/restored2" || fail "restore with the new key differs"
[ -n "$new" ] || fail "key add printed no id"
echo "encrypt_s3: ok"
