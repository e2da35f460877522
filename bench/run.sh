#!/usr/bin/env bash
# bench/run.sh — Cairn benchmark harness (not a test; not registered with ctest).
#
# Builds a fixed dataset under bench/work/data and times, side by side in one
# run on that dataset: `tar | zstd -1 -T0`, restic, borg and cairn — first
# backup, unchanged re-backup, restore and peak RSS — and the S3 path: cairn
# with an s3:// repository and `aws s3 cp` of the dataset as one tar.zst, both
# against one s3rver on the loopback interface. Prints a table with the ratios
# the targets of issues 2 (local) and 3 (S3) are stated in and writes the same
# to docs/benchmarks.md.
#
# Usage (as root, on Debian 12):
#   bash bench/run.sh [--fresh] [--only TOOL[,TOOL...]] [--keep] [--runs N] [--s3-runs N] [--no-doc]
#
#   --fresh      rebuild the dataset (it is cached in bench/work/data otherwise)
#   --only T,..  run only these tools (tar, restic, borg, cairn, cairn-s3, aws-s3)
#   --keep       keep the repositories and restored trees of the last run in bench/work
#                (by default they are deleted)
#   --runs N     repeat each tool's sequence (init, backup, re-backup, restore) N times
#                and report the median time and the largest peak RSS (default 5)
#   --s3-runs N  the same for cairn-s3 and aws-s3 (default: as --runs); they run
#                interleaved with the others in the first N rounds
#   --no-doc     do not write docs/benchmarks.md (e.g. with --only)
#
# Environment:
#   CAIRN              the cairn binary (default: build/cairn next to bench/)
#   STEP_TIMEOUT       seconds one measured step may take before it is killed (300)
#   S3RVER_MAX_SECONDS s3rver stops by itself after this many seconds (7200), in
#                      case this script dies without its EXIT trap
#
# The S3 tools run s3rver from tests/s3 (pinned by tests/s3/package-lock.json;
# when tests/s3/node_modules is missing, the lockfile is installed with `npm ci`
# into bench/work/s3rver-npm instead), directly: no verifying or fault proxy.
#
# Everything it writes lives under bench/work (gitignored), except
# docs/benchmarks.md.

# Functions are called indirectly ("run_$tool"); bash -c scripts are single-quoted on purpose.
# shellcheck disable=SC2317,SC2016
set -uo pipefail

BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
WORK=$BENCH_DIR/work
DATA=$WORK/data
DATA_STAMP=$WORK/data.complete
LOGS=$WORK/logs
DOC=$ROOT/docs/benchmarks.md
S3RVER_TESTS=$ROOT/tests/s3               # package.json + package-lock.json pinning s3rver
S3_WORK=$WORK/s3                          # s3rver's data dir, its log, awscli's config
S3_BUCKET=bench
S3RVER_MAX_SECONDS=${S3RVER_MAX_SECONDS:-7200}
PGBIN=/usr/lib/postgresql/15/bin
CAIRN=${CAIRN:-$ROOT/build/cairn}
case $CAIRN in /*) ;; *) CAIRN=$PWD/$CAIRN ;; esac

ALL_TOOLS=(tar restic borg cairn cairn-s3 aws-s3)
TOOLS=("${ALL_TOOLS[@]}")
FRESH=0
KEEP=0
REPS=5
S3_REPS=
REP=1
STEP_TIMEOUT=${STEP_TIMEOUT:-300}   # seconds one measured step may take
WRITE_DOC=1

# Targets from issue 2 (2-core machine).
TARGET_FIRST=1.3     # cairn first backup / tar|zstd first backup
TARGET_REBACKUP=0.2  # cairn unchanged re-backup / restic unchanged re-backup
TARGET_RESTORE=1.0   # cairn restore / zstd -d | tar -x
TARGET_RSS_MIB=64    # cairn peak RSS
# Targets from issue 3 (S3 through s3rver, default 8 connections).
TARGET_S3_BACKUP=1.5   # cairn S3 first backup / cairn local first backup
TARGET_S3_RESTORE=1.5  # cairn S3 restore / cairn local restore

RANDOM_NAME=random-64MiB.bin
RANDOM_SEED=20240601

usage() { awk 'NR == 1 { next } /^$/ { exit } { sub(/^# ?/, ""); print }' "$0"; }

die() { echo "bench: $*" >&2; exit 1; }
say() { echo "bench: $*" >&2; }

set_tools() { # set_tools "T,T,..." — the --only list, checked
    local t k ok
    IFS=, read -r -a TOOLS <<<"$1"
    [[ ${#TOOLS[@]} -gt 0 ]] || die "--only needs a list of tools (${ALL_TOOLS[*]})"
    for t in "${TOOLS[@]}"; do
        ok=0
        for k in "${ALL_TOOLS[@]}"; do [[ $t == "$k" ]] && ok=1; done
        [[ $ok -eq 1 ]] || die "unknown tool '$t' (known: ${ALL_TOOLS[*]})"
    done
}

while [[ $# -gt 0 ]]; do
    case $1 in
    --fresh) FRESH=1 ;;
    --keep) KEEP=1 ;;
    --no-doc) WRITE_DOC=0 ;;
    --runs)
        [[ $# -ge 2 && $2 =~ ^[1-9][0-9]*$ ]] || die "--runs needs a positive number"
        REPS=$2
        shift ;;
    --s3-runs)
        [[ $# -ge 2 && $2 =~ ^[1-9][0-9]*$ ]] || die "--s3-runs needs a positive number"
        S3_REPS=$2
        shift ;;
    --only)
        [[ $# -ge 2 ]] || die "--only needs a list of tools (${ALL_TOOLS[*]})"
        set_tools "$2"
        shift ;;
    --only=*) set_tools "${1#--only=}" ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option '$1' (try --help)" ;;
    esac
    shift
done

[[ $(id -u) -eq 0 ]] || die "run as root (apt-get, drop_caches, runuser for PostgreSQL)"

S3_REPS=${S3_REPS:-$REPS}

selected() { local t; for t in "${TOOLS[@]}"; do [[ $t == "$1" ]] && return 0; done; return 1; }
s3_tool() { [[ $1 == cairn-s3 || $1 == aws-s3 ]]; }
any_s3() { selected cairn-s3 || selected aws-s3; }
reps_of() { if s3_tool "$1"; then echo "$S3_REPS"; else echo "$REPS"; fi; }

# ---------------------------------------------------------------- dependencies

ensure_deps() {
    local -a want=()
    [[ -x /usr/bin/time ]] || want+=(time)
    command -v python3 >/dev/null || want+=(python3)
    command -v zstd >/dev/null || want+=(zstd)
    command -v runuser >/dev/null || want+=(util-linux)
    command -v diff >/dev/null || want+=(diffutils)
    if [[ $FRESH -eq 1 || ! -e $DATA_STAMP ]]; then
        [[ -x $PGBIN/initdb && -x $PGBIN/pg_ctl ]] || want+=(postgresql-15)
        [[ -x $PGBIN/pgbench || -x /usr/bin/pgbench ]] || want+=(postgresql-contrib-15)
    fi
    selected restic && ! command -v restic >/dev/null && want+=(restic)
    selected borg && ! command -v borg >/dev/null && want+=(borgbackup)
    if any_s3; then
        command -v node >/dev/null || want+=(nodejs)
        [[ -f $S3RVER_TESTS/node_modules/s3rver/bin/s3rver.js ]] || command -v npm >/dev/null ||
            want+=(npm)
        command -v aws >/dev/null || want+=(awscli)
    fi
    if [[ ${#want[@]} -gt 0 ]]; then
        say "installing ${want[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null || die "apt-get update failed"
        apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null ||
            die "apt-get install ${want[*]} failed"
    fi
}

# ---------------------------------------------------------------- dataset

PG_TMP=
pg_cleanup() {
    if [[ -n $PG_TMP && -d $PG_TMP ]]; then
        if [[ -f $PG_TMP/pgdata/postmaster.pid ]]; then
            runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PG_TMP/pgdata" -m immediate -w stop >/dev/null 2>&1
        fi
        rm -rf "$PG_TMP"
    fi
    PG_TMP=
}
trap 'pg_cleanup; s3_stop' EXIT

build_dataset() {
    if [[ $FRESH -eq 0 && -e $DATA_STAMP && -d $DATA ]]; then
        say "dataset: using cached $DATA (--fresh rebuilds it)"
        return
    fi
    say "dataset: building $DATA"
    rm -rf "$DATA" "$DATA_STAMP"
    mkdir -p "$DATA"

    # (a) PostgreSQL data directory from pgbench -i -s 20 on a temp cluster.
    # PostgreSQL refuses root: everything runs as postgres, in a /tmp dir it can reach.
    local pgbench=$PGBIN/pgbench
    [[ -x $pgbench ]] || pgbench=/usr/bin/pgbench
    PG_TMP=$(mktemp -d /tmp/cairn-bench-pg.XXXXXX) || die "mktemp failed"
    chown postgres: "$PG_TMP"
    chmod 700 "$PG_TMP"
    runuser -u postgres -- "$PGBIN/initdb" -A trust -U postgres -E UTF8 --locale=C \
        -D "$PG_TMP/pgdata" >"$LOGS/initdb.log" 2>&1 ||
        die "initdb failed (see $LOGS/initdb.log)"
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PG_TMP/pgdata" -l "$PG_TMP/server.log" -w \
        -o "-c listen_addresses='' -c unix_socket_directories='$PG_TMP'" start \
        >"$LOGS/pg_ctl.log" 2>&1 ||
        die "postgres did not start (see $LOGS/pg_ctl.log and $PG_TMP/server.log)"
    say "dataset: pgbench -i -s 20"
    runuser -u postgres -- "$pgbench" -i -s 20 -h "$PG_TMP" -U postgres postgres \
        >"$LOGS/pgbench.log" 2>&1 || die "pgbench -i failed (see $LOGS/pgbench.log)"
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PG_TMP/pgdata" -m fast -w stop \
        >>"$LOGS/pg_ctl.log" 2>&1 || die "postgres did not stop cleanly (see $LOGS/pg_ctl.log)"
    cp -a "$PG_TMP/pgdata" "$DATA/pgdata" || die "copying the data directory failed"
    pg_cleanup

    # (b) a copy of /usr/include.
    cp -a /usr/include "$DATA/usr-include" || die "copying /usr/include failed"

    # (c) 64 MiB of seeded pseudo-random bytes (Mersenne Twister, fixed seed).
    python3 - "$DATA/$RANDOM_NAME" "$RANDOM_SEED" <<'EOF' || die "writing random bytes failed"
import random, sys
path, seed = sys.argv[1], int(sys.argv[2])
rng = random.Random(seed)
with open(path, "wb") as f:
    for _ in range(64):
        f.write(rng.randbytes(1 << 20))
EOF
    sync
    date -u '+%Y-%m-%dT%H:%M:%SZ' >"$DATA_STAMP"
}

dataset_facts() {
    DATA_BYTES=$(du -sb "$DATA" | cut -f1)
    DATA_APPARENT_MIB=$(awk -v b="$DATA_BYTES" 'BEGIN { printf "%.1f", b / 1048576 }')
    DATA_FILES=$(find "$DATA" -type f | wc -l)
    DATA_ENTRIES=$(find "$DATA" | wc -l)
    PG_MIB=$(du -sb "$DATA/pgdata" | awk '{ printf "%.1f", $1 / 1048576 }')
    PG_FILES=$(find "$DATA/pgdata" -type f | wc -l)
    INC_MIB=$(du -sb "$DATA/usr-include" | awk '{ printf "%.1f", $1 / 1048576 }')
    INC_FILES=$(find "$DATA/usr-include" -type f | wc -l)
    RANDOM_SHA=$(sha256sum "$DATA/$RANDOM_NAME" | cut -c1-16)
    say "dataset: $DATA_APPARENT_MIB MiB, $DATA_FILES files ($DATA_ENTRIES entries)"
    say "  pgdata       $PG_MIB MiB, $PG_FILES files (pgbench -i -s 20, PostgreSQL 15)"
    say "  usr-include  $INC_MIB MiB, $INC_FILES files (copy of /usr/include)"
    say "  $RANDOM_NAME 64.0 MiB (python3 random.Random($RANDOM_SEED), sha256 $RANDOM_SHA…)"
}

# ---------------------------------------------------------------- S3 server

# One s3rver for the whole run, started before the first measured step and
# stopped by the EXIT trap. No proxy in front of it: what is measured is the
# client and the store.
S3RVER_JS=
S3_TIMEOUT_PID=     # the `timeout` wrapping node
S3_NODE_PID=        # node itself (its CPU time is read from /proc per step)
S3_ENDPOINT=
S3RVER_VERSION=
S3_NODE_HWM_KIB=

s3rver_js() { # sets S3RVER_JS: the committed lockfile's s3rver, installed if need be
    local mod=node_modules/s3rver/bin/s3rver.js alt=$WORK/s3rver-npm
    if [[ -f $S3RVER_TESTS/$mod ]]; then
        S3RVER_JS=$S3RVER_TESTS/$mod
        return 0
    fi
    # Leave tests/ alone: install the same lockfile under bench/work.
    if [[ ! -f $alt/$mod ]]; then
        say "s3: installing s3rver from tests/s3/package-lock.json into $alt (npm ci)"
        rm -rf "$alt"
        mkdir -p "$alt" || return 1
        cp "$S3RVER_TESTS/package.json" "$S3RVER_TESTS/package-lock.json" "$alt/" || return 1
        (cd "$alt" && npm ci --no-audit --no-fund --loglevel=error) >"$LOGS/s3rver-npm-ci.log" 2>&1 || {
            say "s3: npm ci failed (see $LOGS/s3rver-npm-ci.log)"
            return 1
        }
    fi
    S3RVER_JS=$alt/$mod
}

unused_port() { # a port nobody listens on right now (the kernel picks it)
    python3 -c 'import socket
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])'
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

node_cpu_ticks() { # utime + stime of s3rver's node process, in clock ticks
    [[ -n $S3_NODE_PID && -r /proc/$S3_NODE_PID/stat ]] || return 1
    # Fields 14 and 15, counted after the ")" that ends the command name.
    sed 's/^.*) //' "/proc/$S3_NODE_PID/stat" | awk '{ print $12 + $13 }'
}

# aws_s3 ARGS... — awscli against s3rver. Older awscli releases (before botocore
# 1.31) ignore AWS_ENDPOINT_URL_S3, so the endpoint is always passed.
aws_s3() { aws --endpoint-url "$S3_ENDPOINT" "$@"; }

# s3_start: start s3rver on a free loopback port with its data under bench/work,
# create the bucket, export the client environment. Returns non-zero (after
# saying why) when it cannot; the S3 tools are then reported as failed.
s3_start() {
    local port i kid
    s3rver_js || return 1
    rm -rf "$S3_WORK"
    mkdir -p "$S3_WORK/data" "$S3_WORK/tmp"
    port=$(unused_port) || { say "s3: no free port"; return 1; }
    timeout -k 5 "$S3RVER_MAX_SECONDS" node --openssl-legacy-provider "$S3RVER_JS" \
        -d "$S3_WORK/data" -a 127.0.0.1 -p "$port" --no-vhost-buckets >"$LOGS/s3rver.log" 2>&1 &
    S3_TIMEOUT_PID=$!
    for ((i = 0; i < 300; i++)); do
        kill -0 "$S3_TIMEOUT_PID" 2>/dev/null || break
        port_open "$port" && break
        sleep 0.1
    done
    if ! port_open "$port"; then
        say "s3: s3rver did not come up on 127.0.0.1:$port (see $LOGS/s3rver.log)"
        tail -n 5 "$LOGS/s3rver.log" >&2
        return 1
    fi
    kid=$(cat "/proc/$S3_TIMEOUT_PID/task/$S3_TIMEOUT_PID/children" 2>/dev/null)
    S3_NODE_PID=${kid%% *}
    [[ -n $S3_NODE_PID ]] || say "s3: cannot find s3rver's node process: its CPU time is not reported"
    S3_ENDPOINT=http://127.0.0.1:$port
    S3RVER_VERSION="s3rver $(node -p 'require(process.argv[1]).version' \
        "$(dirname "$(dirname "$S3RVER_JS")")/package.json" 2>/dev/null) on node $(node --version)"

    # Only these settings: nothing from ~/.aws or the caller's environment.
    unset AWS_SESSION_TOKEN AWS_PROFILE AWS_DEFAULT_PROFILE AWS_ENDPOINT_URL AWS_DEFAULT_REGION \
        AWS_CA_BUNDLE AWS_ACCESS_KEY_ID_FILE AWS_SECRET_ACCESS_KEY_FILE
    printf '[default]\nregion = us-east-1\ns3 =\n  addressing_style = path\n' >"$S3_WORK/aws-config"
    export AWS_CONFIG_FILE=$S3_WORK/aws-config AWS_SHARED_CREDENTIALS_FILE=$S3_WORK/no-credentials
    export AWS_EC2_METADATA_DISABLED=true AWS_PAGER=
    export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_REGION=us-east-1
    export AWS_ENDPOINT_URL_S3=$S3_ENDPOINT
    if ! aws_s3 s3 mb "s3://$S3_BUCKET" >"$LOGS/s3.mb.log" 2>&1; then
        say "s3: creating the bucket failed: $(tail -n 1 "$LOGS/s3.mb.log")"
        return 1
    fi
    say "s3: $S3RVER_VERSION on $S3_ENDPOINT (pid $S3_NODE_PID), bucket $S3_BUCKET, data in $S3_WORK/data"
}

s3_stop() {
    local i
    [[ -n $S3_TIMEOUT_PID ]] || return 0
    if [[ -n $S3_NODE_PID && -r /proc/$S3_NODE_PID/status ]]; then
        S3_NODE_HWM_KIB=$(awk '/^VmHWM:/ { print $2 }' "/proc/$S3_NODE_PID/status")
    fi
    kill -TERM "$S3_TIMEOUT_PID" 2>/dev/null
    for ((i = 0; i < 50; i++)); do
        kill -0 "$S3_TIMEOUT_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$S3_TIMEOUT_PID" 2>/dev/null
    wait "$S3_TIMEOUT_PID" 2>/dev/null
    S3_TIMEOUT_PID=
}

# s3_rm PREFIX — delete everything under s3://bench/PREFIX (untimed, between runs)
s3_rm() { aws_s3 s3 rm --recursive --quiet "s3://$S3_BUCKET/$1" >>"$LOGS/s3.rm.log" 2>&1; }

# ---------------------------------------------------------------- caches

CACHE_MODE=
detect_cache_mode() {
    sync
    if echo 3 2>/dev/null >/proc/sys/vm/drop_caches; then
        CACHE_MODE=cold
        CACHE_DESC="cold: \`sync; echo 3 > /proc/sys/vm/drop_caches\` before every measured step (untimed)"
    else
        CACHE_MODE=warm
        CACHE_DESC="warm: drop_caches not permitted here; the dataset is read once (untimed) before every measured step"
    fi
    say "caches: $CACHE_DESC"
}

prep_caches() {
    sync
    if [[ $CACHE_MODE == cold ]]; then
        echo 3 >/proc/sys/vm/drop_caches
    else
        tar -C "$WORK" -cf - data | cat >/dev/null
    fi
}

# ---------------------------------------------------------------- measuring

declare -A SECS RSS NOTE SAMPLES CPU CPU_SAMPLES SRV_CPU SRV_CPU_SAMPLES
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)
# measure KEY CMD... — runs CMD under GNU time after prep_caches; appends the
# wall seconds to SAMPLES[KEY] and keeps the largest peak RSS (KiB; of the
# largest single process) in RSS[KEY]. finish_samples turns the samples into
# their median in SECS[KEY]. Output goes to bench/work/logs/KEY.REP.log.
# For the S3 tools, the CPU time s3rver's node process spent during the step
# goes to SRV_CPU_SAMPLES[KEY] (it is not a child of the step: GNU time does
# not see it). Returns CMD's exit status.
measure() {
    local key=$1; shift
    local tf=$LOGS/$key.$REP.time log=$LOGS/$key.$REP.log rc secs kib usr sys cpu srv0="" srv1 srv=""
    prep_caches
    s3_tool "${key%.*}" && srv0=$(node_cpu_ticks)
    # timeout: a hung tool (a deadlocked pipeline) must not hang the benchmark.
    /usr/bin/time -f '%e %M %U %S' -o "$tf" timeout -k 10 "$STEP_TIMEOUT" "$@" >"$log" 2>&1
    rc=$?
    if [[ -n $srv0 ]] && srv1=$(node_cpu_ticks); then
        srv=$(awk -v a="$srv0" -v b="$srv1" -v t="$CLK_TCK" 'BEGIN { printf "%.2f", (b - a) / t }')
    fi
    if [[ $rc -ne 0 ]]; then
        local last
        last=$(grep -v '^\s*$' "$log" | tail -n 1 | cut -c1-120)
        if [[ $rc -eq 124 || $rc -eq 137 ]] && grep -q 'signal 9\|status 124' "$tf"; then
            NOTE[$key]="timed out after $STEP_TIMEOUT s"
        elif [[ $rc -gt 128 ]]; then
            NOTE[$key]="killed by signal $((rc - 128))${last:+: $last}"
        else
            NOTE[$key]="exit $rc${last:+: $last}"
        fi
        say "$key: FAILED (${NOTE[$key]}; see $log)"
        return "$rc"
    fi
    read -r secs kib usr sys < <(tail -n 1 "$tf")
    cpu=$(awk -v u="$usr" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
    SAMPLES[$key]="${SAMPLES[$key]:-}${SAMPLES[$key]:+ }$secs"
    CPU_SAMPLES[$key]="${CPU_SAMPLES[$key]:-}${CPU_SAMPLES[$key]:+ }$cpu"
    if [[ -z ${RSS[$key]:-} || $kib -gt ${RSS[$key]} ]]; then RSS[$key]=$kib; fi
    [[ -n $srv ]] && SRV_CPU_SAMPLES[$key]="${SRV_CPU_SAMPLES[$key]:-}${SRV_CPU_SAMPLES[$key]:+ }$srv"
    say "$(printf '%-22s #%d %7.2f s  %7.2f s cpu  %7.1f MiB peak RSS' "$key" "$REP" "$secs" "$cpu" \
        "$(awk -v k="$kib" 'BEGIN { print k / 1024 }')")${srv:+  (s3rver: $srv s cpu)}"
    return 0
}

median() { # median "N N N..."
    tr ' ' '\n' <<<"$1" | sort -g |
        awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

finish_samples() {
    local k
    for k in "${!SAMPLES[@]}"; do
        SECS[$k]=$(median "${SAMPLES[$k]}")
        CPU[$k]=$(median "${CPU_SAMPLES[$k]}")
    done
    for k in "${!SRV_CPU_SAMPLES[@]}"; do
        SRV_CPU[$k]=$(median "${SRV_CPU_SAMPLES[$k]}")
    done
}

declare -A REPO_MIB VERIFY FAIL
repo_size() { # repo_size TOOL PATH — recorded after the first backup of run 1
    [[ $REP -eq 1 ]] || return 0
    REPO_MIB[$1]=$(du -sb "$2" | awk '{ printf "%.1f", $1 / 1048576 }')
    say "$1: repository size $(du -sh "$2" | cut -f1) on disk, ${REPO_MIB[$1]} MiB apparent"
}

# Finds the restored copy of the dataset under DIR (tools lay out paths
# differently: DIR/data, DIR/<absolute path>, ...) and diffs it with the dataset.
verify_restore() { # verify_restore TOOL DIR
    local tool=$1 dir=$2 hit root n
    hit=$(find "$dir" -maxdepth 10 -name "$RANDOM_NAME" -type f -print -quit 2>/dev/null)
    if [[ -z $hit ]]; then
        VERIFY[$tool]="restored tree not found"
        say "$tool: verify: $RANDOM_NAME not found under $dir"
        return
    fi
    root=$(dirname "$hit")
    if diff -r -q --no-dereference "$DATA" "$root" >"$LOGS/$tool.$REP.diff" 2>&1; then
        [[ -n ${VERIFY[$tool]:-} ]] || VERIFY[$tool]="identical"
        say "$tool: verify #$REP (diff -r): identical"
    else
        n=$(wc -l <"$LOGS/$tool.$REP.diff")
        # The first run that differs is the one reported.
        [[ ${VERIFY[$tool]:-identical} == identical ]] &&
            VERIFY[$tool]="run $REP: $n differences (bench/work/logs/$tool.$REP.diff)"
        say "$tool: verify #$REP (diff -r): $n differences, see $LOGS/$tool.$REP.diff"
    fi
}

fresh_dir() { rm -rf "$1" && mkdir -p "$1"; }

cleanup_tool() { # cleanup_tool PATH...
    [[ $KEEP -eq 1 ]] && return
    rm -rf "$@"
}

# ---------------------------------------------------------------- the tools

run_tar() {
    local out=$WORK/tar/data.tar.zst rdir=$WORK/restore-tar
    fresh_dir "$WORK/tar"
    fresh_dir "$rdir"
    if measure tar.backup bash -c 'tar -C "$1" -cf - data | zstd -1 -T0 -q -c >"$2"' _ "$WORK" "$out"; then
        repo_size tar "$out"
        NOTE[tar.rebackup]="no dedup: every backup is a full one"
        measure tar.restore bash -c 'zstd -d -q -c "$1" | tar -x -C "$2"' _ "$out" "$rdir" &&
            verify_restore tar "$rdir"
    else
        FAIL[tar]=${NOTE[tar.backup]}
    fi
    cleanup_tool "$WORK/tar" "$rdir"
}

run_restic() {
    local repo=$WORK/repo-restic rdir=$WORK/restore-restic
    export RESTIC_PASSWORD=cairn-bench RESTIC_CACHE_DIR=$WORK/restic-cache
    rm -rf "$repo" "$RESTIC_CACHE_DIR"
    fresh_dir "$rdir"
    if ! restic -r "$repo" init >"$LOGS/restic.init.$REP.log" 2>&1; then
        FAIL[restic]="init failed: $(tail -n 1 "$LOGS/restic.init.$REP.log")"
    elif ! measure restic.backup restic -r "$repo" backup "$DATA"; then
        FAIL[restic]=${NOTE[restic.backup]}
    else
        repo_size restic "$repo"
        measure restic.rebackup restic -r "$repo" backup "$DATA"
        measure restic.restore restic -r "$repo" restore latest --target "$rdir" &&
            verify_restore restic "$rdir"
    fi
    cleanup_tool "$repo" "$RESTIC_CACHE_DIR" "$rdir"
}

run_borg() {
    local repo=$WORK/repo-borg rdir=$WORK/restore-borg
    export BORG_PASSPHRASE='' BORG_BASE_DIR=$WORK/borg-base \
        BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
    rm -rf "$repo" "$BORG_BASE_DIR"
    fresh_dir "$rdir"
    if ! borg init --encryption=none "$repo" >"$LOGS/borg.init.$REP.log" 2>&1; then
        FAIL[borg]="init failed: $(tail -n 1 "$LOGS/borg.init.$REP.log")"
    else
        # borg archives paths as given: run from bench/work so they are "data/..."
        # (measure must run in this shell, not a subshell, to keep its results).
        cd "$WORK" || die "cannot cd to $WORK"
        if ! measure borg.backup borg create --compression zstd,1 "$repo::first" data; then
            FAIL[borg]=${NOTE[borg.backup]}
        else
            repo_size borg "$repo"
            measure borg.rebackup borg create --compression zstd,1 "$repo::second" data
            cd "$rdir" || die "cannot cd to $rdir"
            measure borg.restore borg extract "$repo::second" &&
                verify_restore borg "$rdir"
        fi
        cd "$ROOT" || die "cannot cd to $ROOT"
    fi
    cleanup_tool "$repo" "$BORG_BASE_DIR" "$rdir"
}

run_cairn() {
    local rdir=$WORK/restore-cairn out
    export CAIRN_REPO=$WORK/repo-cairn CAIRN_CATALOG=$WORK/cairn-catalog.db \
        XDG_CACHE_HOME=$WORK/cairn-cache
    if [[ ! -x $CAIRN ]]; then
        FAIL[cairn]="binary not found at $CAIRN (cmake -B build && cmake --build build)"
        say "cairn: ${FAIL[cairn]}"
        return
    fi
    if ! out=$("$CAIRN" --help 2>&1); then
        FAIL[cairn]="'$CAIRN --help' fails: $(tail -n 1 <<<"$out")"
        say "cairn: ${FAIL[cairn]}"
        return
    fi
    rm -rf "$CAIRN_REPO" "$CAIRN_CATALOG" "$CAIRN_CATALOG"-wal "$CAIRN_CATALOG"-shm "$XDG_CACHE_HOME"
    fresh_dir "$rdir"
    if ! "$CAIRN" init >"$LOGS/cairn.init.$REP.log" 2>&1; then
        FAIL[cairn]="init failed: $(grep -v '^\s*$' "$LOGS/cairn.init.$REP.log" | tail -n 1)"
        say "cairn: ${FAIL[cairn]}"
    elif ! measure cairn.backup "$CAIRN" backup "$DATA"; then
        FAIL[cairn]=${NOTE[cairn.backup]}
    else
        repo_size cairn "$CAIRN_REPO"
        measure cairn.rebackup "$CAIRN" backup "$DATA"
        measure cairn.restore "$CAIRN" restore latest --target "$rdir" &&
            verify_restore cairn "$rdir"
    fi
    cleanup_tool "$CAIRN_REPO" "$CAIRN_CATALOG" "$CAIRN_CATALOG"-wal "$CAIRN_CATALOG"-shm \
        "$XDG_CACHE_HOME" "$rdir"
}

# cairn with an s3:// repository on s3rver: the same sequence as run_cairn, with
# the default number of connections (8). Its spool directory (packs waiting for
# upload; cairn makes it under $TMPDIR and removes it) is put under bench/work.
run_cairn_s3() {
    local t=cairn-s3 rdir=$WORK/restore-cairn-s3 url=s3://$S3_BUCKET/repo size
    local -a cairn=(env "TMPDIR=$S3_WORK/tmp" "$CAIRN" --repo "$url")
    unset CAIRN_REPO
    export CAIRN_CATALOG=$WORK/cairn-s3-catalog.db XDG_CACHE_HOME=$WORK/cairn-s3-cache
    if [[ ! -x $CAIRN ]]; then
        FAIL[$t]="binary not found at $CAIRN (cmake -B build && cmake --build build)"
        say "$t: ${FAIL[$t]}"
        return
    fi
    rm -rf "$CAIRN_CATALOG" "$CAIRN_CATALOG"-wal "$CAIRN_CATALOG"-shm "$XDG_CACHE_HOME"
    fresh_dir "$rdir"
    # A fresh repository each run: remove the previous run's objects (untimed).
    if ! s3_rm repo/; then
        FAIL[$t]="could not empty s3://$S3_BUCKET/repo/ (see $LOGS/s3.rm.log)"
        say "$t: ${FAIL[$t]}"
        return
    fi
    if ! "${cairn[@]}" init >"$LOGS/$t.init.$REP.log" 2>&1; then
        FAIL[$t]="init failed: $(grep -v '^\s*$' "$LOGS/$t.init.$REP.log" | tail -n 1)"
        say "$t: ${FAIL[$t]}"
    elif ! measure "$t".backup "${cairn[@]}" backup "$DATA"; then
        FAIL[$t]=${NOTE[$t.backup]}
    else
        if [[ $REP -eq 1 ]]; then
            # Sum of the objects' sizes, as S3 bills them (s3rver's files on disk
            # add metadata and .md5 files).
            size=$(aws_s3 s3 ls --recursive --summarize "s3://$S3_BUCKET/repo/" 2>/dev/null |
                awk '/Total Size:/ { printf "%.1f", $3 / 1048576 }')
            REPO_MIB[$t]=${size:-n/a}
            say "$t: repository size ${REPO_MIB[$t]} MiB in objects"
        fi
        measure "$t".rebackup "${cairn[@]}" backup "$DATA"
        measure "$t".restore "${cairn[@]}" restore latest --target "$rdir" &&
            verify_restore "$t" "$rdir"
    fi
    cleanup_tool "$CAIRN_CATALOG" "$CAIRN_CATALOG"-wal "$CAIRN_CATALOG"-shm "$XDG_CACHE_HOME" "$rdir"
}

# The same tar.zst as run_tar, streamed to and from s3rver by awscli.
run_aws_s3() {
    local t=aws-s3 rdir=$WORK/restore-aws-s3 obj=s3://$S3_BUCKET/data.tar.zst size
    fresh_dir "$rdir"
    s3_rm data.tar.zst
    if measure "$t".backup bash -c 'set -o pipefail
        tar -C "$1" -cf - data | zstd -1 -T0 -q -c | aws --endpoint-url "$2" s3 cp --only-show-errors - "$3"' \
        _ "$WORK" "$S3_ENDPOINT" "$obj"; then
        if [[ $REP -eq 1 ]]; then
            size=$(aws_s3 s3 ls "$obj" 2>/dev/null | awk '{ printf "%.1f", $3 / 1048576 }')
            REPO_MIB[$t]=${size:-n/a}
        fi
        NOTE[$t.rebackup]="no dedup: every backup is a full one"
        measure "$t".restore bash -c 'set -o pipefail
            aws --endpoint-url "$1" s3 cp --only-show-errors "$2" - | zstd -d -q -c | tar -x -C "$3"' \
            _ "$S3_ENDPOINT" "$obj" "$rdir" &&
            verify_restore "$t" "$rdir"
    else
        FAIL[$t]=${NOTE[$t.backup]}
    fi
    cleanup_tool "$rdir"
}

tool_version() {
    case $1 in
    tar) echo "$(tar --version | head -n 1); $(zstd --version | sed 's/^\*\*\* //; s/, by.*//')" ;;
    restic) restic version 2>/dev/null | head -n 1 ;;
    borg) borg --version 2>/dev/null | head -n 1 ;;
    cairn) echo "${CAIRN_VERSION:-cairn}" ;;
    cairn-s3) echo "${CAIRN_VERSION:-cairn}; ${S3RVER_VERSION:-s3rver}" ;;
    aws-s3) echo "$(aws --version 2>&1 | head -n 1); ${S3RVER_VERSION:-s3rver}" ;;
    esac
}

