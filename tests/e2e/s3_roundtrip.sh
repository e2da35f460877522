#!/usr/bin/env bash
# Backup and restore through s3:// (s3rver behind the verifying SigV4 proxy):
# the restored tree matches the source, `check --read-data` passes, every
# request cairn made was correctly signed, and awscli with the same
# credentials lists and reads what cairn wrote (config, data/, index/,
# snapshots/). Then a 40 MiB file with CAIRN_S3_MULTIPART_THRESHOLD=5000000:
# packs go up as multipart uploads and restore identically.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib_s3.sh"

s3_start
cairn_need_s3
LOG=$S3_SIGV4_LOG

FIXTURE_SPARSE_MIB=64 make_fixture "$T/src"
echo "fixture: xattrs=$FIX_XATTR acls=$FIX_ACL devices=$FIX_DEV owners=$FIX_OWNER" >&2

echo "== init, backup, restore through $CAIRN_REPO" >&2
cairn_ok init >/dev/null
id=$(backup_id "$T/src")
cairn_ok restore "$id" --target "$T/restored" >/dev/null
compare_trees "$T/src" "$T/restored"
cairn_ok check --read-data >"$T/check.txt"

cairn_ok snapshots >"$T/snapshots.txt"
expect_in "${id:0:8}" "snapshots lists the new snapshot" "$T/snapshots.txt"

echo "== every request cairn made was signed correctly" >&2
if grep -q REJECTED "$LOG"; then
  grep -A4 REJECTED "$LOG" | head -n 40 >&2
  fail "the verifying proxy refused some of cairn's requests (first ones above, with the canonical request it expected)"
fi
[ "$(s3_count ' (PUT|POST) /'"$S3_BUCKET"'/repo/data/.* -> 200 ok .*sig=ok' "$LOG")" -ge 1 ] ||
  fail "no verified pack upload in $LOG"

echo "== awscli sees what cairn wrote" >&2
s3_keys repo/ >"$T/keys.txt"
grep -qx 'repo/config' "$T/keys.txt" || { cat "$T/keys.txt" >&2; fail "aws s3 ls: no repo/config"; }
grep -qE '^repo/data/[0-9a-f]{2}/[0-9a-f]{64}$' "$T/keys.txt" || { cat "$T/keys.txt" >&2; fail "aws s3 ls: no repo/data/XX/<pack id>"; }
grep -qE '^repo/index/[0-9a-f]{64}$' "$T/keys.txt" || { cat "$T/keys.txt" >&2; fail "aws s3 ls: no repo/index/<id>"; }
grep -qx "repo/snapshots/$id" "$T/keys.txt" || { cat "$T/keys.txt" >&2; fail "aws s3 ls: no repo/snapshots/$id"; }
! grep -q '^repo/tmp/' "$T/keys.txt" || fail "the S3 repository has tmp/ objects (local-directory staging leaked into S3)"

s3_aws s3 cp --only-show-errors "s3://$S3_BUCKET/repo/snapshots/$id" "$T/snap-object.json"
s3_aws s3 cp --only-show-errors "s3://$S3_BUCKET/repo/config" "$T/config.json"
cairn_ok snapshots --json >"$T/snapshots.json"
python3 - "$T/snap-object.json" "$T/snapshots.json" "$id" "$T/config.json" <<'EOF' || fail "snapshot object downloaded by awscli does not match cairn's view (above)"
import hashlib, json, sys
raw = open(sys.argv[1], "rb").read()
obj = json.loads(raw)
listed = [s for s in json.load(open(sys.argv[2])) if s["id"] == sys.argv[3]]
assert len(listed) == 1, f"snapshots --json does not list {sys.argv[3]}"
assert obj["tree"] == listed[0]["tree"], f"tree differs: object {obj['tree']} vs snapshots --json {listed[0]['tree']}"
# The name of a snapshot object is the BLAKE2b-256 of its bytes.
h = hashlib.blake2b(raw, digest_size=32).hexdigest()
assert h == sys.argv[3], f"snapshot object hashes to {h}, not its name {sys.argv[3]}"
cfg = json.load(open(sys.argv[4]))
assert cfg.get("version") == 1, f"config: {cfg}"
print("awscli: snapshot object tree", obj["tree"][:12], "matches; config version", cfg["version"], file=sys.stderr)
EOF
pack=$(grep -E '^repo/data/' "$T/keys.txt" | head -n 1)
s3_aws s3 cp --only-show-errors "s3://$S3_BUCKET/$pack" "$T/pack.bin"
[ "$(tail -c 8 "$T/pack.bin")" = CAIRNPK1 ] || fail "pack $pack downloaded by awscli does not end with the CAIRNPK1 magic"

echo "== multipart: a 40 MiB file with CAIRN_S3_MULTIPART_THRESHOLD=5000000" >&2
mkdir "$T/big"
randfile "$T/big/random-40m" $((40 * 1024 * 1024))
mark=$(s3_log_mark "$LOG")
id2=$(CAIRN_S3_MULTIPART_THRESHOLD=5000000 backup_id "$T/big")
s3_log_since "$LOG" "$mark" >"$T/multipart.log"
[ "$(s3_count 'POST /'"$S3_BUCKET"'/repo/data/[^ ]*\?uploads[ =].* -> 200 ok' "$T/multipart.log")" -ge 1 ] || {
  grep -E '/data/' "$T/multipart.log" | head -n 20 >&2
  fail "no CreateMultipartUpload (POST ...?uploads) for a pack above the threshold (data requests above)"
}
[ "$(s3_count 'PUT /'"$S3_BUCKET"'/repo/data/[^ ]*partNumber=.* -> 200 ok .*sig=ok' "$T/multipart.log")" -ge 2 ] ||
  fail "fewer than two verified UploadPart (PUT ...partNumber=) requests for the 40 MiB backup"
[ "$(s3_count 'POST /'"$S3_BUCKET"'/repo/data/[^ ]*uploadId=.* -> 200 ok' "$T/multipart.log")" -ge 1 ] ||
  fail "no CompleteMultipartUpload (POST ...?uploadId=) in the log"
! grep -q REJECTED "$T/multipart.log" || { grep -A4 REJECTED "$T/multipart.log" | head -n 30 >&2; fail "the proxy refused multipart requests"; }
# Objects bigger than one part exist, as awscli sees them.
s3_aws s3 ls --recursive "s3://$S3_BUCKET/repo/data/" | awk '$3 > 5000000 { n++ } END { exit !(n >= 1) }' ||
  fail "no pack object above 5000000 bytes in the bucket after the 40 MiB backup"
cairn_ok restore "$id2" --target "$T/big-restored" >/dev/null
cmp "$T/big/random-40m" "$T/big-restored/random-40m" || fail "the 40 MiB file restored differently"
compare_trees "$T/big" "$T/big-restored"
cairn_ok check --read-data >/dev/null

echo "PASS: s3_roundtrip ($(wc -l <"$LOG") requests, all signatures verified)"
