#!/usr/bin/env bash
# S3 credentials the way Kubernetes pods get them, against a fake STS and
# container-credentials endpoint (tests/s3/fake_sts.py) whose temporary keys
# the verifying proxy (tests/s3/sigv4_proxy.py --session-creds) accepts only
# with their session token and only until they expire (400 ExpiredToken):
#  - IRSA (AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE): backup, restore, diff -r;
#  - a backup that outlives its first credentials refreshes them before they
#    expire, with the token file read again (the old token is revoked);
#  - credentials that expire early (ExpiredToken from S3): refreshed, retried;
#  - transient STS errors are retried; a bad token, a wrong role, a missing
#    token file and an unreachable STS fail with a clear message, non-zero
#    exit, no snapshot, and never print a token;
#  - a shared credentials file with a session token is read again after
#    ExpiredToken (a rotated Secret), and an expired one is named;
#  - container credentials (EKS Pod Identity: AWS_CONTAINER_CREDENTIALS_FULL_URI
#    + AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE): round trip; a wrong token and
#    a plain-http URI to a non-loopback host are refused;
#  - the instance role through IMDSv2 (session token, role, keys) when nothing
#    else is configured; an unreachable IMDS is named.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib_s3.sh"

ROLE=arn:aws:iam::123456789012:role/cairn-backup
s3_sts_start "$ROLE"
s3_start
cairn_need_s3

# cairn gets no static keys; awscli (the harness's own checks) keeps them.
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN
s3_aws() {
  AWS_ACCESS_KEY_ID=$S3_KEY AWS_SECRET_ACCESS_KEY=$S3_SECRET \
    aws --endpoint-url "$AWS_ENDPOINT_URL_S3" "$@"
}
snapshot_objects() { s3_aws s3 ls --recursive "s3://$S3_BUCKET/repo/snapshots/" | wc -l; }
sts_ok() { s3_count "$1.* -> 200 akid=" "$S3_STS_LOG"; }
wait_for() { # COUNT-COMMAND WANT SECONDS: until the count reaches WANT
  local i
  for i in $(seq 1 $(($3 * 10))); do
    [ "$($1)" -ge "$2" ] && return 0
    sleep 0.1
  done
  return 1
}

jwt() { printf 'eyJhbGciOiJSUzI1NiJ9.%s.%s' "$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')" "$1"; }
TOKEN1=$(jwt one)
TOKEN2=$(jwt two)
BADTOKEN=$(jwt bad)
printf 'tok1 %s\n' "$TOKEN1" >"$S3_STS_TOKENS"
printf '%s\n' "$TOKEN1" >"$T/token"
export AWS_ROLE_ARN=$ROLE AWS_WEB_IDENTITY_TOKEN_FILE=$T/token AWS_ENDPOINT_URL_STS=$S3_STS_URL

mkdir -p "$T/src/sub"
printf 'hello irsa\n' >"$T/src/a.txt"
randfile "$T/src/sub/b.bin" 300000

echo "== IRSA: init, backup, restore" >&2
cairn_ok init >/dev/null
id=$(backup_id "$T/src")
cairn_ok restore "$id" --target "$T/r1" >/dev/null
diff -r "$T/src" "$T/r1" || fail "the tree restored through IRSA credentials differs (diff -r above)"
[ "$(sts_ok 'sts role='"$ROLE"' session=cairn-[^ ]+ token=tok1 via=body duration=-')" -ge 3 ] ||
  fail "expected one unsigned STS AssumeRoleWithWebIdentity (POST) per command with tok1 and a generated session name (log: $S3_STS_LOG)"
if grep -q REJECTED "$S3_SIGV4_LOG"; then
  grep REJECTED "$S3_SIGV4_LOG" | head -n 5 >&2
  fail "the proxy refused some of cairn's requests with IRSA credentials"
fi
[ "$(s3_count 'akid=ASIA[A-Z0-9]{16} token=ok sig=ok' "$S3_SIGV4_LOG")" -ge 10 ] ||
  fail "requests were not signed with the STS keys and their session token (x-amz-security-token)"
