#!/usr/bin/env bash
# libcurl, libpq and libarchive are loaded at run time only by the commands
# that need them (engine/dl.h, uploaders/curl_dl.h, agent/pq_dl.h,
# engine/archive_dl.h), so that wal-push and wal-fetch, run by PostgreSQL once
# per segment, start without ~40 libraries.
# - the binary does not link them, nor libarchive's libxml2, ICU, libstdc++
#   (ldd);
# - init, wal-push and wal-fetch against a local repository load none of them
#   (the dynamic loader's own trace, LD_DEBUG=files, names every object a
#   process loads), and still work when all three are made unloadable;
#   backup of a directory, restore and dump load libarchive only, a stream
#   backup (--stdin) none;
# - an s3:// command loads libcurl (and not libpq), backup-pg loads libpq (and
#   not libcurl);
# - with the library unloadable (the test-only CAIRN_TEST_CURL_SONAME /
#   CAIRN_TEST_PQ_SONAME / CAIRN_TEST_ARCHIVE_SONAME), or lacking a function,
#   those commands exit non-zero with a message naming the library, what needs
#   it and the package, and record or write nothing (no snapshot, no repository
#   object, the restore target neither created nor changed, no dump bytes).
# Needs no network, database server or root: the S3 endpoint is a closed
# loopback port and the PostgreSQL data directory a fake one.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_cmd ldd

# ---- the binary does not link them
ldd "$CAIRN" >"$T/ldd.txt" || fail "ldd '$CAIRN' failed"
grep -q 'libsqlite3' "$T/ldd.txt" || fail "ldd does not list libsqlite3: cannot judge its output"
# libstdc++ (libarchive's ICU needs it) is also what the sanitizer runtimes
# need: checked only in a build without them.
lazy='libcurl|libpq|libarchive|libxml2|libicu'
grep -qE 'libasan|libubsan' "$T/ldd.txt" || lazy="$lazy|libstdc\+\+"
if grep -E "$lazy" "$T/ldd.txt" >&2; then
  fail "cairn is linked against libcurl, libpq or libarchive (or what libarchive needs): they must be loaded with dlopen"
fi
echo "cairn links $(grep -c . "$T/ldd.txt") objects" >&2

# traced NAME ARGS...: run_cairn with the loader's trace of every process in
# $T/ld.NAME.<pid>. loaded NAME: the objects those processes loaded.
traced() {
  local name=$1
  shift
  LD_DEBUG=files LD_DEBUG_OUTPUT=$T/ld.$name run_cairn "$@"
}
loaded() {
  cat "$T/ld.$1".* 2>/dev/null | sed -n 's/.*file=\([^ ]*\) .*/\1/p' | sort -u
}
# not_loaded NAME WHAT: fail if the traced run loaded libcurl, libpq or
# libarchive (or libxml2, which only libarchive brings).
not_loaded() {
  loaded "$1" >"$T/loaded.$1"
  grep -q '^libsqlite3\.so' "$T/loaded.$1" || fail "$2: no loader trace (LD_DEBUG=files gave nothing)"
  if grep -E 'libcurl|libpq|libarchive|libxml2' "$T/loaded.$1" >&2; then
    fail "$2 loaded libcurl, libpq or libarchive"
  fi
}
# only_loaded NAME LIB OTHER WHAT: the traced run loaded LIB, not OTHER.
only_loaded() {
  loaded "$1" >"$T/loaded.$1"
  grep -q "^$2" "$T/loaded.$1" || { cat "$T/loaded.$1" >&2; fail "$4 did not load $2"; }
  if grep "$3" "$T/loaded.$1" >&2; then fail "$4 loaded $3 too"; fi
}
# unloadable ARGS...: run_cairn with all three libraries unloadable.
unloadable() {
  CAIRN_TEST_CURL_SONAME=libdoesnotexist.so.9 CAIRN_TEST_PQ_SONAME=libdoesnotexist.so.9 \
    CAIRN_TEST_ARCHIVE_SONAME=libdoesnotexist.so.9 run_cairn "$@"
}
# no_archive ARGS...: run_cairn with libarchive unloadable.
no_archive() {
  CAIRN_TEST_ARCHIVE_SONAME=libdoesnotexist.so.9 run_cairn "$@"
}
# repo_state: every file of the repository with its size, and the snapshots.
repo_state() {
  (cd "$CAIRN_REPO" && find . -printf '%p %s\n' | sort)
  cairn_ok snapshots --json >"$T/state.json"
  json_get "$T/state.json" '[s["id"] for s in j]'
}

