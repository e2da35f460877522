#!/usr/bin/env bash
# Binlog retention with a real MariaDB (binlog on, ROW format): several closed
# binlogs are shipped; `cairn forget` with no base backup in the repository
# (no snapshot carries "mysql" binlog coordinates) deletes no binlog; explicit
# retention (cairn_my_binlog_forget, the library call behind binlog-forget,
# driven by a small C program built against the libraries of $CAIRN's build
# directory) with --dry-run deletes nothing, with a cut deletes exactly the
# files before it (object and catalog row: binlog-list and binlog-verify
# agree, the rest fetch byte-identical), and refuses to delete the newest
# archived file.
# The forget hook (cairn_my_log_retention) is called by the driver too, on a
# scratch catalog holding two fabricated snapshot rows with "mysql"
# coordinates (no command writes such snapshots yet): a dry run deletes
# nothing, a run deletes exactly the files before the oldest kept snapshot's
# file, and with no kept snapshot nothing goes and a note says why. That
# `cairn forget` itself reaches the hook is shown by the note above.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib_mysql.sh"

BUILD=$(dirname "$CAIRN")
for l in agent restore engine catalog uploaders util; do
  [ -f "$BUILD/libcairn_$l.a" ] || skip "no $BUILD/libcairn_$l.a to build the driver against"
done
command -v cc >/dev/null 2>&1 || skip "no C compiler for the driver"

export CAIRN_REPO=$T/repo CAIRN_CATALOG=$T/catalog.db
cairn_ok init >/dev/null

# --- the driver: bforget SERVER BEFORE DRYRUN (0 ok, 2 refused, 1 error)
cat >"$T/bforget.c" <<'CEOF'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "agent/mysql.h"
#include "engine/repo.h"
static void line(void *arg, const char *m) { (void)arg; printf("%s\n", m); }
static void snap(cairn_catalog *cat, char c, int64_t t, const char *file)
{
    struct cairn_snaprow r;
    char m[512];
    cairn_err e;
    memset(&r, 0, sizeof r);
    memset(r.id, c, CAIRN_HEX_LEN);
    r.time_ns = t;
    r.source = "mysqlsrc";
    r.hostname = "h";
    r.tags = "";
    r.tree = r.id;
    r.parent = "";
    snprintf(m, sizeof m, "{\"mysql\": {\"server\": \"1\", \"binlog_file\": \"%s\", "
             "\"binlog_pos\": 4}}", file);
    r.manifest = m;
    if (cairn_catalog_add_snapshot(cat, &r, &e) != CAIRN_OK) {
        fprintf(stderr, "add: %s\n", e.msg);
        exit(1);
    }
}
/* hook OLDER_FILE NEWER_FILE KEPT(a|b|none) DRYRUN: snapshot a (t=1, OLDER)
 * and b (t=2, NEWER) of source mysqlsrc; the hook as forget calls it */
static int hook(char **argv)
{
    struct cairn_my_retention mr;
    cairn_repo *r = NULL;
    cairn_err err;
    const char *kept = NULL;
    char ida[CAIRN_HEX_LEN + 1] = "", idb[CAIRN_HEX_LEN + 1] = "";
    int64_t kns = 0;
    int rc;
    cairn_err_clear(&err);
    if (cairn_repo_open(getenv("CAIRN_REPO"), getenv("CAIRN_CATALOG"), &r, &err) != CAIRN_OK) {
        fprintf(stderr, "open: %s\n", err.msg);
        return 1;
    }
    snap(cairn_repo_catalog(r), 'a', 1000000000, argv[2]);
    snap(cairn_repo_catalog(r), 'b', 2000000000, argv[3]);
    memset(ida, 'a', CAIRN_HEX_LEN);
    memset(idb, 'b', CAIRN_HEX_LEN);
    if (strcmp(argv[4], "a") == 0)
        kept = ida, kns = 1000000000;
    else if (strcmp(argv[4], "b") == 0)
        kept = idb, kns = 2000000000;
    memset(&mr, 0, sizeof mr);
    mr.report = line;
    rc = cairn_my_log_retention(&mr, r, "mysqlsrc", kept, kns, atoi(argv[5]), &err);
    cairn_repo_free(r);
    if (rc != CAIRN_OK) {
        fprintf(stderr, "hook: %s\n", err.msg);
        return 1;
    }
    printf("deleted=%llu kept=%llu\n", (unsigned long long)mr.deleted,
           (unsigned long long)mr.kept);
    return 0;
}
int main(int argc, char **argv)
{
    struct cairn_store_opts so;
    struct cairn_my_forget_stats st;
    cairn_pg_archive *a = NULL;
    cairn_err err;
    int rc;
    if (argc == 6 && strcmp(argv[1], "hook") == 0)
        return hook(argv);
    if (argc != 4)
        return 1;
    memset(&so, 0, sizeof so);
    cairn_err_clear(&err);
    if (cairn_pg_archive_open(getenv("CAIRN_REPO"), &so, getenv("CAIRN_CATALOG"), 1, &a,
                              &err) != CAIRN_OK) {
        fprintf(stderr, "open: %s\n", err.msg);
        return 1;
    }
    rc = cairn_my_binlog_forget(cairn_pg_archive_store(a), cairn_pg_archive_catalog(a),
                                argv[1], argv[2], atoi(argv[3]), line, NULL, &st, &err);
    cairn_pg_archive_free(a);
    if (rc != CAIRN_OK) {
        fprintf(stderr, "binlog-forget: %s\n", err.msg);
        return rc == CAIRN_EXISTS ? 2 : 1;
    }
    printf("deleted=%llu kept=%llu newest=%s\n", (unsigned long long)st.deleted,
           (unsigned long long)st.kept, st.newest);
    return 0;
}
CEOF
SAN=()   # a sanitizer build's libraries need the sanitizer runtimes
if grep -q '^CAIRN_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt" 2>/dev/null; then
  SAN=(-fsanitize=address,undefined -fno-sanitize-recover=all)
