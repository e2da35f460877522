# shellcheck shell=bash
# S3 test harness for the end-to-end tests. Source it after lib.sh:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#   source "$(dirname "${BASH_SOURCE[0]}")/lib_s3.sh"
#   s3_start            # or: s3_start --faults
#
# s3_start runs, each on a free loopback port, in $T/s3:
#   s3rver (npm, pinned by tests/s3/package-lock.json; `npm ci` on first use)
#     <- tests/s3/sigv4_proxy.py: recomputes every request's SigV4 signature
#        with botocore, checks payload hashes and checksums, 403 on mismatch
#     <- tests/s3/fault_proxy.py (with --faults): injects the faults that
#        s3_faults sets
# creates the bucket $S3_BUCKET with awscli through the front proxy, and
# exports what a client needs:
#   AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_REGION=us-east-1
#   AWS_ENDPOINT_URL_S3=http://127.0.0.1:<front port>
#   CAIRN_REPO=s3://$S3_BUCKET/repo   CAIRN_CATALOG=$T/catalog.db
# The proxy also accepts the key $S3_KEY2 with the secret $S3_SECRET2, and
# (after s3_sts_start, called before s3_start) the temporary credentials the
# fake STS / container-credentials server hands out, with their session
# tokens, until they expire (400 ExpiredToken after that).
# The servers are stopped (and their logs shown when the test failed) in the
# EXIT trap, chained before lib.sh's.
#
# Logs: $S3_SIGV4_LOG (one line per request and its verdict; a signature
# mismatch adds the canonical request and string to sign the proxy computed),
# $S3_FAULT_LOG (one line per request: the fault injected or "pass").
#
# Skips (exit 77) when node or npm is missing; fails when python3-botocore or
# awscli is (scripts/install-test-deps.sh installs all four).

# Like lib.sh, this file is globbed by ctest as a test: run directly, it passes.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  echo "lib_s3.sh: helper library, nothing to run"
  exit 0
fi
if [ -z "${T:-}" ] || ! declare -F fail >/dev/null; then
  echo "lib_s3.sh: source lib.sh first" >&2
  exit 1
fi

S3_DIR=$CAIRN_SRC/tests/s3
S3_BUCKET=${S3_BUCKET:-cairn-e2e}
S3_KEY=S3RVER            # s3rver's built-in account
S3_SECRET=S3RVER
# A second account the proxy accepts, with a secret no output could contain
# by chance (for tests that check the secret never leaks).
S3_KEY2=CAIRNE2EKEY
S3_SECRET2=cairn-e2e-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
S3_REGION=us-east-1
S3_MAX_SECONDS=${S3_MAX_SECONDS:-900}  # every server stops by itself after this
S3_WORK=$T/s3
S3_PIDS=()
S3_NAMES=()

# ---------------------------------------------------------------------------
# Tools.
s3_need_tools() {
  command -v node >/dev/null 2>&1 ||
    skip "node is not installed: the S3 tests run s3rver on Node.js (install nodejs and npm; scripts/install-test-deps.sh)"
  command -v npm >/dev/null 2>&1 ||
    skip "npm is not installed: the S3 tests install s3rver with npm (scripts/install-test-deps.sh)"
  # Debian's python3-botocore lives with /usr/bin/python3; prefer it.
  S3_PY=
  local py
  for py in /usr/bin/python3 python3; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import botocore.auth' 2>/dev/null; then
      S3_PY=$(command -v "$py")
      break
    fi
  done
  [ -n "$S3_PY" ] ||
    fail "python3-botocore is not installed: the verifying S3 proxy needs it (run scripts/install-test-deps.sh)"
  need_cmd aws timeout flock
}

# s3rver's node_modules: installed from the lockfile on first use. Several
# tests may start at once (ctest -j): one installs, the others wait.
s3_install_server() {
  local mod=$S3_DIR/node_modules/s3rver/bin/s3rver.js lockfd
  [ -f "$mod" ] && return 0
  exec {lockfd}>"/tmp/cairn-s3-npm-ci.lock"
  flock -w 300 "$lockfd" || fail "timed out waiting for another test's 'npm ci' in $S3_DIR"
  if [ ! -f "$mod" ]; then
    note "installing s3rver: npm ci in $S3_DIR"
    if ! (cd "$S3_DIR" && npm ci --no-audit --no-fund --loglevel=error) >"$T/npm-ci.log" 2>&1; then
      tail -n 30 "$T/npm-ci.log" >&2
      exec {lockfd}>&-
      fail "'npm ci' in $S3_DIR failed (output above)"
    fi
  fi
  exec {lockfd}>&-
  [ -f "$mod" ] || fail "'npm ci' in $S3_DIR did not install s3rver"
}

