#!/usr/bin/env bash
# Faults between cairn and S3 (tests/s3/fault_proxy.py in front of the
# verifying proxy): 503 SlowDown bursts, 500s, a connection reset mid-upload,
# a response dropped mid-body, a truncated response and a stalled server.
# Backup and restore still complete and the restored tree matches. Then an
# unrecoverable fault (every request to data/ fails): backup exits non-zero
# with a clear message, records no snapshot, and `check` passes afterwards.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib_s3.sh"

s3_start --faults
cairn_need_s3
FLOG=$S3_FAULT_LOG
export CAIRN_S3_STALL_SECONDS=2 CAIRN_S3_RETRIES=8
# Packs (16 MiB) go up as multipart uploads, so part requests meet faults too.
export CAIRN_S3_MULTIPART_THRESHOLD=5000000

FIXTURE_SPARSE_MIB=16 make_fixture "$T/src"
randfile "$T/src/files/random-36m" $((36 * 1024 * 1024))   # several packs
cairn_ok init >/dev/null

# fired FAULT WHAT MIN LOGFILE: the fault proxy injected FAULT at least MIN times.
fired() {
  local n
  n=$(s3_count "FAULT $1 " "$4")
  [ "$n" -ge "$3" ] || { tail -n 40 "$4" >&2; fail "$2: fault '$1' was injected $n times, expected >= $3 (fault log above)"; }
  echo "injected: $1 x$n ($2)" >&2
}

echo "== backup through upload faults" >&2
# Every rule counts the requests its filter matches, retries included, so
# "after=3 first=1" is the 4th pack upload request, whatever was retried.
s3_faults \
  "slowdown method=PUT,POST match=/data/ first=3" \
  "reset_upload method=PUT match=/data/ after=3 first=1" \
  "drop method=PUT match=/data/ after=4 first=1" \
  "truncate method=PUT match=/data/ after=5 first=1" \
  "stall method=PUT match=/data/ after=6 first=1 seconds=20" \
  "error500 method=PUT match=/index/ first=1" \
  "error500 method=GET,HEAD after=1 every=3 max=2" \
  "error503 method=PUT match=/snapshots/ first=1"
mark=$(s3_log_mark "$FLOG")
t0=$(date +%s)
run_cairn backup "$T/src"
expect_rc 0 "backup under upload faults"
id=$(tr -d '[:space:]' <"$OUT")
is_snapshot_id "$id" || fail "backup under faults: stdout is not a snapshot id: '$id'"
echo "backup under faults took $(($(date +%s) - t0)) s" >&2
s3_log_since "$FLOG" "$mark" >"$T/backup-faults.log"
fired slowdown "503 SlowDown burst on pack uploads" 3 "$T/backup-faults.log"
fired reset_upload "connection reset mid-upload" 1 "$T/backup-faults.log"
fired drop "connection reset before the response" 1 "$T/backup-faults.log"
fired truncate "truncated response" 1 "$T/backup-faults.log"
fired stall "stalled server (CAIRN_S3_STALL_SECONDS=2)" 1 "$T/backup-faults.log"
fired error500 "500 InternalError" 1 "$T/backup-faults.log"
fired error503 "503 on the snapshot upload" 1 "$T/backup-faults.log"
# "Each retry logged once, with the key" (issue 3).
grep -iE 'retr' "$ERR" | grep -qE 'data/' ||
  { tail -n 20 "$ERR" >&2; fail "cairn's stderr does not log the retries with the key (data/...)"; }
echo "cairn logged $(grep -ciE 'retr' "$ERR") retry lines, e.g.: $(grep -iE 'retr' "$ERR" | head -n 1)" >&2

echo "== restore through download faults" >&2
s3_faults \
  "drop method=GET match=/data/ first=1" \
  "truncate method=GET match=/data/ after=1 first=1" \
  "stall method=GET match=/data/ after=2 first=1 seconds=20 at=body" \
  "slowdown method=GET match=/data/ after=3 first=2" \
  "error500 method=GET match=/data/ after=5 first=1"
