#!/usr/bin/env bash
# The S3 test servers can fail: every S3 test trusts tests/s3/sigv4_proxy.py
# to refuse what AWS would refuse, so this test shows it does, with awscli and
# with an independent stdlib signer (tests/s3/sign_request.py), and that
# correct requests from both pass. All of it goes through the fault proxy in
# pass-through mode; the last part shows each of its faults is what a client
# sees, and that awscli recovers from them. Needs no cairn S3 backend.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib_s3.sh"

s3_start --faults
# The proxy's log from here on (s3_start's readiness probe is in it too).
LOG0=$(s3_log_mark "$S3_SIGV4_LOG")
LOG=$T/sigv4-since-start.log
refresh_log() { s3_log_since "$S3_SIGV4_LOG" "$LOG0" >"$LOG"; }
B=s3://$S3_BUCKET

# expect_aws_fail CODE WHAT ARGS...: awscli exits non-zero naming CODE.
expect_aws_fail() {
  local code=$1 what=$2 rc=0; shift 2
  "$@" >"$T/aws.out" 2>&1 || rc=$?
  [ "$rc" -ne 0 ] || { cat "$T/aws.out" >&2; fail "$what: awscli succeeded, expected $code"; }
  expect_in "$code" "$what" "$T/aws.out"
}
# signed EXPECT ARGS...: one request from sign_request.py; its "STATUS CODE" must be EXPECT.
signed() {
  local want=$1 got; shift
  got=$("$S3_PY" "$S3_DIR/sign_request.py" --endpoint "$AWS_ENDPOINT_URL_S3" "$@")
  [ "$got" = "$want" ] || fail "sign_request.py $*: got '$got', expected '$want'"
  echo "ok: $want <- sign_request.py $*" >&2
}

echo "== awscli: put / list / get round trip, small and multipart" >&2
randfile "$T/small.bin" 1000
randfile "$T/big.bin" $((12 * 1024 * 1024))   # above awscli's 8 MiB multipart threshold
s3_aws s3 cp --only-show-errors "$T/small.bin" "$B/self/small.bin"
s3_aws s3 cp --only-show-errors "$T/big.bin" "$B/self/big.bin"
s3_aws s3 ls --recursive "$B/self/" >"$T/ls.txt"
expect_in "self/small.bin" "aws s3 ls lists the small object" "$T/ls.txt"
expect_in "self/big.bin" "aws s3 ls lists the multipart object" "$T/ls.txt"
s3_aws s3 cp --only-show-errors "$B/self/small.bin" "$T/small.back"
s3_aws s3 cp --only-show-errors "$B/self/big.bin" "$T/big.back"
cmp "$T/small.bin" "$T/small.back" || fail "small object changed in the round trip"
cmp "$T/big.bin" "$T/big.back" || fail "multipart object changed in the round trip"
refresh_log
[ "$(s3_count 'uploads.* -> 200 ok .*sig=ok' "$LOG")" -ge 1 ] || fail "no verified CreateMultipartUpload in $LOG"
[ "$(s3_count 'partNumber=.* -> 200 ok .*sig=ok payload=sha256-ok' "$LOG")" -ge 2 ] ||
  fail "no verified UploadPart with a checked payload hash in $LOG"
[ "$(s3_count 'REJECTED' "$LOG")" -eq 0 ] || { grep REJECTED "$LOG" >&2; fail "the proxy rejected a correct awscli request"; }

echo "== awscli with a wrong secret: 403 SignatureDoesNotMatch" >&2
mark=$(s3_log_mark "$S3_SIGV4_LOG")
expect_aws_fail SignatureDoesNotMatch "wrong secret, ls" env AWS_SECRET_ACCESS_KEY=wrong aws --endpoint-url "$AWS_ENDPOINT_URL_S3" s3 ls "$B/self/"
expect_aws_fail SignatureDoesNotMatch "wrong secret, put" env AWS_SECRET_ACCESS_KEY=wrong aws --endpoint-url "$AWS_ENDPOINT_URL_S3" s3 cp --only-show-errors "$T/small.bin" "$B/self/evil.bin"
s3_log_since "$S3_SIGV4_LOG" "$mark" >"$T/wrong.log"
expect_in "403 SignatureDoesNotMatch REJECTED" "the proxy log records the mismatch" "$T/wrong.log"
expect_in "canonical-request:" "the proxy log shows its canonical request" "$T/wrong.log"
[ "$(s3_count ' -> [0-9]+ ok ' "$T/wrong.log")" -eq 0 ] || fail "a wrongly signed request was forwarded"
s3_keys self/ >"$T/keys.txt"
! grep -q evil "$T/keys.txt" || fail "an object put with a wrong secret was stored"