tool_label() {
    case $1 in
    tar) echo "tar \| zstd -1 -T0" ;;
    restic) echo "restic (default compression auto, AES always)" ;;
    borg) echo "borg (encryption none, zstd,1)" ;;
    cairn) echo "cairn" ;;
    cairn-s3) echo "cairn (S3: s3rver, 8 connections)" ;;
    aws-s3) echo "aws s3 cp of tar \| zstd -1 -T0 (S3: s3rver)" ;;
    esac
}

# ---------------------------------------------------------------- report

fmt_secs() { # fmt_secs KEY
    if [[ -n ${SECS[$1]:-} ]]; then printf '%.2f' "${SECS[$1]}"; else echo "n/a"; fi
}

peak_rss_mib() { # peak_rss_mib TOOL — largest peak over the tool's measured steps
    local k max=
    for k in "$1.backup" "$1.rebackup" "$1.restore"; do
        [[ -n ${RSS[$k]:-} ]] || continue
        if [[ -z $max || ${RSS[$k]} -gt $max ]]; then max=${RSS[$k]}; fi
    done
    if [[ -n $max ]]; then awk -v k="$max" 'BEGIN { printf "%.1f", k / 1024 }'; else echo "n/a"; fi
}

# ratio NUM_KEY DEN_KEY — prints "x.xx" or nothing
ratio() {
    [[ -n ${SECS[$1]:-} && -n ${SECS[$2]:-} ]] || return 0
    awk -v a="${SECS[$1]}" -v b="${SECS[$2]}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else if (a == 0) printf "1.00" }'
}