mark=$(s3_log_mark "$FLOG")
t0=$(date +%s)
cairn_ok restore "$id" --target "$T/restored" >/dev/null
echo "restore under faults took $(($(date +%s) - t0)) s" >&2
s3_log_since "$FLOG" "$mark" >"$T/restore-faults.log"
fired drop "response reset mid-body" 1 "$T/restore-faults.log"
fired truncate "truncated response body" 1 "$T/restore-faults.log"
fired stall "stall mid-body (CAIRN_S3_STALL_SECONDS=2)" 1 "$T/restore-faults.log"
fired slowdown "503 SlowDown on downloads" 2 "$T/restore-faults.log"
fired error500 "500 on a download" 1 "$T/restore-faults.log"
compare_trees "$T/src" "$T/restored"

echo "== check --read-data through faults on listings, indexes and snapshots" >&2
s3_faults \
  "slowdown method=GET match=list-type first=1" \
  "error500 method=GET match=/index/ first=1" \
  "error500 method=GET match=/snapshots/ first=1" \
  "truncate method=GET match=/index/ after=1 first=1" \
  "drop method=GET match=/data/ first=1"
mark=$(s3_log_mark "$FLOG")
cairn_ok check --read-data >/dev/null
s3_log_since "$FLOG" "$mark" >"$T/check-faults.log"
fired slowdown "503 SlowDown on a listing" 1 "$T/check-faults.log"
fired error500 "500 on index/snapshot reads" 2 "$T/check-faults.log"
fired truncate "truncated index download" 1 "$T/check-faults.log"
fired drop "pack download reset mid-body" 1 "$T/check-faults.log"
s3_faults
if grep -q REJECTED "$S3_SIGV4_LOG"; then
  grep -A4 REJECTED "$S3_SIGV4_LOG" | head -n 30 >&2
  fail "the verifying proxy refused some of cairn's requests (retries must be signed correctly too)"
fi

echo "== unrecoverable: every request to data/ fails with 500 (CAIRN_S3_RETRIES=2)" >&2
mkdir "$T/src2"
randfile "$T/src2/new-data" $((3 * 1024 * 1024))   # new content: the backup must upload a pack
nsnap=$(s3_snapshot_count)
nkeys=$(s3_keys repo/snapshots/ | wc -l)
s3_faults "error500 match=/data/ max=1000000"
mark=$(s3_log_mark "$FLOG")
t0=$(date +%s)
CAIRN_S3_RETRIES=2 run_cairn backup "$T/src2"
echo "failing backup took $(($(date +%s) - t0)) s, exit $RC" >&2
expect_error "backup while every data/ request fails"
echo "--- its message:" >&2; tail -n 5 "$ERR" >&2
grep -qiE 'InternalError|500|server error' "$ERR" "$OUT" ||
  fail "the failed backup's message does not say what the server answered (500 InternalError)"
grep -qiE 'data/|s3://|127\.0\.0\.1' "$ERR" "$OUT" ||
  fail "the failed backup's message names neither the object nor the repository"
s3_log_since "$FLOG" "$mark" >"$T/fatal-faults.log"
fired error500 "every data/ request" 2 "$T/fatal-faults.log"
s3_faults
[ "$(s3_snapshot_count)" -eq "$nsnap" ] || fail "the failed backup recorded a snapshot (cairn snapshots --json)"
[ "$(s3_keys repo/snapshots/ | wc -l)" -eq "$nkeys" ] || fail "the failed backup wrote a snapshots/ object"
cairn_ok check >/dev/null
cairn_ok restore "$id" --target "$T/restored-after" >/dev/null
compare_trees "$T/src" "$T/restored-after"

echo "PASS: s3_faults ($(s3_count 'FAULT' "$FLOG") faults injected)"