fi
# shellcheck disable=SC2046
cc -std=gnu11 "${SAN[@]}" -I"$CAIRN_SRC" -o "$T/bforget" "$T/bforget.c" \
  "$BUILD/libcairn_agent.a" "$BUILD/libcairn_restore.a" "$BUILD/libcairn_engine.a" \
  "$BUILD/libcairn_catalog.a" "$BUILD/libcairn_uploaders.a" "$BUILD/libcairn_util.a" \
  $(pkg-config --libs libcurl libcrypto sqlite3 libarchive libzstd jansson libsodium libpq) \
  -lpthread -lm 2>"$T/cc.err" || { cat "$T/cc.err" >&2; fail "cannot build the driver"; }

my_init main
my_start main
DD=$(my_datadir main)
closed_files() { sed 's|.*/||' "$DD/binlog.index" | sed '$d'; }
archived() { (cd "$CAIRN_REPO/binlog/1" 2>/dev/null && ls) | sort; }
listed() { "$CAIRN" binlog-list --json | python3 -c 'import json,sys; print("\n".join(sorted(r["name"] for r in json.load(sys.stdin))))'; }

# --- several closed binlogs, shipped
my_sql main "CREATE DATABASE d; CREATE TABLE d.t(i INT PRIMARY KEY, s VARCHAR(100)) ENGINE=InnoDB"
for round in 1 2 3 4 5; do
  my_sql main "INSERT INTO d.t SELECT seq + $round * 1000, REPEAT('r$round', 10) FROM d.seq_1_to_200"
  my_sql main "FLUSH BINARY LOGS"
done
cairn_ok binlog-push "$DD" >/dev/null
mapfile -t FILES < <(closed_files)
[ "${#FILES[@]}" -ge 5 ] || fail "expected at least 5 closed binlog files, got ${#FILES[@]}"
[ "$(archived)" = "$(printf '%s\n' "${FILES[@]}" | sort)" ] || fail "not every closed file was shipped"
all=$(archived)

# --- forget with no base backup: no binlog is deleted
mkdir -p "$T/src"
echo one >"$T/src/a"
cairn_ok backup --source files "$T/src" >/dev/null
echo two >"$T/src/a"
cairn_ok backup --source files "$T/src" >/dev/null
run_cairn forget --keep-last 1
expect_rc 0 "forget --keep-last 1"
[ "$(archived)" = "$all" ] || fail "forget without base backups deleted binlogs"
# a source named for the server, whose snapshots carry no coordinates
cairn_ok backup --source mysql:1 "$T/src" >/dev/null
echo three >"$T/src/a"
cairn_ok backup --source mysql:1 "$T/src" >/dev/null
run_cairn forget --keep-last 1 --source mysql:1
expect_rc 0 "forget --source mysql:1"
expect_in "no kept snapshot has binlog coordinates" "forget notes why no binlog goes" "$OUT"
[ "$(archived)" = "$all" ] || fail "forget of a mysql source without base backups deleted binlogs"

# --- explicit retention: --dry-run deletes nothing
cut=${FILES[2]}
run_cmd() { RC=0; "$T/bforget" "$@" >"$T/bf.out" 2>"$T/bf.err" || RC=$?; }
run_cmd 1 "$cut" 1
[ "$RC" -eq 0 ] || { cat "$T/bf.err" >&2; fail "dry run failed"; }
grep -q "deleted=2 " "$T/bf.out" || fail "dry run does not count 2 files: $(cat "$T/bf.out")"
expect_in "would delete binlog/1/${FILES[0]}" "dry run names the files" "$T/bf.out"
[ "$(archived)" = "$all" ] || fail "the dry run deleted binlogs"

# --- the same through the command: cairn binlog-forget
run_cairn binlog-forget --server 1 --before "$cut" --dry-run
expect_rc 0 "binlog-forget --dry-run"
expect_in "would delete 2 binlog file(s)" "binlog-forget --dry-run counts the files" "$ERR"
[ "$(archived)" = "$all" ] || fail "binlog-forget --dry-run deleted binlogs"
run_cairn binlog-forget --server 1 --before "${FILES[0]%.*}.999999"
expect_rc 1 "binlog-forget past the newest archived file"
[ "$(archived)" = "$all" ] || fail "a refused binlog-forget command deleted binlogs"