# ---------------------------------------------------------------------------
# Processes.
s3_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# s3_wait_http NAME PID PORT [tcp]: until something answers HTTP on the port
# (with "tcp": until it accepts connections; the proxies' logs then hold only
# the tests' own requests).
s3_wait_http() {
  local name=$1 pid=$2 port=$3 mode=${4:-http} i
  for i in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || { s3_show_logs; fail "$name exited while starting (log above)"; }
    if python3 - "$port" "$mode" 2>/dev/null <<'EOF'
import http.client, socket, sys
port, mode = int(sys.argv[1]), sys.argv[2]
if mode == "tcp":
    socket.create_connection(("127.0.0.1", port), timeout=2).close()
else:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    c.request("GET", "/")
    c.getresponse().read()
EOF
    then
      return 0
    fi
    sleep 0.1
  done
  s3_show_logs
  fail "$name did not answer on 127.0.0.1:$port within 15 s"
}

# s3_wait_port_file NAME PID FILE: the port a proxy bound (it writes FILE).
s3_wait_port_file() {
  local name=$1 pid=$2 file=$3 i
  for i in $(seq 1 150); do
    [ -s "$file" ] && { cat "$file"; return 0; }
    kill -0 "$pid" 2>/dev/null || { s3_show_logs; fail "$name exited while starting (log above)"; }
    sleep 0.1
  done
  fail "$name did not report its port in $file within 15 s"
}

_s3_bg() { # NAME CMD...: start in the background, remember the pid
  local name=$1; shift
  "$@" &
  S3_PIDS+=("$!")
  S3_NAMES+=("$name")
  _S3_LAST_PID=$!
}

s3_show_logs() {
  local f
  for f in "$S3_WORK/s3rver.log" "$S3_WORK/sigv4.err" "$S3_WORK/fault.err" "${S3_SIGV4_LOG:-}" "${S3_FAULT_LOG:-}" \
    "$S3_WORK/sts.err" "${S3_STS_LOG:-}"; do
    if [ -z "$f" ] || [ ! -s "$f" ]; then continue; fi
    echo "--- last lines of $f" >&2
    case $f in
      *s3rver.log) tail -n 8 "$f" | sed 's/\x1b\[[0-9;]*m//g' >&2 ;;
      *) tail -n 25 "$f" >&2 ;;
    esac
  done
}