# wal_segment FILE: a 16 MiB WAL segment of system 7000000000000000001 on
# timeline 1 (a long page header for the LSN its name says, then random pages).
wal_segment() {
  python3 - "$1" <<'EOF'
import os, struct, sys
path = sys.argv[1]
seg = int(os.path.basename(path)[16:24], 16)
size = 16 << 20
hdr = struct.pack('<HHIQI4xQII', 0xD110, 0x0002, 1, seg * size, 0,
                  7000000000000000001, size, 8192)
with open(path, 'wb') as f:
    f.write(hdr + bytes(8192 - len(hdr)) + os.urandom(size - 8192))
EOF
}
SYSID=7000000000000000001

# ---- local repository: nothing loads them, and nothing needs them
export CAIRN_REPO=$T/repo CAIRN_CATALOG=$T/catalog.db
traced init init
expect_rc 0 "init"
not_loaded init "init of a local repository"
mkdir -p "$T/src" "$T/pg_wal"
randfile "$T/src/a.bin" 100000
printf 'hello\n' >"$T/src/b.txt"
traced backup backup "$T/src"
expect_rc 0 "backup"
only_loaded backup libarchive.so.13 'libcurl\|libpq' "backup of a directory into a local repository"

seg1=$T/pg_wal/000000010000000000000001
seg2=$T/pg_wal/000000010000000000000002
wal_segment "$seg1"
wal_segment "$seg2"
traced walpush wal-push "$seg1"
expect_rc 0 "wal-push"
not_loaded walpush "wal-push to a local repository"
traced walfetch wal-fetch --system-id "$SYSID" --prefetch 0 000000010000000000000001 "$T/fetched"
expect_rc 0 "wal-fetch"
not_loaded walfetch "wal-fetch from a local repository"
cmp -s "$seg1" "$T/fetched" || fail "wal-fetch did not give back the pushed segment"

unloadable wal-push "$seg2"
expect_rc 0 "wal-push with libcurl and libpq unloadable"
rm -f "$T/fetched"
unloadable wal-fetch --system-id "$SYSID" --prefetch 0 000000010000000000000002 "$T/fetched"
expect_rc 0 "wal-fetch with libcurl and libpq unloadable"
cmp -s "$seg2" "$T/fetched" || fail "wal-fetch (libraries unloadable) did not give back the segment"
CAIRN_TEST_CURL_SONAME=libdoesnotexist.so.9 CAIRN_TEST_PQ_SONAME=libdoesnotexist.so.9 \
  run_cairn backup "$T/src"
expect_rc 0 "backup with libcurl and libpq unloadable"
unloadable snapshots --json
expect_rc 0 "snapshots with all three libraries unloadable"
nsnap=$(json_get "$OUT" 'len(j)')
[ "$nsnap" -eq 2 ] || fail "expected 2 snapshots, found $nsnap"

# ---- libarchive: restore and dump load it and work; a stream backup does not
traced restore restore latest --target "$T/restored"
expect_rc 0 "restore"
only_loaded restore libarchive.so.13 'libcurl\|libpq' "restore from a local repository"
diff -r "$T/src" "$T/restored" >&2 || fail "restore did not give back the backed-up directory"
traced dump dump latest --format pax
expect_rc 0 "dump"
only_loaded dump libarchive.so.13 'libcurl\|libpq' "dump"
mkdir "$T/untarred"
tar -xf "$OUT" -C "$T/untarred" || fail "tar cannot read the dump"
diff -r "$T/src" "$T/untarred" >&2 || fail "the dump does not hold the backed-up directory"
printf 'streamed\n' >"$T/stream.txt"
LD_DEBUG=files LD_DEBUG_OUTPUT=$T/ld.stream "$CAIRN" backup --stdin --stdin-filename s.txt \
  <"$T/stream.txt" >/dev/null 2>"$T/stream.err" || { cat "$T/stream.err" >&2; fail "backup --stdin failed"; }
not_loaded stream "backup --stdin"
nsnap=$((nsnap + 1))

# ---- libarchive unloadable: a clear error, nothing recorded or written
repo_state >"$T/state.before"
no_archive backup "$T/src"
expect_rc 1 "backup of a directory with libarchive unloadable"
expect_in "cannot load libdoesnotexist.so.9 (needed for backing up, restoring and dumping files)" \
  "backup: the error names the library and what needs it" "$ERR"
expect_in "install the libarchive13 package" "backup: the error names the package" "$ERR"
CAIRN_TEST_ARCHIVE_SONAME=libz.so.1 run_cairn backup "$T/src"
expect_error "backup with a library that is not libarchive"
expect_in "it has no function 'archive_entry_acl_count'" "a missing libarchive function is named" "$ERR"
repo_state >"$T/state.after"
diff "$T/state.before" "$T/state.after" >&2 || fail "a backup without libarchive changed the repository"