echo "== awscli with an unknown access key: 403 InvalidAccessKeyId" >&2
expect_aws_fail InvalidAccessKeyId "unknown key" env AWS_ACCESS_KEY_ID=NOSUCHKEY aws --endpoint-url "$AWS_ENDPOINT_URL_S3" s3 ls "$B/"

echo "== independent signer: correct requests pass" >&2
printf 'signed by hand\n' >"$T/hand.txt"
signed "200 -" --method PUT --path "/$S3_BUCKET/hand/a b+c.txt" --body-file "$T/hand.txt"
signed "200 -" --method GET --path "/$S3_BUCKET/hand/a b+c.txt" --out "$T/hand.back"
cmp "$T/hand.txt" "$T/hand.back" || fail "object signed by hand changed in the round trip"
signed "200 -" --method PUT --path "/$S3_BUCKET/hand/md5.txt" --body-file "$T/hand.txt" --content-md5
signed "200 -" --method PUT --path "/$S3_BUCKET/hand/unsigned.txt" --body-file "$T/hand.txt" --payload unsigned
signed "200 -" --method GET --path "/$S3_BUCKET" --query 'list-type=2&prefix=hand/&delimiter=/'
signed "200 -" --method POST --path "/$S3_BUCKET/hand/mp" --query uploads
randfile "$T/stream.bin" 300000
signed "200 -" --method PUT --path "/$S3_BUCKET/hand/stream.bin" --body-file "$T/stream.bin" --payload streaming
signed "200 -" --method GET --path "/$S3_BUCKET/hand/stream.bin" --out "$T/stream.back"
cmp "$T/stream.bin" "$T/stream.back" || fail "aws-chunked upload was not decoded to the plain body"

echo "== independent signer: each broken rule is refused" >&2
P=(--method PUT --path "/$S3_BUCKET/hand/tampered.txt" --body-file "$T/hand.txt")
signed "400 XAmzContentSHA256Mismatch" "${P[@]}" --tamper body
signed "403 SignatureDoesNotMatch" "${P[@]}" --tamper hash-header
signed "403 SignatureDoesNotMatch" "${P[@]}" --tamper path
signed "403 SignatureDoesNotMatch" "${P[@]}" --tamper secret
signed "403 AccessDenied" "${P[@]}" --tamper unsigned-header
signed "403 RequestTimeTooSkewed" "${P[@]}" --tamper skew
signed "400 AuthorizationHeaderMalformed" "${P[@]}" --tamper region
signed "400 BadDigest" "${P[@]}" --tamper md5
signed "403 SignatureDoesNotMatch" --method PUT --path "/$S3_BUCKET/hand/tampered.txt" --body-file "$T/stream.bin" --payload streaming --tamper chunk
signed "403 SignatureDoesNotMatch" --method GET --path "/$S3_BUCKET" --query 'list-type=2&prefix=hand/&delimiter=/' --tamper query-unsorted
signed "403 SignatureDoesNotMatch" --method POST --path "/$S3_BUCKET/hand/mp" --query uploads --tamper bare-key
signed "403 InvalidAccessKeyId" "${P[@]}" --access-key NOSUCHKEY
s3_keys hand/ >"$T/keys.txt"
! grep -q tampered "$T/keys.txt" || fail "a refused request stored an object"

echo "== anonymous requests are refused" >&2
python3 - "$AWS_ENDPOINT_URL_S3" "$S3_BUCKET" >"$T/anon.txt" <<'EOF'
import http.client, sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
c.request("GET", f"/{sys.argv[2]}/self/small.bin")
r = c.getresponse()
print(r.status, " ".join(r.read().decode().split()))
EOF
grep -q '^403 .*AccessDenied' "$T/anon.txt" || { cat "$T/anon.txt" >&2; fail "an anonymous GET was not refused"; }