s3_stop() {
  local i pid n
  for ((i = ${#S3_PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM "${S3_PIDS[i]}" 2>/dev/null || true
  done
  for pid in "${S3_PIDS[@]}"; do
    for n in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  S3_PIDS=() S3_NAMES=()
}

# The EXIT trap: stop the servers, show their logs on failure, then run the
# trap that was there before (lib.sh's _cleanup, which removes $T).
_S3_PREV_EXIT=
# shellcheck disable=SC2120  # "set --" below parses `trap -p`, not arguments
_s3_chain_exit_trap() {
  local t
  t=$(trap -p EXIT)
  case $t in *_s3_on_exit*) return 0 ;; esac  # already chained (s3_sts_start, then s3_start)
  if [ -n "$t" ]; then
    eval "set -- $t"
    _S3_PREV_EXIT=$3
  fi
  trap _s3_on_exit EXIT
}
_s3_on_exit() {
  local rc=$?
  set +e
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then s3_show_logs; fi
  s3_stop
  if [ -n "$_S3_PREV_EXIT" ]; then
    (exit "$rc")
    eval "$_S3_PREV_EXIT"
  fi
  exit "$rc"
}

# ---------------------------------------------------------------------------
# s3_start [--faults]: start the servers, create the bucket, export the client
# environment (see the top of this file).
# shellcheck disable=SC2120  # called without arguments too
s3_start() {
  local faults=0
  [ "${1:-}" = --faults ] && faults=1
  s3_need_tools
  s3_install_server
  mkdir -p "$S3_WORK/data"
  _s3_chain_exit_trap ""

  S3RVER_PORT=$(s3_free_port)
  _s3_bg s3rver timeout -k 5 "$S3_MAX_SECONDS" node --openssl-legacy-provider "$S3_DIR/node_modules/s3rver/bin/s3rver.js" \
    -d "$S3_WORK/data" -a 127.0.0.1 -p "$S3RVER_PORT" --no-vhost-buckets >"$S3_WORK/s3rver.log" 2>&1
  s3_wait_http s3rver "$_S3_LAST_PID" "$S3RVER_PORT"

  S3_SIGV4_LOG=$S3_WORK/sigv4.log
  _s3_bg sigv4_proxy "$S3_PY" "$S3_DIR/sigv4_proxy.py" --upstream "127.0.0.1:$S3RVER_PORT" \
    --port-file "$S3_WORK/sigv4.port" --log "$S3_SIGV4_LOG" --cred "$S3_KEY:$S3_SECRET" \
    ${S3_STS_CREDS:+--session-creds "$S3_STS_CREDS"} \
    --cred "$S3_KEY2:$S3_SECRET2" --upstream-key "$S3_KEY" --region "$S3_REGION" --max-seconds "$S3_MAX_SECONDS" 2>"$S3_WORK/sigv4.err"
  S3_SIGV4_PORT=$(s3_wait_port_file sigv4_proxy "$_S3_LAST_PID" "$S3_WORK/sigv4.port")
  s3_wait_http sigv4_proxy "$_S3_LAST_PID" "$S3_SIGV4_PORT" tcp
  S3_FRONT_PORT=$S3_SIGV4_PORT

  if [ "$faults" = 1 ]; then
    S3_FAULT_LOG=$S3_WORK/fault.log
    S3_FAULT_CONTROL=$S3_WORK/faults.rules
    : >"$S3_FAULT_CONTROL"
    _s3_bg fault_proxy "$S3_PY" "$S3_DIR/fault_proxy.py" --upstream "127.0.0.1:$S3_SIGV4_PORT" \
      --port-file "$S3_WORK/fault.port" --log "$S3_FAULT_LOG" --control "$S3_FAULT_CONTROL" \
      --seed 1 --max-seconds "$S3_MAX_SECONDS" 2>"$S3_WORK/fault.err"
    S3_FAULT_PORT=$(s3_wait_port_file fault_proxy "$_S3_LAST_PID" "$S3_WORK/fault.port")
    s3_wait_http fault_proxy "$_S3_LAST_PID" "$S3_FAULT_PORT" tcp
    S3_FRONT_PORT=$S3_FAULT_PORT
  fi

  # Only these settings: nothing from the caller's ~/.aws or environment.
  unset AWS_SESSION_TOKEN AWS_SECURITY_TOKEN AWS_PROFILE AWS_DEFAULT_PROFILE AWS_ENDPOINT_URL \
    AWS_DEFAULT_REGION AWS_CA_BUNDLE AWS_USE_FIPS_ENDPOINT AWS_USE_DUALSTACK_ENDPOINT
  cat >"$S3_WORK/aws-config" <<EOF
[default]
region = $S3_REGION
s3 =
  addressing_style = path
EOF
  export AWS_CONFIG_FILE=$S3_WORK/aws-config
  export AWS_SHARED_CREDENTIALS_FILE=$S3_WORK/no-credentials-file
  export AWS_EC2_METADATA_DISABLED=true AWS_PAGER=
  export AWS_ACCESS_KEY_ID=$S3_KEY AWS_SECRET_ACCESS_KEY=$S3_SECRET AWS_REGION=$S3_REGION
  export AWS_ENDPOINT_URL_S3=http://127.0.0.1:$S3_FRONT_PORT
  export CAIRN_REPO=s3://$S3_BUCKET/repo
  export CAIRN_CATALOG=$T/catalog.db

  s3_aws s3 mb "s3://$S3_BUCKET" >"$S3_WORK/mb.out" 2>&1 || {
    cat "$S3_WORK/mb.out" >&2
    fail "could not create bucket $S3_BUCKET through the proxy"
  }
  note "s3: s3rver :$S3RVER_PORT <- sigv4 proxy :$S3_SIGV4_PORT${S3_FAULT_PORT:+ <- fault proxy :$S3_FAULT_PORT}; $CAIRN_REPO"
}

# s3_sts_start ROLE_ARN: start tests/s3/fake_sts.py (a fake STS
# AssumeRoleWithWebIdentity and container-credentials endpoint) on a free
# port, before s3_start, so the verifying proxy accepts what it hands out.
# Sets S3_STS_URL (http://127.0.0.1:PORT), S3_STS_LOG (one line per request),
# S3_STS_TOKENS (valid web identity tokens, "NAME TOKEN" lines; empty at
# first), S3_STS_AUTH (the container Authorization token file; empty at
# first), S3_STS_CONTROL (behaviour, see fake_sts.py) and S3_STS_CREDS.
s3_sts_start() {
  local role=$1
  s3_need_tools
  mkdir -p "$S3_WORK"
  _s3_chain_exit_trap ""
  S3_STS_LOG=$S3_WORK/sts.log S3_STS_TOKENS=$S3_WORK/sts.tokens S3_STS_AUTH=$S3_WORK/sts.auth
  S3_STS_CONTROL=$S3_WORK/sts.control S3_STS_CREDS=$S3_WORK/sts.creds
  : >"$S3_STS_TOKENS"; : >"$S3_STS_AUTH"; : >"$S3_STS_CONTROL"; : >"$S3_STS_CREDS"
  _s3_bg fake_sts "$S3_PY" "$S3_DIR/fake_sts.py" --role-arn "$role" --tokens "$S3_STS_TOKENS" \
    --container-auth "$S3_STS_AUTH" --control "$S3_STS_CONTROL" --creds-out "$S3_STS_CREDS" \
    --port-file "$S3_WORK/sts.port" --log "$S3_STS_LOG" --max-seconds "$S3_MAX_SECONDS" 2>"$S3_WORK/sts.err"
  S3_STS_PORT=$(s3_wait_port_file fake_sts "$_S3_LAST_PID" "$S3_WORK/sts.port")
  s3_wait_http fake_sts "$_S3_LAST_PID" "$S3_STS_PORT" tcp
  S3_STS_URL=http://127.0.0.1:$S3_STS_PORT
}

# s3_aws ARGS...: awscli against the test endpoint. Older awscli (Debian's
# 2.9) ignores AWS_ENDPOINT_URL_S3, so the endpoint is always passed.
s3_aws() {
  aws --endpoint-url "$AWS_ENDPOINT_URL_S3" "$@"
}

# s3_faults RULE...: replace the fault proxy's rules (see tests/s3/fault_proxy.py);
# no argument: no faults. Counters restart from zero.
s3_faults() {
  [ -n "${S3_FAULT_CONTROL:-}" ] || fail "s3_faults: start the servers with 's3_start --faults'"
  if [ $# -gt 0 ]; then printf '%s\n' "$@"; fi >"$S3_FAULT_CONTROL.tmp"
  mv -f "$S3_FAULT_CONTROL.tmp" "$S3_FAULT_CONTROL"
}

# s3_count REGEX FILE: how many lines of FILE match (0 if none).
s3_count() {
  local n
  n=$(grep -cE -- "$1" "$2" 2>/dev/null) || true
  echo "${n:-0}"
}

# s3_log_mark FILE: remember the current end of a log; s3_log_since prints
# what was appended after the mark (for checks on one step only).
s3_log_mark() { wc -l <"$1" | tr -d ' '; }
s3_log_since() { tail -n "+$(($2 + 1))" "$1"; }

# s3_keys PREFIX: the keys under s3://$S3_BUCKET/PREFIX, one per line, via awscli.
s3_keys() {
  s3_aws s3 ls --recursive "s3://$S3_BUCKET/$1" | awk '{ $1 = $2 = $3 = ""; sub(/^ +/, ""); print }'
}

# s3_snapshot_count: snapshots in the repository, from `cairn snapshots --json`.
s3_snapshot_count() {
  cairn_ok snapshots --json >"$T/snapcount.json"
  json_get "$T/snapcount.json" 'len(j) if isinstance(j, list) else len(j.get("snapshots", []))'
}

# cairn_need_s3: skip when this cairn binary predates the S3 backend (it
# answers "unsupported repository URL" to s3://). Any other outcome, error or
# not, means the backend is there and the test runs.
cairn_need_s3() {
  local out
  out=$(CAIRN_REPO=s3://cairn-probe/x AWS_ENDPOINT_URL_S3=http://127.0.0.1:9 CAIRN_S3_RETRIES=1 \
    CAIRN_CATALOG=$T/probe-catalog.db timeout 30 "$CAIRN" snapshots 2>&1) || true
  if grep -qi 'unsupported repository URL' <<<"$out"; then
    skip "this cairn has no S3 backend yet ($(head -n 1 <<<"$out"))"
  fi
}