nsnap=$(snapshot_objects)

echo "== a backup that outlives its credentials: refreshed before expiry, token file re-read" >&2
printf 'lifetime=4\n' >"$S3_STS_CONTROL"
mkdir -p "$T/src2"
randfile "$T/src2/big.bin" 9000000
printf 'x\n' >"$T/src2/small.txt"
mark=$(s3_log_mark "$S3_SIGV4_LOG")
smark=$(s3_log_mark "$S3_STS_LOG")
before=$(sts_ok sts)
t0=$(date +%s)
(run_cairn --limit-upload 1.5 backup "$T/src2"; echo "$RC" >"$T/bg.rc"; echo "$OUT" >"$T/bg.out"; echo "$ERR" >"$T/bg.err") &
bg=$!
wait_for "sts_ok sts" $((before + 1)) 20 || fail "the backup did not call STS"
# The kubelet rotates the projected token: a new file content, the old token revoked.
printf '%s\n' "$TOKEN2" >"$T/token.new" && mv -f "$T/token.new" "$T/token"
printf 'tok2 %s\n' "$TOKEN2" >"$S3_STS_TOKENS"
wait "$bg" || true
took=$(($(date +%s) - t0))
rc=$(cat "$T/bg.rc")
if [ "$rc" -ne 0 ]; then
  tail -n 20 "$(cat "$T/bg.err")" >&2
  fail "the long backup with 4-second credentials failed (exit $rc)"
fi
id2=$(tr -d '[:space:]' <"$(cat "$T/bg.out")")
is_snapshot_id "$id2" || fail "the long backup printed no snapshot id"
s3_log_since "$S3_STS_LOG" "$smark" >"$T/sts.step2"
s3_log_since "$S3_SIGV4_LOG" "$mark" >"$T/sigv4.step2"
n_tok2=$(s3_count 'token=tok2 .* -> 200' "$T/sts.step2")
echo "  backup took ${took}s; STS calls: $(grep -c ' -> ' "$T/sts.step2"), with the rotated token: $n_tok2" >&2
[ "$took" -ge 5 ] || fail "the long backup took ${took}s: not long enough to outlive 4-second credentials"
[ "$n_tok2" -ge 1 ] || fail "STS was not called again with the rotated token file content (log: $T/sts.step2)"
! grep -q 'token=UNKNOWN' "$T/sts.step2" || fail "cairn sent STS a stale (revoked) token: it did not read the token file again"
if grep -q 'ExpiredToken REJECTED' "$T/sigv4.step2"; then
  grep 'ExpiredToken REJECTED' "$T/sigv4.step2" | head -n 3 >&2
  fail "requests went out with expired credentials: they were not refreshed before expiry"
fi
[ "$(awk '/token=ok/ { for (i = 1; i <= NF; i++) if ($i ~ /^akid=/) print $i }' "$T/sigv4.step2" | sort -u | wc -l)" -ge 2 ] ||
  fail "the long backup used only one set of credentials"
grep -q 'refreshed the credentials from STS' "$(cat "$T/bg.err")" ||
  fail "cairn did not report the refresh on stderr"

