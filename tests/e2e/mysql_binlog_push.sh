#!/usr/bin/env bash
# Binlog shipping with a real MariaDB 10.11 (binlog on, ROW format):
# binlog-push ships exactly the closed binlog files (never the active one),
# a rerun ships nothing new, later rotations ship only the new files, files
# closed by a shutdown are shipped too; fetched copies are byte-identical to
# the server's and mariadb-binlog reads them; the catalog records positions,
# times and GTIDs; --defaults-file asks the server for its index; a different
# file under an archived name, a non-binlog named like one and a binlog with
# a damaged event are refused; a damaged object is caught by binlog-fetch
# (DEST not written); binlog-verify reports a gap after an object is deleted;
# files without event checksums are shipped; binary logging off and a
# stopped server are clear errors with --defaults-file.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib_mysql.sh"

export CAIRN_REPO=$T/repo CAIRN_CATALOG=$T/catalog.db
cairn_ok init >/dev/null
my_init main
my_start main
DD=$(my_datadir main)

# closed files per the index: every entry but the last
closed_files() { sed 's|.*/||' "$DD/binlog.index" | sed '$d'; }
active_file() { sed 's|.*/||' "$DD/binlog.index" | tail -n 1; }
archived() { (cd "$CAIRN_REPO/binlog/1" 2>/dev/null && ls) | sort; }

# --- load: rows, with rotations in between
my_sql main "CREATE DATABASE d; CREATE TABLE d.t(i INT PRIMARY KEY, s VARCHAR(100)) ENGINE=InnoDB"
for round in 1 2 3; do
  my_sql main "INSERT INTO d.t SELECT seq + $round * 1000, REPEAT('r$round', 10) FROM d.seq_1_to_500"
  my_sql main "FLUSH BINARY LOGS"
done
my_sql main "INSERT INTO d.t VALUES (1, 'in the active file')"
[ "$(closed_files | wc -l)" -ge 3 ] || fail "expected at least 3 closed binlog files"

# --- first push: exactly the closed files
run_cairn binlog-push --json "$DD"
expect_rc 0 "binlog-push"
[ "$(archived)" = "$(closed_files | sort)" ] ||
  fail "archived files ($(archived | tr '\n' ' ')) are not the closed ones ($(closed_files | tr '\n' ' '))"
[ ! -e "$CAIRN_REPO/binlog/1/$(active_file)" ] || fail "the active binlog was shipped"
[ "$(json_get "$OUT" 'j["active"]')" = "$(active_file)" ] || fail "push does not name the active file"
[ "$(json_get "$OUT" 'sum(1 for f in j["files"] if not f["already"])')" -eq "$(closed_files | wc -l)" ] ||
  fail "push did not report every closed file as shipped"

# --- rerun: nothing new
before=$(find "$CAIRN_REPO/binlog" -type f -printf '%p %s %T@\n' | sort)
run_cairn binlog-push --json "$DD"
expect_rc 0 "binlog-push again"
[ "$(json_get "$OUT" 'sum(1 for f in j["files"] if not f["already"])')" -eq 0 ] || fail "a rerun shipped files again"
[ "$(find "$CAIRN_REPO/binlog" -type f -printf '%p %s %T@\n' | sort)" = "$before" ] || fail "a rerun changed the archive"

# --- one more rotation: only the new file, found through --defaults-file
my_sql main "INSERT INTO d.t SELECT seq + 9000, 'r4' FROM d.seq_1_to_100"
newfile=$(active_file)
my_sql main "FLUSH BINARY LOGS"
defaults=$(my_defaults main)
# a second index in the data directory: which one is the server's is then
# not guessed, but asked (--defaults-file) or given (--index)
printf './decoy.000001\n' >"$DD/decoy.index"
run_cairn binlog-push "$DD"
expect_error "binlog-push with two candidate index files"
expect_in "several binlog index files" "the ambiguity is named" "$ERR"
run_cairn binlog-push --json --defaults-file "$defaults" "$DD"
expect_rc 0 "binlog-push --defaults-file"
[ "$(json_get "$OUT" '",".join(f["name"] for f in j["files"] if not f["already"])')" = "$newfile" ] ||
  fail "after one rotation the push should ship only $newfile: $(cat "$OUT")"
