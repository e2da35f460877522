#!/usr/bin/env bash
# Errors people can act on: a wrong secret (403 from the verifying proxy), a
# missing bucket, an unreachable endpoint. Each exits non-zero with a message
# that names the cause (credentials, the bucket, the endpoint), records no
# snapshot, and no output ever contains the secret.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib_s3.sh"

s3_start
cairn_need_s3
# Use the proxy's second account: its secret is random, so finding it in any
# output can only be a leak.
export AWS_ACCESS_KEY_ID=$S3_KEY2 AWS_SECRET_ACCESS_KEY=$S3_SECRET2
WRONG=wrong-$S3_SECRET2-x
export CAIRN_S3_RETRIES=3

mkdir -p "$T/src"
printf 'some data\n' >"$T/src/a.txt"
randfile "$T/src/b.bin" 300000
cairn_ok init >/dev/null
id=$(backup_id "$T/src")
printf 'more\n' >"$T/src/c.txt"

snapshot_keys() { s3_aws s3 ls --recursive "s3://$S3_BUCKET/repo/snapshots/" | wc -l; }
nkeys=$(snapshot_keys)
[ "$nkeys" -eq 1 ] || fail "expected one snapshots/ object after the first backup, found $nkeys"

# timed_cairn LIMIT ARGS...: run_cairn, and fail if it took longer than LIMIT s
# (auth errors must not be retried with backoff; an unreachable endpoint is
# retried CAIRN_S3_RETRIES times, not forever).
timed_cairn() {
  local limit=$1 t0; shift
  t0=$(date +%s)
  run_cairn "$@"
  local took=$(($(date +%s) - t0))
  echo "  took ${took}s, exit $RC: $(head -n 2 "$ERR" | tr '\n' ' ')" >&2
  [ "$took" -le "$limit" ] || fail "cairn $* took ${took}s (limit ${limit}s)"
}

echo "== wrong secret" >&2
AWS_SECRET_ACCESS_KEY=$WRONG timed_cairn 20 backup "$T/src"
expect_error "backup with a wrong secret"
expect_in -i credential "backup with a wrong secret says the credentials are wrong" "$ERR" "$OUT"
AWS_SECRET_ACCESS_KEY=$WRONG timed_cairn 20 snapshots
expect_error "snapshots with a wrong secret"
expect_in -i credential "snapshots with a wrong secret says the credentials are wrong" "$ERR" "$OUT"
[ "$(snapshot_keys)" -eq "$nkeys" ] || fail "a backup with a wrong secret wrote a snapshots/ object"
grep -q 'SignatureDoesNotMatch REJECTED' "$S3_SIGV4_LOG" || fail "the proxy never saw the wrongly signed request"

echo "== unknown access key" >&2
AWS_ACCESS_KEY_ID=NOSUCHKEY timed_cairn 20 snapshots
expect_error "snapshots with an unknown access key"
expect_in -i credential "an unknown access key is reported as a credentials problem" "$ERR" "$OUT"

echo "== missing bucket" >&2
timed_cairn 20 --repo s3://no-such-bucket-cairn/repo snapshots
expect_error "snapshots in a missing bucket"
expect_in no-such-bucket-cairn "the missing-bucket message names the bucket" "$ERR" "$OUT"
timed_cairn 20 --repo s3://no-such-bucket-cairn/repo backup "$T/src"
expect_error "backup into a missing bucket"
expect_in no-such-bucket-cairn "backup into a missing bucket names the bucket" "$ERR" "$OUT"
s3_aws s3 ls "s3://no-such-bucket-cairn/" >/dev/null 2>&1 && fail "backup created the missing bucket"

echo "== unreachable endpoint (a closed port)" >&2
port=$(s3_free_port)
AWS_ENDPOINT_URL_S3=http://127.0.0.1:$port timed_cairn 45 snapshots
expect_error "snapshots with an unreachable endpoint"
expect_in "127.0.0.1:$port" "the unreachable-endpoint message names the endpoint" "$ERR" "$OUT"
AWS_ENDPOINT_URL_S3=http://127.0.0.1:$port timed_cairn 45 backup "$T/src"
expect_error "backup with an unreachable endpoint"
expect_in "127.0.0.1:$port" "backup with an unreachable endpoint names the endpoint" "$ERR" "$OUT"

echo "== nothing was recorded, the repository is intact" >&2
[ "$(snapshot_keys)" -eq "$nkeys" ] || fail "a failed run wrote a snapshots/ object"
cairn_ok snapshots --json >"$T/snaps.json"
[ "$(json_get "$T/snaps.json" 'len(j)')" -eq 1 ] || fail "cairn snapshots --json lists more than the one good snapshot"
cairn_ok check >/dev/null

echo "== the secret never appears in any output" >&2
for s in "$S3_SECRET2" "$WRONG"; do
  if grep -rlF -- "$s" "$T"/cmd.*.out "$T"/cmd.*.err >/dev/null 2>&1; then
    grep -rlF -- "$s" "$T"/cmd.*.out "$T"/cmd.*.err >&2
    fail "a secret access key appears in cairn's output (files above)"
  fi
done
# The proxy logs requests only, never secrets: check it too, so the check above means something.
! grep -qF -- "$S3_SECRET2" "$S3_SIGV4_LOG" || fail "the test proxy logged the secret (harness bug)"

echo "PASS: s3_badcreds (snapshot ${id:0:12} untouched)"