# --- past the newest archived file: refused, nothing deleted
base=${FILES[0]%.*}
run_cmd 1 "$base.999999" 0
[ "$RC" -eq 2 ] || fail "a cut past the newest archived file was not refused (rc $RC)"
grep -q "newest archived" "$T/bf.err" || fail "the refusal does not say why: $(cat "$T/bf.err")"
[ "$(archived)" = "$all" ] || fail "a refused binlog-forget deleted binlogs"
run_cmd 7 "$cut" 0
[ "$RC" -eq 1 ] || fail "binlog-forget of an unknown server did not fail"
run_cmd 1 "notabinlog" 0
[ "$RC" -eq 1 ] || fail "a cut that is no binlog name was accepted"

# --- the cut: exactly the files before it go
run_cmd 1 "$cut" 0
[ "$RC" -eq 0 ] || { cat "$T/bf.err" >&2; fail "binlog-forget failed"; }
want=$(printf '%s\n' "${FILES[@]:2}" | sort)
[ "$(archived)" = "$want" ] || fail "left in the store: $(archived | tr '\n' ' '), want $(echo $want)"
[ "$(listed)" = "$want" ] || fail "binlog-list disagrees: $(listed | tr '\n' ' ')"
[ "$(CAIRN_CATALOG=$T/fresh.db listed)" = "$want" ] || fail "a fresh catalog disagrees"
run_cairn binlog-verify --read-data
expect_rc 0 "binlog-verify --read-data after the cut"
expect_in "no problems found" "no gap after the cut" "$OUT"
for f in "${FILES[@]:2}"; do
  rm -f "$T/fetched"
  cairn_ok binlog-fetch --server 1 "$f" "$T/fetched" >/dev/null
  cmp -s "$DD/$f" "$T/fetched" || fail "fetched $f differs from the server's file"
done
run_cairn binlog-fetch --server 1 "${FILES[0]}" "$T/gone"
expect_error "binlog-fetch of a deleted file"
# the newest archived file as the cut: allowed, it stays
newest=${FILES[-1]}
run_cmd 1 "$newest" 0
[ "$RC" -eq 0 ] || { cat "$T/bf.err" >&2; fail "binlog-forget up to the newest file failed"; }
[ "$(archived)" = "$newest" ] || fail "the newest archived file did not stay alone: $(archived | tr '\n' ' ')"

# binlog-push ships every closed file of the server's index that the archive
# lacks: files deleted by retention come back unless the server purged them
run_cairn binlog-push "$DD"
expect_rc 0 "binlog-push after binlog-forget"
[ "$(archived)" = "$all" ] || fail "binlog-push did not ship the deleted files again (still in the index)"
run_cmd 1 "$newest" 0
[ "$(archived)" = "$newest" ] || fail "second binlog-forget up to the newest file"
my_sql main "PURGE BINARY LOGS TO '$newest'"

# --- the forget hook, on fabricated snapshots with coordinates
for round in 6 7 8; do
  my_sql main "INSERT INTO d.t SELECT seq + $round * 1000, 'r$round' FROM d.seq_1_to_100"
  my_sql main "FLUSH BINARY LOGS"
done
cairn_ok binlog-push "$DD" >/dev/null
mapfile -t FILES < <(closed_files)
n=${#FILES[@]}
[ "$(archived)" = "$(printf '%s\n' "${FILES[@]:n-4}" | sort)" ] || fail "the new files were not shipped"
older=${FILES[n-3]} newer=${FILES[n-2]}
all=$(archived)
hook() { RC=0; CAIRN_CATALOG=$T/hook.db "$T/bforget" hook "$older" "$newer" "$@" >"$T/bf.out" 2>"$T/bf.err" || RC=$?; }
hook b 1
[ "$RC" -eq 0 ] || { cat "$T/bf.err" >&2; fail "hook dry run failed"; }
expect_in "would delete 2 archived binlog files" "the hook's dry run counts the files" "$T/bf.out"
[ "$(archived)" = "$all" ] || fail "the hook's dry run deleted binlogs"
hook none 0
[ "$RC" -eq 0 ] || { cat "$T/bf.err" >&2; fail "hook with nothing kept failed"; }
expect_in "no kept snapshot has binlog coordinates" "the hook notes why nothing goes" "$T/bf.out"
[ "$(archived)" = "$all" ] || fail "the hook deleted binlogs with no snapshot kept"
hook b 0
[ "$RC" -eq 0 ] || { cat "$T/bf.err" >&2; fail "hook failed"; }
expect_in "deleted 2 archived binlog files" "the hook reports what it deleted" "$T/bf.out"
want=$(printf '%s\n' "${FILES[@]:n-2}" | sort)
[ "$(archived)" = "$want" ] || fail "the hook left $(archived | tr '\n' ' '), want $(echo $want)"
[ "$(CAIRN_CATALOG=$T/hook.db listed)" = "$want" ] || fail "the hook's catalog disagrees"
[ "$(listed)" = "$want" ] || fail "binlog-list disagrees after the hook"
cairn_ok binlog-verify --read-data >/dev/null

echo "PASS: mysql_retention"