cairn_ok binlog-push --index "$DD/binlog.index" "$DD" >/dev/null
rm -f "$DD/decoy.index"

# --- a file closed by a shutdown is shipped after the restart
my_sql main "INSERT INTO d.t VALUES (2, 'before the restart')"
stopped=$(active_file)
my_stop main
my_start main
run_cairn binlog-push "$DD"
expect_rc 0 "binlog-push after a restart"
[ -f "$CAIRN_REPO/binlog/1/$stopped" ] || fail "$stopped (closed by the shutdown) was not shipped"
[ ! -e "$CAIRN_REPO/binlog/1/$(active_file)" ] || fail "the active binlog was shipped after the restart"
head -n 2 "$CAIRN_REPO/binlog/1/$stopped" | grep -q '"closed_by":"stop"' ||
  fail "the object of $stopped does not record the Stop event"

# --- fetched copies are the server's files, byte for byte
for f in $(closed_files); do
  rm -f "$T/fetched"
  run_cairn binlog-fetch "$f" "$T/fetched"
  expect_rc 0 "binlog-fetch $f"
  cmp -s "$DD/$f" "$T/fetched" || fail "fetched $f differs from the server's file"
  [ "$(sha256sum <"$DD/$f")" = "$(sha256sum <"$T/fetched")" ] || fail "sha256 of $f differs"
done
f1=$(closed_files | head -n 1)
cairn_ok binlog-fetch --server 1 "$f1" "$T/f1" >/dev/null
mariadb-binlog --no-defaults "$T/f1" >"$T/f1.sql" 2>"$T/f1.err" ||
  { cat "$T/f1.err" >&2; fail "mariadb-binlog cannot read a fetched copy"; }
grep -q 'Table_map: `d`.`t`' "$T/f1.sql" || fail "mariadb-binlog shows no row events for d.t in $f1"

# --- what the catalog records (a fresh catalog learns it from the objects)
CAIRN_CATALOG=$T/fresh.db cairn_ok binlog-list --json >"$T/list.json"
python3 - "$T/list.json" "$DD" <<'EOF'
import json, os, sys
rows = json.load(open(sys.argv[1]))
assert rows, "binlog-list is empty"
prev_end = None
for r in rows:
    size = os.path.getsize(os.path.join(sys.argv[2], r["name"]))
    assert r["server"] == "1", r
    assert r["size"] == size and r["end_pos"] == size and r["start_pos"] == 4, r
    assert r["first_event_ns"] <= r["last_event_ns"], r
    assert r["checksum"].startswith("sha256:"), r
    start, ranges = r["gtids"].split(";")
    if prev_end is not None and ranges:
        assert start == prev_end, (r, prev_end)   # Gtid_list = the last GTID before it
    if ranges:
        prev_end = ranges.split("..")[1]
assert sum(1 for r in rows if r["gtids"].split(";")[1]) >= 3, "no GTIDs recorded"
EOF

# --- identical re-push is fine; a different file under an archived name is refused
fake=$T/fake; mkdir -p "$fake"
victim=$(closed_files | sed -n 2p)
obj=$CAIRN_REPO/binlog/1/$victim
sum_before=$(sha256sum <"$obj")
cp "$DD/$(closed_files | sed -n 3p)" "$fake/$victim"   # a valid binlog, other content
printf '%s\n' "./$victim" "./binlog.999999" >"$fake/binlog.index"
run_cairn binlog-push "$fake"
expect_error "push of a different file under an archived name"
expect_in "REFUSING" "the conflict is refused loudly" "$ERR"
expect_in "$victim" "the refusal names the file" "$ERR"
[ "$(sha256sum <"$obj")" = "$sum_before" ] || fail "a refused push changed the archived object"