echo "== fault proxy: each fault, as a client sees it" >&2
[ "$(s3_count 'FAULT' "$S3_FAULT_LOG")" -eq 0 ] || fail "the fault proxy injected faults with no rules"
G=(--method GET --path "/$S3_BUCKET/self/small.bin")
s3_faults "slowdown first=1"; signed "503 SlowDown" "${G[@]}"
s3_faults "error500 first=1"; signed "500 InternalError" "${G[@]}"
s3_faults "error503 first=1"; signed "503 ServiceUnavailable" "${G[@]}"
s3_faults "pass first=1"; signed "200 -" "${G[@]}"
# drop: headers and half the 1000-byte body, then a reset.
s3_faults "drop first=1"
out=$("$S3_PY" "$S3_DIR/sign_request.py" --endpoint "$AWS_ENDPOINT_URL_S3" "${G[@]}")
[[ $out =~ ^ERR\ (ConnectionResetError|IncompleteRead|RemoteDisconnected) ]] || fail "drop: client saw '$out'"
echo "ok: drop -> $out" >&2
# truncate: 750 of 1000 bytes, then a clean close.
s3_faults "truncate first=1"
out=$("$S3_PY" "$S3_DIR/sign_request.py" --endpoint "$AWS_ENDPOINT_URL_S3" "${G[@]}")
[ "$out" = "ERR IncompleteRead after 750 body bytes" ] || fail "truncate: client saw '$out'"
echo "ok: truncate -> $out" >&2
# stall: headers, then silence; a 1 s client timeout fires.
s3_faults "stall first=1 seconds=5"
t0=$(date +%s)
out=$("$S3_PY" "$S3_DIR/sign_request.py" --endpoint "$AWS_ENDPOINT_URL_S3" "${G[@]}" --timeout 1)
[[ $out =~ ^ERR\ (TimeoutError|timeout) ]] || fail "stall: client saw '$out'"
[ $(($(date +%s) - t0)) -lt 4 ] || fail "stall: the client timeout did not end the request"
echo "ok: stall -> $out" >&2
# reset_upload: the request body is cut off; nothing is stored.
s3_faults "reset_upload method=PUT first=1"
out=$("$S3_PY" "$S3_DIR/sign_request.py" --endpoint "$AWS_ENDPOINT_URL_S3" --method PUT \
  --path "/$S3_BUCKET/self/cut.bin" --body-file "$T/stream.bin")
[[ $out =~ ^ERR\  ]] || fail "reset_upload: client saw '$out'"
echo "ok: reset_upload -> $out" >&2
s3_faults
! s3_keys self/ | grep -q cut.bin || fail "reset_upload: a cut-off upload was stored"
# Counting: every=3 over 6 matching requests fires twice; match/method filter.
s3_faults "error500 method=GET match=/self/small every=3"
for i in 1 2 3 4 5 6; do "$S3_PY" "$S3_DIR/sign_request.py" --endpoint "$AWS_ENDPOINT_URL_S3" "${G[@]}"; done >"$T/every.txt"
[ "$(grep -c '^500 InternalError' "$T/every.txt")" -eq 2 ] || { cat "$T/every.txt" >&2; fail "every=3 did not fire exactly twice in 6"; }
signed "200 -" --method HEAD --path "/$S3_BUCKET/self/small.bin"

echo "== awscli recovers from a burst of faults" >&2
s3_faults "slowdown method=PUT first=2" "error500 method=GET match=/self/ first=1" \
  "drop method=GET match=/self/ after=1 first=1" "truncate method=GET match=/self/ after=2 first=1"
mark=$(s3_log_mark "$S3_FAULT_LOG")
s3_aws s3 cp --only-show-errors "$T/small.bin" "$B/self/again.bin"
s3_aws s3 cp --only-show-errors "$B/self/again.bin" "$T/again.back"
cmp "$T/small.bin" "$T/again.back" || fail "awscli round trip through faults changed the object"
s3_log_since "$S3_FAULT_LOG" "$mark" >"$T/aws-faults.log"
for f in slowdown error500 drop truncate; do
  grep -q "FAULT $f " "$T/aws-faults.log" || { cat "$T/aws-faults.log" >&2; fail "fault $f was not injected into awscli's requests"; }
done
s3_faults

refresh_log
echo "PASS: s3_proxy_selftest ($(wc -l <"$LOG") requests logged, $(s3_count REJECTED "$LOG") refused as expected)"
