#!/usr/bin/env bash
# Start the S3 test stack by hand, to debug a client against it:
#
#   bash tests/s3/start.sh [--faults]
#
# runs s3rver <- sigv4_proxy.py [<- fault_proxy.py] on free loopback ports
# (the same code the tests use: tests/e2e/lib_s3.sh), creates the bucket, and
# prints the environment to paste into another shell. Ctrl-C stops everything
# and removes the temp dir; the servers also stop by themselves after
# S3_MAX_SECONDS (default 900). With --faults, write rules (see
# fault_proxy.py) to the control file it prints.
set -euo pipefail
CAIRN_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
T=$(mktemp -d /tmp/cairn-s3.XXXXXX)
fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "SKIP: $*" >&2; exit 77; }
note() { echo "note: $*" >&2; }
need_cmd() {
  local c
  for c in "$@"; do command -v "$c" >/dev/null 2>&1 || fail "'$c' is not installed (scripts/install-test-deps.sh)"; done
}
S3_SLEEP_PID=
trap '[ -z "$S3_SLEEP_PID" ] || kill "$S3_SLEEP_PID" 2>/dev/null; rm -rf "$T"' EXIT
trap 'exit 130' INT TERM
# shellcheck source=../e2e/lib_s3.sh
source "$CAIRN_SRC/tests/e2e/lib_s3.sh"

s3_start "$@"
cat <<EOF

export AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY AWS_REGION=$AWS_REGION
export AWS_ENDPOINT_URL_S3=$AWS_ENDPOINT_URL_S3 CAIRN_REPO=$CAIRN_REPO
# awscli: aws --endpoint-url \$AWS_ENDPOINT_URL_S3 s3 ls --recursive s3://$S3_BUCKET/
# signature log: $S3_SIGV4_LOG
EOF
if [ -n "${S3_FAULT_CONTROL:-}" ]; then
  echo "# fault rules: $S3_FAULT_CONTROL   fault log: $S3_FAULT_LOG"
fi
echo "# Ctrl-C to stop"
sleep "$S3_MAX_SECONDS" &
S3_SLEEP_PID=$!
wait "$S3_SLEEP_PID"