# --- a non-binlog named like one, and a binlog with a damaged event
mkdir -p "$T/junk"
head -c 4000 /dev/urandom >"$T/junk/binlog.000001"
printf '%s\n' ./binlog.000001 ./binlog.000002 >"$T/junk/binlog.index"
run_cairn binlog-push --server 99 "$T/junk"
expect_error "push of a non-binlog"
expect_in "not a binlog" "the non-binlog is named as such" "$ERR"
[ ! -e "$CAIRN_REPO/binlog/99" ] || fail "a non-binlog was stored"
cp "$DD/$f1" "$T/junk/binlog.000001"
size=$(stat -c %s "$T/junk/binlog.000001")
printf '\x5a' | dd of="$T/junk/binlog.000001" bs=1 seek=$((size / 2)) conv=notrunc status=none
run_cairn binlog-push --server 99 "$T/junk"
expect_error "push of a binlog with a damaged event"
expect_in "CRC32" "the damaged event is found by its checksum" "$ERR"
[ ! -e "$CAIRN_REPO/binlog/99" ] || fail "a damaged binlog was stored"

# --- binlog-verify: clean, then a gap
run_cairn binlog-verify
expect_rc 0 "binlog-verify on a complete archive"
expect_in "no problems found" "binlog-verify summary" "$OUT"
gap=$(closed_files | sed -n 2p)
rm -f "$CAIRN_REPO/binlog/1/$gap"
run_cairn binlog-verify
expect_rc 1 "binlog-verify with a missing file"
expect_in "$gap is missing" "binlog-verify names the missing file" "$OUT"

# --- a damaged object: binlog-fetch fails and writes nothing
dmg=$(closed_files | sed -n 3p)
dobj=$CAIRN_REPO/binlog/1/$dmg
size=$(stat -c %s "$dobj")
printf '\xff\xfe' | dd of="$dobj" bs=1 seek=$((size - 20)) conv=notrunc status=none
rm -f "$T/dest"
run_cairn binlog-fetch "$dmg" "$T/dest"
expect_error "binlog-fetch of a damaged object"
expect_in "damaged" "the damage is named" "$ERR"
[ ! -e "$T/dest" ] || fail "binlog-fetch of a damaged object wrote DEST"
[ -z "$(ls "$T" | grep 'dest.cairn-tmp')" ] || fail "binlog-fetch left a temp file"
run_cairn binlog-verify --read-data
expect_rc 1 "binlog-verify --read-data with a damaged object"
expect_in "binlog/1/$dmg" "binlog-verify --read-data names the damaged object" "$OUT"
run_cairn binlog-fetch binlog.888888 "$T/dest"
expect_error "binlog-fetch of a file not in the archive"
[ ! -e "$T/dest" ] || fail "binlog-fetch of a missing file wrote DEST"

# --- a server without event checksums; the deleted file is shipped again
# (it is still in the server's index: the archive is the record)
my_stop main
my_start main --binlog-checksum=NONE
my_sql main "INSERT INTO d.t VALUES (3, 'no checksums')"
nock=$(active_file)
my_sql main "FLUSH BINARY LOGS"
run_cairn binlog-push "$DD"
expect_rc 0 "binlog-push of files without checksums"
head -n 2 "$CAIRN_REPO/binlog/1/$nock" | grep -q '"checksum_alg":"none"' ||
  fail "$nock was not recorded as a file without checksums"
[ -f "$CAIRN_REPO/binlog/1/$gap" ] || fail "the deleted $gap was not shipped again"
cairn_ok binlog-verify >/dev/null
rm -f "$CAIRN_REPO/binlog/1/$dmg"   # the damaged object: shipped again from the server
cairn_ok binlog-push "$DD" >/dev/null
cairn_ok binlog-verify --read-data >"$T/readback.txt"
expect_in "0 damaged" "every object reads back after the repair" "$T/readback.txt"
rm -f "$T/fetched"
cairn_ok binlog-fetch "$nock" "$T/fetched" >/dev/null
cmp -s "$DD/$nock" "$T/fetched" || fail "fetched $nock differs from the server's file"

# --- bad input: binary logging off, a server that is not there
my_stop main
my_start main --skip-log-bin
run_cairn binlog-push --defaults-file "$defaults" "$DD"
expect_error "binlog-push with binary logging disabled"
expect_in "disabled" "binlog disabled is named" "$ERR"
my_stop main
run_cairn binlog-push --defaults-file "$defaults" "$DD"
expect_error "binlog-push against a stopped server"

echo "PASS: mysql_binlog_push"