echo "== credentials that expire before their stated Expiration: ExpiredToken, refresh, retry" >&2
printf 'lifetime=3\nadvertise=3600\n' >"$S3_STS_CONTROL"
mark=$(s3_log_mark "$S3_SIGV4_LOG")
smark=$(s3_log_mark "$S3_STS_LOG")
printf 'y\n' >"$T/src2/small2.txt"
randfile "$T/src2/big2.bin" 6000000
run_cairn --limit-upload 1.5 backup "$T/src2"
expect_rc 0 "the backup whose credentials expired early"
id3=$(tr -d '[:space:]' <"$OUT")
s3_log_since "$S3_SIGV4_LOG" "$mark" >"$T/sigv4.step3"
s3_log_since "$S3_STS_LOG" "$smark" >"$T/sts.step3"
n_exp=$(s3_count 'ExpiredToken REJECTED' "$T/sigv4.step3")
echo "  ExpiredToken answers: $n_exp; STS calls: $(s3_count ' -> 200' "$T/sts.step3")" >&2
[ "$n_exp" -ge 1 ] || fail "the proxy never answered ExpiredToken: the test did not exercise the refresh on ExpiredToken"
[ "$(s3_count ' -> 200' "$T/sts.step3")" -ge 2 ] || fail "cairn did not call STS again after ExpiredToken"
expect_in 'answered ExpiredToken): refreshing them and retrying' "cairn reports the refresh after ExpiredToken" "$ERR"
printf '' >"$S3_STS_CONTROL"
cairn_ok restore "$id3" --target "$T/r3" >/dev/null
diff -r "$T/src2" "$T/r3" || fail "the tree backed up across credential refreshes differs (diff -r above)"
cairn_ok restore "$id2" --target "$T/r2" >/dev/null
cmp "$T/src2/big.bin" "$T/r2/big.bin" || fail "big.bin of the long backup differs"
nsnap=$(snapshot_objects)

echo "== transient STS errors are retried" >&2
printf 'fail=IDPCommunicationError\nfail_count=2\n' >"$S3_STS_CONTROL"
cairn_ok snapshots >/dev/null
grep -q 'retrying the credentials request' "$ERR" || fail "no retry reported after IDPCommunicationError"
printf '' >"$S3_STS_CONTROL"

echo "== a token STS refuses" >&2
printf '%s\n' "$BADTOKEN" >"$T/token"
run_cairn backup "$T/src"
expect_error "backup with a bad web identity token"
expect_in "$T/token" "the bad-token message names the token file" "$ERR"
expect_in AWS_WEB_IDENTITY_TOKEN_FILE "the bad-token message names the variable" "$ERR"
expect_in "$ROLE" "the bad-token message names the role" "$ERR"
expect_in InvalidIdentityToken "the bad-token message gives STS's code" "$ERR"
grep -q 'token=UNKNOWN' "$S3_STS_LOG" || fail "STS never saw the bad token"
printf '%s\n' "$TOKEN2" >"$T/token"

echo "== a role the token may not assume" >&2
AWS_ROLE_ARN=arn:aws:iam::123456789012:role/someone-else run_cairn backup "$T/src"
expect_error "backup with a role the token may not assume"
expect_in "role/someone-else" "the access-denied message names the role" "$ERR"
expect_in -i denied "the access-denied message says denied" "$ERR"

echo "== a missing token file, a half configuration" >&2
AWS_WEB_IDENTITY_TOKEN_FILE=$T/no-such-token run_cairn snapshots
expect_error "snapshots with a missing token file"
expect_in "$T/no-such-token" "the missing-token-file message names the file" "$ERR"
env -u AWS_WEB_IDENTITY_TOKEN_FILE "$CAIRN" snapshots >"$T/half.out" 2>"$T/half.err" && fail "AWS_ROLE_ARN without a token file was accepted"
expect_in AWS_WEB_IDENTITY_TOKEN_FILE "AWS_ROLE_ARN alone says what is missing" "$T/half.err"

echo "== STS unreachable" >&2
port=$(s3_free_port)
t0=$(date +%s)
AWS_ENDPOINT_URL_STS=http://127.0.0.1:$port CAIRN_S3_RETRIES=2 run_cairn backup "$T/src"
took=$(($(date +%s) - t0))
expect_error "backup with STS unreachable"
expect_in "cannot reach STS at http://127.0.0.1:$port" "the unreachable-STS message names the endpoint" "$ERR"
expect_in "$ROLE" "the unreachable-STS message names the role" "$ERR"
[ "$took" -le 20 ] || fail "an unreachable STS took ${took}s to report"

