#!/usr/bin/env bash
# forget + prune through s3:// (s3rver behind the verifying SigV4 proxy): the
# lease objects go up and away (put with overwrite, delete), the grace period
# holds on a store whose listings carry no times (packs are as old as this
# catalog's first sight of them), prune --grace 0 deletes and repacks, every
# request is correctly signed, and the kept snapshot restores identically with
# `check --read-data` passing.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib_s3.sh"

s3_start
cairn_need_s3
cairn_ok init >/dev/null

src=$T/src
mkdir -p "$src"
head -c $((512 * 1024)) /dev/urandom >"$src/shared.bin"
for i in 1 2 3; do
  head -c $((1024 * 1024)) /dev/urandom >"$src/u$i.bin"
  rm -f "$src/u$((i - 1)).bin"
  backup_id "$src" --source s3 >/dev/null
done
cp -a "$src" "$T/copy"
cairn_ok forget --keep-last 1 >/dev/null

cairn_ok prune >"$T/grace.out"
expect_in "younger than the grace period" "prune on S3 with the default grace" "$T/grace.out"
cairn_ok prune --grace 0 --json >"$T/prune.json"
json_get "$T/prune.json" 'j["deleted_packs"] + j["repacked_packs"]' >"$T/n"
[ "$(cat "$T/n")" -ge 1 ] || { cat "$T/prune.json" >&2; fail "prune on S3 removed nothing"; }

if grep -q REJECTED "$S3_SIGV4_LOG"; then
  grep -A4 REJECTED "$S3_SIGV4_LOG" | head -n 40 >&2
  fail "the verifying proxy refused some of cairn's requests"
fi
[ "$(s3_count ' PUT /'"$S3_BUCKET"'/repo/locks/.* -> 200 ok .*sig=ok' "$S3_SIGV4_LOG")" -ge 1 ] ||
  fail "no lease was written to locks/"
if s3_keys repo/locks/ | grep -q .; then fail "a lease was left in locks/"; fi

cairn_ok check --read-data >/dev/null
cairn_ok restore latest --target "$T/out" >/dev/null
compare_trees "$T/copy" "$T/out"
echo "PASS: prune_s3"