verdict() { # verdict VALUE LIMIT — "VALUE PASS" when VALUE <= LIMIT, "VALUE MISS", or "n/a"
    [[ -n $1 && $1 != n/a ]] || { echo "n/a"; return; }
    awk -v v="$1" -v l="$2" 'BEGIN { print v, (v + 0 <= l + 0) ? "PASS" : "MISS" }'
}

# Builds the report in markdown; the terminal gets the same text.
report() {
    local t first reb rest note reason r1 r2 r3 rss nt
    echo "| tool | first backup s | re-backup s | restore s | peak RSS MiB | repo size MiB | restore check |"
    echo "|---|---:|---:|---:|---:|---:|---|"
    for t in "${TOOLS[@]}"; do
        if [[ -n ${FAIL[$t]:-} ]]; then
            echo "| $(tool_label "$t") | n/a | n/a | n/a | n/a | n/a | ${FAIL[$t]//|/\\|} |"
            continue
        fi
        first=$(fmt_secs "$t.backup")
        reb=$(fmt_secs "$t.rebackup")
        [[ $t == tar || $t == aws-s3 ]] && reb="— (full)"
        rest=$(fmt_secs "$t.restore")
        rss=$(peak_rss_mib "$t")
        echo "| $(tool_label "$t") | $first | $reb | $rest | $rss | ${REPO_MIB[$t]:-n/a} | ${VERIFY[$t]:-n/a} |"
    done
    # Failures of single steps (a failed run is left out of the median).
    local failed=0
    for t in "${TOOLS[@]}"; do
        [[ $t != tar && $t != aws-s3 && -z ${FAIL[$t]:-} ]] || continue
        for note in backup rebackup restore; do
            if [[ -n ${NOTE[$t.$note]:-} ]]; then
                [[ $failed -eq 1 ]] || echo
                failed=1
                echo "- $t $note failed: ${NOTE[$t.$note]}"
            fi
        done
    done
    echo
    echo "Ratios against the targets of issue 2 (PASS/MISS is judged for cairn; restic and borg are shown for scale):"
    echo
    echo "| tool | first backup / tar\|zstd (≤ $TARGET_FIRST) | re-backup / restic re-backup (≤ $TARGET_REBACKUP) | restore / zstd -d\|tar -x (≤ $TARGET_RESTORE) | peak RSS MiB (≤ $TARGET_RSS_MIB) |"
    echo "|---|---:|---:|---:|---:|"
    for t in restic borg cairn; do
        selected "$t" || continue
        r1=$(ratio "$t.backup" tar.backup)
        r2=$(ratio "$t.rebackup" restic.rebackup)
        r3=$(ratio "$t.restore" tar.restore)
        rss=$(peak_rss_mib "$t")
        if [[ $t == cairn ]]; then
            reason=${FAIL[cairn]:+ (${FAIL[cairn]//|/\\|})}
            echo "| cairn$reason | $(verdict "$r1" $TARGET_FIRST) | $(verdict "$r2" $TARGET_REBACKUP) | $(verdict "$r3" $TARGET_RESTORE) | $(verdict "$rss" $TARGET_RSS_MIB) |"
        else
            echo "| $t | ${r1:-n/a} | ${r2:-n/a} | ${r3:-n/a} | $rss |"
        fi
    done
    if any_s3; then
        local lt s3rss lrss
        echo
        echo "The S3 path against the targets of issue 3: each S3 tool against the same tool with a local"
        echo "repository (PASS/MISS is judged for cairn; aws s3 cp is shown for scale, against tar | zstd):"
        echo
        echo "| S3 tool / local tool | first backup (≤ $TARGET_S3_BACKUP) | re-backup (no target) | restore (≤ $TARGET_S3_RESTORE) | peak RSS MiB, S3 (local) |"
        echo "|---|---:|---:|---:|---:|"
        for t in cairn-s3 aws-s3; do
            selected "$t" || continue
            if [[ $t == cairn-s3 ]]; then lt=cairn; else lt=tar; fi
            r1=$(ratio "$t.backup" "$lt.backup")
            r2=$(ratio "$t.rebackup" "$lt.rebackup")
            r3=$(ratio "$t.restore" "$lt.restore")
            s3rss=$(peak_rss_mib "$t")
            lrss=$(peak_rss_mib "$lt")
            reason=${FAIL[$t]:+ (${FAIL[$t]//|/\\|})}
            if [[ $t == cairn-s3 ]]; then
                echo "| cairn S3 / cairn local$reason | $(verdict "$r1" $TARGET_S3_BACKUP) | ${r2:-n/a} | $(verdict "$r3" $TARGET_S3_RESTORE) | $s3rss ($lrss) |"
            else
                echo "| aws s3 cp tar.zst / tar \\| zstd local$reason | ${r1:-n/a} | — | ${r3:-n/a} | $s3rss ($lrss) |"
            fi
        done
    fi
    echo
    local runs="$REPS runs"
    if any_s3 && [[ $S3_REPS -ne $REPS ]]; then runs="$REPS runs ($S3_REPS for cairn-s3 and aws-s3)"; fi
    echo "Per step: median wall seconds of $runs (and every run), median CPU seconds (user + system,"
    echo "all processes of the step; less sensitive than wall time to other load on the machine), the"
    echo "largest peak RSS of the largest single process, and for the S3 steps the median CPU seconds"
    echo "s3rver (node) spent during the step, which the step's own CPU seconds do not include:"
    echo
    echo "| step | wall s | wall s, every run | CPU s | s3rver CPU s | peak RSS MiB | note |"
    echo "|---|---:|---|---:|---:|---:|---|"
    for t in "${TOOLS[@]}"; do
        for note in backup rebackup restore; do
            local k=$t.$note
            [[ -n ${SECS[$k]:-} || -n ${NOTE[$k]:-} ]] || continue
            nt=${NOTE[$k]:-}
            nt=${nt//|/\\|}
            if [[ -n ${SECS[$k]:-} ]]; then
                echo "| $k | ${SECS[$k]} | ${SAMPLES[$k]} | ${CPU[$k]} | ${SRV_CPU[$k]:-} | $(awk -v k="${RSS[$k]}" 'BEGIN { printf "%.1f", k / 1024 }') | $nt |"
            else
                echo "| $k | n/a | | n/a | | n/a | $nt |"
            fi
        done
    done
}

write_doc() {
    local table=$1 cpu mem kernel fs
    cpu=$(grep -m 1 'model name' /proc/cpuinfo | sed 's/.*: //')
    mem=$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
    kernel=$(uname -r)
    fs=$(df -T "$WORK" | awk 'NR == 2 { print $2 }')
    mkdir -p "$(dirname "$DOC")"
    local kept_sections=""
    if [ -f "$DOC" ]; then
        kept_sections=$(sed -n '/^<!-- [a-z_-]*:begin/,/^<!-- [a-z_-]*:end/p' "$DOC")
    fi
    {
        echo "# Benchmarks"
        echo
        echo "Produced by \`bench/run.sh\`; reproduce with (as root, Debian 12):"
        echo
        echo '```sh'
        echo "bash bench/run.sh"
        echo '```'
        echo
        echo "The script installs what it is missing (restic, borgbackup, zstd, postgresql-15, time,"
        echo "python3, nodejs, npm, awscli), builds the dataset under \`bench/work/data\` (cached;"
        echo "\`--fresh\` rebuilds it), runs every tool on it in one run and rewrites this page."
        echo "\`--only TOOL[,TOOL]\` runs a subset (tar, restic, borg, cairn, cairn-s3, aws-s3), \`--runs N\`"
        echo "sets the number of runs (default 5), \`--s3-runs N\` that of the two S3 tools (default: as"
        echo "\`--runs\`), \`--keep\` keeps the repositories and restored trees of the last run in"
        echo "\`bench/work\`, \`--no-doc\` leaves this page alone; \`CAIRN=PATH\` times another binary."
        echo "The sections at the end (PostgreSQL against pgBackRest, retention against restic) are"
        echo "written by \`bench/pg_bench.sh\` and \`bench/prune_bench.sh\`; this script keeps them as they are."
        echo "This run ($RUN_DESC) took $ELAPSED_DESC on $(nproc) cores, dataset already built."
        echo
        echo "## Run"
        echo
        echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
        echo "- Machine: $(nproc) cores, $cpu, $mem RAM, Linux $kernel, $fs filesystem under bench/work"
        echo "- Load average (1, 5, 15 min): $LOAD_BEFORE before the first step, $LOAD_AFTER after the last"
        echo "  (it includes this benchmark and anything else running on the machine)"
        echo "- Caches: $CACHE_DESC"
        if any_s3; then
            echo "- S3 store: ${S3RVER_VERSION:-s3rver} from tests/s3/package-lock.json, started once for the"
            echo "  whole run on 127.0.0.1 (data directory under bench/work, same filesystem), without the"
            echo "  tests' verifying or fault-injecting proxy; it logs each request to a file. Its peak RSS"
            echo "  over the run: $(awk -v k="${S3_NODE_HWM_KIB:-}" 'BEGIN { if (k == "") print "n/a"; else printf "%.1f MiB", k / 1024 }')."
            echo "  It shares the $(nproc) cores with the client: its CPU time is shown per step below."
        fi
        echo "- Tools:"
        for t in "${TOOLS[@]}"; do echo "  - $t: $(tool_version "$t")"; done
        echo
        echo "## Dataset"
        echo
        echo "$DATA_APPARENT_MIB MiB in $DATA_FILES files ($DATA_ENTRIES entries in all):"
        echo
        echo "- \`pgdata/\` — $PG_MIB MiB, $PG_FILES files: a PostgreSQL 15 data directory after"
        echo "  \`pgbench -i -s 20\` on a temporary cluster (initdb -E UTF8 --locale=C), stopped cleanly"
        echo "  before it was copied."
        echo "- \`usr-include/\` — $INC_MIB MiB, $INC_FILES files: a copy of this machine's /usr/include."
        echo "- \`$RANDOM_NAME\` — 64 MiB of pseudo-random bytes, python3 \`random.Random($RANDOM_SEED).randbytes\`"
        echo "  (sha256 begins $RANDOM_SHA), incompressible and identical on every machine."
        echo
        echo "## Commands timed"
        echo
        echo "Each step runs under \`/usr/bin/time -f '%e %M %U %S'\` (wall seconds, peak RSS of the largest"
        echo "single process, CPU seconds), with the caches as stated above. Each tool's whole sequence (fresh"
        echo "repository, backup, unchanged re-backup, restore into an empty directory) runs $REPS times,"
        echo "interleaved with the other tools' runs so that changes in the machine's load hit all"
        echo "alike; the tables give the median time and the largest peak RSS."
        echo
        echo "- tar: \`tar -cf - data | zstd -1 -T0 > data.tar.zst\`; restore \`zstd -d -c data.tar.zst | tar -x\`"
        echo "  into an empty directory. No dedup, so there is no cheaper re-backup."
        echo "- restic: \`restic init\` (repository format 2), \`restic backup DATA\` twice (the second"
        echo "  finds the first as parent), \`restic restore latest --target DIR\`. restic always encrypts;"
        echo "  its default compression (auto) is used."
        echo "- borg: \`borg init --encryption=none\`, \`borg create --compression zstd,1\` twice,"
        echo "  \`borg extract\`."
        echo "- cairn: \`cairn init\`, \`cairn backup DATA\` twice, \`cairn restore latest --target DIR\`,"
        echo "  with \`CAIRN_REPO\` and \`CAIRN_CATALOG\` in bench/work; a copy of \`build/cairn\` (or"
        echo "  \`\$CAIRN\`) taken at the start is timed."
        echo "- cairn (S3): the same commands with \`--repo s3://$S3_BUCKET/repo\` on s3rver (endpoint from"
        echo "  \`AWS_ENDPOINT_URL_S3\`, credentials S3RVER/S3RVER), default \`--connections\` (8: upload"
        echo "  threads in backup, workers in restore), default read-ahead and multipart settings; the"
        echo "  spool directory for packs waiting for upload is under bench/work (\`TMPDIR\`). Every run"
        echo "  starts from an empty prefix and a fresh local catalog."
        echo "- aws s3 cp (S3): \`tar -cf - data | zstd -1 -T0 | aws s3 cp - s3://$S3_BUCKET/data.tar.zst\`;"
        echo "  restore \`aws s3 cp s3://$S3_BUCKET/data.tar.zst - | zstd -d | tar -x\`, with"
        echo "  \`--endpoint-url\` (older awscli releases ignore \`AWS_ENDPOINT_URL_S3\`) and awscli's default"
        echo "  transfer settings (8 MiB multipart chunks, 10 concurrent requests)."
        echo
        echo "Repository size is the apparent size of the repository directory (or the .tar.zst file)"
        echo "after the first backup (for the S3 tools: the sum of the objects' sizes); local caches"
        echo "(restic's cache, borg's cache, cairn's catalog) are not counted. Every restore is compared"
        echo "with the dataset by \`diff -r\`."
        echo
        echo "## Results"
        echo
        echo "$table"
        echo
        echo "Targets (issue 2, on a 2-core machine): first backup within ${TARGET_FIRST}x of"
        echo "\`tar | zstd -1 -T0\`; unchanged re-backup at most ${TARGET_REBACKUP}x restic's; restore no"
        echo "slower than \`zstd -d | tar -x\`; peak RSS at most $TARGET_RSS_MIB MiB."
        if any_s3; then
            echo
            echo "Targets (issue 3): the S3 backup within ${TARGET_S3_BACKUP}x of the local one, the S3 restore"
            echo "within ${TARGET_S3_RESTORE}x of the local one; peak RSS with 8 connections reported."
            echo "s3rver on loopback has no network latency or bandwidth limit and shares the CPU with"
            echo "the client, so this measures the client's overhead for S3, not a real S3 service."
        fi
        # sections other scripts own (bench/pg_bench.sh, bench/mysql_bench.sh) are kept as they are
        if [ -n "$kept_sections" ]; then
            echo
            printf '%s\n' "$kept_sections"
        fi
    } >"$DOC.new"
    mv "$DOC.new" "$DOC"
    say "wrote $DOC"
}

# ---------------------------------------------------------------- main

START_SECONDS=$SECONDS
mkdir -p "$WORK" "$LOGS"
# Logs of an earlier run's steps would be mistaken for this run's.
find "$LOGS" -maxdepth 1 -name '*.[0-9]*.*' -delete
ensure_deps
build_dataset
dataset_facts
detect_cache_mode

# The build directory may be rebuilt while this runs: time one fixed copy.
if { selected cairn || selected cairn-s3; } && [[ -x $CAIRN ]]; then
    CAIRN_SRC=$CAIRN
    CAIRN=$WORK/cairn-under-test
    cp "$CAIRN_SRC" "$CAIRN" || die "cannot copy $CAIRN_SRC"
    CAIRN_VERSION=$("$CAIRN" --version 2>/dev/null | head -n 1)
    rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    [[ -z $(git -C "$ROOT" status --porcelain 2>/dev/null) ]] || rev="$rev with uncommitted changes"
    CAIRN_VERSION="${CAIRN_VERSION:-cairn} (binary sha256 $(sha256sum "$CAIRN" | cut -c1-12), working tree at git $rev)"
    say "cairn: timing a copy of $CAIRN_SRC ($(sha256sum "$CAIRN" | cut -c1-12))"
fi

# Runs are interleaved (tar restic borg cairn, tar restic borg cairn, ...) so that
# a change in the machine's load hits every tool alike.
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
say "load average before: $LOAD_BEFORE"
awk -v l="${LOAD_BEFORE%% *}" -v n="$(nproc)" 'BEGIN { exit !(l > n / 2) }' &&
    say "warning: the machine is busy (load $LOAD_BEFORE on $(nproc) cores): wall times will be noisy"
if any_s3 && ! s3_start; then
    for t in cairn-s3 aws-s3; do FAIL[$t]="s3rver could not be started (see the messages above)"; done
fi
ROUNDS=$REPS
if any_s3 && [[ $S3_REPS -gt $ROUNDS ]]; then ROUNDS=$S3_REPS; fi
for ((REP = 1; REP <= ROUNDS; REP++)); do
    for t in "${TOOLS[@]}"; do
        [[ -z ${FAIL[$t]:-} ]] || continue
        n=$(reps_of "$t")
        [[ $REP -le $n ]] || continue
        say "---- $t, run $REP of $n"
        "run_${t//-/_}"
    done
done
finish_samples
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
s3_stop   # before the report: it records s3rver's peak RSS
if [[ $KEEP -eq 0 ]]; then   # also what an earlier --keep left behind
    rm -rf "$WORK"/tar "$WORK"/repo-* "$WORK"/restore-* "$WORK"/restic-cache "$WORK"/borg-base \
        "$WORK"/cairn-cache "$WORK"/cairn-catalog.db* "$WORK"/cairn-under-test \
        "$WORK"/cairn-s3-cache "$WORK"/cairn-s3-catalog.db* "$S3_WORK"
fi
ELAPSED_DESC=$(awk -v s=$((SECONDS - START_SECONDS)) 'BEGIN { printf "%d min %02d s", s / 60, s % 60 }')
RUN_DESC="$(IFS=,; echo "${TOOLS[*]}"), $REPS runs"
any_s3 && [[ $S3_REPS -ne $REPS ]] && RUN_DESC="$RUN_DESC, $S3_REPS for the S3 tools"

TABLE=$(report)
echo
echo "$TABLE"
echo
[[ $WRITE_DOC -eq 1 ]] && write_doc "$TABLE"
exit 0