[ "$(snapshot_objects)" -eq "$nsnap" ] || fail "a failed run wrote a snapshots/ object"

echo "== shared credentials file with a session token: read again after ExpiredToken" >&2
unset AWS_ROLE_ARN AWS_WEB_IDENTITY_TOKEN_FILE
export AWS_SHARED_CREDENTIALS_FILE=$T/aws-credentials
sts_issue() { # fresh keys from the fake STS; prints "AKID SECRET TOKEN"
  "$S3_PY" - "$S3_STS_URL" "$ROLE" "$TOKEN2" <<'EOF' >/dev/null || fail "could not get keys from the fake STS"
import sys, urllib.parse, urllib.request
body = urllib.parse.urlencode({"Action": "AssumeRoleWithWebIdentity", "Version": "2011-06-15",
                               "RoleArn": sys.argv[2], "RoleSessionName": "test-harness",
                               "WebIdentityToken": sys.argv[3]}).encode()
req = urllib.request.Request(sys.argv[1] + "/", data=body,
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
urllib.request.urlopen(req, timeout=10).read()
EOF
  tail -n 1 "$S3_STS_CREDS" | cut -d' ' -f1-3
}
write_credfile() { # "AKID SECRET TOKEN": replace the file the way a Secret update does
  local a s t
  read -r a s t <<<"$1"
  printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\naws_session_token = %s\n' \
    "$a" "$s" "$t" >"$T/aws-credentials.new"
  mv -f "$T/aws-credentials.new" "$T/aws-credentials"
}
printf 'lifetime=3\n' >"$S3_STS_CONTROL"
write_credfile "$(sts_issue)"
mark=$(s3_log_mark "$S3_SIGV4_LOG")
randfile "$T/src2/big3.bin" 6000000
(run_cairn --limit-upload 1.5 backup "$T/src2"; echo "$RC" >"$T/bg.rc"; echo "$ERR" >"$T/bg.err") &
bg=$!
sleep 1.5
printf 'lifetime=3600\n' >"$S3_STS_CONTROL"
write_credfile "$(sts_issue)"
wait "$bg" || true
rc=$(cat "$T/bg.rc")
[ "$rc" -eq 0 ] || { tail -n 20 "$(cat "$T/bg.err")" >&2; fail "the backup whose credentials file was rotated failed (exit $rc)"; }
s3_log_since "$S3_SIGV4_LOG" "$mark" >"$T/sigv4.step5"
[ "$(s3_count 'ExpiredToken REJECTED' "$T/sigv4.step5")" -ge 1 ] || fail "the first keys never expired: the step tested nothing"
grep -q 'read the credentials again from the shared credentials file' "$(cat "$T/bg.err")" ||
  fail "cairn did not report reading the credentials file again"
printf 'lifetime=1\n' >"$S3_STS_CONTROL"
write_credfile "$(sts_issue)"
sleep 1.2
printf '' >"$S3_STS_CONTROL"
run_cairn snapshots
expect_error "snapshots with an expired session token in the credentials file"
expect_in "$T/aws-credentials" "the expired-token message names the credentials file" "$ERR"
expect_in -i expired "the expired-token message says expired" "$ERR"
nsnap=$(snapshot_objects)

echo "== container credentials (EKS Pod Identity)" >&2
export AWS_SHARED_CREDENTIALS_FILE=$T/no-credentials-file
AUTH=pod-identity-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
printf '%s\n' "$AUTH" >"$S3_STS_AUTH"
printf '%s\n' "$AUTH" >"$T/pod-token"
export AWS_CONTAINER_CREDENTIALS_FULL_URI=$S3_STS_URL/v1/credentials
export AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=$T/pod-token
id4=$(backup_id "$T/src")
cairn_ok restore "$id4" --target "$T/r4" >/dev/null
diff -r "$T/src" "$T/r4" || fail "the tree restored through container credentials differs (diff -r above)"
[ "$(s3_count 'container auth=ok -> 200' "$S3_STS_LOG")" -ge 2 ] || fail "no container credentials request with the right Authorization"
grep -q 'container auth=NONE' "$S3_STS_LOG" && fail "a container credentials request came without Authorization"

echo "== container credentials: a wrong token, plain http to another host" >&2
printf 'not-the-token\n' >"$T/pod-token"
run_cairn snapshots
expect_error "snapshots with a wrong container authorization token"
expect_in "HTTP 401" "the wrong-token message gives the status" "$ERR"
expect_in AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE "the wrong-token message names the variable" "$ERR"
printf '%s\n' "$AUTH" >"$T/pod-token"
n=$(s3_count container "$S3_STS_LOG")
t0=$(date +%s)
AWS_CONTAINER_CREDENTIALS_FULL_URI=http://10.11.12.13/v1/credentials run_cairn backup "$T/src"
expect_error "backup with a plain-http container URI to a non-loopback host"
expect_in "neither loopback" "the refusal says why" "$ERR"
expect_in "10.11.12.13" "the refusal names the URI" "$ERR"
[ $(($(date +%s) - t0)) -le 5 ] || fail "the non-loopback URI was refused only after trying it"
[ "$(snapshot_objects)" -eq $((nsnap + 1)) ] || fail "a refused run wrote a snapshots/ object"

echo "== the instance role through IMDSv2 (last in the chain)" >&2
unset AWS_CONTAINER_CREDENTIALS_FULL_URI AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE AWS_EC2_METADATA_DISABLED
unset AWS_SHARED_CREDENTIALS_FILE  # and no ~/.aws/credentials:
export HOME=$T/home
export AWS_EC2_METADATA_SERVICE_ENDPOINT=$S3_STS_URL
id5=$(backup_id "$T/src")
cairn_ok restore "$id5" --target "$T/r5" >/dev/null
diff -r "$T/src" "$T/r5" || fail "the tree restored through the instance role differs (diff -r above)"
[ "$(s3_count 'imds creds token=ok -> 200' "$S3_STS_LOG")" -ge 2 ] || fail "no IMDSv2 credentials request with a session token"
grep -qE 'imds .*token=(NONE|WRONG)' "$S3_STS_LOG" && fail "an IMDS request came without its IMDSv2 session token"
port=$(s3_free_port)
t0=$(date +%s)
AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:$port run_cairn snapshots
expect_error "snapshots with nothing configured and no IMDS"
expect_in "cannot reach the instance metadata service at http://127.0.0.1:$port" "the IMDS message names the endpoint" "$ERR"
expect_in AWS_EC2_METADATA_DISABLED "the IMDS message says how to turn it off" "$ERR"
[ $(($(date +%s) - t0)) -le 5 ] || fail "an unreachable IMDS took too long to report"
AWS_EC2_METADATA_DISABLED=true run_cairn snapshots
expect_error "snapshots with no credentials at all"
expect_in "no S3 credentials" "no credentials at all is said so" "$ERR"

echo "== no token or secret in any output" >&2
secrets=("$TOKEN1" "$TOKEN2" "$BADTOKEN" "$AUTH")
while read -r _akid secret token _exp; do secrets+=("$secret" "$token"); done <"$S3_STS_CREDS"
for s in "${secrets[@]}"; do
  if grep -rlF -- "$s" "$T"/cmd.*.out "$T"/cmd.*.err "$T/half.out" "$T/half.err" >/dev/null 2>&1; then
    grep -rlF -- "$s" "$T"/cmd.*.out "$T"/cmd.*.err "$T/half.out" "$T/half.err" >&2
    fail "a token or secret appears in cairn's output (files above)"
  fi
done
if [ -f "$CAIRN_CATALOG" ]; then
  for s in "${secrets[@]}"; do
    ! grep -qaF -- "$s" "$CAIRN_CATALOG" || fail "a token or secret is in the catalog"
  done
fi

echo "PASS: s3_webidentity ($(wc -l <"$S3_STS_CREDS") credentials issued)"