no_archive restore latest --target "$T/new-target"
expect_rc 1 "restore into a new directory with libarchive unloadable"
expect_in "cannot load libdoesnotexist.so.9 (needed for backing up, restoring and dumping files)" \
  "restore: the error names the library and what needs it" "$ERR"
expect_in "install the libarchive13 package" "restore: the error names the package" "$ERR"
[ ! -e "$T/new-target" ] || fail "a restore without libarchive created its target"
mkdir "$T/old-target"
printf 'keep me\n' >"$T/old-target/b.txt"
cp -a "$T/old-target" "$T/old-target.copy"
no_archive restore latest --target "$T/old-target" --overwrite
expect_error "restore --overwrite with libarchive unloadable"
expect_in "install the libarchive13 package" "restore --overwrite: the error names the package" "$ERR"
diff -r "$T/old-target.copy" "$T/old-target" >&2 || fail "a restore without libarchive changed its target"
no_archive dump latest
expect_rc 1 "dump with libarchive unloadable"
expect_in "install the libarchive13 package" "dump: the error names the package" "$ERR"
[ ! -s "$OUT" ] || fail "a dump without libarchive wrote $(stat -c %s "$OUT") bytes"

# ---- S3: libcurl is loaded (and only it); unloadable, a clear error
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
s3() {
  AWS_ACCESS_KEY_ID=lazy AWS_SECRET_ACCESS_KEY=lazy-secret AWS_REGION=us-east-1 \
    AWS_ENDPOINT_URL_S3=http://127.0.0.1:$port CAIRN_S3_RETRIES=1 \
    CAIRN_CATALOG=$T/s3-catalog.db "$@"
}
s3 traced s3 --repo s3://lazy-bucket/repo snapshots
expect_error "snapshots on an unreachable S3 endpoint"
expect_in "127.0.0.1:$port" "the S3 error names the endpoint (libcurl loaded and ran)" "$ERR"
only_loaded s3 libcurl.so.4 libpq "an s3:// command"

for cmd in snapshots "backup $T/src" "wal-push $seg1"; do
  # shellcheck disable=SC2086 # cmd holds words
  CAIRN_TEST_CURL_SONAME=libdoesnotexist.so.9 s3 run_cairn --repo s3://lazy-bucket/repo $cmd
  expect_error "$cmd on s3:// with libcurl unloadable"
  expect_in "cannot load libdoesnotexist.so.9 (needed for s3:// repositories" \
    "$cmd: the error names the library and what needs it" "$ERR"
  expect_in "install the libcurl4 package" "$cmd: the error names the package" "$ERR"
done
CAIRN_TEST_CURL_SONAME=libz.so.1 s3 run_cairn --repo s3://lazy-bucket/repo snapshots
expect_error "snapshots on s3:// with a library that is not libcurl"
expect_in "it has no function 'curl_global_init'" "a missing libcurl function is named" "$ERR"

# ---- PostgreSQL: backup-pg loads libpq (and only it); unloadable, a clear error
mkdir -p "$T/pgdata/global"
echo 15 >"$T/pgdata/PG_VERSION"
python3 -c 'import struct, sys; sys.stdout.buffer.write(struct.pack("=Q", 7000000000000000001) + bytes(248))' \
  >"$T/pgdata/global/pg_control"
mkdir -p "$T/nosock"
dsn="host=$T/nosock port=5 user=postgres dbname=postgres connect_timeout=5"
traced pq backup-pg --pgdata "$T/pgdata" --dsn "$dsn"
expect_error "backup-pg with no server"
expect_in "PostgreSQL: cannot connect" "backup-pg reached libpq's connect" "$ERR"
only_loaded pq libpq.so.5 libcurl "backup-pg"

CAIRN_TEST_PQ_SONAME=libdoesnotexist.so.9 run_cairn backup-pg --pgdata "$T/pgdata" --dsn "$dsn"
expect_error "backup-pg with libpq unloadable"
expect_in "cannot load libdoesnotexist.so.9 (needed for PostgreSQL connections)" \
  "backup-pg: the error names the library and what needs it" "$ERR"
expect_in "install the libpq5 package" "backup-pg: the error names the package" "$ERR"
CAIRN_TEST_PQ_SONAME=libz.so.1 run_cairn backup-pg --pgdata "$T/pgdata" --dsn "$dsn"
expect_error "backup-pg with a library that is not libpq"
expect_in "it has no function 'PQconnectdbParams'" "a missing libpq function is named" "$ERR"

cairn_ok snapshots --json >"$T/snaps.json"
[ "$(json_get "$T/snaps.json" 'len(j)')" -eq "$nsnap" ] || fail "a failed backup-pg recorded a snapshot"
echo "ok" >&2
